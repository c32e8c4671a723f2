"""The AI SDK view read by the `ai` npm package itself (DefaultChatTransport, readUIMessageStream,
AbstractChat's resume), over real HTTP on 127.0.0.1: the UI message it builds must equal the
canonical message's blocks, and a cut answer resumed must give one message, no duplicates."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tokenwire.protocol.views import (
    AISDKView,
    frames_after,
    ops_from_jsonl,
    replay,
    resume,
    tail_index,
)
from tokenwire.protocol.views.base import MessageState

HERE = Path(__file__).parent
WEB = HERE.parent / "web"
SCRIPT = WEB / "test-views" / "aisdk-client.mjs"
VECTORS = HERE / "vectors"


def _skip_reason() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not (WEB / "node_modules" / "ai").is_dir():
        return "web/node_modules is missing (cd web && npm ci)"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


def _ops(name: str) -> list[Any]:
    # The views' own logs first: tests/vectors/ has a different log of the same name.
    path = VECTORS / "views" / f"{name}.ops.jsonl"
    if not path.exists():
        path = VECTORS / f"{name}.ops.jsonl"
    return ops_from_jsonl(path.read_bytes().splitlines())


def _frames(ops: list[Any]) -> list[str]:
    return [f.data.decode() for f in replay(AISDKView(), ops)]


def _state(ops: list[Any]) -> MessageState:
    state = MessageState()
    for op in ops:
        state.apply(json.loads(op.json), op.seq)
    return state


def expected_parts(state: MessageState) -> list[dict[str, Any]]:
    """The UI message parts the canonical message's blocks must become (choice 0)."""
    parts: list[dict[str, Any]] = []
    step: int | None = None
    tools: dict[str, dict[str, Any]] = {}
    for i, block in enumerate(state.blocks):
        if block.choice:
            continue
        if step is None or block.step > step:
            parts.append({"type": "step-start"})
            step = block.step
        a = block.attrs
        if block.type in ("text", "refusal"):
            parts.append({"type": "text", "text": block.text, "state": "done"})
        elif block.type == "reasoning":
            parts.append({"type": "reasoning", "text": block.text, "state": "done"})
        elif block.type == "tool_call":
            part = {"type": f"tool-{a['name']}", "toolCallId": a["id"]}
            part.update(state="input-available", input=json.loads(block.text or "{}"))
            tools[a["id"]] = part
            parts.append(part)
        elif block.type == "tool_result":
            part = tools[a["call_id"]]
            if a.get("error"):
                part.update(state="output-error", errorText=block.text)
            else:
                part.update(state="output-available", output=json.loads(block.text))
        elif block.type == "source":
            parts.append(
                {"type": "source-url", "sourceId": f"s{i}", "url": a["url"], "title": a["title"]}
            )
        elif block.type == "file":
            parts.append({"type": "file", "url": a["url"], "mediaType": a["media_type"]})
        elif block.type == "image":
            media = a["url"][5:].split(";", 1)[0]
            parts.append({"type": "file", "url": a["url"], "mediaType": media})
        elif block.type == "data":
            parts.append({"type": f"data-{a['name']}", "id": a["id"], "data": a["value"]})
    return parts


KEYS = ("type", "text", "state", "toolCallId", "input", "output", "errorText", "sourceId")
KEYS += ("url", "title", "mediaType", "id", "data")


