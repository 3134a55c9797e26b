"""`podium demo-data` (the first step of make demo): the embedded demo competition written to
data/demo/ (data/demo.py), from scikit-learn's bundled digits, so a fresh clone needs no download."""

from __future__ import annotations

from podium.console import say
from podium.data.demo import DEMO_DIR, write_demo


def run_demo_data() -> None:
    say(f"demo competition in {write_demo(DEMO_DIR)}/")
