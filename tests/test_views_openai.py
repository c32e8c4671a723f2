"""The OpenAI views read by the official `openai` SDK over real HTTP on 127.0.0.1: the chunk
view by ``chat.completions.create(stream=True)`` and the SDK's ``Stream`` class, the Responses
view by ``responses.create(stream=True)``; cut mid-answer, resumed at the documented cursor,
with no lost or repeated text.

The tiny Starlette app here stands in for the gateway routes (wired by the lead) and answers
only from the views' log-level functions (``frames_after``, ``catch_up``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import ResponseStreamEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from bench.catchup import long_answer
from tokenwire.protocol import snapshot_op
from tokenwire.protocol.ops import (
    BlockDelta,
    BlockEnd,
    BlockStart,
    MessageEnd,
    MessageStart,
    apply_ops,
    encode,
)
from tokenwire.protocol.views import (
    VIEWS,
    Frame,
    OpenAIChunksView,
    ResponsesView,
    catch_up,
    frames_after,
    ops_from_jsonl,
    replay,
)
from tokenwire.protocol.views.base import MessageState, RawOp

VECTORS = Path(__file__).parent / "vectors"


def _ops(name: str) -> list[RawOp]:
    path = VECTORS / f"{name}.ops.jsonl"
    if not path.exists():
        path = VECTORS / "views" / f"{name}.ops.jsonl"
    return ops_from_jsonl(path.read_bytes().splitlines())


class Cut(Exception):
    """Raised inside a response body: uvicorn drops the connection mid-stream."""


def _body(frames: list[Frame], cut: int | None) -> Iterator[bytes]:
    for i, frame in enumerate(frames):
        if cut is not None and i == cut:
            raise Cut
        yield frame.data


def make_app(ops: list[RawOp]) -> Starlette:
    """POST /v1/chat/completions and /v1/responses answer the whole view, dropped after
    ``?cut=N`` frames; GET /v1/streams/{id}/events?format=... resumes it."""

    def _cut(request: Request) -> int | None:
        return int(request.query_params["cut"]) if "cut" in request.query_params else None

    async def chat(request: Request) -> StreamingResponse:
        frames = replay(OpenAIChunksView(), ops)
        headers = {"X-Tokenwire-Stream": "st_test"}
        body = _body(frames, _cut(request))
        return StreamingResponse(body, media_type="text/event-stream", headers=headers)

    async def responses(request: Request) -> StreamingResponse:
        frames = replay(ResponsesView(), ops)
        return StreamingResponse(_body(frames, _cut(request)), media_type="text/event-stream")

    async def events(request: Request) -> StreamingResponse:
        fmt = request.query_params.get("format", "ops")
        view = VIEWS[fmt]
        q = request.query_params
        last_id = request.headers.get("last-event-id")
        if fmt == "responses" and ("starting_after" in q or last_id):
            after = int(q.get("starting_after", last_id or -1))
            frames, _ = catch_up(view, ops, after=after, threshold=int(q.get("threshold", 64)))
        elif "startIndex" in q:
            frames, _ = frames_after(view, ops, int(q["startIndex"]))
        else:
            after_seq = int(last_id) if last_id else 0
            frames, _ = catch_up(
                view, ops, after_seq=after_seq, threshold=int(q.get("threshold", 64))
            )
        return StreamingResponse(_body(frames, None), media_type="text/event-stream")

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/responses", responses, methods=["POST"]),
            Route("/v1/streams/{stream_id}/events", events),
        ]
    )


def _client(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key="test", max_retries=0)


def _resume(client: openai.OpenAI, cast: Any, query: str, headers: dict[str, str]) -> Any:
    """The resumed events, parsed by the SDK's own Stream class (no hand-written parser)."""
    return client.get(
        f"/streams/st_test/events?{query}",
        cast_to=cast,
        stream=True,
        stream_cls=openai.Stream[cast],
        options={"headers": headers},
    )


def _chunk_text(chunks: list[ChatCompletionChunk]) -> dict[str, str]:
    out = {"content": "", "reasoning": "", "arguments": ""}
    for chunk in chunks:
        for choice in chunk.choices:
            if choice.index:
                continue
            delta = choice.delta
            out["content"] += delta.content or ""
            out["reasoning"] += (delta.model_extra or {}).get("reasoning_content") or ""
            for call in delta.tool_calls or []:
                out["arguments"] += (call.function.arguments or "") if call.function else ""
    return out


