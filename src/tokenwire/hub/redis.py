"""The shared hub: op logs in Redis Streams, so several gateway processes serve one stream.

Per tokenwire stream (all keys share the hash tag ``{stream_id}``, hence one Cluster slot):

- ``tw:{id}:log``   stream; entry ID ``<seq>-1``, field ``op`` = the op's encoded JSON bytes
  (stored once by the producer, handed out unchanged by every process), trimmed with
  ``MAXLEN ~ max_log_ops`` while live.
- ``tw:{id}:meta``  hash: status, seq, owner, created_at, producer, cancel flag, and a
  snapshot (``snap`` = canonical message JSON as of ``snap_seq``, ``snap_open`` = its open
  blocks) refreshed every ``max_log_ops // 4`` ops and at the end, so a reader behind the
  trimmed log gets a snapshot and the final message survives the log; an older one
  (``snap_prev`` as of ``snap_prev_seq``) is kept while the trimmed log still goes on from it.
- ``tw:{id}:lease`` string with a TTL, held and renewed by the producing process.

Plus ``tw:active`` (zset of in-progress ids scored by lease deadline, for the watchdog) and
the pub/sub channel ``tw:cancel``. All writes to a stream go through one Lua script that checks
the seq, so a revived producer and the watchdog can never both end a stream.

Each process runs one blocking ``XREAD`` task per stream it serves (on its own connection
pool), one pub/sub connection for cancel requests, one lease renewer and one watchdog.

With a cluster URL (``redis://h1:p1,h2:p2/?cluster=true``) the same hub runs on a Redis Cluster
(``tokenwire.hub.redis_keys``): per-stream keys and scripts unchanged (one slot per stream), the
lease index and the cancel channel sharded over the masters (``SPUBLISH``), blocking reads sent
to the node of the stream's slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ClusterError, MaxConnectionsError, RedisClusterException, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tokenwire.errors import BadCursor, OutOfOrder, StreamEnded, StreamExists
from tokenwire.hub import redis_keys
from tokenwire.hub.base import (
    CancelRequest,
    Cursor,
    Hub,
    HubUnavailable,
    StreamInfo,
    StreamNotFound,
)
from tokenwire.hub.redis_feed import MAX_BATCH, Feed, RedisCursor
from tokenwire.hub.redis_keys import ClusterKeys, cluster_client, is_cluster_url
from tokenwire.hub.redis_scripts import (
    APPEND,
    CANCEL,
    CREATE,
    RENEW,
    TAKEOVER,
    Keys,
    after_id,
    entry_id,
)
from tokenwire.protocol import (
    BlockEnd,
    EncodedOp,
    Message,
    MessageEnd,
    MessageStart,
    apply_op,
    encode,
    snapshot_op,
)
from tokenwire.protocol.ops import apply_op_with_open

__all__ = ["HubUnavailable", "RedisHub", "TakenOver"]

log = logging.getLogger("tokenwire.hub.redis")
# How often the cancel listener re-reads the cancel flags of the streams it watches.
_CANCEL_SWEEP_S = 2.0

# (Cluster: ClusterDownError / "TTL exhausted" after a MOVED storm are ClusterError; no
# reachable node is RedisClusterException; MaxConnectionsError is a ConnectionError.)
_UNAVAILABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    ClusterError,
    RedisClusterException,
)
# Transient ops (v1.1) kept for feeds that are between two XREADs: a few, briefly.
_TRANSIENT_MAXLEN = 64
_TRANSIENT_TTL_MS = 60_000


def _raise_if_cancelled() -> None:
    """Background loops check their own task every round: redis-py can swallow a task's
    cancel inside a command (seen when Redis stalled, came back, and the hub was closed), and
    a loop that goes on would keep ``close()`` waiting for ever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


_IN_PROGRESS = "in_progress"
PRODUCER_LOST = {"message": "producer lost", "type": "producer_lost", "code": None}


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    hosts = parts.netloc.rpartition("@")[2]  # (a cluster URL lists several host:port)
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{hosts}"))


class _Owned:
    """A stream this process produces: its message so far, for snapshots."""

    __slots__ = ("message", "open", "seq", "snap_seq")

    def __init__(self, message: Message, open_blocks: set[int], seq: int, snap_seq: int) -> None:
        self.message = message
        self.open = open_blocks
        self.seq = seq
        self.snap_seq = snap_seq


@dataclass(slots=True, frozen=True)
class TakenOver:
    """A stream this process just took over from a producer that lost its lease: the
    message as of its last seq (``info.seq``), its open blocks, and the resume record the
    original producer stored with it (``set_resume``). See docs/redis.md, "Takeover"."""

    info: StreamInfo
    message: Message
    open_blocks: frozenset[int]
    record: bytes
    epoch: int
    lease_lost_at: float
    """Wall-clock time the lost lease was noticed (the stream's deadline in the active index)."""
    exact: bool = True
    """False if the producer marked its text as not the upstream's raw text (``mark_inexact``)."""


# The meta hash fields ``_load`` reads.
_LOAD_FIELDS = (b"owner", b"status", b"seq", b"created_at", b"snap_seq", b"snap", b"snap_open")
OnTakeover = Callable[[TakenOver], Awaitable[bool]]
# A stream this process's watchdog ended "producer lost": its final info and message, and its
# resume record (``None`` if it had none), so the library stores it and runs ``on_end``.
OnLost = Callable[[StreamInfo, Message, "bytes | None"], Awaitable[None]]


class _CancelWait(CancelRequest):
    """A cancel request plus how many ``wait_cancel`` calls of this process wait for it."""

    __slots__ = ("waiters",)

    def __init__(self) -> None:
        super().__init__()
        self.waiters = 0


