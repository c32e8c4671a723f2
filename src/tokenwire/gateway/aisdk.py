"""The gateway's view routes that start generations: ``POST /v1/aisdk/chat`` (a backend for
the Vercel AI SDK's ``useChat``) and the detached ``POST /v1/chat/completions``
(``X-Tokenwire-Detach: 1``). Both start a generation exactly like ``POST /v1/streams`` (same
auth, same upstream) and answer with a view of it; the resume and stop routes are the
library's (``tokenwire.streams.asgi``)."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from tokenwire.gateway.errors import bad_request, error_body, json_object
from tokenwire.gateway.passthrough import read_body
from tokenwire.gateway.routes import start_generation
from tokenwire.gateway.service import Gateway
from tokenwire.hub.base import Cursor
from tokenwire.protocol.ops import EncodedOp
from tokenwire.streams.views_http import (
    CHAT_ID,
    CHAT_ID_RULE,
    ViewResponse,
    make_view,
    read_log,
    sse_headers,
    ui_message_id,
    workflow_body,
)

_json = msgspec.json.Encoder()
_BODY_KEYS = ("id", "messages", "trigger", "messageId")  # DefaultChatTransport's own keys


def _gw(request: Request) -> Gateway:
    return request.app.state.gateway


# -- UI messages -> chat messages ------------------------------------------------------------
def _text_of(parts: list[Any], kind: str = "text") -> str:
    return "".join(
        str(p.get("text", "")) for p in parts if isinstance(p, dict) and p.get("type") == kind
    )


def _user_content(parts: list[Any]) -> str | list[dict[str, Any]]:
    """Text parts as one string; with files, OpenAI's content parts (images by URL, other
    files as ``file_data``)."""
    files = [p for p in parts if isinstance(p, dict) and p.get("type") == "file"]
    if not files:
        return _text_of(parts)
    content: list[dict[str, Any]] = []
    for part in parts:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text":
            content.append({"type": "text", "text": str(part.get("text", ""))})
        elif part.get("type") == "file":
            media = str(part.get("mediaType", ""))
            if media.startswith("image/"):
                content.append({"type": "image_url", "image_url": {"url": part.get("url")}})
            else:  # (OpenAI takes a base64 ``data:`` URL here, with the file's name)
                file: dict[str, Any] = {"file_data": part.get("url")}
                if isinstance(part.get("filename"), str):
                    file["filename"] = part["filename"]
                content.append({"type": "file", "file": file})
    return content


def _tool_name(part: dict[str, Any]) -> str | None:
    kind = str(part.get("type", ""))
    if kind == "dynamic-tool":
        return str(part.get("toolName") or "")
    if kind.startswith("tool-"):
        return kind[5:]
    return None


def _output_text(output: Any) -> str:
    return output if isinstance(output, str) else _json.encode(output).decode()


def _assistant(parts: list[Any]) -> list[dict[str, Any]]:
    """One assistant message per step (``step-start`` parts separate them): its text, its
    tool calls that have a result, then one ``tool`` message per result. Reasoning is not
    sent back (chat-completion APIs take none); calls without a result are left out (the
    API needs a result for every call it is shown)."""
    steps: list[list[dict[str, Any]]] = [[]]
    for part in parts:
        if isinstance(part, dict):
            if part.get("type") == "step-start" and steps[-1]:
                steps.append([])
            elif part.get("type") != "step-start":
                steps[-1].append(part)
    out: list[dict[str, Any]] = []
    for step in steps:
        text = _text_of(step)
        calls: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        for part in step:
            name = _tool_name(part)
            state = part.get("state")
            if name is None or state not in ("output-available", "output-error"):
                continue
            call_id = str(part.get("toolCallId") or "")
            calls.append(
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": _output_text(part.get("input", {}))},
                }
            )
            output = part.get("output") if state == "output-available" else part.get("errorText")
            results.append(
                {"role": "tool", "tool_call_id": call_id, "content": _output_text(output)}
            )
        if not text and not calls:
            continue
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            message["tool_calls"] = calls
        out.append(message)
        out.extend(results)
    return out


# The string members of the parts tokenwire reads (by part type; tool parts: any "tool-*").
_STRING_MEMBERS = {
    "text": ("text",),
    "reasoning": ("text",),
    "file": ("url", "mediaType"),
    "dynamic-tool": ("toolCallId", "toolName"),
    "tool-": ("toolCallId",),
}


def _check_parts(at: int, parts: list[Any]) -> None:
    """A part of the wrong shape is the client's error (400), never sent on as something
    else (a repr for a text, a number for a URL)."""
    for index, part in enumerate(parts):
        where = f"messages[{at}].parts[{index}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise bad_request(f"{where} must be an object with a string 'type'", "invalid_messages")
        kind = part["type"]
        members = _STRING_MEMBERS.get("tool-" if kind.startswith("tool-") else kind, ())
        for name in members:
            value = part.get(name)
            if value is not None and not isinstance(value, str):
                raise bad_request(f"{where}.{name} must be a string", "invalid_messages")


def chat_messages(ui_messages: list[Any]) -> list[dict[str, Any]]:
    """The AI SDK's UI messages (``{id, role, parts}``) as chat-completion messages."""
    out: list[dict[str, Any]] = []
    for at, message in enumerate(ui_messages):
        if not isinstance(message, dict):
            raise bad_request("each message must be an object", "invalid_messages")
        role, parts = message.get("role"), message.get("parts")
        if not isinstance(parts, list):
            raise bad_request("each message needs a 'parts' array", "invalid_messages")
        _check_parts(at, parts)
        if role == "system":
            out.append({"role": "system", "content": _text_of(parts)})
        elif role == "user":
            out.append({"role": "user", "content": _user_content(parts)})
        elif role == "assistant":
            out.extend(_assistant(parts))
        else:
            raise bad_request(f"unknown message role {role!r}", "invalid_messages")
    return out


