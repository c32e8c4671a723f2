"""Property tests for the invariants in DESIGN.md, over generated upstream streams."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenwire.protocol import (
    Message,
    NotAChatCompletion,
    Pipeline,
    apply_op,
    apply_ops,
    assemble_response,
    decode_op,
    snapshot_op,
)

# Text that exercises escaping, multi-byte UTF-8 and think tags.
words = st.sampled_from(
    [
        "Hello",
        " world",
        "é",
        "😀",
        "\n",
        '"q"',
        "\\",
        "<",
        "<think>",
        "</think>",
        "think>",
        "</th",
        "a<b",
        # gpt-oss harmony markup (split by the chunking like any other text)
        "<|channel|>analysis<|message|>",
        "<|end|><|start|>assistant<|channel|>final<|message|>",
        "<|chan",
        "<|channel|>commentary to=functions.f<|message|>",
        "<|call|>",
    ]
)
snippet = st.lists(words, min_size=1, max_size=4).map("".join)


@st.composite
def upstream_streams(draw) -> bytes:
    """An OpenAI-style SSE body mixing every kind of delta and quirk."""
    chunks: list[dict] = []
    n_choices = draw(st.integers(min_value=1, max_value=2))
    next_id = 0
    for _ in range(draw(st.integers(min_value=0, max_value=25))):
        choice = draw(st.integers(min_value=0, max_value=n_choices - 1))
        kind = draw(
            st.sampled_from(
                [
                    "content",
                    "reasoning_content",
                    "reasoning",
                    "details",
                    "refusal",
                    "tool",
                    "gemini",
                    "signature",
                    "encrypted",
                    "annotation",
                ]
            )
        )
        delta: dict = {}
        if kind == "content":
            delta["content"] = draw(snippet)
        elif kind in ("reasoning_content", "reasoning"):
            delta[kind] = draw(snippet)
        elif kind == "details":
            delta["reasoning_details"] = [{"type": "reasoning.text", "text": draw(snippet)}]
        elif kind == "refusal":
            delta["refusal"] = draw(snippet)
        elif kind == "signature":  # v1.1: opaque reasoning parts (OpenRouter)
            detail = {"type": "reasoning.text", "signature": draw(snippet)}
            delta["reasoning_details"] = [detail]
        elif kind == "encrypted":
            fmt = draw(st.sampled_from(["anthropic-claude-v1", "openai-responses-v1"]))
            delta["reasoning_details"] = [
                {"type": "reasoning.encrypted", "data": draw(snippet), "format": fmt}
            ]
        elif kind == "annotation":  # v1.1: a url_citation, with or without its span
            cite: dict = {"url": f"https://x.example/{draw(st.integers(0, 3))}", "title": "t"}
            if draw(st.booleans()):
                start = draw(st.integers(0, 6))
                cite |= {"start_index": start, "end_index": start + 2}
            delta["annotations"] = [{"type": "url_citation", "url_citation": cite}]
        elif kind == "tool":
            index = draw(st.integers(min_value=0, max_value=2))
            call: dict = {"index": index, "function": {"arguments": json.dumps(draw(snippet))}}
            if draw(st.booleans()):
                next_id += 1
                call["id"] = f"call_{next_id}"
                call["function"]["name"] = "fn"
            delta["tool_calls"] = [call]
        else:
            next_id += 1
            delta["tool_calls"] = [
                {"id": f"g{next_id}", "function": {"name": "g", "arguments": "{}"}}
            ]
        chunks.append({"model": "m", "choices": [{"index": choice, "delta": delta}]})
    ending = draw(st.sampled_from(["done", "finish", "finish+done", "none", "error"]))
    if "finish" in ending:
        chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if draw(st.booleans()):
        chunks.append({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}})
    if ending == "error":
        chunks.append({"error": {"message": "boom", "code": 500}})
    sep = draw(st.sampled_from(["\n", "\r\n"]))
    body = "".join(
        f": ping{sep}{sep}" * draw(st.integers(0, 1))
        + f"data: {json.dumps(c, ensure_ascii=False)}{sep}{sep}"
        for c in chunks
    )
    if "done" in ending:
        body += f"data: [DONE]{sep}{sep}"
    return body.encode()


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *bounds], [*bounds, len(data)], strict=True)]


def run_pipeline(pieces: list[bytes], coalesce_ms: float = 0.0, times: list[float] | None = None):
    pipe = Pipeline("st_prop", coalesce_ms=coalesce_ms)
    ops = []
    now = 0.0
    for i, piece in enumerate(pieces):
        now = times[i] if times else now
        ops += pipe.feed(piece, now)
        ops += pipe.poll(now)
    ops += pipe.close(now)
    return ops, pipe.message


@settings(max_examples=150, deadline=None)
@given(upstream_streams(), st.lists(st.integers(min_value=0, max_value=10**6), max_size=12))
def test_any_split_of_the_bytes_gives_the_same_message_and_ops(body, cuts) -> None:
    whole_ops, whole = run_pipeline([body])
    ops, message = run_pipeline(split(body, cuts))
    assert message.to_json() == whole.to_json()
    assert [o.json for o in ops] == [o.json for o in whole_ops]


@settings(max_examples=150, deadline=None)
@given(upstream_streams(), st.lists(st.integers(min_value=0, max_value=10**6), max_size=8))
def test_applying_the_encoded_ops_rebuilds_the_assemblers_message(body, cuts) -> None:
    ops, message = run_pipeline(split(body, cuts))
    rebuilt = apply_ops([decode_op(op.json) for op in ops])
    assert rebuilt.to_json() == message.to_json()
    assert [op.seq for op in ops] == list(range(1, len(ops) + 1))
    assert ops[-1].type == "message.end" and message.status != "in_progress"


@settings(max_examples=150, deadline=None)
@given(
    upstream_streams(),
    st.lists(st.integers(min_value=0, max_value=10**6), max_size=10),
    st.sampled_from([1.0, 20.0, 50.0, 10_000.0]),
    st.lists(st.floats(min_value=0, max_value=0.05), min_size=11, max_size=11),
)
def test_coalescing_changes_op_count_never_the_message(body, cuts, window, gaps) -> None:
    _, plain = run_pipeline([body])
    pieces = split(body, cuts)
    times = []
    clock = 0.0
    for i in range(len(pieces)):
        clock += gaps[i % len(gaps)]
        times.append(clock)
    ops, message = run_pipeline(pieces, coalesce_ms=window, times=times)
    assert message.to_json() == plain.to_json()
    assert apply_ops([decode_op(op.json) for op in ops]).to_json() == plain.to_json()
    # within one block, deltas were merged, so there are never more ops than without coalescing
    assert len(ops) <= len(run_pipeline([body])[0])


@settings(max_examples=100, deadline=None)
@given(upstream_streams(), st.integers(min_value=0, max_value=10**6))
def test_resume_from_a_snapshot_at_any_seq_gives_the_same_message(body, at) -> None:
    ops, message = run_pipeline([body])
    k = at % (len(ops) + 1)
    state = apply_ops(ops[:k])
    resumed = Message.empty()
    apply_op(resumed, decode_op(snapshot_op(state, k).json))
    for op in ops[k:]:
        apply_op(resumed, decode_op(op.json))
    assert resumed.to_json() == message.to_json()


@settings(max_examples=60, deadline=None)
@given(upstream_streams())
def test_replay_of_a_recording_matches_the_live_pipeline(body) -> None:
    _, live = run_pipeline([body])
    if b"data:" not in body:  # nothing at all was recorded: replay must say so
        with pytest.raises(NotAChatCompletion):
            assemble_response(body)
        return
    _, message = assemble_response(body, stream_id="st_prop")
    assert message.to_json() == live.to_json()


@settings(max_examples=150, deadline=None)
@given(upstream_streams())
def test_one_event_per_read_gives_the_same_ops_as_one_read(body) -> None:
    # Reads of exactly one event are what the pipeline's per-token fast path takes.
    events = [e + b"\n\n" for e in body.replace(b"\r\n", b"\n").split(b"\n\n") if e]
    whole_ops, whole = run_pipeline([b"".join(events)])
    ops, message = run_pipeline(events)
    assert [o.json for o in ops] == [o.json for o in whole_ops]
    assert [o.sse for o in ops] == [o.sse for o in whole_ops]
    assert message.to_json() == whole.to_json()
