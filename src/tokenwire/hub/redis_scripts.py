"""Key names and Lua scripts of the Redis hub.

Every key of one stream carries the stream id as a hash tag (``tw:{st_x}:log``), so a Redis
Cluster keeps them in one slot and a script may touch all of them atomically. The two global
keys (the lease index and the cancel channel) are only ever used on their own.
"""

from __future__ import annotations


class StreamKeys:
    """One stream's key names under a prefix: all in the stream's hash slot (``{id}``), so the
    scripts run on a single Redis and on a cluster alike. The layouts below add the globals."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def meta(self, stream_id: str) -> str:
        return f"{self.prefix}:{{{stream_id}}}:meta"

    def log(self, stream_id: str) -> str:
        return f"{self.prefix}:{{{stream_id}}}:log"

    def lease(self, stream_id: str) -> str:
        return f"{self.prefix}:{{{stream_id}}}:lease"

    def transient(self, stream_id: str) -> str:
        """Capped stream of recent transient ops (v1.1): read by the feeds, never the log."""
        return f"{self.prefix}:{{{stream_id}}}:transient"

    def stream(self, stream_id: str) -> list[str]:
        """The keys ``APPEND`` works on, in its order."""
        return [self.meta(stream_id), self.log(stream_id), self.lease(stream_id)]


class Keys(StreamKeys):
    """Key names under one prefix, for a single Redis."""

    __slots__ = ("active", "cancel_channel")

    def __init__(self, prefix: str) -> None:
        super().__init__(prefix)
        self.active = f"{prefix}:active"  # zset: in-progress stream id -> lease deadline (ms)
        self.cancel_channel = f"{prefix}:cancel"  # pub/sub: stream ids whose cancel was asked


def entry_id(seq: int) -> str:
    """The stream entry ID of the op with ``seq`` (explicit, so resume needs no lookup)."""
    return f"{seq}-1"


def after_id(seq: int) -> str:
    """An XRANGE start that excludes ``seq`` and everything before it."""
    return f"({seq}-1" if seq > 0 else "-"


# KEYS: meta, lease. ARGV: owner ("" = none), has_owner, created_at, producer id, lease ms,
# create token (unique per create call), expiry ms of the meta key.
# Returns 1, or 0 if the stream id is taken. Idempotent per call: a retry of a script that had
# already gone through (redis-py retries a command that timed out) finds its own token and
# answers 1 again. The meta key expires unless renewed (the lease renewer refreshes it, the
# end sets the retention), so a stream whose creator vanished cannot outlive its retention.
CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HGET', KEYS[1], 'create_token') == ARGV[6] then return 1 end
  return 0
end
redis.call('HSET', KEYS[1], 'status', 'in_progress', 'seq', 0, 'snap_seq', 0,
           'created_at', ARGV[3], 'producer', ARGV[4], 'create_token', ARGV[6])
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'owner', ARGV[1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[5])
return 1
"""

# KEYS: meta, log, lease.
# ARGV: first seq, maxlen, end status ("" while live), snapshot JSON ("" = none), open blocks
# of the snapshot ("0,2"), retention ms, "1" to refuse while the lease exists, the writer's
# producer epoch ("" = not checked), op JSON...
# Returns {1, status, seq} when appended, {0, status, seq} when the stream is not at
# first - 1 or already ended, {2, status, seq} when the lease is still held, {3, status, seq}
# when another process took the stream over (the epoch moved on: fencing), {-1} if unknown.
APPEND = """
local cur = redis.call('HMGET', KEYS[1], 'status', 'seq', 'epoch')
if not cur[1] then return {-1} end
local seq = tonumber(cur[2])
local first = tonumber(ARGV[1])
if ARGV[8] ~= '' and (cur[3] or '0') ~= ARGV[8] then return {3, cur[1], seq} end
if cur[1] ~= 'in_progress' or seq ~= first - 1 then return {0, cur[1], seq} end
if ARGV[7] == '1' and redis.call('EXISTS', KEYS[3]) == 1 then return {2, cur[1], seq} end
local n = #ARGV - 8
for i = 1, n do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], (first + i - 1) .. '-1', 'op', ARGV[8 + i])
end
local last = first + n - 1
if first == 1 and ARGV[3] == '' then
  -- the log was just created: it expires with the meta key (both renewed while live)
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
end
redis.call('HSET', KEYS[1], 'seq', last)
if ARGV[4] ~= '' then
  -- An older snapshot stays too (snap_prev), one the trimmed log still goes on from: a
  -- reader that reads from the log's start to reach its cursor (a view) stays exact from
  -- there. While live it moves on (to the snapshot being replaced, a quarter of the log
  -- behind the head) once the trimming comes within half a log of it; at the end only if
  -- the log was trimmed past it, so the ops before the end stay exact.
  local old = redis.call('HMGET', KEYS[1], 'snap', 'snap_seq', 'snap_prev_seq', 'snap_open')
  if old[1] then
    local head = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
    local oldest = 0
    if head[1] then oldest = tonumber(string.match(head[1][1], '^%d+')) end
    local margin = math.floor(tonumber(ARGV[2]) / 2)
    if ARGV[3] ~= '' then margin = 0 end
    if not old[3] or tonumber(old[3]) + 1 < oldest + margin then
      redis.call('HSET', KEYS[1], 'snap_prev', old[1], 'snap_prev_seq', old[2])
      -- (its open blocks too: a view met by it mid-connection must not guess them)
      if old[4] then
        redis.call('HSET', KEYS[1], 'snap_prev_open', old[4])
      else
        redis.call('HDEL', KEYS[1], 'snap_prev_open')
      end
    end
  end
  redis.call('HSET', KEYS[1], 'snap', ARGV[4], 'snap_seq', last, 'snap_open', ARGV[5])
end
local status = cur[1]
if ARGV[3] ~= '' then
  status = ARGV[3]
  redis.call('HSET', KEYS[1], 'status', status)
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
  redis.call('DEL', KEYS[3])
end
return {1, status, last}
"""

# KEYS: meta. Returns 1 when the flag was set, 0 if the stream is unknown.
CANCEL = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'cancel', '1')
return 1
"""

# KEYS: meta, lease, log. ARGV: the taker's producer id, lease ms, the live keys' expiry ms.
# Takeover of a stream whose producer lost its lease: only a live stream that carries a resume
# record, only while nobody holds the lease. Atomically bumps the producer epoch (so the old
# producer's appends are refused by APPEND from now on) and takes the lease: of several
# watchdogs racing, exactly one gets {1, epoch, seq}; the others get {0} (the lease is held).
# {2}: the stream is not live or has no resume record (nothing to take over). The stream's
# keys get a live stream's expiry again: they were left to run out when the producer died,
# and the taker refreshes them only on its own schedule (they could expire under it).
TAKEOVER = """
if redis.call('EXISTS', KEYS[2]) == 1 then return {0} end
local cur = redis.call('HMGET', KEYS[1], 'status', 'seq', 'resume')
if cur[1] ~= 'in_progress' or not cur[3] then return {2} end
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('HSET', KEYS[1], 'producer', ARGV[1])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
return {1, epoch, tonumber(cur[2])}
"""

# KEYS: meta, lease. ARGV: producer id, lease ms, the producer's epoch.
# The lease renewal of a stream produced here: only while no other process took it over, so a
# producer that was frozen (not dead) past its lease cannot keep the taker's stream leased.
RENEW = """
if (redis.call('HGET', KEYS[1], 'epoch') or '0') ~= ARGV[3] then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
"""
