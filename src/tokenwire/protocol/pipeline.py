"""Upstream bytes -> ops in one object: SSE decoder + chunk normalizer + assembler."""

from __future__ import annotations

from collections.abc import Iterable

from tokenwire.protocol.assembler import Assembler
from tokenwire.protocol.message import Message
from tokenwire.protocol.normalizer import ChunkNormalizer
from tokenwire.protocol.ops import EncodedOp
from tokenwire.protocol.sse import SSEDecoder
from tokenwire.protocol.think_tags import DEFAULT_THINK_TAGS


class Pipeline:
    """Feed an OpenAI chat-completions SSE body in any pieces; get sequenced ops."""

    def __init__(
        self,
        stream_id: str | None = None,
        *,
        model: str | None = None,
        coalesce_ms: float = 0.0,
        think_tags: Iterable[str] | None = DEFAULT_THINK_TAGS,
    ) -> None:
        self.decoder = SSEDecoder()
        self.normalizer = ChunkNormalizer(think_tags)
        self.assembler = Assembler(stream_id, model=model, coalesce_ms=coalesce_ms)

    @property
    def message(self) -> Message:
        return self.assembler.message

    @property
    def seq(self) -> int:
        return self.assembler.seq

    @property
    def done(self) -> bool:
        return self.assembler.done

    def feed(self, data: bytes, now: float = 0.0) -> list[EncodedOp]:
        events = self.decoder.feed(data)
        if not events:
            return self.assembler.poll(now) if self.assembler.next_deadline() else []
        normalize = self.normalizer.feed_event
        if len(events) == 1:
            return self.assembler.feed(normalize(events[0]), now)
        facts = []
        for event in events:
            facts.extend(normalize(event))
        return self.assembler.feed(facts, now)

    def poll(self, now: float) -> list[EncodedOp]:
        return self.assembler.poll(now)

    def next_deadline(self) -> float | None:
        return self.assembler.next_deadline()

    def close(self, now: float = 0.0) -> list[EncodedOp]:
        """Upstream EOF: release held text, then end the message per the status rules."""
        self.decoder.close()
        ops = self.assembler.feed(self.normalizer.close(), now)
        return ops + self.assembler.close(now)

    def cancel(self, now: float = 0.0) -> list[EncodedOp]:
        ops = self.assembler.feed(self.normalizer.close(), now)
        return ops + self.assembler.cancel(now)

    def fail(
        self,
        message: str,
        *,
        error_type: str | None = "upstream_error",
        code: str | int | None = None,
        now: float = 0.0,
    ) -> list[EncodedOp]:
        ops = self.assembler.feed(self.normalizer.close(), now)
        return ops + self.assembler.fail(message, error_type=error_type, code=code, now=now)
