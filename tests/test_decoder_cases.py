"""Decoder cases a probe of issue 16 found, each built from the SDKs' own event types
(``openai.types.responses``, ``anthropic.types``): what a person reading the stream expects,
streamed and whole, and at every split."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tokenwire import Streams
from tokenwire.protocol import Pipeline, apply_ops, assemble_response

RESPONSE = {"id": "resp_1", "object": "response", "created_at": 1, "model": "gpt-5"}
MESSAGE = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x"}


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def blocks(data: bytes, keys: tuple[str, ...] = ("type", "text")) -> list[dict[str, Any]]:
    """The message's blocks (only ``keys``), checked to be the same at every split."""
    _, whole = assemble_response(data)
    if data.startswith(b"event:"):  # (a stream, not a whole body)
        for size in (1, 7):
            pipe = Pipeline(None, format="auto")
            ops = [op for i in range(0, len(data), size) for op in pipe.feed(data[i : i + size])]
            assert apply_ops(ops + pipe.close()).to_dict() == whole.to_dict(), size
    return [{k: v for k, v in b.items() if k in keys} for b in whole.to_dict()["blocks"]]


def r(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": f"response.{kind}", **fields}


def text_item(index: int, ident: str, *deltas: str | dict) -> list[dict[str, Any]]:
    """A Responses message item; a dict among ``deltas`` is an annotation added there."""
    at = {"item_id": ident, "output_index": index, "content_index": 0}
    events = [
        r("output_item.added", output_index=index, item={"id": ident, "type": "message"}),
        r("content_part.added", **at, part={"type": "output_text", "text": ""}),
    ]
    for piece in deltas:
        if isinstance(piece, dict):
            events.append(r("output_text.annotation.added", **at, annotation=piece))
        else:
            events.append(r("output_text.delta", **at, delta=piece))
    item = {"id": ident, "type": "message", "content": []}
    return [*events, r("output_item.done", output_index=index, item=item)]


def reasoning_item(index: int, ident: str, text: str, encrypted: str) -> list[dict[str, Any]]:
    at = {"item_id": ident, "output_index": index, "summary_index": 0}
    done = {"id": ident, "type": "reasoning", "summary": [{"type": "summary_text", "text": text}]}
    return [
        r("output_item.added", output_index=index, item={"id": ident, "type": "reasoning"}),
        r("reasoning_summary_part.added", **at, part={"type": "summary_text", "text": ""}),
        r("reasoning_summary_text.delta", **at, delta=text),
        r("output_item.done", output_index=index, item={**done, "encrypted_content": encrypted}),
    ]


def completed(*output: dict[str, Any]) -> dict[str, Any]:
    return r("completed", response={**RESPONSE, "status": "completed", "output": list(output)})


def test_a_file_citation_mid_text_neither_splits_the_text_nor_moves_later_spans() -> None:
    file_note = {"type": "file_citation", "file_id": "file-1", "filename": "r.pdf", "index": 15}
    url_note = {
        "type": "url_citation",
        "start_index": 35,
        "end_index": 46,
        "url": "https://example.com/",
        "title": "Ex",
    }
    deltas = ("See the report ", "(file) and ", file_note, "the site ", "example.com", url_note)
    data = sse(r("created", response=RESPONSE), *text_item(0, "msg_1", *deltas, "."), completed())
    got = blocks(data, ("type", "text", "span", "value"))
    assert [b["type"] for b in got] == ["text", "source", "data"]
    text = got[0]["text"]
    span = got[1]["span"]
    assert span["block"] == 0 and text[span["start"] : span["end"]] == "example.com"
    assert got[2]["value"] == file_note
    # The whole body says the same.
    part = {"type": "output_text", "text": text, "annotations": [file_note, url_note]}
    body = {**RESPONSE, "status": "completed", "output": [{"type": "message", "content": [part]}]}
    whole = blocks(json.dumps(body).encode(), ("type", "text", "span", "value"))
    assert whole == got


def test_each_reasoning_item_is_a_block_with_its_own_encrypted_content() -> None:
    data = sse(
        r("created", response=RESPONSE),
        *reasoning_item(0, "rs_1", "Thinking A.", "ENC_ONE"),
        *reasoning_item(1, "rs_2", "Thinking B.", "ENC_TWO"),
        *text_item(2, "msg_1", "Done."),
        completed(),
    )
    expected = [
        {"type": "reasoning", "text": "Thinking A.", "encrypted": "ENC_ONE"},
        {"type": "reasoning", "text": "Thinking B.", "encrypted": "ENC_TWO"},
        {"type": "text", "text": "Done."},
    ]
    assert blocks(data, ("type", "text", "encrypted")) == expected
    output = [
        {
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": t}],
            "encrypted_content": e,
        }
        for t, e in (("Thinking A.", "ENC_ONE"), ("Thinking B.", "ENC_TWO"))
    ]
    output.append({"type": "message", "content": [{"type": "output_text", "text": "Done."}]})
    body = {**RESPONSE, "status": "completed", "output": output}
    assert blocks(json.dumps(body).encode(), ("type", "text", "encrypted")) == expected


def a(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, **fields}


def thinking(index: int, text: str, signature: str) -> list[dict[str, Any]]:
    events = [a("content_block_start", index=index, content_block=a("thinking", thinking=""))]
    if text:
        delta = a("thinking_delta", thinking=text)
        events.append(a("content_block_delta", index=index, delta=delta))
    delta = a("signature_delta", signature=signature)
    return [*events, a("content_block_delta", index=index, delta=delta), stop(index)]


def stop(index: int) -> dict[str, Any]:
    return a("content_block_stop", index=index)


def text_block(index: int, text: str) -> list[dict[str, Any]]:
    return [
        a("content_block_start", index=index, content_block=a("text", text="")),
        a("content_block_delta", index=index, delta=a("text_delta", text=text)),
        stop(index),
    ]


def server_search(index: int, ident: str) -> list[dict[str, Any]]:
    use = a("server_tool_use", id=ident, name="web_search", input={})
    result = a("web_search_tool_result", tool_use_id=ident, content=[])
    return [
        a("content_block_start", index=index, content_block=use),
        a("content_block_delta", index=index, delta=a("input_json_delta", partial_json="{}")),
        stop(index),
        a("content_block_start", index=index + 1, content_block=result),
        stop(index + 1),
    ]


def message(*blocks_: dict[str, Any], reason: str = "end_turn", usage: Any = None) -> bytes:
    start = {**MESSAGE, "content": [], "usage": {"input_tokens": 25, "output_tokens": 1}}
    end = a("message_delta", delta={"stop_reason": reason}, usage=usage or {"output_tokens": 9})
    return sse(a("message_start", message=start), *blocks_, end, a("message_stop"))


@pytest.mark.parametrize("shown", [False, True])
def test_every_thinking_block_keeps_its_own_signature(shown: bool) -> None:
    """Omitted thinking (``display: "omitted"``: a signature, no text) and visible thinking
    alike: two thinking blocks are two reasoning blocks, with SIG_A and SIG_B."""
    first, second = ("First.", "Second.") if shown else ("", "")
    data = message(
        *thinking(0, first, "SIG_A"),
        *server_search(1, "srvtoolu_1"),
        *thinking(3, second, "SIG_B"),
        *text_block(4, "Answer."),
    )
    got = blocks(data, ("type", "text", "signature"))
    reasoning = [(b["text"], b["signature"]) for b in got if b["type"] == "reasoning"]
    assert reasoning == [(first, "SIG_A"), (second, "SIG_B")]
    adjacent = message(*thinking(0, "First.", "SIG_A"), *thinking(1, "Second.", "SIG_B"))
    got = blocks(adjacent, ("type", "text", "signature"))
    assert got == [
        {"type": "reasoning", "text": "First.", "signature": "SIG_A"},
        {"type": "reasoning", "text": "Second.", "signature": "SIG_B"},
    ]
    # The whole message says the same.
    content = [
        a("thinking", thinking=first, signature="SIG_A"),
        a("thinking", thinking=second, signature="SIG_B"),
    ]
    body = {**MESSAGE, "content": content, "stop_reason": "end_turn", "usage": {}}
    got = blocks(json.dumps(body).encode(), ("type", "text", "signature"))
    assert [(b["text"], b["signature"]) for b in got] == [(first, "SIG_A"), (second, "SIG_B")]


def test_null_counts_in_message_delta_do_not_erase_the_usage() -> None:
    nulls = {"input_tokens": None, "output_tokens": 12, "cache_read_input_tokens": None}
    _, got = assemble_response(message(*text_block(0, "Hi."), usage=nulls))
    assert got.usage == {"input_tokens": 25, "output_tokens": 12}


def test_a_search_result_citation_names_its_source_and_title() -> None:
    cite = {
        "type": "search_result_location",
        "source": "https://kb.example/article-7",
        "title": "KB Article 7",
        "cited_text": "KB text",
        "search_result_index": 0,
        "start_block_index": 0,
        "end_block_index": 1,
    }
    delta = a("citations_delta", citation=cite)
    data = message(
        a("content_block_start", index=0, content_block=a("text", text="")),
        a("content_block_delta", index=0, delta=a("text_delta", text="Per the KB.")),
        a("content_block_delta", index=0, delta=delta),
        stop(0),
    )
    sources = [b for b in blocks(data, ("type", "url", "title")) if b["type"] == "source"]
    assert sources == [{"type": "source", "url": cite["source"], "title": cite["title"]}]


def test_a_responses_stream_opening_with_a_nested_error_is_read_as_responses() -> None:
    error = {"type": "invalid_request_error", "code": "model_not_found", "message": "No model"}
    data = sse({"type": "error", "error": error, "sequence_number": 0})
    _, got = assemble_response(data)
    assert got.error == {
        "message": "No model",
        "type": "invalid_request_error",
        "code": "model_not_found",
    }


def test_harmony_tool_call_ends_with_finish_reason_tool_calls() -> None:
    content = (
        "<|channel|>analysis<|message|>Need the time.<|end|>"
        "<|start|>assistant<|channel|>commentary to=functions.now <|constrain|>json"
        "<|message|>{}<|call|>"
    )
    chunks = [{"choices": [{"index": 0, "delta": {"content": content[i : i + 7]}}]} for i in
              range(0, len(content), 7)]  # fmt: skip
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    data = b"".join(
        b"data: " + json.dumps({"model": "gpt-oss", **c}).encode() + b"\n\n" for c in chunks
    )
    _, got = assemble_response(data + b"data: [DONE]\n\n")
    assert got.finish_reason == "tool_calls"
    assert [b.type for b in got.blocks] == ["reasoning", "tool_call"]


def test_pipe_tool_calls_leave_out_the_tools_the_upstream_ran() -> None:
    """Anthropic's server tools ran upstream, their results are in the message: a host's
    agent loop must not run them again (``PipeResult.tool_calls`` is what the host runs)."""
    client_call = a("tool_use", id="toolu_1", name="get_time", input={})
    data = message(
        *server_search(0, "srvtoolu_1"),
        a("content_block_start", index=2, content_block=client_call),
        stop(2),
        reason="tool_use",
    )

    async def main() -> tuple[Any, Any]:
        results = []

        async def produce(writer: Any) -> None:
            results.append(await writer.pipe([data], format="auto"))

        async with Streams(coalesce_ms=0) as streams:
            handle = await streams.start(produce)
            await streams.wait(handle.id, timeout=10)
            return results[0], await streams.message(handle.id)

    result, got = asyncio.run(main())
    assert [(c.id, c.name) for c in result.tool_calls] == [("toolu_1", "get_time")]
    calls = [b["id"] for b in got.to_dict()["blocks"] if b["type"] == "tool_call"]
    assert calls == ["srvtoolu_1", "toolu_1"]  # (the message keeps both)


def test_a_chat_chunk_with_an_odd_top_level_type_is_still_a_chunk() -> None:
    """Only another API's event name (with no ``choices``) makes a chunk foreign; any other
    ``type`` member, of any JSON type, is ignored as unknown members always were."""
    for kind in (1, {"a": 1}, "chat.completion.chunk"):
        chunk = {"type": kind, "model": "m", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}
        end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        data = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in (chunk, end))
        _, got = assemble_response(data + b"data: [DONE]\n\n")
        assert (got.text, got.finish_reason) == ("Hi", "stop"), kind


