"""requirements.lock: the exact version of every package podium installs, and whether this
environment matches it.

`make lock` asks pip's resolver for the newest versions pyproject.toml's floors allow (a dry-run
install with `--report`) and writes each package as `name==version`, with the platform markers
under which it is needed (torch's CUDA packages are Linux-only, so the lock installs on a Mac
too). No hashes: the torch wheel differs by platform and CUDA build. `make install` installs
from the lock, `make install-latest` from the floors.

    python -m podium.lock REPORT.json requirements.lock   (make lock)
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker, default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

LOCK_FILE = "requirements.lock"
# The installer itself, which `pip freeze` leaves out too; never pinned by the lock.
INSTALLER = frozenset({"pip"})


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    marker: str | None = None  # None: needed everywhere

    def applies(self) -> bool:
        return self.marker is None or Marker(self.marker).evaluate()

    def line(self) -> str:
        return f"{self.name}=={self.version}" + (f" ; {self.marker}" if self.marker else "")


# ---------------------------------------------------------------------------------------------
# Writing the lock from pip's installation report


def _without_extra(marker: Marker) -> str:
    """The marker's platform part, as text: its `extra == ...` comparisons dropped (the extras were
    decided when the edge was taken); '' when nothing is left. Where a dropped comparison stood in
    an `or`, the edge is taken whatever the platform, so the group becomes ''."""

    def walk(node) -> tuple[str, bool]:  # (text, whether an extra was dropped)
        if isinstance(node, tuple):
            left, op, right = node
            if "extra" in (getattr(left, "value", None), getattr(right, "value", None)):
                return "", True
            return f"{left.serialize()} {op.serialize()} {right.serialize()}", False
        parts = [walk(item) if not isinstance(item, str) else (item, False) for item in node]
        dropped = any(d for _, d in parts)
        ops = {text for text, _ in parts[1::2]}
        if dropped and "or" in ops:
            return "", True
        kept = [text for text, _ in parts[0::2] if text]
        joined = " and ".join(kept) if dropped else " ".join(text for text, _ in parts)
        return (f"({joined})" if len(kept) > 1 and node is not marker._markers else joined), dropped

    return walk(marker._markers)[0]


def _edge_taken(req: Requirement, extras: set[str]) -> bool:
    if req.marker is None:
        return True
    env = default_environment()
    return any(req.marker.evaluate({**env, "extra": extra}) for extra in ["", *sorted(extras)])


def _and(condition: set[str] | None, marker: str) -> set[str] | None:
    """A parent's condition (None: always; else alternatives) and an edge's marker."""
    if condition is None:
        return {marker} if marker else None
    if not marker:
        return set(condition)
    return {c if marker in c else f"({c}) and ({marker})" for c in condition}


def pins_from_report(report: dict) -> list[Pin]:
    """Every package of the report but the requested project itself, with the marker under which
    some chain of requirements from the project reaches it (None: one chain needs no marker).
    Extras are followed along the chain (torch asks for cuda-toolkit[cublas,...])."""
    items = {canonicalize_name(i["metadata"]["name"]): i for i in report["install"]}
    roots = [name for name, i in items.items() if i.get("requested") and i.get("is_direct")]
    extras = {name: set(items[name].get("requested_extras") or []) for name in roots}
    condition: dict[str, set[str] | None] = {name: None for name in roots}
    changed = True
    while changed:  # to a fixed point: conditions and extras only grow
        changed = False
        for parent in list(condition):
            for text in items[parent]["metadata"].get("requires_dist") or []:
                req = Requirement(text)
                child = canonicalize_name(req.name)
                if child not in items or not _edge_taken(req, extras.get(parent, set())):
                    continue
                contrib = _and(condition[parent], _without_extra(req.marker) if req.marker else "")
                if child in condition:
                    before = condition[child]
                    after = None if before is None or contrib is None else before | contrib
                else:
                    before, after = "unreached", contrib
                wanted = extras.setdefault(child, set()) | set(req.extras)
                if after != before or wanted != extras[child]:
                    condition[child], extras[child] = after, wanted
                    changed = True
    pins = []
    for name in sorted(set(condition) - set(roots)):
        meta, cond = items[name]["metadata"], condition[name]
        if cond is not None:  # absorption: "a or (a and b)" is "a"
            cond = {c for c in cond if not any(c.startswith(f"({o}) and ") for o in cond if o != c)}
        marker = None if cond is None else " or ".join(sorted(f"({c})" if len(cond) > 1 else c for c in cond))
        pins.append(Pin(meta["name"], meta["version"], marker))
    missed = sorted(set(items) - set(condition))
    if missed:
        raise ValueError(f"no requirement reaches {', '.join(missed)} from {', '.join(roots)}")
    return pins


def write_lock(pins: list[Pin], path: Path, header: str) -> None:
    text = "".join(f"# {line}\n" for line in header.splitlines()) + "".join(p.line() + "\n" for p in pins)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# Reading it back


def read_lock(path: Path) -> list[Pin]:
    pins = []
    for number, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        spec = list(req.specifier)
        if len(spec) != 1 or spec[0].operator != "==":
            raise ValueError(f"{path}:{number}: expected name==version, got {raw!r}")
        pins.append(Pin(req.name, spec[0].version, str(req.marker) if req.marker else None))
    return pins


def find_lock() -> Path | None:
    """The lock beside pyproject.toml of the checkout podium runs from (an editable install), or in
    the current directory."""
    here = Path(__file__).resolve().parents[2] / LOCK_FILE
    for path in (here, Path.cwd() / LOCK_FILE):
        if path.is_file():
            return path
    return None


def installed() -> dict[str, str]:
    """{canonical name: version} of every distribution on sys.path but podium and the installer."""
    out = {}
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"] or "")
        if name and name not in INSTALLER and name != "podium":
            out.setdefault(name, dist.version)
    return out


def lock_differences(pins: list[Pin], have: dict[str, str]) -> list[str]:
    """What keeps `have` from being the lock's pins for this platform: one line per package."""
    want = {canonicalize_name(p.name): p.version for p in pins if p.applies()}
    out = [f"{n} {have[n]} (lock: {v})" if n in have else f"{n} missing (lock: {v})"
           for n, v in sorted(want.items()) if have.get(n) != v]
    return out + [f"{n} {v} (not in the lock)" for n, v in sorted(have.items()) if n not in want]


