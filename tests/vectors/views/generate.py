"""Regenerate the views' golden vectors: ``<name>.<view>.frames`` for each op log.

Each line of a ``.frames`` file is one frame as JSON: ``{"index", "seq", "data"}`` (``data``
is the frame's wire bytes as text; ``index`` is null for a transient frame). Inputs are the
v1.1 op logs in this folder and a selection of the v1 logs in ``tests/vectors``.

    PYTHONPATH=src python tests/vectors/views/generate.py
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenwire.protocol.views import VIEWS, Frame, ops_from_jsonl, replay

HERE = Path(__file__).parent
V1 = HERE.parent
V1_INPUTS = [
    "openai_text",
    "openai_parallel_tools",
    "openai_n2_choices",
    "openai_refusal",
    "openai_include_usage",
    "openai_annotations",
    "deepseek_reasoning_content",
    "error_mid_stream",
    "openrouter_image",
    "snapshot_resume",
]


def inputs() -> dict[str, Path]:
    found = {name: V1 / f"{name}.ops.jsonl" for name in V1_INPUTS}
    for path in sorted(HERE.glob("*.ops.jsonl")):
        found[path.name.removesuffix(".ops.jsonl")] = path
    return found


def frames_text(frames: list[Frame]) -> str:
    lines = [
        json.dumps({"index": f.index, "seq": f.seq, "data": f.data.decode()}, ensure_ascii=False)
        for f in frames
    ]
    return "".join(line + "\n" for line in lines)


def build() -> dict[str, str]:
    out: dict[str, str] = {}
    for name, path in inputs().items():
        ops = ops_from_jsonl(path.read_bytes().splitlines())
        for view_name, view_cls in VIEWS.items():
            out[f"{name}.{view_name}.frames"] = frames_text(replay(view_cls(), ops))
    return out


def main() -> None:
    for old in HERE.glob("*.frames"):
        old.unlink()
    for name, text in build().items():
        (HERE / name).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
