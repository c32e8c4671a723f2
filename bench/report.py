"""Goals (pass/fail from ratios of the same run) and the Markdown report of a benchmark run."""

from __future__ import annotations

from typing import Any

GOAL_CONCURRENCY = "10"


def add_latency_deltas(lat: dict[str, Any]) -> None:
    """Added latency = subject's percentile minus the direct client's at the same load."""
    base = lat["subjects"].get("direct") or {}
    for row in lat["subjects"].values():
        for name in ("itl_ms_p50", "itl_ms_p99", "ttft_ms_p50", "ttft_ms_p99"):
            mine, theirs = row.get(name), base.get(name)
            row["added_" + name] = (
                round(mine - theirs, 3) if mine is not None and theirs is not None else None
            )


def _tps(result: dict[str, Any], key: str, c: str = GOAL_CONCURRENCY) -> float | None:
    row = result.get("throughput", {}).get("subjects", {}).get(key, {})
    run = row.get("runs", {}).get(c)
    return run["tokens_per_s"] if run else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def goal(
        name: str,
        measured: float | None,
        target: float,
        higher: bool,
        unit: str,
        note: str = "",
        *,
        context: bool = False,
    ) -> None:
        """One row; ``context``: a stricter or wider reading than the issue's goal, reported
        against the same target but with no pass/fail."""
        passed = None
        if measured is not None:
            passed = measured >= target if higher else measured <= target
        out.append(
            {
                "goal": name,
                "target": f"{'>=' if higher else '<='} {target:g}{unit}",
                "measured": None if measured is None else f"{measured:g}{unit}",
                "pass": None if context else passed,
                "within_target": passed,
                "context": context,
                "note": note,
            }
        )

    raw = _tps(result, "raw")
    c = GOAL_CONCURRENCY
    goal(
        f"passthrough / raw relay, tokens/s at {c} streams",
        _ratio(_tps(result, "passthrough"), raw),
        0.9,
        True,
        "x",
    )
    goal(
        f"typed stream / raw relay, tokens/s at {c} streams",
        _ratio(_tps(result, "typed"), raw),
        0.5,
        True,
        "x",
    )
    goal(
        f"typed stream / openai-SDK relay, tokens/s at {c} streams",
        _ratio(_tps(result, "typed"), _tps(result, "sdk")),
        15,
        True,
        "x",
    )
    litellm = result.get("throughput", {}).get("subjects", {}).get("litellm", {})
    goal(
        f"typed stream / LiteLLM proxy, tokens/s at {c} streams",
        _ratio(_tps(result, "typed"), _tps(result, "litellm")),
        50,
        True,
        "x",
        litellm.get("unavailable") or "",
    )
    lat = result.get("latency", {})
    for key in ("passthrough", "typed", "typed_off"):
        row = lat.get("subjects", {}).get(key, {})
        goal(
            f"added p99 inter-token latency, {row.get('label', key)}, "
            f"{lat.get('streams')} x {lat.get('tps', 0):g} tok/s",
            row.get("added_itl_ms_p99"),
            5,
            False,
            " ms",
        )
    wire = result.get("wire", {})
    # The figure is one 2,000-token answer as the mock produces it (unpaced); paced
    # runs are context: at a steady rate the window, not the encoding, sets the event count.
    for key, target in (("typed_off", 10.0), ("typed", 1.5), ("typed_wide", 1.5)):
        runs = wire.get("subjects", {}).get(key, {}).get("runs", {})
        for pace, run in runs.items():
            goal(
                f"amplification, {wire['subjects'][key]['label']}, {pace}",
                run.get("amplification"),
                target,
                False,
                "x",
                _PACED_NOTE if key == "typed" and pace != "unpaced" else "",
                context=pace != "unpaced" or key == "typed_wide",
            )
    idle = result.get("idle") or {}
    goal("RSS per idle open stream", idle.get("kib_per_stream"), 20, False, " KiB")
    cap = result.get("capacity") or {}
    goal(
        f"concurrent paced streams in one process without errors (search capped at "
        f"{cap.get('cap')})",
        cap.get("max_streams_ok"),
        2000,
        True,
        "",
    )
    goal(
        "concurrent paced streams one process keeps pace with (p99 gap <= 2x interval, "
        "p99 TTFT <= 1 s)",
        cap.get("max_streams_kept_pace"),
        2000,
        True,
        "",
        context=True,
    )
    # Issue 15: resuming a 10,000-token answer from seq 0 costs <= 1.2x the final message's
    # bytes and <= 20 frames. The Responses format repeats the whole text in its .done events
    # and response.completed, so its bytes are reported as context (no faithful catch-up of
    # that format is under ~5x).
    for row in (result.get("catchup") or {}).get("rows", []):
        view = row["view"]
        goal(
            f"catch-up of a 10,000-token answer, {view} view: bytes / final message",
            _round(row["ratio"]),
            1.2,
            False,
            "x",
            "the format repeats the text 5 times" if view == "responses" else "",
            context=view == "responses",
        )
        goal(
            f"catch-up of a 10,000-token answer, {view} view: frames",
            row["compacted_frames"],
            20,
            False,
            "",
        )
    core = result.get("core") or {}
    # Issue 16: each new decoder within 1.5x of the chat-completions path per chunk, and
    # >= 30x faster than its official SDK's own stream parsing of the same events.
    for label, key in (("OpenAI Responses", "responses"), ("Anthropic Messages", "anthropic")):
        goal(
            f"{label} decoder / chat completions, core CPU per chunk",
            _round(core.get(f"{key}_over_chat")),
            1.5,
            False,
            "x",
        )
    goal(
        "openai SDK Responses Stream / tokenwire Responses decoder, CPU per chunk",
        _round(core.get("responses_sdk_over_tokenwire")),
        30,
        True,
        "x",
    )
    goal(
        "anthropic SDK Stream / tokenwire Anthropic decoder, CPU per chunk",
        _round(core.get("anthropic_sdk_over_tokenwire")),
        30,
        True,
        "x",
        "raw event parsing, no accumulation",
    )
    goal(
        "anthropic SDK messages.stream() / tokenwire Anthropic decoder, CPU per chunk",
        _round(core.get("anthropic_sdk_helper_over_tokenwire")),
        30,
        True,
        "x",
        "the SDK's accumulating helper",
        context=True,
    )
    return out


