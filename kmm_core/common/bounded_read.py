# SPDX-License-Identifier: GPL-3.0-or-later
"""The one reader of input files: every JSON / TOML / text file the backend reads comes through here.

A user can hand the backend any path, so before a byte is read the file must be a *regular* file (not a FIFO that
blocks forever, not /dev/zero behind a symlink that never ends, not a directory), no larger than its kind's limit
(``limits.MAX_TEXT_FILE_BYTES``, ``limits.MAX_MOTION_TEXT_BYTES``), and JSON / TOML may not nest deeper than
``limits.MAX_NESTING_DEPTH`` (a deep file otherwise ends in a RecursionError deep inside a parser, or later inside
the code walking the data).  JSON's non-finite spellings (``NaN``, ``Infinity``, ``1e999``) are refused unless a
reader asks for them (reports of our own runs may hold a NaN metric).  Every refusal is an ``InputFileError`` (or
the caller's subclass) naming the file.

* :func:`read_bytes` / :func:`read_text` - a bounded read of a regular file;
* :func:`parse_json` / :func:`parse_toml` - text already in memory (a worker line, a stored timeline) -> data;
* :func:`read_json` / :func:`read_toml` - both at once.

Torch-free and NumPy-free: the Blender add-on may use it too.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any

from .errors import InputFileError
from .limits import MAX_NESTING_DEPTH, MAX_TEXT_FILE_BYTES

ErrorClass = type[InputFileError]


def _size_text(size: int) -> str:
    return f"{size / 2**20:.0f} MiB" if size >= 2**20 else f"{size} bytes"


def read_bytes(path: str | os.PathLike, what: str = "file", *, limit: int = MAX_TEXT_FILE_BYTES,
               error_class: ErrorClass = InputFileError) -> bytes:
    """The bytes of the regular file `path` (symlinks followed), at most `limit` of them; anything else raises
    `error_class` naming the file and `what` it was meant to be."""
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise error_class(path, f"the {what} is not a regular file ({_kind(info.st_mode)})")
        if info.st_size > limit:
            raise error_class(path, f"the {what} is {_size_text(info.st_size)}, more than the "
                                    f"{_size_text(limit)} allowed")
        descriptor = os.open(path, flags)  # non-blocking: a FIFO swapped in after the stat does not hang the open
    except OSError as error:
        raise error_class(path, f"cannot read the {what}: {error.strerror or error}") from None
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):  # what was opened, not what was stat'ed
            raise error_class(path, f"the {what} is not a regular file ({_kind(info.st_mode)})")
        chunks, total = [], 0
        while True:
            chunk = os.read(descriptor, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise error_class(path, f"the {what} is more than the {_size_text(limit)} allowed")
        return b"".join(chunks)
    except OSError as error:
        raise error_class(path, f"cannot read the {what}: {error.strerror or error}") from None
    finally:
        os.close(descriptor)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a plain file"


def read_text(path: str | os.PathLike, what: str = "file", *, limit: int = MAX_TEXT_FILE_BYTES,
              encoding: str = "utf-8", errors: str = "strict", error_class: ErrorClass = InputFileError) -> str:
    """:func:`read_bytes` decoded; text that is not `encoding` raises `error_class` with the line of the first bad
    byte (unless `errors` is "replace")."""
    raw = read_bytes(path, what, limit=limit, error_class=error_class)
    try:
        return raw.decode(encoding, errors)
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise error_class(path, f"the {what} is not {encoding.upper()} text", line) from None


def nesting_depth(data: Any) -> int:
    """How deeply lists/dicts nest in `data` (a scalar: 0), without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list | tuple):
            children = value
        else:
            continue
        deepest = max(deepest, depth)
        if depth > MAX_NESTING_DEPTH:  # enough to refuse; do not walk a huge tree
            return depth
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _check_depth(data: Any, path: object, what: str, error_class: ErrorClass, max_depth: int) -> Any:
    depth = nesting_depth(data)
    if depth > max_depth:
        raise error_class(path, f"the {what} nests lists/objects more than {max_depth} deep")
    return data


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows here")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {text[:40]} is too large")
    return number


def parse_json(text: str, path: object, what: str = "file", *, error_class: ErrorClass = InputFileError,
               max_depth: int = MAX_NESTING_DEPTH, allow_non_finite: bool = False) -> Any:
    """JSON text (from the file `path`, named in errors) -> data, nesting at most `max_depth` deep.  Syntax errors
    name the line; NaN / Infinity / numbers beyond a float are refused unless `allow_non_finite`."""
    hooks: dict[str, Any] = {} if allow_non_finite else {"parse_constant": _reject_constant,
                                                         "parse_float": _finite_float}
    try:
        data = json.loads(text, **hooks)
    except json.JSONDecodeError as error:
        raise error_class(path, f"{what} is not valid JSON: {error.msg} (column {error.colno})",
                          error.lineno) from None
    except RecursionError:
        raise error_class(path, f"the {what} nests lists/objects too deeply") from None
    except ValueError as error:  # a refused constant, an overlong float or an integer of too many digits
        raise error_class(path, f"{what} is not valid JSON: {error}") from None
    return _check_depth(data, path, what, error_class, max_depth)


def parse_toml(text: str, path: object, what: str = "file", *, error_class: ErrorClass = InputFileError,
               max_depth: int = MAX_NESTING_DEPTH) -> Any:
    """TOML text -> data (a dict), nesting at most `max_depth` deep; syntax errors name the line."""
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        # Python 3.11's TOMLDecodeError has no line attribute; its message ends "(at line L, column C)".
        match = re.search(r"\(at line (\d+), column \d+\)", str(error))
        raise error_class(path, f"{what} is not valid TOML: {error}",
                          int(match.group(1)) if match else None) from None
    except RecursionError:
        raise error_class(path, f"the {what} nests arrays/tables too deeply") from None
    except ValueError as error:  # an integer of too many digits
        raise error_class(path, f"{what} is not valid TOML: {error}") from None
    return _check_depth(data, path, what, error_class, max_depth)


def read_json(path: str | os.PathLike, what: str = "file", *, error_class: ErrorClass = InputFileError,
              limit: int = MAX_TEXT_FILE_BYTES, allow_non_finite: bool = False) -> Any:
    """A bounded JSON input file -> data (see :func:`read_text`, :func:`parse_json`)."""
    text = read_text(path, what, limit=limit, error_class=error_class)
    return parse_json(text, path, what, error_class=error_class, allow_non_finite=allow_non_finite)


def read_toml(path: str | os.PathLike, what: str = "file", *, error_class: ErrorClass = InputFileError,
              limit: int = MAX_TEXT_FILE_BYTES) -> Any:
    """A bounded TOML input file -> data (see :func:`read_text`, :func:`parse_toml`)."""
    text = read_text(path, what, limit=limit, error_class=error_class)
    return parse_toml(text, path, what, error_class=error_class)
