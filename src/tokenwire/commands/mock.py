"""Run the deterministic mock model server: OpenAI chat completions (/v1/chat/completions),
the OpenAI Responses API (/v1/responses) and the Anthropic Messages API (/v1/messages), whose
answers are picked by the request's model name (mock, mock-reasoning, mock-tools, mock-error,
mock-truncated, mock-html, mock-agent), streamed or whole, each in that API's wire format.
Chat completions also continue a partial assistant message (vLLM's continue_final_message or
DeepSeek/Mistral's prefix: true) unless --no-continuation."""

from __future__ import annotations

import argparse

from tokenwire.cli import finite_float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8900, help="port to bind (default 8900)")
    parser.add_argument(
        "--tps", type=finite_float, default=0, help="tokens per second per stream (0: unpaced)"
    )
    parser.add_argument(
        "--ttft-ms", type=finite_float, default=0, help="delay before the first token, in ms"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated answers")
    parser.add_argument(
        "--reasoning-style",
        choices=("reasoning_content", "reasoning", "think-tags"),
        default="reasoning_content",
        help="how mock-reasoning sends its reasoning",
    )
    parser.add_argument(
        "--tool-style",
        choices=("openai", "gemini", "ollama"),
        default="openai",
        help="which server's tool-call chunks mock-tools imitates",
    )
    parser.add_argument(
        "--no-continuation",
        dest="continuation",
        action="store_false",
        help="refuse continuation requests with a 400 (an upstream that cannot continue)",
    )


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from tokenwire.cli import CommandError
    from tokenwire.commands._ports import require_free_port
    from tokenwire.mock import create_mock_app

    if args.tps < 0 or args.ttft_ms < 0:
        raise CommandError("--tps and --ttft-ms must not be negative")
    if not 0 < args.port < 65536:
        raise CommandError(f"invalid port {args.port}")
    app = create_mock_app(
        tps=args.tps,
        ttft_ms=args.ttft_ms,
        seed=args.seed,
        reasoning_style=args.reasoning_style,
        tool_style=args.tool_style,
        continuation=args.continuation,
    )
    require_free_port(args.host, args.port)
    print(f"tokenwire mock: http://{args.host}:{args.port}/v1 (models: GET /v1/models)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