def _message_text(ops: list[RawOp]) -> dict[str, str]:
    state = MessageState()
    for op in ops:
        state.apply(json.loads(op.json), op.seq)
    out = {"content": "", "reasoning": "", "arguments": ""}
    for block in state.blocks:
        if block.choice:
            continue
        key = {"text": "content", "reasoning": "reasoning", "tool_call": "arguments"}.get(
            block.type
        )
        if key:
            out[key] += block.text
    return out


@pytest.mark.parametrize(
    "name",
    ["openai_text", "deepseek_reasoning_content", "openai_parallel_tools", "v11_agent_steps"],
)
def test_openai_sdk_reads_cut_chunks_and_resumes(name: str, asgi_server: Any) -> None:
    ops = _ops(name)
    frames = replay(OpenAIChunksView(), ops)
    want = _message_text(ops)
    with asgi_server(make_app(ops)) as base:
        client = _client(base)
        for cut in range(1, len(frames)):
            got: list[ChatCompletionChunk] = []
            stream = client.chat.completions.create(
                model="m", messages=[], stream=True, extra_query={"cut": cut}
            )
            with pytest.raises(openai.APIConnectionError):
                for chunk in stream:
                    got.append(chunk)
            # Complete events before the drop, nothing after (the tail the dropping server wrote
            # last can be lost with its connection on a loaded machine: a shorter prefix).
            got_n = len(got)
            assert got_n <= cut
            # An SDK user resumes by the count of chunks it has (the chunk index) ...
            query = f"format=openai&startIndex={got_n}"
            rest = list(_resume(client, ChatCompletionChunk, query, {}))
            assert _chunk_text(got + rest) == want
            assert any(c.choices and c.choices[0].finish_reason for c in got + rest)
            # ... an SSE client by Last-Event-ID: the op seq of the last event with an id.
            ids = [f.seq for f in frames[:got_n] if f.data.startswith(b"id:")]
            seen = [c for f in frames[: _last_id_frame(frames, got_n)] for c in _parse(client, f)]
            headers = {"Last-Event-ID": str(ids[-1])} if ids else {}
            rest = list(_resume(client, ChatCompletionChunk, "format=openai", headers))
            assert _chunk_text(seen + rest) == want


def _last_id_frame(frames: list[Frame], cut: int) -> int:
    """How many frames a reader that got ``cut`` frames has applied up to its last SSE id."""
    last = 0
    for i, frame in enumerate(frames[:cut]):
        if frame.data.startswith(b"id:"):
            last = i + 1
    return last


def _parse(client: openai.OpenAI, frame: Frame) -> list[ChatCompletionChunk]:
    """One frame through the SDK's Stream class (a response holding just its bytes)."""
    response = httpx.Response(200, content=frame.data, request=httpx.Request("GET", "http://x"))
    return list(openai.Stream(cast_to=ChatCompletionChunk, response=response, client=client))


def test_openai_sdk_reads_a_compacted_catch_up(asgi_server: Any) -> None:
    ops = long_answer(2_000)
    with asgi_server(make_app(ops)) as base:
        client = _client(base)
        chunks = list(_resume(client, ChatCompletionChunk, "format=openai&threshold=10", {}))
    assert len(chunks) <= 5
    assert _chunk_text(chunks) == _message_text(ops)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 2000


def test_openai_sdk_raises_the_failed_stream(asgi_server: Any) -> None:
    ops = _ops("error_mid_stream")
    with asgi_server(make_app(ops)) as base:
        client = _client(base)
        got = []
        with pytest.raises(openai.APIError):
            for chunk in client.chat.completions.create(model="m", messages=[], stream=True):
                got.append(chunk)
    assert _chunk_text(got)["content"] == _message_text(ops)["content"]


def _responses_text(events: list[Any]) -> dict[str, str]:
    out = {"content": "", "reasoning": "", "arguments": ""}
    for event in events:
        if event.type == "response.output_text.delta":
            out["content"] += event.delta
        elif event.type == "response.reasoning_summary_text.delta":
            out["reasoning"] += event.delta
        elif event.type == "response.function_call_arguments.delta":
            out["arguments"] += event.delta
    return out


