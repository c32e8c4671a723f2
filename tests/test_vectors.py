"""Shared test vectors: op logs and the canonical message JSON they produce.

The JS client's tests (web/) apply the same op logs and must produce byte-identical JSON.
This test keeps the committed vectors in step with the Python implementation; run with
TOKENWIRE_REGEN_VECTORS=1 to rewrite them after an intended protocol change.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import v11_vectors
from tokenwire.protocol import apply_ops, assemble_response, decode_op, snapshot_op

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
VECTORS = HERE / "vectors"
REGEN = os.environ.get("TOKENWIRE_REGEN_VECTORS") == "1"


def build_vectors() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for fixture in sorted(FIXTURES.iterdir()):
        if fixture.suffix == ".md":
            continue  # the origins README
        ops, message = assemble_response(fixture.read_bytes(), stream_id=f"st_{fixture.stem}")
        files[f"{fixture.stem}.ops.jsonl"] = b"".join(op.json + b"\n" for op in ops)
        files[f"{fixture.stem}.message.json"] = message.to_json()
        if fixture.stem == "deepseek_reasoning_content":
            # A resume that starts from a snapshot taken mid-stream.
            k = len(ops) // 2
            snap = snapshot_op(apply_ops(ops[:k]), k)
            files["snapshot_resume.ops.jsonl"] = b"".join(
                op.json + b"\n" for op in [snap, *ops[k:]]
            )
            files["snapshot_resume.message.json"] = message.to_json()
    files.update(v11_vectors.build())  # v1.1: from fact scripts (tests/v11_vectors.py)
    return files


def test_vectors_are_current() -> None:
    files = build_vectors()
    if REGEN:
        VECTORS.mkdir(exist_ok=True)
        for old in VECTORS.iterdir():
            if old.is_file():  # views/ holds the views' vectors (tests/test_views.py)
                old.unlink()
        for name, data in files.items():
            (VECTORS / name).write_bytes(data)
    on_disk = {p.name: p.read_bytes() for p in VECTORS.iterdir() if p.is_file()}
    assert sorted(on_disk) == sorted(files), "run with TOKENWIRE_REGEN_VECTORS=1"
    for name, data in files.items():
        assert on_disk[name] == data, f"{name} is stale; run with TOKENWIRE_REGEN_VECTORS=1"


@pytest.mark.parametrize("name", sorted(p.name for p in VECTORS.glob("*.ops.jsonl")))
def test_applying_vector_ops_gives_the_vector_message(name: str) -> None:
    lines = (VECTORS / name).read_bytes().splitlines()
    message = apply_ops([decode_op(line) for line in lines])
    expected = (VECTORS / name.replace(".ops.jsonl", ".message.json")).read_bytes()
    assert message.to_json() == expected
