"""Checkpoints that survive a kill at any moment, and the lock that keeps one trainer per fold.

A checkpoint is a folder `checkpoint/epoch-NNNN/` holding accelerate's save_state output (model,
optimizer, grad scaler, random states) plus podium's own files: `podium.json` (epoch, update
count, best score, history, the stage inputs it was made with) and safetensors files (EMA
weights, best weights). It is written under a temporary name, finished with MANIFEST.json (every
file's size and CRC-32), and renamed into place; only then is the previous one removed. A folder
without a matching manifest is not a checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import zlib
from pathlib import Path

from safetensors.torch import load_file, save as safetensors_bytes

from podium import artifacts
from podium.errors import PodiumError
from podium.runs import layout

MANIFEST = "MANIFEST.json"
STATE = "podium.json"


def checkpoint_name(epoch: int) -> str:
    return f"epoch-{epoch:04d}"


def _crc32(path: Path) -> str:
    # A checksum, not an identity: it only has to catch torn or zero-filled writes. CRC-32 runs
    # at several GB/s, where a cryptographic hash of a few hundred MB would add most of a second
    # to every epoch's checkpoint.
    crc = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            crc = zlib.crc32(chunk, crc)
    return f"{crc:08x}"


def _manifest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): [p.stat().st_size, _crc32(p)]
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}


def is_complete(folder: Path) -> tuple[bool, str]:
    """(usable, why not): the manifest exists and every file matches its size and checksum."""
    try:
        expected = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False, "no readable MANIFEST.json (interrupted while being written?)"
    for name, (size, digest) in expected.items():
        path = folder / name
        if not path.is_file():
            return False, f"{name} is missing"
        if path.stat().st_size != size:
            return False, f"{name} is truncated ({path.stat().st_size} of {size} bytes)"
        if _crc32(path) != digest:
            return False, f"{name} is corrupt (checksum mismatch)"
    return True, ""


def checkpoints(root: Path) -> list[Path]:
    """Checkpoint folders, newest first (temporary ones excluded)."""
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and p.name.startswith("epoch-")), reverse=True)


def find_resumable(root: Path, inputs: dict[str, str]) -> tuple[Path | None, list[str]]:
    """The newest complete checkpoint, and notes on newer ones that had to be skipped.

    Refuses (PodiumError) when the usable checkpoint was made from another config or folds.csv,
    and when checkpoints exist but none is usable.
    """
    notes: list[str] = []
    found = checkpoints(root)
    for folder in found:
        ok, why = is_complete(folder)
        if not ok:
            notes.append(f"skipping checkpoint {folder}: {why}")
            continue
        saved = json.loads((folder / STATE).read_text())["inputs"]
        changed = [k for k in ("config", "folds", "data", "fold") if saved.get(k) != inputs.get(k)]
        if changed:
            what = {"config": "config", "folds": layout.FOLDS_CSV, "data": "competition data", "fold": "fold"}
            raise PodiumError(
                f"{folder} was made from another {' / '.join(what[k] for k in changed)} than this run's; "
                f"refusing to resume. Restore them, or start this fold over with FRESH=1"
            )
        return folder, notes
    if found:
        raise PodiumError(f"no usable checkpoint in {root} ({'; '.join(notes)}); start over with FRESH=1")
    return None, notes


def save_checkpoint(accelerator, root: Path, epoch: int, state: dict, tensors: dict[str, dict]) -> Path:
    """Every process calls this (accelerate writes each process's random state); the main
    process adds podium's files and the manifest, then renames the folder into place."""
    final = root / checkpoint_name(epoch)
    tmp = root / f".tmp-{checkpoint_name(epoch)}"
    try:
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp), safe_serialization=True)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            for name, tensor_dict in tensors.items():
                data = safetensors_bytes({k: v.detach().cpu().contiguous() for k, v in tensor_dict.items()})
                artifacts.write_bytes(tmp / f"{name}.safetensors", data)
            artifacts.write_json(tmp / STATE, state)
            artifacts.write_json(tmp / MANIFEST, _manifest(tmp))
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            _fsync_dir(root)
            for older in checkpoints(root):  # the new one is complete on disk: drop the rest
                if older != final:
                    shutil.rmtree(older, ignore_errors=True)
    except OSError as exc:
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        raise PodiumError(f"cannot write checkpoint {final}: {exc.strerror or exc}; earlier checkpoints kept") from None
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, folder: Path) -> tuple[dict, dict[str, dict]]:
    """Restore accelerate's state from `folder`; return podium's state and tensor files."""
    try:
        accelerator.load_state(str(folder))
        state = json.loads((folder / STATE).read_text())
        tensors = {p.stem: load_file(str(p)) for p in folder.glob("*.safetensors")
                   if p.stem in state.get("tensor_files", [])}
    except Exception as exc:  # noqa: BLE001 -- any failure here means one thing to the user
        raise PodiumError(f"cannot restore checkpoint {folder}: {type(exc).__name__}: {str(exc)[:200]}; "
                          f"start over with FRESH=1") from None
    return state, tensors


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------


def process_alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine (one of another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FoldLock:
    """`fold<k>/.lock`: one trainer per fold. A lock whose process is gone (same host) is stale
    and taken over; a live one makes the second trainer stop with a clear message."""

    def __init__(self, fold_dir: Path):
        self.path = Path(fold_dir) / ".lock"
        self.held = False

    def _owner(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is None:  # being written right now, or garbage: look again shortly
                    time.sleep(0.2)
                    owner = self._owner()
                if owner and (owner.get("host") != me["host"] or process_alive(int(owner.get("pid", -1)))):
                    raise PodiumError(
                        f"{self.path.parent} is being trained by process {owner.get('pid')} on {owner.get('host')} "
                        f"since {owner.get('since')}; wait for it, or stop it (if that process is gone, "
                        f"delete {self.path})"
                    ) from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self.held = True
            return
        raise PodiumError(f"could not take the lock {self.path}")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()

