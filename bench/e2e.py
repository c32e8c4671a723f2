"""End-to-end measurements of one subject at a time, all fed by ``tokenwire mock``.

Every function here drives already-running server processes over 127.0.0.1 with the light
client in ``bench.client`` and returns plain dicts for ``latest.json``. Answers come from the
mock's ``mock`` model: exactly ``max_tokens`` tokens of deterministic Markdown; a per-request
``"mock": {"tps": N}`` member paces them (forwarded untouched by every relay).
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from bench.client import (
    Counter,
    EventCounter,
    OpenAICounter,
    Result,
    TypedCounter,
    get_json,
    post_json,
    request,
)
from bench.procs import Server
from tokenwire.mock import markdown_tokens

MAX_ANSWER_TOKENS = 5000
_TOKENS = list(itertools.islice(markdown_tokens(0), MAX_ANSWER_TOKENS))
CUM_CHARS = list(itertools.accumulate(len(t) for t in _TOKENS))
PROMPT = [{"role": "user", "content": "Write a long Markdown document about streaming."}]

Progress = Callable[[str], None]


def answer_text(tokens: int) -> str:
    """The final text of a ``tokens``-token answer (what the user ends up reading)."""
    return "".join(_TOKENS[:tokens])


@dataclass
class Subject:
    """One thing the client talks to. ``server`` is the relay process (None: direct)."""

    key: str
    label: str
    port: int
    kind: str  # "openai" | "typed" | "whole"
    server: Server | None = None
    options: dict[str, Any] = field(default_factory=dict)  # typed: the "tokenwire" member
    headers: tuple[tuple[str, str], ...] = ()
    unavailable: str | None = None  # why this subject could not run

    def counter(self) -> Counter:
        if self.kind == "typed":
            return TypedCounter(CUM_CHARS)
        if self.kind == "whole":
            return EventCounter()
        return OpenAICounter()


def _body(tokens: int, mock: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "mock",
        "messages": PROMPT,
        "stream": True,
        "max_tokens": tokens,
    }
    if mock:
        body["mock"] = mock
    return body


async def stream_once(
    subject: Subject,
    tokens: int,
    *,
    mock: dict[str, Any] | None = None,
    record_times: bool = False,
    result: Result | None = None,
) -> Result:
    """One whole answer through ``subject``; the counts land in ``result`` as they arrive."""
    res = result or Result()
    res.started = time.perf_counter()
    body = _body(tokens, mock)
    if subject.kind == "typed":
        if subject.options:
            body["tokenwire"] = subject.options
        status, created = await post_json(subject.port, "/v1/streams", body)
        if status != 201 or not isinstance(created, dict):
            res.status = status
            res.error = f"POST /v1/streams answered {status}"
            return res
        res.extra["id"] = created["id"]
        await read_events(subject, str(created["events_url"]), res, record_times=record_times)
        return res
    counter = subject.counter()
    await request(
        subject.port,
        "POST",
        "/v1/chat/completions",
        msgspec.json.encode(body),
        counter=counter,
        result=res,
        record_times=record_times,
        headers=subject.headers,
    )
    if isinstance(counter, TypedCounter) and counter.status not in (None, "completed"):
        res.error = f"stream ended {counter.status}"
    return res


async def read_events(
    subject: Subject, events_url: str, res: Result, *, record_times: bool = False
) -> Result:
    """Read a typed stream's events to its end, counting into ``res``: every op, as sent
    (``catchup=exact``: a reader of an unpaced stream starts behind it, and would otherwise
    get a snapshot instead of the ops the measures count)."""
    await request(
        subject.port,
        "GET",
        f"{events_url}?catchup=exact",
        counter=subject.counter(),
        result=res,
        record_times=record_times,
        headers=subject.headers,
    )
    return res


async def settle(mock: Server, timeout: float = 60.0) -> bool:
    """Wait until the mock serves no stream (relays noticed the client left). False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, stats = await get_json(mock.port, "/_mock/stats")
        except ConnectionError:
            stats = None
        if isinstance(stats, dict) and stats.get("active") == 0:
            return True
        await asyncio.sleep(0.05)
    return False


