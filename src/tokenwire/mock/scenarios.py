"""The mock model's answers: deterministic part sequences per scenario (no I/O, no clock).

Each scenario is a function of the settings and returns an iterator of producer parts.
The same seed, model and token limit always give the same parts. ``continue_from`` gives the
rest of an answer after a partial assistant message (the mock's continuation support).
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
    Usage,
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
    tool_results: int = 0  # tool results in the conversation (mock-agent's second call: >= 1)


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


def _thinking(thoughts: list[str], style: ReasoningStyle) -> Iterator[Part]:
    """Reasoning tokens in the app's style: a reasoning field, or ``<think>`` in the content."""
    if style == "think-tags":
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


def reasoning(s: Settings) -> Iterator[Part]:
    thoughts = reasoning_tokens(s.seed)
    answer = max(1, (s.limit or DEFAULT_TOKENS) - len(thoughts))
    yield from _thinking(thoughts, s.reasoning_style)
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


# -- mock-agent: a tool round, then an answer citing its sources ------------------------------
_AGENT_PLACES = (
    ("Zürich", "zurich"),
    ("Kraków", "krakow"),
    ("São Paulo", "sao-paulo"),
    ("Reykjavík", "reykjavik"),
    ("Malmö", "malmo"),
    ("Besançon", "besancon"),
)
_SKIES = ("sunny ☀️", "cloudy ☁️", "windy 🌬️", "clear 🌙")


class Citation(msgspec.Struct, frozen=True):
    """A cited span of mock-agent's answer: code-point offsets into the message content."""

    start: int
    end: int
    url: str
    title: str


def _agent_place(seed: int) -> tuple[str, str]:
    return random.Random(seed ^ 0xA6E7).choice(_AGENT_PLACES)


def agent_call(seed: int) -> tuple[str, str, str]:
    """mock-agent's tool call for a seed: (id, name, arguments JSON)."""
    rng = random.Random(seed ^ 0xCA11)
    city, _ = _agent_place(seed)
    arguments = {"city": city, "unit": "celsius", "days": 2}
    return (
        f"call_{rng.getrandbits(40):010x}",
        "get_weather",
        msgspec.json.encode(arguments).decode(),
    )


def agent_answer(seed: int) -> tuple[str, list[Citation]]:
    """mock-agent's final answer for a seed: the text, and the spans it cites."""
    rng = random.Random(seed ^ 0xC17E)
    city, slug = _agent_place(seed)
    now = f"Right now it is {rng.randint(-5, 31)} °C and {rng.choice(_SKIES)} in {city}."
    rain, low = rng.randint(1, 19), rng.randint(-9, 9)
    later = f"Tomorrow brings {rain} mm of rain 🌧️ and a low of {low} °C."
    text = f"{now} {later} Pack an umbrella — «better safe than sorry»."
    citations = [
        Citation(0, len(now), f"https://weather.example/{slug}/now", f"{city}: current weather"),
        Citation(
            len(now) + 1,
            len(now) + 1 + len(later),
            f"https://forecast.example/{slug}/tomorrow",
            f"{city}: tomorrow's forecast",
        ),
    ]
    return text, citations


def agent_thoughts(seed: int) -> list[str]:
    city, _ = _agent_place(seed)
    return tokenize(
        "The user asks about the weather. I should call get_weather with "
        f"{city} and cite the forecast sources in my answer."
    )


def agent(s: Settings) -> Iterator[Part]:
    if s.tool_results == 0:
        # First call: think, then ask the host to run the tool.
        yield from _thinking(agent_thoughts(s.seed), s.reasoning_style)
        call_id, name, arguments = agent_call(s.seed)
        yield ToolCallStart(call_id, name)
        for fragment in _fragments(arguments, random.Random(s.seed ^ 0xF4A9)):
            yield ToolCallDelta(fragment)
        yield Finish("tool_calls")
        return
    # Second call (the tool's result is in the conversation): the answer, each citation sent
    # with the token that completes its span (as OpenAI's `annotations` in a delta).
    text, citations = agent_answer(s.seed)
    position = 0
    pending = list(citations)
    for token in tokenize(text):
        position += len(token)
        done = [c for c in pending if c.end <= position]
        if not done:
            yield Text(token)
            continue
        pending = [c for c in pending if c.end > position]
        notes = [
            {
                "type": "url_citation",
                "url_citation": {
                    "start_index": c.start,
                    "end_index": c.end,
                    "url": c.url,
                    "title": c.title,
                },
            }
            for c in done
        ]
        yield RawDelta({"content": token, "annotations": notes})
    yield Finish("stop")


