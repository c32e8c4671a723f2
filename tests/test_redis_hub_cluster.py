"""The Redis hub's contract tests (tests/test_redis_hub.py) again, on a real 3-master Redis
Cluster (tests/redis_cluster.py, one per session): ``redis_server`` is overridden here by the
cluster, reached through a cluster URL, so ``RedisHub`` selects the cluster layout (hash-tagged
stream keys, sharded lease index, ``SPUBLISH`` cancel channels, per-node blocking reads).

Also the takeover tests (tests/test_takeover.py): a host continuation taking over a stream
whose producer stopped, fencing, one winner among racing watchdogs, and (fewer trials) the
kill -9 of a producing ``tokenwire serve`` process among three on the cluster.

Left out: the tests that stop, restart or freeze their own single ``redis-server`` (the
partition test, tests/test_redis_partition.py, covers a lost Redis).
"""

from __future__ import annotations

import asyncio
import secrets

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_hub_transient import (  # noqa: F401  (v1.1 transients and step.reset, too)
    redis_hubs,
    test_redis_hub_delivers_transients_across_processes,
    test_redis_hub_snapshots_and_takeover_across_a_step_reset,
)
from test_redis_hub import (  # noqa: F401  (fixtures and tests collected again here)
    drain,
    hubs,
    make_ops,
    new_hub,
    prefix,
    resume_from_any_seq,
    test_a_reader_from_the_start_is_exact_for_the_last_quarter_of_the_log,
    test_a_reader_that_fails_ends_its_waiting_cursors,
    test_cancel_published_while_pubsub_reconnects_is_not_lost,
    test_cancel_requested_on_b_resolves_wait_cancel_on_a,
    test_closing_a_hub_hands_its_unfinished_streams_to_the_watchdog,
    test_created_on_a_read_on_b_with_identical_bytes,
    test_finished_stream_keys_expire_and_lease_is_released,
    test_live_reader_behind_the_log_gets_a_snapshot_then_the_rest,
    test_live_subscribers_on_both_hubs_get_the_same_stream,
    test_many_local_cursors_share_one_xread_per_batch,
    test_misuse_is_refused,
    test_only_one_process_ends_a_lost_stream,
    test_partial_read_on_a_then_resume_on_b_from_every_seq,
    test_producer_killed_ends_the_stream_failed_on_another_process,
    test_resume_older_than_the_retained_log_starts_with_a_snapshot,
    test_watch_cancel_across_processes_without_a_task_per_stream,
)
from test_takeover import (  # noqa: F401  (takeover and fencing on the sharded index, too)
    kill_9_trials,
    test_a_live_producer_keeps_its_stream_and_a_fenced_one_stops_renewing,
    test_a_lost_stream_is_stored_and_reported_where_its_watchdog_ended_it,
    test_a_stream_its_own_process_ended_in_an_outage_is_reported_once,
    test_exactly_one_process_takes_over,
    test_host_continuation_takes_over_and_fences_the_old_producer,
    test_without_a_registered_continuation_the_stream_fails_as_before,
)

from tokenwire.hub.redis import HubUnavailable, RedisHub
from tokenwire.hub.redis_keys import ClusterKeys


class _ClusterTarget:
    """What the contract tests use of ``redis_server``: a URL (here, a cluster's)."""

    def __init__(self, cluster) -> None:
        hosts = ",".join(f"{host}:{port}" for host, port in cluster.nodes)
        self.url = f"redis://{hosts}/?cluster=true"
        self.cluster = cluster


@pytest.fixture(scope="session")
def redis_server(redis_cluster):
    return _ClusterTarget(redis_cluster)


# The single-node property test with fewer examples: each one starts two cluster clients.
@settings(max_examples=5, deadline=None)
@given(
    words=st.lists(st.text(min_size=1, max_size=4), min_size=0, max_size=20),
    data=st.data(),
)
def test_resume_from_any_seq_yields_exactly_the_ops_after_it(redis_server, words, data) -> None:
    resume_from_any_seq(redis_server.url, words, data)


async def test_the_hub_uses_the_cluster_layout_across_every_master(redis_server) -> None:
    hub = new_hub(redis_server.url, "c" + secrets.token_hex(4))
    await hub.start()
    try:
        assert hub.cluster and isinstance(hub.keys, ClusterKeys)
        ids = [f"st_spread{i}" for i in range(12)]
        for stream_id in ids:
            await hub.create(stream_id, owner=None)
        r = hub.r
        nodes = {r.get_node_from_key(hub.keys.meta(s)).name for s in ids}
        shards = {r.get_node_from_key(hub.keys.active_of(s)).name for s in ids}
        assert len(nodes) == 3 and len(shards) == 3  # streams and index shards on every master
        for stream_id in ids:
            score = await r.zscore(hub.keys.active_of(stream_id), stream_id)
            assert score is not None
            await hub.append(stream_id, make_ops(stream_id, ["x"]))
            assert await r.zscore(hub.keys.active_of(stream_id), stream_id) is None
        got = [await drain(await hub.subscribe(s, 0)) for s in ids]
        assert all(ops[-1].type == "message.end" for ops in got)
    finally:
        await hub.close()


async def test_unreachable_cluster_at_start_is_a_clear_error() -> None:
    from conftest import free_port

    url = f"redis://user:hunter2@127.0.0.1:{free_port()},127.0.0.1:{free_port()}/?cluster=true"
    hub = RedisHub(url, connect_timeout_s=0.5, command_timeout_s=0.5)
    with pytest.raises(HubUnavailable, match="cannot reach Redis at redis://user:\\*\\*\\*@") as e:
        await hub.start()
    assert "hunter2" not in str(e.value)


def test_serve_checks_a_cluster_url_before_starting_workers(redis_server) -> None:
    from conftest import free_port

    from tokenwire.cli import CommandError
    from tokenwire.commands.serve import check_redis

    check_redis(redis_server.url)  # any listed node answers: fine
    with pytest.raises(CommandError, match=r"cannot reach Redis at redis://u:\*\*\*@"):
        check_redis(f"redis://u:pw@127.0.0.1:{free_port()}/?cluster=true")


async def test_bursts_wait_for_the_bounded_cluster_connections(redis_server) -> None:
    """redis-py's cluster client fails at once past ``max_connections``; the hub waits."""
    hub = new_hub(
        redis_server.url,
        "c" + secrets.token_hex(4),
        max_command_connections=2,
        max_reader_connections=2,
        block_s=0.2,
    )
    await hub.start()
    try:
        ids = [f"st_burst{i}" for i in range(5)]
        for stream_id in ids:
            await hub.create(stream_id, owner=None)
        infos = await asyncio.gather(*(hub.info(ids[i % 5]) for i in range(60)))
        assert all(info is not None for info in infos)  # no MaxConnectionsError
        # 5 live feeds share 2 blocking-read connections: they take turns, nothing is lost.
        readers = [asyncio.create_task(drain(await hub.subscribe(s, 0))) for s in ids]
        for stream_id in ids:
            await hub.append(stream_id, make_ops(stream_id, ["a ", "b"]))
        for stream_id, got in zip(ids, await asyncio.gather(*readers), strict=True):
            assert [op.json for op in got] == [op.json for op in make_ops(stream_id, ["a ", "b"])]
    finally:
        await hub.close()


async def test_kill_9_of_the_producing_gateway_process_on_a_cluster(redis_server) -> None:
    """Three ``tokenwire serve`` processes on the cluster; kill -9 the producer mid-answer
    (fewer trials than on one Redis: the same code, the sharded lease index and fencing)."""
    await kill_9_trials(redis_server.url, 8)
