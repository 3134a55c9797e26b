"""Pretrained weights from a local file, loaded and verified: every tensor of the model but a
replaced classifier must come from the file, or training does not start.

A file whose key names differ from timm's (another implementation of the same network) would
otherwise load nothing: torch's non-strict load only reports the keys it skipped, and the fold
trains from random weights while its user believes it fine-tunes. `model.pretrained_remap` maps
such a file by order instead (timm's remap), and only when every tensor's shape matches its
counterpart one for one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from timm.models import get_pretrained_cfg, load_state_dict

from podium import artifacts
from podium.errors import PodiumError

SHOWN = 3  # unmatched names shown on each side of a refusal
PACKAGE = "package:"  # model.pretrained_file: a file inside an installed Python package


def weights_path(spec: str) -> Path:
    """The file `model.pretrained_file` names: a path, or `package:<import name>/<path inside it>`
    for weights that ship as a Python package (found where pip put it; the package is not imported,
    so none of its code runs)."""
    if not spec.startswith(PACKAGE):
        path = Path(spec)
    else:
        from importlib.util import find_spec

        package, _, inside = spec.removeprefix(PACKAGE).partition("/")
        found = find_spec(package) if package.isidentifier() else None
        if found is None or not found.submodule_search_locations:
            raise PodiumError(f"config key 'model.pretrained_file': package '{package}' is not installed; pip "
                              "install the package that ships the weights (.venv/bin/pip install -e '.[weights]' "
                              "for the ones podium's configs name)")
        path = Path(list(found.submodule_search_locations)[0]) / inside
    if not path.is_file():
        raise PodiumError(f"config key 'model.pretrained_file': file not found: {path}")
    return path


@dataclass(frozen=True)
class Loaded:
    """What a model's weights came from: the file, its content hash, how many of the model's
    tensors it filled, and whether the classifier was replaced (a new head for other classes)."""

    source: str
    file_hash: str
    tensors: int
    of: int
    classifier: str  # "loaded", or "new" when the file's head had other shapes or none

    def __str__(self) -> str:
        head = "its own classifier" if self.classifier == "loaded" else "a new classifier"
        return f"weights from {self.source} ({self.tensors} of {self.of} tensors, {head})"

    def as_json(self) -> dict:
        return {"source": self.source, "file_hash": self.file_hash, "tensors": f"{self.tensors}/{self.of}",
                "classifier": self.classifier}


def classifier_keys(model: torch.nn.Module) -> list[str]:
    """The state-dict keys of the model's classifier (timm's pretrained_cfg 'classifier' names it)."""
    names = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or ()
    prefixes = tuple(f"{n}." for n in ([names] if isinstance(names, str) else names))
    return [k for k in model.state_dict() if prefixes and k.startswith(prefixes)]


def read_weights(path: Path, key: str) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors: a bare state dict, or one under 'state_dict' / 'model' (an EMA's
    first), with DDP's 'module.' and torch.compile's '_orig_mod.' prefixes taken off (timm's)."""
    try:
        tensors = load_state_dict(str(path), use_ema=True)
    except Exception as exc:  # a pickle, a zip or a safetensors header that does not parse
        raise PodiumError(f"config key '{key}': cannot read {path} as weights ({type(exc).__name__}: {exc})") \
            from None
    tensors = {k: v for k, v in tensors.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise PodiumError(f"config key '{key}': {path} holds no tensors")
    return tensors


def _shape(t: torch.Tensor) -> str:
    return "x".join(map(str, t.shape)) or "scalar"


def _refuse(key: str, path: Path, name: str, matched: int, total: int, model_side: list[str], file_side: list[str],
            why: str, hint: str) -> PodiumError:
    def shown(names: list[str]) -> str:
        more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
        return (", ".join(names[:SHOWN]) + more) if names else "none"

    return PodiumError(f"config key '{key}': {path} fits {matched} of {total} tensors of {name} ({why}; "
                       f"unmatched in the model: {shown(model_side)}; in the file: {shown(file_side)}); {hint}")


def match_by_name(model: torch.nn.Module, tensors: dict[str, torch.Tensor], path: Path, name: str,
                  key: str) -> tuple[dict[str, torch.Tensor], str]:
    """The file's tensors to load, by name, and whether the classifier is 'loaded' or 'new'.
    Refused unless every tensor of the model but the classifier is in the file with its shape."""
    own = model.state_dict()
    head = set(classifier_keys(model))
    head_fits = bool(head) and all(k in tensors and tensors[k].shape == own[k].shape for k in head)
    wanted = [k for k in own if head_fits or k not in head]
    fits = [k for k in wanted if k in tensors and tensors[k].shape == own[k].shape]
    spare = [k for k in tensors if k not in own]  # in the file, not in the model
    if len(fits) < len(wanted):
        missing = [k for k in wanted if k not in tensors]
        other_shape = [f"{k} {_shape(own[k])} (file {_shape(tensors[k])})" for k in wanted
                       if k in tensors and tensors[k].shape != own[k].shape]
        why = (f"{len(other_shape)} of other shapes" if other_shape and not missing
               else f"{len(missing)} not in the file by name")
        hint = ("another network, or a checkpoint of another size" if other_shape and not missing else
                "set model.pretrained_remap: true when the file is the same network under other names "
                "(its tensors mapped by order, shapes checked one for one)")
        raise _refuse(key, path, name, len(fits), len(wanted), other_shape or missing, spare, why, hint)
    if spare:  # e.g. a resnet34 file for a resnet18: every name fits, the extra blocks would be dropped
        raise _refuse(key, path, name, len(fits), len(wanted), [], spare, f"{len(spare)} more in the file",
                      "these weights are of a larger network than model.name")
    return {k: tensors[k] for k in fits}, "loaded" if head_fits else "new"


def match_by_order(model: torch.nn.Module, tensors: dict[str, torch.Tensor], path: Path, name: str,
                   key: str) -> tuple[dict[str, torch.Tensor], str]:
    """The file's tensors renamed to the model's by their order (as timm's remap_state_dict does),
    the classifier at the end on both sides. Refused unless the counts agree and every shape
    matches its counterpart's; a head of other shapes (other classes) is left new."""
    own = model.state_dict()
    head = classifier_keys(model)
    body = [k for k in own if k not in head]
    items = list(tensors.items())
    if len(items) == len(own):  # the file has a classifier: the last len(head) tensors
        file_body, file_head = items[:len(body)], items[len(body):]
    elif len(items) == len(body):
        file_body, file_head = items, []
    else:
        raise _refuse(key, path, name, 0, len(body), [f"{len(own)} tensors"], [f"{len(items)} tensors"],
                      "the counts differ, so no order maps one onto the other", "these are not weights of "
                      "model.name in another implementation's names")
    for i, (mine, (theirs, value)) in enumerate(zip(body, file_body, strict=True)):
        if own[mine].shape != value.shape:
            raise _refuse(key, path, name, i, len(body), [f"{mine} {_shape(own[mine])}"],
                          [f"{theirs} {_shape(value)}"], f"tensor {i + 1} has another shape",
                          "the file is not this network in the same order")
    out = {mine: value for mine, (_, value) in zip(body, file_body, strict=True)}
    head_fits = len(file_head) == len(head) > 0 and all(
        own[k].shape == v.shape for k, (_, v) in zip(head, file_head, strict=True))
    if head_fits:
        out.update({k: v for k, (_, v) in zip(head, file_head, strict=True)})
    return out, "loaded" if head_fits else "new"


def load_weights(model: torch.nn.Module, path: Path, name: str, *, remap: bool,
                 key: str = "model.pretrained_file") -> Loaded:
    """Fill `model` from the file at `path`, verified (see the module's docstring)."""
    if remap and path.suffix == ".safetensors":
        raise PodiumError(f"config key 'model.pretrained_remap': {path} is a .safetensors file, which stores its "
                          "tensors by name and keeps no order to map them by; use the checkpoint as its "
                          "implementation saved it (a torch .pth or .bin file)")
    tensors = read_weights(path, key)
    match = match_by_order if remap else match_by_name
    chosen, classifier = match(model, tensors, path, name, key)
    result = model.load_state_dict(chosen, strict=False)
    head = set(classifier_keys(model))
    left = [k for k in result.missing_keys if k not in head]
    if left or result.unexpected_keys:  # cannot happen after the matching above: a guard, not a path
        raise PodiumError(f"config key '{key}': {path} left {left[:SHOWN]} of {name} unloaded")
    return Loaded(str(path), artifacts.file_hash(path), len(chosen), len(model.state_dict()), classifier)


# ---------------------------------------------------------------------------------------------
# The hub: timm's weights for a model name, through huggingface_hub's cache.

HUB_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm looks for in a hub repo, in this order


def hub_repo(name: str) -> str:
    """The Hugging Face hub repo of timm's default weights for model `name` (e.g. timm/resnet18.a1_in1k)."""
    found = get_pretrained_cfg(name)
    if found is None or not found.hf_hub_id:
        raise PodiumError(f"config key 'model.pretrained': timm has no hub weights for {name}; name a local file "
                          "in model.pretrained_file instead")
    return found.hf_hub_id


def cached_hub_file(repo: str) -> Path | None:
    """The weights file of `repo` in huggingface_hub's cache, or None when it was never fetched."""
    from huggingface_hub import try_to_load_from_cache

    for filename in HUB_FILES:
        found = try_to_load_from_cache(repo, filename)
        if isinstance(found, str):
            return Path(found)
    return None


def check_hub(name: str) -> str:
    """The hub repo of `name`'s weights; refused in one line when the hub is off (HF_HUB_OFFLINE) and
    the weights are not in the cache, before anything is built."""
    from huggingface_hub.constants import HF_HUB_CACHE

    repo = hub_repo(name)
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    if offline and cached_hub_file(repo) is None:
        raise PodiumError(f"config key 'model.pretrained': {repo} is not in the hub cache ({HF_HUB_CACHE}) and "
                          "HF_HUB_OFFLINE is set: fetch it once with network (make check does), or name a local "
                          "weights file in model.pretrained_file")
    return repo


def verify_hub_load(model: torch.nn.Module, repo: str, name: str) -> Loaded:
    """After timm filled `model` from the hub: every tensor but a replaced classifier equals the
    cached file's tensor of its name, or a one-line refusal."""
    path = cached_hub_file(repo)
    if path is None:  # timm loaded from elsewhere (a URL): nothing to compare against
        raise PodiumError(f"config key 'model.pretrained': timm loaded {name} without a file in the hub cache "
                          f"for {repo}; name a local weights file in model.pretrained_file instead")
    chosen, classifier = match_by_name(model, read_weights(path, "model.pretrained"), path, name,
                                       "model.pretrained")
    own = model.state_dict()
    differ = [k for k, v in chosen.items() if not torch.equal(own[k], v.to(own[k].dtype))]
    if differ:
        raise PodiumError(f"config key 'model.pretrained': {len(differ)} of {len(chosen)} tensors of {name} "
                          f"differ from {path} after loading (first: {', '.join(differ[:SHOWN])})")
    return Loaded(f"the hub ({repo})", artifacts.file_hash(path), len(chosen), len(own), classifier)