def test_openrouter_reasoning_details_of_two_blocks_keep_their_signatures() -> None:
    """OpenRouter relays Anthropic thinking blocks as ``reasoning_details`` entries with the
    block's ``index``: an entry of another index is another reasoning block (a signature
    alone at a new index: an omitted thought)."""

    def detail(i: int, **fields: Any) -> dict[str, Any]:
        reasoning = fields.get("text", "")
        entry = {"type": "reasoning.text", "format": "anthropic-claude-v1", "index": i, **fields}
        delta = {"reasoning": reasoning, "reasoning_details": [entry]}
        return {"model": "anthropic/claude", "choices": [{"index": 0, "delta": delta}]}

    chunks = [
        detail(0, text="First."),
        detail(0, signature="SIG_A"),
        detail(1, text="Second."),
        detail(1, signature="SIG_B"),
        detail(2, signature="SIG_C"),
        {"choices": [{"index": 0, "delta": {"content": "Answer."}, "finish_reason": "stop"}]},
    ]
    data = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    _, got = assemble_response(data + b"data: [DONE]\n\n")
    blocks_ = [(b["type"], b.get("text"), b.get("signature")) for b in got.to_dict()["blocks"]]
    assert blocks_ == [
        ("reasoning", "First.", "SIG_A"),
        ("reasoning", "Second.", "SIG_B"),
        ("reasoning", "", "SIG_C"),
        ("text", "Answer.", None),
    ]


