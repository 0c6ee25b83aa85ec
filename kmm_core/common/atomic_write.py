# SPDX-License-Identifier: GPL-3.0-or-later
"""Write output files so that a failure never destroys a good one: every writer of the project goes through here.

A file is written under a temporary name in its own folder, flushed and fsynced, given the mode the user's umask
asks for (``0o666 & ~umask``, as a plain ``open`` would), and only then renamed over the target with ``os.replace``
(atomic on POSIX and Windows).  When anything fails - most often "No space left on device" - the temporary file is
removed, the old file stays as it was, and :class:`OutputWriteError` says in one line which file and why.

* :func:`atomic_open` - a file object to write into (``np.savez``, ``json.dump``, text);
* :func:`atomic_path` - a temporary *path* with the target's suffix, for libraries that insist on writing a named
  file themselves (safetensors, matplotlib's animation writers, which pick the format from the suffix);
* :func:`write_text_atomic` / :func:`write_bytes_atomic` - the one-call versions;
* :func:`atomic_directory` - a whole folder built under a temporary name and renamed into place when complete
  (``kmm-train prepare``), so a killed run never leaves half a dataset where a complete one is expected;
* :func:`check_output_file` / :func:`check_output_folder` - find a read-only folder or a directory given as an
  output file *before* minutes of work, not after.

Torch-free and NumPy-free: the Blender add-on uses it too.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .errors import KMMError

_TEMP_MARK = ".tmp"


class OutputWriteError(KMMError):
    """An output could not be written (disk full, no permission, read-only file system, ...): names the file and
    the system's reason; any previous file of that name is unchanged."""

    def __init__(self, path: object, reason: str, error_number: int | None = None):
        self.path = str(path)
        self.reason = reason
        self.errno = error_number
        super().__init__(f"{self.path}: cannot write: {reason}")

    @classmethod
    def from_os_error(cls, path: object, error: OSError, kept_old: bool = True) -> OutputWriteError:
        reason = os_error_reason(error, Path(str(path)).parent)
        if kept_old and Path(str(path)).exists():
            reason += " (the existing file is unchanged)"
        return cls(path, reason, error.errno)


def os_error_reason(error: OSError, folder: Path) -> str:
    """The system's reason for a failed write.  Some writers (NumPy's ``tofile``) raise an OSError without errno
    ("47603 requested and 8160 written"): when the file system has no free space left, say so."""
    if error.strerror:
        return error.strerror
    try:
        stats = os.statvfs(folder)
        full = stats.f_bavail == 0
    except (OSError, AttributeError):  # no statvfs on Windows
        full = False
    detail = str(error) or type(error).__name__
    return f"{os.strerror(errno.ENOSPC)} ({detail})" if full else detail


class OutputPathError(KMMError, ValueError):
    """An output path cannot name a file to write: a directory, or a folder that does not exist."""


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux: /proc/self/status)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no race-free way elsewhere: set and restore at once
    os.umask(mask)
    return mask


STALE_TEMPORARY_SECONDS = 30 * 60
"""A temporary file of ours untouched for this long belongs to a writer that was killed (a worker killed while
saving): the next write into its folder removes it."""
_SWEEP_INTERVAL_SECONDS = 60.0
_TEMPORARY_NAME = re.compile(r"^\..*\.[a-z0-9_]{8}" + re.escape(_TEMP_MARK) + r"(\.[A-Za-z0-9]{1,16})?$")
"""Our temporary names only (``tempfile.mkstemp(prefix=".<stem>.", suffix=".tmp<suffix>")``: 8 random characters
of ``[a-z0-9_]``), never another program's file."""
_last_sweep: dict[str, float] = {}


def is_our_temporary_name(name: str) -> bool:
    """Whether `name` is the name of a temporary file this module makes (``.<stem>.<8 random>.tmp<suffix>``)."""
    return bool(_TEMPORARY_NAME.match(name))


def remove_stale_temporaries(folder: str | os.PathLike, older_than: float = STALE_TEMPORARY_SECONDS) -> list[Path]:
    """Remove the temporary files of ours in `folder` (our naming pattern, regular files, owned by this user, not
    symlinks) last modified more than `older_than` seconds ago: leftovers of a writer killed mid-write.  Files
    of a write in progress are younger; nothing else is touched; failures are ignored.  Returns what was removed."""
    removed = []
    now = time.time()
    uid = os.getuid() if hasattr(os, "getuid") else None
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(".") or not is_our_temporary_name(entry.name):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode) or (uid is not None and info.st_uid != uid):
                continue
            if now - info.st_mtime > older_than:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def _sweep(folder: Path) -> None:
    """:func:`remove_stale_temporaries` of `folder`, at most once a minute per folder and process."""
    key = os.path.abspath(folder)
    now = time.monotonic()
    if now - _last_sweep.get(key, -math.inf) < _SWEEP_INTERVAL_SECONDS:
        return
    _last_sweep[key] = now
    remove_stale_temporaries(folder)


def _temporary_file(path: Path) -> tuple[int, Path]:
    """An open descriptor and name of a new temporary file beside `path`, keeping its suffix (stale temporaries
    of killed writers in that folder are removed first)."""
    _sweep(path.parent)
    handle, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f"{_TEMP_MARK}{path.suffix}", dir=path.parent)
    return handle, Path(name)


