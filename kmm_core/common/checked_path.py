# SPDX-License-Identifier: GPL-3.0-or-later
"""The one checked path join: every path built from data (a clip name of a dataset's index.csv or split file, a
file listed in a captions file or clips.csv, a file name in a bundle's bundle.json) goes through
:func:`checked_join`, so that no name in a file can make the backend read or write outside the folder it belongs
to (a row named ``../../../../some/where`` once copied a file from outside the dataset into a bundle).

A name is refused when it is not a string, is empty, holds NUL or a backslash, is absolute, has a ``.`` or ``..``
part, or when the joined path, with symlinks resolved, is not inside the root (resolved too).  The error names
where the name came from (file, line, field).  Torch-free and NumPy-free.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from .errors import KMMError

MAX_NAME_CHARS = 1024
"""Longest relative name (a clip name, a listed file) accepted."""


class PathEscapeError(KMMError, ValueError):
    """A name from a data file would name a path outside its folder (or is no usable name at all)."""

    def __init__(self, where: str, name: object, reason: str):
        self.where = where
        self.name = name
        self.reason = reason
        shown = repr(name) if not isinstance(name, str) or len(name) <= 200 else repr(name[:200] + "...")
        super().__init__(f"{where}: {shown} {reason}")


def check_relative_name(name: object, where: str, *, single: bool = False) -> str:
    """`name` if it is a safe relative name (see the module docstring; `single`: one path part, no '/')."""
    if not isinstance(name, str) or not name:
        raise PathEscapeError(where, name, "is not a file name")
    if len(name) > MAX_NAME_CHARS:
        raise PathEscapeError(where, name, f"is longer than {MAX_NAME_CHARS} characters")
    if "\0" in name or "\\" in name:
        raise PathEscapeError(where, name, "holds a NUL or a backslash, which a file name may not")
    pure = PurePosixPath(name)
    if pure.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise PathEscapeError(where, name, "is an absolute path; a name relative to its folder is expected")
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise PathEscapeError(where, name, "has an empty, '.' or '..' part: it must stay inside its folder")
    if single and len(parts) > 1:
        raise PathEscapeError(where, name, "must be a single file name, without '/'")
    return name


def checked_join(root: str | os.PathLike, name: object, *, where: str, suffix: str = "",
                 single: bool = False) -> Path:
    """``root / (name + suffix)``, refused (PathEscapeError naming `where`) unless `name` is a safe relative name
    and the result, symlinks resolved, lies inside `root`."""
    check_relative_name(name, where, single=single)
    root = Path(root)
    path = root / f"{name}{suffix}"
    try:
        inside = path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError) as error:  # a symlink loop
        raise PathEscapeError(where, name, f"cannot be resolved inside {root}: {error}") from None
    if not inside:
        raise PathEscapeError(where, name, f"leads outside {root} (through a symbolic link)")
    return path


def resolved(path: str | os.PathLike, where: str) -> Path:
    """``path`` with symlinks resolved, or KMMError naming `where` and the path when it cannot be (a symlink loop,
    a name the file system refuses): never a traceback from ``Path.resolve``."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError) as error:
        raise KMMError(f"{where}: {os.fspath(path)!r} cannot be resolved: {error}") from None


def shown_path(path: str | os.PathLike) -> str:
    """``path`` as text that can be printed and written to a UTF-8 report: bytes of a file name that are not valid
    UTF-8 (``Wal\\xffk.bvh``, which Python holds as lone surrogates) shown as ``\\xff`` instead of failing the
    write that quotes them."""
    return os.fsencode(os.fspath(path)).decode("utf-8", "backslashreplace")


def is_valid_utf8_name(path: str | os.PathLike) -> bool:
    """Whether every byte of ``path`` is valid UTF-8 (a name that can be written into a dataset's files)."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
