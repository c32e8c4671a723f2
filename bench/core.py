"""Per-chunk CPU cost of the core (SSE decode -> normalize -> assemble -> encode), side by side
with the official openai SDK's parse path and with json.loads + dict walking, in one run.
The same is measured for the other upstream APIs' decoders (OpenAI Responses events,
Anthropic Messages events) against their official SDKs' own stream parsing of the same events.

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


_WORDS = ["The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", "."]


def _named(event: dict) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (
        event["type"].encode(),
        json.dumps(event, separators=(",", ":")).encode(),
    )


def make_responses_stream(chunks: int) -> list[bytes]:
    """The same text as OpenAI Responses events: one ``response.output_text.delta`` per read."""
    response = {
        "id": "resp_67ccd2bed1ec8190b14f964abc054267",
        "object": "response",
        "created_at": 1741476542,
        "model": "gpt-4.1-mini-2025-04-14",
        "status": "in_progress",
        "output": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }
    item = "msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b"
    seq = 0
    out = [
        _named({"type": "response.created", "sequence_number": 0, "response": response}),
        _named(
            {
                "type": "response.output_item.added",
                "sequence_number": 1,
                "output_index": 0,
                "item": {
                    "id": item,
                    "type": "message",
                    "status": "in_progress",
                    "role": "assistant",
                    "content": [],
                },
            }
        ),
        _named(
            {
                "type": "response.content_part.added",
                "sequence_number": 2,
                "item_id": item,
                "output_index": 0,
                "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": []},
            }
        ),
    ]
    seq = 3
    for i in range(chunks - 4):
        delta = {
            "type": "response.output_text.delta",
            "sequence_number": seq,
            "item_id": item,
            "output_index": 0,
            "content_index": 0,
            "delta": _WORDS[i % len(_WORDS)],
            "logprobs": [],
        }
        out.append(_named(delta))
        seq += 1
    usage = {"input_tokens": 12, "output_tokens": chunks, "total_tokens": chunks + 12}
    done = {**response, "status": "completed", "usage": usage}
    out.append(_named({"type": "response.completed", "sequence_number": seq, "response": done}))
    return out


def make_anthropic_stream(chunks: int) -> list[bytes]:
    """The same text as Anthropic Messages events: one ``text_delta`` per read."""
    message = {
        "id": "msg_019Q1hrJbZG26Fb9BQhrkHEr",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-20250514",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 1},
    }
    out = [
        _named({"type": "message_start", "message": message}),
        _named(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            }
        ),
    ]
    for i in range(chunks - 5):
        delta = {"type": "text_delta", "text": _WORDS[i % len(_WORDS)]}
        out.append(_named({"type": "content_block_delta", "index": 0, "delta": delta}))
    out.append(_named({"type": "content_block_stop", "index": 0}))
    out.append(
        _named(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": chunks},
            }
        )
    )
    out.append(_named({"type": "message_stop"}))
    return out


def run_tokenwire(pieces: list[bytes], fmt: str = "chat") -> int:
    pipe = Pipeline("st_bench", format=fmt)
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


def run_tokenwire_responses(pieces: list[bytes]) -> int:
    return run_tokenwire(pieces, "responses")


def run_tokenwire_anthropic(pieces: list[bytes]) -> int:
    return run_tokenwire(pieces, "anthropic")


def run_openai_sdk_responses(pieces: list[bytes]) -> int:
    """openai's own parsing of a ``client.responses.create(stream=True)`` stream."""
    import httpx2
    from openai import OpenAI, Stream
    from openai.types.responses import ResponseStreamEvent

    client = _sdk_client(OpenAI)
    request = httpx2.Request("POST", "http://127.0.0.1:9/v1/responses")
    response = httpx2.Response(
        200, headers={"content-type": "text/event-stream"}, content=iter(pieces), request=request
    )
    text = 0
    for event in Stream(cast_to=ResponseStreamEvent, response=response, client=client):
        if event.type == "response.output_text.delta":
            text += len(event.delta)
    return text


def run_anthropic_sdk(pieces: list[bytes]) -> int:
    """anthropic's own parsing of a ``client.messages.create(stream=True)`` stream."""
    import anthropic
    import httpx
    from anthropic._streaming import Stream
    from anthropic.types import RawMessageStreamEvent

    client = _sdk_client(anthropic.Anthropic, "anthropic")
    request = httpx.Request("POST", "http://127.0.0.1:9/v1/messages")
    response = httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=iter(pieces), request=request
    )
    text = 0
    for event in Stream(cast_to=RawMessageStreamEvent, response=response, client=client):
        if event.type == "content_block_delta" and event.delta.type == "text_delta":
            text += len(event.delta.text)
    return text


