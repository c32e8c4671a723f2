"""Redis Cluster layout of the hub: key names, the sharded active index and cancel channels,
and the cluster-aware client.

Per stream, nothing changes from ``redis_scripts.Keys``: ``tw:{st_x}:meta|log|lease`` share the
hash tag ``{st_x}``, hence one slot, so the Lua scripts (``CREATE``, ``APPEND``, ``CANCEL``)
touch only keys of one slot and run unchanged on a cluster (so do the takeover's ``TAKEOVER`` and
``RENEW``; index updates are never inside a script).

The two global names of the single-node layout would each live in one slot, i.e. on one node:
``tw:active`` (the lease index every process writes on every create/end and scans every
watchdog period) and ``tw:cancel`` (classic pub/sub: in a cluster every ``PUBLISH`` is
broadcast over the cluster bus to every node). Both are sharded here:

- ``shards`` (default 16) index shards ``tw:{tw-shard-<i>}:active``; a stream belongs to shard
  ``key_slot(stream_id) % shards`` (a pure function of the id: every process agrees). The shard
  tags hash to different slots, so the shards spread over the masters; more shards than masters
  keeps that spread even after a reshard. The watchdog scans every shard each period.
- the cancel channel of shard ``i`` is the *sharded* pub/sub channel ``tw:{tw-shard-<i>}:cancel``
  (Redis 7 ``SPUBLISH`` / ``SSUBSCRIBE``): a message travels only within the owning node's shard,
  not over the whole cluster bus. Each process subscribes to all ``shards`` channels (a handful
  of subscriptions on one connection per node), not one channel per stream.

With ``shards=1`` and the same prefix the names differ from the single-node ``Keys`` (the
global names carry a hash tag), so one Redis should be used in one layout only.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import MaxConnectionsError

from tokenwire.hub.redis_scripts import StreamKeys

__all__ = [
    "ClusterKeys",
    "cancel_messages",
    "cluster_client",
    "due_streams",
    "forget",
    "is_cluster_url",
    "parse_cluster_url",
    "set_deadlines",
    "xread_routed",
]

DEFAULT_SHARDS = 16


class ClusterKeys(StreamKeys):
    """Key names under one prefix, for a Redis Cluster (see the module docstring): the
    per-stream keys of ``StreamKeys``, plus sharded globals."""

    __slots__ = ("shards",)

    def __init__(self, prefix: str, shards: int = DEFAULT_SHARDS) -> None:
        if not 1 <= shards <= 1024:
            raise ValueError(f"shards must be in 1..1024, got {shards}")
        if "{" in prefix or "}" in prefix:
            raise ValueError("the key prefix must not contain braces (they mark hash tags)")
        super().__init__(prefix)
        self.shards = shards

    # -- sharded globals ----------------------------------------------------------------
    def shard_of(self, stream_id: str) -> int:
        return key_slot(stream_id.encode()) % self.shards

    def active(self, shard: int) -> str:
        """The zset of shard ``shard``: in-progress stream id -> lease deadline (ms)."""
        return f"{self.prefix}:{{{self.prefix}-shard-{shard}}}:active"

    def cancel_channel(self, shard: int) -> str:
        """The sharded pub/sub channel of shard ``shard`` (in the slot of its zset)."""
        return f"{self.prefix}:{{{self.prefix}-shard-{shard}}}:cancel"

    def active_of(self, stream_id: str) -> str:
        return self.active(self.shard_of(stream_id))

    def cancel_channel_of(self, stream_id: str) -> str:
        return self.cancel_channel(self.shard_of(stream_id))

    def all_active(self) -> list[str]:
        return [self.active(i) for i in range(self.shards)]

    def all_cancel_channels(self) -> list[str]:
        return [self.cancel_channel(i) for i in range(self.shards)]

    def by_shard(self, stream_ids: Iterable[str]) -> dict[int, list[str]]:
        """``stream_ids`` grouped by index shard (for one ZADD / ZREM per shard)."""
        groups: dict[int, list[str]] = {}
        for stream_id in stream_ids:
            groups.setdefault(self.shard_of(stream_id), []).append(stream_id)
        return groups


# -- the client ------------------------------------------------------------------------
_TRUE = ("1", "true", "yes", "on")


def is_cluster_url(url: str) -> bool:
    """``redis://host:port/?cluster=true`` (or several ``host:port`` joined by commas)."""
    query = dict(parse_qsl(urlsplit(url).query))
    return query.get("cluster", "").lower() in _TRUE


