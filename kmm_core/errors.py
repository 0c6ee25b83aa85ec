# SPDX-License-Identifier: GPL-3.0-or-later
"""Error types that name what is wrong and where."""

from __future__ import annotations


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