def test_calls_without_output_index_or_item_id_keep_their_own_arguments() -> None:
    """Older llama.cpp ``/v1/responses``: no ``output_index``, ``function_call`` items without
    an ``id``; the argument deltas name the call by ``item_id`` = the item's ``call_id``."""
    events: list[dict[str, Any]] = [r("created", response={**RESPONSE, "status": "in_progress"})]
    done = []
    for ident, city in (("fc_A1", "Paris"), ("fc_B2", "Rome")):
        item = {"type": "function_call", "call_id": ident, "name": "weather", "arguments": ""}
        events.append(r("output_item.added", item=item))
        for piece in ('{"city":', f'"{city}"}}'):
            events.append(r("function_call_arguments.delta", item_id=ident, delta=piece))
        done.append({**item, "arguments": f'{{"city":"{city}"}}'})
    events += [r("output_item.done", item=item) for item in done]
    keys = ("type", "id", "arguments")
    expected = [
        {"type": "tool_call", "id": "fc_A1", "arguments": '{"city":"Paris"}'},
        {"type": "tool_call", "id": "fc_B2", "arguments": '{"city":"Rome"}'},
    ]
    assert blocks(sse(*events, completed(*done)), keys) == expected
    whole = {**RESPONSE, "status": "completed", "output": done}
    assert blocks(json.dumps(whole).encode(), keys) == expected