def run_anthropic_sdk_message_stream(pieces: list[bytes]) -> int:
    """anthropic's ``client.messages.stream()`` helper: the same events, accumulated into the
    message snapshot and ``text`` events (what most Anthropic streaming code reads)."""
    import anthropic
    import httpx
    from anthropic._streaming import Stream
    from anthropic.lib.streaming import MessageStream
    from anthropic.types import RawMessageStreamEvent

    client = _sdk_client(anthropic.Anthropic, "anthropic")
    request = httpx.Request("POST", "http://127.0.0.1:9/v1/messages")
    response = httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=iter(pieces), request=request
    )
    raw = Stream(cast_to=RawMessageStreamEvent, response=response, client=client)
    text = 0
    for event in MessageStream(raw, output_format=anthropic.NOT_GIVEN):
        if event.type == "text":
            text += len(event.text)
    return text


_client_cache: dict[str, object] = {}


def _sdk_client(factory, name: str = "openai"):
    if name not in _client_cache:  # building the client is setup, not per-chunk cost
        base = "http://127.0.0.1:9/v1" if name == "openai" else "http://127.0.0.1:9"
        _client_cache[name] = factory(api_key="bench", base_url=base)
    return _client_cache[name]


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


CHAT = "tokenwire (decode+normalize+assemble+encode)"
RESPONSES = "tokenwire, OpenAI Responses events"
ANTHROPIC = "tokenwire, Anthropic Messages events"
OPENAI_RESPONSES_SDK = "openai SDK Stream -> ResponseStreamEvent"
ANTHROPIC_SDK = "anthropic SDK Stream -> RawMessageStreamEvent"
ANTHROPIC_SDK_HELPER = "anthropic SDK messages.stream() (MessageStream)"

# name -> (function, which stream it reads)
SUBJECTS: dict[str, tuple[Callable[[list[bytes]], int], str]] = {
    CHAT: (run_tokenwire, "chat"),
    "openai SDK Stream -> ChatCompletionChunk": (run_openai_sdk, "chat"),
    "json.loads + dict walking": (run_json_loads, "chat"),
    "msgspec typed decode only (floor)": (run_msgspec_decode_only, "chat"),
    RESPONSES: (run_tokenwire_responses, "responses"),
    OPENAI_RESPONSES_SDK: (run_openai_sdk_responses, "responses"),
    ANTHROPIC: (run_tokenwire_anthropic, "anthropic"),
    ANTHROPIC_SDK: (run_anthropic_sdk, "anthropic"),
    ANTHROPIC_SDK_HELPER: (run_anthropic_sdk_message_stream, "anthropic"),
}
STREAMS = {
    "chat": make_stream,
    "responses": make_responses_stream,
    "anthropic": make_anthropic_stream,
}


def run(chunks: int = 2000, rounds: int = 7, quiet: bool = False) -> dict:
    streams = {name: make(chunks) for name, make in STREAMS.items()}
    for fn, stream in SUBJECTS.values():  # warm-up: imports, caches
        fn(streams[stream][:50])
    samples: dict[str, list[float]] = {name: [] for name in SUBJECTS}
    for _ in range(rounds):  # alternate subjects every round so noise hits all alike
        for name, (fn, stream) in SUBJECTS.items():
            pieces = streams[stream]
            start = time.process_time()
            fn(pieces)
            samples[name].append((time.process_time() - start) / len(pieces) * 1e6)
    us = {name: statistics.median(v) for name, v in samples.items()}
    ours = us[CHAT]
    n = len(streams["chat"])
    result = {
        "chunks": n,
        "rounds": rounds,
        "us_per_chunk": us,
        "sdk_over_tokenwire": us["openai SDK Stream -> ChatCompletionChunk"] / ours,
        "json_loads_over_tokenwire": us["json.loads + dict walking"] / ours,
        "responses_over_chat": us[RESPONSES] / ours,
        "anthropic_over_chat": us[ANTHROPIC] / ours,
        "responses_sdk_over_tokenwire": us[OPENAI_RESPONSES_SDK] / us[RESPONSES],
        "anthropic_sdk_over_tokenwire": us[ANTHROPIC_SDK] / us[ANTHROPIC],
        "anthropic_sdk_helper_over_tokenwire": us[ANTHROPIC_SDK_HELPER] / us[ANTHROPIC],
    }
    if not quiet:
        print(f"per-chunk CPU, {n} chunks per stream, median of {rounds} alternating rounds")
        for name, value in us.items():
            print(f"  {name:48s} {value:8.2f} us/chunk  ({value / ours:5.2f}x tokenwire chat)")
        print(f"  openai SDK / tokenwire = {result['sdk_over_tokenwire']:.1f}x (goal >= 50x)")
        print(
            f"  Responses decoder / chat = {result['responses_over_chat']:.2f}x (goal <= 1.5x); "
            f"openai SDK / it = {result['responses_sdk_over_tokenwire']:.1f}x (goal >= 30x)"
        )
        print(
            f"  Anthropic decoder / chat = {result['anthropic_over_chat']:.2f}x (goal <= 1.5x); "
            f"anthropic SDK / it = {result['anthropic_sdk_over_tokenwire']:.1f}x raw events, "
            f"{result['anthropic_sdk_helper_over_tokenwire']:.1f}x messages.stream() "
            "(goal >= 30x)"
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    run(args.chunks, args.rounds)


if __name__ == "__main__":
    main()
