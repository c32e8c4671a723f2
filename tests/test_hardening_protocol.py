"""Issue 12, items 4-7: hostile or broken upstream bytes (linear bounded SSE decoding, invalid
UTF-8, deep JSON, a 200 answer that is not an event stream)."""

from __future__ import annotations

import json
import time

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokenwire.protocol import Pipeline, SSEDecoder, apply_ops, assemble_response
from tokenwire.protocol.jsonsafe import (
    InvalidJSON,
    JSONTooDeep,
    decode_json_body,
    json_depth_exceeds,
    repair_utf8,
)
from tokenwire.protocol.sse import SSEEventTooLarge


def chunk(content: str, finish: str | None = None) -> bytes:
    body = {"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def final(pipe: Pipeline) -> dict:
    return json.loads(pipe.message.to_json())


# -- item 4: linear and bounded ----------------------------------------------------------------


def test_a_long_line_in_small_pieces_is_linear() -> None:
    # Before: every read re-joined and re-split the whole buffered line (quadratic): 8 MiB in
    # 1 KiB reads took many seconds. Linear, it is a few milliseconds.
    decoder = SSEDecoder(max_event_bytes=64 << 20)
    piece = b"x" * 1024
    start = time.perf_counter()
    assert decoder.feed(b"data: ") == []
    for _ in range(8 * 1024):
        decoder.feed(piece)
    events = decoder.feed(b"\n\n")
    elapsed = time.perf_counter() - start
    assert len(events) == 1 and len(events[0].raw) == 8 << 20
    assert elapsed < 1.0, elapsed


def test_oversized_event_raises_and_drops_the_buffer() -> None:
    decoder = SSEDecoder(max_event_bytes=1000)
    decoder.feed(b"data: ")
    with pytest.raises(SSEEventTooLarge) as info:
        for _ in range(100):
            decoder.feed(b"y" * 100)
    assert "1000" in str(info.value)
    assert not decoder.pending  # the buffered bytes were freed


def test_oversized_event_made_of_many_data_lines_raises() -> None:
    decoder = SSEDecoder(max_event_bytes=1000)
    with pytest.raises(SSEEventTooLarge):
        for _ in range(100):
            decoder.feed(b"data: " + b"z" * 50 + b"\n")


def test_oversized_event_in_one_read_keeps_the_events_before_it() -> None:
    decoder = SSEDecoder(max_event_bytes=1000)
    with pytest.raises(SSEEventTooLarge) as info:
        decoder.feed(b"data: small\n\ndata: " + b"b" * 5000 + b"\n\n")
    assert [e.raw for e in info.value.events] == [b"small"]


def test_pipeline_fails_an_oversized_event_with_the_partial_kept() -> None:
    pipe = Pipeline("st_1", max_event_bytes=4096)
    ops = pipe.feed(chunk("Hello"))
    ops += pipe.feed(b'data: {"choices":[{"delta":{"content":"')
    for _ in range(10):
        ops += pipe.feed(b"a" * 1000)
    assert pipe.done
    message = final(pipe)
    assert message["status"] == "failed"
    assert message["error"]["type"] == "event_too_large"
    assert message["blocks"] == [{"type": "text", "text": "Hello"}]
    assert pipe.feed(chunk("more")) == []  # nothing after the end


def test_a_whole_oversized_event_in_one_read_does_not_take_the_fast_path() -> None:
    # One read holding exactly one event is decoded without the SSE decoder (per-token fast
    # path): the limit still applies to it.
    pipe = Pipeline("st_1", max_event_bytes=4096)
    pipe.feed(chunk("Hel"))
    pipe.feed(chunk("lo"))
    pipe.feed(chunk("a" * 5000))
    message = final(pipe)
    assert message["error"]["type"] == "event_too_large"
    assert message["blocks"] == [{"type": "text", "text": "Hello"}]


def responses_delta(text: str, n: int) -> bytes:
    data = {
        "type": "response.output_text.delta",
        "sequence_number": n,
        "output_index": 0,
        "content_index": 0,
        "item_id": "msg_1",
        "delta": text,
    }
    return b"event: response.output_text.delta\ndata: " + msgspec.json.encode(data) + b"\n\n"


def test_an_oversized_responses_event_in_one_read_fails_too() -> None:
    pipe = Pipeline("st_1", format="responses", max_event_bytes=4096)
    added = {
        "type": "response.output_item.added",
        "sequence_number": 0,
        "output_index": 0,
        "item": {"id": "msg_1", "type": "message", "role": "assistant", "content": []},
    }
    pipe.feed(b"event: response.output_item.added\ndata: " + msgspec.json.encode(added) + b"\n\n")
    pipe.feed(responses_delta("Hel", 1))
    pipe.feed(responses_delta("lo", 2))
    pipe.feed(responses_delta("a" * 5000, 3))
    message = final(pipe)
    assert message["error"]["type"] == "event_too_large"
    assert message["blocks"] == [{"type": "text", "text": "Hello"}]


@given(st.lists(st.binary(max_size=40), max_size=30))
def test_bounded_decoder_agrees_with_an_unbounded_one(pieces: list[bytes]) -> None:
    # The limit never changes what a decoder yields for events within it.
    data = b"".join(pieces)
    big = SSEDecoder()
    out_big = [e for p in pieces for e in big.feed(p)]
    whole = SSEDecoder().feed(data)
    assert [(e.raw, e.event, e.id) for e in out_big] == [(e.raw, e.event, e.id) for e in whole]


# -- item 5: invalid UTF-8 ---------------------------------------------------------------------


def test_invalid_utf8_is_replaced_not_dropped_and_the_message_says_so() -> None:
    pipe = Pipeline("st_1")
    pipe.feed(chunk("Hello "))
    pipe.feed(b'data: {"choices":[{"index":0,"delta":{"content":"w\xffrld"}}]}\n\n')
    pipe.feed(chunk("!", "stop") + b"data: [DONE]\n\n")
    message = final(pipe)
    assert message["status"] == "completed"
    assert message["blocks"][0]["text"] == "Hello w\ufffdrld!"
    assert message["error"]["type"] == "invalid_utf8"
    assert "U+FFFD" in message["error"]["message"]


def test_lone_surrogate_escape_is_replaced() -> None:
    pipe = Pipeline("st_1")
    pipe.feed(b'data: {"choices":[{"index":0,"delta":{"content":"a\\ud800b"}}]}\n\n')
    pipe.feed(b'data: {"choices":[{"index":0,"delta":{"content":"\\ud83d\\ude00"}}]}\n\n')
    pipe.feed(b"data: [DONE]\n\n")
    message = final(pipe)
    assert message["blocks"][0]["text"] == "a\ufffdb\U0001f600"
    assert message["error"]["type"] == "invalid_utf8"


def test_clean_streams_carry_no_warning() -> None:
    pipe = Pipeline("st_1")
    pipe.feed(chunk("ok", "stop") + b"data: [DONE]\n\n")
    assert final(pipe)["error"] is None


def test_repair_utf8_keeps_pairs_and_escaped_backslashes() -> None:
    assert repair_utf8(b'"\\ud83d\\ude00"') is None
    assert repair_utf8(b'"\\\\ud800"') is None  # a literal backslash, then text
    assert repair_utf8(b'"\\udc00\\udc01"') == b'"\\ufffd\\ufffd"'
    assert repair_utf8(b'"\\\\\\ud800"') == b'"\\\\\\ufffd"'


def test_whole_body_with_invalid_utf8_is_kept() -> None:
    body = b'{"choices":[{"index":0,"message":{"content":"a\xfeb"},"finish_reason":"stop"}]}'
    _, message = assemble_response(body)
    assert message.text == "a\ufffdb"
    assert message.error is not None and message.error["type"] == "invalid_utf8"


# -- item 6: deep JSON -------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["usage", "unknown", "content"])
def test_deep_json_chunk_is_a_skipped_line_not_a_recursion_error(where: str) -> None:
    deep = b"[" * 5000 + b"]" * 5000
    if where == "content":
        payload = b'{"choices":[{"delta":{"content":' + deep + b"}}]}"
    else:
        payload = b'{"' + where.encode() + b'":' + deep + b"}"
    pipe = Pipeline("st_1")
    pipe.feed(chunk("a"))
    for _ in range(3):  # also once the per-token fast path is armed
        pipe.feed(b"data: " + payload + b"\n\n")
    pipe.feed(chunk("b", "stop"))
    pipe.close()
    assert final(pipe)["blocks"][0]["text"] == "ab"
    assert pipe.normalizer.skipped == 3


def test_deep_whole_body_is_not_a_chat_completion() -> None:
    from tokenwire.protocol import NotAChatCompletion

    with pytest.raises(NotAChatCompletion):
        assemble_response(b'{"x":' + b"[" * 5000 + b"]" * 5000 + b"}")


def test_decode_json_body_bounds_depth() -> None:
    assert decode_json_body(b'{"a":[1,{"b":2}]}') == {"a": [1, {"b": 2}]}
    assert decode_json_body(b'{"s":"[[[[[[[[[["}', max_depth=2) == {"s": "[[[[[[[[[["}
    with pytest.raises(JSONTooDeep):
        decode_json_body(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(JSONTooDeep):
        decode_json_body(b'{"a":{"b":{"c":1}}}', max_depth=2)
    with pytest.raises(InvalidJSON):
        decode_json_body(b"{nope")
    assert decode_json_body('{"after": 3}') == {"after": 3}  # a WebSocket text frame
    with pytest.raises(JSONTooDeep):
        decode_json_body("[" * 5000 + "]" * 5000)
    assert issubclass(JSONTooDeep, ValueError) and issubclass(InvalidJSON, ValueError)


@pytest.mark.parametrize(
    "body",
    [
        b"[]" * 65 + b'\\"' * 200_000,  # escaped quotes in a string never closed
        b'["' + b"[" * 70 + b"\\" * 200_000,  # brackets, then one long open string
        b"[" * 65 + b'"\\"' * 100_000,  # many quotes and escapes
    ],
)
def test_the_depth_check_is_linear_on_strings_left_open(body: bytes) -> None:
    """The depth check runs on the event loop before the body is known to be JSON. A
    string left open made it retry the string match from each later quote: 32 KB of
    escaped quotes held the loop 7.6 s (a 400 KB body would take minutes). Linear: at once."""
    started = time.perf_counter()
    with pytest.raises(ValueError):  # (InvalidJSON, or JSONTooDeep for the last)
        decode_json_body(body)
    assert time.perf_counter() - started < 1.0


@given(
    st.recursive(
        st.none() | st.integers() | st.text(), lambda c: st.lists(c) | st.dictionaries(st.text(), c)
    )
)
def test_json_depth_matches_the_real_depth(value) -> None:
    def depth(v) -> int:
        if isinstance(v, list):
            return 1 + max((depth(x) for x in v), default=0)
        if isinstance(v, dict):
            return 1 + max((depth(x) for x in v.values()), default=0)
        return 0

    data = msgspec.json.encode(value)
    real = depth(value)
    assert not json_depth_exceeds(data, real)
    if real:
        assert json_depth_exceeds(data, real - 1)


# -- item 7: a 200 answer that is not an event stream --------------------------------------------


@pytest.mark.parametrize(
    ("body", "expect"),
    [
        (b"<!DOCTYPE html><html><body>Bad gateway</body></html>", "HTML page"),
        (
            b'{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,'
            b'"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}',
            "whole chat.completion JSON",
        ),
        (b'{\n  "object": "chat.completion",\n  "choices": []\n}\n', "chat.completion"),
        (
            b'{"id":"resp_1","object":"response","status":"completed","error":null,"output":[]}',
            "whole Responses API response",
        ),
        (b'{"id":"msg_1","type":"message","role":"assistant","content":[]}', "Anthropic message"),
        (b'{"error":{"message":"no","type":"invalid_request_error"}}', "JSON error body"),
        (b'{"error": null, "data": 1}', "upstream answered with a JSON body"),
    ],
)
def test_a_200_answer_that_is_not_an_event_stream_says_what_it_was(
    body: bytes, expect: str
) -> None:
    pipe = Pipeline("st_1")
    pipe.feed(body)
    pipe.close()
    message = final(pipe)
    assert message["status"] == "failed"
    assert message["error"]["type"] == "not_event_stream"
    assert expect in message["error"]["message"]


def test_a_cut_event_stream_is_still_truncated() -> None:
    pipe = Pipeline("st_1")
    pipe.feed(chunk("partial"))
    pipe.close()
    assert final(pipe)["error"]["type"] == "truncated"


# -- the assembler's look-backs stay linear (found by a probe; each took 3-12 s before) -------
def _event(obj: dict) -> bytes:
    return f"event: {obj['type']}\ndata: {json.dumps(obj)}\n\n".encode()


_ANTHROPIC_START = _event(
    {
        "type": "message_start",
        "message": {"id": "m", "type": "message", "role": "assistant", "model": "c", "content": []},
    }
)


def _citations_after_their_text(n: int) -> tuple[str, bytes]:
    """Responses: a text, a hosted tool item (the text is no longer open), then n citations."""
    events = [
        {"type": "response.created", "sequence_number": 0, "response": {"id": "r", "model": "m"}},
        {
            "type": "response.output_text.delta",
            "item_id": "m1",
            "output_index": 0,
            "delta": "hello",
        },
        {
            "type": "response.output_item.added",
            "output_index": 1,
            "item": {"type": "web_search_call", "id": "ws"},
        },
    ]
    citation = {"type": "url_citation", "title": "t", "start_index": 0, "end_index": 5}
    events += [
        {
            "type": "response.output_text.annotation.added",
            "item_id": "m1",
            "output_index": 0,
            "annotation": {**citation, "url": f"https://e.example/{i}"},
        }
        for i in range(n)
    ]
    return "responses", b"".join(map(_event, events))


def _open_tool_results(n: int) -> tuple[str, bytes]:
    """Anthropic: n server tool results that start and never stop."""
    starts = [
        {
            "type": "content_block_start",
            "index": i,
            "content_block": {
                "type": "web_search_tool_result",
                "tool_use_id": f"t{i}",
                "content": [],
            },
        }
        for i in range(n)
    ]
    return "anthropic", _ANTHROPIC_START + b"".join(map(_event, starts))


def _signatures_after_blocks(n: int) -> tuple[str, bytes]:
    """Anthropic: a thought, n other blocks, then n signatures for the thought."""
    events = [
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": ""},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "hm"},
        },
    ]
    events += [
        {
            "type": "content_block_start",
            "index": i + 1,
            "content_block": {"type": "container_upload", "id": f"x{i}"},
        }
        for i in range(n)
    ]
    events += [
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "signature_delta", "signature": f"s{i}"},
        }
        for i in range(n)
    ]
    return "anthropic", _ANTHROPIC_START + b"".join(map(_event, events))


