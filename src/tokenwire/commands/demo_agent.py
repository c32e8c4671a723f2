"""``tokenwire demo``'s agent: the host-side produce function for the ``mock-agent`` model.

It is written only with the public API (``StreamWriter`` plus the gateway's ``StreamRequest``)
and is the main example of docs/embedding.md: a status line updated in place, transient
progress, the first model call (reasoning + a ``get_weather`` tool call), the host's toy tool,
its result, and the second model call (a new step: text citing its sources).

Per-request options, in a body member the upstream never sees:
``"agent": {"pause_ms": 150, "flaky": true}`` — the pause between the search's status updates,
and a first attempt of the model call that breaks off mid-stream, superseded by a retry.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import msgspec

from tokenwire.errors import StreamFailed
from tokenwire.gateway.producer import Produce, ProducerFactory, StreamRequest
from tokenwire.streams import StreamWriter

SEARCHED = ("weather.example", "forecast.example", "almanac.example")
"""The (pretend) sites the agent searches before it asks the model."""
FLAKY_CUT_BYTES = 700
"""A flaky first attempt's upstream response is cut after this many bytes."""
DEFAULT_PAUSE_S = 0.15
_SKIES = ("sunny", "cloudy", "rain showers", "fog", "clear")


def get_weather(arguments: str) -> dict[str, Any]:
    """The toy tool: a deterministic fake forecast for ``{"city": ..., "days": ...}``."""
    try:
        args = msgspec.json.decode(arguments)
    except msgspec.DecodeError:
        args = None
    if not isinstance(args, dict) or not isinstance(args.get("city"), str):
        return {"error": 'expected arguments {"city": str}'}
    city = args["city"]
    days = args.get("days") if type(args.get("days")) is int else 1
    seed = int.from_bytes(hashlib.sha256(city.encode()).digest()[:4], "big")
    forecast = [
        {
            "day": day,
            "high_c": (seed >> (day * 3)) % 25 - 2,
            "sky": _SKIES[(seed >> (day * 5)) % len(_SKIES)],
        }
        for day in range(max(1, min(days, 7)))
    ]
    return {"city": city, "unit": args.get("unit", "celsius"), "forecast": forecast}


def agent_producer(pause_s: float = DEFAULT_PAUSE_S) -> ProducerFactory:
    """``create_app(producers={"mock-agent": agent_producer()})``: a factory giving each
    ``POST /v1/streams`` its produce function."""

    def factory(request: StreamRequest) -> Produce:
        options = request.body.pop("agent", None)
        options = options if isinstance(options, dict) else {}
        pause = options.get("pause_ms")
        pause = pause_s if type(pause) not in (int, float) else max(0.0, pause / 1000)
        flaky = options.get("flaky") is True

        async def answer(w: StreamWriter) -> None:
            # A status line, updated in place (readers see one block with the latest value),
            # with transient progress beside it (live readers only, never stored).
            await w.data("status", "searching…", id="status")
            for done, site in enumerate(SEARCHED, 1):
                await asyncio.sleep(pause)
                await w.data("progress", {"site": site, "done": done}, transient=True)
                await w.data("status", f"searching… {done} of {len(SEARCHED)}", id="status")
            # The first model call, in a step of its own: reasoning, then the tool call.
            await w.step()
            if flaky:  # an attempt that breaks off mid-stream: its blocks are superseded
                try:
                    await w.pipe(_cut(request.call(), FLAKY_CUT_BYTES), request.format)
                except StreamFailed:
                    await w.supersede()
            first = await request.pipe(w)
            messages = list(request.body.get("messages") or [])
            calls = []
            for call in first.tool_calls:
                await w.data("status", f"running {call.name}…", id="status")
                result = get_weather(call.arguments)
                await w.tool_result(call.id or "", result, name=call.name)
                calls.append((call, msgspec.json.encode(result).decode()))
            if not calls:  # the model answered without the tool: that is the answer
                await w.data("status", "done", id="status")
                return
            messages.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": call.arguments},
                        }
                        for call, _ in calls
                    ],
                }
            )
            messages += [
                {"role": "tool", "tool_call_id": call.id, "content": output}
                for call, output in calls
            ]
            # The second model call: pipe starts a new step by itself.
            await request.pipe(w, {**request.body, "messages": messages})
            cited = sum(1 for b in w.message.blocks if b.type == "source")
            await w.data("status", f"done: {cited} sources cited", id="status")

        return answer

    return factory


async def _cut(exchange: Any, limit: int) -> Any:
    """The upstream response's bytes, cut off after ``limit`` (a dropped connection)."""
    async with exchange as response:
        sent = 0
        async for chunk in response.aiter_raw():
            if sent + len(chunk) >= limit:
                yield chunk[: limit - sent]
                return
            sent += len(chunk)
            yield chunk


__all__ = ["agent_producer", "get_weather"]
