"""How a stage speaks: one line (or a few) on standard output, flushed at once so that a log file
written through `make` or nohup shows it when it happens."""

from __future__ import annotations


def say(*lines: str) -> None:
    print("\n".join(lines), flush=True)