def test_a_delta_naming_no_item_hides_no_other_kind_of_content() -> None:
    """A reasoning delta that names no item marks reasoning only: a message and a call sent
    only as finished items still give their text and arguments."""
    message_ = {
        "id": "msg_1",
        "type": "message",
        "content": [{"type": "output_text", "text": "The answer is 42.", "annotations": []}],
    }
    call = {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "f"}
    events = [
        r("created", response={**RESPONSE, "status": "in_progress"}),
        r("reasoning.delta", delta="Thinking."),
        r("output_item.done", output_index=1, item=message_),
        r("output_item.done", output_index=2, item={**call, "arguments": '{"q":1}'}),
    ]
    got = blocks(sse(*events, completed()), ("type", "text", "arguments"))
    assert got == [
        {"type": "reasoning", "text": "Thinking."},
        {"type": "text", "text": "The answer is 42."},
        {"type": "tool_call", "arguments": '{"q":1}'},
    ]


def test_citations_only_on_the_finished_item_of_a_streamed_message() -> None:
    """Text as deltas, its ``url_citation`` only in ``output_item.done`` (no
    ``annotation.added``): the source and its span, as the whole body gives them."""
    note = {"type": "url_citation", "url": "https://e.x/a", "title": "T"}
    note |= {"start_index": 0, "end_index": 9}
    part = {"type": "output_text", "text": "The tower is 330 m.", "annotations": [note]}
    events = text_item(0, "msg_1", "The tower", " is 330 m.")
    events[-1] = r("output_item.done", output_index=0, item={"id": "msg_1", "type": "message"})
    events[-1]["item"]["content"] = [part]
    keys = ("type", "text", "url", "span")
    streamed = blocks(sse(*events, completed(events[-1]["item"])), keys)
    whole = {**RESPONSE, "status": "completed", "output": [events[-1]["item"]]}
    assert streamed == blocks(json.dumps(whole).encode(), keys)
    assert streamed[1] == {
        "type": "source",
        "url": "https://e.x/a",
        "span": {"block": 0, "start": 0, "end": 9},
    }
    # Sent both ways (annotation.added and the finished item), it is one source.
    events = text_item(0, "msg_1", "The tower", note, " is 330 m.")
    events[-1]["item"]["content"] = [part]
    assert [b["type"] for b in blocks(sse(*events, completed()), keys)] == ["text", "source"]


