"""``make bench``: tokenwire side by side with what users would pick instead, in one run.

Starts the mock model, the relays, the gateway and (if it can be installed) LiteLLM's proxy as
separate processes on 127.0.0.1, measures throughput, CPU, latency, wire bytes, memory and
capacity, and writes ``latest.json``, ``latest.md`` and PNG charts to ``bench/results/local/``
(not tracked), or with ``--publish`` to ``bench/results/`` (the published, tracked results).

Run: ``.venv/bin/python -m bench [--full] [--publish]`` (``make bench`` / ``make bench FULL=1``
/ ``make bench UPDATE=1``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import charts, e2e, litellm_setup, procs, report
from bench.e2e import Subject
from bench.procs import Server

RESULTS = procs.ROOT / "bench" / "results"
"""The published results (tracked in git): written only with ``--publish``."""
LOCAL_RESULTS = RESULTS / "local"
"""Where a run writes by default (ignored by git): a run never dirties the tree."""


@dataclass(frozen=True)
class Sizes:
    concurrency: tuple[int, ...] = (1, 10, 100)
    duration_s: float = 2.5
    answer_tokens: int = 1000
    paced_streams: int = 200
    paced_tps: float = 20.0
    paced_tokens: int = 100
    wire_tokens: int = 2000
    wire_tps: float = 100.0
    idle_streams: int = 1000
    capacity_levels: tuple[int, ...] = (250, 500, 1000, 2000)
    capacity_tps: float = 10.0
    capacity_tokens: int = 40
    core_rounds: int = 5
    litellm_latency: bool = False  # ~70 s: LiteLLM falls far behind at this load


DEFAULT = Sizes()
FULL = Sizes(
    duration_s=8.0,
    paced_tokens=400,
    idle_streams=3000,
    capacity_levels=(250, 500, 1000, 2000, 3000, 4000, 6000),
    core_rounds=9,
    litellm_latency=True,
)


class Progress:
    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.start:6.1f}s] {message}", flush=True)


# -- processes ---------------------------------------------------------------------------
@contextlib.contextmanager
def _mock(log: Path) -> Iterator[Server]:
    port = procs.free_port()
    command = procs.tokenwire_command("mock", "--port", str(port))
    with procs.spawn("mock", command, port, ready_path="/v1/models", log=log) as server:
        yield server


@contextlib.contextmanager
def _gateway(mock: Server, data_dir: Path, log: Path) -> Iterator[Server]:
    port = procs.free_port()
    command = procs.tokenwire_command(
        "serve",
        "--upstream",
        f"{mock.url}/v1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--log-level",
        "warning",
    )
    with procs.spawn("tokenwire serve", command, port, ready_path="/healthz", log=log) as server:
        yield server


@contextlib.contextmanager
def _relay(kind: str, mock: Server, log: Path) -> Iterator[Server]:
    port = procs.free_port()
    command = procs.uvicorn_command(procs_target(kind), port, factory=True)
    env = {"BENCH_UPSTREAM": f"{mock.url}/v1"}
    with procs.spawn(f"{kind} relay", command, port, env=env, ready_path="/healthz", log=log) as s:
        yield s


def procs_target(kind: str) -> str:
    from bench.relays import FACTORIES

    return FACTORIES[kind]


@contextlib.contextmanager
def _litellm(
    mock: Server, workdir: Path, progress: Progress, skip: bool
) -> Iterator[tuple[Server | None, str | None]]:
    """LiteLLM's proxy, or ``(None, reason)``: its failure never stops the run."""
    if skip:
        yield None, "skipped (--no-litellm)"
        return
    progress("LiteLLM: checking its venv (bench/.venv-litellm; first run installs it)")
    reason = litellm_setup.ensure(workdir / "litellm-install.log")
    if reason:
        yield None, reason
        return
    port = procs.free_port()
    config = litellm_setup.write_config(workdir, f"{mock.url}/v1")
    try:
        with procs.spawn(
            "litellm",
            litellm_setup.command(config, port),
            port,
            env=litellm_setup.ENV,
            ready_path="/health/liveliness",
            timeout=180,
            log=workdir / "litellm.log",
        ) as server:
            yield server, None
    except RuntimeError as exc:
        yield None, f"LiteLLM proxy did not start: {exc}"