@pytest.mark.parametrize("name", ["openai_text", "deepseek_reasoning_content", "v11_agent_steps"])
def test_openai_sdk_reads_the_responses_view_and_resumes(name: str, asgi_server: Any) -> None:
    ops = _ops(name)
    frames = replay(ResponsesView(), ops)
    want = _message_text(ops)
    with asgi_server(make_app(ops)) as base:
        client = _client(base)
        for cut in range(1, len(frames)):
            got: list[Any] = []
            stream = client.responses.create(
                model="m", input="hi", stream=True, extra_query={"cut": cut}
            )
            with pytest.raises(openai.APIConnectionError):
                for event in stream:
                    got.append(event)
            # As above: every event before the drop, or (loaded machine) a shorter prefix.
            got_n = len(got)
            assert [e.sequence_number for e in got] == list(range(got_n)) and got_n <= cut
            query = f"format=responses&starting_after={got_n - 1}"
            rest = list(_resume(client, ResponseStreamEvent, query, {}))
            assert [e.sequence_number for e in rest] == list(range(got_n, len(frames)))
            events = got + rest
            assert _responses_text(events) == want
            final = events[-1]
            assert final.type == "response.completed"
            text = "".join(
                part.text
                for item in final.response.output
                if item.type == "message"
                for part in item.content
                if part.type == "output_text"
            )
            assert text == want["content"]
            assert final.response.output_text == text  # the SDK's own accessor agrees


def test_responses_view_compacted_resume_keeps_sequence_numbers(asgi_server: Any) -> None:
    ops = long_answer(2_000)
    full = replay(ResponsesView(), ops)
    with asgi_server(make_app(ops)) as base:
        client = _client(base)
        query = "format=responses&starting_after=5&threshold=10"
        events = list(_resume(client, ResponseStreamEvent, query, {}))
    numbers = [e.sequence_number for e in events]
    assert numbers == sorted(set(numbers)) and numbers[-1] == len(full) - 1
    head = replay(ResponsesView(), ops)[:6]
    assert _responses_text([*_events(client, head), *events]) == _message_text(ops)


def _events(client: openai.OpenAI, frames: list[Frame]) -> list[Any]:
    data = b"".join(f.data for f in frames)
    response = httpx.Response(200, content=data, request=httpx.Request("GET", "http://x"))
    return list(openai.Stream(cast_to=ResponseStreamEvent, response=response, client=client))


def test_the_openai_sdk_reads_a_responses_view_across_a_step_reset() -> None:
    """A superseded attempt's items are finished as they stand and left out of the final
    output; the retry's items have new ids (the SDK refuses a reused one)."""
    from openai import omit
    from openai.lib.streaming.responses._responses import ResponseStreamState
    from openai.types.responses import ResponseStreamEvent
    from pydantic import TypeAdapter
    from v11_vectors import superseded

    from tokenwire.protocol.views import ResponsesView

    ops, message = superseded("good")
    view = ResponsesView()
    adapter = TypeAdapter(ResponseStreamEvent)
    state = ResponseStreamState(input_tools=omit, text_format=omit)
    for op in ops:
        for frame in view.feed(op):
            state.handle_event(adapter.validate_python(frame.body))
    final = state._completed_response
    assert final is not None
    assert final.output_text == "zero good" == message.text
    ids = [item.id for item in final.output]
    assert len(ids) == len(set(ids)) == 2


def test_last_event_id_after_any_chunk_resumes_exactly() -> None:
    """An op that becomes several chunks (a text past the frame bound, the end's finish and
    usage chunks): every chunk carries an id (``<seq>.<k>`` inside an op), and a reader cut
    after any chunk resumes with it, missing and repeating nothing."""
    from tokenwire.protocol import Assembler
    from tokenwire.protocol import facts as f
    from tokenwire.protocol.views import OpenAIChunksView, catch_up

    asm = Assembler("st_cut", coalesce_ms=0)
    facts = [
        f.Started("m"),
        f.TextFact(0, "text", "x" * 5000),
        f.TextFact(0, "text", "tail"),
        f.UsageFact({"prompt_tokens": 1, "completion_tokens": 2}),
        f.Finished(0, "stop"),
        f.Done(),
    ]
    ops = asm.feed(facts) + asm.close()

    def make() -> OpenAIChunksView:
        return OpenAIChunksView(max_frame_bytes=1024)

    view = make()
    full = [fr for op in ops for fr in view.feed(op)]
    assert len({fr.seq for fr in full}) < len(full)  # (some op gave several chunks)
    for cut in range(1, len(full)):
        ids = [line[3:] for fr in full[:cut] for line in fr.data.split(b"\n") if line[:3] == b"id:"]
        assert ids, cut
        seq, _, part = ids[-1].decode().partition(".")
        rest, _ = catch_up(
            make,
            ops,
            after_seq=int(seq) - 1 if part else int(seq),
            after_part=int(part or 0),
            threshold=10**6,
        )
        assert [fr.body for fr in full[:cut] + rest] == [fr.body for fr in full], cut


