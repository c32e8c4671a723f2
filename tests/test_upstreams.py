"""The Responses, Anthropic and harmony decoders: facts, detection, splits and fuzzing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenwire.protocol import apply_ops, assemble_response, decode_op
from tokenwire.protocol.anthropic import AnthropicNormalizer
from tokenwire.protocol.facts import (
    DataFact,
    Finished,
    ImageFact,
    ReasoningEncrypted,
    ReasoningSignature,
    SourceFact,
    Started,
    ToolResultEnd,
    ToolResultOutput,
    ToolResultStarted,
    UpstreamError,
)
from tokenwire.protocol.formats import detect_body, detect_event
from tokenwire.protocol.harmony import HarmonySplitter
from tokenwire.protocol.normalizer import ChunkNormalizer
from tokenwire.protocol.pipeline import Pipeline
from tokenwire.protocol.responses_events import ResponsesNormalizer
from tokenwire.protocol.sse import SSEDecoder, SSEEvent

FIXTURES = Path(__file__).parent / "fixtures"
FORMAT_OF = {
    "responses": "responses",
    "anthropic": "anthropic",
    "harmony": "chat",
    "azure": "chat",
}
UPSTREAM_FIXTURES = sorted(p.name for p in FIXTURES.iterdir() if p.name.split("_")[0] in FORMAT_OF)


def facts_of(name: str, normalizer) -> list:
    data = (FIXTURES / name).read_bytes()
    if data.lstrip().startswith(b"{"):
        return normalizer.feed_body(data)
    facts = []
    for event in SSEDecoder().feed(data):
        facts += normalizer.feed_event(event)
    return facts + normalizer.close()


# -- facts the v1.0 assembler does not show yet (protocol v1.1) -----------------------------
def test_anthropic_signature_redacted_thinking_and_tool_results() -> None:
    facts = facts_of("anthropic_thinking.sse", AnthropicNormalizer())
    assert [f.signature[:12] for f in facts if isinstance(f, ReasoningSignature)] == [
        "ErUBCkYIARgC"
    ]
    facts = facts_of("anthropic_redacted_max_tokens.sse", AnthropicNormalizer())
    redacted = [f for f in facts if isinstance(f, ReasoningEncrypted)]
    assert redacted == [ReasoningEncrypted(0, redacted[0].data, redacted=True)]
    assert redacted[0].data.startswith("EmwKAhgB")
    assert Finished(0, "length") in facts
    facts = facts_of("anthropic_server_tool_result.sse", AnthropicNormalizer())
    result_types = ToolResultStarted | ToolResultOutput | ToolResultEnd
    results = [f for f in facts if isinstance(f, result_types)]
    assert results[0] == ToolResultStarted(0, "svu_web_001", "web_search", False)
    assert json.loads(results[1].text)[0]["url"] == "https://example.com"
    assert results[2] == ToolResultEnd(0, "svu_web_001")
    assert results[3] == ToolResultStarted(0, "svu_code_001", None, False)
    assert json.loads(results[4].text)["stdout"] == "hello"


def test_anthropic_citations_span_their_text_block() -> None:
    for name in ("anthropic_citations.sse", "anthropic_message.json"):
        facts = facts_of(name, AnthropicNormalizer())
        sources = [f for f in facts if isinstance(f, SourceFact)]
        text = "According to the documents:\nThe grass is green and the sky is blue."
        first, second = sources
        assert text[first.start : first.end] == "The grass is green"
        assert first.cited_text == "The grass is green. "
        cited = "the sky is blue"
        assert text[second.start : second.end] == cited


def test_responses_encrypted_reasoning_spans_and_hosted_tools() -> None:
    facts = facts_of("responses_reasoning_citation.sse", ResponsesNormalizer())
    assert ReasoningEncrypted(0, "gAAAAABor0A1Zr3Jc2m8y2kX0VJb3Yl1e8w==") in facts
    (source,) = [f for f in facts if isinstance(f, SourceFact)]
    text = "The Eiffel Tower is 330 m tall (toureiffel.paris) — café ✓."
    assert text[source.start : source.end] == "toureiffel.paris"
    facts = facts_of("responses_hosted_tools.sse", ResponsesNormalizer())
    data = [f for f in facts if isinstance(f, DataFact)]
    assert [(d.name, d.id, d.value["status"]) for d in data] == [
        ("web_search_call", "ws_67c9fa0502748190b7dd390736892e100be649c1a5ff9609", "in_progress"),
        ("web_search_call", "ws_67c9fa0502748190b7dd390736892e100be649c1a5ff9609", "completed"),
        ("code_interpreter_call", "ci_1", "in_progress"),
        ("code_interpreter_call", "ci_1", "completed"),
    ]
    (source,) = [f for f in facts if isinstance(f, SourceFact)]
    cited = "A new sea turtle sanctuary opened."[source.start : source.end]
    assert cited == "new sea turtle sanctuary"
    facts = facts_of("responses_body.json", ResponsesNormalizer())
    assert ReasoningEncrypted(0, "gAAAAABoIPOD") in facts


def test_responses_image_generation_and_content_filter() -> None:
    events = [
        {"type": "response.created", "response": {"model": "gpt-image"}},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {"type": "image_generation_call", "id": "ig_1", "status": "in_progress"},
        },
        {"type": "response.image_generation_call.generating", "output_index": 0},
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": {"type": "image_generation_call", "id": "ig_1", "result": "iVBORw0KGgo="},
        },
        {
            "type": "response.incomplete",
            "response": {
                "status": "incomplete",
                "incomplete_details": {"reason": "content_filter"},
            },
        },
    ]
    normalizer = ResponsesNormalizer()
    facts = []
    for event in events:
        facts += normalizer.feed_data(json.dumps(event).encode())
    assert ImageFact(0, "data:image/png;base64,iVBORw0KGgo=") in facts
    assert Finished(0, "content_filter") in facts
    # The in-progress item leaves no data block behind: the image is the only block.
    assert not [f for f in facts if isinstance(f, DataFact)]


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "pause_turn"),
    ],
)
def test_anthropic_stop_reasons(reason: str, finish: str) -> None:
    normalizer = AnthropicNormalizer()
    event = {"type": "message_delta", "delta": {"stop_reason": reason}, "usage": {"x": 3}}
    assert Finished(0, finish) in normalizer.feed_data(json.dumps(event).encode())


def test_anthropic_error_body_and_azure_model() -> None:
    body = b'{"type":"error","error":{"type":"not_found_error","message":"model: nope"}}'
    assert detect_body(body) == "anthropic"
    _, message = assemble_response(body)
    assert message.status == "failed"
    assert message.error == {"message": "model: nope", "type": "not_found_error", "code": None}
    facts = facts_of("azure_content_filter.sse", ChunkNormalizer())
    assert facts[0] == Started("gpt-4o-2024-05-13")


# -- detection -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("event", "data", "fmt"),
    [
        ("response.created", b"{}", "responses"),
        ("message", b'{"type":"response.output_text.delta","delta":"x"}', "responses"),
        ("message", b'{"type":"error","code":"x","message":"y"}', "responses"),
        ("message_start", b"{}", "anthropic"),
        ("message", b'{"type": "content_block_delta"}', "anthropic"),
        ("error", b'{"type":"error","error":{"type":"overloaded_error"}}', "anthropic"),
        ("message", b'{"id":"chatcmpl-1","choices":[]}', "chat"),
        ("message", b"[DONE]", "chat"),
        ("message", b"not json", "chat"),
    ],
)
def test_detect_event(event: str, data: bytes, fmt: str) -> None:
    assert detect_event(SSEEvent(data, event)) == fmt


@pytest.mark.parametrize("name", UPSTREAM_FIXTURES)
def test_auto_detection_matches_the_forced_format(name: str) -> None:
    data = (FIXTURES / name).read_bytes()
    fmt = FORMAT_OF[name.split("_")[0]]
    _, auto = assemble_response(data, stream_id="s")
    _, forced = assemble_response(data, stream_id="s", format=fmt)
    assert auto.to_json() == forced.to_json()
    if not data.startswith(b"{"):
        pipe = Pipeline("s", format="auto")
        pipe.feed(data)
        assert pipe.format == fmt


# -- splits, rebuilds, fuzz -------------------------------------------------------------------
def run(data: bytes, cuts: list[int], fmt: str = "auto"):
    pipe = Pipeline("st", format=fmt)
    ops = []
    bounds = sorted({c % (len(data) + 1) for c in cuts})
    for a, b in zip([0, *bounds], [*bounds, len(data)], strict=True):
        ops += pipe.feed(data[a:b])
    ops += pipe.close()
    return ops, pipe.message


@pytest.mark.parametrize("name", [n for n in UPSTREAM_FIXTURES if n.endswith(".sse")])
def test_every_byte_boundary_gives_the_same_ops(name: str) -> None:
    data = (FIXTURES / name).read_bytes()
    whole_ops, whole = run(data, [])
    for cut in range(1, len(data)):
        ops, _ = run(data, [cut])
        assert [o.json for o in ops] == [o.json for o in whole_ops], cut
    rebuilt = apply_ops([decode_op(op.json) for op in whole_ops])
    assert rebuilt.to_json() == whole.to_json()


_EVENT_SPELLINGS = ["plain", "crlf", "cr", "no space", "id line", "comment", "two in one"]
_EVENT_FIXTURES = [
    n for n in UPSTREAM_FIXTURES if n.endswith(".sse") and FORMAT_OF[n.split("_")[0]] != "chat"
]


@settings(max_examples=120, deadline=None)
@given(
    st.sampled_from(_EVENT_FIXTURES),
    st.lists(st.sampled_from(_EVENT_SPELLINGS), min_size=1, max_size=40),
    st.sampled_from(["auto", "forced"]),
)
def test_one_event_per_read_takes_the_direct_path_only_when_it_may(name, spellings, how) -> None:
    """A Responses / Anthropic read that is exactly one ``event:`` + ``data: `` event skips the
    SSE decoder (the per-token path); any other spelling of the same events (``\r`` line
    ends, ``data:`` without its space, an ``id:`` or comment line, two events in one read)
    must not, and every mix gives the ops of one whole read."""
    data = (FIXTURES / name).read_bytes().replace(b"\r\n", b"\n")
    fmt = FORMAT_OF[name.split("_")[0]] if how == "forced" else "auto"
    events = [e for e in data.split(b"\n\n") if e.strip()]
    reads: list[bytes] = []
    for i, event in enumerate(events):
        spelling = spellings[i % len(spellings)]
        if spelling == "crlf":
            event = event.replace(b"\n", b"\r\n") + b"\r\n\r\n"
        elif spelling == "cr":
            event = event.replace(b"\n", b"\r") + b"\r\r"
        elif spelling == "no space":
            event = event.replace(b"data: ", b"data:") + b"\n\n"
        elif spelling == "id line":
            event = event + f"\nid: {i}".encode() + b"\n\n"
        elif spelling == "comment":
            event = b": keep-alive\n" + event + b"\n\n"
        else:
            event += b"\n\n"
        if spelling == "two in one" and reads:
            reads[-1] += event
        else:
            reads.append(event)
    whole_ops, whole = run(b"".join(reads), [], fmt)
    pipe = Pipeline("st", format=fmt)
    ops = [op for read in reads for op in pipe.feed(read)] + pipe.close()
    assert [o.json for o in ops] == [o.json for o in whole_ops]
    assert pipe.message.to_json() == whole.to_json()


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([n for n in UPSTREAM_FIXTURES if n.endswith(".sse")]),
    st.lists(st.integers(min_value=0, max_value=10**6), max_size=30),
)
def test_any_split_gives_the_same_message(name: str, cuts: list[int]) -> None:
    data = (FIXTURES / name).read_bytes()
    whole_ops, _ = run(data, [])
    ops, message = run(data, cuts)
    assert [o.json for o in ops] == [o.json for o in whole_ops]
    assert apply_ops([decode_op(op.json) for op in ops]).to_json() == message.to_json()


@st.composite
def mangled(draw) -> tuple[str, bytes]:
    """A fixture with bit flips, a truncation and a splice of another fixture."""
    name = draw(st.sampled_from(UPSTREAM_FIXTURES))
    data = bytearray((FIXTURES / name).read_bytes())
    for _ in range(draw(st.integers(0, 8))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] ^= 1 << draw(st.integers(0, 7))
    data = data[: draw(st.integers(0, len(data)))]
    if draw(st.booleans()):
        other = (FIXTURES / draw(st.sampled_from(UPSTREAM_FIXTURES))).read_bytes()
        a = draw(st.integers(0, len(other)))
        b = draw(st.integers(a, len(other)))
        at = draw(st.integers(0, len(data)))
        data = data[:at] + other[a:b] + data[at:]
    return name, bytes(data)


@settings(max_examples=300, deadline=None)
@given(mangled(), st.sampled_from(["auto", "chat", "responses", "anthropic"]))
def test_no_exception_escapes_on_mangled_input(case, fmt: str) -> None:
    _, data = case
    ops, message = run(data, [len(data) // 3, len(data) // 2], fmt)
    assert ops[-1].type == "message.end"
    assert apply_ops([decode_op(op.json) for op in ops]).to_json() == message.to_json()
    for normalizer in (ResponsesNormalizer(), AnthropicNormalizer()):
        try:
            normalizer.feed_body(data)
        except ValueError:
            pass  # msgspec's decode errors: assemble_response reports them


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "<|channel|>",
                "analysis",
                "final",
                "commentary to=functions.f",
                " <|constrain|>json",
                "<|message|>",
                "<|end|>",
                "<|start|>assistant",
                "<|call|>",
                "<|return|>",
                "Hi",
                "<",
                "|",
                ">",
                "<|x|>",
                " ",
                "é",
                "<| ",  # (a stray "<|" before a real token: text)
                "x" * 300,  # (headers past MAX_HEADER: text, however they are split)
            ]
        ),
        max_size=30,
    ).map("".join),
    st.lists(st.integers(min_value=0, max_value=10_000), max_size=10),
)
def test_harmony_splits_the_same_at_any_point(text: str, cuts: list[int]) -> None:
    def pieces_of(parts: list[str]) -> list[tuple[str, str]]:
        splitter = HarmonySplitter()
        out = []
        for part in parts:
            out += splitter.feed(part)
        out += splitter.flush()
        merged: list[tuple[str, str]] = []
        for kind, piece in out:
            if merged and merged[-1][0] == kind and kind != "tool_call":
                merged[-1] = (kind, merged[-1][1] + piece)
            else:
                merged.append((kind, piece))
        return merged

    bounds = sorted({c % (len(text) + 1) for c in cuts})
    parts = [text[a:b] for a, b in zip([0, *bounds], [*bounds, len(text)], strict=True)]
    assert pieces_of(parts) == pieces_of([text])


def test_harmony_is_bounded_on_hostile_content() -> None:
    splitter = HarmonySplitter()
    splitter.feed("<|channel|>final<|message|>")
    out = splitter.feed("<|" * 200_000)  # no token ends: all text, in linear time
    assert "".join(t for _, t in out) + "".join(t for _, t in splitter.flush()) == "<|" * 200_000
    splitter = HarmonySplitter()
    out = splitter.feed("<|start|>" + "a" * 10_000)  # a header that never ends is text
    assert out == [("text", "a" * 10_000)]


@pytest.mark.parametrize("unit", ["<|channel|>", "<|start|>", "<|start|>a<|message|>b<|end|>"])
def test_harmony_is_linear_on_a_piece_of_many_openers(unit: str) -> None:
    """One content piece of 80,000 openers (an SSE event may hold megabytes): each header or
    message used to slice or join the rest of the piece, about 18 s; linear, well under 1 s
    (the bound leaves room for a slow machine)."""
    import time

    splitter = HarmonySplitter()
    started = time.perf_counter()
    splitter.feed(unit * 80_000)
    splitter.flush()
    elapsed = time.perf_counter() - started
    assert elapsed < 5.0, elapsed


@pytest.mark.parametrize("opener", ["<|start|>assistant<|channel|>", "<|channel|>"])
@pytest.mark.parametrize("size", [1, 7, 100, 10_000])
def test_a_header_too_long_is_text_however_it_is_split(opener: str, size: int) -> None:
    """Past MAX_HEADER characters a header is text whether ``<|message|>`` came in the same
    piece or not (it used to be a header only when whole), and the text ends."""
    text = opener + "commentary to=functions.f " + "x" * 600 + "<|message|>{}<|call|>"
    text += "<|start|>assistant<|channel|>final<|message|>ok<|return|>"
    splitter = HarmonySplitter()
    out = []
    for at in range(0, len(text), size):
        out += splitter.feed(text[at : at + size])
    out += splitter.flush()
    kinds = {kind for kind, _ in out}
    assert kinds == {"text"}, out
    joined = "".join(piece for _, piece in out)
    assert "x" * 600 in joined and joined.endswith("ok")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"x":"a <|"}', '{"x":"a <|"}'),
        ("In F#, write f <| x", "In F#, write f <| x"),
    ],
)
def test_a_stray_token_opener_does_not_swallow_the_next_token(body: str, expected: str) -> None:
    text = f"<|channel|>analysis<|message|>{body}<|end|>"
    text += "<|start|>assistant<|channel|>final<|message|>ok<|return|>"
    for size in (1, 3, len(text)):
        splitter = HarmonySplitter()
        out = []
        for at in range(0, len(text), size):
            out += splitter.feed(text[at : at + size])
        out += splitter.flush()
        reasoning = "".join(p for kind, p in out if kind == "reasoning")
        final = "".join(p for kind, p in out if kind == "text")
        assert (reasoning, final) == (expected, "ok"), size


def test_upstream_error_mid_stream_is_reported() -> None:
    facts = facts_of("anthropic_error_mid_stream.sse", AnthropicNormalizer())
    assert facts[-1] == UpstreamError("Overloaded", "overloaded_error", None)


@pytest.mark.parametrize("name", [n for n in UPSTREAM_FIXTURES if n.endswith(".sse")])
@pytest.mark.parametrize("fmt", ["auto", "forced"])
def test_one_event_per_read_gives_the_same_ops_as_one_read(name: str, fmt: str) -> None:
    # Reads of exactly one event are what the events fast path takes.
    data = (FIXTURES / name).read_bytes()
    forced = FORMAT_OF[name.split("_")[0]] if fmt == "forced" else "auto"
    events = [e + b"\n\n" for e in data.split(b"\n\n") if e]
    whole_ops, whole = run(data, [], forced)
    pipe = Pipeline("st", format=forced)
    ops = []
    for event in events:
        ops += pipe.feed(event)
    ops += pipe.close()
    assert [o.json for o in ops] == [o.json for o in whole_ops]
    assert [o.sse for o in ops] == [o.sse for o in whole_ops]
    assert pipe.message.to_json() == whole.to_json()


def test_responses_events_that_name_their_item_differently_never_duplicate() -> None:
    # Minimal servers: deltas name only the item id (or nothing), the done items repeat
    # the whole content, argument deltas name only the call id.
    events = [
        {"type": "response.created", "response": {"model": "m"}},
        {"type": "response.output_text.delta", "item_id": "msg_1", "delta": "Hel"},
        {"type": "response.output_text.delta", "delta": "lo"},
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": {
                "type": "message",
                "id": "msg_1",
                "content": [{"type": "output_text", "text": "Hello"}],
            },
        },
        {
            "type": "response.output_item.added",
            "output_index": 1,
            "item": {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f"},
        },
        {"type": "response.function_call_arguments.delta", "call_id": "call_1", "delta": "{}"},
        {
            "type": "response.output_item.done",
            "item": {"type": "function_call", "id": "fc_1", "call_id": "call_1", "arguments": "{}"},
        },
        {"type": "response.completed", "response": {"status": "completed"}},
    ]
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    _, message = assemble_response(body)
    blocks = [(b.type, b.text) for b in message.blocks]
    assert blocks == [("text", "Hello"), ("tool_call", "{}")]
    assert message.finish_reason == "tool_calls"


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.sse")))
def test_auto_gives_the_same_ops_as_the_right_format_for_every_recording(name: str) -> None:
    data = (FIXTURES / name).read_bytes()
    fmt = FORMAT_OF.get(name.split("_")[0], "chat")
    events = [e + b"\n\n" for e in data.replace(b"\r\n", b"\n").split(b"\n\n") if e]
    for pieces in ([data], events):
        got = []
        for chosen in ("auto", fmt):
            pipe = Pipeline("st", format=chosen)
            ops = []
            for piece in pieces:
                ops += pipe.feed(piece)
            ops += pipe.close()
            got.append([o.sse for o in ops])
        assert got[0] == got[1]


# One text token as each API's delta event.
TEXT_DELTA = {
    "responses": lambda text: {
        "type": "response.output_text.delta",
        "item_id": "i",
        "output_index": 0,
        "content_index": 0,
        "delta": text,
    },
    "anthropic": lambda text: {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": text},
    },
}


@pytest.mark.parametrize("fmt", ["responses", "anthropic"])
def test_whole_event_fast_path_agrees_with_the_sse_decoder(fmt: str) -> None:
    """A read that is one whole ``event:`` + ``data:`` event skips the SSE decoder: every read
    shaped otherwise (more lines, CR line ends, ``data:`` without its space, JSON over two
    data lines, two events in one read) must give the ops the decoder gives."""
    if fmt == "responses":
        head = [
            b'event: response.created\ndata: {"type":"response.created","response":'
            b'{"id":"r","model":"m","output":[]}}\n\n',
            b'event: response.output_item.added\ndata: {"type":"response.output_item.added",'
            b'"output_index":0,"item":{"id":"i","type":"message","content":[]}}\n\n',
        ]
    else:
        head = [
            b'event: message_start\ndata: {"type":"message_start","message":{"model":"m"}}\n\n',
            b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
            b'"content_block":{"type":"text","text":""}}\n\n',
        ]

    def delta(text: str) -> bytes:
        return json.dumps(TEXT_DELTA[fmt](text), separators=(",", ":")).encode()

    a, b, j = delta("A"), delta("B"), delta("J")
    reads = [
        b"event: x\rdata: " + a + b"\r\revent: y\ndata: " + b + b"\n\n",  # two events, CR
        b"event: x\ndata: " + a + b"\rid: 5\n\n",
        b"event: x\ndata:" + a[:20] + b"\ndata: " + a[20:] + b"\n\n",  # JSON over two lines
        b"event: x\ndata:junk\ndata: " + j + b"\n\n",
        b"event: x\nid: 7\ndata: " + a + b"\n\n",
        b"event: x\ndata:" + b + b"\n\n",  # no space after the colon
        b"event: x\ndata: " + j + b"\n\n",  # the plain shape: the fast path itself
    ]
    for read in reads:
        fast = Pipeline("st_x", format=fmt)
        slow = Pipeline("st_x", format=fmt)
        for piece in head:
            fast.feed(piece)
            slow.feed(piece)
        got = [op.json for op in fast.feed(read)]
        want = [op.json for i in range(len(read)) for op in slow.feed(read[i : i + 1])]
        assert got == want, read
        assert fast.message.to_dict() == slow.message.to_dict()


@pytest.mark.parametrize("fmt", ["responses", "anthropic"])
def test_nothing_follows_message_end_on_the_per_token_path(fmt: str) -> None:
    """An error event ends the message; a text token after it (a misbehaving upstream) must
    not become an op after ``message.end`` nor change the ended message."""
    if fmt == "anthropic":
        reads = [
            b'event: message_start\ndata: {"type":"message_start","message":{"model":"m"}}\n\n',
            b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
            b'"content_block":{"type":"text","text":""}}\n\n',
            b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
            b'"delta":{"type":"text_delta","text":"hi"}}\n\n',
            b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
            b'"message":"x"}}\n\n',
            b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
            b'"delta":{"type":"text_delta","text":" more"}}\n\n',
        ]
    else:
        delta = (
            b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
            b'"item_id":"i","output_index":0,"content_index":0,"delta":"%s"}\n\n'
        )
        reads = [
            b'event: response.created\ndata: {"type":"response.created","response":'
            b'{"id":"r","model":"m","output":[]}}\n\n',
            b'event: response.output_item.added\ndata: {"type":"response.output_item.added",'
            b'"output_index":0,"item":{"id":"i","type":"message","content":[]}}\n\n',
            delta % b"hi",
            b'event: error\ndata: {"type":"error","code":"server_error","message":"x"}\n\n',
            delta % b" more",
        ]
    pipeline = Pipeline("st_x", format=fmt)
    ops = [op for read in reads for op in pipeline.feed(read)]
    ops += pipeline.close()
    kinds = [decode_op(op.json).__struct_config__.tag for op in ops]
    assert kinds[-1] == "message.end" and kinds.count("message.end") == 1
    assert pipeline.message.status == "failed"
    assert pipeline.message.to_dict()["blocks"][0]["text"] == "hi"


# -- the Responses per-token path ---------------------------------------------------------------
def _reserialized(data: bytes, order: str) -> bytes:
    """A Responses recording with each event's JSON re-spelled: ``type`` first (OpenAI's order),
    keys sorted (pydantic's, ``type`` last) or with spaces (neither fast-path spelling)."""
    out = []
    for event in SSEDecoder().feed(data):
        value = json.loads(event.raw)
        if order == "first":
            text = json.dumps({"type": value.pop("type"), **value}, separators=(",", ":"))
        elif order == "sorted":
            text = json.dumps(value, sort_keys=True, separators=(",", ":"))
        else:
            text = json.dumps(value)
        out.append(f"event: {event.event}\ndata: {text}\n\n".encode())
    return b"".join(out)


def _without_token_path(monkeypatch) -> None:
    import tokenwire.protocol.responses_events as module

    monkeypatch.setattr(module, "_TEXT_DELTA_FIRST", b"\x00")
    monkeypatch.setattr(module, "_TEXT_DELTA_LAST", b"\x00")


@pytest.mark.parametrize("name", [n for n in UPSTREAM_FIXTURES if n.startswith("responses_")])
def test_responses_key_order_does_not_change_the_answer(name: str, monkeypatch) -> None:
    data = (FIXTURES / name).read_bytes()
    if data.startswith(b"{"):
        return  # a whole response object: no events
    spellings = {order: _reserialized(data, order) for order in ("first", "sorted", "spaced")}
    # (compared as values: a data block keeps its item's key order)
    answers = {order: json.loads(run(body, [])[1].to_json()) for order, body in spellings.items()}
    assert answers["first"] == answers["sorted"] == answers["spaced"]
    _without_token_path(monkeypatch)
    assert json.loads(run(spellings["first"], [])[1].to_json()) == answers["first"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["first", "last", "middle"]),
            st.sampled_from(['"x"', '""', '"\\u00e9\\n"', '"\\""', "null", "5", '"a\\ud800"']),
            st.sampled_from(
                [
                    "",
                    ',"type":"response.refusal.delta"',  # a second type: the last one counts
                    ',"output_index":"0"',
                    ',"part":5',
                    ',"item_id":null',
                    ',"delta":"y"',
                ]
            ),
        ),
        max_size=6,
    ),
    st.lists(st.integers(min_value=0, max_value=10**4), max_size=6),
)
def test_the_responses_token_path_gives_what_the_full_decode_gives(events, cuts) -> None:
    """Odd text-delta events (a repeated key, a wrong type, null fields) decode the same with
    the per-token path as with the whole ``_Event`` decode, at any split."""
    body = [
        b'event: response.created\ndata: {"type":"response.created","response":{"model":"m"}}\n\n'
    ]
    for where, delta, extra in events:
        fields = f'"delta":{delta}'
        kind = '"type":"response.output_text.delta"'
        if where == "first":
            text = "{" + kind + "," + fields + ',"output_index":0' + extra + "}"
        elif where == "last":
            text = "{" + fields + ',"output_index":0' + extra + "," + kind + "}"
        else:
            text = "{" + fields + "," + kind + ',"output_index":0' + extra + "}"
        body.append(f"data: {text}\n\n".encode())
    data = b"".join(body)
    fast_ops, fast = run(data, cuts, "responses")
    with pytest.MonkeyPatch.context() as patch:
        _without_token_path(patch)
        slow_ops, slow = run(data, cuts, "responses")
    assert [o.json for o in fast_ops] == [o.json for o in slow_ops]
    assert fast.to_json() == slow.to_json()