BAD_UTF8 = b"caf\xe9"  # Latin-1, not UTF-8


@pytest.mark.parametrize("api", ["responses", "anthropic"])
@pytest.mark.parametrize("where", ["delta", "item"])
def test_invalid_utf8_is_replaced_and_reported_as_in_chat(api: str, where: str) -> None:
    """A bad byte in a text delta (decoded whole) or in a finished item or block (kept raw by
    the decoder): the text is kept with U+FFFD and the end carries the invalid_utf8 warning,
    streamed, whole and at every split."""
    if api == "responses":
        if where == "delta":
            events = text_item(0, "msg_1", "MARK", " ok")
            data = sse(*events, completed())
        else:
            part = {"type": "output_text", "text": "MARK ok", "annotations": []}
            item = {"id": "msg_1", "type": "message", "content": [part]}
            data = sse(r("output_item.done", output_index=0, item=item), completed(item))
        whole = {**RESPONSE, "status": "completed", "output": [{"id": "m", "type": "message"}]}
        whole["output"][0]["content"] = [{"type": "output_text", "text": "MARK ok"}]
    else:
        if where == "delta":
            data = message(*text_block(0, "MARK ok"))
        else:
            start = a("content_block_start", index=0, content_block=a("text", text="MARK ok"))
            data = message(start, stop(0))
        whole = {**MESSAGE, "content": [a("text", text="MARK ok")], "stop_reason": "end_turn"}
    for body in (data, json.dumps(whole).encode()):
        body = body.replace(b"MARK", BAD_UTF8)
        assert blocks(body) == [{"type": "text", "text": "caf\ufffd ok"}]
        _, got = assemble_response(body)
        assert got.status == "completed" and got.error["type"] == "invalid_utf8"
    # One event per read, the last two in one read (the per-token path takes the repaired
    # delta alone; the end comes through the SSE decoder): the warning all the same.
    events = [e + b"\n\n" for e in data.replace(b"MARK", BAD_UTF8).split(b"\n\n") if e]
    pipe = Pipeline(None, format=api)
    reads = [*events[:-2], events[-2] + events[-1]]
    ops = [op for piece in reads for op in pipe.feed(piece)] + pipe.close()
    assert apply_ops(ops).error["type"] == "invalid_utf8"


def test_a_lone_surrogate_escape_in_an_anthropic_delta_is_replaced() -> None:
    data = message(*text_block(0, "MARK ok")).replace(b"MARK", b"caf\\\\ud83d")
    data = data.replace(b"\\\\ud83d", b"\\ud83d")
    _, got = assemble_response(data)
    assert [b.text for b in got.blocks] == ["caf\ufffd ok"]
    assert got.error["type"] == "invalid_utf8"


