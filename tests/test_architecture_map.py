# SPDX-License-Identifier: GPL-3.0-or-later
"""docs/architecture.md agrees with the tree: every module of the add-on, the generation package and the worker is
on the map, every file the map names exists, and the import graph follows the layer table (no arrow from a lower
row to a higher one; the torch column holds)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAP = REPO / "docs" / "architecture.md"
MAPPED_FOLDERS = ("kmm_blender", "kmm_core/generation", "kmm_core/worker")
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


def test_every_module_of_the_mapped_folders_is_on_the_map_with_its_job():
    text = _map_text()
    table = {row.split("|")[1].strip().strip("`") for row in text.splitlines() if row.startswith("| `")}
    missing = [path for path in _python_files() if path.startswith(MAPPED_FOLDERS) and path not in table]
    assert not missing, f"add these modules to docs/architecture.md (module table and route): {missing}"
    route = text[:text.index("## Every module")]
    off_route = [path for path in _python_files() if path.startswith(MAPPED_FOLDERS)
                 and not path.endswith("__init__.py") and path not in route
                 and path not in ("kmm_blender/preferences.py", "kmm_blender/doctor.py", "kmm_blender/properties.py",
                                  "kmm_blender/batch.py",
                                  "kmm_blender/build_extension.py")]
    assert not off_route, f"these modules are on the route but not drawn in docs/architecture.md: {off_route}"


def test_every_file_the_map_names_exists():
    named = sorted(set(PATH_TOKEN.findall(_map_text())))
    assert len(named) > 40
    absent = [path for path in named if not (REPO / path).is_file()]
    assert not absent, f"docs/architecture.md names files that do not exist: {absent}"


def test_every_module_belongs_to_one_layer_of_the_table():
    rows = _layer_rows(_map_text())
    assert [name for name, _, _ in rows][:3] == ["motion basics", "data", "model"] and rows[-1][0] == "Blender"
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
    imported = {target for target, _ in _imports("kmm_core/model_bundle.py", names)}
    assert "kmm_core/model/weights.py" in imported and "kmm_core/training/checkpoint.py" not in imported