def parse_cluster_url(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """Startup nodes and client options of a cluster URL.

    ``redis://[user:pass@]h1:p1[,h2:p2…][/?cluster=true]`` (``rediss://`` for TLS). A cluster
    has only database 0, so a path other than ``/`` or ``/0`` is refused.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"a Redis Cluster URL is redis:// or rediss://, got {parts.scheme!r}")
    if parts.path not in ("", "/", "/0"):
        raise ValueError("a Redis Cluster has only database 0")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    nodes: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host:
            host, port = item.strip(), "6379"
        nodes.append((host.strip("[]"), int(port)))
    options: dict[str, Any] = {}
    if userinfo:
        user, _, password = userinfo.partition(":")
        if user:
            options["username"] = unquote(user)
        if password:
            options["password"] = unquote(password)
    if parts.scheme == "rediss":
        options["ssl"] = True
    return nodes, options


def strip_cluster_flag(url: str) -> str:
    """``url`` without ``cluster=…`` in its query (for logs and for non-cluster clients)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "cluster"]
    return urlunsplit(parts._replace(query=urlencode(query)))


# Set while a task holds a slot of a BoundedRedisCluster (a pipeline that re-sends a redirected
# command through the client must not wait for a second slot).
_HOLDING: contextvars.ContextVar[bool] = contextvars.ContextVar("tw_holding", default=False)


class BoundedRedisCluster(RedisCluster):
    """A ``RedisCluster`` whose commands and pipelines wait (up to ``wait_s``) for one of
    ``max_connections`` slots instead of failing: redis-py's cluster client has no blocking pool
    and raises ``MaxConnectionsError`` as soon as a node's pool is full, so a burst of requests
    (1,000 subscribers connecting at once) would turn into errors. A command or a pipeline uses
    at most one connection per node, so no node has more than ``max_connections`` of them in
    use; each node's pool has ``reserve`` more for the pub/sub connection(s)."""

    def __init__(
        self, *args: Any, wait_s: float, max_connections: int = 100, reserve: int = 2, **kwargs: Any
    ) -> None:
        super().__init__(*args, max_connections=max_connections + reserve, **kwargs)
        self._slots = asyncio.Semaphore(max_connections)
        self._wait_s = wait_s

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        if _HOLDING.get():
            yield
            return
        try:
            async with asyncio.timeout(self._wait_s):
                await self._slots.acquire()
        except TimeoutError:
            raise MaxConnectionsError("no free Redis Cluster connection") from None
        token = _HOLDING.set(True)
        try:
            yield
        finally:
            _HOLDING.reset(token)
            self._slots.release()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self._slot():
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute

        async def bounded(*args: Any, **kwargs: Any) -> Any:
            async with self._slot():
                return await execute(*args, **kwargs)

        pipe.execute = bounded
        return pipe


def cluster_client(url: str, *, wait_s: float | None = None, **options: Any) -> RedisCluster:
    """A cluster-aware asyncio client: discovers the masters from the startup nodes, routes
    each command (and each script, by its keys) to the slot's owner, follows MOVED/ASK.

    ``options`` go to ``RedisCluster`` (e.g. ``socket_timeout``, ``max_connections`` per node,
    ``retry``). With ``wait_s``, commands past ``max_connections`` wait up to that long for a
    free connection (``BoundedRedisCluster``) rather than fail."""
    nodes, url_options = parse_cluster_url(url)
    startup = [ClusterNode(host, port) for host, port in nodes]
    if wait_s is not None:
        return BoundedRedisCluster(
            startup_nodes=startup, wait_s=wait_s, **{**url_options, **options}
        )
    return RedisCluster(startup_nodes=startup, **{**url_options, **options})


async def xread_routed(
    client: RedisCluster, streams: Mapping[str, bytes | str], *, count: int, block_ms: int
) -> Any:
    """``XREAD COUNT … BLOCK … STREAMS`` of keys in one slot, sent straight to the slot's node.

    ``client.xread`` would first ask a (fixed) node ``COMMAND GETKEYS`` on every call, because
    XREAD's keys are "movable": one extra round trip per read, all on one node."""
    node = client.get_node_from_key(next(iter(streams)))
    args: list[Any] = ["XREAD", "COUNT", count, "BLOCK", block_ms, "STREAMS"]
    args += [*streams.keys(), *streams.values()]
    return await client.execute_command(*args, target_nodes=node)