# -- keep-alives first, and a forced format that is not the stream's ---------------------------
def _events(*events: dict) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


ANTHROPIC_AFTER_PING = _events(
    {"type": "ping"},
    {"type": "message_start", "message": {"model": "claude-x", "content": [], "usage": {}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}},
    {"type": "message_stop"},
)
RESPONSES_AFTER_KEEPALIVE = _events(
    {"type": "keepalive", "sequence_number": 0},
    {"type": "response.created", "response": {"object": "response", "model": "gpt-x"}},
    {"type": "response.output_text.delta", "output_index": 0, "delta": "Hi"},
    {"type": "response.completed", "response": {"object": "response", "status": "completed"}},
)


@pytest.mark.parametrize(
    ("data", "fmt", "model"),
    [
        (ANTHROPIC_AFTER_PING, "anthropic", "claude-x"),
        (RESPONSES_AFTER_KEEPALIVE, "responses", "gpt-x"),
    ],
)
def test_a_keep_alive_before_the_first_event_neither_hides_the_model_nor_the_format(
    data: bytes, fmt: str, model: str
) -> None:
    for forced in ("auto", fmt):
        _, message = assemble_response(data, format=forced)
        assert (message.model, message.status, message.text) == (model, "completed", "Hi")
    pipe = Pipeline("s", format="auto")
    pipe.feed(data)
    assert pipe.format == fmt


