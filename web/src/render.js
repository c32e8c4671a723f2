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
import { streamKey } from "./model.js";

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
  file: "File",
  tool_result: "Result of",
  tool_error: "Error from",
});

/** Only these URL schemes become links or image sources. */
const SAFE_URL = /^(?:https?:|data:image\/(?:png|jpe?g|gif|webp);)/i;
/** Only these become links (a data: URL is never a link target). */
const SAFE_LINK = /^https?:/i;

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

/**
 * A link that opens in a new tab without opener for an http(s) URL, else plain text: model
 * output never becomes a `javascript:` or `data:` link.
 * @param {Document} doc
 * @param {string} url
 * @param {string} text
 * @param {string} [className]
 */
function safeLink(doc, url, text, className) {
  if (!SAFE_LINK.test(url)) return el(doc, "span", className, text);
  const link = /** @type {HTMLAnchorElement} */ (el(doc, "a", className, text));
  link.href = url;
  link.target = "_blank";
  link.rel = "noopener noreferrer nofollow";
  return link;
}

/**
 * A citation shown on a text block: numbered link `n` to `url` after the cited span's end.
 * `end`/`start` are code-point offsets (as on the wire); `at` caches the UTF-16 offset of the
 * mark once the text reaches it (text before it never changes).
 * @typedef {{n: number, url: string, title: string | null, start: number, end: number,
 *   at: number | null, source: number}} Citation
 */

/** Stands in the Markdown source for a citation mark (private use: never in model text). */
const MARK = "\uE000";
const MARKS = /\uE000/g;

/**
 * The UTF-16 offset of code point `cp` in `text`, or null if the text does not reach it yet.
 * @param {string} text
 * @param {number} cp
 */
function unitOffset(text, cp) {
  let unit = 0;
  for (let i = 0; i < cp; i++) {
    if (unit >= text.length) return null;
    const code = text.charCodeAt(unit);
    unit += code >= 0xd800 && code <= 0xdbff && unit + 1 < text.length ? 2 : 1;
  }
  return unit;
}

/**
 * Where citation `c`'s mark goes in `text` (UTF-16 offset), or null while the text is shorter.
 * Trailing whitespace of the span is skipped, so the mark follows its last visible character
 * (never at a line start, where it could change the line's Markdown meaning).
 * @param {Citation} c
 * @param {string} text
 */
function markAt(c, text) {
  if (c.at !== null) return c.at;
  const end = unitOffset(text, c.end);
  if (end === null) return null;
  const start = unitOffset(text, Math.min(c.start, c.end)) ?? end;
  let at = end;
  while (at > start && /\s/.test(text[at - 1])) at -= 1;
  c.at = at;
  return at;
}

/**
 * A numbered citation link; only http(s) URLs become links.
 * @param {Document} doc
 * @param {Citation} c
 */
