"""A message's ``usage`` (as its upstream reported it: chat completions, Responses or
Anthropic spelling) in the spelling of the view that shows it. Counts that are not
non-negative integers count as 0: usage comes from upstreams, and one odd value must not
stop a view."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def _count(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, float) and value == value and 0 <= value < 2**63:
        return int(value)
    return 0


def _details(usage: dict[str, Any], *names: str) -> dict[str, Any]:
    for name in names:
        value = usage.get(name)
        if isinstance(value, dict):
            return value
    return {}


@dataclass(frozen=True, slots=True)
class UsageCounts:
    input: int
    output: int
    total: int
    cached: int
    cache_write: int
    reasoning: int


def usage_counts(usage: Any) -> UsageCounts | None:
    """The counts of ``usage`` in any of the three spellings; ``None`` when there is none."""
    if not isinstance(usage, dict) or not usage:
        return None
    prompt = _count(usage.get("prompt_tokens")) or _count(usage.get("input_tokens"))
    completion = _count(usage.get("completion_tokens")) or _count(usage.get("output_tokens"))
    # Anthropic counts cache reads and writes apart from input_tokens; OpenAI's input_tokens
    # includes its cached tokens: the sum, so cached_tokens never exceeds it.
    read = _count(usage.get("cache_read_input_tokens"))
    created = _count(usage.get("cache_creation_input_tokens"))
    if (read or created) and "prompt_tokens" not in usage:
        prompt += read + created
    prompt_details = _details(usage, "prompt_tokens_details", "input_tokens_details")
    output_details = _details(usage, "completion_tokens_details", "output_tokens_details")
    return UsageCounts(
        input=prompt,
        output=completion,
        total=_count(usage.get("total_tokens")) or prompt + completion,
        cached=_count(prompt_details.get("cached_tokens")) or read,
        cache_write=_count(prompt_details.get("cache_write_tokens")) or created,
        reasoning=_count(output_details.get("reasoning_tokens")),
    )


def responses_usage(usage: Any) -> dict[str, Any] | None:
    """``usage`` in the Responses API's spelling."""
    counts = usage_counts(usage)
    if counts is None:
        return None
    return {
        "input_tokens": counts.input,
        "input_tokens_details": {
            "cached_tokens": counts.cached,
            "cache_write_tokens": counts.cache_write,
        },
        "output_tokens": counts.output,
        "output_tokens_details": {"reasoning_tokens": counts.reasoning},
        "total_tokens": counts.total,
    }


def chat_usage(usage: Any) -> dict[str, Any] | None:
    """``usage`` in chat completions' spelling: as it is when it already is (all its fields
    kept), else converted (from a Responses or Anthropic upstream)."""
    if isinstance(usage, dict) and ("prompt_tokens" in usage or "completion_tokens" in usage):
        return usage
    counts = usage_counts(usage)
    if counts is None:
        return None
    return {
        "prompt_tokens": counts.input,
        "completion_tokens": counts.output,
        "total_tokens": counts.total,
        "prompt_tokens_details": {"cached_tokens": counts.cached},
        "completion_tokens_details": {"reasoning_tokens": counts.reasoning},
    }