# -- cluster-aware helpers for the hub ----------------------------------------------------
async def set_deadlines(
    client: RedisCluster, keys: ClusterKeys, deadlines: Mapping[str, int]
) -> None:
    """``ZADD`` each stream's deadline into its own shard: one command per shard touched,
    all in one cluster pipeline (redis-py sends each node its share)."""
    pipe = client.pipeline()
    for shard, ids in keys.by_shard(deadlines).items():
        pipe.zadd(keys.active(shard), {stream_id: deadlines[stream_id] for stream_id in ids})
    await pipe.execute()


async def forget(client: RedisCluster, keys: ClusterKeys, stream_ids: Iterable[str]) -> None:
    """``ZREM`` ended streams from their shards."""
    pipe = client.pipeline()
    for shard, ids in keys.by_shard(stream_ids).items():
        pipe.zrem(keys.active(shard), *ids)
    await pipe.execute()


async def due_streams(
    client: RedisCluster,
    keys: ClusterKeys,
    now_ms: int,
    *,
    per_shard: int = 100,
    withscores: bool = False,
) -> list[Any]:
    """Stream ids whose lease deadline passed, from every shard (the watchdog's scan): one
    ``ZRANGEBYSCORE … LIMIT`` per shard, pipelined per node. With ``withscores``, pairs of
    (stream id, deadline in ms) (the takeover reports when the producer was lost)."""
    pipe = client.pipeline()
    for key in keys.all_active():
        pipe.zrangebyscore(key, "-inf", now_ms, start=0, num=per_shard, withscores=withscores)
    replies = await pipe.execute()
    if withscores:
        return [(_str(raw), score) for due in replies for raw, score in due]
    return [_str(raw) for due in replies for raw in due]


def _str(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


async def cancel_messages(
    client: RedisCluster, keys: ClusterKeys, *, poll_s: float = 1.0, idle: bool = False
) -> AsyncIterator[str | None]:
    """Stream ids published to any shard's cancel channel (``SPUBLISH``), for as long as the
    caller iterates.

    redis-py's cluster pub/sub keeps one ``SSUBSCRIBE`` connection per node (and moves a
    subscription when its slot moves), but its ``get_sharded_message`` polls the nodes in turn,
    each for the whole timeout, so a message could wait (nodes - 1) x timeout. Here each node's
    connection gets its own blocking reader task instead (re-synced every ``poll_s`` with the
    nodes redis-py currently uses). A request made while this was not listening is only in the
    stream's cancel flag: callers re-check flags after (re)starting this, as with one node.
    With ``idle``, ``None`` is yielded after each quiet ``poll_s`` (time for such a sweep).
    """
    pubsub = client.pubsub()
    queue: asyncio.Queue[str] = asyncio.Queue()
    readers: dict[str, asyncio.Task[None]] = {}

    async def read(node_pubsub: Any) -> None:
        while True:
            msg = await node_pubsub.get_message(ignore_subscribe_messages=True, timeout=poll_s)
            if msg is not None and msg["type"] in ("smessage", b"smessage"):
                data = msg["data"]
                queue.put_nowait(data.decode() if isinstance(data, bytes) else data)

    try:
        await pubsub.ssubscribe(*keys.all_cancel_channels())
        while True:
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # (redis-py may swallow a cancel)
                raise asyncio.CancelledError
            for name, node_pubsub in list(pubsub.node_pubsub_mapping.items()):
                task = readers.get(name)
                if task is None or task.done():
                    if task is not None and not task.cancelled() and task.exception():
                        raise task.exception()  # type: ignore[misc]  # (a lost connection)
                    readers[name] = asyncio.create_task(read(node_pubsub))
            try:
                item = await asyncio.wait_for(queue.get(), poll_s)
            except TimeoutError:
                if idle:
                    yield None
                continue
            yield item
    finally:
        for task in readers.values():
            task.cancel()
        await asyncio.gather(*readers.values(), return_exceptions=True)
        await pubsub.aclose()


async def request_cancel(client: RedisCluster, keys: ClusterKeys, stream_id: str) -> int:
    """``SPUBLISH`` a cancel request on the stream's shard channel; receivers count."""
    return await client.spublish(keys.cancel_channel_of(stream_id), stream_id)