function citationNode(doc, c) {
  const sup = el(doc, "sup", "cite");
  sup.dataset.source = String(c.source);
  const link = safeLink(doc, c.url, `[${c.n}]`);
  if (c.title && link.tagName === "A") link.title = c.title;
  sup.append(...(link.tagName === "A" ? [link] : link.childNodes));
  return sup;
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
    /** @type {{start: number, end: number, el: HTMLElement}[]} the stable pieces, in order */
    this.pieces = [];
    /** @type {Citation[]} */
    this.citations = [];
  }

  /**
   * Renders `text[start:end]` into `target`, with the marks of the citations that end in it.
   * @param {HTMLElement} target
   * @param {string} text
   * @param {number} start
   * @param {number} end
   * @param {string} [source] `text.slice(start, end)` when the caller has it already
   */
  renderRange(target, text, start, end, source = text.slice(start, end)) {
    if (this.citations.length === 0) {
      this.md.renderInto(target, source);
      return;
    }
    /** @type {[number, Citation][]} */
    const marks = [];
    for (const c of this.citations) {
      const at = markAt(c, text);
      if (at !== null && at > start && at <= end) marks.push([at, c]);
    }
    if (marks.length === 0) {
      this.md.renderInto(target, source);
      return;
    }
    marks.sort((x, y) => x[0] - y[0] || x[1].n - y[1].n);
    let marked = "";
    let from = start;
    for (const [at] of marks) {
      marked += text.slice(from, at) + MARK;
      from = at;
    }
    marked += text.slice(from, end);
    this.md.renderInto(target, marked);
    // The marks must not have changed how the Markdown parses (e.g. a closing fence followed by
    // a mark is no longer a fence): the same HTML without them, and each in a text node.
    const doc = target.ownerDocument;
    const texts = [];
    const walker = doc.createTreeWalker(target, 4 /* NodeFilter.SHOW_TEXT */);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (/** @type {Text} */ (node).data.includes(MARK)) texts.push(/** @type {Text} */ (node));
    }
    const found = texts.reduce((sum, t) => sum + (t.data.match(MARKS)?.length ?? 0), 0);
    const plain = this.md.render(source);
    if (found !== marks.length || target.innerHTML.replace(MARKS, "") !== plain) {
      // Fall back: the plain rendering, the links after it.
      this.md.renderInto(target, source);
      const group = el(doc, "div", "cite-group");
      for (const [, c] of marks) group.append(citationNode(doc, c));
      target.append(group);
      return;
    }
    let next = 0;
    for (const node of texts) {
      const parts = node.data.split(MARK);
      /** @type {(string | Node)[]} */
      const replaced = [];
      parts.forEach((part, i) => {
        if (i > 0) replaced.push(citationNode(doc, marks[next++][1]));
        if (part) replaced.push(part);
      });
      node.replaceWith(...replaced);
    }
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
      const shown = this.tailSource && this.tailSource.trimEnd() === source.trimEnd();
      if (shown && this.citations.length === 0) {
        // The tail already shows exactly this piece (short of trailing blank lines, which do
        // not change a piece that ends outside any fence): move its nodes, render nothing.
        // (With citations the marks may differ: rendered again.)
        piece.append(...this.tail.childNodes);
        this.tailSource = "";
      } else {
        this.renderRange(piece, text, this.committed, boundary, source);
      }
      this.stable.append(piece);
      this.pieces.push({ start: this.committed, end: boundary, el: piece });
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
      if (tail) this.renderRange(this.tail, text, this.committed, text.length, tail);
      else this.tail.replaceChildren();
      this.tailSource = tail;
      this.counted();
    }
  }

  /**
   * Adds a citation and re-renders at once the one piece (or the tail) its mark falls in; a mark
   * past the text shown so far appears when the text reaches it.
   * @param {Citation} citation
   * @param {string} text the block's whole text so far
   */
  cite(citation, text) {
    this.citations.push(citation);
    const at = markAt(citation, text);
    if (at === null) return;
    const piece = this.pieces.find((p) => p.start < at && at <= p.end);
    if (piece) {
      this.renderRange(piece.el, text, piece.start, piece.end);
      this.counted();
    } else if (at > this.committed && at <= this.committed + this.tailSource.length) {
      this.renderRange(this.tail, text, this.committed, this.committed + this.tailSource.length);
      this.counted();
    }
  }
}

/**
 * A data block's value as one line of text: a string as is, an object's `message`/`status`/
 * `text`/`label` string if it has one, else compact JSON (cut at 300 characters).
 * @param {any} value
 */
export function dataText(value) {
  if (typeof value === "string") return value;
  if (value && typeof value === "object" && !Array.isArray(value)) {
    for (const key of ["message", "status", "text", "label"]) {
      if (typeof value[key] === "string") return value[key];
    }
  }
  const json = JSON.stringify(value) ?? "null";
  return json.length > 300 ? `${json.slice(0, 299)}…` : json;
}

