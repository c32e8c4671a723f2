"""Per-chunk CPU cost of the core (SSE decode -> normalize -> assemble -> encode), side by side
with the official openai SDK's parse path and with json.loads + dict walking, in one run.

Run: .venv/bin/python -m bench.core [--chunks N] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import msgspec

from tokenwire.protocol import Pipeline


def make_stream(chunks: int) -> list[bytes]:
    """A realistic OpenAI stream: one network read per chunk, ~4-char tokens."""
    words = ["The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", "."]
    head = {
        "id": "chatcmpl-AbCdEf0123456789",
        "object": "chat.completion.chunk",
        "created": 1732000000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_0ba0d124f1",
    }
    out = []
    for i in range(chunks):
        delta = {"content": words[i % len(words)]}
        if i == 0:
            delta = {"role": "assistant", "content": "", "refusal": None}
        chunk = {
            **head,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}],
        }
        out.append(b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n")
    final = {
        **head,
        "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}],
    }
    out.append(b"data: " + json.dumps(final, separators=(",", ":")).encode() + b"\n\n")
    out.append(b"data: [DONE]\n\n")
    return out


def run_tokenwire(pieces: list[bytes]) -> int:
    pipe = Pipeline("st_bench")
    sent = 0
    for piece in pieces:
        for op in pipe.feed(piece):
            sent += len(op.sse)
    for op in pipe.close():
        sent += len(op.sse)
    return sent


def run_openai_sdk(pieces: list[bytes]) -> int:
    import httpx2
    from openai import OpenAI, Stream
    from openai.types.chat import ChatCompletionChunk

    client = _sdk_client(OpenAI)
    request = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    response = httpx2.Response(
        200, headers={"content-type": "text/event-stream"}, content=iter(pieces), request=request
    )
    text = 0
    for chunk in Stream(cast_to=ChatCompletionChunk, response=response, client=client):
        for choice in chunk.choices:
            if choice.delta.content:
                text += len(choice.delta.content)
    return text


_client_cache: dict[str, object] = {}


def _sdk_client(factory):
    if "c" not in _client_cache:  # building the client is setup, not per-chunk cost
        _client_cache["c"] = factory(api_key="bench", base_url="http://127.0.0.1:9/v1")
    return _client_cache["c"]


def run_json_loads(pieces: list[bytes]) -> int:
    """The hand-rolled way: split lines, json.loads each chunk, walk the dicts."""
    buffer = b""
    parts: list[str] = []
    for piece in pieces:
        buffer += piece
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices") or ():
                content = (choice.get("delta") or {}).get("content")
                if content:
                    parts.append(content)
    return len("".join(parts))


class _Delta(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None


class _Chunk(msgspec.Struct):
    choices: list[_Choice] = []


_decode_chunk = msgspec.json.Decoder(_Chunk).decode


def run_msgspec_decode_only(pieces: list[bytes]) -> int:
    """Floor: a typed msgspec decode of each chunk and nothing else."""
    n = 0
    for piece in pieces:
        if piece.startswith(b"data: {"):
            n += len(_decode_chunk(piece[6:-2]).choices)
    return n


SUBJECTS: dict[str, Callable[[list[bytes]], int]] = {
    "tokenwire (decode+normalize+assemble+encode)": run_tokenwire,
    "openai SDK Stream -> ChatCompletionChunk": run_openai_sdk,
    "json.loads + dict walking": run_json_loads,
    "msgspec typed decode only (floor)": run_msgspec_decode_only,
}


def run(chunks: int = 2000, rounds: int = 7, quiet: bool = False) -> dict:
    pieces = make_stream(chunks)
    n = len(pieces)
    for fn in SUBJECTS.values():  # warm-up: imports, caches
        fn(pieces[:50])
    samples: dict[str, list[float]] = {name: [] for name in SUBJECTS}
    for _ in range(rounds):  # alternate subjects every round so noise hits all alike
        for name, fn in SUBJECTS.items():
            start = time.process_time()
            fn(pieces)
            samples[name].append((time.process_time() - start) / n * 1e6)
    us = {name: statistics.median(v) for name, v in samples.items()}
    ours = us["tokenwire (decode+normalize+assemble+encode)"]
    result = {
        "chunks": n,
        "rounds": rounds,
        "us_per_chunk": us,
        "sdk_over_tokenwire": us["openai SDK Stream -> ChatCompletionChunk"] / ours,
        "json_loads_over_tokenwire": us["json.loads + dict walking"] / ours,
    }
    if not quiet:
        print(f"per-chunk CPU, {n} chunks, median of {rounds} alternating rounds")
        for name, value in us.items():
            print(f"  {name:48s} {value:8.2f} us/chunk  ({value / ours:5.2f}x tokenwire)")
        print(f"  openai SDK / tokenwire = {result['sdk_over_tokenwire']:.1f}x (goal >= 50x)")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    run(args.chunks, args.rounds)


if __name__ == "__main__":
    main()
