// @ts-check
/**
 * Per-block rendering of a streaming message into the DOM.
 *
 * - A block that has ended is rendered one last time and then never touched again.
 * - The open block re-renders at most once per animation frame, and only from its last stable
 *   boundary: each stable piece is rendered once into its own element, only the tail is redone.
 * So the work per frame follows the new text, not the answer so far.
 *
 * `NaiveView` is the baseline the benchmark compares against: the whole answer re-rendered on
 * every op. Both share the block markup.
 */
import { stableBoundary } from "./markdown.js";

/**
 * @typedef {import("./model.js").Message} Message
 * @typedef {import("./model.js").Block} Block
 * @typedef {import("./model.js").Op} Op
 * @typedef {import("./markdown.js").MarkdownRenderer} MarkdownRenderer
 * @typedef {(callback: () => void) => void} Scheduler
 */

const LABELS = /** @type {Record<string, string>} */ ({
  reasoning: "Reasoning",
  tool_call: "Tool call",
  refusal: "Refusal",
  source: "Source",
  image: "Image",
});

/** Only these URL schemes become links or image sources. */
const SAFE_URL = /^(?:https?:|data:image\/(?:png|jpe?g|gif|webp);)/i;

/**
 * Default scheduler: the next animation frame, with a timer fallback because browsers pause
 * animation frames in background tabs and a mirrored tab should still keep up.
 * @type {Scheduler}
 */
export function frameScheduler(callback) {
  let ran = false;
  const once = () => {
    if (ran) return;
    ran = true;
    callback();
  };
  if (typeof requestAnimationFrame === "function") requestAnimationFrame(once);
  setTimeout(once, 200);
}

/**
 * @param {Document} doc
 * @param {string} tag
 * @param {string} [className]
 * @param {string} [text]
 */