# -- routes ----------------------------------------------------------------------------------
async def aisdk_chat(request: Request) -> Response:
    """``POST /v1/aisdk/chat``: the ``DefaultChatTransport`` body (``id``, ``messages``,
    ``trigger``, ``messageId``, plus the request's own fields such as ``model``, sent to the
    upstream as they are); answers with the AI SDK view and ``x-workflow-run-id``. Without
    ``id`` (the Workflow transport's default body) no chat is recorded: the run id resumes."""
    gw = _gw(request)
    owner = gw.auth.owner(request.headers, request.query_params)
    gw.require_started()
    if gw.settings.upstream_api != "chat":
        raise bad_request(
            "/v1/aisdk/chat needs a chat-completions upstream (upstream_api = chat)",
            "unsupported_upstream_api",
        )
    data = json_object(await read_body(request, gw.settings.max_body_bytes))
    chat_id, ui_messages = data.get("id"), data.get("messages")
    if chat_id is not None and (not isinstance(chat_id, str) or not CHAT_ID.fullmatch(chat_id)):
        raise bad_request(f"'id' (the chat id) must be {CHAT_ID_RULE}", "invalid_id")
    if not isinstance(ui_messages, list) or not ui_messages:
        raise bad_request("'messages' must be a non-empty array", "missing_messages")
    if data.get("messageId") is not None and not isinstance(data["messageId"], str):
        raise bad_request("'messageId' must be a string", "invalid_message_id")
    if data.get("trigger") is not None and not isinstance(data["trigger"], str):
        raise bad_request("'trigger' must be a string", "invalid_trigger")
    body = {k: v for k, v in data.items() if k not in _BODY_KEYS}
    body["messages"] = chat_messages(ui_messages)
    if not body["messages"]:  # (e.g. only empty or step-start parts: nothing to ask)
        raise bad_request("'messages' hold no text, file or tool part to send", "missing_messages")
    handle = await start_generation(gw, owner, body, "chat")
    routes = request.app.state.stream_routes
    options = routes.view_options
    return gw.streams.aisdk_response(  # type: ignore[no-any-return]
        handle.id,
        chat_id=chat_id,
        message_id=ui_message_id(data),
        keepalive_s=gw.settings.keepalive_s,
        max_frame_bytes=options.max_frame_bytes,
        chat_ttl_s=options.chat_ttl_s,
        transient=not workflow_body(data),
    )