/** One block's element and how to bring it up to date. */
class BlockView {
  /**
   * @param {Document} doc
   * @param {number} index
   * @param {Block} block
   * @param {MarkdownRenderer} md
   * @param {{sourceNumber?: number, stepStart?: boolean}} [place]
   *   the source's number among the message's sources; the block starts a new step
   */
  constructor(doc, index, block, md, place = {}) {
    this.index = index;
    this.type = block.type;
    this.step = block.step ?? 0;
    this.renders = 0;
    this.final = false;
    /** How much of the block's text/arguments/output the DOM shows (plain-text blocks). */
    this.shown = 0;
    /** The streamed key this view appends from (plain-text blocks). */
    this.key = streamKey(block);
    const tag = block.type === "reasoning" || block.type === "tool_result" ? "details" : "div";
    const root = el(doc, tag, `block block-${block.type}`);
    root.dataset.blockType = block.type;
    root.dataset.blockIndex = String(index);
    if (block.choice) root.dataset.choice = String(block.choice);
    if (this.step) root.dataset.step = String(this.step);
    if (place.stepStart) {
      // Steps are separated visually: the first block of each later step carries the rule.
      root.classList.add("step-start");
      // (numbered as in the message, the way markdown and `tokenwire tail` label it)
      root.dataset.stepLabel = `Step ${this.step}`;
    }
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
    /** @type {HTMLElement | null} the part an attribute update rewrites (data value, result head) */
    this.live = null;
    /** What the live part shows, to skip updates that change nothing. */
    this.liveShown = "";
    /** @type {number | null} for a source with a span: the index of the text block it cites */
    this.citing = null;

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
      if (block.id) {
        head.append(el(doc, "span", "tool-id", block.id));
        root.dataset.callId = block.id; // pairs it with its tool_result
      }
      root.append(head, this.preformatted(doc, "tool-args"));
    } else if (block.type === "tool_result") {
      // Collapsible; open when it is an error, which is worth seeing.
      this.live = el(doc, "summary", "block-label");
      root.dataset.callId = block.call_id;
      root.append(this.live, this.preformatted(doc, "tool-output"));
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
    } else if (block.type === "file") {
      this.file(doc, /** @type {import("./model.js").FileBlock} */ (block));
      this.renders = 1;
    } else if (block.type === "source") {
      if (place.sourceNumber) root.append(el(doc, "span", "cite-number", `[${place.sourceNumber}] `));
      root.append(el(doc, "span", "block-label", `${LABELS.source} `));
      root.append(safeLink(doc, block.url, block.title || block.url));
      if (block.cited_text) root.append(el(doc, "q", "cited-text", block.cited_text));
      this.renders = 1;
    } else if (block.type === "data") {
      // A live status line: the value is rewritten in place on every update.
      root.dataset.name = block.name;
      root.append(el(doc, "span", "data-name", block.name));
      this.live = el(doc, "span", "data-value");
      root.append(this.live);
    }
    this.refresh(block);
  }

  /**
   * A `<pre><code>` whose text node takes the streamed text.
   * @param {Document} doc
   * @param {string} className
   */
  preformatted(doc, className) {
    const pre = el(doc, "pre", className);
    const code = el(doc, "code");
    this.plain = doc.createTextNode("");
    code.append(this.plain);
    pre.append(code);
    return pre;
  }

  /**
   * A file: an image preview for image media types (http(s) or an image data URL), a link for
   * http(s) URLs, else its name only (a `data:` link of any other type is never made).
   * @param {Document} doc
   * @param {import("./model.js").FileBlock} block
   */
  file(doc, block) {
    const root = this.root;
    const name = block.name || (block.url.startsWith("data:") ? "embedded file" : block.url);
    root.append(el(doc, "span", "block-label", `${LABELS.file} `));
    root.append(safeLink(doc, block.url, name, "file-name"));
    root.append(el(doc, "span", "file-type", ` ${block.media_type}`));
    if (/^image\//i.test(block.media_type) && SAFE_URL.test(block.url)) {
      const img = /** @type {HTMLImageElement} */ (el(doc, "img", "file-preview"));
      img.alt = name;
      img.src = block.url;
      root.append(img);
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
      const source = this.key === null ? "" : String(/** @type {any} */ (block)[this.key] ?? "");
      if (source.length > this.shown) {
        // Append only what is new: O(new text), and the DOM text node is never rebuilt.
        this.plain.appendData(source.slice(this.shown));
        this.shown = source.length;
        this.renders += 1;
      }
    }
    if (final) this.markFinal();
  }

  /**
   * Shows the block's attributes that `block.update` may change — also on an ended block (a
   * data value, a tool result's error flag, redacted reasoning).
   * @param {Block} block
   */
  refresh(block) {
    let shown = "";
    if (block.type === "data") {
      shown = dataText(block.value);
    } else if (block.type === "tool_result") {
      shown = `${block.error ? "error" : "ok"}\u0000${block.name ?? ""}\u0000${block.call_id}`;
    } else if (block.type === "reasoning") {
      if (block.redacted) this.root.dataset.redacted = "";
      return;
    } else {
      return;
    }
    if (shown === this.liveShown || !this.live) return;
    this.liveShown = shown;
    this.renders += 1;
    if (block.type === "data") {
      this.live.textContent = shown;
      return;
    }
    const result = /** @type {import("./model.js").ToolResultBlock} */ (block);
    const doc = this.root.ownerDocument;
    this.root.classList.toggle("tool-error", Boolean(result.error));
    if (result.error) this.root.setAttribute("open", "");
    this.live.replaceChildren(`${result.error ? LABELS.tool_error : LABELS.tool_result} `);
    this.live.append(el(doc, "code", "tool-name", result.name ?? "(unnamed)"));
    if (result.call_id) this.live.append(el(doc, "span", "tool-id", result.call_id));
  }

  /**
   * Adds a citation to this (text) block.
   * @param {Citation} citation
   * @param {Block} block
   */
  cite(citation, block) {
    if (this.markdown) this.markdown.cite(citation, "text" in block ? (block.text ?? "") : "");
  }

  /** From now on the streamed content is never touched again. */
  markFinal() {
    this.final = true;
    this.root.dataset.final = "";
    if (this.label && this.type === "reasoning") this.label.textContent = "Reasoning";
  }
}

/**
 * Shows transient app data (`transient` ops) for a moment in `element`; never kept anywhere.
 */
