"""A deterministic mock model server (``tokenwire mock``) for demos, tests and benchmarks."""

from tokenwire.mock.app import MockStats, create_mock_app
from tokenwire.mock.scenarios import (
    REASONING_STYLES,
    SCENARIOS,
    TOOL_STYLES,
    Settings,
    agent_answer,
    agent_call,
    markdown_tokens,
    tokenize,
    tool_calls,
)

__all__ = [
    "REASONING_STYLES",
    "SCENARIOS",
    "TOOL_STYLES",
    "MockStats",
    "Settings",
    "agent_answer",
    "agent_call",
    "create_mock_app",
    "markdown_tokens",
    "tokenize",
    "tool_calls",
]
