# SPDX-License-Identifier: GPL-3.0-or-later
"""Error types that name what is wrong and where."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


class KMMError(Exception):
    """Base class of every error the project raises on bad input or state."""


class InputFileError(KMMError, ValueError):
    """A file could not be read: names the file and, where known, the line."""

    def __init__(self, path: object, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        self.reason = message
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class ConfigError(KMMError, ValueError):
    """A configuration value is invalid: names the key."""


class InputTensorError(KMMError, ValueError):
    """A tensor argument has the wrong shape, dtype or content: names the argument."""


def read_json_file(path: str | Path, what: str, error_class: type[InputFileError] = InputFileError,
                   allow_non_finite: bool = False) -> Any:
    """Parse a JSON input file through the one bounded reader (``bounded_read.read_json``: regular files only, size
    and nesting capped); a missing/unreadable/oversized file or bad JSON raises ``error_class`` (an InputFileError)
    naming `what` (and the line of a syntax error)."""
    from .bounded_read import read_json

    return read_json(path, what, error_class=error_class, allow_non_finite=allow_non_finite)


def open_npz_archive(path: Path, what: str, error_class: Callable[..., KMMError]) -> Any:
    """Open a ``.npz`` archive without pickle (use it in a ``with``); an unreadable file, or a ``.npy`` holding a
    single array, raises ``error_class(reason, path=path)`` naming `what` ("file", "model file")."""
    import zipfile

    import numpy as np

    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise error_class(f"not a readable .npz {what} ({exc})", path=path) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise error_class("not a .npz archive (a single array?)", path=path)
    return archive
