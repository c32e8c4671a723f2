"""Scale-out on a Redis Cluster: real gateway processes (`tokenwire serve --redis
redis://h1:p1,h2:p2,h3:p3/?cluster=true`) sharing the session's 3-master cluster, running a few
of tests/test_scaleout.py's tests (create on A / read on B, Last-Event-ID resume across
processes, cancel across processes). A killed producer on the cluster is covered at the hub
level (tests/test_redis_hub_cluster.py), which keeps this module short."""

from __future__ import annotations

import pytest
from test_scaleout import (  # noqa: F401  (fixtures and tests collected again here)
    cluster,
    http,
    mock_url,
    pair,
    test_cancel_on_b_stops_the_upstream_request_held_by_a,
    test_created_on_a_read_on_b,
    test_read_part_on_a_resume_on_b_with_last_event_id,
)

pytestmark = pytest.mark.timeout(60)


class _ClusterTarget:
    def __init__(self, redis_cluster) -> None:
        hosts = ",".join(f"{host}:{port}" for host, port in redis_cluster.nodes)
        self.url = f"redis://{hosts}/?cluster=true"


@pytest.fixture(scope="session")
def redis_server(redis_cluster):
    """The gateways' ``--redis``: the session's cluster (see tests/redis_cluster.py)."""
    return _ClusterTarget(redis_cluster)
