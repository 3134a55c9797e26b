"""Making the config: YAML plus `key=value` overrides, validated once, every error in one line."""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from podium.config.schema import ADDED_KEYS, Config
from podium.errors import PodiumError


def _fields_at(loc: tuple) -> list[str]:
    """The valid key names of the section at `loc` (for did-you-mean)."""
    model: Any = Config
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return []
        model = field.annotation
    return list(model.model_fields)


def _format_error(err: dict) -> str:
    loc = tuple(err["loc"])
    key = ".".join(str(p) for p in loc)
    if err["type"] == "extra_forbidden":
        name = str(loc[-1])
        close = difflib.get_close_matches(name, _fields_at(loc[:-1]), n=1)
        hint = f" (did you mean '{'.'.join(map(str, loc[:-1] + (close[0],)))}'?)" if close else ""
        return f"unknown config key '{key}'{hint}"
    msg = err["msg"].removeprefix("Value error, ")
    if not key:  # a whole-config check: its message names the key itself
        return f"config: {msg}"
    return f"config key '{key}': {msg} (got {err.get('input')!r})"


def set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """`a.b=value` strings; values are YAML scalars or lists (`3`, `null`, `[a, b]`)."""
    out = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise PodiumError(f"override '{item}': expected key=value, e.g. train.epochs=3")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise PodiumError(f"override '{item}': value is not valid YAML ({exc.problem})") from None
        out.append((key.strip(), value))
    return out


def config_from_dict(tree: dict, source: str = "config") -> Config:
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        # Every error at once, on one line: a user fixes them all in one go.
        raise PodiumError(f"{source}: " + "; ".join(_format_error(e) for e in exc.errors())) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (safe loader), apply overrides, validate. The stem names the experiment."""
    path = Path(path)
    if not path.is_file():
        raise PodiumError(f"config file not found: {path}")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise PodiumError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(tree, dict):
        raise PodiumError(f"{path}: expected a mapping of config keys at the top level")
    tree.pop("provenance", None)  # a run's saved config.yaml carries it; it is not a setting
    tree.setdefault("experiment", path.stem)
    for key, value in parse_overrides(overrides or []):
        set_dotted(tree, key, value)
    return config_from_dict(tree, source=str(path))


def config_hash(cfg: Config, sections: tuple[str, ...] | None = None) -> str:
    """A content hash of the resolved config (or of some of its sections). A key added since runs
    were made counts only away from the value that behaves as podium did before it (ADDED_KEYS),
    so that adding a key leaves those runs current."""
    dumped = cfg.model_dump(mode="json")
    for dotted, neutral in ADDED_KEYS.items():
        section, key = dotted.split(".")
        if dumped.get(section, {}).get(key, neutral) == neutral:
            dumped.get(section, {}).pop(key, None)
    if sections is not None:
        dumped = {k: dumped[k] for k in sections}
    return hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()[:16]
