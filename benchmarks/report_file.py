# SPDX-License-Identifier: GPL-3.0-or-later
"""Save a benchmark's Markdown report (the lines of `benchmarks/results/*.md`) or its picture, and say so.  Imported
by the scripts beside it, which put the repository root on sys.path first."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kmm_core.common.atomic_write import write_bytes_atomic, write_text_atomic


def save_report(path: Path, lines: Sequence[str]) -> None:
    """Write `lines` to `path` (its folder created; the old report kept if the write fails) and print them."""
    text = "\n".join(lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)
    print(text)


def save_figure(path: Path, figure, dpi: int = 80, **savefig_options) -> None:
    """Write a matplotlib `figure` as a PNG to `path` (its folder created; the old picture kept if the write fails)
    and say where."""
    from io import BytesIO

    buffer = BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, **savefig_options)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, buffer.getvalue())
    print(f"wrote {path}")
