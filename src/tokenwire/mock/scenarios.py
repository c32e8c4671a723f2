"""The mock model's answers: deterministic part sequences per scenario (no I/O, no clock).

Each scenario is a function of the settings and returns an iterator of producer parts.
The same seed, model and token limit always give the same parts.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable, Iterator
from typing import Literal, get_args

import msgspec

from tokenwire.producer.parts import (
    Finish,
    Part,
    RawDelta,
    Reasoning,
    StreamError,
    Text,
    ToolCallDelta,
    ToolCallStart,
    Truncate,
)

ReasoningStyle = Literal["reasoning_content", "reasoning", "think-tags"]
ToolStyle = Literal["openai", "gemini", "ollama"]
REASONING_STYLES: tuple[str, ...] = get_args(ReasoningStyle)
TOOL_STYLES: tuple[str, ...] = get_args(ToolStyle)

DEFAULT_TOKENS = 256
REASONING_TOKENS = 48
PREFIX_TOKENS = 24  # text sent before mock-error / mock-truncated give up


class Settings(msgspec.Struct, kw_only=True):
    """Everything that determines one mock answer."""

    seed: int = 0
    limit: int | None = None  # the request's max_tokens
    stream: bool = True
    reasoning_style: ReasoningStyle = "reasoning_content"
    tool_style: ToolStyle = "openai"


# Word-ish pieces: a word or a run of punctuation with its leading blanks, or newlines.
_TOKEN = re.compile(r"[ \t]*\w+|[ \t]*[^\w\s]+|\n+|[ \t]+")

_WORDS = [
    "stream",
    "token",
    "latency",
    "buffer",
    "socket",
    "client",
    "server",
    "model",
    "answer",
    "delta",
    "chunk",
    "replay",
    "cursor",
    "snapshot",
    "window",
    "browser",
    "worker",
    "message",
    "block",
    "reasoning",
    "tool",
    "request",
    "response",
    "bytes",
    "frame",
    "event",
    "queue",
    "signal",
    "retry",
    "budget",
    "cache",
    "index",
    "order",
    "state",
    "quick",
    "steady",
    "small",
    "large",
    "every",
    "each",
    "simple",
    "careful",
    "exact",
    "partial",
    "complete",
    "remote",
    "local",
    "shared",
]
_LANGS = ("python", "javascript", "rust", "go")
_CITIES = ("Paris", "Lisbon", "Osaka", "Nairobi", "Lima", "Oslo", "Hanoi", "Quebec")
_ZONES = ("Europe/Paris", "Asia/Tokyo", "America/Lima", "Africa/Nairobi", "Europe/Oslo")


def tokenize(text: str) -> list[str]:
    """Split text into token-sized pieces that concatenate back to ``text``."""
    return _TOKEN.findall(text)


def _sentence(rng: random.Random, low: int, high: int) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(low, high))]
    return " ".join(words).capitalize() + "."


def _section(rng: random.Random, number: int) -> str:
    title = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 4))).title()
    paragraph = " ".join(_sentence(rng, 6, 14) for _ in range(rng.randint(2, 4)))
    items = "".join(f"- {_sentence(rng, 3, 7)}\n" for _ in range(rng.randint(2, 4)))
    lang = rng.choice(_LANGS)
    factor = rng.randint(2, 9)
    code = f"```{lang}\nresult_{number} = value * {factor}\nprint(result_{number})\n```\n"
    closing = _sentence(rng, 5, 12)
    return f"## {title}\n\n{paragraph}\n\n{items}\n{code}\n{closing}\n\n"


def markdown_tokens(seed: int) -> Iterator[str]:
    """An endless deterministic Markdown document: headings, paragraphs, lists, code blocks."""
    rng = random.Random(seed)
    for number in itertools.count(1):
        yield from tokenize(_section(rng, number))


def reasoning_tokens(seed: int) -> list[str]:
    rng = random.Random(seed ^ 0x5EED)
    text = "Let me think about this. " + " ".join(_sentence(rng, 5, 10) for _ in range(8))
    return tokenize(text)[:REASONING_TOKENS]


def _text(seed: int, count: int) -> Iterator[Part]:
    return itertools.islice(markdown_tokens(seed), count)


def plain(s: Settings) -> Iterator[Part]:
    yield from _text(s.seed, s.limit or DEFAULT_TOKENS)


def reasoning(s: Settings) -> Iterator[Part]:
    thoughts = reasoning_tokens(s.seed)
    answer = max(1, (s.limit or DEFAULT_TOKENS) - len(thoughts))
    if s.reasoning_style == "think-tags":
        yield Text("<think>")
        yield Text("\n")
        for token in thoughts:
            yield Text(token)
        yield Text("\n")
        yield Text("</think>")
        yield Text("\n\n")
    else:
        for token in thoughts:
            yield Reasoning(token)
    yield from _text(s.seed, answer)


def tool_calls(seed: int) -> list[tuple[str, str, str]]:
    """The two (id, name, arguments JSON) calls of ``mock-tools`` for a seed."""
    rng = random.Random(seed ^ 0x7001)
    weather = {"city": rng.choice(_CITIES), "unit": rng.choice(("celsius", "fahrenheit"))}
    clock = {"timezone": rng.choice(_ZONES), "format": "24h"}
    return [
        (f"call_{rng.getrandbits(40):010x}", "get_weather", msgspec.json.encode(weather).decode()),
        (f"call_{rng.getrandbits(40):010x}", "get_time", msgspec.json.encode(clock).decode()),
    ]


def _fragments(arguments: str, rng: random.Random) -> Iterator[str]:
    start = 0
    while start < len(arguments):
        end = start + rng.randint(3, 7)
        yield arguments[start:end]
        start = end


def tools(s: Settings) -> Iterator[Part]:
    calls = tool_calls(s.seed)
    if s.stream and s.tool_style != "openai":
        # Both quirky servers send each call whole; Gemini leaves out `index`,
        # Ollama numbers every call 0.
        for call_id, name, arguments in calls:
            entry: dict[str, object] = {
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
            if s.tool_style == "ollama":
                entry = {"index": 0, **entry}
            yield RawDelta({"tool_calls": [entry]})
    else:
        rng = random.Random(s.seed ^ 0xF4A9)
        for call_id, name, arguments in calls:
            yield ToolCallStart(call_id, name)
            for fragment in _fragments(arguments, rng):
                yield ToolCallDelta(fragment)
    yield Finish("tool_calls")


def error(s: Settings) -> Iterator[Part]:
    yield from _text(s.seed, PREFIX_TOKENS)
    yield StreamError("The mock model failed mid-stream.", type="server_error", code="mock_error")


def truncated(s: Settings) -> Iterator[Part]:
    yield from _text(s.seed, PREFIX_TOKENS)
    yield Truncate()


HTML_ANSWER = (
    'Here is an image: <img src=x onerror="window.__xss=1"> and a script: '
    "<script>window.__xss=2</script>\n\n"
    "A **bold** claim, a [link](javascript:window.__xss=3) and `<b>code</b>`.\n"
)


def html(s: Settings) -> Iterator[Part]:
    yield from tokenize(HTML_ANSWER)


SCENARIOS: dict[str, Callable[[Settings], Iterator[Part]]] = {
    "mock": plain,
    "mock-reasoning": reasoning,
    "mock-tools": tools,
    "mock-error": error,
    "mock-truncated": truncated,
    "mock-html": html,
}