def _two_choices(tokens: int, big: bool = False) -> list[RawOp]:
    """An n=2 answer as OpenAI streams it: the two choices' tokens interleaved."""
    ops = [
        RawOp(1, b'{"type":"message.start","seq":1,"id":"st_n2","model":"m"}'),
        RawOp(2, b'{"type":"block.start","seq":2,"index":0,"block":{"type":"text","text":""}}'),
        RawOp(
            3,
            b'{"type":"block.start","seq":3,"index":1,"block":{"type":"text","text":"","choice":1}}',
        ),
    ]
    seq = 3
    for i in range(tokens):
        for index in (0, 1):
            seq += 1
            word = f" {'w' * (40 if big else 1)}{index}-{i}"
            ops.append(
                RawOp(
                    seq, json.dumps({"type": "block.delta", "index": index, "text": word}).encode()
                )
            )
    for index in (0, 1):
        seq += 1
        ops.append(RawOp(seq, b'{"type":"block.end","seq":%d,"index":%d}' % (seq, index)))
    seq += 1
    end = {"type": "message.end", "seq": seq, "status": "completed", "finish_reason": "stop"}
    ops.append(RawOp(seq, json.dumps(end).encode()))
    return ops


def _texts(frames: list[Frame]) -> dict[int, str]:
    """Per choice, the content the SDK's own chunk accumulator builds from ``frames``."""
    from openai.lib.streaming.chat._completions import ChatCompletionStreamState

    state = ChatCompletionStreamState()
    for frame in frames:
        if frame.body is not None and "choices" in frame.body:
            state.handle_chunk(ChatCompletionChunk.model_validate(frame.body))
    snapshot = state.current_completion_snapshot
    return {c.index: c.message.content or "" for c in snapshot.choices}


@pytest.mark.parametrize("big", [False, True])
def test_a_catch_up_of_interleaved_choices_is_a_few_chunks_and_every_id_resumes(
    big: bool,
) -> None:
    """n>1 choices interleave one chunk per token, so no run of one choice's deltas was longer
    than one: the catch-up was one frame per token (12,000 frames for 6,000 tokens). Now a
    stretch of deltas is one chunk carrying every choice; each still covers a contiguous
    stretch of frames, so its id resumes like any other (checked at every one)."""
    tokens = 1_500 if big else 3_000
    ops = _two_choices(tokens, big)
    state = MessageState()
    for op in ops:
        state.apply(json.loads(op.json), op.seq)
    want = {b.choice: b.text for b in state.blocks}
    exact = replay(OpenAIChunksView(), ops)
    frames, _ = catch_up(OpenAIChunksView, ops, threshold=10)
    size = sum(len(f.data) for f in frames)
    assert len(frames) <= (14 if big else 8), len(frames)
    assert max(len(f.data) for f in frames) <= 64 * 1024
    assert size <= 1.2 * len(json.dumps(want)) + 2_000
    assert _texts(frames) == want
    # Resume after every id a catch-up sent, from cuts of the exact frames (a shorter answer
    # and a 2 KiB bound: many chunks, each of several choices' deltas).
    ops = _two_choices(300, big)
    state = MessageState()
    for op in ops:
        state.apply(json.loads(op.json), op.seq)
    want = {b.choice: b.text for b in state.blocks}
    exact = replay(OpenAIChunksView(), ops)
    for cut in range(0, len(exact), 23):
        seqs = [f.seq for f in exact[:cut] if f.data.startswith(b"id:")]
        applied = exact[: _last_id_frame(exact, cut)]
        rest, _ = catch_up(
            OpenAIChunksView,
            ops,
            after_seq=seqs[-1] if seqs else None,
            threshold=0,
            max_frame_bytes=2048,
        )
        assert all(len(f.data) <= 2048 for f in rest)
        assert len(rest) < len(exact) - cut
        assert _texts(applied + rest) == want, cut
        for j, frame in enumerate(rest):
            if frame.data.startswith(b"id:") and frame.part == 0:
                more, _ = catch_up(OpenAIChunksView, ops, after_seq=frame.seq, threshold=0)
                assert _texts(applied + rest[: j + 1] + more) == want, (cut, j)