class RedisHub(Hub):
    """A ``Hub`` on Redis Streams. See the module docstring for the data layout.

    ``retention_s``: how long a finished stream stays in Redis. ``lease_ttl_s``: the producer
    lease; a stream whose producer stops renewing it is ended ``failed`` ("producer lost")
    within about ``lease_ttl_s + watchdog_interval_s``. ``max_log_ops``: ops kept per live
    stream (readers further behind get a snapshot). ``block_s``: the longest single blocking
    read. ``unavailable_grace_s``: how long readers wait for a lost Redis before their cursors
    end ``failed``.
    """

    kind = "redis"

    def __init__(
        self,
        url: str,
        *,
        retention_s: float = 600.0,
        lease_ttl_s: float = 5.0,
        watchdog_interval_s: float = 1.0,
        max_log_ops: int = 10_000,
        key_prefix: str = "tw",
        block_s: float = 5.0,
        command_timeout_s: float = 5.0,
        connect_timeout_s: float = 2.0,
        unavailable_grace_s: float = 5.0,
        max_reader_connections: int = 512,
        max_command_connections: int = 64,
        local_window: int = 4096,
    ) -> None:
        if max_log_ops < 4:
            raise ValueError("max_log_ops must be at least 4")
        self.url = url
        self.retention_s = retention_s
        self.lease_ttl_s = lease_ttl_s
        self.watchdog_interval_s = watchdog_interval_s
        self.max_log_ops = max_log_ops
        self.snapshot_every = max_log_ops // 4  # < retained ops, so a snapshot is always usable
        self.cluster = is_cluster_url(url)
        self.keys: Any = ClusterKeys(key_prefix) if self.cluster else Keys(key_prefix)
        self.block_s = block_s
        self.command_timeout_s = command_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.unavailable_grace_s = unavailable_grace_s
        self.max_reader_connections = max_reader_connections
        self.max_command_connections = max_command_connections
        self.local_window = local_window
        self.producer_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._redis: Redis | None = None
        self._blocking: Redis | None = None  # XREAD BLOCK only: never starves other commands
        # Cluster: redis-py has no blocking pool there, so the reads wait for a slot here.
        self._read_slots = asyncio.Semaphore(max_reader_connections)
        self._feeds: dict[str, Feed] = {}
        self._owned: dict[str, _Owned] = {}  # state of streams produced here (for snapshots)
        self._leased: set[str] = set()  # streams whose lease this process renews
        # Producer epoch of each stream produced here ("0" when created here): appends carry
        # it, and APPEND refuses them once another process took the stream over (fencing).
        # Kept once fenced, until the stream's writer lets go (``release``): every later append
        # of that writer, even one that reloads the state, is refused as well.
        self._epochs: dict[str, str] = {}
        # Set by ``Streams``: continues a stream whose producer died (None: no takeover, the
        # watchdog ends such streams ``failed``). Returns False when it cannot.
        self.on_takeover: OnTakeover | None = None
        self.on_lost: OnLost | None = None
        self._cancels: dict[str, _CancelWait] = {}
        self._checks: set[asyncio.Task[None]] = set()  # watch_cancel's one-shot flag checks
        self._tasks: list[asyncio.Task[None]] = []
        self._scripts: dict[str, Any] = {}

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        if self._redis is not None:
            return
        common: dict[str, Any] = {
            "socket_connect_timeout": self.connect_timeout_s,
            "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
            "health_check_interval": 15,
        }
        if self.cluster:
            await self._start_cluster(common)
            return
        # Bounded pools that make callers wait for a free connection: a burst of requests
        # (e.g. 1,000 subscribers connecting at once) queues instead of failing.
        commands = BlockingConnectionPool.from_url(
            self.url,
            max_connections=self.max_command_connections,
            timeout=self.command_timeout_s,
            socket_timeout=self.command_timeout_s,
            **common,
        )
        self._redis = Redis(connection_pool=commands)
        pool = BlockingConnectionPool.from_url(
            self.url,
            max_connections=self.max_reader_connections,
            timeout=self.block_s + self.command_timeout_s,
            socket_timeout=self.block_s + self.command_timeout_s,
            **common,
        )
        self._blocking = Redis(connection_pool=pool)
        try:
            await self._redis.ping()
        except _UNAVAILABLE as exc:
            await self._close_clients()
            raise HubUnavailable(f"cannot reach Redis at {redact(self.url)}: {exc}") from None
        try:
            info = await self._redis.info("cluster")
        except ResponseError:  # (INFO refused: not a cluster node, or not ours to ask)
            info = {}
        except _UNAVAILABLE as exc:
            await self._close_clients()
            raise HubUnavailable(f"cannot reach Redis at {redact(self.url)}: {exc}") from None
        if info.get("cluster_enabled"):
            await self._close_clients()
            # Keys of one stream live on different nodes: as a single Redis, every command
            # would meet a MOVED error.
            raise HubUnavailable(
                f"Redis at {redact(self.url)} is a Redis Cluster node: add ?cluster=true to "
                "the URL (docs/operations.md, Redis Cluster)"
            )
        self._start_tasks()

    async def _start_cluster(self, common: dict[str, Any]) -> None:
        self._redis = cluster_client(
            self.url,
            wait_s=self.command_timeout_s,
            max_connections=self.max_command_connections,
            socket_timeout=self.command_timeout_s,
            **common,
        )
        self._blocking = cluster_client(
            self.url,
            max_connections=self.max_reader_connections,  # (per node; bounded by _read_slots)
            socket_timeout=self.block_s + self.command_timeout_s,
            **common,
        )
        try:
            async with asyncio.timeout(self.connect_timeout_s + self.command_timeout_s):
                await self._redis.initialize()
                await self._blocking.initialize()
                await self._redis.ping()
        except (*_UNAVAILABLE, TimeoutError) as exc:
            await self._close_clients()
            raise HubUnavailable(
                f"cannot reach Redis at {redact(self.url)}: {exc or 'no answer'}"
            ) from None
        self._start_tasks()

    def _start_tasks(self) -> None:
        assert self._redis is not None
        for name, source in (
            ("create", CREATE),
            ("append", APPEND),
            ("cancel", CANCEL),
            ("takeover", TAKEOVER),
            ("renew", RENEW),
        ):
            self._scripts[name] = self._redis.register_script(source)
        self._tasks = [
            asyncio.create_task(self._cancel_listener(), name="redis-hub-cancel"),
            asyncio.create_task(self._renew_leases(), name="redis-hub-leases"),
            asyncio.create_task(self._watchdog(), name="redis-hub-watchdog"),
        ]

    async def close(self) -> None:
        feeds = list(self._feeds.values())
        tasks = self._tasks + [f.task for f in feeds if f.task is not None] + list(self._checks)
        self._tasks = []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for feed in feeds:
            if not feed.ended:
                feed.fail("the gateway's hub was closed", "shutdown")
        self._feeds.clear()
        if self._leased and self._redis is not None:
            # Streams still open here will not be finished by us: drop their leases and make
            # them due, so another process's watchdog ends them now rather than after the TTL.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.command_timeout_s):
                    pipe = self._redis.pipeline(transaction=False)
                    pipe.delete(*(self.keys.lease(s) for s in self._leased))
                    self._queue_deadlines(pipe, dict.fromkeys(self._leased, 0))
                    await pipe.execute()
        self._owned.clear()
        self._leased.clear()
        self._epochs.clear()
        await self._close_clients()

    async def _close_clients(self) -> None:
        for client in (self._redis, self._blocking):
            if client is not None:
                with contextlib.suppress(Exception):
                    if self.cluster:  # (its aclose closes every node's connections)
                        await client.aclose()
                    else:
                        await client.aclose(close_connection_pool=True)
        self._redis = self._blocking = None

    async def ping(self) -> None:
        try:
            async with asyncio.timeout(self.connect_timeout_s + 1):
                async with self._unavailable():
                    await self.r.ping()
        except TimeoutError:
            raise HubUnavailable(f"Redis at {redact(self.url)} does not answer") from None

    async def still_producing(self, stream_id: str) -> bool:
        """Whether this process still produces the stream: live, not taken over (its epoch
        unchanged), its lease not another's. Asked before a writer stores its final message,
        so a producer that stalled past its lease does not report a stream another process
        ended or continues. True if Redis cannot say (the append decides then)."""
        keys = self.keys
        try:  # (one command timeout at most: in an outage the append waits its own grace)
            async with asyncio.timeout(self.command_timeout_s), self._unavailable():
                pipe = self.r.pipeline(transaction=False)  # (one slot: the stream's keys)
                pipe.hmget(keys.meta(stream_id), ["status", "epoch"])
                pipe.get(keys.lease(stream_id))
                (status, epoch), lease = await pipe.execute()
        except (HubUnavailable, TimeoutError):
            return True
        if status is None:  # (Redis lost the stream: the writer keeps its own version)
            return True
        if _text(status) != _IN_PROGRESS:
            return False
        if self._epoch_moved(stream_id, epoch):
            return False
        return lease is None or _text(lease) == self.producer_id

    def _epoch_moved(self, stream_id: str, epoch: bytes | str | None) -> bool:
        """Whether the stream's epoch (its meta field, as read) is no longer this process's:
        another process took it over."""
        return _text(epoch or b"0") != self._epochs.get(stream_id, "0")

    async def release(self, stream_id: str) -> None:
        self._owned.pop(stream_id, None)
        # The writer is done with the stream: its epoch (kept after a fencing, see ``append``)
        # is not needed any more.
        self._epochs.pop(stream_id, None)
        if stream_id not in self._leased:
            return
        self._leased.discard(stream_id)
        # Make the stream due now, if the lease is still this process's (not a taker's, after
        # a stall); if Redis is unreachable the lease simply runs out.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.command_timeout_s):
                lease = self.keys.lease(stream_id)
                if await self.r.eval(_DELETE_IF, 1, lease, self.producer_id):
                    pipe = self.r.pipeline(transaction=False)
                    self._queue_deadlines(pipe, {stream_id: 0})
                    await pipe.execute()

    # -- the lease index: one zset (single node) or its shards (cluster) -------------------
    def _queue_deadlines(self, pipe: Any, deadlines: dict[str, int]) -> None:
        """Add ``ZADD``s of ``deadlines`` to a pipeline: one per index shard touched."""
        if not self.cluster:
            pipe.zadd(self.keys.active, deadlines)
            return
        for shard, ids in self.keys.by_shard(deadlines).items():
            pipe.zadd(self.keys.active(shard), {i: deadlines[i] for i in ids})

    def _active_key(self, stream_id: str) -> str:
        return self.keys.active_of(stream_id) if self.cluster else self.keys.active

    async def _forget_active(self, stream_id: str) -> None:
        await self.r.zrem(self._active_key(stream_id), stream_id)

    @property
    def r(self) -> Redis:
        if self._redis is None:
            raise HubUnavailable("the Redis hub is not started")
        return self._redis

    @property
    def _noticed_s(self) -> float:
        """How long past its block time a blocking read may go unanswered before it counts
        as failed: a command's socket timeout and two reconnects (docs/operations.md,
        Partitions)."""
        return self.command_timeout_s + 2 * self.connect_timeout_s

    @property
    def call_timeout_s(self) -> float:
        """The longest one hub call waits for Redis before it raises ``HubUnavailable``: a
        command's socket timeout, retried twice after a reconnect bounded by the connect
        timeout. Enforced as a whole, because in a stall redis-py's reconnect handshake also
        reads with the socket timeout and is retried: a create then took 10 socket timeouts."""
        return 3 * self.command_timeout_s + 2 * self.connect_timeout_s

    @contextlib.asynccontextmanager
    async def _unavailable(self) -> AsyncIterator[None]:
        """Turn connection trouble into ``HubUnavailable`` (503 for the gateway), and bound
        the wait (``call_timeout_s``; redis-py drops a connection whose command is cut)."""
        try:
            async with asyncio.timeout(self.call_timeout_s):
                yield
        except TimeoutError:  # (before _UNAVAILABLE: TimeoutError is an OSError)
            raise HubUnavailable(
                f"Redis at {redact(self.url)} did not answer within {self.call_timeout_s:g} s"
            ) from None
        except _UNAVAILABLE as exc:
            raise HubUnavailable(f"Redis unavailable at {redact(self.url)}: {exc}") from None

    # -- writing -------------------------------------------------------------------------
    def _live_expiry_ms(self) -> int:
        """TTL of a live stream's keys: renewed with the lease, so they only run out once
        nobody produces the stream any more (then after a lease plus the retention)."""
        return int((self.lease_ttl_s + self.retention_s) * 1000)

    async def create(self, stream_id: str, *, owner: str | None) -> None:
        keys = self.keys
        token = secrets.token_hex(8)  # this call's: a retried script recognizes its own work
        async with self._unavailable():
            # In the lease index first: should the create go through but its reply be lost (a
            # stall), a watchdog still finds the stream once its lease runs out and ends it
            # "producer lost", instead of it staying in progress with nobody to end it.
            active = self._active_key(stream_id)
            indexed = await self.r.zadd(active, {stream_id: self._lease_deadline_ms()}, nx=True)
            created = await self._scripts["create"](
                keys=[keys.meta(stream_id), keys.lease(stream_id)],
                args=[
                    owner or "",
                    "1" if owner is not None else "0",
                    repr(time.time()),
                    self.producer_id,
                    int(self.lease_ttl_s * 1000),
                    token,
                    self._live_expiry_ms(),
                ],
            )
            if not created:
                if indexed:  # (only the entry this call added: never another stream's)
                    await self.r.zrem(active, stream_id)
                raise StreamExists(f"stream {stream_id!r} already exists")
            self._owned[stream_id] = _Owned(Message.empty(stream_id, None), set(), 0, 0)
            self._leased.add(stream_id)
            self._epochs[stream_id] = "0"

    async def set_resume(self, stream_id: str, record: bytes) -> None:
        """Keep what another process needs to continue the stream (its request, never the
        caller's credentials) in the stream's meta hash: it expires with the stream."""
        async with self._unavailable():
            await self.r.hset(self.keys.meta(stream_id), "resume", record)

    async def set_record(self, stream_id: str, record: bytes) -> None:
        """Keep the record of a stream that is not to be continued elsewhere (its metadata):
        the process that ends it if its producer dies stores it with that (``on_lost``)."""
        async with self._unavailable():
            await self.r.hset(self.keys.meta(stream_id), "record", record)

    async def mark_inexact(self, stream_id: str) -> None:
        """The stream's text stopped being the upstream's raw text (reasoning split out of its
        content): a process that takes it over must not ask the upstream to continue it."""
        async with self._unavailable():
            await self.r.hset(self.keys.meta(stream_id), "inexact", 1)

    def _lease_deadline_ms(self) -> int:
        return int((time.time() + self.lease_ttl_s) * 1000)

    async def append(self, stream_id: str, ops: Sequence[EncodedOp]) -> None:
        if not ops:
            return
        own = self._owned.get(stream_id)
        if own is None:  # appending from a process that did not create it: load its state
            loaded = await self._load(stream_id)
            if loaded is None:
                raise StreamNotFound(stream_id)
            info, message, open_blocks, snap_seq = loaded
            own = _Owned(message, open_blocks, info.seq, snap_seq)
            if ops[0].seq <= info.seq and stream_id in self._leased:
                # This process produces it: the retry of an append whose reply was lost?
                ops = await self._not_in_log(stream_id, ops, info.seq)
                if not ops:  # it went through (its last op is the log's last): go on from there
                    self._appended(stream_id, own, info.status != _IN_PROGRESS)
                    return
            if info.status != _IN_PROGRESS:
                raise StreamEnded(f"stream {stream_id!r} already ended")
            if ops[0].seq != own.seq + 1 and stream_id in self._epochs:
                # This process produced it, and lost its state (its lease renewal found it
                # taken over): fenced, not a seq mismatch (as APPEND checks the epoch first).
                async with self._unavailable():
                    epoch = await self.r.hget(self.keys.meta(stream_id), "epoch")
                if self._epoch_moved(stream_id, epoch):
                    self._leased.discard(stream_id)
                    raise StreamEnded(f"stream {stream_id!r} was taken over by another process")
        if ops[0].seq != own.seq + 1:
            raise OutOfOrder(f"stream {stream_id!r}: expected seq {own.seq + 1}, got {ops[0].seq}")
        # Local state first (for the snapshot); on any failure it is dropped and reloaded.
        self._owned.pop(stream_id, None)
        for item in ops:
            apply_op_with_open(own.message, item.op, own.open)
        last = ops[-1]
        end_status = own.message.status if last.type == "message.end" else ""
        snap = b""
        if end_status or last.seq - own.snap_seq >= self.snapshot_every:
            snap = own.message.to_json()
        epoch = self._epochs.get(stream_id, "")
        result = await self._run_append(stream_id, ops, end_status, snap, own.open, False, epoch)
        code, status, seq = result
        if code == 1 or (code == 0 and status == (end_status or _IN_PROGRESS) and seq == last.seq):
            # (the second case: a retried script whose first run had gone through)
            own.seq = last.seq
            if snap:
                own.snap_seq = last.seq
            if end_status:
                with contextlib.suppress(HubUnavailable, *_UNAVAILABLE):
                    await self._forget_active(stream_id)
            self._appended(stream_id, own, bool(end_status))
            return
        if code == 3:  # another process took it over: this producer is fenced off
            # The epoch stays (until ``release``): the failed end the writer writes next
            # reloads the state and, were it sent without the epoch, APPEND would not check
            # it, so it could end the taker's stream (its seq fits until the taker writes).
            self._leased.discard(stream_id)
            raise StreamEnded(f"stream {stream_id!r} was taken over by another process")
        if code == -1:
            self._leased.discard(stream_id)
            raise StreamNotFound(stream_id)
        if status != _IN_PROGRESS:
            self._leased.discard(stream_id)  # e.g. the watchdog ended it while we stalled
            raise StreamEnded(f"stream {stream_id!r} already ended ({status})")
        raise OutOfOrder(f"stream {stream_id!r}: expected seq {seq + 1}, got {ops[0].seq}")

    def _appended(self, stream_id: str, own: _Owned, ended: bool) -> None:
        """This producer's ops are in the log: keep its state for the next append, or let the
        stream go once they ended it."""
        if ended:
            self._leased.discard(stream_id)
            self._epochs.pop(stream_id, None)
        else:
            self._owned[stream_id] = own
            self._leased.add(stream_id)  # (already there unless we loaded the state)

    async def _not_in_log(
        self, stream_id: str, ops: Sequence[EncodedOp], seq: int
    ) -> Sequence[EncodedOp]:
        """The ops after the log's last ``seq`` when those up to it are already there byte for
        byte: an append retried after its reply was lost (a Redis stall, a cut connection)
        went through, and must not fail the stream on its seq check. Otherwise (another
        producer's ops at or after those seqs, a trimmed log) all of ``ops``, for the usual
        checks to refuse."""
        if seq > ops[-1].seq:
            return ops
        async with self._unavailable():
            entries = await self.r.xrange(
                self.keys.log(stream_id), entry_id(ops[0].seq), entry_id(seq)
            )
        kept = [fields.get(b"op") for _, fields in entries]
        done = seq - ops[0].seq + 1
        return ops[done:] if kept == [op.json for op in ops[:done]] else ops

    async def _run_append(
        self,
        stream_id: str,
        ops: Sequence[EncodedOp],
        end_status: str,
        snap: bytes,
        open_blocks: set[int],
        unless_leased: bool,
        epoch: str = "",
    ) -> tuple[int, str, int]:
        args: list[Any] = [
            ops[0].seq,
            self.max_log_ops,
            end_status,
            snap,
            ",".join(map(str, sorted(open_blocks))) if snap else "",  # read only with a snap
            int(self.retention_s * 1000),
            "1" if unless_leased else "0",
            epoch,
        ]
        args.extend(op.json for op in ops)
        async with self._unavailable():
            reply = await self._scripts["append"](keys=self.keys.stream(stream_id), args=args)
        if reply[0] == -1:
            return -1, "", 0
        return int(reply[0]), _text(reply[1]), int(reply[2])

    # -- reading -------------------------------------------------------------------------
    async def info(self, stream_id: str) -> StreamInfo | None:
        async with self._unavailable():
            raw = await self.r.hmget(
                self.keys.meta(stream_id), ["owner", "status", "seq", "created_at"]
            )
        if raw[1] is None:
            return None
        return StreamInfo(
            stream_id,
            _text(raw[0]) if raw[0] is not None else None,
            _text(raw[1]),
            int(raw[2]),
            float(raw[3]),
        )

    async def message(self, stream_id: str) -> tuple[StreamInfo, Message] | None:
        loaded = await self._load(stream_id)
        if loaded is None:
            return None
        return loaded[0], loaded[1]

    async def _load(self, stream_id: str) -> tuple[StreamInfo, Message, set[int], int] | None:
        """Info, message, open blocks and snapshot seq, from the snapshot plus the ops after it."""
        meta_key, log_key = self.keys.meta(stream_id), self.keys.log(stream_id)
        for _ in range(8):  # retried only if the log was trimmed between our two reads
            async with self._unavailable():  # (not ``snap_prev``: a second copy of the message)
                values = await self.r.hmget(meta_key, _LOAD_FIELDS)
            pairs = zip(_LOAD_FIELDS, values, strict=True)
            meta = {name: value for name, value in pairs if value is not None}
            if b"status" not in meta:
                return None
            info = StreamInfo(
                stream_id,
                _text(meta[b"owner"]) if b"owner" in meta else None,
                _text(meta[b"status"]),
                int(meta[b"seq"]),
                float(meta[b"created_at"]),
            )
            snap_seq = int(meta.get(b"snap_seq", 0))
            if snap_seq:
                message = Message.from_dict(msgspec.json.decode(meta[b"snap"]))
                open_blocks = {int(i) for i in _text(meta.get(b"snap_open", b"")).split(",") if i}
            else:
                message = Message.empty(stream_id, None)
                open_blocks = set()
            if snap_seq < info.seq:
                async with self._unavailable():
                    entries = await self.r.xrange(log_key, after_id(snap_seq), entry_id(info.seq))
                ops = [_op_from_entry(entry_id, fields) for entry_id, fields in entries]
                if not ops or ops[0].seq != snap_seq + 1 or ops[-1].seq != info.seq:
                    continue
                for item in ops:
                    apply_op_with_open(message, item.op, open_blocks)
            return info, message, open_blocks, snap_seq
        raise HubUnavailable(f"stream {stream_id!r}: log kept changing under the reader")

    async def subscribe(self, stream_id: str, after: int) -> Cursor:
        info = await self.info(stream_id)
        if info is None:
            raise StreamNotFound(stream_id)
        if after < 0 or after > info.seq:
            raise BadCursor(f"after={after} is outside 0..{info.seq}")
        feed = self._feeds.get(stream_id)
        if feed is None or feed.failure is not None:
            ended = info.status != _IN_PROGRESS
            feed = Feed(stream_id, info.seq, ended=ended, window=self.local_window)
            if not ended:
                async with self._unavailable():  # live from here: later transients (v1.1)
                    feed.tid = await self._last_transient_id(self.keys.transient(stream_id))
                self._feeds[stream_id] = feed
        cursor = RedisCursor(feed, after, self._catch_up, grace_s=self.unavailable_grace_s)
        if not feed.ended and feed.task is None:
            feed.task = asyncio.create_task(self._read_feed(feed), name=f"xread-{stream_id}")
        return cursor

    async def _catch_up(self, stream_id: str, after: int) -> list[EncodedOp]:
        """Ops after ``after`` straight from Redis, or a snapshot if they were trimmed."""
        async with self._unavailable():
            entries = await self.r.xrange(
                self.keys.log(stream_id), after_id(after), "+", count=MAX_BATCH
            )
            ops = [_op_from_entry(entry_id, fields) for entry_id, fields in entries]
            if ops and ops[0].seq == after + 1:
                return ops
            snap, snap_seq, snap_open, prev, prev_seq, prev_open = await self.r.hmget(
                self.keys.meta(stream_id),
                ["snap", "snap_seq", "snap_open", "snap_prev", "snap_prev_seq", "snap_prev_open"],
            )
        # The older snapshot if the log still goes on from it (``ops[0]``: the oldest op kept):
        # every cursor after it stays exact (a view reads from the start to reach its cursor).
        # (Should the log be trimmed past it while a reader reads on, that reader gets the
        # newer snapshot next: a view's read_log then starts over from it.)
        if prev is not None and int(prev_seq) > after and ops and ops[0].seq <= int(prev_seq) + 1:
            snap, snap_seq, snap_open = prev, prev_seq, prev_open
        if snap is not None and int(snap_seq) > after:
            message = Message.from_dict(msgspec.json.decode(snap))
            opened = None
            if snap_open is not None:
                opened = [int(i) for i in _text(snap_open).split(",") if i]
            return [snapshot_op(message, int(snap_seq), opened)]
        raise StreamNotFound(f"stream {stream_id} is no longer in Redis")

    async def _read_feed(self, feed: Feed) -> None:
        """The one blocking reader of a stream in this process: XREAD -> the local window."""
        key = self.keys.log(feed.id)
        tkey = self.keys.transient(feed.id)
        failing_since: float | None = None
        delay = 0.05
        try:
            while feed.cursors > 0 and not feed.ended:
                _raise_if_cancelled()
                block_s = self.block_s
                if failing_since is not None:  # (a healthy Redis answers within what is left)
                    left = failing_since + self.unavailable_grace_s - time.monotonic()
                    block_s = min(block_s, max(left, 0.001))
                block_ms = max(1, int(block_s * 1000))
                try:
                    # A blocking-read connection first (waiting for one is queueing, not an
                    # outage); then the read as a whole is bounded: behind a silent partition
                    # redis-py's reconnects each wait their socket timeout, and are retried (a
                    # reader waited minutes past its grace).
                    await self._read_slot()
                    try:
                        async with asyncio.timeout(block_s + self._noticed_s):
                            reply = await self._xread(feed, key, tkey, block_ms)
                    finally:
                        self._read_slots.release()
                    if not reply and await self.r.hget(self.keys.meta(feed.id), "status") is None:
                        feed.fail(f"stream {feed.id} is no longer in Redis", "stream_lost")
                        return
                except _UNAVAILABLE as exc:  # (TimeoutError too: it is an OSError)
                    now = time.monotonic()
                    failing_since = failing_since or now
                    if now - failing_since >= self.unavailable_grace_s:
                        feed.fail(
                            f"lost connection to Redis at {redact(self.url)}", "hub_unavailable"
                        )
                        why = str(exc) or f"no answer within {block_s + self._noticed_s:g} s"
                        log.warning("stream %s: reader gave up: %s", feed.id, why)
                        return
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                failing_since = None
                delay = 0.05
                for name, entries in reply or ():
                    if _text(name) == key:
                        feed.push([_op_from_entry(eid, fields) for eid, fields in entries])
                    elif entries:
                        feed.tid = entries[-1][0]
                        feed.push_transients([EncodedOp.from_json(f[b"op"]) for _, f in entries])
        except Exception as exc:
            # Anything else (a corrupt entry, a Redis error reply) must still end the readers
            # already waiting on this feed, or they would wait for ever.
            log.exception("stream %s: reader failed", feed.id)
            feed.fail(f"stream reader failed: {exc}", "hub_unavailable")
        finally:
            feed.task = None
            if self._feeds.get(feed.id) is feed:
                del self._feeds[feed.id]  # later subscribers start a fresh feed

    async def _read_slot(self) -> None:
        """One of the ``max_reader_connections`` blocking-read connections (a full pool fails
        in redis-py's cluster client; one node's pool would make the bounded read wait)."""
        try:
            async with asyncio.timeout(self.block_s + self.command_timeout_s):
                await self._read_slots.acquire()
        except TimeoutError:  # (unavailable for now: the reader retries within its grace)
            raise MaxConnectionsError("no free blocking-read connection") from None

    async def _xread(self, feed: Feed, key: str, tkey: str, block_ms: int) -> Any:
        """The stream's blocking read (log and transients), on the node of its slot."""
        if feed.tid is None:  # transients from now on (v1.1), not older ones
            feed.tid = await self._last_transient_id(tkey)
        streams = {key: entry_id(feed.hi), tkey: feed.tid}
        if self.cluster:
            return await redis_keys.xread_routed(
                self._blocking_client(), streams, count=MAX_BATCH, block_ms=block_ms
            )
        return await self._blocking_client().xread(streams, count=MAX_BATCH, block=block_ms)

    async def _last_transient_id(self, tkey: str) -> bytes | str:
        last = await self.r.xrevrange(tkey, "+", "-", count=1)
        return last[0][0] if last else "0-0"

    async def publish_transient(self, stream_id: str, op: EncodedOp) -> None:
        """XADD to the stream's capped transient key, which every process's feed of the stream
        reads along with the log (one blocking XREAD of both): never stored in the log."""
        key = self.keys.transient(stream_id)
        async with self._unavailable():
            pipe = self.r.pipeline(transaction=False)
            pipe.xadd(key, {"op": op.json}, maxlen=_TRANSIENT_MAXLEN, approximate=True)
            pipe.pexpire(key, _TRANSIENT_TTL_MS)  # live data only: gone soon after the last
            await pipe.execute()

    def _blocking_client(self) -> Redis:
        if self._blocking is None:
            raise HubUnavailable("the Redis hub is not started")
        return self._blocking

    # -- active streams of chats ---------------------------------------------------------
    def _chat_key(self, chat_key: str) -> str:
        return f"{self.keys.prefix}:chat:{chat_key}"

    async def set_active(self, chat_key: str, stream_id: str, ttl_s: float) -> None:
        async with self._unavailable():
            await self.r.set(self._chat_key(chat_key), stream_id, px=max(1, int(ttl_s * 1000)))

    async def get_active(self, chat_key: str) -> str | None:
        async with self._unavailable():
            found = await self.r.get(self._chat_key(chat_key))
        return None if found is None else _text(found)

    async def clear_active(self, chat_key: str, stream_id: str) -> None:
        async with self._unavailable():  # (compare-and-delete: a newer stream stays)
            await self.r.eval(_DELETE_IF, 1, self._chat_key(chat_key), stream_id)

    # -- cancel --------------------------------------------------------------------------
    async def request_cancel(self, stream_id: str) -> None:
        async with self._unavailable():
            if not await self._scripts["cancel"](keys=[self.keys.meta(stream_id)]):
                raise StreamNotFound(stream_id)
            if self.cluster:
                await redis_keys.request_cancel(self.r, self.keys, stream_id)  # SPUBLISH
            else:
                await self.r.publish(self.keys.cancel_channel, stream_id)
        wait = self._cancels.get(stream_id)
        if wait is not None:
            wait.set()

    async def wait_cancel(self, stream_id: str) -> None:
        wait = self._cancel_wait(stream_id)
        wait.waiters += 1
        try:
            if not await self._cancel_flag(stream_id):
                await wait.wait()
        finally:
            wait.waiters -= 1
            self._forget_cancel_wait(stream_id, wait)

    def watch_cancel(self, stream_id: str, callback: Callable[[], None]) -> Callable[[], None]:
        wait = self._cancel_wait(stream_id)
        if wait.requested:
            return wait.watch(callback)
        stop = wait.watch(callback)
        # One short-lived task checks the flag (a request made before we listened); after it,
        # the watch costs no task: the process's pub/sub listener calls ``wait.set()``.
        check = asyncio.get_running_loop().create_task(self._check_once(stream_id, wait))
        self._checks.add(check)
        check.add_done_callback(self._checks.discard)

        def unwatch() -> None:
            check.cancel()
            stop()
            self._forget_cancel_wait(stream_id, wait)

        return unwatch

    def _cancel_wait(self, stream_id: str) -> _CancelWait:
        wait = self._cancels.get(stream_id)
        if wait is None:
            wait = self._cancels[stream_id] = _CancelWait()
        return wait

    def _forget_cancel_wait(self, stream_id: str, wait: _CancelWait) -> None:
        if wait.waiters == 0 and not wait.watchers and self._cancels.get(stream_id) is wait:
            del self._cancels[stream_id]

    async def _cancel_flag(self, stream_id: str) -> bool:
        """Whether a cancel was requested (the flag catches one made before we listened, or
        while pub/sub was down). Raises ``StreamNotFound`` / ``HubUnavailable``."""
        async with self._unavailable():
            status, flag = await self.r.hmget(self.keys.meta(stream_id), ["status", "cancel"])
        if status is None:
            raise StreamNotFound(stream_id)
        return flag is not None

    async def _check_once(self, stream_id: str, wait: _CancelWait) -> None:
        delay = 0.1
        while True:
            _raise_if_cancelled()
            try:
                if await self._cancel_flag(stream_id):
                    wait.set()
                return
            except HubUnavailable:
                await asyncio.sleep(delay)  # the listener re-checks too once it reconnects
                delay = min(delay * 2, 2.0)
            except StreamNotFound:
                return
            except Exception:
                log.exception("stream %s: checking its cancel flag failed", stream_id)
                return  # (the listener's sweep still covers it)

    async def _cancel_listener(self) -> None:
        """One pub/sub connection per process; reconnects, then re-checks the cancel flags."""
        if self.cluster:
            await self._cluster_cancel_listener()
            return
        delay = 0.05
        while True:
            _raise_if_cancelled()
            pubsub = self.r.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.keys.cancel_channel)
                delay = 0.05
                await self._check_cancel_flags()
                swept = time.monotonic()
                while True:
                    _raise_if_cancelled()
                    msg = await pubsub.get_message(timeout=self.block_s)
                    if time.monotonic() - swept > _CANCEL_SWEEP_S:
                        # redis-py reconnects and re-subscribes a dropped pub/sub connection
                        # by itself, silently: a request published meanwhile only set the
                        # flag. A periodic sweep of the watched streams' flags catches it.
                        await self._check_cancel_flags()
                        swept = time.monotonic()
                    if msg is not None and msg["type"] == "message":
                        wait = self._cancels.get(_text(msg["data"]))
                        if wait is not None:
                            wait.set()
            except _UNAVAILABLE as exc:
                log.debug("cancel listener: %s", exc)
            except Exception:
                log.exception("cancel listener failed")
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _cluster_cancel_listener(self) -> None:
        """The cluster's: ``SSUBSCRIBE`` to every shard's channel (one connection per node),
        with the same flag re-check after each (re)start and every ``_CANCEL_SWEEP_S``."""
        delay = 0.05
        while True:
            _raise_if_cancelled()
            messages = redis_keys.cancel_messages(
                self.r, self.keys, poll_s=min(self.block_s, _CANCEL_SWEEP_S), idle=True
            )
            try:
                await self._check_cancel_flags()
                _raise_if_cancelled()  # (a cancel redis-py swallowed in that command)
                swept = time.monotonic()
                async for stream_id in messages:
                    _raise_if_cancelled()
                    delay = 0.05
                    if time.monotonic() - swept > _CANCEL_SWEEP_S:
                        await self._check_cancel_flags()
                        swept = time.monotonic()
                    wait = self._cancels.get(stream_id) if stream_id is not None else None
                    if wait is not None:
                        wait.set()
            except _UNAVAILABLE as exc:
                log.debug("cancel listener: %s", exc)
            except Exception:
                log.exception("cancel listener failed")
            finally:
                with contextlib.suppress(Exception):
                    await messages.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _check_cancel_flags(self) -> None:
        ids = list(self._cancels)
        if not ids:
            return
        pipe = self.r.pipeline(transaction=False)
        for stream_id in ids:
            pipe.hget(self.keys.meta(stream_id), "cancel")
        for stream_id, flag in zip(ids, await pipe.execute(), strict=True):
            wait = self._cancels.get(stream_id)
            if flag is not None and wait is not None:
                wait.set()

    # -- liveness ------------------------------------------------------------------------
    async def _renew_leases(self) -> None:
        interval = self.lease_ttl_s / 3
        ttl_ms = int(self.lease_ttl_s * 1000)
        # The keys' own expiry is far longer than the lease: refreshed a few times per expiry.
        expiry_ms = self._live_expiry_ms()
        refresh_s = max(interval, expiry_ms / 4000)
        refreshed = time.monotonic()
        while True:
            _raise_if_cancelled()
            await asyncio.sleep(interval)
            ids = list(self._leased)
            if not ids:
                continue
            try:
                pipe = self.r.pipeline(transaction=False)
                for stream_id in ids:
                    epoch = self._epochs.get(stream_id)
                    if epoch is None:
                        pipe.set(self.keys.lease(stream_id), self.producer_id, px=ttl_ms)
                    elif self.cluster:
                        # (fenced, as below; a cluster pipeline does not load scripts on the
                        # nodes first, so the source goes along: both keys are in one slot)
                        pipe.eval(
                            RENEW,
                            2,
                            self.keys.meta(stream_id),
                            self.keys.lease(stream_id),
                            self.producer_id,
                            ttl_ms,
                            epoch,
                        )
                    else:  # (fenced: not once another process took the stream over)
                        await self._scripts["renew"](
                            keys=[self.keys.meta(stream_id), self.keys.lease(stream_id)],
                            args=[self.producer_id, ttl_ms, epoch],
                            client=pipe,
                        )
                refresh = time.monotonic() - refreshed >= refresh_s
                if refresh:
                    for stream_id in ids:
                        pipe.pexpire(self.keys.meta(stream_id), expiry_ms)
                        pipe.pexpire(self.keys.log(stream_id), expiry_ms)
                deadline = self._lease_deadline_ms()
                self._queue_deadlines(pipe, dict.fromkeys(ids, deadline))
                renewed = await pipe.execute()
                for stream_id, ok in zip(ids, renewed, strict=False):
                    if not ok and stream_id in self._epochs:
                        # Taken over elsewhere while we stalled: not ours any more (and not
                        # for ``close`` to drop the taker's lease). The epoch stays, so the
                        # writer's next append is refused (fenced) too; see ``append``.
                        self._leased.discard(stream_id)
                        self._owned.pop(stream_id, None)
                if refresh:
                    refreshed = time.monotonic()
            except _UNAVAILABLE as exc:
                log.warning("could not renew %d producer leases: %s", len(ids), exc)

    async def _watchdog(self) -> None:
        """End streams whose producer stopped renewing its lease (the process died)."""
        while True:
            _raise_if_cancelled()
            await asyncio.sleep(self.watchdog_interval_s)
            try:
                now_ms = int(time.time() * 1000)
                if self.cluster:  # every shard, pipelined per node
                    due = await redis_keys.due_streams(self.r, self.keys, now_ms, withscores=True)
                else:
                    due = await self.r.zrangebyscore(
                        self.keys.active, "-inf", now_ms, start=0, num=100, withscores=True
                    )
                for raw, deadline in due:
                    stream_id = _text(raw)
                    if stream_id not in self._leased:
                        if self.on_takeover is not None:
                            taken = await self.take_over(stream_id, deadline / 1000)
                            # (None: its lease is still there, e.g. for the last few ms of
                            # a TTL that started after the index's deadline: next tick)
                            if taken or taken is None:
                                continue
                        await self.fail_if_producer_lost(stream_id)
            except (HubUnavailable, *_UNAVAILABLE) as exc:
                log.debug("watchdog: %s", exc)
            except Exception:
                log.exception("watchdog failed")

    async def take_over(self, stream_id: str, lost_at: float | None = None) -> bool | None:
        """Take over a stream whose lease expired and hand it to ``on_takeover``; True if this
        process now produces it, None if its lease is held (by its producer, or by the process
        that won), False if it cannot be taken over (no resume record, not live, or no
        continuation here: the caller ends it as lost). Of several processes trying at once
        exactly one wins (the ``TAKEOVER`` script takes the lease and bumps the epoch)."""
        callback = self.on_takeover
        if callback is None:
            return False
        keys = self.keys
        reply = await self._scripts["takeover"](
            keys=[keys.meta(stream_id), keys.lease(stream_id), keys.log(stream_id)],
            args=[self.producer_id, int(self.lease_ttl_s * 1000), self._live_expiry_ms()],
        )
        if int(reply[0]) != 1:
            return None if int(reply[0]) == 0 else False
        epoch = int(reply[1])
        self._leased.add(stream_id)  # renewed from now on
        self._epochs[stream_id] = str(epoch)
        started = False
        try:
            await self.r.zadd(self._active_key(stream_id), {stream_id: self._lease_deadline_ms()})
            loaded = await self._load(stream_id)
            record, inexact = await self.r.hmget(self.keys.meta(stream_id), ["resume", "inexact"])
            if loaded is not None and loaded[0].status == _IN_PROGRESS and record is not None:
                info, message, open_blocks, snap_seq = loaded
                self._owned[stream_id] = _Owned(
                    message.copy(), set(open_blocks), info.seq, snap_seq
                )
                taken = TakenOver(
                    info,
                    message,
                    frozenset(open_blocks),
                    record,
                    epoch,
                    lost_at if lost_at is not None else time.time(),
                    inexact is None,
                )
                started = await callback(taken)
        except Exception:
            log.exception("stream %s: takeover failed", stream_id)
        if started:
            log.warning("stream %s: producer lost, taken over (epoch %d)", stream_id, epoch)
            return True
        # Nobody here can continue it: give the lease up, and end it as before.
        self._leased.discard(stream_id)
        self._epochs.pop(stream_id, None)
        self._owned.pop(stream_id, None)
        with contextlib.suppress(HubUnavailable, *_UNAVAILABLE):
            await self.r.delete(self.keys.lease(stream_id))
        return False

    async def fail_if_producer_lost(self, stream_id: str) -> bool:
        """End the stream ``failed`` ("producer lost") if its lease is gone. True if we did."""
        r = self.r
        if await r.exists(self.keys.lease(stream_id)):
            return False
        loaded = await self._load(stream_id)
        if loaded is None or loaded[0].status != _IN_PROGRESS:
            await self._forget_active(stream_id)
            return False
        info, message, open_blocks, _ = loaded
        seq = info.seq
        ops: list[EncodedOp] = []
        if seq == 0:
            ops.append(encode(MessageStart(1, stream_id, None)))
        for index in sorted(open_blocks):
            ops.append(encode(BlockEnd(seq + len(ops) + 1, index)))
        ops.append(
            encode(MessageEnd(seq + len(ops) + 1, "failed", None, None, dict(PRODUCER_LOST)))
        )
        for item in ops:
            apply_op(message, item.op)
        record: bytes | None = None
        if self.on_lost is not None:  # (read first: nothing may come between the end and it)
            resume, kept = await r.hmget(self.keys.meta(stream_id), ["resume", "record"])
            record = resume if resume is not None else kept
        code, _, _ = await self._run_append(
            stream_id, ops, "failed", message.to_json(), set(), True
        )
        if code == 1:
            log.warning("stream %s: producer lost, ended it as failed at seq %d", stream_id, seq)
            if self.on_lost is not None:  # (the dead process can no longer store it)
                # No suspension before this call (``Streams._lost`` only schedules its work),
                # so a close() cancelling the watchdog cannot drop an ended stream's row.
                try:
                    ended = StreamInfo(
                        stream_id, info.owner, "failed", ops[-1].seq, info.created_at
                    )
                    await self.on_lost(ended, message, record)
                except Exception:
                    log.exception("stream %s: could not settle the lost stream", stream_id)
        if code in (1, -1):
            await self._forget_active(stream_id)
        return code == 1


# Compare-and-delete: a chat's active stream unless a newer one was recorded, a lease unless
# another process holds it now.
_DELETE_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _op_from_entry(entry_id: bytes | str, fields: dict[bytes, bytes]) -> EncodedOp:
    """A log entry back to its op; the entry id ``<seq>-1`` carries the seq (deltas have none)."""
    seq = int(entry_id.split(b"-")[0] if isinstance(entry_id, bytes) else entry_id.split("-")[0])
    return EncodedOp.from_json(fields[b"op"], seq)
