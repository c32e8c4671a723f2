"""Every recorded quirk in tests/fixtures decodes into the message a reader expects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tokenwire.protocol import apply_ops, assemble_response, decode_op

FIXTURES = Path(__file__).parent / "fixtures"

TEXT = "text"
# fixture -> (status, finish_reason, [(type, text-or-arguments, extra attrs)], error type/None)
EXPECTED: dict[str, tuple] = {
    "openai_text.sse": ("completed", "stop", [("text", "Hello, world! ✓ café", {})]),
    "openai_refusal.sse": (
        "completed",
        "stop",
        [("refusal", "I'm sorry, I can't help with that.", {})],
    ),
    "deepseek_reasoning_content.sse": (
        "completed",
        "stop",
        [("reasoning", "The user greets me; reply politely.", {}), ("text", "Hi there!", {})],
    ),
    "vllm_reasoning.sse": (
        "completed",
        "stop",
        [("reasoning", "Two plus two is four.", {}), ("text", "4", {})],
    ),
    "openrouter_reasoning_details.sse": (
        "completed",
        "stop",
        [("reasoning", "Consider the question.", {}), ("text", "Paris.", {})],
    ),
    "think_tags_split.sse": (
        "completed",
        "stop",
        [
            ("reasoning", "Count the rs: three.", {}),
            ("text", "There are 3 r's; a < b stays <b>text</b>.", {}),
        ],
    ),
    "think_tags_variants.sse": (
        "completed",
        "stop",
        [
            ("text", "Sure. ", {}),
            ("reasoning", "plan it", {}),
            ("text", "Step one. ", {}),
            ("reasoning", "check", {}),
            ("text", "Done.", {}),
        ],
    ),
    "openai_parallel_tools.sse": (
        "completed",
        "tool_calls",
        [
            ("tool_call", '{"city": "Paris"}', {"id": "call_Paris1", "name": "get_weather"}),
            ("tool_call", '{"city": "Tokyo"}', {"id": "call_Tokyo2", "name": "get_weather"}),
        ],
    ),
    "gemini_tools_no_index.sse": (
        "completed",
        "tool_calls",
        [
            ("text", "Checking both cities.", {}),
            ("tool_call", '{"city":"Paris"}', {"id": "function-call-1", "name": "get_weather"}),
            ("tool_call", '{"city":"Tokyo"}', {"id": "function-call-2", "name": "get_weather"}),
        ],
    ),
    "ollama_tools_same_index.sse": (
        "completed",
        "tool_calls",
        [
            ("tool_call", '{"city":"Paris"}', {"id": "call_a1b2c3", "name": "get_weather"}),
            ("tool_call", '{"tz":"Asia/Tokyo"}', {"id": "call_d4e5f6", "name": "get_time"}),
        ],
    ),
    "openai_include_usage.sse": ("completed", "stop", [("text", "Done.", {})]),
    "error_mid_stream.sse": ("failed", "error", [("text", "Partial answer", {})]),
    "finish_without_done.sse": ("completed", "length", [("text", "Complete answer.", {})]),
    "truncated.sse": ("failed", None, [("text", "Cut off", {})]),
    "openai_n2_choices.sse": (
        "completed",
        "stop",
        [("text", "Red apple", {}), ("text", "Blue sky", {"choice": 1})],
    ),
    "crlf_comments_bom.sse": ("completed", "stop", [("text", "line one\nline two", {})]),
    "cr_multiline_data.sse": ("completed", "stop", [("text", "multi-line", {})]),
    "non_streamed.json": (
        "completed",
        "tool_calls",
        [
            ("reasoning", "Need weather data.", {}),
            ("text", "Calling the tool.", {}),
            ("tool_call", '{"city":"Oslo"}', {"id": "call_0_abc", "name": "get_weather"}),
        ],
    ),
    "non_streamed_error.json": ("failed", None, []),
    "openrouter_image.sse": (
        "completed",
        "stop",
        [
            ("text", "Here is a cat:", {}),
            ("image", None, {"url": "data:image/png;base64,iVBORw0KGgo="}),
        ],
    ),
    "openai_annotations.sse": (
        "completed",
        "stop",
        [
            ("text", "The Eiffel Tower is 330 m tall [1].", {}),
            (
                "source",
                None,
                {
                    "url": "https://example.org/eiffel",
                    "title": "Eiffel Tower facts",
                    # start_index/end_index of the url_citation: "[1]" in text block 0
                    "span": {"block": 0, "start": 31, "end": 34},
                },
            ),
        ],
    ),
    "openrouter_reasoning_signature.sse": (
        "completed",
        "stop",
        [
            ("reasoning", "Check the units.", {"signature": "ErUBCkYIBRgCIkB+/sig/with==padding"}),
            ("reasoning", "", {"encrypted": "EmwKAhgBEgy3va3pzix/LafPsn4a", "redacted": True}),
            ("text", "3 km.", {}),
        ],
    ),
    "openrouter_reasoning_encrypted.sse": (
        "completed",
        "stop",
        [
            (
                "reasoning",
                "**Planning** the answer",
                {"encrypted": "gAAAAABoEnc+/rypted_content=="},
            ),
            ("text", "Done.", {}),
        ],
    ),
    "perplexity_citations.sse": (
        "completed",
        "stop",
        [
            ("text", "Rust 1.0 shipped in 2015[1]. It is fast[2].", {}),
            ("source", None, {"url": "https://example.org/rust-1-0", "title": None}),
            ("source", None, {"url": "https://example.org/blog", "title": None}),
        ],
    ),
    "mistral_content_parts.sse": (
        "completed",
        "stop",
        [("reasoning", "Think first.", {}), ("text", "Answer.", {})],
    ),
    "legacy_function_call.sse": (
        "completed",
        "function_call",
        [("tool_call", '{"q":"x"}', {"id": None, "name": "lookup"})],
    ),
    "unknown_fields_and_garbage.sse": ("completed", "stop", [("text", "ok!", {})]),
    # chat completions from gpt-oss via llama.cpp (harmony markup) and Azure
    "harmony_llamacpp_tool.sse": (
        "completed",
        "tool_calls",  # (the server said "stop": a harmony call ends with <|call|>)
        [
            ("reasoning", "User asks the weather in Paris. Use get_weather.", {}),
            ("tool_call", '{"city":"Paris"}', {"id": None, "name": "get_weather"}),
        ],
    ),
    "harmony_llamacpp_final.sse": (
        "completed",
        "stop",
        [
            ("reasoning", "Simple greeting; answer briefly.", {}),
            ("text", "Hello! 2 < 3 and a<|x|>b stay text.", {}),
        ],
    ),
    "azure_content_filter.sse": ("completed", "stop", [("text", "Hello from Azure.", {})]),
    # OpenAI Responses
    "responses_reasoning_citation.sse": (
        "completed",
        "stop",
        [
            (
                "reasoning",
                (
                    "**Finding the height**\n\nThe user asks how tall the tower is.\n\n**Ci"
                    "ting a source**"
                ),
                {"encrypted": "gAAAAABor0A1Zr3Jc2m8y2kX0VJb3Yl1e8w=="},
            ),
            ("text", "The Eiffel Tower is 330 m tall (toureiffel.paris) — café ✓.", {}),
            (
                "source",
                None,
                {
                    "url": "https://www.toureiffel.paris/en/the-monument/key-figures?utm_source=openai",
                    "title": "The Eiffel Tower in figures",
                    "span": {"block": 1, "start": 32, "end": 48},
                },
            ),
        ],
    ),
    "responses_function_calls.sse": (
        "completed",
        "tool_calls",
        [
            (
                "tool_call",
                '{"location":"Paris, France"}',
                {"id": "call_12345xyz", "name": "get_weather"},
            ),
            (
                "tool_call",
                '{"location":"Bogotá, Colombia"}',
                {"id": "call_67890abc", "name": "get_weather"},
            ),
        ],
    ),
    "responses_incomplete.sse": ("completed", "length", [("text", '{"val', {})]),
    "responses_failed.sse": ("failed", None, [("text", "Partial answer", {})]),
    "responses_error_event.sse": ("failed", None, [("text", "Hi", {})]),
    "responses_hosted_tools.sse": (
        "completed",
        "stop",
        [
            (
                "data",
                None,
                {
                    "name": "web_search_call",
                    "id": "ws_67c9fa0502748190b7dd390736892e100be649c1a5ff9609",
                    "value": {
                        "id": "ws_67c9fa0502748190b7dd390736892e100be649c1a5ff9609",
                        "type": "web_search_call",
                        "status": "completed",
                        "action": {"type": "search", "query": "positive news today"},
                    },
                },
            ),
            ("text", "A new sea turtle sanctuary opened.", {}),
            (
                "source",
                None,
                {
                    "url": "https://www.example.com/turtles",
                    "title": "Turtle sanctuary",
                    "span": {"block": 1, "start": 2, "end": 26},
                },
            ),
            (
                "data",
                None,
                {
                    "name": "code_interpreter_call",
                    "id": "ci_1",
                    "value": {
                        "id": "ci_1",
                        "type": "code_interpreter_call",
                        "status": "completed",
                        "code": "print(1+1)",
                        "container_id": "cntr_1",
                        "outputs": [{"type": "logs", "logs": "2\n"}],
                    },
                },
            ),
        ],
    ),
    "responses_body.json": (
        "completed",
        "tool_calls",
        [
            ("reasoning", "Describing the picture.", {"encrypted": "gAAAAABoIPOD"}),
            ("text", "The image depicts a scenic landscape with a wooden boardwalk.", {}),
            ("tool_call", '{"caption":"boardwalk"}', {"id": "call_1", "name": "save_caption"}),
        ],
    ),
    # Anthropic Messages
    "anthropic_tool_use.sse": (
        "completed",
        "tool_calls",
        [
            ("text", "I'll check the current weather in Paris for you.", {}),
            (
                "tool_call",
                '{"location": "Paris"}',
                {"id": "toolu_01NRLabsLyVHZPKxbKvkfSMn", "name": "get_weather"},
            ),
        ],
    ),
    "anthropic_server_tool_result.sse": (
        "completed",
        "tool_calls",
        [
            ("tool_call", "{}", {"id": "svu_web_001", "name": "web_search", "server": True}),
            ("tool_call", '{"query":"test"}', {"id": "tu_client_001", "name": "ask_internal_tool"}),
            (
                "tool_result",
                None,
                {
                    "call_id": "svu_web_001",
                    "name": "web_search",
                    "output": (
                        '[{"type":"web_search_result","url":"https://example.com","title":"Exam'
                        'ple Result","encrypted_content":"enc_abc123","page_age":null}]'
                    ),
                },
            ),
            (
                "tool_result",
                None,
                {
                    "call_id": "svu_code_001",
                    "name": None,
                    "output": (
                        '{"type":"code_execution_result","return_code":0,"stdout":"hello","stde'
                        'rr":"","content":[]}'
                    ),
                },
            ),
        ],
    ),
    "anthropic_thinking.sse": (
        "completed",
        "stop",
        [
            (
                "reasoning",
                'The user has simply said "hey" as a greeting.',
                {
                    "signature": (
                        "ErUBCkYIARgCIkACJWxzySUOJzOlZ8WFdgQSbeQA3H1i5rfkKLV9eC4HN6Jcnrlw1NcnPR"
                        "IPaTs9jLF3rllsfoidjZapJ+5MLwjVEgzTfQ6r9tDZvyBP0nEaDHWRqRWP7CoPOc+ksSIw"
                        "SlxHzaMbnyXGoiNmCj9thC3N6EDMpemJPx3UZqDtrgmKZgQMMzNzNsh9IxgvtuYKKh1PxX"
                        "UmWexqlckSVETQj3LbHLK/nwEK+bz0+2b/pA=="
                    )
                },
            ),
            ("text", "Hello! How can I help you today?", {}),
        ],
    ),
    "anthropic_citations.sse": (
        "completed",
        "stop",
        [
            ("text", "According to the documents:\nThe grass is green and the sky is blue.", {}),
            (
                "source",
                None,
                {
                    "url": "document:0",
                    "title": "All aboout the grass and the sky",
                    "span": {"block": 0, "start": 28, "end": 46},
                    "cited_text": "The grass is green. ",
                },
            ),
            (
                "source",
                None,
                {
                    "url": "https://example.org/sky",
                    "title": "Why is the sky blue?",
                    "span": {"block": 0, "start": 51, "end": 66},
                    "cited_text": "The sky is blue.",
                },
            ),
        ],
    ),
    "anthropic_message.json": (
        "completed",
        "stop",
        [
            ("text", "According to the documents:\nThe grass is green and the sky is blue.", {}),
            (
                "source",
                None,
                {
                    "url": "document:0",
                    "title": "All aboout the grass and the sky",
                    "span": {"block": 0, "start": 28, "end": 46},
                    "cited_text": "The grass is green. ",
                },
            ),
            (
                "source",
                None,
                {
                    "url": "document:0",
                    "title": "All aboout the grass and the sky",
                    "span": {"block": 0, "start": 51, "end": 66},
                    "cited_text": "The sky is blue.",
                },
            ),
        ],
    ),
    "anthropic_error_mid_stream.sse": ("failed", None, [("text", "Partial answer", {})]),
    "anthropic_redacted_max_tokens.sse": (
        "completed",
        "length",
        [
            (
                "reasoning",
                "",
                {
                    "encrypted": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP",
                    "redacted": True,
                },
            ),
            ("text", "The answer starts here but", {}),
        ],
    ),
}

ERRORS = {
    "error_mid_stream.sse": {"message": "Provider returned error", "type": None, "code": 502},
    "truncated.sse": {
        "message": "upstream stream ended without finish_reason or [DONE]",
        "type": "truncated",
        "code": None,
    },
    "responses_failed.sse": {
        "message": "The model failed to generate a response.",
        "type": None,
        "code": "server_error",
    },
    "responses_error_event.sse": {
        "message": "Something went wrong",
        "type": None,
        "code": "ERR_SOMETHING",
    },
    "anthropic_error_mid_stream.sse": {
        "message": "Overloaded",
        "type": "overloaded_error",
        "code": None,
    },
    "non_streamed_error.json": {
        "message": "The model `nope` does not exist",
        "type": "invalid_request_error",
        "code": "model_not_found",
    },
}

USAGE_TOTALS = {
    "deepseek_reasoning_content.sse": 22,
    "vllm_reasoning.sse": 40,
    "openrouter_reasoning_details.sse": 29,
    "openai_include_usage.sse": 10,
    "gemini_tools_no_index.sse": 60,
    "non_streamed.json": 55,
    "perplexity_citations.sse": 14,
    "responses_reasoning_citation.sse": 114,
    "responses_function_calls.sse": 314,
    "responses_hosted_tools.sse": 684,
    "responses_body.json": 380,
}


def test_every_fixture_has_an_expectation() -> None:
    names = [p.name for p in FIXTURES.iterdir() if p.suffix != ".md"]
    assert sorted(names) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_decodes_to_expected_message(name: str) -> None:
    status, finish, blocks = EXPECTED[name]
    ops, message = assemble_response((FIXTURES / name).read_bytes(), stream_id="st_test")
    data = message.to_dict()
    assert data["id"] == "st_test"
    assert data["status"] == status
    assert data["finish_reason"] == finish
    assert data["error"] == ERRORS.get(name)
    assert (data["usage"] or {}).get("total_tokens") == USAGE_TOTALS.get(name)
    got = []
    for block in data["blocks"]:
        extra = {k: v for k, v in block.items() if k not in ("type", "text", "arguments")}
        got.append((block["type"], block.get("text", block.get("arguments")), extra))
    assert got == blocks
    # The ops are well formed: dense seq from 1, start first, end last, and they rebuild it.
    assert [op.seq for op in ops] == list(range(1, len(ops) + 1))
    assert ops[0].type == "message.start" and ops[-1].type == "message.end"
    rebuilt = apply_ops([decode_op(op.json) for op in ops])
    assert rebuilt.to_json() == message.to_json()


def test_tool_arguments_are_json_once_assembled() -> None:
    for name in (
        "openai_parallel_tools.sse",
        "gemini_tools_no_index.sse",
        "ollama_tools_same_index.sse",
    ):
        _, message = assemble_response((FIXTURES / name).read_bytes())
        calls = [b for b in message.blocks if b.type == "tool_call"]
        assert len(calls) == 2
        for call in calls:
            assert isinstance(json.loads(call.text), dict)
