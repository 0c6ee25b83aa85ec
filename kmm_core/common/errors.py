# SPDX-License-Identifier: GPL-3.0-or-later
"""Error types that name what is wrong and where."""

from __future__ import annotations

import reprlib
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


class BundleError(InputFileError):
    """A bundle folder exists but a file in it is missing or malformed (names the file).  Shared by the bundle's
    loader (bundle/model_bundle.py) and its checksums (bundle/weight_checksums.py), so it lives below both."""


class ConfigError(KMMError, ValueError):
    """A configuration value is invalid: names the key."""


class EnvironmentSettingError(ConfigError):
    """An environment variable of the process holds a value the backend cannot use (KMM_SELECTIVE_SCAN,
    KMM_SCAN_MARCH): names the variable and its value.  Not a request's fault: the worker says so."""


class InputTensorError(KMMError, ValueError):
    """A tensor argument has the wrong shape, dtype or content: names the argument."""


def digit_count(value: int) -> int:
    """How many decimal digits an integer has, exactly, even beyond what str() may convert (4300 digits).  An integer
    that stands for a longer one read from a request (the worker protocol's `_LongInteger`) says so in `digits`."""
    stated = getattr(value, "digits", None)
    if isinstance(stated, int):
        return stated
    magnitude = abs(value)
    if magnitude.bit_length() < 13_000:  # below str()'s limit: exact
        return len(str(magnitude))
    digits = int(magnitude.bit_length() * 0.30102999566398120)  # within one of the truth; correct it exactly
    return digits + 1 if magnitude >= 10 ** digits else digits


class _ShortRepr(reprlib.Repr):
    """reprlib without its two traps: huge integers (repr of more than 4300 digits raises ValueError) and none."""

    def repr_int(self, value: int, level: int) -> str:
        if value.bit_length() > 128:
            return f"<a {digit_count(value)}-digit number>"
        return repr(value)


_SHORT = _ShortRepr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxtuple = 3, 4, 4, 4
_SHORT.maxstring, _SHORT.maxother = 80, 80


def short_repr(value: object, limit: int = 80) -> str:
    """A repr of a value from an input for an error message: bounded in length and depth whatever the value (a
    3000-deep list, a 400-digit number, a 10 MB string), never raising."""
    try:
        text = _SHORT.repr(value)
    except Exception:  # noqa: BLE001 - a message must never fail
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
