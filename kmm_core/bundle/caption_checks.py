# SPDX-License-Identifier: GPL-3.0-or-later
"""How the model performs its own training captions: ``BUNDLE/caption_checks.json``, torch-free.

Written by ``kmm-train check-captions`` (``evaluation/caption_checks.py``: every train caption of the bundle's
vocabulary generated once and judged by its action's geometric check), read by the prompt check of ``kmm
generate``, the worker and the Blender panel (``generation/prompt_vocabulary.py``).  A prompt's *predicted pass
rate* is the share of its `neighbours` nearest train captions (in the vocabulary's MiniLM space, only captions
whose action has a check) that the model performed, each weighted by how near it is beside the nearest
(``exp((similarity - best) / NEARNESS)``: a caption as near as the best counts fully, one 0.15 less near a third as
much); below `warn_below` the prompt is warned about before generating, naming its nearest caption the model does
not perform.  Measured on the held-out val captions (``benchmarks/measure_caption_warnings.py``): below 0.5 it names
most failures and few passes, and "a person does a cartwheel", whose three nearest captions the model did not
perform, is warned about though five dance spins further off were performed (weighted by similarity alone they
outweighed them)::

    {"format_version": 1, "model": "kmm-small", "command": "...", "settings": {"seed": 0, "seconds": 4.0},
     "neighbours": 8, "warn_below": 0.5, "captions": 4004, "passed": "1101-1..."}

``passed`` has one character per entry of the vocabulary's ``captions.train`` (in its order): ``1`` performed,
``0`` not, ``-`` no check applies to its action.  A file whose length disagrees with the vocabulary is refused.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..common.atomic_write import write_text_atomic
from ..common.bounded_read import read_json
from ..common.errors import InputFileError

CAPTION_CHECKS_FILE = "caption_checks.json"
CAPTION_CHECKS_FORMAT_VERSION = 1
NEIGHBOURS = 8
WARN_BELOW = 0.5
NEARNESS = 0.15
"""Similarity by which a neighbour's weight falls by a factor e below the nearest's: on the held-out val captions
0.15 names 144 of the 200 failures and 17 of the 892 passes (by similarity alone: 142 and 17; 0.05: 145 and 14 but
three more of the everyday suite's passing phrasings; 0.1: 145 and 18)."""
_SYMBOLS = {"1": 1.0, "0": 0.0, "-": math.nan}


@dataclass(frozen=True)
class CaptionChecks:
    """One bundle's caption results: `passed` (N,) 1.0 / 0.0 / NaN (no check), aligned with the train captions."""

    model: str
    passed: np.ndarray
    neighbours: int = NEIGHBOURS
    warn_below: float = WARN_BELOW
    path: str = ""

    @cached_property
    def checked(self) -> np.ndarray:
        """Indices of the train captions whose action has a check (the ones a prediction reads)."""
        return np.flatnonzero(np.isfinite(self.passed))

    def predicted(self, similarity: np.ndarray) -> tuple[float, int] | None:
        """(predicted pass rate, index of the nearest train caption the model does not perform, or -1) from one
        prompt's similarities (N,) to the train captions; None when no caption has a check."""
        checked = self.checked
        if not checked.size:
            return None
        nearest = checked[np.argsort(-similarity[checked])[:self.neighbours]]
        weights = np.exp((similarity[nearest] - similarity[nearest].max()) / NEARNESS)
        rate = float((weights * self.passed[nearest]).sum() / weights.sum())
        failed = nearest[self.passed[nearest] == 0.0]
        return rate, int(failed[0]) if failed.size else -1


def caption_checks_from_dict(data: Any, captions: int, path: str = "<dict>") -> CaptionChecks:
    """Check a ``caption_checks.json`` document against a vocabulary of `captions` train captions."""
    def fail(message: str) -> InputFileError:
        return InputFileError(path, message)

    if not isinstance(data, dict):
        raise fail("expected a JSON object")
    if data.get("format_version") != CAPTION_CHECKS_FORMAT_VERSION:
        raise fail(f"format_version: expected {CAPTION_CHECKS_FORMAT_VERSION}, got {data.get('format_version')!r}")
    passed = data.get("passed")
    if not isinstance(passed, str) or set(passed) - set(_SYMBOLS):
        raise fail("passed: expected a string of '1', '0' and '-', one per train caption")
    if len(passed) != captions:
        raise fail(f"passed: {len(passed)} results, but the vocabulary has {captions} train captions (the file "
                   "belongs to another vocabulary: run `kmm-train check-captions` again)")
    neighbours = data.get("neighbours", NEIGHBOURS)
    if not isinstance(neighbours, int) or isinstance(neighbours, bool) or not 1 <= neighbours <= 64:
        raise fail(f"neighbours: expected a whole number from 1 to 64, got {neighbours!r}")
    warn_below = data.get("warn_below", WARN_BELOW)
    if (not isinstance(warn_below, int | float) or isinstance(warn_below, bool)
            or not 0.0 <= float(warn_below) <= 1.0):
        raise fail(f"warn_below: expected a share from 0 to 1, got {warn_below!r}")
    return CaptionChecks(model=str(data.get("model", "")),
                         passed=np.array([_SYMBOLS[symbol] for symbol in passed], dtype=np.float64),
                         neighbours=neighbours, warn_below=float(warn_below), path=path)


def read_caption_checks(bundle_dir: str | Path, captions: int) -> CaptionChecks | None:
    """The bundle's caption checks, None when it has none; a damaged or mismatched file is refused, naming it."""
    path = Path(bundle_dir) / CAPTION_CHECKS_FILE
    if not path.is_file():
        return None
    return caption_checks_from_dict(read_json(path), captions, str(path))


def caption_checks_document(model: str, passed: list[bool | None], settings: dict[str, Any],
                            command: str) -> dict[str, Any]:
    """The ``caption_checks.json`` document of one run (results in the vocabulary's train-caption order)."""
    checked = [value for value in passed if value is not None]
    return {"format_version": CAPTION_CHECKS_FORMAT_VERSION, "model": model, "command": command,
            "settings": settings, "neighbours": NEIGHBOURS, "warn_below": WARN_BELOW, "captions": len(passed),
            "pass_rate": round(sum(checked) / len(checked), 4) if checked else None,
            "passed": "".join("-" if value is None else "1" if value else "0" for value in passed)}


def write_caption_checks(bundle_dir: str | Path, document: dict[str, Any]) -> Path:
    """Write ``caption_checks.json`` into the bundle atomically (a failed write leaves the old file) after checking
    it reads back."""
    caption_checks_from_dict(document, int(document.get("captions", -1)), CAPTION_CHECKS_FILE)
    return write_text_atomic(Path(bundle_dir) / CAPTION_CHECKS_FILE,
                             json.dumps(document, indent=1, allow_nan=False) + "\n")
