# SPDX-License-Identifier: GPL-3.0-or-later
"""Save a benchmark's Markdown report (the lines of `benchmarks/results/*.md`) and print it.  Imported by the scripts
beside it, which put the repository root on sys.path first."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kmm_core.common.atomic_write import write_text_atomic


def save_report(path: Path, lines: Sequence[str]) -> None:
    """Write `lines` to `path` (its folder created; the old report kept if the write fails) and print them."""
    text = "\n".join(lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)
    print(text)
