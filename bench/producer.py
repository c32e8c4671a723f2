"""Producer benchmark: ``tokenwire mock --tps 0`` against a pydantic-per-token server.

Both servers run as separate uvicorn processes on 127.0.0.1; one httpx client streams a long
answer from each in alternating rounds and reads every byte. Also measures the framing cost
of one chunk alone. Run: ``.venv/bin/python -m bench.producer [--full]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def _uvicorn(target: str, *, factory: bool = False) -> Iterator[str]:
    port = _free_port()
    command = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1"]
    command += ["--port", str(port), "--log-level", "warning"]
    if factory:
        command.append("--factory")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(command, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{target} did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _stream_once(client: httpx.Client, url: str, tokens: int) -> float:
    """Chunks per second for one streamed answer of ``tokens`` tokens, read to the end."""
    body = {
        "model": "mock",
        "messages": [{"role": "user", "content": "benchmark"}],
        "stream": True,
        "max_tokens": tokens,
    }
    start = time.perf_counter()
    size = 0
    with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for data in response.iter_raw(65536):
            size += len(data)
    elapsed = time.perf_counter() - start
    if size < tokens * 50:
        raise RuntimeError(f"{url} sent only {size} bytes for {tokens} tokens")
    return tokens / elapsed


def end_to_end(tokens: int, rounds: int) -> dict[str, Any]:
    with (
        _uvicorn("tokenwire.mock:create_mock_app", factory=True) as ours,
        _uvicorn("bench.pydantic_server:app") as theirs,
        httpx.Client(timeout=120) as client,
    ):
        for url in (ours, theirs):  # warm up both
            _stream_once(client, url, 2000)
        results: dict[str, list[float]] = {"tokenwire": [], "pydantic": []}
        for _ in range(rounds):
            results["tokenwire"].append(_stream_once(client, ours, tokens))
            results["pydantic"].append(_stream_once(client, theirs, tokens))
    ours_median = statistics.median(results["tokenwire"])
    theirs_median = statistics.median(results["pydantic"])
    return {
        "tokens_per_answer": tokens,
        "rounds": rounds,
        "tokenwire_chunks_per_s": round(ours_median),
        "pydantic_chunks_per_s": round(theirs_median),
        "speedup": round(ours_median / theirs_median, 2),
    }


def framing(count: int) -> dict[str, Any]:
    """Microseconds to frame one content chunk: byte templates vs pydantic model_dump_json."""
    from bench.pydantic_server import ChatCompletionChunk, Choice, Delta, frame
    from tokenwire.mock import markdown_tokens
    from tokenwire.producer import ChunkFramer

    tokens = list(itertools.islice(markdown_tokens(0), count))
    framer = ChunkFramer("chatcmpl-bench", "mock", 1700000000)

    def ours() -> None:
        content = framer.content
        for token in tokens:
            content(token)

    def theirs() -> None:
        for token in tokens:
            frame(
                ChatCompletionChunk(
                    id="chatcmpl-bench",
                    created=1700000000,
                    model="mock",
                    choices=[Choice(delta=Delta(content=token))],
                )
            )

    ours_s = min(timeit.repeat(ours, number=1, repeat=5)) / count
    theirs_s = min(timeit.repeat(theirs, number=1, repeat=5)) / count
    return {
        "tokenwire_us_per_chunk": round(ours_s * 1e6, 3),
        "pydantic_us_per_chunk": round(theirs_s * 1e6, 3),
        "speedup": round(theirs_s / ours_s, 1),
    }


def run(quick: bool = True) -> dict[str, Any]:
    """Both measurements; ``quick`` uses shorter answers and fewer rounds."""
    tokens, rounds = (20_000, 5) if quick else (100_000, 9)
    return {
        "end_to_end": end_to_end(tokens, rounds),
        "framing": framing(20_000 if quick else 100_000),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="longer answers, more rounds")
    args = parser.parse_args()
    print(json.dumps(run(quick=not args.full), indent=2))


if __name__ == "__main__":
    main()
