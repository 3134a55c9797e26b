"""Where a run came from: git commit, package versions, machine."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata

PACKAGES = ("podium", "torch", "timm", "albumentations", "accelerate", "scikit-learn", "pandas", "numpy",
            "opencv-python-headless")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def provenance(**extra) -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "python": platform.python_version(),
        "packages": versions,
        **extra,
    }
