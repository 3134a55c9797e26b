"""Where a run came from: git commit, package versions, whether they are requirements.lock's, machine."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata

from podium.lock import lock_status

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
        # {"lock": path, "matches": bool, "differs": [...]}: a run from an environment that is not
        # the lock's may not reproduce with `make install`.
        "environment": lock_status(),
        **extra,
    }