@pytest.mark.parametrize(
    ("name", "forced", "said"),
    [
        ("anthropic_thinking.sse", "responses", "no Responses events found"),
        ("responses_failed.sse", "anthropic", "no Anthropic Messages events found"),
        ("non_streamed.json", "responses", "not a Responses API response or an error body"),
        ("responses_body.json", "anthropic", "(it looks like a Responses API response)"),
        ("anthropic_message.json", "responses", "(it looks like an Anthropic message)"),
    ],
)
def test_a_forced_format_that_is_not_the_recordings_is_an_error(name, forced, said) -> None:
    from tokenwire.protocol import NotAChatCompletion

    with pytest.raises(NotAChatCompletion, match=re.escape(said)):
        assemble_response((FIXTURES / name).read_bytes(), format=forced)


@pytest.mark.parametrize(
    ("name", "forced"),
    [
        ("anthropic_thinking.sse", "responses"),
        ("responses_failed.sse", "anthropic"),
        ("openai_text.sse", "anthropic"),
        # (its message_delta has a top-level usage, which a chat chunk may have too)
        ("anthropic_thinking.sse", "chat"),
        ("responses_failed.sse", "chat"),
    ],
)
def test_a_stream_of_another_api_fails_wrong_format_not_truncated(name: str, forced: str) -> None:
    pipe = Pipeline("s", format=forced)
    ops = pipe.feed((FIXTURES / name).read_bytes()) + pipe.close()
    end = decode_op(ops[-1].json)
    assert (end.status, end.error["type"]) == ("failed", "wrong_format")
    assert "event stream held no" in end.error["message"]


