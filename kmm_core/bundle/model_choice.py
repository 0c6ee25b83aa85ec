# SPDX-License-Identifier: GPL-3.0-or-later
"""Which model: a ``--checkpoint`` value (or the worker's ``load.checkpoint``) -> a bundle folder, and the one-line
licence of a bundle.  Torch-free.

`resolve_model` is the one resolver every command uses (``kmm generate/edit/vocab/doctor``, the worker's ``load``,
``kmm-train eval --checkpoint/--compare/--evaluator``)::

    None or ""      the default model's folder, kmm-small (even when absent: loading then says how to get one)
    "default"       kmm-small            (trained on everything usable; non-commercial)
    "open"          kmm-small-open       (trained on commercially usable data only)
    "kmm-small"     any shipped bundle's folder name
    a folder path   that folder (anything with a path separator, "~", or an existing folder not named as above)

Shipped bundles live in `model_bundle.checkpoints_root()` (``kmm_core/checkpoints``, or ``$KMM_CHECKPOINTS_DIR``;
tests and studios with their own model shelf set it).  A name that is not there raises `UnknownModelError`
naming what was asked and listing the bundles that exist.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .model_bundle import BUNDLE_FILE, DEFAULT_BUNDLE_NAME, ModelMissingError, checkpoints_root

OPEN_BUNDLE_NAME = "kmm-small-open"
MODEL_ALIASES = {"default": DEFAULT_BUNDLE_NAME, "open": OPEN_BUNDLE_NAME}


class UnknownModelError(ModelMissingError):
    """A model name that is neither an alias nor a shipped bundle (or whose bundle is not installed)."""


def installed_bundles(root: str | Path | None = None) -> list[str]:
    """Names of the bundle folders (holding bundle.json) in the checkpoints root, sorted."""
    folder = Path(root) if root is not None else checkpoints_root()
    if not folder.is_dir():
        return []
    return sorted(entry.name for entry in folder.iterdir() if (entry / BUNDLE_FILE).is_file())


def _looks_like_path(choice: str) -> bool:
    return os.sep in choice or "/" in choice or (os.altsep is not None and os.altsep in choice) \
        or choice.startswith("~") or choice in (".", "..")


def resolve_model(choice: str | Path | None, root: str | Path | None = None) -> Path:
    """The bundle folder of a model choice (see the module docstring).  A name resolves only to a folder that
    holds bundle.json; a path is returned as given (``ModelBundle.load``/``read_manifest`` then check it)."""
    base = Path(root) if root is not None else checkpoints_root()
    if choice is None or (isinstance(choice, str) and not choice.strip()):
        return base / DEFAULT_BUNDLE_NAME  # missing: read_manifest says how to train or get one
    if isinstance(choice, Path):
        return choice.expanduser()
    choice = choice.strip()
    if _looks_like_path(choice):
        return Path(choice).expanduser()
    name = MODEL_ALIASES.get(choice.lower(), choice)
    if (base / name / BUNDLE_FILE).is_file():
        return base / name
    if name == choice and Path(choice).is_dir():   # a folder in the current directory, e.g. "bundle"
        return Path(choice)
    available = installed_bundles(base)
    asked = f"{choice!r} (= {name})" if name != choice else repr(choice)
    aliases = ", ".join(f"{alias} = {target}" for alias, target in MODEL_ALIASES.items())
    raise UnknownModelError(
        f"model {asked}: no such bundle in {base}. Installed: {', '.join(available) or 'none'}. Give one of those "
        f"names, {aliases}, or a bundle folder path"
        + (" (kmm-small-open ships with the package from the release that trains it; see training/README.md)"
           if name == OPEN_BUNDLE_NAME else "") + ".")


def licence_line(manifest: dict[str, Any]) -> str:
    """One line on what the weights may be used for, from bundle.json: its short ``licence`` when the bundle has
    the licence fields; for bundles made before them, derived from the sources its dataset records."""
    if "licence_note" in manifest and isinstance(manifest.get("licence"), str):
        return manifest["licence"]
    from ..data.source_licences import UnknownSourceError, combined_licence

    sources = (manifest.get("dataset") or {}).get("sources") or []
    try:
        return combined_licence([str(kind) for kind in sources]).licence
    except UnknownSourceError:
        return str(manifest.get("licence") or "unknown licence")


def model_summary(path: str | Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """name, licence line and commercial_use of a bundle (the worker's load result, the panel, kmm doctor)."""
    commercial = manifest.get("commercial_use")
    if not isinstance(commercial, bool):
        commercial = licence_line(manifest).endswith("commercial use allowed")
    return {"name": str(manifest.get("name") or Path(path).name), "licence": licence_line(manifest),
            "commercial_use": commercial}
