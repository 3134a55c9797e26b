"""requirements.lock: written from pip's resolver report with the right markers, consistent with
pyproject.toml's floors, and (after `make install`) exactly what .venv holds."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from podium.lock import Pin, lock_differences, pins_from_report, read_lock, write_lock
from podium.runs.provenance import provenance

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"


def _item(name, version, requires=(), *, root_extras=None):
    item = {"metadata": {"name": name, "version": version, "requires_dist": list(requires)}}
    if root_extras is not None:
        item.update(requested=True, is_direct=True, requested_extras=root_extras)
    return item


def test_pins_follow_markers_and_extras_along_the_chain():
    report = {"install": [
        _item("proj", "0.1", ["torch>=2", "pytest; extra == 'dev'", "docs-only; extra == 'docs'",
                              "winonly; sys_platform == 'win32'"], root_extras=["dev"]),
        # torch: a Linux-only CUDA chain, whose packages come through an extra of cuda-toolkit
        _item("torch", "2.1", ["filelock", "cuda-toolkit[cublas]==13; platform_system == 'Linux'",
                               "optree; extra == 'optree'"]),
        _item("cuda-toolkit", "13", ["nvidia-cublas==1; (sys_platform == 'linux' or sys_platform == 'win32') "
                                     "and extra == 'cublas'", "nvidia-npp; extra == 'npp'"]),
        _item("nvidia-cublas", "1"),
        _item("filelock", "3.0"),
        _item("pytest", "8.0", ["pluggy", "nvidia-cublas"]),  # an unconditional second way to nvidia-cublas
        _item("pluggy", "1.0"),
    ]}
    pins = {p.name: p for p in pins_from_report(report)}
    assert set(pins) == {"torch", "cuda-toolkit", "nvidia-cublas", "filelock", "pytest", "pluggy"}
    assert pins["torch"].marker is None and pins["filelock"].marker is None
    assert pins["cuda-toolkit"].marker == 'platform_system == "Linux"'
    # reached without a marker through pytest (a dev extra of the project): needed everywhere
    assert pins["nvidia-cublas"].marker is None
    assert pins["pytest"].marker is None  # the extra decided the edge; no `extra ==` left in the lock


def test_a_chain_of_markers_is_their_conjunction(tmp_path):
    report = {"install": [
        _item("proj", "0.1", ["torch"], root_extras=[]),
        _item("torch", "2.1", ["triton==3; platform_system == 'Linux'"]),
        _item("triton", "3", ["helper; python_version < '3.15'"]),
        _item("helper", "1"),
    ]}
    pins = {p.name: p for p in pins_from_report(report)}
    assert pins["helper"].marker == '(platform_system == "Linux") and (python_version < "3.15")'
    write_lock(list(pins.values()), tmp_path / "x.lock", "a header")
    back = {p.name: p for p in read_lock(tmp_path / "x.lock")}
    assert back["helper"].version == "1" and back["triton"].marker == 'platform_system == "Linux"'
    assert back["helper"].applies() == (sys.platform.startswith("linux") and sys.version_info < (3, 15))


def test_lock_differences_name_each_package():
    pins = [Pin("torch", "2.1"), Pin("numpy", "2.0"), Pin("winonly", "1", 'sys_platform == "nonexistent"')]
    have = {"torch": "2.0", "extra-thing": "5"}
    assert lock_differences(pins, have) == ["numpy missing (lock: 2.0)", "torch 2.0 (lock: 2.1)",
                                            "extra-thing 5 (not in the lock)"]
    assert lock_differences(pins, {"torch": "2.1", "numpy": "2.0"}) == []


def test_the_lock_satisfies_every_floor_in_pyproject():
    # podium's installed metadata is pyproject.toml's dependencies and extras (the Makefile
    # reinstalls when pyproject.toml changes).
    pins = {canonicalize_name(p.name): p.version for p in read_lock(LOCK)}
    for text in metadata.requires("podium"):
        req = Requirement(text)
        name = canonicalize_name(req.name)
        if name == "podium":
            continue
        assert name in pins, f"{name} (pyproject.toml) is not in requirements.lock: run make lock"
        assert req.specifier.contains(pins[name], prereleases=True), f"lock has {name}=={pins[name]}, wants {req}"


def test_pip_freeze_equals_the_lock_after_make_install():
    marker = Path(sys.prefix) / ".installed"
    if not marker.is_file() or not marker.read_text().startswith("lock"):
        pytest.skip(f"{sys.prefix} was not installed from requirements.lock (make install)")
    out = subprocess.run([sys.executable, "-m", "pip", "freeze", "--all"], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    frozen = set()
    for line in out:
        if line.startswith(("-e ", "#")) or " @ " in line:
            continue  # podium itself, installed editable
        name, version = line.split("==")
        if canonicalize_name(name) != "pip":
            frozen.add(f"{canonicalize_name(name)}=={version}")
    locked = {f"{canonicalize_name(p.name)}=={p.version}" for p in read_lock(LOCK) if p.applies()}
    assert frozen == locked, f"only frozen: {sorted(frozen - locked)}; only locked: {sorted(locked - frozen)}"
    assert provenance()["environment"]["matches"] is True