# -- the run -----------------------------------------------------------------------------
async def _warm_up(subjects: list[Subject], progress: Progress) -> None:
    progress("warm-up: one answer through " + ", ".join(s.key for s in subjects))
    for subject in subjects:
        warm = await e2e.stream_once(subject, 200)
        if warm.error or warm.tokens != 200:
            subject.unavailable = f"warm-up failed: {warm.error or warm.tokens} tokens"


async def _throughput(
    subject: Subject, mock: Server, sizes: Sizes, c: int, tp: dict, progress: Progress
) -> None:
    progress(f"throughput: {subject.label}, {c} concurrent")
    run = await e2e.throughput(
        subject, mock, concurrency=c, duration=sizes.duration_s, tokens=sizes.answer_tokens
    )
    tp["subjects"][subject.key]["runs"][str(c)] = run
    progress(
        f"  -> {run['tokens_per_s']:,.0f} tok/s, relay {_ms(run['relay_cpu_s_per_1k'])} "
        f"CPU-ms/1k tok, errors {run['errors']}"
    )


async def _latency(
    subject: Subject, mock: Server, sizes: Sizes, lat: dict, progress: Progress
) -> None:
    if subject.unavailable:
        lat["subjects"][subject.key] = {"label": subject.label, "unavailable": subject.unavailable}
        return
    progress(f"latency: {subject.label}, {sizes.paced_streams} streams x {sizes.paced_tps:g} tok/s")
    row = await e2e.paced(
        subject,
        mock,
        streams=sizes.paced_streams,
        tps=sizes.paced_tps,
        tokens=sizes.paced_tokens,
        stagger_s=1.0,
    )
    row["label"] = subject.label
    lat["subjects"][subject.key] = row
    await e2e.quiet([mock] + ([subject.server] if subject.server else []))
    progress(
        f"  -> gap p50 {row['itl_ms_p50']} ms, p99 {row['itl_ms_p99']} ms, "
        f"TTFT p50 {row['ttft_ms_p50']} ms, errors {row['errors']}"
    )


async def _wire(
    subjects: dict[str, Subject], mock: Server, sizes: Sizes, progress: Progress
) -> dict[str, Any]:
    paces = {"unpaced": 0.0, f"{sizes.wire_tps:g} tok/s": sizes.wire_tps}
    wire: dict[str, Any] = {"tokens": sizes.wire_tokens, "paces": paces, "subjects": {}}
    keys = ("passthrough", "typed_off", "typed", "typed_wide", "whole")
    for key in keys:
        wire["subjects"][key] = {"label": subjects[key].label, "runs": {}}
    for pace, tps in paces.items():
        note = f" (~{sizes.wire_tokens / tps:.0f} s)" if tps else ""
        progress(f"wire bytes: one {sizes.wire_tokens}-token answer, {pace}{note}")
        runs = await asyncio.gather(
            *(e2e.wire_bytes(subjects[k], tokens=sizes.wire_tokens, tps=tps) for k in keys)
        )
        for key, run in zip(keys, runs, strict=True):
            wire["subjects"][key]["runs"][pace] = run
        await e2e.settle(mock)
    return wire