@pytest.mark.parametrize("spelling", ["first", "spaced"])
def test_a_citation_without_content_part_added_spans_its_own_text(spelling: str) -> None:
    """Servers that send no ``response.content_part.added``: a cited span counts from the
    start of its item's text (it used to start at the end of the text, outside it)."""
    data = _events(
        {"type": "response.created", "response": {"object": "response", "model": "m"}},
        {"type": "response.output_text.delta", "item_id": "a", "output_index": 0, "delta": "Hi. "},
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": {"type": "message", "id": "a"},
        },
        {
            "type": "response.output_text.delta",
            "item_id": "b",
            "output_index": 1,
            "delta": "Paris is nice.",
        },
        {
            "type": "response.output_text.annotation.added",
            "item_id": "b",
            "output_index": 1,
            "content_index": 0,
            "annotation": {
                "type": "url_citation",
                "start_index": 0,
                "end_index": 5,
                "url": "https://p.example",
            },
        },
        {"type": "response.completed", "response": {"object": "response", "status": "completed"}},
    )
    _, message = assemble_response(_reserialized(data, spelling), format="responses")
    text, source = message.to_dict()["blocks"]
    assert text["text"] == "Hi. Paris is nice."
    start, end = source["span"]["start"], source["span"]["end"]
    assert text["text"][start:end] == "Paris"