def _essential(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fields the blocks determine (a part's own ``id`` only matters for data parts)."""
    out = []
    for p in parts:
        keys = KEYS if p["type"].startswith("data-") else tuple(k for k in KEYS if k != "id")
        out.append({k: p[k] for k in keys if k in p})
    return out


def _run(scenarios: list[dict[str, Any]], tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "scenarios.json"
    path.write_text(json.dumps(scenarios))
    done = subprocess.run(
        ["node", str(SCRIPT), str(path)],
        cwd=WEB,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


ANSWERS = ["openai_text", "deepseek_reasoning_content", "v11_agent_steps", "openrouter_image"]


def test_ai_sdk_reads_the_view(tmp_path: Path) -> None:
    scenarios: list[dict[str, Any]] = []
    for name in ANSWERS:
        scenarios.append({"name": name, "mode": "transport", "post": _frames(_ops(name))})
    # A cut mid-answer (inside the last text block), then useChat's resume: GET .../stream.
    ops = _ops("v11_agent_steps")
    cut = 18
    scenarios.append(
        {
            "name": "cut_resume",
            "mode": "chat",
            "post": _frames(ops[:cut]),
            "cut": True,
            "resume": [f.data.decode() for f in resume(ops)[0]],
        }
    )
    # A resume while the answer is still streaming: the catch-up, then the live frames.
    frames, live = resume(ops[:cut])
    rest = [f for op in ops[cut:] for f in live.feed(op)]
    scenarios.append(
        {
            "name": "cut_resume_live",
            "mode": "chat",
            "post": _frames(ops[:12]),
            "cut": True,
            "resume": [f.data.decode() for f in frames + rest],
        }
    )
    scenarios.append({"name": "nothing_active", "mode": "reconnect", "post": [], "resume": None})
    got = _run(scenarios, tmp_path)

    for name in ANSWERS:
        message = got[name]["message"]
        assert got[name]["errors"] == []
        assert message["id"] == f"st_{name}" if name != "v11_agent_steps" else "st_agent"
        assert message["role"] == "assistant"
        assert _essential(message["parts"]) == expected_parts(_state(_ops(name))), name

    want = expected_parts(_state(ops))  # the agent answer's
    for name in ("cut_resume", "cut_resume_live"):
        result = got[name]
        assert result["statusAfterSend"] == "error"  # the cut was seen
        assert result["status"] == "ready", result
        roles = [m["role"] for m in result["messages"]]
        assert roles == ["user", "assistant"], name  # one assistant message, replaced in place
        assistant = result["messages"][1]
        assert assistant["id"] == "st_agent"
        assert _essential(assistant["parts"]) == want, name
    # The transient data part went to onData, never into the message.
    assert {"type": "data-status", "data": "calling get_weather", "transient": True} in got[
        "cut_resume_live"
    ]["transient"]
    assert got["nothing_active"] == {"none": True}
    gets = [r for r in got["__requests"] if r["method"] == "GET"]
    assert {r["id"] for r in gets} == {"cut_resume", "cut_resume_live", "nothing_active"}


def test_ai_sdk_step_reset_resume_drops_the_superseded_step(tmp_path: Path) -> None:
    ops = _ops("v11_step_reset")
    cut = 7  # after the first attempt's partial text, before the reset
    scenarios = [
        {
            "name": "reset",
            "mode": "chat",
            "post": _frames(ops[:cut]),
            "cut": True,
            "resume": [f.data.decode() for f in resume(ops)[0]],
        },
        {"name": "reset_live", "mode": "transport", "post": _frames(ops)},
    ]
    got = _run(scenarios, tmp_path)
    assistant = got["reset"]["messages"][1]
    assert _essential(assistant["parts"]) == expected_parts(_state(ops))
    texts = [p["text"] for p in assistant["parts"] if p["type"] == "text"]
    assert texts == ["Let me check.", "The answer is 42."]
    # Live, ``reset-step`` drops the superseded attempt's parts from the client's message.
    live = [p.get("text") for p in got["reset_live"]["message"]["parts"] if p["type"] == "text"]
    assert live == ["Let me check.", "The answer is 42."]


def test_ai_sdk_sees_errors_and_aborts(tmp_path: Path) -> None:
    scenarios = [
        {"name": "failed", "mode": "chat", "post": _frames(_ops("error_mid_stream"))},
        {"name": "cancelled", "mode": "chat", "post": _frames(_ops("v11_tool_error_cancelled"))},
    ]
    got = _run(scenarios, tmp_path)
    assert got["failed"]["statusAfterSend"] == "error"
    cancelled = got["cancelled"]
    assert cancelled["statusAfterSend"] == "ready"
    parts = cancelled["messages"][1]["parts"]
    tool = next(p for p in parts if p["type"] == "tool-lookup")
    assert tool["state"] == "output-error" and tool["errorText"] == "timeout after 5s"


def _workflow(name: str, ops: list[Any], **extra: Any) -> dict[str, Any]:
    """A Workflow-transport scenario: every startIndex the client may ask for, answered by
    ``frames_after`` (the route's function), with the tail index header."""
    full = [f for f in replay(AISDKView(), ops) if f.index is not None]
    by_start = {}
    for n in range(-len(full) - 1, len(full) + 1):
        rest, _ = frames_after(AISDKView, ops, n)
        by_start[str(n)] = [f.data.decode() for f in rest]
    scenario = {"name": name, "mode": "workflow", "byStart": by_start}
    scenario.update(tail=tail_index(len(full)), **extra)
    return scenario


def test_workflow_transport_resumes_at_the_chunk_index(tmp_path: Path) -> None:
    ops = _ops("v11_agent_steps")
    full = [f.data.decode() for f in replay(AISDKView(), ops) if f.index is not None]
    cut = 18  # chunks the POST delivered before its connection dropped
    scenarios = [
        _workflow("wf_cut", ops, post=full[:cut], cut=True),
        _workflow("wf_tail", ops, post=[], initialStartIndex=-3),
    ]
    got = _run(scenarios, tmp_path)
    if got["wf_cut"].get("unavailable"):
        pytest.skip("@ai-sdk/workflow is not installed")
    assert got["wf_cut"]["errors"] == []
    parts = got["wf_cut"]["message"]["parts"]
    assert _essential(parts) == expected_parts(_state(ops))
    gets = [(r["id"], r["startIndex"]) for r in got["__requests"] if r["method"] == "GET"]
    assert ("wf_cut", str(cut)) in gets  # it resumed exactly after the chunks it had
    assert ("wf_tail", "-3") in gets
    # The last three chunks: the file part, finish-step, finish.
    tail = got["wf_tail"]["message"]["parts"]
    assert [p["type"] for p in tail] == ["file"]


def test_ai_sdk_resumes_a_long_answer_from_a_compacted_catch_up(tmp_path: Path) -> None:
    """20,000 one-token deltas cut at token 15,000: the resume is a handful of frames (the
    text split under 64 KiB) and the AI SDK's Chat ends with the whole text, once."""
    from bench.catchup import long_answer

    ops = long_answer(20_000)
    frames, _ = resume(ops)
    assert len(frames) <= 12
    scenario = {
        "name": "long",
        "mode": "chat",
        "post": _frames(ops[:15_000]),
        "cut": True,
        "resume": [f.data.decode() for f in frames],
    }
    got = _run([scenario], tmp_path)["long"]
    assert got["statusAfterSend"] == "error" and got["status"] == "ready"
    assert [m["role"] for m in got["messages"]] == ["user", "assistant"]
    texts = [p["text"] for p in got["messages"][1]["parts"] if p["type"] == "text"]
    assert texts == [_state(ops).blocks[0].text]


def test_ai_sdk_resumed_between_two_resets_keeps_every_step(tmp_path: Path) -> None:
    """A ``useChat`` resume that lands after a reset (the reset step has no block left), then
    a retry, another reset and a retry, live: the real client ends with the stored message's
    parts, step 0 included (the resumed view went on from the log's step, not the client's)."""
    from v11_vectors import superseded

    encoded, _ = superseded("good ", "good2 ")  # (the reader resumes after the first reset)
    ops = ops_from_jsonl([op.json for op in encoded])
    cut = next(i for i, op in enumerate(ops) if json.loads(op.json)["type"] == "step.reset") + 1
    frames, view = resume(ops[:cut])
    live = [f.data.decode() for op in ops[cut:] for f in view.feed(op)]
    scenarios = [
        {
            "name": "between_resets",
            "mode": "chat",
            "post": _frames(ops[:cut]),
            "cut": True,
            "resume": [f.data.decode() for f in frames] + live,
        }
    ]
    got = _run(scenarios, tmp_path)
    assistant = got["between_resets"]["messages"][1]
    assert _essential(assistant["parts"]) == expected_parts(_state(ops))
    texts = [p["text"] for p in assistant["parts"] if p["type"] == "text"]
    assert texts == ["zero ", "good2 "]


def test_a_server_tool_is_provider_executed_and_left_out_of_the_openai_formats(
    tmp_path: Path,
) -> None:
    """Anthropic's server tools (web search, code execution) ran upstream: the AI SDK view
    says so (``providerExecuted``, so useChat expects no result from the app), and the chat
    and Responses views, whose clients would run every call they are shown, leave them out.
    They once came out as ordinary calls, next to the client tool the app must run."""
    from tokenwire.protocol.views import OpenAIChunksView, ResponsesView

    ops = _ops("anthropic_server_tool_result")
    got = _run([{"name": "server", "mode": "transport", "post": _frames(ops)}], tmp_path)
    assert got["server"]["errors"] == []
    tools = {p["toolCallId"]: p for p in got["server"]["message"]["parts"] if "toolCallId" in p}
    web = tools["svu_web_001"]
    assert web["type"] == "tool-web_search" and web["providerExecuted"] is True
    assert web["state"] == "output-available" and web["output"][0]["url"] == "https://example.com"
    client = tools["tu_client_001"]
    assert client["input"] == {"query": "test"} and "providerExecuted" not in client

    chunks = [f.body for f in replay(OpenAIChunksView(), ops) if isinstance(f.body, dict)]
    calls = [
        call
        for chunk in chunks
        for choice in chunk.get("choices", ())
        for call in choice["delta"].get("tool_calls", ())
    ]
    assert [c["id"] for c in calls if "id" in c] == ["tu_client_001"]
    assert {c["index"] for c in calls} == {0}
    events = [f.body for f in replay(ResponsesView(), ops)]
    final = events[-1]["response"]["output"]
    assert [item["call_id"] for item in final] == ["tu_client_001"]