async def _e2e(sizes: Sizes, progress: Progress, workdir: Path, skip_litellm: bool) -> dict:
    out: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        mock = stack.enter_context(_mock(workdir / "mock.log"))
        gateway = stack.enter_context(_gateway(mock, workdir / "gw", workdir / "gateway.log"))
        raw = stack.enter_context(_relay("raw", mock, workdir / "raw.log"))
        sdk = stack.enter_context(_relay("sdk", mock, workdir / "sdk.log"))
        whole = stack.enter_context(_relay("whole", mock, workdir / "whole.log"))
        progress("servers up: mock, tokenwire serve, raw/SDK/whole-answer relays")
        subjects = {
            "direct": Subject("direct", "direct (client reads the mock)", mock.port, "openai"),
            "raw": Subject("raw", "raw relay (httpx, bytes untouched)", raw.port, "openai", raw),
            "passthrough": Subject(
                "passthrough", "tokenwire passthrough", gateway.port, "openai", gateway
            ),
            "typed": Subject(
                "typed", "tokenwire typed stream (20 ms window)", gateway.port, "typed", gateway
            ),
            "typed_off": Subject(
                "typed_off",
                "tokenwire typed stream (coalescing off)",
                gateway.port,
                "typed",
                gateway,
                options={"coalesce_ms": 0},
            ),
            "sdk": Subject("sdk", "openai-SDK relay (model_dump_json)", sdk.port, "openai", sdk),
            "litellm": Subject(
                "litellm", "LiteLLM proxy", 0, "openai", headers=litellm_setup.HEADERS
            ),
            "whole": Subject("whole", "whole-answer-per-event relay", whole.port, "whole", whole),
        }
        await _warm_up([s for k, s in subjects.items() if k != "litellm"], progress)
        tp: dict[str, Any] = {
            "concurrency": list(sizes.concurrency),
            "duration_s": sizes.duration_s,
            "tokens_per_answer": sizes.answer_tokens,
            "subjects": {k: {"label": s.label, "runs": {}} for k, s in subjects.items()},
        }
        lat: dict[str, Any] = {
            "streams": sizes.paced_streams,
            "tps": sizes.paced_tps,
            "tokens_per_stream": sizes.paced_tokens,
            "subjects": {},
        }
        latency_keys = ("direct", "raw", "passthrough", "typed", "typed_off", "sdk")
        # Latency first, while every process is fresh; then throughput.
        for key in latency_keys:
            await _latency(subjects[key], mock, sizes, lat, progress)
        for c in sizes.concurrency:
            for key, subject in subjects.items():
                if key != "litellm" and not subject.unavailable:
                    await _throughput(subject, mock, sizes, c, tp, progress)
        # (Wire bytes only: the per-request window that reaches 1.5x at 100 tok/s.)
        wide = Subject(
            "typed_wide",
            "tokenwire typed stream (250 ms window, set per request)",
            gateway.port,
            "typed",
            gateway,
            options={"coalesce_ms": 250},
        )
        out["wire"] = await _wire({**subjects, "typed_wide": wide}, mock, sizes, progress)
        # LiteLLM last and alone: it keeps working in the background after a burst.
        with _litellm(mock, workdir, progress, skip_litellm) as (litellm, reason):
            subject = subjects["litellm"]
            if litellm is not None:
                subject.port, subject.server = litellm.port, litellm
                subject.label = f"LiteLLM proxy {litellm_setup.version() or ''}".strip()
                await _warm_up([subject], progress)
            else:
                subject.unavailable = reason
            tp["subjects"]["litellm"]["label"] = subject.label
            tp["subjects"]["litellm"]["unavailable"] = subject.unavailable
            if not subject.unavailable:
                for c in sizes.concurrency:
                    await _throughput(subject, mock, sizes, c, tp, progress)
            if not sizes.litellm_latency and not subject.unavailable:
                subject.unavailable = (
                    "latency not run at the default size (LiteLLM takes over a minute to "
                    "drain this load); make bench FULL=1 runs it"
                )
            await _latency(subject, mock, sizes, lat, progress)
        report.add_latency_deltas(lat)
        out["throughput"] = tp
        out["latency"] = lat

    # Memory and capacity on a fresh mock + gateway (no retained logs from the runs above).
    with contextlib.ExitStack() as stack:
        mock = stack.enter_context(_mock(workdir / "mock2.log"))
        gateway = stack.enter_context(_gateway(mock, workdir / "gw2", workdir / "gateway2.log"))
        typed = Subject("typed", "tokenwire typed stream", gateway.port, "typed", gateway)
        progress(f"memory: {sizes.idle_streams} idle open typed streams on a fresh gateway")
        out["idle"] = await e2e.idle_rss(typed, gateway, streams=sizes.idle_streams)
        progress(f"  -> {out['idle']['kib_per_stream']} KiB per idle stream")
        # Their generations are detached and still waiting upstream: stopping both ends them.
    with contextlib.ExitStack() as stack:
        mock = stack.enter_context(_mock(workdir / "mock3.log"))
        gateway = stack.enter_context(_gateway(mock, workdir / "gw3", workdir / "gateway3.log"))
        typed = Subject("typed", "tokenwire typed stream", gateway.port, "typed", gateway)
        out["capacity"] = await e2e.capacity(
            typed,
            gateway,
            mock,
            levels=list(sizes.capacity_levels),
            tps=sizes.capacity_tps,
            tokens=sizes.capacity_tokens,
            stagger_s=2.0,
            progress=progress,
        )
        cap = out["capacity"]
        progress(
            f"  -> {cap['max_streams_ok']} concurrent paced streams without errors, "
            f"{cap['max_streams_kept_pace']} keeping pace"
        )
    return out


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f}"


