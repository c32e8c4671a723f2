"""Catch-up cost per view: bytes and frames a reader resuming a 10,000-token answer from the
start receives, compacted (tokenwire's catch-up) vs the uncompacted replay (every frame the
live stream sent) vs resumable-stream's whole-buffer replay (the same bytes as one message).

Pure CPU and memory (the views are sans-IO), so it runs in about a second:

    PYTHONPATH=src python -m bench.catchup
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass

import msgspec

from tokenwire.protocol.views import (
    DEFAULT_MAX_FRAME_BYTES,
    VIEWS,
    OpsView,
    RawOp,
    catch_up,
    message_dict,
    replay,
)

WORDS = ["the", "stream", "resumes", "exactly", "where", "it", "stopped,", '"quoted"', "déjà"]


def long_answer(tokens: int = 10_000, seed: int = 7) -> list[RawOp]:
    """The op log of a ``tokens``-token text answer, one delta op per token (no coalescing:
    the worst case for a replay)."""
    rnd = random.Random(seed)
    ops = [
        RawOp(1, b'{"type":"message.start","seq":1,"id":"st_long","model":"mock"}'),
        RawOp(2, b'{"type":"block.start","seq":2,"index":0,"block":{"type":"text","text":""}}'),
    ]
    seq = 2
    for _ in range(tokens):
        seq += 1
        delta = {"type": "block.delta", "text": " " + rnd.choice(WORDS)}
        ops.append(RawOp(seq, msgspec.json.encode(delta)))
    seq += 1
    ops.append(RawOp(seq, b'{"type":"block.end","seq":%d,"index":0}' % seq))
    seq += 1
    end = {"type": "message.end", "seq": seq, "status": "completed", "finish_reason": "stop"}
    end.update(usage={"prompt_tokens": 5, "completion_tokens": tokens}, error=None)
    ops.append(RawOp(seq, msgspec.json.encode(end)))
    return ops


@dataclass
class CatchUpRow:
    view: str
    message_bytes: int  # the final canonical message JSON
    compacted_bytes: int
    compacted_frames: int
    compacted_max_frame: int
    compacted_ms: float  # CPU time to compute the catch-up from the log
    replay_bytes: int  # uncompacted: every frame of the live stream again
    replay_frames: int
    whole_buffer_bytes: int  # resumable-stream: the same bytes, published as one message
    whole_buffer_frames: int
    whole_buffer_max_frame: int

    @property
    def ratio(self) -> float:
        """Compacted bytes over the final message's bytes (the issue's bound: <= 1.2)."""
        return self.compacted_bytes / self.message_bytes


def measure(
    tokens: int = 10_000, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
) -> list[CatchUpRow]:
    """One row per view (aisdk, openai, responses, ops)."""
    ops = long_answer(tokens)
    state = OpsView()
    replay(state, ops)
    message_bytes = len(msgspec.json.encode(message_dict(state.state)))
    rows = []
    for name, view in VIEWS.items():
        full = replay(view(), ops)
        raw = sum(len(f.data) for f in full)
        start = time.perf_counter()
        frames, _ = catch_up(view, ops, max_frame_bytes=max_frame_bytes)
        elapsed = (time.perf_counter() - start) * 1000
        sizes = [len(f.data) for f in frames]
        rows.append(
            CatchUpRow(
                view=name,
                message_bytes=message_bytes,
                compacted_bytes=sum(sizes),
                compacted_frames=len(frames),
                compacted_max_frame=max(sizes),
                compacted_ms=round(elapsed, 1),
                replay_bytes=raw,
                replay_frames=len(full),
                whole_buffer_bytes=raw,
                whole_buffer_frames=1,
                whole_buffer_max_frame=raw,
            )
        )
    return rows


def table(rows: list[CatchUpRow]) -> str:
    head = (
        "| view | message B | compacted B (x msg) | frames | max frame B | "
        "replay B / frames | whole-buffer B / frames (max frame B) |"
    )
    lines = [head, "|" + "---|" * 7]
    for r in rows:
        lines.append(
            f"| {r.view} | {r.message_bytes:,} | {r.compacted_bytes:,} ({r.ratio:.2f}x) | "
            f"{r.compacted_frames} | {r.compacted_max_frame:,} | "
            f"{r.replay_bytes:,} / {r.replay_frames:,} | "
            f"{r.whole_buffer_bytes:,} / {r.whole_buffer_frames} ({r.whole_buffer_max_frame:,}) |"
        )
    return "\n".join(lines)


def run(tokens: int = 10_000) -> dict[str, object]:
    """What ``python -m bench`` records: one row per view (``make bench``'s catch-up rows)."""
    rows = measure(tokens)
    return {"tokens": tokens, "rows": [asdict(r) | {"ratio": round(r.ratio, 3)} for r in rows]}


def main() -> None:
    rows = measure()
    print(table(rows))
    print(msgspec.json.encode([asdict(r) for r in rows]).decode())


if __name__ == "__main__":
    main()