SCENARIOS: dict[str, Callable[[Settings], Iterator[Part]]] = {
    "mock": plain,
    "mock-reasoning": reasoning,
    "mock-tools": tools,
    "mock-error": error,
    "mock-truncated": truncated,
    "mock-html": html,
    "mock-agent": agent,
}


# -- Continuation ----------------------------------------------------------------------------
class NotAPrefix(ValueError):
    """The partial assistant message is not a prefix of the answer the mock would give."""


def answer_parts(parts: Iterator[Part], limit: int | None) -> list[Part]:
    """The whole answer as the producer would send it: cut after ``limit`` tokens (counted as
    the producer counts them), then ``Finish("length")``, so a continuation reports the
    uninterrupted answer's finish reason."""
    out: list[Part] = []
    tokens = 0
    for part in parts:
        out.append(part)
        if isinstance(part, str | Text | Reasoning | ToolCallDelta | RawDelta):
            tokens += 1
            if limit is not None and tokens >= limit:
                out.append(Finish("length"))
                break
        elif isinstance(part, StreamError | Truncate):
            break
    return out


def _streamed_text(part: Part) -> tuple[str, str] | None:
    """(``"reasoning"`` or ``"content"``, the text) of a part that streams text, else None."""
    if isinstance(part, str):
        return "content", str(part)
    if isinstance(part, Text):
        return "content", part.text
    if isinstance(part, Reasoning):
        return "reasoning", part.text
    if isinstance(part, RawDelta):
        content = part.delta.get("content")
        if isinstance(content, str) and content and "tool_calls" not in part.delta:
            return "content", content
    return None


def _rest_of(part: Part, rest: str) -> Part:
    """``part`` with only its last ``rest`` characters (the cut fell inside it)."""
    if isinstance(part, Reasoning):
        return Reasoning(rest)
    if isinstance(part, RawDelta):
        return RawDelta({**part.delta, "content": rest}, part.finish_reason)
    return Text(rest)


def continue_from(answer: list[Part], reasoning: str, content: str) -> list[Part]:
    """The parts that follow a partial assistant message (its ``reasoning`` and ``content``
    so far) in ``answer``, so that partial + continuation == the uninterrupted answer.

    The cut is in characters (code points) and may fall inside a token, a multi-byte
    character's token or a ``<think>`` tag; it may not fall inside a tool call. Raises
    ``NotAPrefix`` (with where the texts part ways) when the partial is no such prefix.
    """
    have = {"reasoning": reasoning, "content": content}
    used = {"reasoning": 0, "content": 0}

    def consumed() -> bool:
        return used["reasoning"] == len(reasoning) and used["content"] == len(content)

    for i, part in enumerate(answer):
        if consumed():
            return answer[i:]
        streamed = _streamed_text(part)
        if streamed is None:
            if isinstance(part, Finish | Usage):
                continue
            raise NotAPrefix(
                "the answer has a tool call, an error or its end where the partial message "
                f"still has text (reasoning from character {used['reasoning']}, content from "
                f"character {used['content']})"
            )
        field, text = streamed
        wanted, at = have[field], used[field]
        if wanted.startswith(text, at):
            used[field] = at + len(text)
            continue
        other = "content" if field == "reasoning" else "reasoning"
        tail = wanted[at:]
        if text.startswith(tail) and used[other] == len(have[other]):
            return [_rest_of(part, text[len(tail) :]), *answer[i + 1 :]]
        differs = at + _common(tail, text)
        raise NotAPrefix(f"its {field} differs from the answer at character {differs}")
    if consumed():
        return []
    raise NotAPrefix(
        f"it is longer than the answer (reasoning: {len(reasoning)} characters, "
        f"content: {len(content)})"
    )


def _common(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