def lock_status() -> dict:
    """For a fold's provenance: whether the environment is exactly requirements.lock."""
    path = find_lock()
    if path is None:
        return {"lock": None, "matches": None}
    try:
        differs = lock_differences(read_lock(path), installed())
    except (OSError, ValueError) as exc:
        return {"lock": str(path), "matches": None, "error": str(exc)}
    return {"lock": str(path), "matches": not differs, **({"differs": differs[:20]} if differs else {})}


def main(argv: list[str] | None = None) -> int:
    import json
    import platform

    p = argparse.ArgumentParser(prog="python -m podium.lock", description=__doc__.split("\n\n")[0])
    p.add_argument("report", help="pip install --dry-run --ignore-installed --report REPORT.json -e '.[...]'")
    p.add_argument("lock", help="the lock file to write")
    args = p.parse_args(argv)
    report = json.loads(Path(args.report).read_text())
    pins = pins_from_report(report)
    root = next(i for i in report["install"] if i.get("requested") and i.get("is_direct"))
    extras = ",".join(root.get("requested_extras") or [])
    header = (f"Written by `make lock` from pyproject.toml ({root['metadata']['name']}[{extras}]): the versions pip's\n"
              f"resolver chose on {platform.system()} {platform.machine()}, Python {platform.python_version()}. "
              "`make install` installs these;\n`make install-latest` resolves the floors again. Do not edit by hand.")
    write_lock(pins, Path(args.lock), header)
    print(f"wrote {args.lock}: {len(pins)} packages, {sum(p.marker is not None for p in pins)} with platform markers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