function el(doc, tag, className, text) {
  const node = doc.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The streaming Markdown area of a text or reasoning block. */
class MarkdownPart {
  /**
   * @param {HTMLElement} host
   * @param {MarkdownRenderer} md
   * @param {() => void} counted called once per DOM write, for the render counters
   */
  constructor(host, md, counted) {
    const doc = host.ownerDocument;
    this.md = md;
    this.counted = counted;
    this.stable = el(doc, "div", "md-stable");
    this.tail = el(doc, "div", "md-tail");
    host.append(this.stable, this.tail);
    /** Offset up to which the text is rendered in stable pieces. */
    this.committed = 0;
    /** The source the tail element currently shows. */
    this.tailSource = "";
  }

  /**
   * @param {string} text the block's whole text so far
   * @param {boolean} final the block has ended
   */
  update(text, final) {
    const boundary = stableBoundary(text, this.committed);
    if (boundary > this.committed) {
      const source = text.slice(this.committed, boundary);
      const piece = el(this.stable.ownerDocument, "div", "md-piece");
      if (this.tailSource && this.tailSource.trimEnd() === source.trimEnd()) {
        // The tail already shows exactly this piece (short of trailing blank lines, which do
        // not change a piece that ends outside any fence): move its nodes, render nothing.
        piece.append(...this.tail.childNodes);
        this.tailSource = "";
      } else {
        this.md.renderInto(piece, source);
      }
      this.stable.append(piece);
      this.counted();
      this.committed = boundary;
    }
    const tail = text.slice(this.committed);
    // While streaming, trailing whitespace alone changes nothing visible: wait for real text.
    // (The final render always shows the exact text.)
    const onlyWhitespace =
      !final &&
      tail.length > this.tailSource.length &&
      tail.startsWith(this.tailSource) &&
      !/\S/.test(tail.slice(this.tailSource.length));
    if (tail !== this.tailSource && !onlyWhitespace) {
      if (tail) this.md.renderInto(this.tail, tail);
      else this.tail.replaceChildren();
      this.tailSource = tail;
      this.counted();
    }
  }
}

/** One block's element and how to bring it up to date. */
class BlockView {
  /**
   * @param {Document} doc
   * @param {number} index
   * @param {Block} block
   * @param {MarkdownRenderer} md
   */
  constructor(doc, index, block, md) {
    this.index = index;
    this.type = block.type;
    this.renders = 0;
    this.final = false;
    /** How much of the block's text/arguments the DOM shows (plain-text blocks). */
    this.shown = 0;
    const root = el(doc, block.type === "reasoning" ? "details" : "div", `block block-${block.type}`);
    root.dataset.blockType = block.type;
    root.dataset.blockIndex = String(index);
    if ("choice" in block && block.choice) root.dataset.choice = String(block.choice);
    this.root = root;
    const counted = () => {
      this.renders += 1;
    };
    /** @type {MarkdownPart | null} */
    this.markdown = null;
    /** @type {Text | null} */
    this.plain = null;
    /** @type {HTMLElement | null} */
    this.label = null;

    if (block.type === "reasoning") {
      root.setAttribute("open", "");
      this.label = el(doc, "summary", "block-label", "Reasoning…");
      const body = el(doc, "div", "block-body");
      root.append(this.label, body);
      this.markdown = new MarkdownPart(body, md, counted);
    } else if (block.type === "text") {
      this.markdown = new MarkdownPart(root, md, counted);
    } else if (block.type === "refusal") {
      root.append(el(doc, "div", "block-label", LABELS.refusal));
      const body = el(doc, "div", "block-body");
      this.plain = doc.createTextNode("");
      body.append(this.plain);
      root.append(body);
    } else if (block.type === "tool_call") {
      const head = el(doc, "div", "block-label");
      head.append(`${LABELS.tool_call} `);
      head.append(el(doc, "code", "tool-name", block.name ?? "(unnamed)"));
      if (block.id) head.append(el(doc, "span", "tool-id", block.id));
      const pre = el(doc, "pre", "tool-args");
      const code = el(doc, "code");
      this.plain = doc.createTextNode("");
      code.append(this.plain);
      pre.append(code);
      root.append(head, pre);
    } else if (block.type === "image") {
      if (SAFE_URL.test(block.url)) {
        const img = /** @type {HTMLImageElement} */ (el(doc, "img"));
        img.alt = "image from the model";
        img.src = block.url;
        root.append(img);
      } else {
        root.append(el(doc, "span", "block-muted", "(image with an unsupported URL)"));
      }
      this.renders = 1;
    } else if (block.type === "source") {
      root.append(el(doc, "span", "block-label", `${LABELS.source} `));
      if (SAFE_URL.test(block.url)) {
        const link = /** @type {HTMLAnchorElement} */ (el(doc, "a", "", block.title || block.url));
        link.href = block.url;
        link.target = "_blank";
        link.rel = "noopener noreferrer nofollow";
        root.append(link);
      } else {
        root.append(el(doc, "span", "", block.title || block.url));
      }
      this.renders = 1;
    }
  }

  /**
   * Brings the element up to date with `block`; `final` marks the last render.
   * @param {Block} block
   * @param {boolean} final
   */
  update(block, final) {
    if (this.final) return;
    if (this.markdown && "text" in block) {
      this.markdown.update(block.text ?? "", final);
    } else if (this.plain) {
      const source = block.type === "tool_call" ? block.arguments : ("text" in block && block.text) || "";
      if (source.length > this.shown) {
        // Append only what is new: O(new text), and the DOM text node is never rebuilt.
        this.plain.appendData(source.slice(this.shown));
        this.shown = source.length;
        this.renders += 1;
      }
    }
    if (final) this.markFinal();
  }

  /** From now on this element is never touched again. */
  markFinal() {
    this.final = true;
    this.root.dataset.final = "";
    if (this.label && this.type === "reasoning") this.label.textContent = "Reasoning";
  }
}

/**
 * Renders a message incrementally into `container`.
 */
export class MessageView {
  /**
   * @param {HTMLElement} container
   * @param {{markdown: MarkdownRenderer, schedule?: Scheduler, onFlush?: () => void}} options
   */
  constructor(container, options) {
    this.container = container;
    this.md = options.markdown;
    this.schedule = options.schedule ?? frameScheduler;
    this.onFlush = options.onFlush;
    /** @type {BlockView[]} */
    this.views = [];
    /** @type {Set<number>} */
    this.dirty = new Set();
    /** @type {Set<number>} */
    this.ended = new Set();
    this.allEnded = false;
    /** @type {Message | null} */
    this.message = null;
    this.pending = false;
    this.flushes = 0;
  }

  /** Total DOM writes made by all blocks. */
  get renderCount() {
    return this.views.reduce((sum, v) => sum + v.renders, 0);
  }

  /** Per-block DOM write counts, by index. */
  get blockRenders() {
    return this.views.map((v) => v.renders);
  }

  /** Forgets everything (a new stream). */
  reset() {
    this.container.replaceChildren();
    this.views = [];
    this.dirty.clear();
    this.ended.clear();
    this.allEnded = false;
    this.message = null;
  }

  /**
   * Records an op already applied to `message`; the DOM catches up on the next frame.
   * @param {Op} op
   * @param {Message} message
   */
  update(op, message) {
    this.message = message;
    switch (op.type) {
      case "block.start":
        this.dirty.add(op.index);
        break;
      case "block.delta":
        // No index: the delta extended the newest block.
        this.dirty.add(typeof op.index === "number" ? op.index : message.blocks.length - 1);
        break;
      case "block.end":
        this.ended.add(op.index);
        this.dirty.add(op.index);
        break;
      case "message.end":
        this.allEnded = true;
        for (let i = 0; i < message.blocks.length; i++) this.dirty.add(i);
        break;
      case "snapshot":
        // A snapshot does not say which blocks are still open: treat them all as open until
        // their block.end (or message.end) arrives.
        if (message.status !== "in_progress") this.allEnded = true;
        for (let i = 0; i < message.blocks.length; i++) this.dirty.add(i);
        break;
      default:
        return;
    }
    this.request();
  }

  /** Asks for a flush on the next frame (at most one pending). */
  request() {
    if (this.pending) return;
    this.pending = true;
    this.schedule(() => {
      this.pending = false;
      this.flush();
    });
  }

  /** Renders every block changed since the last flush, now. */
  flush() {
    const message = this.message;
    if (!message) return;
    const doc = this.container.ownerDocument;
    for (let i = this.views.length; i < message.blocks.length; i++) {
      const view = new BlockView(doc, i, message.blocks[i], this.md);
      this.views.push(view);
      this.container.append(view.root);
      this.dirty.add(i);
    }
    for (const i of [...this.dirty].sort((a, b) => a - b)) {
      const view = this.views[i];
      const block = message.blocks[i];
      if (view && block) view.update(block, this.allEnded || this.ended.has(i));
    }
    this.dirty.clear();
    this.flushes += 1;
    this.onFlush?.();
  }
}

/**
 * The baseline: every op re-renders the whole answer (all blocks, all Markdown) from scratch.
 */
export class NaiveView {
  /**
   * @param {HTMLElement} container
   * @param {{markdown: MarkdownRenderer}} options
   */
  constructor(container, options) {
    this.container = container;
    this.md = options.markdown;
    this.renderCount = 0;
  }

  reset() {
    this.container.replaceChildren();
  }

  /**
   * @param {Op} op
   * @param {Message} message
   */
  update(op, message) {
    void op;
    const doc = this.container.ownerDocument;
    const fresh = message.blocks.map((block, index) => {
      const view = new BlockView(doc, index, block, this.md);
      if (view.markdown && "text" in block) {
        // Whole text in one go, as a naive chat UI does.
        this.md.renderInto(view.markdown.tail, block.text ?? "");
      } else {
        view.update(block, false);
      }
      if (message.status !== "in_progress") view.markFinal();
      return view.root;
    });
    this.container.replaceChildren(...fresh);
    this.renderCount += 1;
  }

  flush() {}
}