@pytest.mark.parametrize("api", ["responses", "anthropic"])
def test_a_lone_surrogate_escape_never_decides_the_format(api: str) -> None:
    """Format detection reads the first event (or the whole body) before any repair: a lone
    surrogate escape there made it fail, so the stream or body was taken for chat completions
    (nothing decoded) or refused with ``--format-in``. It is repaired for detection too."""
    if api == "responses":
        created = r("created", response={**RESPONSE, "status": "in_progress", "output": []})
        created["response"]["instructions"] = "MARK"
        data = sse(created, *text_item(0, "msg_1", "hello"), completed())
        part = {"type": "output_text", "text": "aMARKb", "annotations": []}
        whole = {**RESPONSE, "status": "completed", "output": [{"id": "m", "type": "message"}]}
        whole["output"][0]["content"] = [part]
    else:
        data = message(*text_block(0, "hello")).replace(b'"claude-x"', b'"claude-MARK"', 1)
        whole = {**MESSAGE, "content": [a("text", text="aMARKb")], "stop_reason": "end_turn"}
    data = data.replace(b"MARK", b"\\ud800")
    body = json.dumps(whole).encode().replace(b"MARK", b"\\ud800")
    # Servers that send no ``event:`` lines: only the data tells the format.
    bare = b"".join(line + b"\n" for line in data.split(b"\n") if not line.startswith(b"event:"))
    for stream in (data, bare):
        _, got = assemble_response(stream)
        assert [b.text for b in got.blocks] == ["hello"], api
        assert got.error["type"] == "invalid_utf8"
    for fmt in ("auto", api):
        _, got = assemble_response(body, format=fmt)
        assert (got.status, [b.text for b in got.blocks]) == ("completed", ["a\ufffdb"]), fmt
        assert got.error["type"] == "invalid_utf8"


def test_done_after_an_anthropic_stream_is_not_counted_as_a_bad_event() -> None:
    pipe = Pipeline(None, format="anthropic")
    pipe.feed(message(*text_block(0, "Hi")) + b"data: [DONE]\n\n")
    pipe.close()
    assert pipe.normalizer.skipped == 0


def test_a_responses_body_cancelled_upstream_says_so() -> None:
    """A background response cancelled upstream (``status: cancelled``) was reported as an
    unfinished body (``truncated``); it keeps its text and says it was cancelled."""
    part = {"type": "output_text", "text": "So far", "annotations": []}
    whole = {**RESPONSE, "status": "cancelled", "output": [{"id": "m", "type": "message"}]}
    whole["output"][0]["content"] = [part]
    _, got = assemble_response(json.dumps(whole).encode())
    assert (got.status, got.text) == ("failed", "So far")
    assert got.error["type"] == "cancelled"


def test_an_unfinished_whole_chat_body_is_truncated_as_in_the_other_apis() -> None:
    """A whole chat completion none of whose choices has a ``finish_reason`` (the mock's
    non-streamed ``mock-truncated``) was reported ``completed``; like a Responses body still
    ``in_progress`` or an Anthropic message without ``stop_reason``, it keeps its text and
    ends ``failed`` / ``truncated``. One finished choice is enough to be finished."""
    choice = {"index": 0, "message": {"role": "assistant", "content": "So far"}}
    body = {"id": "c", "object": "chat.completion", "model": "m", "choices": [choice]}
    _, got = assemble_response(json.dumps(body).encode())
    assert (got.status, got.text, got.error["type"]) == ("failed", "So far", "truncated")
    assert "no choice has a finish_reason" in got.error["message"]
    body["choices"] = [choice, {**choice, "index": 1, "finish_reason": "stop"}]
    _, got = assemble_response(json.dumps(body).encode())
    assert got.status == "completed"


def test_a_later_text_parts_citation_counts_from_that_part_without_content_part_added() -> None:
    """A message item with two ``output_text`` parts and no ``content_part.added`` (servers
    that skip it): the second part's citation indexes count from its own start, which its
    first delta now marks (before, they were taken from the item's start: a wrong span)."""
    note = {"type": "url_citation", "title": "T"}
    first, second = {**note, "url": "https://e.x/a"}, {**note, "url": "https://e.x/d"}
    first |= {"start_index": 0, "end_index": 5}
    second |= {"start_index": 6, "end_index": 11}
    at = {"item_id": "m1", "output_index": 0}
    events = [
        r("output_item.added", output_index=0, item={"id": "m1", "type": "message"}),
        r("output_text.delta", **at, content_index=0, delta="Alpha beta. "),
        r("output_text.annotation.added", **at, content_index=0, annotation=first),
        r("output_text.delta", **at, content_index=1, delta="Gamma delta."),
        r("output_text.annotation.added", **at, content_index=1, annotation=second),
        completed(),
    ]
    got = blocks(sse(*events), ("type", "text", "url", "span"))
    text = got[0]["text"]
    cited = {b["url"]: text[b["span"]["start"] : b["span"]["end"]] for b in got if "url" in b}
    assert cited == {"https://e.x/a": "Alpha", "https://e.x/d": "delta"}