def _meta(full: bool) -> dict[str, Any]:
    import httpx
    import openai
    import starlette
    import uvicorn

    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "command": "make bench" + (" FULL=1" if full else ""),
        "full": full,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "versions": {
            "uvicorn": uvicorn.__version__,
            "starlette": starlette.__version__,
            "httpx": httpx.__version__,
            "openai": openai.__version__,
            "litellm": litellm_setup.version(),
        },
    }


def results_dir(out: Path | None, publish: bool) -> Path:
    """``--out`` if given, else the published directory with ``--publish``, else the local one."""
    if out is not None:
        return out
    return RESULTS if publish else LOCAL_RESULTS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="larger sizes (takes much longer)")
    parser.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM subject")
    parser.add_argument(
        "--skip-micro", action="store_true", help="skip bench.core and bench.producer"
    )
    parser.add_argument(
        "--skip-takeover", action="store_true", help="skip bench.takeover (needs redis-server)"
    )
    parser.add_argument(
        "--skip-cluster",
        action="store_true",
        help="skip bench.cluster (Redis commands per op: a 3-master cluster vs one Redis)",
    )
    parser.add_argument(
        "--publish",
        action="store_true",
        help=f"update the published results in {RESULTS.relative_to(procs.ROOT)}",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"results directory (default {LOCAL_RESULTS.relative_to(procs.ROOT)})",
    )
    args = parser.parse_args(argv)
    args.out = results_dir(args.out, args.publish)
    sizes = FULL if args.full else DEFAULT
    progress = Progress()
    result: dict[str, Any] = {"meta": _meta(args.full)}
    progress(
        f"tokenwire benchmarks ({'full' if args.full else 'default'} size) on "
        f"{result['meta']['cpus']} CPUs: {result['meta']['cpu_model']}"
    )
    if not args.skip_micro:
        from bench import core, producer

        progress("core: per-chunk CPU of the pipeline vs the openai SDK (bench.core)")
        result["core"] = core.run(chunks=2000, rounds=sizes.core_rounds, quiet=True)
        progress("producer: mock vs a pydantic server (bench.producer)")
        result["producer"] = producer.run(quick=not args.full)
    if not args.skip_takeover:
        from bench import takeover

        progress("takeover: kill -9 of the producing gateway process (bench.takeover)")
        result["takeover"] = takeover.measure(trials=100 if args.full else 30)
        progress(
            "  -> "
            + result["takeover"]
            .get("summary", result["takeover"].get("unavailable", ""))
            .replace("\n", "\n     ")
        )
    if not args.skip_cluster:
        from bench import cluster

        progress("cluster: Redis commands per op, 3-master cluster vs one Redis (bench.cluster)")
        result["cluster"] = cluster.run()
        progress("  -> " + result["cluster"].get("summary", result["cluster"].get("unavailable")))
    from bench import catchup  # (pure CPU: about a second)

    progress("catch-up: resuming a 10,000-token answer per view (bench.catchup)")
    result["catchup"] = catchup.run()
    with tempfile.TemporaryDirectory(prefix="tokenwire-bench-") as tmp:
        try:
            result.update(asyncio.run(_e2e(sizes, progress, Path(tmp), args.no_litellm)))
        except Exception:
            logs = sorted(Path(tmp).glob("*.log"))
            for log in logs:
                tail = log.read_text(errors="replace").splitlines()[-15:]
                print(f"--- {log.name}\n" + "\n".join(tail), file=sys.stderr)
            raise
    result["goals"] = report.goals(result)
    result["elapsed_s"] = round(time.monotonic() - progress.start, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    made = charts.write_all(result, args.out)
    markdown = report.markdown(result, made)
    (args.out / "latest.md").write_text(markdown)
    print()
    print(markdown)
    progress(f"wrote {args.out / 'latest.json'}, latest.md and {', '.join(made)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
