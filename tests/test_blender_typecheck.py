# SPDX-License-Identifier: GPL-3.0-or-later
"""mypy over the Blender add-on against fake-bpy-module's stubs (configuration: [tool.mypy] in pyproject.toml).

The repository root is the extension package, so mypy names the modules after the folder holding it; a checkout in
a folder that is not a valid package name ("kmm-motion") would stop mypy.  The test therefore checks the add-on
under the extension's own package name: a temporary folder with `kmm_motion` -> the repository (as Blender imports
it) and `kmm_core` -> the repository's kmm_core (what build_extension.py falls back to when run as a script).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _cache_dir(pytestconfig, tmp_path: Path) -> Path:
    """mypy's cache in pytest's cache folder (a cold run over the bpy stubs takes ~30 s, a warm one ~2 s)."""
    cache = getattr(pytestconfig, "cache", None)  # absent with -p no:cacheprovider
    return cache.mkdir("mypy") if cache is not None else tmp_path / "mypy_cache"


def _stubs_installed() -> bool:
    return any((dist.metadata["Name"] or "").lower().startswith("fake-bpy-module")
               for dist in importlib.metadata.distributions())


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed (pip install -e .[dev])")
@pytest.mark.skipif(not _stubs_installed(), reason="fake-bpy-module is not installed (pip install -e .[dev])")
def test_mypy_finds_no_errors_in_the_add_on(tmp_path, pytestconfig):
    (tmp_path / "kmm_motion").symlink_to(REPO_ROOT, target_is_directory=True)
    (tmp_path / "kmm_core").symlink_to(REPO_ROOT / "kmm_core", target_is_directory=True)
    cache = _cache_dir(pytestconfig, tmp_path)
    completed = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(REPO_ROOT / "pyproject.toml"), "--cache-dir", str(cache),
         "--no-color-output", "kmm_motion/kmm_blender"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    report = (completed.stdout + completed.stderr).strip()
    assert completed.returncode == 0 and "error:" not in report, report
    modules = len(list((REPO_ROOT / "kmm_blender").rglob("*.py")))  # every module of the add-on was checked
    assert f"Success: no issues found in {modules} source files" in report, report


def test_mypy_reports_a_planted_type_error(tmp_path, pytestconfig):
    """The same set-up flags a real mistake: a copy of the add-on with a wrong argument type in keyframe_writer."""
    if importlib.util.find_spec("mypy") is None or not _stubs_installed():
        pytest.skip("mypy or fake-bpy-module is not installed (pip install -e .[dev])")
    package = tmp_path / "kmm_motion"
    package.mkdir()
    (package / "__init__.py").write_text((REPO_ROOT / "__init__.py").read_text())
    (package / "kmm_core").symlink_to(REPO_ROOT / "kmm_core", target_is_directory=True)
    (tmp_path / "kmm_core").symlink_to(REPO_ROOT / "kmm_core", target_is_directory=True)
    addon = package / "kmm_blender"
    addon.mkdir()
    for source in (REPO_ROOT / "kmm_blender").rglob("*.py"):
        copy = addon / source.relative_to(REPO_ROOT / "kmm_blender")
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(source.read_text())
    writer = addon / "takes" / "keyframe_writer.py"
    text = writer.read_text()
    line = "        points.add(len(self.interpolation))\n"
    assert line in text
    writer.write_text(text.replace(line, "        points.add(str(len(self.interpolation)))\n"))
    cache = _cache_dir(pytestconfig, tmp_path)
    completed = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(REPO_ROOT / "pyproject.toml"), "--cache-dir", str(cache),
         "--no-color-output", "kmm_motion/kmm_blender"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "keyframe_writer.py" in completed.stdout and "[arg-type]" in completed.stdout, completed.stdout
