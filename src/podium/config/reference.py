"""The config reference table, rendered from the schema: one row per key, dotted.

`python -m podium.config.reference` prints the table; `python -m podium.config.reference --write
docs/configuration.md` replaces the table between that page's two marker comments. A test fails
when they differ.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from podium.config import Config
from podium.config.schema import FINE_TUNING
from podium.errors import PodiumError

BEGIN = "<!-- config-table:begin (python -m podium.config.reference --write docs/configuration.md) -->"
END = "<!-- config-table:end -->"


def _yaml(value: Any) -> str:
    """A default as a user would write it in a config file (flow style)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return re.sub(r"e([+-])0*(\d)", r"e\1\2", repr(value))  # 1e-05 -> 1e-5
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, BaseModel):  # a section inside a mapping (tune.space): the keys it sets
        return _yaml(value.model_dump(exclude_defaults=True))
    return str(value)


def _section(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def keys(model: type[BaseModel] = Config, prefix: str = "") -> Iterator[tuple[str, Any, str]]:
    """(dotted key, default, description) of every setting, sections walked in schema order."""
    for name, field in model.model_fields.items():
        section = _section(field.annotation)
        if section is not None:
            yield from keys(section, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", field.get_default(call_default_factory=True), field.description or ""


def config_table() -> str:
    """The table; a key with a fine-tuning default (FINE_TUNING) shows it beside the plain one."""
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    for key, default, meaning in keys():
        tuned = f" (with pretrained weights: {_yaml(FINE_TUNING[key])})" if key in FINE_TUNING else ""
        shown = _yaml(default) + tuned
        cells = (f"`{key}`", shown, meaning)
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"


def _bounds(text: str, path: Path) -> tuple[int, int]:
    """Where the table starts and ends in `text` (just after BEGIN's line, at END's line)."""
    begin, end = text.find(BEGIN), text.find(END)
    if begin < 0 or end < begin:
        raise PodiumError(f"{path}: no '{BEGIN}' ... '{END}' markers around the config table")
    return text.index("\n", begin) + 1, end


def table_in(path: Path) -> str:
    """The config table as it stands in a markdown file, between the markers."""
    text = path.read_text()
    start, stop = _bounds(text, path)
    return text[start:stop]


def write_table(path: Path) -> bool:
    """Replace the table between the markers; True when the file changed."""
    text = path.read_text()
    start, stop = _bounds(text, path)
    new = text[:start] + config_table() + text[stop:]
    if new != text:
        path.write_text(new)
    return new != text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m podium.config.reference", description=__doc__.splitlines()[0])
    parser.add_argument("--write", metavar="FILE", type=Path,
                        help=f"replace the table between {BEGIN} and {END} in FILE (docs/configuration.md)")
    args = parser.parse_args(argv)
    if args.write is None:
        sys.stdout.write(config_table())
        return 0
    try:
        changed = write_table(args.write)
    except (PodiumError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.write}: config table {'updated' if changed else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
