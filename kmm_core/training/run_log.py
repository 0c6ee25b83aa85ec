# SPDX-License-Identifier: GPL-3.0-or-later
"""What a training run reports: a JSON-lines file, TensorBoard when installed, and a tqdm progress bar.

``<out_dir>/log.jsonl`` gets one JSON object per line, flushed as written so a crashed run keeps its history:

* ``{"kind": "train", "step", "loss", "lr", "metrics": {...}, "items_per_s", "elapsed_s", "time"}`` every log step,
* ``{"kind": "validation", "step", "metrics": {...}, "elapsed_s", "time"}`` after each validation,
* ``{"kind": "event", "step", "message", "time"}`` for checkpoints, resumes, stops.

``time`` is Unix time in seconds; non-finite numbers are written as ``null`` so the file stays strict JSON.
On resume the records after the checkpoint's step are dropped: they belong to steps that will be redone.

TensorBoard (``torch.utils.tensorboard`` needs the ``tensorboard`` package) is used when importable and silently
skipped otherwise. Only the main process logs: pass ``enabled=False`` on the others.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..common.atomic_write import OutputWriteError, atomic_open
from ..common.bounded_read import read_text
from ..common.limits import MAX_LOG_FILE_BYTES

LOG_FILE = "log.jsonl"
TENSORBOARD_DIR = "tensorboard"


def _summary_writer_class() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard not installed: TensorBoard logging is optional
        return None
    return SummaryWriter


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite_or_none(v) for k, v in value.items()}
    return value


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """All records of a ``log.jsonl`` file (a torn last line from a killed process is skipped)."""
    records = []
    for line in read_text(path, "run log", limit=MAX_LOG_FILE_BYTES).splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class RunLog:
    """The JSON-lines log, the optional TensorBoard writer and the progress bar of one run."""

    def __init__(
        self,
        out_dir: str | Path,
        *,
        total_steps: int,
        initial_step: int = 0,
        enabled: bool = True,
        progress: bool = True,
        tensorboard: bool = True,
    ):
        self.enabled = enabled
        self.path = Path(out_dir) / LOG_FILE
        self.start_time = time.time()
        self._file = None
        self._writer = None
        self._bar = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():  # records past the starting step belong to steps that will be redone
            self._drop_records_after(initial_step)
        self._file = open(self.path, "a", encoding="utf-8")
        writer_class = _summary_writer_class() if tensorboard else None
        if writer_class is not None:
            self._writer = writer_class(log_dir=str(Path(out_dir) / TENSORBOARD_DIR), purge_step=initial_step or None)
        self._bar = tqdm(
            total=total_steps, initial=initial_step, disable=not progress, unit="step", dynamic_ncols=True, leave=True
        )

    # -- records ------------------------------------------------------------------------------------------------------

    def train(
        self, step: int, *, loss: float, lr: float, metrics: Mapping[str, float], items_per_second: float
    ) -> None:
        if not self.enabled:
            return
        self._write(
            {
                "kind": "train",
                "step": step,
                "loss": loss,
                "lr": lr,
                "metrics": dict(metrics),
                "items_per_s": items_per_second,
                "elapsed_s": time.time() - self.start_time,
                "time": time.time(),
            }
        )
        if self._writer is not None:
            self._writer.add_scalar("train/loss", loss, step)
            self._writer.add_scalar("train/lr", lr, step)
            self._writer.add_scalar("train/items_per_s", items_per_second, step)
            for name, value in metrics.items():
                self._writer.add_scalar(f"train/{name}", value, step)
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{loss:.4g}", items_s=f"{items_per_second:.0f}", refresh=False)

    def validation(self, step: int, metrics: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        self._write(
            {
                "kind": "validation",
                "step": step,
                "metrics": dict(metrics),
                "elapsed_s": time.time() - self.start_time,
                "time": time.time(),
            }
        )
        if self._writer is not None:
            for name, value in metrics.items():
                self._writer.add_scalar(f"val/{name}", value, step)
        self.message(f"step {step} validation: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))

    def event(self, step: int, message: str) -> None:
        """A notable moment (checkpoint saved, run resumed or stopped): logged and shown above the progress bar."""
        if not self.enabled:
            return
        self._write({"kind": "event", "step": step, "message": message, "time": time.time()})
        self.message(message)

    def message(self, text: str) -> None:
        if self.enabled and self._bar is not None and not self._bar.disable:
            self._bar.write(text)

    def advance(self, steps: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(steps)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._file is not None:
            self._file.close()
            self._file = None

    # -- internals ----------------------------------------------------------------------------------------------------

    def _write(self, record: dict[str, Any]) -> None:
        assert self._file is not None
        try:
            self._file.write(json.dumps(_finite_or_none(record), allow_nan=False) + "\n")
            self._file.flush()
        except OSError as error:  # e.g. the disk filled up: one line, not a traceback
            raise OutputWriteError(self.path, error.strerror or str(error), error.errno) from None

    def _drop_records_after(self, step: int) -> None:
        kept = [record for record in read_log(self.path) if record.get("step", 0) <= step]
        with atomic_open(self.path, "w") as handle:
            for record in kept:
                handle.write(json.dumps(record, allow_nan=False) + "\n")