def wants_detach(request: Request) -> bool:
    return request.headers.get("x-tokenwire-detach", "").strip().lower() in ("1", "true")


async def detached_chat_completions(request: Request, body: bytes) -> Response:
    """``POST /v1/chat/completions`` with ``X-Tokenwire-Detach: 1``: a detached generation
    (as ``POST /v1/streams``) answered in OpenAI's chunk format through the openai view;
    ``X-Tokenwire-Stream`` names the stream, to resume at
    ``GET /v1/streams/{id}/events?format=openai`` (``Last-Event-ID`` or ``?startIndex=``)."""
    gw = _gw(request)
    owner = gw.auth.owner(request.headers, request.query_params)
    gw.require_started()
    data = json_object(body)
    if data.get("stream") is not True:
        raise bad_request('X-Tokenwire-Detach needs "stream": true', "detach_needs_stream")
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty array", "missing_messages")
    # (a chat-completions body; its stream_options as sent: the openai view ends with a
    # ``choices: []`` usage chunk only if the client asked for usage, as OpenAI's own does)
    handle = await start_generation(gw, owner, data, "chat", ask_usage=False)
    routes = request.app.state.stream_routes
    info, row = await gw.streams.lookup(handle.id)
    ops, cursor = await read_log(gw.streams, handle.id, info, row)
    headers = {"x-tokenwire-stream": handle.id}
    try:
        await _until_past_start(ops, cursor)
    except BaseException:
        if cursor is not None:
            await cursor.aclose()
        raise
    refused = _refused(ops)
    if refused is not None:  # the upstream refused the request: answer as it did
        if cursor is not None:
            await cursor.aclose()
        status, error = refused
        etype = error.get("type")
        body = error_body(
            str(error.get("message")),
            etype if isinstance(etype, str) else "upstream_error",
            error.get("code"),
        )
        return Response(body, status, headers, media_type="application/json")
    view = make_view("openai", handle.id, handle.created_at, routes.view_options)()
    frames = [f for op in ops for f in view.feed(op)]
    return ViewResponse(  # type: ignore[return-value]
        cursor,
        view,
        frames,
        sse_headers(headers),
        metrics=gw.metrics,
        keepalive_s=gw.settings.keepalive_s,
    )


_REFUSAL_WAIT_S = 3.0


async def _until_past_start(ops: list[EncodedOp], cursor: Cursor | None) -> None:
    """Read on (into ``ops``) until the log holds more than ``message.start``, for at most
    ``_REFUSAL_WAIT_S``: an upstream's error status comes before its first token, so the
    detached route can answer with it, as the upstream (and OpenAI) would. The first token is
    never later for it (it goes out with the headers); a slower one is streamed as usual, the
    headers sent at the bound (short of the common 5 s first-byte timeouts)."""
    if cursor is None:
        return
    deadline = time.monotonic() + _REFUSAL_WAIT_S
    while not cursor.done and all(op.type == "message.start" for op in ops):
        left = deadline - time.monotonic()
        if left <= 0:
            return
        ops.extend(await cursor.read(left))


def _refused(ops: list[EncodedOp]) -> tuple[int, dict[str, Any]] | None:
    """(status, error) when the stream failed on an upstream HTTP error status before any
    output (``message.start`` then ``message.end``)."""
    if len(ops) != 2 or ops[1].type != "message.end":
        return None
    error = ops[1].op.error  # type: ignore[union-attr]
    status = error.get("status") if isinstance(error, dict) else None
    if isinstance(status, int) and 400 <= status <= 599:
        return status, error
    return None


__all__ = ["aisdk_chat", "chat_messages", "detached_chat_completions", "wants_detach"]
