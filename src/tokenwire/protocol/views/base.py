"""What every view shares: the op input it relies on, the frame it emits, the message state it
keeps, and the log-level functions (replay, resume at a cursor, compacted catch-up).

Input contract. A view reads ops as JSON, never as ``tokenwire.protocol.ops`` classes, so it
works with the v1 op set and with the v1.1 ops (``block.update``, ``step.reset``,
``transient``) whether or not the op classes for the latter exist yet. Anything with
``.seq`` (int) and ``.json`` (the op's JSON bytes) is an op: an ``EncodedOp``, or a ``RawOp``
built here from a JSON-lines log. Only the decoded JSON is used, following protocol v1.1
(docs/protocol.md and the shared contract): ``message.start``, ``block.start``,
``block.delta`` (no seq; no index = the newest block), ``block.end``, ``message.end``,
``snapshot``, ``block.update`` (shallow-merge ``set`` into a block's attrs), ``step.reset``
(drop the trailing blocks of step S), ``transient`` (live-only app data; same seq as the op
before it). Unknown op types are ignored.

Frames. A view turns each op into zero or more ``Frame``s. Every frame that comes from a
logged op has a dense ``index`` (0, 1, 2, ... over the whole log), so a frame's index is a
pure function of the log: replaying the log and skipping the first N frames gives exactly the
frames a live reader got after its N-th. Transient frames have ``index=None`` and never count.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import msgspec

from tokenwire.errors import BadCursor

DEFAULT_MAX_FRAME_BYTES = 64 * 1024
DEFAULT_THRESHOLD = 64  # frames behind before a reader gets a compacted catch-up

_decode_json = msgspec.json.Decoder(dict[str, Any]).decode
encode_json = msgspec.json.Encoder().encode

# Block type -> the key its streamed text lives under (v1.1; unknown types take deltas in "text").
STREAM_KEYS: dict[str, str | None] = {
    "text": "text",
    "reasoning": "text",
    "refusal": "text",
    "tool_call": "arguments",
    "tool_result": "output",
    "image": None,
    "source": None,
    "file": None,
    "data": None,
}


class OpLike(Protocol):
    """What a view needs from an op: its seq and its JSON bytes (an ``EncodedOp`` fits)."""

    @property
    def seq(self) -> int: ...

    @property
    def json(self) -> bytes: ...


class RawOp(msgspec.Struct, frozen=True, gc=False):
    """An op as stored: its seq (deltas carry none in their JSON) and its JSON bytes."""

    seq: int
    json: bytes


def ops_from_jsonl(lines: Iterable[bytes | str]) -> list[RawOp]:
    """Read a JSON-lines op log, counting seqs the protocol's way: a delta is the previous op's
    seq + 1, and a ``transient`` keeps the seq of the op before it (it never advances it)."""
    out: list[RawOp] = []
    seq = 0
    for line in lines:
        data = line.encode() if isinstance(line, str) else line
        data = data.strip()
        if not data:
            continue
        op = _decode_json(data)
        kind = op.get("type")
        if kind == "transient":
            pass
        elif kind == "block.delta":
            seq += 1
        else:
            seq = int(op.get("seq") or seq + 1)
        out.append(RawOp(seq, data))
    return out


class Frame(msgspec.Struct, gc=False):
    """One unit a view sends: ``data`` is its wire bytes (an SSE event, or ``data: [DONE]``).

    ``index`` is the frame's place in the log's full frame sequence (``None`` for transient
    frames and for frames of a state-based catch-up other than its last); ``seq`` is the seq of
    the op that produced it. ``merge`` names what consecutive frames may be merged into one
    (same key: their ``path`` strings concatenate), ``body`` is the JSON payload to re-render.
    """

    index: int | None
    seq: int
    data: bytes
    body: Any = None
    merge: tuple[Any, ...] | None = None
    path: tuple[Any, ...] = ()
    cursor: bool = True  # whether the frame carries its SSE id
    # Views whose SSE ids are op seqs (openai): a frame of an op that has more frames after
    # it is the op's ``part``-th, and its id says so (``<seq>.<part>``); 0: the op's last.
    part: int = 0
    # The block whose text the frame carries, where a view says (openai: so that a catch-up
    # can leave out the text of an attempt a step reset superseded).
    owner: Any = None  # (a BlockState)


class BlockState:
    """One block of the message as a view sees it (type, choice, step, attrs, streamed text)."""

    __slots__ = (
        "attrs",
        "choice",
        "ended",
        "key",
        "length",
        "parts",
        "step",
        "superseded",
        "type",
    )

    def __init__(self, block: dict[str, Any]) -> None:
        self.type: str = str(block.get("type", "text"))
        self.choice: int = int(block.get("choice") or 0)
        self.step: int = int(block.get("step") or 0)
        self.key: str | None = STREAM_KEYS.get(self.type, "text")
        if self.type not in STREAM_KEYS and "text" not in block:
            self.key = None
        self.attrs = {
            k: v for k, v in block.items() if k not in ("type", "choice", "step", self.key)
        }
        text = block.get(self.key) if self.key else None
        self.parts: list[str] = [str(text)] if text else []
        self.length = len(self.parts[0]) if self.parts else 0  # (``text``'s, without joining)
        self.ended = False
        self.superseded = False  # dropped by a step reset (an attempt that was superseded)

    @property
    def text(self) -> str:
        if len(self.parts) > 1:
            self.parts = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""


CITING = frozenset({"source"})
"""Blocks that start while the block before them is still open (a citation inside its text:
the text's end lists its citations, so it comes after them)."""


class MessageState:
    """The message as rebuilt from op JSON (the v1.1 rules), for views and catch-up."""

    def __init__(self) -> None:
        self.id: str | None = None
        self.model: str | None = None
        self.status = "in_progress"
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.blocks: list[BlockState] = []
        self.seq = 0
        self.started = False
        # Open blocks that may have ended: a snapshot that does not say which blocks are open
        # leaves the last block of each choice open on a guess (``load``).
        self.unsure: set[int] = set()

    def apply(self, op: dict[str, Any], seq: int) -> None:
        kind = op.get("type")
        if kind == "transient":
            return
        self.seq = seq
        if kind == "block.delta":
            block = self.blocks[int(op.get("index", -1))]
            text = op.get("text", "")
            block.parts.append(text)
            block.length += len(text)
        elif kind == "block.start":
            self.blocks.append(BlockState(op["block"]))
        elif kind == "block.end":
            index = int(op["index"])
            self.blocks[index].ended = True
            if self.unsure:
                self.unsure.discard(index % len(self.blocks))
        elif kind == "block.update":
            block = self.blocks[int(op["index"])]
            for k, v in (op.get("set") or {}).items():
                if k not in ("type", "choice", "step", block.key):
                    block.attrs[k] = v
        elif kind == "step.reset":
            step = int(op.get("step") or 0)
            while self.blocks and self.blocks[-1].step == step:
                self.blocks.pop().superseded = True
            if self.unsure:
                self.unsure.intersection_update(range(len(self.blocks)))
        elif kind == "message.start":
            self.started = True
            self.id, self.model = op.get("id"), op.get("model")
        elif kind == "message.end":
            self.status = op.get("status", "completed")
            self.finish_reason = op.get("finish_reason")
            self.usage, self.error = op.get("usage"), op.get("error")
        elif kind == "snapshot":
            self.load(op["message"], op.get("open"))

    def load(self, message: dict[str, Any], open_blocks: list[int] | None = None) -> None:
        """Replace the state with a canonical message (a ``snapshot`` op's payload; its
        ``open``: the indexes of the blocks still open, when the snapshot says)."""
        self.started = True
        self.id, self.model = message.get("id"), message.get("model")
        self.status = message.get("status", "in_progress")
        self.finish_reason = message.get("finish_reason")
        self.usage, self.error = message.get("usage"), message.get("error")
        self.blocks = [BlockState(b) for b in message.get("blocks", [])]
        ended = self.status != "in_progress"
        self.unsure = set()
        if not ended and isinstance(open_blocks, list):
            still = set(open_blocks)
            for index, block in enumerate(self.blocks):
                block.ended = index not in still
            return
        # A snapshot that does not say which blocks are still open: the last block of each
        # choice other than a citation may be (blocks end in order, except parallel tool
        # calls); the rest have ended.
        last: dict[int, int] = {}
        if not ended:
            for index, block in enumerate(self.blocks):
                if block.type not in CITING:
                    last[block.choice] = index
        self.unsure = set(last.values())
        for index, block in enumerate(self.blocks):
            block.ended = index not in self.unsure

    @property
    def ended(self) -> bool:
        return self.status != "in_progress"


def decode(op: OpLike) -> dict[str, Any]:
    """The op's JSON as a dict (the only form views read)."""
    return _decode_json(op.json)


_CLOSING = frozenset({"block.start", "step.reset", "message.end"})
"""Ops after which a block a snapshot left open on a guess is taken as ended."""


class View(abc.ABC):
    """A state machine from ops to frames of another wire format.

    ``feed(op)`` returns the frames for one op (in order, indexed densely over the log);
    ``close()`` returns what is owed when the op stream ends without ``message.end`` (nothing,
    for most views). Subclasses implement ``_on(op, seq)`` calling ``_emit`` per frame and
    ``render(frame)`` (its wire bytes), and may override ``compacted`` to rebuild a catch-up
    from state instead of merging the log's frames.
    """

    media_type = "text/event-stream"

    WHOLE_BLOCKS: frozenset[str] = frozenset()
    """Block types whose value this format sends whole (not split in a catch-up)."""

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.state = MessageState()
        self.next_index = 0
        self._out: list[Frame] = []
        self.done = False

    # -- feeding -------------------------------------------------------------------------
    def feed(self, op: OpLike) -> list[Frame]:
        return self.feed_json(decode(op), op.seq)

    def feed_json(self, op: dict[str, Any], seq: int) -> list[Frame]:
        self._out = []
        self._transient = op.get("type") == "transient"
        self._seq = seq
        kind = op.get("type")
        if kind == "snapshot":
            self._on_snapshot(op, seq)
        elif kind == "block.end" and self._mends_ends and self._ended(op):
            # (a block a mid-connection snapshot already ended: its end was sent)
            self.state.apply(op, seq)
        else:
            if self.state.unsure and self._mends_ends and kind in _CLOSING:
                self._end_unsure(op, seq)
            self._on(op, seq)  # views see the state before the op (e.g. a reset's blocks)
            self.state.apply(op, seq)
        out, self._out = self._out, []
        if len(out) > 1 and self._cursor_per_op:
            # An op's earlier frames carry ``<seq>.<k>`` (k of its frames delivered), so a
            # reconnect after any of them resumes inside the op, not at its first frame again.
            delivered = 0
            for frame in out[:-1]:
                if is_logged(frame):
                    delivered += 1
                    if frame.cursor and frame.index is not None:
                        frame.part = delivered
                        frame.data = self.render(frame)
        return out

    _cursor_per_op = False

    _mends_ends = True
    """After a snapshot: send no second end for a block it ended, and end a block it left
    open on a guess (it did not say which were open) before anything that shows the block
    is over: another block, a step reset, the message's end (clients of these formats need
    every part or item ended once, in order). Off for the ops view: it passes the log's ops
    on as they are."""

    def _end_unsure(self, op: dict[str, Any], seq: int) -> None:
        """End the blocks left open on a guess that ``op`` shows are over: all of them at a
        step reset or the message's end; at another block's start, those of its choice
        (none for a citation, which comes inside its text)."""
        state = self.state
        ending = set(state.unsure)
        if op.get("type") == "block.start":
            block = op.get("block") or {}
            if block.get("type") in CITING:
                return
            choice = int(block.get("choice") or 0)
            ending = {i for i in ending if state.blocks[i].choice == choice}
        for index in sorted(ending):
            if not state.blocks[index].ended:
                end = {"type": "block.end", "index": index}
                self._on(end, seq)
                state.apply(end, seq)
        state.unsure -= ending

    def _ended(self, op: dict[str, Any]) -> bool:
        index = op.get("index")
        blocks = self.state.blocks
        return type(index) is int and -len(blocks) <= index < len(blocks) and blocks[index].ended

    @abc.abstractmethod
    def fork(self) -> View:
        """A fresh view with the same settings."""

    def _on_snapshot(self, op: dict[str, Any], seq: int) -> None:
        """A snapshot (a reader fallen out of the retained log). At the start of a
        connection this view becomes a fresh one fed the ops that rebuild the snapshot's
        message; mid-connection it is fed only what the snapshot adds to what its reader
        already has (resending the whole message would repeat its text). Either way its
        frames continue this view's numbering (so, after a snapshot, indexes are this
        connection's own, not the log's)."""
        from tokenwire.protocol.views.synth import (  # synth builds on this module
            continuation_ops,
            state_ops,
        )

        state = MessageState()
        state.apply(op, seq)
        if self.state.started:
            for o in continuation_ops(self.state, state, self._synth_bound(), self.WHOLE_BLOCKS):
                self._on(o, seq)
                self.state.apply(o, seq)
            self.state.seq = seq
            self.state.unsure = set(state.unsure)
            return
        fresh = self.fork()
        frames = [
            f
            for o in state_ops(state, self._synth_bound(), self.WHOLE_BLOCKS)
            for f in fresh.feed_json(o, seq)
        ]
        start = self.next_index
        self.__dict__.update(fresh.__dict__)
        self.state.unsure = set(state.unsure)
        self.next_index = start
        for frame in frames:
            if frame.index is not None:
                frame.index = self.next_index
                self.next_index += 1
                frame.data = self.render(frame)
        self._out = frames
        self._seq = seq

    def state_frames(self, max_frame_bytes: int) -> list[Frame]:
        """The compacted frames of this view's current state (one start per block, its text
        in as few deltas as ``max_frame_bytes`` allows). Only the last frame carries a cursor:
        the index of this view's last frame, so a reader cut inside a catch-up replays it."""
        from tokenwire.protocol.views.synth import state_ops  # synth builds on this module

        fresh = self.fork()
        fresh.max_frame_bytes = max_frame_bytes
        seq = self.state.seq
        frames = [
            f
            for o in state_ops(self.state, fresh._synth_bound(), self.WHOLE_BLOCKS)
            for f in fresh.feed_json(o, seq)
            if is_logged(f)
        ]
        for frame in frames:
            frame.index, frame.cursor = None, False
        last = [f for f in frames if f.body is not None]
        if last and self.next_index:
            last[-1].index, last[-1].cursor = self.next_index - 1, True
        for frame in frames:
            frame.data = self.render(frame)
        return frames

    def close(self) -> list[Frame]:
        return []

    @abc.abstractmethod
    def _on(self, op: dict[str, Any], seq: int) -> None:
        """Turn one op (decoded JSON, with its seq) into this view's frames."""

    @abc.abstractmethod
    def render(self, frame: Frame) -> bytes:
        """The wire bytes of ``frame`` (from its body, index, seq and cursor)."""

    _split_deltas = True
    """Split a text delta whose frame would pass ``max_frame_bytes`` into several frames (each
    with its own index). Off for the ops view: a frame there is one op, which has one seq."""

    def _emit(
        self,
        body: Any,
        merge: tuple[Any, ...] | None = None,
        path: tuple[Any, ...] = (),
    ) -> None:
        # (a cheap length test first: the per-token path never measures)
        if merge is not None and self._split_deltas and len(_get(body, path)) * 6 > self._room:
            self._emit_split(body, merge, path)
            return
        self._emit_one(body, merge, path)

    def _synth_bound(self) -> int | None:
        """The bound that ops rebuilding a state split their text by: none where the view
        splits every delta at its frame's exact room (fewer, fuller frames); the ops view's
        frame is one op, so its ops come split."""
        return None if self._split_deltas else self.max_frame_bytes

    @property
    def _room(self) -> int:
        return self.max_frame_bytes - _ENVELOPE_SLACK

    def _emit_split(self, body: Any, merge: tuple[Any, ...], path: tuple[Any, ...]) -> None:
        """A delta frame too big for the bound, as several frames with consecutive indexes
        (a deterministic function of the op and the bound), each at most the bound (as long
        as the bound leaves room for one character past the frame's envelope)."""
        text = _get(body, path)
        probe = Frame(self.next_index, self._seq, b"", body, merge, path)
        if len(self.render(probe)) <= self.max_frame_bytes:
            self._emit_one(body, merge, path)
            return
        probe.body = _set(body, path, "")
        budget = self.max_frame_bytes - len(self.render(probe)) - _ID_SLACK
        for piece in split_escaped(text, max(1, budget)):
            self._emit_one(_set(body, path, piece), merge, path)

    def _emit_one(self, body: Any, merge: tuple[Any, ...] | None, path: tuple[Any, ...]) -> None:
        if self._transient:
            index = None
        else:
            index = self.next_index
            self.next_index += 1
        frame = Frame(index, self._seq, b"", body, merge, path)
        frame.data = self.render(frame)
        self._out.append(frame)

    def _emit_done(self, indexed: bool = True) -> None:
        """The ``data: [DONE]`` frame (body ``None``). Unindexed for clients that do not
        count it as a chunk (the AI SDK's parser drops it): it then always closes a stream's
        frames without taking an index."""
        if indexed:
            self._emit(None)
            return
        frame = Frame(None, self._seq, b"", None)
        frame.data = self.render(frame)
        self._out.append(frame)

    # -- catch-up ------------------------------------------------------------------------
    def catch_up(
        self,
        ops: Iterable[OpLike],
        *,
        after: int = -1,
        after_seq: int | None = None,
        after_part: int = 0,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> list[Frame]:
        """Feed ``ops`` (the log so far) and return the compacted frames after frame index
        ``after``: runs of consecutive deltas of one part merged into one frame each (never
        past ``max_frame_bytes``), every other frame as is. Each merged frame carries the
        index of the last frame it covers, so its cursor stays exact. The view is left ready
        to ``feed`` the next live op. ``after_seq`` instead resumes after an op seq (the
        cursor of views whose SSE ids are op seqs)."""
        frames = [f for op in ops for f in self.feed(op) if is_logged(f)]
        exact = _after(frames, after, after_seq, after_part)
        return self.compacted(exact, after, after_seq, max_frame_bytes)

    def compacted(
        self, frames: list[Frame], after: int, after_seq: int | None, max_frame_bytes: int
    ) -> list[Frame]:
        """The catch-up for a view already fed the log: ``frames`` are the log's frames after
        the reader's cursor. By default, runs of deltas merged (``compact``)."""
        return self.compact(frames, max_frame_bytes)

    def compact(self, frames: Sequence[Frame], max_frame_bytes: int) -> list[Frame]:
        """Runs of consecutive deltas merged (``_joins`` says which frames may share one),
        each run into frames within the bound. A merged frame covers a contiguous stretch of
        frames and takes the last one's index: every cursor stays exact."""
        out: list[Frame] = []
        run: list[Frame] = []
        keys: dict[Any, Frame] = {}  # each merge key in the run -> its first frame
        size = 0
        for frame in frames:
            if frame.merge is None:
                if run:
                    out.extend(self._merged(run, max_frame_bytes))
                    run, keys = [], {}
                out.append(frame)
                continue
            extra = self._joins(keys, frame) if run else None
            if extra is not None:
                # A merged frame's size: its envelope plus every piece's JSON-escaped text.
                grow = _text_bytes(frame) + extra
                if size + grow <= max_frame_bytes:
                    run.append(frame)
                    keys.setdefault(frame.merge, frame)
                    size += grow
                    continue
            if run:
                out.extend(self._merged(run, max_frame_bytes))
            # The envelope as rendered, plus room for the merged frame's own id line (it
            # takes the run's last index / seq / cursor, longer than the first frame's).
            run, keys = [frame], {frame.merge: frame}
            size = len(self.render(frame)) + _ID_SLACK
        if run:
            out.extend(self._merged(run, max_frame_bytes))
        return out

    def _joins(self, keys: dict[Any, Frame], frame: Frame) -> int | None:
        """Whether ``frame`` may join a run of the merge ``keys`` (key -> its first frame):
        ``None`` if not, else the bytes it adds to the merged frame besides its text. Here:
        runs of one key."""
        return 0 if frame.merge in keys else None

    def _merged(self, run: list[Frame], max_frame_bytes: int) -> list[Frame]:
        """``run`` merged into one frame, or into halves until each fits the bound (the
        running estimate above is close, not exact: the wire bytes decide)."""
        merged = self._merge(run)
        if len(merged.data) <= max_frame_bytes or len(run) == 1:
            return [merged]
        half = len(run) // 2
        return self._merged(run[:half], max_frame_bytes) + self._merged(run[half:], max_frame_bytes)

    def _merge(self, run: list[Frame]) -> Frame:
        if len(run) == 1:
            return run[0]
        last = run[-1]
        text = "".join(_get(f.body, f.path) for f in run)
        body = _set(last.body, last.path, text)
        frame = Frame(
            last.index, last.seq, b"", body, last.merge, last.path, last.cursor, last.part
        )
        frame.data = self.render(frame)
        return frame


_ID_SLACK = 32
"""Room for an SSE id line (``id: <up to 20 digits>\\n``) a frame may gain or grow."""
_ENVELOPE_SLACK = 1024
"""Below this many bytes under the bound, a delta's frame is measured (``View._emit``)."""


def split_escaped(text: str, budget: int) -> list[str]:
    """``text`` in pieces whose JSON-escaped size (without quotes) is at most ``budget``
    bytes (at least one character each, so a budget under one character's size still ends).

    Linear: the text is escaped once and its escaped bytes are cut, each cut moved back to
    the nearest boundary between characters (a cut inside a UTF-8 character or an escape
    does not decode), and each piece decoded back. (Measuring pieces by re-encoding them,
    a binary search per piece, took ~1 s of one event loop for a 15 MB op read by 8 views.)"""
    escaped = encode_json(text)[1:-1]
    size = len(escaped)
    if size <= budget:
        return [text] if text else []
    pieces: list[str] = []
    start = 0
    while start < size:
        cut = min(size, start + budget)
        while True:
            while start < cut < size and escaped[cut] & 0xC0 == 0x80:
                cut -= 1  # (a UTF-8 continuation byte: inside a character)
            if cut <= start:  # not one character fits: take the first whole one
                cut = start + 1
                while True:
                    piece = _decoded_or_none(escaped[start:cut])
                    if piece is not None:
                        break
                    cut += 1
                break
            piece = _decoded_or_none(escaped[start:cut])
            if piece is not None:
                break
            cut -= 1  # inside an escape (at most 5 bytes back)
        pieces.append(piece)
        start = cut
    return pieces


_decode_str = msgspec.json.Decoder(str).decode


def _decoded_or_none(content: bytes) -> str | None:
    """A JSON string's escaped content, decoded; ``None`` if it is cut inside a character."""
    try:
        return _decode_str(b'"' + content + b'"')
    except msgspec.DecodeError:
        return None


def _text_bytes(frame: Frame) -> int:
    return len(encode_json(_get(frame.body, frame.path))) - 2  # without the quotes


def _get(body: Any, path: tuple[Any, ...]) -> str:
    for key in path:
        body = body[key]
    return body  # type: ignore[no-any-return]


def _set(body: Any, path: tuple[Any, ...], value: str) -> Any:
    """A copy of ``body`` with the string at ``path`` replaced (copies only along the path)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    clone = list(body) if isinstance(body, list) else dict(body)
    clone[head] = _set(body[head], rest, value)
    return clone


# -- log-level functions (what routes call) ------------------------------------------------
def replay(view: View, ops: Iterable[OpLike]) -> list[Frame]:
    """Every frame ``view`` produces for ``ops`` (transient frames included), plus ``close()``
    when the log has no ``message.end``."""
    out = [f for op in ops for f in view.feed(op)]
    if not view.done:
        out.extend(view.close())
    return out


def frames_after(
    make_view: Callable[[], View], ops: Iterable[OpLike], start_index: int
) -> tuple[list[Frame], View]:
    """The log's frames from index ``start_index`` on (a negative index counts from the tail,
    as the Workflow transport's ``startIndex``), and the view, ready for the next live op.
    Transient frames are not in the log, so none is returned; an unindexed ``[DONE]`` closes
    the frames of an ended stream."""
    view = make_view()
    frames = [f for op in ops for f in view.feed(op) if is_logged(f)]
    indexed = [f for f in frames if f.index is not None]
    if start_index < 0:
        start_index = max(0, len(indexed) + start_index)
    return [f for f in frames if f.index is None or f.index >= start_index], view


def tail_index(frames_total: int) -> int:
    """The index of the last frame so far (``x-workflow-stream-tail-index``); -1 when none."""
    return frames_total - 1


def catch_up(
    make_view: Callable[[], View],
    ops: Iterable[OpLike],
    *,
    after: int = -1,
    after_seq: int | None = None,
    after_part: int = 0,
    threshold: int = DEFAULT_THRESHOLD,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
) -> tuple[list[Frame], View]:
    """The frames a reader resuming after frame index ``after`` gets, and the view to feed
    the live ops with: exact frames when it is at most ``threshold`` frames behind, the
    view's compacted catch-up otherwise. ``after_seq`` resumes after an op seq instead (a
    ``Last-Event-ID`` of the openai and ops views); with ``after_part`` = k, inside the next
    op, after its first k frames (an openai ``Last-Event-ID`` of ``<seq>.<k>``)."""
    view = make_view()
    logged = [f for op in ops for f in view.feed(op) if is_logged(f)]
    exact = _after(logged, after, after_seq, after_part)
    if len(exact) <= threshold:
        return exact, view
    return view.compacted(exact, after, after_seq, max_frame_bytes), view


def is_logged(frame: Frame) -> bool:
    """Frames a resumed reader gets: logged ones and an unindexed ``[DONE]`` (not transient)."""
    return frame.index is not None or frame.body is None


def _after(
    frames: list[Frame], after: int, after_seq: int | None, after_part: int = 0
) -> list[Frame]:
    if after_seq is not None:
        rest = [f for f in frames if f.seq > after_seq]
        if after_part:  # (inside op after_seq + 1: its first frames were delivered)
            inside = sum(1 for f in rest[: after_part + 1] if f.seq == after_seq + 1)
            if inside <= after_part:  # (its k-th frame is its last, or it has no such frame)
                raise BadCursor(
                    f"op {after_seq + 1} has no frame {after_seq + 1}.{after_part} "
                    f"({inside} frame(s) in this view)"
                )
            rest = rest[after_part:]
        return rest
    return [f for f in frames if f.index is None or f.index > after]
