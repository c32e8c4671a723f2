// @ts-check
/** Bundled into the benchmark page: feeds ops straight into a renderer, no network. */
import { createMarkdown } from "../src/markdown.js";
import { applyOp, emptyMessage } from "../src/model.js";
import { MessageView, NaiveView } from "../src/render.js";

const markdown = createMarkdown(window);

/**
 * Renders `ops` in `mode`; every `flushEvery` ops the renderer brings the DOM up to date and a
 * layout is forced, as a browser frame would. Returns the scripting and layout time (ms, timed
 * in the page), the final answer's text and the number of DOM writes.
 * @param {"incremental" | "naive"} mode
 * @param {any[]} ops
 * @param {number} flushEvery
 */
function run(mode, ops, flushEvery) {
  const out = /** @type {HTMLElement} */ (document.getElementById("answer"));
  out.replaceChildren();
  const view =
    mode === "naive"
      ? new NaiveView(out, { markdown })
      : new MessageView(out, { markdown, schedule: () => {} }); // frames are driven below
  let message = emptyMessage();
  let script = 0;
  let layout = 0;
  ops.forEach((op, i) => {
    const t0 = performance.now();
    message = applyOp(message, op);
    view.update(op, message);
    const frame = (i + 1) % flushEvery === 0 || i === ops.length - 1;
    if (frame && view instanceof MessageView) {
      view.pending = false;
      view.flush();
    }
    const t1 = performance.now();
    script += t1 - t0;
    if (frame) {
      void out.offsetHeight; // the frame's style and layout
      layout += performance.now() - t1;
    }
  });
  return { script, layout, text: out.textContent, renders: view.renderCount };
}

Object.assign(window, { bench: { run } });