def _chat_stream(pieces: list[str]) -> bytes:
    chunks = [
        {"model": "gpt-oss", "choices": [{"index": 0, "delta": {"content": p}}]} for p in pieces
    ]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return b"".join(b"data: %s\n\n" % json.dumps(c).encode() for c in chunks) + b"data: [DONE]\n\n"


@pytest.mark.parametrize("lead", ["", "\n", "  \n "])
def test_harmony_after_leading_whitespace_splits_alike_at_every_cut(lead: str) -> None:
    content = (
        lead + "<|channel|>analysis<|message|>think<|end|>"
        "<|start|>assistant<|channel|>final<|message|>answer"
    )
    _, whole = assemble_response(_chat_stream([content]), format="chat")
    assert [(b.type, b.text) for b in whole.blocks] == [("reasoning", "think"), ("text", "answer")]
    for cut in range(1, len(content)):
        _, message = assemble_response(_chat_stream([content[:cut], content[cut:]]), format="chat")
        assert message.to_json() == whole.to_json(), cut


def test_whitespace_then_plain_text_is_all_text() -> None:
    _, message = assemble_response(_chat_stream(["\n", " ", "Hello", " world"]), format="chat")
    assert [(b.type, b.text) for b in message.blocks] == [("text", "\n Hello world")]
    _, only = assemble_response(_chat_stream(["\n\n"]), format="chat")
    assert [(b.type, b.text) for b in only.blocks] == [("text", "\n\n")]


