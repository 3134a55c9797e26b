"""Stage records: `<out_dir>/<stage>.done.json` holds the hashes of the stage's inputs and of the
outputs it wrote. A stage is up to date when both still match; otherwise it runs again.
"""

from __future__ import annotations

import os
from pathlib import Path

from podium.artifacts import file_hash, read_json, write_json


def record_path(out_dir: Path, stage: str) -> Path:
    return Path(out_dir) / f"{stage}.done.json"


def is_up_to_date(out_dir: Path, stage: str, inputs: dict[str, str]) -> bool:
    path = record_path(out_dir, stage)
    try:
        record = read_json(path)
    except (OSError, ValueError):
        return False
    if record.get("inputs") != inputs:
        return False
    for name, digest in record.get("outputs", {}).items():
        out = Path(out_dir) / name
        if not out.is_file() or file_hash(out) != digest:
            return False
    return True


def mark_done(out_dir: Path, stage: str, inputs: dict[str, str], outputs: list[str | Path],
              info: dict | None = None) -> None:
    """Record a finished stage with the hashes of its `outputs` (paths as seen from the cwd),
    and `info` for the reader (not compared when deciding whether the stage is up to date)."""
    out_dir = Path(out_dir)
    hashes = {}
    for out in outputs:
        rel = os.path.relpath(out, out_dir)  # may climb out of out_dir, e.g. to submissions/
        hashes[rel] = file_hash(out_dir / rel)
    write_json(record_path(out_dir, stage), {"inputs": inputs, "outputs": hashes, **({"info": info} if info else {})})


def forget(out_dir: Path, stage: str) -> None:
    record_path(out_dir, stage).unlink(missing_ok=True)