def test_the_ops_catch_up_of_interleaved_choices_past_the_bound_is_one_snapshot() -> None:
    """Past the bound, the ops view merged runs of one block's deltas: interleaved choices
    have none, so a 110 KB answer came back as 3,000 one-token frames. A frame of the op
    stream is one op, so the snapshot (past the bound) is the one frame now; a client
    rebuilds the message from it. A long single-choice answer still gets merged deltas."""
    from tokenwire.client._state import StreamState
    from tokenwire.protocol.views import OpsView

    for ops, most in ((_two_choices(1_200, big=True), 1), (long_answer(30_000), 20)):
        state = MessageState()
        for op in ops:
            state.apply(json.loads(op.json), op.seq)
        frames, _ = catch_up(OpsView, ops, threshold=10)
        assert len(frames) <= most, len(frames)
        assert sum(len(f.data) for f in frames) > 64 * 1024  # (the case past the bound)
        reader = StreamState("st_n2")
        for frame in frames:
            reader.feed(frame.data)
        got = reader.message.to_dict()
        assert [b["text"] for b in got["blocks"]] == [b.text for b in state.blocks]
        assert got["status"] == "completed" and reader.seq == ops[-1].seq


def test_the_ops_catch_up_of_one_text_with_inline_citations_stays_merged() -> None:
    """The snapshot past the bound is for interleaved blocks only: an answer whose text is
    interrupted now and then (a cited source every 200 tokens, a data block updated in
    place) still merges into frames within the bound."""
    from tokenwire.protocol.views import OpsView

    for interrupt in ("source", "update"):
        ops = [RawOp(1, b'{"type":"message.start","seq":1,"id":"st_c","model":"m"}')]
        ops.append(
            RawOp(2, b'{"type":"block.start","seq":2,"index":0,"block":{"type":"text","text":""}}')
        )
        block = {"type": "data", "name": "progress", "id": "p", "value": 0}
        ops.append(
            RawOp(
                3,
                json.dumps({"type": "block.start", "seq": 3, "index": 1, "block": block}).encode(),
            )
        )
        seq, blocks = 3, 2
        for i in range(6_000):
            seq += 1
            delta = {"type": "block.delta", "index": 0, "text": f" word{i}xxxxxxxx"}
            ops.append(RawOp(seq, json.dumps(delta).encode()))
            if i % 200 == 199:
                seq += 1
                if interrupt == "source":
                    source = {
                        "type": "source",
                        "url": f"https://s{i}.example",
                        "span": {"block": 0, "start": 0, "end": 4},
                    }
                    ops.append(
                        RawOp(
                            seq,
                            json.dumps(
                                {
                                    "type": "block.start",
                                    "seq": seq,
                                    "index": blocks,
                                    "block": source,
                                }
                            ).encode(),
                        )
                    )
                    seq += 1
                    ops.append(
                        RawOp(
                            seq,
                            json.dumps({"type": "block.end", "seq": seq, "index": blocks}).encode(),
                        )
                    )
                    blocks += 1
                else:
                    update = {"type": "block.update", "seq": seq, "index": 1, "attrs": {"value": i}}
                    ops.append(RawOp(seq, json.dumps(update).encode()))
        seq += 1
        end = {"type": "message.end", "seq": seq, "status": "completed", "finish_reason": "stop"}
        ops.append(RawOp(seq, json.dumps(end).encode()))
        frames, _ = catch_up(OpsView, ops, threshold=10)
        assert sum(len(f.data) for f in frames) > 64 * 1024, interrupt  # (past the bound)
        assert 1 < len(frames) < 150, (interrupt, len(frames))
        assert all(len(f.data) <= 64 * 1024 for f in frames), interrupt


def test_a_rebuilt_catch_up_of_two_choices_keeps_the_frame_bound() -> None:
    """From a snapshot (a trimmed log, a forgotten stream) each block's text is rebuilt; a
    choice's first chunk carries ``role``, and a rebuilt one of 50 KB once came out whole
    under a 4 KiB bound: no frame passes the bound."""
    ops = [
        encode(MessageStart(1, "m", "x")),
        encode(BlockStart(2, 0, {"type": "text", "text": ""})),
        encode(BlockDelta(index=0, text="a" * 50_000, seq=3)),
        encode(BlockStart(4, 1, {"type": "text", "choice": 1, "text": ""})),
        encode(BlockDelta(index=1, text="b" * 50_000, seq=5)),
        encode(BlockEnd(6, 0)),
        encode(BlockEnd(7, 1)),
        encode(MessageEnd(8, "completed", "stop", None, None)),
    ]
    snapshot = [snapshot_op(apply_ops(ops), 8)]
    frames, _ = catch_up(
        lambda: OpenAIChunksView(max_frame_bytes=4096), snapshot, max_frame_bytes=4096
    )
    assert max(len(f.data) for f in frames) <= 4096
    assert _texts(frames) == {0: "a" * 50_000, 1: "b" * 50_000}


