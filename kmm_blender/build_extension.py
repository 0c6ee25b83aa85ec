# SPDX-License-Identifier: GPL-3.0-or-later
"""Validate and build the extension zip with Blender's own extension tool (`blender_ext.py`).

Blender ships the tool that validates manifests and builds extension packages as a standalone script inside every
Blender (and inside the `bpy` wheel).  Running that exact script, rather than zipping files ourselves, means the
package we test is the package Blender's extension platform would accept.

What goes in: only the files git tracks (a stray `demo2.bvh` in the working tree never ships), copied into a staging
folder without the code the worker never imports (training, evaluation, data preparation; it reads weights through
`model/weights.py`) and without the evaluator's weights (`bundle.json` in the zip then lists what the zip
holds); the manifest's `paths_exclude_pattern` then drops the development files.

    python -m kmm_blender.build_extension [--output-dir dist] [--blender-ext PATH] [--validate-only]

This module never imports bpy (importing it costs seconds and needs the wheel); it only locates the script.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

try:
    from ..kmm_core.common.errors import KMMError
except ImportError:  # run as `python -m kmm_blender.build_extension` from the repository root (top-level package)
    from kmm_core.common.errors import KMMError  # type: ignore[no-redef]

REPO_ROOT = Path(__file__).resolve().parents[1]
MANIFEST_NAME = "blender_manifest.toml"
# Where the tool lives inside a Blender installation or the bpy wheel, below "<version>/scripts".
_TOOL_RELATIVE = Path("addons_core") / "bl_pkg" / "cli" / "blender_ext.py"


class ExtensionBuildError(KMMError):
    """Blender's extension tool rejected the package or could not be found."""


