"""Prometheus metrics, one registry per app (so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.active_streams = Gauge(
            "tokenwire_active_streams", "Generations currently running", registry=r
        )
        self.streams = Counter(
            "tokenwire_streams", "Finished generations by end status", ["status"], registry=r
        )
        self.subscribers = Gauge(
            "tokenwire_subscribers", "Connected op-stream readers", ["transport"], registry=r
        )
        self.ops_out = Counter("tokenwire_ops_sent", "Ops sent to subscribers", registry=r)
        self.bytes_out = Counter(
            "tokenwire_bytes_sent", "Op-stream bytes sent to subscribers", registry=r
        )
        self.upstream_errors = Counter(
            "tokenwire_upstream_errors",
            "Upstream failures (unreachable, HTTP errors, broken streams)",
            ["kind"],
            registry=r,
        )
        self.ttft = Histogram(
            "tokenwire_time_to_first_token_seconds",
            "From stream creation to the first content op",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.passthrough = Counter(
            "tokenwire_passthrough_requests", "Relayed chat completion requests", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