def test_a_catch_up_leaves_out_the_text_of_a_superseded_attempt() -> None:
    """A reader far behind gets no chunk of an attempt a step reset dropped (it never saw it,
    and the stored message does not have it): the SDK's accumulated content is the message's
    text. A reader already inside the attempt keeps what it got and misses nothing after."""
    from v11_vectors import superseded

    ops, message = superseded(*(f"try{i} " for i in range(40)), "good")
    frames, _ = catch_up(OpenAIChunksView, ops, threshold=4)
    assert _texts(frames) == {0: message.text} and message.text == "zero good"
    exact = replay(OpenAIChunksView(), ops)
    assert _texts(exact)[0].startswith("zero bad try0 ")  # (live: chunks are not taken back)
    # From any cut of the exact frames (the reader got those), the catch-up gives the rest of
    # the message's text and nothing of an attempt it had not reached.
    for cut in range(1, len(exact)):
        got = exact[:cut]
        last = max(f.index for f in got if f.index is not None)
        rest, _ = catch_up(OpenAIChunksView, ops, after=last, threshold=4)
        text = _texts(got + rest)[0]
        assert text.startswith("zero ") and text.endswith("good"), (cut, text)
        assert text.count("good") == 1 and text.startswith(_texts(got)[0]), (cut, text)


def test_a_catch_up_leaves_out_a_superseded_attempt_of_every_choice() -> None:
    """Choice 1's first chunk (its ``role``) was the superseded attempt's first text: the
    catch-up keeps the role, not the text."""
    from tokenwire.protocol import Assembler
    from tokenwire.protocol import facts as f

    asm = Assembler("st_two", coalesce_ms=0)
    facts = [f.Started("m"), f.StepStarted(1)]
    facts += [f.TextFact(0, "text", "BAD0 "), f.TextFact(1, "text", "BAD1 ")] * 20
    facts += [f.StepReset(1), f.TextFact(0, "text", "good0"), f.TextFact(1, "text", "good1")]
    ops = asm.feed([*facts, f.Done()]) + asm.close()
    want = {b.choice: b.text for b in asm.message.blocks}
    assert want == {0: "good0", 1: "good1"}
    frames, _ = catch_up(OpenAIChunksView, ops, threshold=4)
    assert _texts(frames) == want


@pytest.mark.parametrize("cut", [None, 2, "snapshot"])
def test_a_choices_first_chunk_is_split_like_any_delta(cut: Any) -> None:
    """Choice 1's first chunk carries ``role`` with its first text; a text past the bound was
    one frame (8 KB under a 1 KiB bound), live and in every catch-up. Now each piece keeps
    the role, and the SDK's accumulated content is the text."""
    first = 'é"\n' * 2000
    ops = [
        encode(MessageStart(1, "m", "x")),
        encode(BlockStart(2, 0, {"type": "text", "text": ""})),
        encode(BlockDelta(index=0, text="zero", seq=3)),
        encode(BlockStart(4, 1, {"type": "text", "choice": 1, "text": ""})),
        encode(BlockDelta(index=1, text=first, seq=5)),
        encode(BlockDelta(index=1, text=" more", seq=6)),
        encode(BlockEnd(7, 0)),
        encode(BlockEnd(8, 1)),
        encode(MessageEnd(9, "completed", "stop", None, None)),
    ]
    view = lambda: OpenAIChunksView(max_frame_bytes=1024)  # noqa: E731
    live = replay(view(), ops)
    assert max(len(f.data) for f in live) <= 1024
    if cut == "snapshot":
        log: list[Any] = [snapshot_op(apply_ops(ops[:5]), 5), *ops[5:]]
        frames, _ = catch_up(view, log, threshold=0, max_frame_bytes=1024)
    else:
        after_seq = cut
        frames, _ = catch_up(view, ops, after_seq=after_seq, threshold=0, max_frame_bytes=1024)
    assert max(len(f.data) for f in frames) <= 1024
    assert _texts(frames) == {0: "zero", 1: first + " more"}
    assert _texts(live) == {0: "zero", 1: first + " more"}
