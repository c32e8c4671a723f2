// @ts-check
/**
 * Incremental Server-Sent Events parser (the WHATWG event-stream rules we need): CR, LF and CRLF
 * line ends, multi-line `data`, comments, `id`, `event`, `retry`, and UTF-8 split across reads.
 */

/**
 * @typedef {{id: string | null, event: string, data: string}} SseEvent
 */

export class SseParser {
  constructor() {
    this.decoder = new TextDecoder("utf-8");
    /** Text received but not yet terminated by a line end. */
    this.buffer = "";
    /** A CR ended the previous chunk, so a leading LF in the next one belongs to it. */
    this.pendingCR = false;
    /** @type {string[]} */
    this.data = [];
    this.event = "";
    /** @type {string | null} */
    this.id = null;
    this.sawData = false;
    /** @type {number | null} */
    this.retry = null;
  }

  /**
   * Feeds bytes (or already-decoded text) and returns the events completed by them.
   * @param {Uint8Array | string} chunk
   * @returns {SseEvent[]}
   */
  feed(chunk) {
    let text = typeof chunk === "string" ? chunk : this.decoder.decode(chunk, { stream: true });
    if (text === "") return []; // an empty read must not forget a pending CR
    if (this.pendingCR && text.startsWith("\n")) text = text.slice(1);
    this.pendingCR = false;
    this.buffer += text;
    /** @type {SseEvent[]} */
    const events = [];
    let start = 0;
    // Each terminator is searched for again only once passed, so a large read (a resume that
    // catches up on a backlog) costs linear time even when it has no CR at all.
    let cr = this.buffer.indexOf("\r");
    let lf = this.buffer.indexOf("\n");
    for (;;) {
      if (cr !== -1 && cr < start) cr = this.buffer.indexOf("\r", start);
      if (lf !== -1 && lf < start) lf = this.buffer.indexOf("\n", start);
      let end;
      if (cr === -1 && lf === -1) break;
      if (cr === -1 || (lf !== -1 && lf < cr)) end = lf;
      else end = cr;
      const line = this.buffer.slice(start, end);
      if (this.buffer[end] === "\r") {
        if (end + 1 === this.buffer.length) {
          this.pendingCR = true;
          start = end + 1;
        } else {
          start = this.buffer[end + 1] === "\n" ? end + 2 : end + 1;
        }
      } else {
        start = end + 1;
      }
      const event = this.line(line);
      if (event) events.push(event);
    }
    this.buffer = this.buffer.slice(start);
    return events;
  }

  /**
   * @param {string} line
   * @returns {SseEvent | null}
   */
  line(line) {
    if (line === "") {
      if (!this.sawData) {
        this.event = "";
        return null;
      }
      const event = { id: this.id, event: this.event || "message", data: this.data.join("\n") };
      this.data = [];
      this.event = "";
      this.sawData = false;
      return event;
    }
    if (line.startsWith(":")) return null;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") {
      this.data.push(value);
      this.sawData = true;
    } else if (field === "event") {
      this.event = value;
    } else if (field === "id") {
      if (!value.includes("\0")) this.id = value;
    } else if (field === "retry") {
      if (/^\d+$/.test(value)) this.retry = Number(value);
    }
    return null;
  }
}
