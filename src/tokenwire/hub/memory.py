"""The in-process hub: one op log per stream in this process's memory."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence

from tokenwire.errors import BadCursor, OutOfOrder, StreamEnded, StreamExists
from tokenwire.hub.base import (
    MAX_BATCH,
    CancelRequest,
    Cursor,
    Hub,
    PositionCursor,
    Signal,
    StreamInfo,
    StreamNotFound,
    TransientBuffer,
)
from tokenwire.protocol import EncodedOp, Message, apply_op, snapshot_op
from tokenwire.protocol.ops import apply_op_with_open


class _Log:
    """One stream: retained ops plus the state needed to serve readers that fell behind."""

    __slots__ = (
        "base_message",
        "base_open",
        "base_seq",
        "cancel",
        "created_at",
        "finished_at",
        "id",
        "msg",
        "msg_seq",
        "ops",
        "owner",
        "status",
        "transients",
        "wake",
    )

    def __init__(self, stream_id: str, owner: str | None) -> None:
        self.id = stream_id
        self.owner = owner
        self.created_at = time.time()
        self.ops: list[EncodedOp] = []  # seqs base_seq+1, base_seq+2, ...
        self.base_seq = 0  # last seq dropped from the front of ``ops`` (live trimming)
        # The message as of base_seq: only needed once the log is trimmed (made then).
        self.base_message: Message | None = None
        # Its blocks still open (a snapshot says which); made on the first trim (an empty
        # set per idle stream would cost ~0.2 KiB: bench "RSS per idle open stream").
        self.base_open: set[int] | None = None
        self.msg: Message | None = None  # lazily made and caught up, as of msg_seq
        self.msg_seq = 0
        self.status = "in_progress"
        self.finished_at: float | None = None  # monotonic time of message.end
        self.wake = Signal()  # fired on every append
        self.cancel = CancelRequest()
        self.transients: TransientBuffer | None = None  # made on the first transient op

    @property
    def seq(self) -> int:
        return self.base_seq + len(self.ops)

    def current_message(self) -> Message:
        """Apply the ops not yet folded into the cached message (pay on read, not on append)."""
        msg = self.msg
        if self.msg_seq < self.base_seq:
            assert self.base_message is not None  # (base_seq > 0 only after a trim)
            msg = self.msg = self.base_message.copy()
            self.msg_seq = self.base_seq
        elif msg is None:
            msg = self.msg = Message.empty(self.id, None)
        for op in self.ops[self.msg_seq - self.base_seq :]:
            apply_op(msg, op.op)
        self.msg_seq = self.seq
        return msg

    def trim(self, keep: int) -> None:
        """Drop all but the newest ``keep`` ops, folding the dropped ones into base_message."""
        drop = len(self.ops) - keep
        if drop <= 0:
            return
        if self.base_message is None:
            self.base_message = Message.empty(self.id, None)
        if self.base_open is None:
            self.base_open = set()
        for op in self.ops[:drop]:
            apply_op_with_open(self.base_message, op.op, self.base_open)
        del self.ops[:drop]
        self.base_seq += drop


class MemoryCursor(PositionCursor):
    __slots__ = ("_log",)

    def __init__(self, log: _Log, after: int) -> None:
        super().__init__(after, log.transients)
        self._log = log

    async def read(self, timeout: float | None = None) -> list[EncodedOp]:
        log = self._log
        while not self._done:
            if self._pos < log.base_seq:
                # What this reader needs next was trimmed: hand it the state instead.
                assert log.base_message is not None  # (base_seq > 0 only after a trim)
                message = log.base_message.copy()
                return self._deliver([snapshot_op(message, log.base_seq, log.base_open)])
            start = self._pos - log.base_seq
            if start < len(log.ops):
                batch = log.ops[start : start + MAX_BATCH]
                return self._deliver(self._with_transients(log.transients, batch))
            if log.transients is not None:
                batch = self._with_transients(log.transients, [])
                if batch:
                    return self._deliver(batch)
            if log.finished_at is not None:  # nothing after message.end
                self._done = True
                break
            if not await log.wake.wait(timeout):
                return []
        return []


class MemoryHub(Hub):
    """Op logs in this process. Readers are cursors into a shared list, so fan-out is free.

    ``retention_s``: how long a finished stream stays resumable. ``max_log_ops``: if set, a live
    stream keeps only about this many recent ops; readers further behind get a snapshot.
    """

    def __init__(self, *, retention_s: float = 600.0, max_log_ops: int | None = None) -> None:
        self.retention_s = retention_s
        self.max_log_ops = max_log_ops
        self._logs: dict[str, _Log] = {}
        self._active: dict[str, tuple[str, float]] = {}  # chat key -> (stream id, deadline)
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="memory-hub-sweeper")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def _sweep_forever(self) -> None:
        interval = min(max(self.retention_s / 2, 0.05), 30.0)
        while True:
            await asyncio.sleep(interval)
            self.sweep()

    def sweep(self) -> None:
        """Forget finished streams older than the retention time."""
        now = time.monotonic()
        expired = [
            sid
            for sid, log in self._logs.items()
            if log.finished_at is not None and now - log.finished_at >= self.retention_s
        ]
        for sid in expired:
            del self._logs[sid]
        for key in [k for k, (_, deadline) in self._active.items() if deadline <= now]:
            del self._active[key]

    def _get(self, stream_id: str) -> _Log | None:
        log = self._logs.get(stream_id)
        finished = log.finished_at if log is not None else None
        if finished is not None and time.monotonic() - finished >= self.retention_s:
            del self._logs[stream_id]
            return None
        return log

    def _require(self, stream_id: str) -> _Log:
        log = self._get(stream_id)
        if log is None:
            raise StreamNotFound(stream_id)
        return log

    async def create(self, stream_id: str, *, owner: str | None) -> None:
        if stream_id in self._logs:
            raise StreamExists(f"stream {stream_id!r} already exists")
        self._logs[stream_id] = _Log(stream_id, owner)

    async def append(self, stream_id: str, ops: Sequence[EncodedOp]) -> None:
        if not ops:
            return
        log = self._logs.get(stream_id)
        if log is None:
            raise StreamNotFound(stream_id)
        if log.finished_at is not None:
            raise StreamEnded(f"stream {stream_id!r} already ended")
        expected = log.seq + 1
        if ops[0].seq != expected:
            raise OutOfOrder(f"stream {stream_id!r}: expected seq {expected}, got {ops[0].seq}")
        log.ops.extend(ops)
        last = ops[-1]
        if last.type == "message.end":
            log.status = log.current_message().status
            log.finished_at = time.monotonic()
        elif self.max_log_ops is not None and len(log.ops) > 2 * self.max_log_ops:
            log.trim(self.max_log_ops)  # amortized: trim in big steps, not per append
        log.wake.fire()

    async def publish_transient(self, stream_id: str, op: EncodedOp) -> None:
        log = self._logs.get(stream_id)
        if log is None:
            raise StreamNotFound(stream_id)
        if log.finished_at is not None:
            return  # nobody is live after the end
        if log.transients is None:
            log.transients = TransientBuffer()
        log.transients.add(op)
        log.wake.fire()

    async def info(self, stream_id: str) -> StreamInfo | None:
        log = self._get(stream_id)
        if log is None:
            return None
        return StreamInfo(log.id, log.owner, log.status, log.seq, log.created_at)

    async def message(self, stream_id: str) -> tuple[StreamInfo, Message] | None:
        log = self._get(stream_id)
        if log is None:
            return None
        info = StreamInfo(log.id, log.owner, log.status, log.seq, log.created_at)
        return info, log.current_message().copy()

    async def subscribe(self, stream_id: str, after: int) -> Cursor:
        log = self._require(stream_id)
        if after < 0 or after > log.seq:
            raise BadCursor(f"after={after} is outside 0..{log.seq}")
        return MemoryCursor(log, after)

    async def request_cancel(self, stream_id: str) -> None:
        self._require(stream_id).cancel.set()

    async def wait_cancel(self, stream_id: str) -> None:
        await self._require(stream_id).cancel.wait()

    def watch_cancel(self, stream_id: str, callback: Callable[[], None]) -> Callable[[], None]:
        log = self._get(stream_id)
        return _nothing if log is None else log.cancel.watch(callback)

    async def set_active(self, chat_key: str, stream_id: str, ttl_s: float) -> None:
        self._active[chat_key] = (stream_id, time.monotonic() + ttl_s)

    async def get_active(self, chat_key: str) -> str | None:
        found = self._active.get(chat_key)
        if found is None or found[1] <= time.monotonic():
            return None
        return found[0]

    async def clear_active(self, chat_key: str, stream_id: str) -> None:
        found = self._active.get(chat_key)
        if found is not None and found[0] == stream_id:
            del self._active[chat_key]

    def __len__(self) -> int:
        return len(self._logs)


def _nothing() -> None:
    pass