def test_azure_model_from_the_first_chunk_that_names_one() -> None:
    """Azure: a prompt-filter chunk and a role chunk, both with ``model: ""``, then the model."""
    chunks = [
        {"choices": [], "model": "", "prompt_filter_results": [{"prompt_index": 0}]},
        {"model": "", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {"model": "gpt-4o-2024-08-06", "choices": [{"index": 0, "delta": {"content": "Hi"}}]},
        {"model": None, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    body = b"".join(b"data: %s\n\n" % json.dumps(c).encode() for c in chunks) + b"data: [DONE]\n\n"
    for cut in range(1, len(body), 7):  # (and at any split)
        pipe = Pipeline("s", format="chat")
        pipe.feed(body[:cut])
        pipe.feed(body[cut:])
        pipe.close()
        assert (pipe.message.model, pipe.message.text) == ("gpt-4o-2024-08-06", "Hi"), cut


def test_a_forced_anthropic_format_takes_an_error_body_without_type() -> None:
    body = b'{"error": {"type": "rate_limit_error", "message": "slow down"}}'
    _, message = assemble_response(body, format="anthropic")
    assert message.status == "failed" and message.error["message"] == "slow down"


@pytest.mark.parametrize("named", [True, False])
def test_responses_arguments_before_their_item_wait_for_its_name(named: bool) -> None:
    """Argument deltas that come before their ``function_call`` item: the call takes the
    item's call_id and name once it comes; without one, at the end, it is a call of unknown
    name with the arguments as they came."""
    events = [
        {"type": "response.created", "response": {"object": "response", "model": "m"}},
        {
            "type": "response.function_call_arguments.delta",
            "output_index": 0,
            "item_id": "fc_1",
            "delta": '{"a":',
        },
        {
            "type": "response.function_call_arguments.delta",
            "output_index": 0,
            "item_id": "fc_1",
            "delta": "1}",
        },
    ]
    if named:
        events.append(
            {
                "type": "response.output_item.done",
                "output_index": 0,
                "item": {
                    "id": "fc_1",
                    "type": "function_call",
                    "call_id": "call_1",
                    "name": "f",
                    "arguments": '{"a":1}',
                },
            }
        )
    events.append(
        {"type": "response.completed", "response": {"object": "response", "status": "completed"}}
    )
    for cut in (None, -1):  # (with the completed event, and cut before it)
        data = _events(*(events if cut is None else events[:cut]))
        pipe = Pipeline("s", format="responses")
        pipe.feed(data)
        pipe.close()
        (call,) = [b for b in pipe.message.to_dict()["blocks"] if b["type"] == "tool_call"]
        assert call["arguments"] == '{"a":1}'
        if named:
            assert (call["id"], call["name"]) == ("call_1", "f")
        else:
            assert call["id"] == "fc_1" and call["name"] is None


@pytest.mark.parametrize(
    ("fmt", "body", "missing"),
    [
        (
            "responses",
            b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
            b'"item_id":"m","output_index":0,"content_index":0,"delta":"cut"}\n\n',
            "response.completed",
        ),
        (
            "anthropic",
            b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
            b'"delta":{"type":"text_delta","text":"cut"}}\n\n',
            "message_stop",
        ),
        ("chat", b'data: {"choices":[{"index":0,"delta":{"content":"cut"}}]}\n\n', "[DONE]"),
    ],
)
def test_a_stream_cut_short_says_what_its_api_did_not_send(fmt, body, missing) -> None:
    """``truncated`` in each API's own words (chat's "[DONE]" means nothing to a Responses or
    Anthropic user)."""
    pipeline = Pipeline("st_cut", format=fmt)
    ops = [*pipeline.feed(body), *pipeline.close()]
    error = ops[-1].op.error
    assert error["type"] == "truncated" and missing in error["message"], error
    assert pipeline.assembler.message.blocks[0].text == "cut"


def test_whitespace_before_harmony_markup_is_decided_the_same_however_it_is_split() -> None:
    """Past 512 characters of leading whitespace content is text, not harmony markup, whether
    the whitespace came alone or with the markup (what is held back stays bounded)."""
    content = " " * 600 + "<|channel|>analysis<|message|>think<|end|>"

    def blocks(pieces: list[str]) -> list[tuple[str, str]]:
        pipeline = Pipeline("st_h", format="chat")
        for piece in pieces:
            pipeline.feed(
                b"data: "
                + json.dumps({"choices": [{"index": 0, "delta": {"content": piece}}]}).encode()
                + b"\n\n"
            )
        pipeline.close()
        return [(b.type, b.text) for b in pipeline.assembler.message.blocks]

    whole = blocks([content])
    assert whole == [("text", content)]
    for cut in (1, 300, 512, 513, 600, 610):
        assert blocks([content[:cut], content[cut:]]) == whole, cut
    # Less whitespace first: harmony, however split.
    short = " " * 100 + "<|channel|>analysis<|message|>think<|end|>"
    assert blocks([short]) == blocks([short[:100], short[100:]]) == [("reasoning", "think")]


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b'{"object":"response","status":"in_progress","model":"m","output":[]}', "status"),
        (
            b'{"type":"message","role":"assistant","model":"m","stop_reason":null,'
            b'"content":[{"type":"text","text":"Cut off"}]}',
            "stop_reason",
        ),
    ],
)
def test_an_unfinished_whole_body_says_so_in_its_apis_words(body: bytes, said: str) -> None:
    _, message = assemble_response(body)
    assert message.status == "failed" and message.error is not None
    assert message.error["type"] == "truncated" and said in message.error["message"]


# -- reasoning parts are paragraphs, however the server announced them ---------------------------
@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from(["", "A", "bc", "d\n"]), min_size=1, max_size=5),
    st.booleans(),
    st.sampled_from(["summary", "content"]),
)
def test_streamed_reasoning_parts_join_as_the_whole_item_joins_them(parts, announced, kind):
    """Summary (or raw reasoning) parts come out separated by one blank line, exactly as the
    whole item's parts do: with or without ``…part.added`` events, empty parts adding nothing."""
    item = {"id": "rs_1", "type": "reasoning", "summary": [], "content": []}
    field = "summary" if kind == "summary" else "content"
    index = "summary_index" if kind == "summary" else "content_index"
    delta_type = (
        "response.reasoning_summary_text.delta"
        if kind == "summary"
        else "response.reasoning_text.delta"
    )
    events: list[dict] = [
        {"type": "response.created", "response": {"model": "m", "status": "in_progress"}},
        {"type": "response.output_item.added", "output_index": 0, "item": item},
    ]
    for number, text in enumerate(parts):
        if announced and kind == "summary":
            events.append(
                {
                    "type": "response.reasoning_summary_part.added",
                    "item_id": "rs_1",
                    "output_index": 0,
                    "summary_index": number,
                    "part": {"type": "summary_text", "text": ""},
                }
            )
        for piece in (text[:1], text[1:]):
            if piece:
                events.append(
                    {
                        "type": delta_type,
                        "item_id": "rs_1",
                        "output_index": 0,
                        index: number,
                        "delta": piece,
                    }
                )
    part_type = "summary_text" if kind == "summary" else "reasoning_text"
    whole_item = {**item, field: [{"type": part_type, "text": t} for t in parts]}
    events.append({"type": "response.output_item.done", "output_index": 0, "item": whole_item})
    events.append({"type": "response.completed", "response": {"status": "completed"}})
    body = b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events)
    _, streamed = run(body, [], "responses")
    whole = {"object": "response", "model": "m", "status": "completed", "output": [whole_item]}
    _, from_body = assemble_response(json.dumps(whole).encode())
    expected = "\n\n".join(t for t in parts if t)
    texts = [b.text for b in streamed.blocks if b.type == "reasoning"]
    assert texts == ([expected] if expected else [])
    assert [b.text for b in from_body.blocks if b.type == "reasoning"] == texts


# -- the Responses / Anthropic per-token shortcut -------------------------------------------
def assert_reads_give_the_decoders_ops(reads: list[bytes], fmt: str, cuts: list[int]) -> None:
    """The ops and message of ``reads`` fed one by one (the shortcut may be taken) are those
    of the same bytes through the SSE decoder: in one read, detected, and split at ``cuts``."""
    pipe = Pipeline("st", format=fmt)
    ops = [op for read in reads for op in pipe.feed(read)] + pipe.close()
    for chosen, split in ((fmt, []), ("auto", []), (fmt, cuts)):
        want, message = run(b"".join(reads), split, chosen)
        assert [o.sse for o in ops] == [o.sse for o in want]
        assert pipe.message.to_json() == message.to_json()


