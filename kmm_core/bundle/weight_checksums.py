# SPDX-License-Identifier: GPL-3.0-or-later
"""Checksums of a model bundle's files, so that damaged weights never load silently.

`kmm-train bundle` records in ``bundle.json`` the SHA-256 and size of every file the bundle loads::

    "files": {"generator.safetensors": {"sha256": "3f1c...", "bytes": 3821312}, "generator.json": {...}, ...}

:func:`verify_bundle_files` checks them before any weight is read (``ModelBundle.load``, ``kmm doctor``): a changed
byte anywhere - a disk error, a bad download, 8 KB overwritten with 0xFF - fails with :class:`WeightFileError`
naming the file.  :func:`count_non_finite` finds NaN/infinite weights (``kmm doctor``; ``ModelBundle.load`` refuses
them through ``model.weights.load_weights``).  Hashing the shipped 10 MB bundle takes a few tens of ms.

Torch-free (hashlib; NumPy and ``safetensors.numpy`` for the finiteness check).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..common.checked_path import PathEscapeError, checked_join
from ..common.errors import BundleError

FILES_KEY = "files"
STATISTICS_FILES = ("Mean.npy", "Std.npy")
VOCABULARY_FILES = ("vocabulary.json", "vocabulary.safetensors")
"""Written after the weights (``kmm-train bundle``/``vocabulary``), which then add them to the checksums."""
GAIT_CYCLE_FILES = ("gait_cycles.json", "gait_cycles.safetensors")
"""Real gait cycles (``bundle/gait_cycles.py``), written by ``kmm-train gait-cycles``, checksummed the same way."""
UNCHECKED_BUNDLE_ENV = "KMM_ALLOW_UNCHECKED_BUNDLE"
"""Set to 1 to load a bundle whose bundle.json lists no checksums (one made before they existed, or one whose
``files`` table was removed) unchecked; without it such a bundle is refused."""
REPAIR_ADVICE = ("reinstall the package that shipped this model, or rebuild the bundle with `kmm-train bundle` "
                 "from its run folder")


class WeightFileError(BundleError):
    """A bundle file does not match its recorded checksum or holds non-finite weights (names the file)."""


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def bundle_file_names(components: Iterable[str], folder: str | Path | None = None) -> list[str]:
    """Every file a bundle with these components loads: weights and config of each, the feature statistics, and
    (given the bundle's `folder`) the vocabulary and gait cycle files present in it."""
    names = []
    for component in components:
        names += [f"{component}.safetensors", f"{component}.json"]
    names += list(STATISTICS_FILES)
    if folder is not None:
        names += [name for name in VOCABULARY_FILES + GAIT_CYCLE_FILES if (Path(folder) / name).is_file()]
    return names


def checksum_entries(folder: str | Path, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The ``files`` entry of bundle.json for these files of `folder`."""
    folder = Path(folder)
    return {name: {"sha256": file_sha256(folder / name), "bytes": (folder / name).stat().st_size}
            for name in names}


def verify_bundle_files(folder: str | Path, manifest: Mapping[str, Any], names: Iterable[str] | None = None) -> int:
    """Check every file listed in the manifest's ``files`` against its size and SHA-256, and that every weight
    file of the listed components is covered.  With ``names`` (the files a caller is about to load, e.g.
    ``ModelBundle.load`` without the evaluator) only those are checked and must be covered.  Returns how many files
    were checked.  Raises WeightFileError naming the first bad file, or bundle.json when it lists no checksums
    (a damaged file could not be noticed) unless $KMM_ALLOW_UNCHECKED_BUNDLE is 1 (then 0 files were checked)."""
    folder = Path(folder)
    entries = manifest.get(FILES_KEY)
    manifest_path = folder / "bundle.json"
    if entries is None:
        if unchecked_bundles_allowed():
            return 0
        raise WeightFileError(manifest_path, f"lists no checksums ('{FILES_KEY}'), so a damaged or changed file "
                                             f"could not be noticed: rebuild the bundle with `kmm-train bundle` from "
                                             f"its run folder, or set {UNCHECKED_BUNDLE_ENV}=1 to load it unchecked")
    if not isinstance(entries, dict):
        raise WeightFileError(manifest_path, f"'{FILES_KEY}' must be an object of file name -> checksum")
    wanted = None if names is None else set(names)
    for name in bundle_file_names(manifest.get("components", [])) if wanted is None else sorted(wanted):
        if name.endswith(".safetensors") and name not in entries:
            raise WeightFileError(manifest_path, f"'{FILES_KEY}' has no checksum for {name}")
    checked = 0
    for name, entry in entries.items():
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise WeightFileError(manifest_path, f"'{FILES_KEY}': {name!r} is not a file name of the bundle folder")
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) \
                or not isinstance(entry.get("bytes"), int):
            raise WeightFileError(manifest_path, f"'{FILES_KEY}'.{name}: expected {{\"sha256\": ..., \"bytes\": ...}}")
        if wanted is not None and name not in wanted:
            continue
        checked += 1
        try:
            path = checked_join(folder, name, single=True, where=f"{manifest_path}, '{FILES_KEY}'")
        except PathEscapeError as error:
            raise WeightFileError(manifest_path, f"'{FILES_KEY}': {name!r} {error.reason}") from None
        if not path.is_file():
            raise WeightFileError(path, "missing (listed in bundle.json)")
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise WeightFileError(path, f"is {size} bytes, bundle.json says {entry['bytes']}: the file is damaged or "
                                        f"incomplete; {REPAIR_ADVICE}")
        actual = file_sha256(path)
        if actual != entry["sha256"].lower():
            raise WeightFileError(path, f"SHA-256 {actual[:16]}... does not match bundle.json's "
                                        f"{entry['sha256'][:16]}...: the file is damaged or was changed; {REPAIR_ADVICE}")
    return checked


def unchecked_bundles_allowed() -> bool:
    """Whether the user opted out of checksums ($KMM_ALLOW_UNCHECKED_BUNDLE=1) for bundles that list none."""
    return os.environ.get(UNCHECKED_BUNDLE_ENV, "").strip() == "1"


def verify_vocabulary_files(folder: str | Path, manifest: Mapping[str, Any]) -> int:
    """Check the vocabulary files (read by `kmm vocab` and the out-of-vocabulary check, not by ``ModelBundle.load``)
    against their checksums, when bundle.json lists them (bundles whose vocabulary came first list none)."""
    listed = [name for name in VOCABULARY_FILES if name in (manifest.get(FILES_KEY) or {})]
    return verify_bundle_files(folder, manifest, listed) if listed else 0


def count_non_finite(path: str | Path) -> tuple[int, str | None]:
    """(number of NaN/infinite values, the first tensor holding one) in a .safetensors file, read with NumPy."""
    import numpy as np
    from safetensors.numpy import load_file

    total, first = 0, None
    for key, values in load_file(str(path)).items():
        if values.dtype.kind == "f":
            bad = int(values.size - np.count_nonzero(np.isfinite(values)))
            if bad and first is None:
                first = key
            total += bad
    return total, first