export class TransientStatus {
  /**
   * @param {HTMLElement} element
   * @param {{ttlMs?: number}} [options] how long a value stays shown (default 4 s)
   */
  constructor(element, options = {}) {
    this.element = element;
    this.ttlMs = options.ttlMs ?? 4000;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.timer = null;
    element.hidden = true;
  }

  /** @param {Op} op a `transient` op */
  show(op) {
    const name = typeof op.name === "string" ? op.name : "";
    this.element.textContent = name ? `${name}: ${dataText(op.value)}` : dataText(op.value);
    this.element.dataset.name = name;
    this.element.hidden = false;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.clear(), this.ttlMs);
  }

  clear() {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.element.hidden = true;
    this.element.textContent = "";
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
    /** @type {Set<number>} blocks whose attributes a `block.update` changed */
    this.updated = new Set();
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
    this.clearViews();
    this.ended.clear();
    this.allEnded = false;
    this.message = null;
  }

  /** Drops every block element; the next flush builds them all again from the message. */
  clearViews() {
    this.container.replaceChildren();
    this.views = [];
    this.dirty.clear();
    this.updated.clear();
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
      case "block.update":
        this.updated.add(op.index);
        break;
      case "step.reset":
        this.dropStep(op.step, message);
        break;
      case "message.end":
        this.allEnded = true;
        for (let i = 0; i < message.blocks.length; i++) this.dirty.add(i);
        break;
      case "snapshot":
        // A snapshot may follow a reset (fewer or other blocks than shown): start over. It does
        // not say which blocks are still open: treat them all as open until their block.end
        // (or message.end) arrives.
        if (this.views.length > 0) this.clearViews();
        this.ended.clear();
        if (message.status !== "in_progress") this.allEnded = true;
        for (let i = 0; i < message.blocks.length; i++) this.dirty.add(i);
        break;
      default:
        return;
    }
    this.request();
  }

  /**
   * `step.reset`: removes exactly the elements of that step's blocks (the last ones), at once.
   * @param {number} step
   * @param {Message} message already without them
   */
  dropStep(step, message) {
    const length = message.blocks.length;
    for (const set of [this.dirty, this.updated, this.ended]) {
      for (const i of set) if (i >= length) set.delete(i);
    }
    const removed = [];
    while (this.views.length > length && this.views[this.views.length - 1].step === step) {
      const view = /** @type {BlockView} */ (this.views.pop());
      view.root.remove();
      removed.push(view);
    }
    // Anything else (not the last blocks; a citation on a kept block) is beyond what a reset
    // normally does: rebuild from the message rather than show something stale.
    const cited = removed.some((v) => v.citing !== null && v.citing < length);
    if (this.views.length > length || cited) {
      this.clearViews();
      for (let i = 0; i < length; i++) this.dirty.add(i);
    }
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
    let sources = this.views.reduce((n, v) => n + (v.type === "source" ? 1 : 0), 0);
    for (let i = this.views.length; i < message.blocks.length; i++) {
      const block = message.blocks[i];
      const previous = this.views[i - 1];
      const place = {
        sourceNumber: block.type === "source" ? ++sources : undefined,
        stepStart: i > 0 && (block.step ?? 0) > (previous?.step ?? 0),
      };
      const view = new BlockView(doc, i, block, this.md, place);
      this.views.push(view);
      this.container.append(view.root);
      this.dirty.add(i);
      this.updated.delete(i);
      const source = block.type === "source" ? /** @type {import("./model.js").SourceBlock} */ (block) : null;
      const span = source?.span;
      if (source && span && typeof span.block === "number" && span.block < i && place.sourceNumber) {
        view.citing = span.block;
        const target = this.views[span.block];
        const cited = message.blocks[span.block];
        target?.cite(
          {
            n: place.sourceNumber,
            url: source.url,
            title: source.title,
            start: Number(span.start) || 0,
            end: Number(span.end) || 0,
            at: null,
            source: i,
          },
          cited,
        );
      }
    }
    for (const i of [...this.dirty].sort((a, b) => a - b)) {
      const view = this.views[i];
      const block = message.blocks[i];
      if (view && block) view.update(block, this.allEnded || this.ended.has(i));
    }
    for (const i of this.updated) {
      const block = message.blocks[i];
      if (block) this.views[i]?.refresh(block);
    }
    this.dirty.clear();
    this.updated.clear();
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
    let sources = 0;
    const fresh = message.blocks.map((block, index) => {
      const place = {
        sourceNumber: block.type === "source" ? ++sources : undefined,
        stepStart: index > 0 && (block.step ?? 0) > (message.blocks[index - 1].step ?? 0),
      };
      const view = new BlockView(doc, index, block, this.md, place);
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