_PACED_NOTE = (
    "an event per window carries ~2 tokens at 100 tok/s, and an event's framing is ~46 bytes; "
    "1.5x at this rate needs a window of ~180 ms or more: see the 250 ms row"
)


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown(result: dict[str, Any], charts: list[str]) -> str:
    meta = result["meta"]
    lines = [
        f"# Benchmark results ({meta['command']})",
        "",
        f"{meta['date']}, {meta['cpus']} CPUs ({meta['cpu_model']}), Python {meta['python']}; "
        f"run took {result.get('elapsed_s', 0):.0f} s. Every server is its own process on "
        "127.0.0.1; mock, relay and client share the same CPUs.",
        "",
    ]
    tp = result.get("throughput")
    if tp:
        levels = tp["concurrency"]
        mid_c = GOAL_CONCURRENCY if int(GOAL_CONCURRENCY) in levels else str(levels[-1])
        lines += [
            f"## Throughput (answers of {tp['tokens_per_answer']:,} tokens, "
            f"{tp['duration_s']:g} s per cell, mock unpaced)",
            "",
            "| subject | "
            + " | ".join(f"tok/s @{c}" for c in levels)
            + f" | relay CPU ms / 1k tok @{mid_c} | client CPU ms / 1k tok @{mid_c} | errors |",
            "| --- | " + " | ".join("---:" for _ in levels) + " | ---: | ---: | ---: |",
        ]
        for row in tp["subjects"].values():
            if row.get("unavailable"):
                lines.append(
                    f"| {row['label']} | "
                    + " | ".join("-" for _ in levels)
                    + f" | - | - | not run: {row['unavailable']} |"
                )
                continue
            runs = row["runs"]
            mid = runs.get(mid_c, {})
            cpu = mid.get("relay_cpu_s_per_1k")
            lines.append(
                f"| {row['label']} | "
                + " | ".join(_fmt(runs.get(str(c), {}).get("tokens_per_s"), 0) for c in levels)
                + f" | {_fmt(cpu * 1000 if cpu is not None else None)}"
                + f" | {_fmt((mid.get('client_cpu_s_per_1k') or 0) * 1000)}"
                + f" | {sum(r.get('errors', 0) for r in runs.values())} |"
            )
        lines.append("")
    lat = result.get("latency")
    if lat:
        lines += [
            f"## Latency at paced load ({lat['streams']} streams x {lat['tps']:g} tok/s, "
            f"{lat['tokens_per_stream']} tokens each, started over 1 s)",
            "",
            "| subject | gap p50 ms | gap p99 ms | added gap p50 | added gap p99 | TTFT p50 ms "
            "| added TTFT p50 | added TTFT p99 | errors |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in lat["subjects"].values():
            if row.get("unavailable"):
                lines.append(f"| {row['label']} | not run: {row['unavailable']} |||||||| ")
                continue
            lines.append(
                f"| {row['label']} | {_fmt(row['itl_ms_p50'])} | {_fmt(row['itl_ms_p99'])} "
                f"| {_fmt(row['added_itl_ms_p50'])} | {_fmt(row['added_itl_ms_p99'])} "
                f"| {_fmt(row['ttft_ms_p50'])} | {_fmt(row['added_ttft_ms_p50'])} "
                f"| {_fmt(row['added_ttft_ms_p99'])} | {row['errors'] + row['incomplete']} |"
            )
        lines.append("")
    wire = result.get("wire")
    if wire:
        paces = list(wire["paces"])
        lines += [
            f"## Wire bytes for one {wire['tokens']:,}-token answer",
            "",
            "| subject | " + " | ".join(f"bytes ({p}) | amplification ({p})" for p in paces) + " |",
            "| --- | " + " | ".join("---: | ---:" for _ in paces) + " |",
        ]
        text_bytes = None
        for row in wire["subjects"].values():
            cells = []
            for p in paces:
                run = row["runs"].get(p, {})
                text_bytes = run.get("text_bytes", text_bytes)
                cells.append(
                    f"{_fmt(run.get('wire_bytes'))} | {_fmt(run.get('amplification'), 2)}x"
                )
            lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
        lines += ["", f"Final text: {_fmt(text_bytes)} bytes (UTF-8).", ""]
    idle = result.get("idle")
    if idle:
        lines += [
            "## Memory",
            "",
            f"{idle['streams']:,} idle open typed streams (generation running, upstream "
            f"waiting for its first token, one SSE reader each): gateway RSS "
            f"{idle['rss_before_mib']} -> {idle['rss_after_mib']} MiB, "
            f"**{idle['kib_per_stream']} KiB per stream**: "
            f"{idle.get('kib_per_generation', '-')} KiB for the generation "
            f"(RSS {idle.get('rss_generations_mib', '-')} MiB with no reader attached) and "
            f"{idle.get('kib_per_reader', '-')} KiB for its SSE reader.",
            "",
        ]
    cap = result.get("capacity")
    if cap:
        lines += [
            f"## Capacity (typed streams paced at {cap['tps']:g} tok/s, {cap['tokens']} tokens "
            f"each, all open at once; search capped at {cap['cap']:,})",
            "",
            "| streams | no errors | kept pace | errors | incomplete | gap p99 ms | TTFT p99 ms "
            "| gateway CPU "
            "| gateway RSS MiB |",
            "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for step in cap["steps"]:
            lines.append(
                f"| {step['streams']:,} | {'yes' if step['ok'] else 'no'} "
                f"| {'yes' if step['kept_pace'] else 'no'} | {step['errors']} "
                f"| {step['incomplete']} | {_fmt(step['itl_ms_p99'])} "
                f"| {_fmt(step['ttft_ms_p99'])} | {_fmt(step['relay_cpu_util'], 2)} "
                f"| {_fmt(step['rss_mib'])} |"
            )
        lines += [
            "",
            f"Without errors: **{cap['max_streams_ok']:,}** concurrent paced streams; keeping "
            f"pace (p99 gap <= 2x the interval, p99 TTFT <= 1 s): "
            f"**{cap['max_streams_kept_pace']:,}**.",
            "",
        ]
    core = result.get("core")
    if core:
        lines += [
            "## Core: per-chunk CPU (bench.core)",
            "",
            "| path | µs / chunk |",
            "| --- | ---: |",
        ]
        for name, us in core["us_per_chunk"].items():
            lines.append(f"| {name} | {us:.2f} |")
        lines += ["", f"openai SDK / tokenwire: {core['sdk_over_tokenwire']:.1f}x", ""]
        if "responses_over_chat" in core:
            lines += [
                f"Responses decoder / chat: {core['responses_over_chat']:.2f}x; "
                f"Anthropic decoder / chat: {core['anthropic_over_chat']:.2f}x",
                "",
            ]
    catch = result.get("catchup")
    if catch:
        lines += [
            f"## Catch-up per view (bench.catchup): resuming a {catch['tokens']:,}-token answer "
            "from the start",
            "",
            "| view | compacted B (x message) | frames | largest frame B | uncompacted replay "
            "B / frames | resumable-stream whole buffer B / frames |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in catch["rows"]:
            lines.append(
                f"| {r['view']} | {r['compacted_bytes']:,} ({r['ratio']:.2f}x) | "
                f"{r['compacted_frames']} | {r['compacted_max_frame']:,} | "
                f"{r['replay_bytes']:,} / {r['replay_frames']:,} | "
                f"{r['whole_buffer_bytes']:,} / {r['whole_buffer_frames']} |"
            )
        lines.append("")
    takeover = result.get("takeover")
    if takeover and "takeover_s" in takeover:
        t = takeover["takeover_s"]
        lines += [
            "## Takeover (bench.takeover): kill -9 of the producing gateway process",
            "",
            f"{takeover['cut_streams']} streams cut (lease {takeover['lease_s']} s, watchdog "
            f"{takeover['watchdog_s']} s): takeover after min {t['min']} s, median "
            f"{t['median']} s, max {t['max']} s (n={t['n']}); problems: "
            f"{len(takeover['problems'])}.",
            "",
        ]
    clus = result.get("cluster")
    if clus and "rows" in clus:
        lines += [
            "## Redis commands per op (bench.cluster): 3-master cluster vs one Redis",
            "",
            "| backend | masters | ops | readers | commands per op | top commands per op |",
            "| --- | ---: | ---: | ---: | ---: | --- |",
        ]
        for r in clus["rows"]:
            top = ", ".join(f"{k} {v}" for k, v in list(r["per_command_per_op"].items())[:5])
            lines.append(
                f"| {r['backend']} | {r['masters']} | {r['ops']:,} | {r['readers']} | "
                f"{r['calls_per_op']} | {top} |"
            )
        lines.append("")
    prod = result.get("producer")
    if prod:
        e2e, fr = prod["end_to_end"], prod["framing"]
        lines += [
            "## Producer (bench.producer)",
            "",
            f"- end to end, {e2e['tokens_per_answer']:,}-token answer: tokenwire mock "
            f"{e2e['tokenwire_chunks_per_s']:,} chunks/s vs pydantic server "
            f"{e2e['pydantic_chunks_per_s']:,} chunks/s ({e2e['speedup']}x)",
            f"- framing one chunk: {fr['tokenwire_us_per_chunk']} µs vs "
            f"{fr['pydantic_us_per_chunk']} µs ({fr['speedup']}x)",
            "",
        ]
    rows = result.get("goals", [])
    lines += ["## Goals", "", "| goal | target | measured | result |", "| --- | --- | --- | --- |"]
    for g in rows:
        if not g.get("context"):
            verdict = {True: "pass", False: "**FAIL**", None: "not measured"}[g["pass"]]
            note = f" ({g['note']})" if g.get("note") else ""
            lines.append(
                f"| {g['goal']} | {g['target']} | {g['measured'] or '-'} | {verdict}{note} |"
            )
    context = [g for g in rows if g.get("context")]
    if context:
        lines += [
            "",
            "Beyond the goals as the issue states them: stricter or wider readings, against the "
            "same targets, reported without pass/fail.",
            "",
            "| reading | target | measured | within target |",
            "| --- | --- | --- | --- |",
        ]
        for g in context:
            within = {True: "yes", False: "no", None: "not measured"}[g["within_target"]]
            note = f" ({g['note']})" if g.get("note") else ""
            lines.append(
                f"| {g['goal']} | {g['target']} | {g['measured'] or '-'} | {within}{note} |"
            )
    lines.append("")
    if charts:
        lines += ["## Charts", ""] + [f"![{c}]({c})" for c in charts] + [""]
    return "\n".join(lines)
