# SPDX-License-Identifier: GPL-3.0-or-later
"""A folder where writes really fail, for the "a full disk never destroys a good file" tests.

Preferred: a 2 MiB tmpfs mounted on the folder (needs permission to mount, e.g. root in the CI container), filled to
the last page by `fill()`, so writes fail with the kernel's own "No space left on device".  Where mounting is not
permitted the writers run in a subprocess whose RLIMIT_FSIZE is 0 (SIGXFSZ ignored): every write that would grow a
file then fails with "File too large" (EFBIG) - a real failed write(2), not a mock.  Either way the code under test
runs in a subprocess started through `run()`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TMPFS_BYTES = 2 << 20


class FullDisk:
    def __init__(self, folder: Path, mounted: bool):
        self.folder = folder
        self.mounted = mounted
        self.reason = os.strerror(errno.ENOSPC if mounted else errno.EFBIG)

    def fill(self) -> None:
        """Use up the tmpfs (files written before this stay readable); no-op for the RLIMIT_FSIZE fallback."""
        if not self.mounted:
            return
        with open(self.folder / "filler", "wb", buffering=0) as filler:
            chunk = b"\0" * 65536
            while True:
                try:
                    filler.write(chunk)
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    if len(chunk) == 1:
                        break
                    chunk = chunk[: len(chunk) // 2]

    def run(self, args: list[str], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg"}
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=REPO_ROOT, preexec_fn=None if self.mounted else _no_file_growth, **kwargs)

    def entries(self) -> list[str]:
        return sorted(name for name in os.listdir(self.folder) if name != "filler")


def _no_file_growth() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


@contextlib.contextmanager
def full_disk(base: Path) -> Iterator[FullDisk]:
    folder = base / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES},mode=0777", "tmpfs", str(folder)],
                             capture_output=True).returncode == 0
    try:
        yield FullDisk(folder, mounted)
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)
