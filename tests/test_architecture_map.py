# SPDX-License-Identifier: GPL-3.0-or-later
"""docs/architecture.md agrees with the tree: every module of kmm_core and kmm_blender is in its tree with a job,
every file the page names exists, the import graph follows the layer table (no arrow from a lower row to a higher
one; the torch column holds) and has no circle."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAP = REPO / "docs" / "architecture.md"
PATH_TOKEN = re.compile(r"(?<![\w/.])((?:kmm_core|kmm_blender)/[\w/]*\w\.py)\b")


def _map_text() -> str:
    return MAP.read_text(encoding="utf-8")


def _python_files() -> list[str]:
    files = [p.relative_to(REPO).as_posix() for folder in ("kmm_core", "kmm_blender")
             for p in (REPO / folder).rglob("*.py")]
    return sorted(files + ["__init__.py"])


def _layer_rows(text: str) -> list[tuple[str, list[str], str]]:
    """(layer name, module paths, torch cell) of each row of the layer table, lowest layer first."""
    section = text[text.index("## Layers"):]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("## "):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] in ("layer", "---"):
            continue
        paths = [token for token in re.findall(r"`([^`]+)`", cells[1]) if token.endswith((".py", "/"))]
        rows.append((cells[0], paths, cells[2]))
    return rows


def _layer_of(module: str, rows: list[tuple[str, list[str], str]]) -> int | None:
    """Index of the row whose most specific path names `module` (a file path relative to the repository)."""
    best, best_length = None, -1
    for index, (_name, paths, _torch) in enumerate(rows):
        for path in paths:
            matches = module == path if path.endswith(".py") else module.startswith(path)
            if matches and len(path) > best_length:
                best, best_length = index, len(path)
    return best


def _module_files() -> dict[str, str]:
    """Dotted module name -> file path, for kmm_core, kmm_blender and the root package."""
    names = {}
    for path in _python_files():
        parts = Path(path).with_suffix("").parts
        dotted = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        names[dotted] = path
    return names


def _imports(path: str, names: dict[str, str], source: str | None = None) -> list[tuple[str, int]]:
    """(imported file, line) of every import of a project module in `path` (or in `source` as if it were that
    file), at any depth (lazy imports inside functions too)."""
    parts = Path(path).with_suffix("").parts
    package = list(parts[:-1])
    found = []
    text = (REPO / path).read_text(encoding="utf-8") if source is None else source
    for node in ast.walk(ast.parse(text)):
        candidates = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [target] + [f"{target}.{alias.name}".lstrip(".") for alias in node.names]
            # `from package import module`: the module is what is imported (the package's __init__ runs either way,
            # and no __init__ of the project imports anything above its own layer)
            if any(candidate in names for candidate in candidates[1:]):
                candidates = candidates[1:]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        for candidate in candidates:
            if candidate in names and names[candidate] != path:
                found.append((names[candidate], node.lineno))
    return found


def _imports_torch(path: str, anywhere: bool) -> list[int]:
    tree = ast.parse((REPO / path).read_text(encoding="utf-8"))
    nodes = ast.walk(tree) if anywhere else tree.body
    lines = []
    for node in nodes:
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "torch" for a in node.names):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "torch":
            lines.append(node.lineno)
    return lines


def _tree_jobs(text: str) -> dict[str, str]:
    """Module path -> its job, from the tree of docs/architecture.md (a folder line, then its files indented)."""
    section = text[text.index("## The tree"):]
    block = section[section.index("```") + 3:]
    block = block[:block.index("```")]
    jobs = {}
    for line in block.splitlines():
        if not line.strip() or (not line.startswith(" ") and line.rstrip().endswith("/")):  # blank, or a folder
            continue
        name, _, job = line.strip().partition(" ")
        jobs[name] = job.strip()
    return jobs


def test_every_module_is_in_the_tree_with_its_job():
    jobs = _tree_jobs(_map_text())
    missing = [path for path in _python_files() if path not in jobs]
    assert not missing, f"add these modules to the tree of docs/architecture.md, with their job: {missing}"
    jobless = [path for path, job in jobs.items() if len(job) < 12]
    assert not jobless, f"say each module's job in the tree of docs/architecture.md: {jobless}"
    stale = [path for path in jobs if not (REPO / path).is_file()]
    assert not stale, f"the tree of docs/architecture.md names modules that do not exist: {stale}"


def test_both_routes_are_drawn_through_the_addon_step_by_step():
    text = _map_text()
    routes = text[text.index("## The two routes"):text.index("## The tree")]
    generate, _, regenerate = routes.partition("**Regenerate a segment**")
    for route, first, last in ((generate, "kmm_blender/ui/operators.py", "kmm_blender/takes/provenance.py"),
                               (regenerate, "kmm_blender/ui/operators.py", "kmm_blender/takes/provenance.py")):
        rooms = PATH_TOKEN.findall(route.split("The command line")[0])
        addon = [room for room in rooms if room.startswith("kmm_blender/")]
        assert addon[0] == first and last in addon, addon
    must = ["kmm_blender/jobs/runner.py", "kmm_blender/jobs/controller.py", "kmm_blender/backend/session.py",
            "kmm_blender/takes/keyframe_writer.py", "kmm_blender/rigs/retarget.py", "kmm_blender/rigs/take_keys.py"]
    for route in (generate, regenerate):
        assert all(module in route for module in must), [m for m in must if m not in route]
    assert "kmm_blender/takes/segment_regenerator.py" in regenerate


def test_every_file_the_map_names_exists():
    named = sorted(set(PATH_TOKEN.findall(_map_text())))
    assert len(named) > 40
    absent = [path for path in named if not (REPO / path).is_file()]
    assert not absent, f"docs/architecture.md names files that do not exist: {absent}"


def test_every_module_belongs_to_one_layer_of_the_table():
    rows = _layer_rows(_map_text())
    assert [name for name, _, _ in rows][:4] == ["common", "motion basics", "data", "model"]
    assert rows[-1][0] == "Blender" and rows[-2][0] == "Blender UI"
    unplaced = [path for path in _python_files() if _layer_of(path, rows) is None]
    assert not unplaced, f"put these modules into the layer table of docs/architecture.md: {unplaced}"


def _upward_imports(path: str, rows, names: dict[str, str], source: str | None = None) -> list[str]:
    layer = _layer_of(path, rows)
    upward = []
    for target, line in _imports(path, names, source):
        target_layer = _layer_of(target, rows)
        if target_layer is not None and layer is not None and target_layer > layer:
            upward.append(f"{path}:{line} ({rows[layer][0]}) imports {target} ({rows[target_layer][0]})")
    return upward


def test_no_import_runs_up_the_layer_table():
    rows = _layer_rows(_map_text())
    names = _module_files()
    upward = [problem for path in _python_files() for problem in _upward_imports(path, rows, names)]
    assert not upward, "imports reaching up a layer:\n" + "\n".join(upward)


def test_the_torch_column_holds():
    rows = _layer_rows(_map_text())
    wrong = []
    for path in _python_files():
        name, _paths, torch_cell = rows[_layer_of(path, rows)]
        allowed = set(re.findall(r"`([^`]+\.py)`", torch_cell))
        if torch_cell.startswith("never"):
            lines = _imports_torch(path, anywhere=True)
        elif torch_cell.startswith("no") and path not in allowed:
            lines = _imports_torch(path, anywhere=False)
        else:
            continue
        wrong += [f"{path}:{line} imports torch ({name}: {torch_cell})" for line in lines]
    assert not wrong, "\n".join(wrong)


def _circles(graph: dict[str, list[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), i.e. the import circles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, []):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def _import_graph(names: dict[str, str]) -> dict[str, list[str]]:
    return {path: sorted({target for target, _ in _imports(path, names)}) for path in _python_files()}


def test_no_import_circle():
    circles = _circles(_import_graph(_module_files()))
    assert not circles, "import circles (each line: modules that import each other):\n" + "\n".join(
        " <-> ".join(circle) for circle in circles)


def test_the_checks_catch_an_upward_import_and_an_unmapped_module():
    """The checks are not vacuous: a lazy import of the worker inside a model module is caught, the training CLI
    sits above training, and a module the table does not name has no layer."""
    rows = _layer_rows(_map_text())
    names = _module_files()
    lazy_upward = "def f():\n    from ..worker import server\n    return server\n"
    caught = _upward_imports("kmm_core/model/mamba.py", rows, names, source=lazy_upward)
    assert caught and "kmm_core/worker/server.py" in caught[-1] and "(model)" in caught[-1]
    assert not _upward_imports("kmm_core/worker/server.py", rows, names, source="from ..model import mamba\n")
    assert _layer_of("kmm_core/training/cli.py", rows) > _layer_of("kmm_core/training/trainer.py", rows)
    assert _layer_of("kmm_core/not_on_the_map.py", rows) is None
    graph = _import_graph(names)
    graph["kmm_blender/rigs/axes.py"] = ["kmm_blender/rigs/take_keys.py"]  # take_keys imports axes: a circle
    assert ["kmm_blender/rigs/axes.py", "kmm_blender/rigs/take_keys.py"] in _circles(graph)
    settings_up = _upward_imports("kmm_blender/settings.py", rows, names, source="from .ui import panel\n")
    assert settings_up and "(Blender UI)" in settings_up[0]
    imported = {target for target, _ in _imports("kmm_core/bundle/model_bundle.py", names)}
    assert "kmm_core/model/weights.py" in imported and "kmm_core/training/checkpoint.py" not in imported