def find_blender_ext_script(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Locate `blender_ext.py`: an explicit path, $KMM_BLENDER_EXT, or the installed bpy wheel (not imported)."""
    candidates: list[Path] = []
    for value in (explicit, os.environ.get("KMM_BLENDER_EXT")):
        if value:
            path = Path(value)
            if not path.is_file():
                raise ExtensionBuildError(f"blender_ext.py not found at {path}")
            return path
    spec = importlib.util.find_spec("bpy")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            pattern = str(Path(location) / "*" / "scripts" / _TOOL_RELATIVE)
            candidates.extend(Path(p) for p in sorted(glob.glob(pattern), reverse=True))
    if not candidates:
        raise ExtensionBuildError(
            "cannot find Blender's blender_ext.py: install the bpy wheel (pip install bpy) or pass --blender-ext "
            "<blender>/<version>/scripts/addons_core/bl_pkg/cli/blender_ext.py"
        )
    return candidates[0]


# Below kmm_core/: folders the worker never imports (weights are read by model/weights.py, not training/).
WORKER_UNUSED_FOLDERS = ("kmm_core/training/", "kmm_core/evaluation/", "kmm_core/data/")
DROPPED_COMPONENTS = ("evaluator",)  # bundle components the worker never loads for generation


def tracked_files(source_dir: str | os.PathLike[str] = REPO_ROOT) -> list[str]:
    """The files git tracks below `source_dir` (relative, "/"-separated), present in the working tree."""
    try:
        completed = subprocess.run(["git", "-C", str(source_dir), "ls-files", "-z", "--cached", "."],
                                   capture_output=True, check=False)
    except OSError as error:
        raise ExtensionBuildError(f"cannot run git to list the files to pack: {error}") from None
    if completed.returncode != 0:
        raise ExtensionBuildError(f"{source_dir} is not a git checkout (the zip is built from the files git tracks):"
                                  f" {completed.stderr.decode(errors='replace').strip()}")
    names = [name for name in completed.stdout.decode().split("\0") if name]
    return [name for name in names if (Path(source_dir) / name).is_file()]


def shipped(name: str) -> bool:
    """Whether a tracked file goes into the zip (before the manifest's own exclude patterns)."""
    if name.startswith(WORKER_UNUSED_FOLDERS):
        return False
    parts = name.split("/")
    return not (len(parts) == 4 and parts[:2] == ["kmm_core", "checkpoints"]
                and parts[3].split(".")[0] in DROPPED_COMPONENTS)


def stage_sources(source_dir: str | os.PathLike[str], stage: Path) -> list[str]:
    """Copy the shipped tracked files into `stage`; each shipped bundle.json lists only the components (and the
    checksums of the files) shipped."""
    names = [name for name in tracked_files(source_dir) if shipped(name)]
    for name in names:
        target = stage / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(source_dir) / name, target)
    for manifest_path in stage.glob("kmm_core/checkpoints/*/bundle.json"):
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        manifest["components"] = [c for c in manifest.get("components", []) if c not in DROPPED_COMPONENTS]
        if isinstance(manifest.get("files"), dict):  # checksums (kmm_core/bundle/weight_checksums.py) of shipped files only
            manifest["files"] = {name: entry for name, entry in manifest["files"].items()
                                 if name.split(".")[0] not in DROPPED_COMPONENTS}
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return names


def read_manifest(source_dir: str | os.PathLike[str] = REPO_ROOT) -> dict:
    path = Path(source_dir) / MANIFEST_NAME
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as error:
        raise ExtensionBuildError(f"{path}: manifest missing") from error
    except tomllib.TOMLDecodeError as error:
        raise ExtensionBuildError(f"{path}: invalid TOML: {error}") from error


def _run_tool(tool: Path, arguments: list[str]) -> str:
    completed = subprocess.run(
        [sys.executable, str(tool), *arguments], capture_output=True, text=True, check=False
    )
    output = (completed.stdout + completed.stderr).strip()
    # The tool reports some failures on stdout with exit status 0, so look for its error prefix too.
    if completed.returncode != 0 or "Error:" in output or "FATAL_ERROR" in output:
        raise ExtensionBuildError(f"blender_ext.py {arguments[0]} failed:\n{output}")
    return output


def validate(source_dir: str | os.PathLike[str] = REPO_ROOT, blender_ext: str | None = None) -> str:
    """Validate the manifest (and the package layout) of `source_dir`; returns the tool's report."""
    return _run_tool(find_blender_ext_script(blender_ext), ["validate", str(Path(source_dir))])


def build(
    output_dir: str | os.PathLike[str] = REPO_ROOT / "dist",
    source_dir: str | os.PathLike[str] = REPO_ROOT,
    blender_ext: str | None = None,
) -> Path:
    """Build `<id>-<version>.zip` (from the staged tracked files, see the module doc) into `output_dir`."""
    manifest = read_manifest(source_dir)
    output = Path(output_dir).resolve() / f"{manifest['id']}-{manifest['version']}.zip"
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.exists():
        output.unlink()  # the tool refuses to overwrite silently-stale packages on some versions
    tool = find_blender_ext_script(blender_ext)
    with tempfile.TemporaryDirectory(prefix="kmm_extension_") as temporary:
        stage = Path(temporary) / "kmm_motion"
        stage_sources(source_dir, stage)
        _run_tool(tool, ["build", "--source-dir", str(stage), "--output-filepath", str(output)])
    if not output.is_file():
        raise ExtensionBuildError(f"blender_ext.py build reported success but wrote no {output}")
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kmm_blender.build_extension", description=__doc__.splitlines()[0])
    parser.add_argument("--source-dir", default=str(REPO_ROOT), help="folder holding blender_manifest.toml")
    parser.add_argument("--output-dir", default=str(REPO_ROOT / "dist"), help="where the zip goes (default dist/)")
    parser.add_argument("--blender-ext", default=None, help="path of Blender's blender_ext.py (default: from bpy)")
    parser.add_argument("--validate-only", action="store_true", help="validate, do not build")
    args = parser.parse_args(argv)
    try:
        print(validate(args.source_dir, args.blender_ext))
        if not args.validate_only:
            print(build(args.output_dir, args.source_dir, args.blender_ext))
    except KMMError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