class SlowReads(Pipeline):
    """A pipeline that records the reads that went the decoder's way (not the shortcut)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.slow: list[bytes] = []

    def _feed_events(self, data: bytes, now: float) -> list:
        self.slow.append(data)
        return super()._feed_events(data, now)


def _anthropic_read(event: dict, spelling: str) -> bytes:
    """One event as one read; ``spelling`` picks how its JSON is written."""
    if spelling == "ascii":  # non-ASCII as \\u escapes: the same text, other bytes
        data = json.dumps(event, separators=(",", ":")).encode()
    elif spelling == "spaced":
        data = json.dumps(event, ensure_ascii=False).encode("utf-8", "surrogatepass")
    else:
        data = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8", "surrogatepass"
        )
    if spelling == "bad utf-8":
        data = data.replace(b'"text":"', b'"text":"\xff', 1)
    return b"event: " + event["type"].encode() + b"\ndata: " + data + b"\n\n"


_TOKEN_TEXT = st.one_of(
    st.text(max_size=6),
    st.sampled_from(['"', "\\", "\x00", "\n", "\u2028", "\x7f", "é", "😀", "\ud800", 'a"b']),
)


@st.composite
def anthropic_token_streams(draw) -> list[bytes]:
    """An Anthropic stream of text tokens (any text, any spelling) with other blocks, pings,
    errors and wrong indexes among them: one read per event."""
    reads = [_anthropic_read({"type": "message_start", "message": {"model": "m"}}, "plain")]
    spellings = st.sampled_from(["plain", "plain", "plain", "ascii", "spaced", "bad utf-8"])
    index = 0
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        kind = draw(st.sampled_from(["text", "text", "thinking", "tool_use"]))
        block = {"type": kind, "text": ""} if kind == "text" else {"type": kind}
        if kind == "thinking":
            block["thinking"] = ""
        elif kind == "tool_use":
            block.update(id=f"t{index}", name="f", input={})
        start = {"type": "content_block_start", "index": index, "content_block": block}
        reads.append(_anthropic_read(start, "plain"))
        for _ in range(draw(st.integers(min_value=0, max_value=8))):
            what = draw(
                st.sampled_from(["token"] * 6 + ["ping", "other index", "thinking", "cite"])
            )
            if what == "ping":
                reads.append(_anthropic_read({"type": "ping"}, "plain"))
                continue
            if what == "cite":  # its span is where the block's text stands: the text position
                citation = {"type": "web_search_result_location", "url": "https://e.x/"}
                delta = {"type": "citations_delta", "citation": citation}
                event = {"type": "content_block_delta", "index": index, "delta": delta}
                reads.append(_anthropic_read(event, "plain"))
                continue
            at = index + 1 if what == "other index" else index
            delta = {"type": "text_delta", "text": draw(_TOKEN_TEXT)}
            if what == "thinking":
                delta = {"type": "thinking_delta", "thinking": draw(_TOKEN_TEXT)}
            event = {"type": "content_block_delta", "index": at, "delta": delta}
            reads.append(_anthropic_read(event, draw(spellings)))
        reads.append(_anthropic_read({"type": "content_block_stop", "index": index}, "plain"))
        index += 1
    if draw(st.booleans()):
        error = {"type": "error", "error": {"type": "overloaded_error", "message": "x"}}
        reads.append(_anthropic_read(error, "plain"))
        event = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta"}}
        event["delta"]["text"] = "after"
        reads.append(_anthropic_read(event, "plain"))
    end = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {}}
    reads += [_anthropic_read(end, "plain"), _anthropic_read({"type": "message_stop"}, "plain")]
    return reads


@settings(max_examples=200, deadline=None)
@given(anthropic_token_streams(), st.lists(st.integers(min_value=0, max_value=10**5)))
def test_anthropic_token_shortcut_gives_the_ops_of_the_decoder(reads, cuts) -> None:
    """A read that is one plain ``text_delta`` event is turned into its op without decoding;
    whatever its text and spelling, the ops (and the message) are those of the same bytes
    fed through the SSE decoder in one read or in any other split."""
    assert_reads_give_the_decoders_ops(reads, "anthropic", cuts)


def test_anthropic_plain_tokens_take_the_shortcut() -> None:
    """The shortcut is taken for plain tokens of an open text block (and only then)."""
    start = [
        {"type": "message_start", "message": {"model": "m"}},
        {"type": "content_block_start", "index": 2, "content_block": {"type": "text"}},
    ]
    pipe = SlowReads("st", format="anthropic")
    slow = pipe.slow
    for event in start:
        pipe.feed(_anthropic_read(event, "plain"))
    assert pipe._token is None  # no token yet: the first one goes the decoder's way
    token = {"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta"}}
    slow.clear()
    for text in ["Hi", " there", ' "quoted"', " ok"]:
        token["delta"]["text"] = text
        pipe.feed(_anthropic_read(token, "plain"))
    assert len(slow) == 2  # the first token, and the one whose text needs escapes
    assert pipe.message.to_dict()["blocks"][0]["text"] == 'Hi there "quoted" ok'
    pipe.feed(_anthropic_read({"type": "content_block_stop", "index": 2}, "plain"))
    call = {"type": "tool_use", "id": "t", "name": "f", "input": {}}
    pipe.feed(
        _anthropic_read({"type": "content_block_start", "index": 3, "content_block": call}, "plain")
    )
    assert pipe._token is None  # the text block is closed: tokens start a new one


def _responses_token(text: str, seq: int, item: str, out: int, part: int, spelling: str) -> bytes:
    """One ``response.output_text.delta`` event as one read, spelled one of many ways."""
    event = {
        "type": "response.output_text.delta",
        "sequence_number": seq,
        "item_id": item,
        "output_index": out,
        "content_index": part,
        "delta": text,
        "logprobs": [],
    }
    if spelling == "no logprobs":
        del event["logprobs"]
    elif spelling == "padded":
        event["obfuscation"] = "aZ09x"
    elif spelling == "odd padding":
        event["obfuscation"] = "a-b"
    elif spelling == "logprobs":
        event["logprobs"] = [{"token": "x", "logprob": -0.1}]
    elif spelling == "reordered":
        event = {"delta": text, **event}
    data = json.dumps(event, separators=(",", ":"), ensure_ascii=spelling == "ascii")
    raw = data.encode("utf-8", "surrogatepass")
    number = b'"sequence_number":%d' % seq
    if spelling == "leading zero":
        raw = raw.replace(number, b'"sequence_number":0%d' % seq)
    elif spelling == "long number":
        raw = raw.replace(number, b'"sequence_number":%d' % (seq + 10**24))
    elif spelling == "bad number":  # (not JSON: the event is skipped)
        raw = raw.replace(number, b'"sequence_number":%dx' % seq)
    elif spelling == "bad padding":  # (not JSON either)
        event["obfuscation"] = "PAD"
        raw = json.dumps(event, separators=(",", ":")).encode()
        raw = raw.replace(b'"PAD"', b'"x"},"y":"z"')
    elif spelling == "bad utf-8":
        raw = raw.replace(b'"delta":"', b'"delta":"\xc3', 1)
    return b"event: response.output_text.delta\ndata: " + raw + b"\n\n"


@st.composite
def responses_token_streams(draw) -> list[bytes]:
    """A Responses stream of text tokens (any text, any spelling) in one or more message
    items and parts, with citations, reasoning and other items' tokens among them."""
    seq = 0

    def read(event: dict) -> bytes:
        nonlocal seq
        seq += 1
        event["sequence_number"] = seq
        return b"event: %s\ndata: %s\n\n" % (event["type"].encode(), json.dumps(event).encode())

    response = {"id": "r", "model": "m", "output": []}
    reads = [read({"type": "response.created", "response": response})]
    spellings = st.sampled_from(
        ["plain"] * 4
        + ["no logprobs", "padded", "odd padding", "logprobs", "reordered", "ascii"]
        + ["leading zero", "long number", "bad number", "bad padding", "bad utf-8"]
    )
    for out in range(draw(st.integers(min_value=1, max_value=3))):
        item = f"msg_{out}"
        if draw(st.booleans()):  # a reasoning item first
            reasoning = {"id": f"rs_{out}", "type": "reasoning", "summary": []}
            added = {"type": "response.output_item.added", "output_index": out, "item": reasoning}
            reads.append(read(added))
            delta = {"type": "response.reasoning_summary_text.delta", "item_id": f"rs_{out}"}
            delta.update(output_index=out, summary_index=0, delta=draw(_TOKEN_TEXT))
            reads.append(read(delta))
        message = {"id": item, "type": "message", "role": "assistant", "content": []}
        reads.append(
            read({"type": "response.output_item.added", "output_index": out, "item": message})
        )
        for _ in range(draw(st.integers(min_value=0, max_value=10))):
            what = draw(st.sampled_from(["token"] * 6 + ["part 1", "other item", "cite"]))
            if what == "cite":
                citation = {"type": "url_citation", "url": "https://e.x/", "title": "t"}
                citation.update(start_index=0, end_index=1)
                added = {"type": "response.output_text.annotation.added", "item_id": item}
                added.update(output_index=out, content_index=0, annotation_index=0)
                reads.append(read({**added, "annotation": citation}))
                continue
            seq += 1
            at_item, at_out = (f"msg_{out + 1}", out + 1) if what == "other item" else (item, out)
            part = 1 if what == "part 1" else 0
            text = draw(_TOKEN_TEXT)
            reads.append(_responses_token(text, seq, at_item, at_out, part, draw(spellings)))
        reads.append(
            read({"type": "response.output_item.done", "output_index": out, "item": message})
        )
    usage = {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3}
    reads.append(read({"type": "response.completed", "response": {**response, "usage": usage}}))
    return reads


