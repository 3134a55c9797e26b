"""The package's shape: no import cycle between its modules (imports inside functions included),
no module over 400 lines, no file name of the run folder spelled outside runs/layout.py."""

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "src" / "podium"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def import_graph() -> dict[str, set[str]]:
    """Module -> the podium modules it imports, anywhere in the file (a function-level import too).
    `from podium.x import y` counts as importing podium.x.y when y is a module, else podium.x."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.split(".")[0] == "podium"}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolved from this module's package
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                if base.split(".")[0] != "podium":
                    continue
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    found.add(sub if sub in modules else base)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_between_modules():
    graph = import_graph()
    assert len(graph) > 40 and "podium.stages.oof" in graph["podium.stages.submit"]  # the graph is real
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_stages_sit_on_top():
    """Nothing below the stages imports one (a stage may use another stage, the CLI uses all)."""
    graph = import_graph()
    below = {m: deps for m, deps in graph.items() if not m.startswith("podium.stages") and m != "podium.cli"}
    upward = {m: sorted(d for d in deps if d.startswith("podium.stages")) for m, deps in below.items()}
    assert not {m: d for m, d in upward.items() if d}


def test_no_module_over_400_lines():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > 400}
    assert not long


RUN_FOLDER_NAMES = {"cv.json", "oof.csv", "test.csv", "folds.csv", "blend.json", "postprocess.json", "worker.json",
                    "history.csv", "model.safetensors", "schedule.csv", "schedule.png", "ablation.csv", "ablation.png",
                    "report.html", "meta.json", "fold0", "oof_plain.csv", "test_plain.csv", "oof_best_epoch.csv",
                    "audit.html", "audit.csv", "audit_groups.csv", "tta_weight.json", "tune.db", "tune.csv",
                    "best.yaml", "tune_history.png", "tune_importance.png", "pruned.json", "lr_find.csv",
                    "lr_find.png"}
COMPETITION_DEFAULTS = {"podium.config.data", "podium.data.demo"}  # a competition's test.csv, not a fold's
HUB_FILES = {"podium.train.weights"}  # a hub repo's model.safetensors, named by timm and huggingface_hub


def _strings(path: Path) -> list[str]:
    """The string constants of a module, docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {id(body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and (body := node.body)
                  and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]


def test_run_folder_file_names_are_spelled_in_the_layout_only():
    spelled = {name: sorted(set(_strings(path)) & RUN_FOLDER_NAMES) for name, path in _modules().items()
               if name not in ("podium.runs.layout", *COMPETITION_DEFAULTS, *HUB_FILES)}
    assert {m: f for m, f in spelled.items() if f} == {}