def fsync_directory(folder: Path) -> None:
    """Make a rename durable (POSIX); directories cannot be opened this way on Windows, where renames are durable."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _finish(temporary: Path, path: Path) -> None:
    """fsync the finished temporary file, give it the umask's mode and rename it over `path`."""
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.chmod(temporary, 0o666 & ~current_umask())
    os.replace(temporary, path)
    fsync_directory(path.parent)


def _check_folder(path: Path) -> None:
    if path.is_dir():
        raise OutputPathError(f"{path}: is a folder; give a file name")
    if not path.parent.is_dir():
        raise OutputPathError(f"{path}: the folder {path.parent} does not exist")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix) for the caller to write; rename it over `path` when the
    block ends without error.  On any error the temporary file is removed and `path` is untouched; an OSError
    becomes :class:`OutputWriteError`."""
    path = Path(path)
    _check_folder(path)
    try:
        handle, temporary = _temporary_file(path)
        os.close(handle)
    except OSError as error:
        raise OutputWriteError.from_os_error(path, error) from None
    try:
        yield temporary
        _finish(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise OutputWriteError.from_os_error(path, error) from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None,
                newline: str | None = None) -> Iterator[IO[Any]]:
    """Yield a file object (`mode` "wb" or "w") whose content replaces `path` only when the block ends without
    error (see :func:`atomic_path`)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', got {mode!r}")
    if mode == "w" and encoding is None:
        encoding = "utf-8"
    with atomic_path(path) as temporary, open(temporary, mode, encoding=encoding, newline=newline) as stream:
        yield stream
        stream.flush()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_open(path, "wb") as stream:
        stream.write(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    with atomic_open(path, "w", encoding=encoding, newline="") as stream:
        stream.write(text)
    return Path(path)


def check_output_file(path: str | os.PathLike) -> Path:
    """Fail now, not after the work, when `path` cannot be written: a folder, a missing folder (OutputPathError),
    or a folder we may not create files in (OutputWriteError).  Leaves no file behind."""
    path = Path(path)
    _check_folder(path)
    check_output_folder(path.parent, create=False)
    if path.is_file() and not os.access(path, os.W_OK):
        raise OutputWriteError(path, "the existing file is read-only", errno.EACCES)
    return path


def check_output_folder(folder: str | os.PathLike, create: bool = True) -> Path:
    """Create `folder` if asked and prove that files can be created in it (a file is made and removed again)."""
    folder = Path(folder)
    try:
        if folder.exists() and not folder.is_dir():  # mkdir would say only "File exists"
            raise OutputPathError(f"{folder}: is a file, not a folder")
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        if not folder.is_dir():
            raise OutputPathError(f"{folder}: not a folder")
        _sweep(folder)
        handle, probe = tempfile.mkstemp(prefix=".kmm-write-check.", suffix=_TEMP_MARK, dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise OutputWriteError(folder, os_error_reason(error, folder), error.errno) from None
    return folder


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, replace: bool = False,
                     owned_names: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield a new empty temporary folder beside `path`; when the block ends without error it becomes `path`.

    With `replace`, each entry of the new folder replaces the entry of that name in an existing `path` (the old one
    is renamed aside, then deleted) once the new folder is complete, and so do the `owned_names` the new folder
    lacks (the writer's own files of an earlier run); other entries of `path` stay.  Without it an
    existing non-empty `path` is an error.  On failure the temporary folder is deleted and `path` is
    as it was; an OSError becomes :class:`OutputWriteError`.  Temporary folders of runs that were killed are named
    ``.<name>.partial-<pid>-...`` and removed by the next run whose process is not theirs.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{path}: exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not replace:
        raise OutputPathError(f"{path}: the folder is not empty")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(path)
        temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-{os.getpid()}-", dir=path.parent))
        os.chmod(temporary, 0o777 & ~current_umask())
    except OSError as error:
        raise OutputWriteError(path, os_error_reason(error, path.parent), error.errno) from None
    try:
        yield temporary
        if path.is_dir() and any(path.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-{os.getpid()}-", dir=path.parent))
            new_names = sorted(entry.name for entry in temporary.iterdir())
            for name in sorted({*new_names, *owned_names}):
                if (path / name).exists() or (path / name).is_symlink():
                    os.replace(path / name, old / name)
            for name in new_names:
                os.replace(temporary / name, path / name)
            shutil.rmtree(old, ignore_errors=True)
            temporary.rmdir()
        else:
            if path.is_dir():
                path.rmdir()  # empty: the complete folder takes its place
            os.replace(temporary, path)
        fsync_directory(path.parent)
    except OSError as error:
        shutil.rmtree(temporary, ignore_errors=True)
        raise OutputWriteError(path, os_error_reason(error, path.parent) + " (nothing was replaced)",
                               error.errno) from None
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def _remove_stale_partials(path: Path) -> None:
    for stale in path.parent.glob(f".{path.name}.partial-*"):
        pid = stale.name[len(f".{path.name}.partial-"):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill would terminate the process there; never remove another run's folder
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def write_npz_atomic(path: str | os.PathLike, arrays: dict) -> Path:
    """Write `arrays` as an uncompressed .npz, atomically, after the last check that no float array holds NaN or
    infinite values (finite_values.require_finite).  The archive is built in memory: a failed write cannot leave
    a half-closed zip behind."""
    import io

    import numpy as np

    from .finite_values import require_finite

    require_finite(str(path), **{key: value for key, value in arrays.items()
                                 if np.asarray(value).dtype.kind == "f"})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with atomic_open(path, "wb") as stream:
        stream.write(buffer.getbuffer())
    return Path(path)