@pytest.mark.parametrize(
    "make", [_citations_after_their_text, _open_tool_results, _signatures_after_blocks]
)
def test_the_assemblers_look_backs_are_linear(make) -> None:
    """Each citation looked for its text, each tool result for the blocks to end, each
    signature for its thought, over every block so far: 20,000 such events (a few MB) held
    one ``feed`` for 3-12 s. Linear, they take a fraction of a second (the bound leaves room
    for a slow machine); the message is the same as the ops say."""
    fmt, body = make(20_000)
    pipeline = Pipeline("st_x", format=fmt)
    started = time.perf_counter()
    ops = [*pipeline.feed(body), *pipeline.close()]
    elapsed = time.perf_counter() - started
    assert elapsed < 3.0, elapsed
    message = apply_ops([op.op for op in ops])
    assert message.to_dict() == pipeline.assembler.message.to_dict()
    blocks = message.to_dict()["blocks"]
    if make is _citations_after_their_text:
        sources = [b for b in blocks if b["type"] == "source"]
        assert len(sources) == 20_000 and {s["span"]["block"] for s in sources} == {0}
    elif make is _open_tool_results:
        assert [b["type"] for b in blocks] == ["tool_result"] * 20_000
    else:
        assert blocks[0]["type"] == "reasoning" and blocks[0]["signature"] == "s19999"
