// @ts-check
/**
 * Markdown for model output: markdown-it (raw HTML off) then DOMPurify, plus the stable-boundary
 * rule that lets a streaming block be rendered in pieces.
 */
import createDOMPurify from "dompurify";
import MarkdownIt from "markdown-it";

/** A fence opener or closer: up to 3 spaces, then 3+ backticks or tildes. */
const FENCE = /^( {0,3})(`{3,}|~{3,})(.*)$/;
/** A line that may continue the block before it even after a blank line. */
const CONTINUATION = /^(?:[ \t]|[-+*][ \t]|[-+*]$|\d{1,9}[.)](?:[ \t]|$))/;

/**
 * Every stable boundary in `text` after `from`, in order.
 *
 * A boundary is the start of a line where Markdown parsing can restart without changing how the
 * text before it renders, whatever follows: outside any fenced code block, and either
 * - right after a closing fence (opened at column 0), or
 * - after a blank line, at a line that starts flush left and is not a list item (a list or an
 *   indented continuation would otherwise be cut in two).
 * `from` must itself be a boundary (or 0).
 * @param {string} text
 * @param {number} [from]
 * @returns {Generator<number>}
 */
export function* boundaries(text, from = 0) {
  /** @type {{char: string, length: number, indent: number} | null} */
  let fence = null;
  let prevBlank = false;
  let pos = from;
  for (;;) {
    const nl = text.indexOf("\n", pos);
    const line = nl === -1 ? text.slice(pos) : text.slice(pos, nl);
    // A line start is a boundary as soon as its first character is known.
    const decided = nl !== -1 || !/^\d{1,9}$/.test(line); // "12" may still become "12. item"
    if (!fence && prevBlank && /^\S/.test(line) && decided && !CONTINUATION.test(line)) {
      yield pos;
    }
    if (nl === -1) return;
    const m = FENCE.exec(line.replace(/\r$/, ""));
    if (fence) {
      if (m && m[2][0] === fence.char && m[2].length >= fence.length && m[3].trim() === "") {
        const column0 = fence.indent === 0;
        fence = null;
        if (column0) yield nl + 1;
      }
      prevBlank = false;
    } else {
      if (m && !(m[2][0] === "`" && m[3].includes("`"))) {
        fence = { char: m[2][0], length: m[2].length, indent: m[1].length };
      }
      prevBlank = /^\s*$/.test(line);
    }
    pos = nl + 1;
  }
}

/**
 * The offset of the last stable boundary in `text` after `from` (`from` itself if none).
 * @param {string} text
 * @param {number} [from]
 * @returns {number}
 */
export function stableBoundary(text, from = 0) {
  let last = from;
  for (const b of boundaries(text, from)) last = b;
  return last;
}

/**
 * Splits `text` at every stable boundary: the pieces incremental rendering produces at most.
 * @param {string} text
 * @returns {string[]}
 */
export function splitStable(text) {
  const parts = [];
  let start = 0;
  for (const b of boundaries(text)) {
    if (b > start) parts.push(text.slice(start, b));
    start = b;
  }
  if (start < text.length) parts.push(text.slice(start));
  return parts;
}

/**
 * @typedef {{
 *   render(src: string): string,
 *   renderInto(target: Element, src: string): void,
 *   sanitize(html: string): string,
 * }} MarkdownRenderer
 */

/**
 * A Markdown-to-safe-HTML renderer. `window` is the DOM to sanitize with (the page's own in a
 * browser, a jsdom window in Node).
 * @param {any} [win]
 * @returns {MarkdownRenderer}
 */
export function createMarkdown(win = globalThis.window) {
  const md = new MarkdownIt({ html: false, linkify: true, breaks: false });
  // A reference definition may come after its use, which would make a piece's rendering depend
  // on text after it; without them every piece renders on its own (definitions show as text).
  md.disable("reference");
  const options = { USE_PROFILES: { html: true }, FORBID_TAGS: ["style", "form", "input"] };
  // Configured once (setConfig): passing a config on every call makes DOMPurify re-parse it,
  // which costs more than sanitizing a short tail. One instance returns strings, one DOM nodes.
  const toString = sanitizer(win, options);
  const toFragment = sanitizer(win, { ...options, RETURN_DOM_FRAGMENT: true });
  /** @param {string} html */
  const sanitize = (html) => /** @type {string} */ (toString.sanitize(html));
  return {
    render: (src) => sanitize(md.render(src)),
    // Straight to DOM nodes: no serializing the sanitized tree and parsing it again.
    renderInto: (target, src) => target.replaceChildren(toFragment.sanitize(md.render(src))),
    sanitize,
  };
}

/**
 * A DOMPurify instance with a fixed configuration; links open in a new tab, without opener.
 * @param {any} win
 * @param {Record<string, unknown>} config
 */
function sanitizer(win, config) {
  const purify = createDOMPurify(win);
  purify.setConfig(config);
  purify.addHook("afterSanitizeAttributes", (node) => {
    if (node.tagName === "A" && node.getAttribute("href")) {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer nofollow");
    }
  });
  return purify;
}