async def quiet(servers: list[Server], timeout: float = 15.0) -> bool:
    """Wait until these processes stop using CPU (background work left by the last cell)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = sum(s.cpu() for s in servers)
        await asyncio.sleep(0.25)
        if sum(s.cpu() for s in servers) - before <= 0.02:
            return True
    return False


async def _cancel_typed(subject: Subject, results: list[Result]) -> None:
    """Detached generations outlive their readers: cancel those still running."""
    ids = [r.extra["id"] for r in results if "id" in r.extra and not r.done]
    if ids and subject.kind == "typed":
        await asyncio.gather(
            *(post_json(subject.port, f"/v1/streams/{sid}/cancel", {}) for sid in ids),
            return_exceptions=True,
        )


# -- throughput ----------------------------------------------------------------------------
async def throughput(
    subject: Subject, mock: Server, *, concurrency: int, duration: float, tokens: int
) -> dict[str, Any]:
    """``concurrency`` clients, each streaming answers back to back for ``duration`` seconds.

    Tokens are counted as they reach the client (partial answers at the end count too), and
    CPU time of the relay, the mock and this client is read over the same window.
    """
    results: list[Result] = []
    ramp_end = asyncio.Event()

    async def worker() -> None:
        while True:
            res = Result()
            results.append(res)
            await stream_once(subject, tokens, result=res)
            if res.error and not ramp_end.is_set():
                await asyncio.sleep(0.01)

    if subject.server is not None:
        subject.server.refresh()
    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    await asyncio.sleep(min(0.5, duration / 4))  # ramp up: every client has a stream open
    ramp_end.set()
    base_tokens = sum(r.tokens for r in results)
    relay0 = subject.server.cpu() if subject.server else 0.0
    mock0 = mock.cpu()
    client0 = time.process_time()
    t0 = time.perf_counter()
    await asyncio.sleep(duration)
    elapsed = time.perf_counter() - t0
    got = sum(r.tokens for r in results) - base_tokens
    relay_cpu = (subject.server.cpu() - relay0) if subject.server else 0.0
    mock_cpu = mock.cpu() - mock0
    client_cpu = time.process_time() - client0
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    errors = [r.error for r in results if r.error or (r.status and r.status >= 400)]
    await _cancel_typed(subject, results)
    settled = await settle(mock)
    await quiet([mock] + ([subject.server] if subject.server else []))
    per_k = 1000 / got if got else float("nan")
    return {
        "concurrency": concurrency,
        "tokens": got,
        "seconds": round(elapsed, 3),
        "tokens_per_s": round(got / elapsed, 1),
        "relay_cpu_s_per_1k": round(relay_cpu * per_k, 5) if subject.server else None,
        "relay_cpu_util": round(relay_cpu / elapsed, 3) if subject.server else None,
        "mock_cpu_s_per_1k": round(mock_cpu * per_k, 5),
        "client_cpu_s_per_1k": round(client_cpu * per_k, 5),
        "answers_completed": sum(1 for r in results if r.done),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "settled": settled,
    }


# -- paced latency ---------------------------------------------------------------------------
def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def paced(
    subject: Subject, mock: Server, *, streams: int, tps: float, tokens: int, stagger_s: float
) -> dict[str, Any]:
    """``streams`` answers paced at ``tps`` each, started evenly over ``stagger_s`` seconds.

    Inter-token latency is the gap between consecutive tokens as the client sees them; TTFT
    runs from the request (typed: from ``POST /v1/streams``) to the first token.
    """

    async def one(i: int) -> Result:
        await asyncio.sleep(stagger_s * i / streams)
        return await stream_once(subject, tokens, mock={"tps": tps}, record_times=True)

    relay0 = subject.server.cpu() if subject.server else 0.0
    t0 = time.perf_counter()
    results = await asyncio.gather(*(one(i) for i in range(streams)))
    elapsed = time.perf_counter() - t0
    relay_cpu = (subject.server.cpu() - relay0) if subject.server else None
    await settle(mock)
    gaps: list[float] = []
    ttft: list[float] = []
    for r in results:
        times = r.times or []
        gaps.extend(b - a for a, b in itertools.pairwise(times))
        if r.first is not None:
            ttft.append(r.first - r.started)
    errors = [r.error for r in results if r.error or r.status >= 400]
    incomplete = sum(1 for r in results if r.tokens < tokens)
    ms = 1000.0
    return {
        "streams": streams,
        "tps": tps,
        "tokens_per_stream": tokens,
        "seconds": round(elapsed, 2),
        "itl_ms_p50": _round(_pct(gaps, 0.50), ms),
        "itl_ms_p99": _round(_pct(gaps, 0.99), ms),
        "itl_ms_mean": _round(statistics.fmean(gaps) if gaps else None, ms),
        "ttft_ms_p50": _round(_pct(ttft, 0.50), ms),
        "ttft_ms_p99": _round(_pct(ttft, 0.99), ms),
        "relay_cpu_util": round(relay_cpu / elapsed, 3) if relay_cpu is not None else None,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "incomplete": incomplete,
    }


def _round(value: float | None, scale: float) -> float | None:
    return None if value is None else round(value * scale, 3)


# -- wire bytes ------------------------------------------------------------------------------
async def wire_bytes(subject: Subject, *, tokens: int, tps: float) -> dict[str, Any]:
    """Bytes of the response body (SSE, after de-chunking) for one ``tokens``-token answer."""
    res = await stream_once(subject, tokens, mock={"tps": tps} if tps else None)
    text = len(answer_text(tokens).encode())
    return {
        "tokens": res.tokens,
        "wire_bytes": res.body_bytes,
        "text_bytes": text,
        "amplification": round(res.body_bytes / text, 2),
        "complete": res.done and res.tokens == tokens,
        "error": res.error,
    }


# -- memory and capacity (typed streams on a fresh gateway) ----------------------------------
async def _open_idle(subject: Subject, count: int, holder: list[asyncio.Task[Result]]) -> None:
    """Open ``count`` typed streams whose upstream waits (long TTFT) with a reader attached."""
    for _ in range(count):
        holder.append(
            asyncio.create_task(stream_once(subject, 8, mock={"ttft_ms": 600_000, "tps": 1}))
        )
        if len(holder) % 50 == 0:
            await asyncio.sleep(0.05)  # let the gateway accept in waves, as real traffic would


async def _wait_subscribers(gateway: Server, want: int, timeout: float) -> int:
    """Poll /metrics until ``want`` SSE readers are connected (or the timeout passes)."""
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        _, body = await request(gateway.port, "GET", "/metrics")
        for line in body.decode().splitlines():
            if line.startswith('tokenwire_subscribers{transport="sse"}'):
                seen = int(float(line.split()[-1]))
        if seen >= want:
            return seen
        await asyncio.sleep(0.2)
    return seen


async def _create_idle(subject: Subject, count: int) -> list[str]:
    """Start ``count`` generations whose upstream waits (long TTFT), with no reader yet."""
    urls = []
    for i in range(count):
        body = _body(8, {"ttft_ms": 600_000, "tps": 1})
        status, created = await post_json(subject.port, "/v1/streams", body)
        if status == 201 and isinstance(created, dict):
            urls.append(str(created["events_url"]))
        if i % 50 == 49:
            await asyncio.sleep(0.05)
    return urls


async def idle_rss(subject: Subject, gateway: Server, *, streams: int) -> dict[str, Any]:
    """Gateway RSS added per open, idle stream: its generation (upstream waiting for the first
    token), then one SSE reader attached to each."""
    held: list[asyncio.Task[Result]] = []
    try:
        await _open_idle(subject, 100, held)  # warm-up: pools, first-use allocations
        await _wait_subscribers(gateway, 100, 30)
        await asyncio.sleep(0.5)
        before = gateway.rss()
        urls = await _create_idle(subject, streams)
        await asyncio.sleep(1.0)
        middle = gateway.rss()
        for i, url in enumerate(urls):
            held.append(asyncio.create_task(read_events(subject, url, Result())))
            if i % 50 == 49:
                await asyncio.sleep(0.05)
        seen = await _wait_subscribers(gateway, len(urls) + 100, 60)
        await asyncio.sleep(1.0)
        after = gateway.rss()
        alive = sum(1 for t in held if not t.done())
    finally:
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)
    kib = 1024 * streams
    return {
        "streams": streams,
        "created": len(urls),
        "readers_connected": seen - 100,
        "still_open": alive,
        "rss_before_mib": round(before / 2**20, 1),
        "rss_generations_mib": round(middle / 2**20, 1),
        "rss_after_mib": round(after / 2**20, 1),
        "bytes_per_stream": round((after - before) / streams),
        "kib_per_stream": round((after - before) / kib, 2),
        "kib_per_generation": round((middle - before) / kib, 2),
        "kib_per_reader": round((after - middle) / kib, 2),
    }


async def capacity(
    subject: Subject,
    gateway: Server,
    mock: Server,
    *,
    levels: list[int],
    tps: float,
    tokens: int,
    stagger_s: float,
    progress: Progress,
) -> dict[str, Any]:
    """Largest N at which N concurrent paced typed streams all complete without errors.

    Also reports the largest N at which the gateway kept pace: p99 gap between tokens within
    twice the pacing interval and p99 TTFT under one second.
    """
    steps = []
    best = 0
    for n in levels:
        progress(f"capacity: {n} concurrent paced streams")
        step = await paced(subject, mock, streams=n, tps=tps, tokens=tokens, stagger_s=stagger_s)
        step["rss_mib"] = round(gateway.rss() / 2**20, 1)
        steps.append(step)
        ok = step["errors"] == 0 and step["incomplete"] == 0 and gateway.alive
        step["ok"] = ok
        step["kept_pace"] = (
            ok and (step["itl_ms_p99"] or 0) <= 2000 / tps and (step["ttft_ms_p99"] or 0) <= 1000
        )
        if not ok:
            break
        best = n
    paced_best = 0
    for step in steps:
        if not step["kept_pace"]:
            break
        paced_best = step["streams"]
    return {
        "max_streams_ok": best,
        "max_streams_kept_pace": paced_best,
        "cap": levels[-1],
        "tps": tps,
        "tokens": tokens,
        "steps": steps,
    }