@settings(max_examples=200, deadline=None)
@given(responses_token_streams(), st.lists(st.integers(min_value=0, max_value=10**5)))
def test_responses_token_shortcut_gives_the_ops_of_the_decoder(reads, cuts) -> None:
    """As for Anthropic: every read that is one text token, whatever its text and spelling
    (padding, logprobs, key order, sequence number, escapes, bad UTF-8), gives the ops of
    the same bytes through the SSE decoder."""
    assert_reads_give_the_decoders_ops(reads, "responses", cuts)


def test_responses_plain_tokens_take_the_shortcut() -> None:
    pipe = SlowReads("st", format="responses")
    slow = pipe.slow
    item = {"id": "msg_1", "type": "message", "role": "assistant", "content": []}
    pipe.feed(b'event: response.created\ndata: {"type":"response.created","response":{}}\n\n')
    added = {"type": "response.output_item.added", "output_index": 0, "item": item}
    pipe.feed(b"event: x\ndata: " + json.dumps(added).encode() + b"\n\n")
    slow.clear()
    texts = [("Hi", "plain"), (" there", "padded"), (" you", "no logprobs"), ("!", "plain")]
    texts += [("?", "leading zero"), ("\n", "plain"), (" ok", "plain")]
    for n, (text, spelling) in enumerate(texts):
        pipe.feed(_responses_token(text, 10 + n, "msg_1", 0, 0, spelling))
    # the first token, the leading zero (skipped as bad JSON) and the one needing an escape
    assert len(slow) == 3
    assert pipe.message.to_dict()["blocks"][0]["text"] == "Hi there you!\n ok"


_RESPONSES_SPELLINGS = ["plain", "no logprobs", "padded", "odd padding", "logprobs", "reordered"]
_RESPONSES_SPELLINGS += ["ascii", "leading zero", "long number", "bad number", "bad padding"]


@pytest.mark.parametrize("spelling", [*_RESPONSES_SPELLINGS, "bad utf-8"])
@pytest.mark.parametrize("text", ["b", "é😀", '"', "\\", "\x01", "\u2028", "\ud800", ""])
def test_each_token_spelling_after_a_plain_token_gives_the_decoders_ops(spelling, text) -> None:
    """Each spelling of the token that follows a plain one (the shortcut is then allowed)."""
    item = {"id": "msg_1", "type": "message", "role": "assistant", "content": []}
    added = {"type": "response.output_item.added", "output_index": 0, "item": item}
    reads = [
        b'event: response.created\ndata: {"type":"response.created","response":{}}\n\n',
        b"event: x\ndata: " + json.dumps(added).encode() + b"\n\n",
        _responses_token("a", 3, "msg_1", 0, 0, "plain"),
        _responses_token(text, 4, "msg_1", 0, 0, spelling),
        _responses_token("c", 5, "msg_1", 0, 0, "plain"),
    ]
    assert_reads_give_the_decoders_ops(reads, "responses", [])


def test_a_bom_after_the_first_read_is_not_the_bodys_bom() -> None:
    """Only the body's first bytes may be a BOM: the first read goes through the SSE
    decoder even when it is one whole event, so a later read that starts with one is read as
    the same bytes in one piece would be (a line whose field name is not ``data``)."""
    reads = [
        b'event: message_start\ndata: {"type":"message_start","message":{"model":"m"}}\n\n',
        b'\xef\xbb\xbfdata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"a"}}\n\n',
    ]
    assert_reads_give_the_decoders_ops(reads, "anthropic", [])
    bom_first = [b"\xef\xbb\xbf" + reads[0]]  # (the body's own BOM is dropped)
    pipe = Pipeline("st", format="anthropic")
    pipe.feed(bom_first[0])
    assert pipe.message.model == "m"


@pytest.mark.parametrize("fmt", ["anthropic", "responses", "chat"])
def test_a_repaired_event_after_the_end_does_not_change_it_in_any_split(fmt: str) -> None:
    """An event with invalid UTF-8 after the message's end: its repair warning cannot reach
    the end, whether it came in the same read as the end or in one of its own."""
    if fmt == "anthropic":
        end = _anthropic_read({"type": "message_stop"}, "plain")
        late = _anthropic_read(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta"}},
            "plain",
        )
        late = late.replace(b'"text_delta"}', b'"text_delta","text":"x\xe2\x82"}')
        reads = [_anthropic_read({"type": "message_start", "message": {"model": "m"}}, "plain")]
    elif fmt == "responses":
        end = b'event: response.completed\ndata: {"type":"response.completed","response":{}}\n\n'
        late = _responses_token("x", 9, "m", 0, 0, "bad utf-8")
        reads = [b'event: response.created\ndata: {"type":"response.created","response":{}}\n\n']
    else:
        end = b"data: [DONE]\n\n"
        late = b'data: {"choices":[{"index":0,"delta":{"content":"x\xe2\x82"}}]}\n\n'
        reads = [b'data: {"model":"m","choices":[{"index":0,"delta":{"content":"a"}}]}\n\n']
    reads += [end, late]
    assert_reads_give_the_decoders_ops(reads, fmt, [])
    pipe = Pipeline("st", format=fmt)
    for read in reads:
        pipe.feed(read)
    assert pipe.message.error is None


def test_whitespace_held_for_harmony_is_not_sent_by_the_fast_path() -> None:
    """Chat content that is only whitespace is held while the choice may still turn out to
    be harmony markup; the per-token fast path must hold it too, also when a host write
    (a ``StreamWriter`` shares its assembler) opened the text block before any content."""
    from tokenwire.protocol.facts import TextFact

    reads = [
        b'data: {"model":"m","choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n',
        b'data: {"choices":[],"usage":{"prompt_tokens":1}}\n\n',
        b'data: {"choices":[{"index":0,"delta":{"content":" "}}]}\n\n',
        b'data: {"choices":[{"index":0,"delta":{"content":"<|channel|>analysis'
        b'<|message|>x"}}]}\n\n',
    ]
    texts = []
    for pieces in ([[read] for read in reads], [[read[:5], read[5:]] for read in reads]):
        pipe = Pipeline("st", format="chat")
        for n, read in enumerate(pieces):
            for piece in read:
                pipe.feed(piece)
            if n == 0:
                pipe.assembler.feed([TextFact(0, "text", "H")])  # the host's write
        pipe.close()
        texts.append([(b.type, b.text) for b in pipe.message.blocks])
    assert texts[0] == texts[1]
    assert texts[0][0] == ("text", "H")
