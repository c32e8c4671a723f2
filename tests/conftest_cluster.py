"""The session's throwaway Redis Cluster (see ``redis_cluster.py``); imported by ``conftest.py``."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def redis_cluster():
    """A real 3-master Redis Cluster (``.url``, ``.nodes``, ``.ports``)."""
    from redis_cluster import RedisCluster, cluster_binaries

    if cluster_binaries() is None:
        pytest.skip("redis-server / redis-cli are not installed (`make test` installs them)")
    with RedisCluster() as cluster:
        yield cluster
