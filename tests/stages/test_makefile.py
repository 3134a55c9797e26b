"""`make help` is built from the Makefile's `## ...` comments: every public target shows up, described."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from conftest import REPO

# Steps that other targets run; they have no `##` comment on purpose (cv-fold-% is a pattern rule,
# not in .PHONY): demo-data is the first step of `make demo`.
INTERNAL = {"demo-data"}

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def phony_targets() -> list[str]:
    text = (REPO / "Makefile").read_text().replace("\\\n", " ")
    lines = [line for line in text.splitlines() if line.startswith(".PHONY:")]
    return [t for line in lines for t in line.split(":", 1)[1].split()]


def help_rows() -> dict[str, str]:
    """target -> description, from the `  make <target>  <description>` lines of `make help`."""
    out = subprocess.run(["make", "-s", "-C", str(REPO), "help"], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    rows = {}
    for line in out.splitlines():
        m = re.match(r"\s+make (\S+)(.*)$", line)
        if m:
            assert m.group(1) not in rows, f"{m.group(1)} listed twice"
            rows[m.group(1)] = m.group(2).strip()
    return rows


def test_help_lists_every_public_target_with_a_description():
    rows = help_rows()
    public = [t for t in phony_targets() if t not in INTERNAL]
    assert "test" in public and "lint" in public and "test-fast" in public
    assert sorted(rows) == sorted(public), "make help and .PHONY disagree (add a `## ...` comment, or INTERNAL)"
    assert all(rows.values()), [t for t, d in rows.items() if not d]


def test_help_is_the_default_goal_and_shows_usage():
    out = subprocess.run(["make", "-s", "-C", str(REPO)], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    assert "CONFIG=" in out and "OVERRIDES=" in out
    assert re.search(r"^\s+make train\s+\S", out, re.M)