@pytest.mark.parametrize(
    ("fmt", "body", "verdict"),
    [
        # An Anthropic stream sent where Responses events were expected.
        (
            "responses",
            sse(
                {"type": "message_start", "message": {**MESSAGE, "content": []}},
                {"type": "message_stop"},
            ),
            "wrong_format",
        ),
        # A chat stream cut inside its first chunk.
        (
            "chat",
            b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"ind',
            "truncated",
        ),
        # A whole (not streamed) Anthropic message.
        (
            "auto",
            json.dumps({**MESSAGE, "content": [{"type": "text", "text": "hi"}]}).encode(),
            "not_event_stream",
        ),
        ("chat", b"<!doctype html><html><body>gateway timeout</body></html>", "not_event_stream"),
    ],
)
def test_why_a_stream_gave_nothing_does_not_depend_on_how_it_was_read(
    fmt: str, body: bytes, verdict: str
) -> None:
    """The verdict on a body with no usable event came from the first read only: in 1-byte
    reads, ``d`` or ``e`` looked like something that is not an event stream."""
    errors = []
    for size in (len(body), 64, 5, 2, 1):
        pipe = Pipeline("st", format=fmt)
        for i in range(0, len(body), size):
            pipe.feed(body[i : i + size])
        pipe.close()
        errors.append(pipe.message.error)
    assert errors[0] is not None and errors[0]["type"] == verdict, errors[0]
    assert all(error == errors[0] for error in errors), errors


def test_a_responses_stream_with_its_answer_only_in_the_final_response() -> None:
    """Proxies that cannot stream a model send ``response.created`` and then
    ``response.completed`` with the whole output: that output is the answer (it came out
    empty), decoded as the same response sent whole would be; a stream that did send its
    items is not given them twice."""
    cite = {"type": "url_citation", "url": "https://a.example", "start_index": 0, "end_index": 5}
    output = [
        {"id": "rs_1", "type": "reasoning", "summary": [{"type": "summary_text", "text": "Hm."}]},
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Paris is nice.", "annotations": [cite]}],
        },
        {
            "id": "fc_1",
            "type": "function_call",
            "call_id": "call_1",
            "name": "f",
            "arguments": "{}",
        },
    ]
    created = r("created", response={**RESPONSE, "status": "in_progress", "output": []})
    keys = ("type", "text", "url", "span", "name", "arguments")
    streamed = blocks(sse(created, completed(*output)), keys)
    # (keep-alives while such a proxy waits for the whole answer change nothing)
    idle = {"type": "keepalive", "sequence_number": 1}
    assert blocks(sse(idle, created, idle, idle, completed(*output)), keys) == streamed
    assert streamed == blocks(
        json.dumps({**RESPONSE, "status": "completed", "output": output}).encode(), keys
    )
    assert [b["type"] for b in streamed] == ["reasoning", "text", "source", "tool_call"]
    assert streamed[1]["text"] == "Paris is nice."
    assert streamed[2]["span"] == {"block": 1, "start": 0, "end": 5}
    incomplete = r(
        "incomplete",
        response={**RESPONSE, "status": "incomplete", "output": output[1:2]},
    )
    _, message = assemble_response(sse(created, incomplete))
    assert message.to_dict()["blocks"][0]["text"] == "Paris is nice."
    assert message.finish_reason == "length"
    # Items that were streamed are not added again from the final response.
    again = sse(created, *text_item(0, "msg_1", "Paris is nice."), completed(*output[1:2]))
    assert [b["text"] for b in blocks(again) if b["type"] == "text"] == ["Paris is nice."]
