# SPDX-License-Identifier: GPL-3.0-or-later
"""How the model performs its own training captions: ``BUNDLE/caption_checks.json``, torch-free.

Written by ``kmm-train check-captions`` (``evaluation/caption_checks.py``: every train caption of the bundle's
vocabulary generated at `seeds` seeds and judged by its action's geometric check), read by the prompt check of ``kmm
generate``, the worker and the Blender panel (``generation/prompt_vocabulary.py``).  Each caption's result is the
share of its seeds that passed; it counts as *performed* from `PERFORMED_SHARE`.  A prompt's *predicted pass
rate* is the mean of those shares over its `neighbours` nearest train captions (in the vocabulary's MiniLM space,
only captions whose action has a check), each weighted by how near it is beside the nearest
(``exp((similarity - best) / NEARNESS)``: a caption as near as the best counts fully, one 0.15 less near a third as
much); below `warn_below` the prompt is warned about before generating, naming its nearest caption the model does
not perform.

``boosted`` (optional) holds the same captions' results at the bundle's ``decoding.unlikely_guidance_factor`` times
its guidance (``boost_factor``).  A prompt whose nearest captions the model rarely performs at its guidance, and
performs more often at the raised one, is generated at the raised one (`boost_weight`: fully below
`BOOST_FULL_BELOW`, fading out at `warn_below`, in proportion to the gain up to `BOOST_FULL_GAIN`); its predicted
pass rate is the one at the guidance it gets, and it is still warned about, since the warning reads the rate at
the bundle's own guidance (`Prediction.usual`).  Measured on the held-out val captions (each generated once at the
guidance, at the raised one and as generation gives it, judged by its check;
``benchmarks/results/unlikely_guidance.md``): the 68 of 1,092 that take most of the raise are performed 7% -> 41% of
the time, the whole split 0.826 -> 0.846, while a calm raised hand or wave, which the model performs, keeps the
guidance that keeps it calm.

The warning, measured on the held-out val captions (``benchmarks/measure_caption_warnings.py``): below 0.5 it names
most failures and few passes, and "a person does a cartwheel", whose three nearest captions the model did not
perform, is warned about though five dance spins further off were performed (weighted by similarity alone they
outweighed them)::

    {"format_version": 2, "model": "kmm-small", "command": "...", "settings": {"seeds": [0, 1, 2], "seconds": 4.0},
     "seeds": 3, "neighbours": 8, "warn_below": 0.5, "captions": 4004, "passed": "3102-3...",
     "boost_factor": 2.0, "boosted": "3213-3..."}

``passed`` has one character per entry of the vocabulary's ``captions.train`` (in its order): the number of its
``seeds`` generations that passed (a digit), or ``-`` where no check applies to its action; ``boosted`` the same at
the raised guidance (``-`` in the same places).  Format 1 (still read) is the one-seed case without ``seeds``.  A
file whose length disagrees with the vocabulary is refused.

Why several seeds: one generation per caption is a coin toss for the captions the model performs only sometimes, and
a caption marked unperformed is dropped from what far prompts are read with (``generation/prompt_conditions.py``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..common.atomic_write import write_text_atomic
from ..common.bounded_read import read_json
from ..common.errors import InputFileError
from ..common.limits import MAX_UNLIKELY_GUIDANCE_FACTOR
from ..common.smoothstep import smoothstep

CAPTION_CHECKS_FILE = "caption_checks.json"
CAPTION_CHECKS_FORMAT_VERSION = 2
READABLE_FORMAT_VERSIONS = (1, 2)
MAX_SEEDS = 9
NEIGHBOURS = 8
WARN_BELOW = 0.5
NEARNESS = 0.15
"""Similarity by which a neighbour's weight falls by a factor e below the nearest's: on the held-out val captions
0.15 names 144 of the 200 failures and 17 of the 892 passes (by similarity alone: 142 and 17; 0.05: 145 and 14 but
three more of the everyday suite's passing phrasings; 0.1: 145 and 18)."""
BOOST_FULL_BELOW = 0.3
BOOST_FULL_GAIN = 0.25
"""A prompt takes the whole raised guidance when its nearest captions' pass rate at the bundle's guidance is at most
`BOOST_FULL_BELOW` and the raised guidance performs at least `BOOST_FULL_GAIN` more of them; none from `warn_below`
or without a gain.  Chosen on the val captions generated at both guidances, the raised ones taking all of it
(training/runs/kmm-small-all-v16/COMMAND.md, section 10): full below 0.2, 5% of them raised, 6% -> 35% of those
performed; below 0.3, 6% raised, 7% -> 43%; any gain at all (no proportion), 7% raised, 6% -> 29%."""
PERFORMED_SHARE = 0.5
"""A caption counts as performed when at least this share of its seeds passed: two of three.  One of three (any
seed) reads the everyday suite's phrasings the same (57 of 66 either way, measured before the suite looked at the
feet: ``training/runs/kmm-small-all-v16/COMMAND.md`` section 13); half asks a caption to pass more often than not."""


class Prediction(NamedTuple):
    """What a prompt's nearest train captions say: its predicted pass rate at the guidance it gets, its nearest
    caption the model does not perform at its own guidance (index, -1 for none), its boost weight (`boost_weight`)
    and its predicted pass rate at the bundle's own guidance (what the warning reads: a prompt the model rarely
    performs there is warned about however hard it is guided)."""

    rate: float
    unperformed: int
    boost: float
    usual: float


def boost_weight(rate: float, boosted_rate: float | None, warn_below: float = WARN_BELOW) -> float:
    """How much of the raised guidance (``decoding.unlikely_guidance_factor``) a prompt takes, from its nearest
    captions' pass rate at the bundle's guidance and at the raised one (None: not measured, no boost)."""
    if boosted_rate is None or warn_below <= BOOST_FULL_BELOW:
        return 0.0
    unlikely = 1.0 - float(smoothstep(rate, BOOST_FULL_BELOW, warn_below))
    return unlikely * float(np.clip((boosted_rate - rate) / BOOST_FULL_GAIN, 0.0, 1.0))


@dataclass(frozen=True)
class CaptionChecks:
    """One bundle's caption results: `passed` (N,) the share of each train caption's seeds that passed, NaN where
    no check applies to its action, aligned with the train captions."""

    model: str
    passed: np.ndarray
    seeds: int = 1
    neighbours: int = NEIGHBOURS
    warn_below: float = WARN_BELOW
    path: str = ""
    boosted: np.ndarray | None = None   # (N,) the same at `boost_factor` times the guidance, None: not measured
    boost_factor: float = 1.0

    @cached_property
    def checked(self) -> np.ndarray:
        """Indices of the train captions whose action has a check (the ones a prediction reads)."""
        return np.flatnonzero(np.isfinite(self.passed))

    @cached_property
    def unperformed(self) -> np.ndarray:
        """(N,) bool: the captions with a check that the model did not perform (fewer than `PERFORMED_SHARE` of their
        seeds passed); a caption without a check is never unperformed."""
        return _below_performed(self.passed)

    def performed_counts(self) -> tuple[int, int | None]:
        """(captions performed at the bundle's guidance, those performed at the raised one or None when not
        measured), counted over the captions with a check."""
        checked = self.checked.size
        raised = None if self.boosted is None else checked - int(_below_performed(self.boosted).sum())
        return checked - int(self.unperformed.sum()), raised

    def predicted(self, similarity: np.ndarray) -> Prediction | None:
        """The `Prediction` of one prompt from its similarities (N,) to the train captions; None when no caption has
        a check."""
        checked = self.checked
        if not checked.size:
            return None
        nearest = checked[np.argsort(-similarity[checked])[:self.neighbours]]
        weights = np.exp((similarity[nearest] - similarity[nearest].max()) / NEARNESS)
        weights /= weights.sum()
        rate = float(weights @ self.passed[nearest])
        boosted = None if self.boosted is None else float(weights @ self.boosted[nearest])
        boost = boost_weight(rate, boosted, self.warn_below)
        failed = nearest[self.unperformed[nearest]]  # the warning names one the model fails at its own guidance
        return Prediction(rate if boosted is None else (1.0 - boost) * rate + boost * boosted,
                          int(failed[0]) if failed.size else -1, boost, rate)


def _below_performed(shares: np.ndarray) -> np.ndarray:
    """(N,) bool: checked captions (finite shares) that passed in fewer than `PERFORMED_SHARE` of their seeds."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(shares) & (shares < PERFORMED_SHARE - 1e-9)


def caption_checks_from_dict(data: Any, captions: int, path: str = "<dict>") -> CaptionChecks:
    """Check a ``caption_checks.json`` document against a vocabulary of `captions` train captions."""
    def fail(message: str) -> InputFileError:
        return InputFileError(path, message)

    if not isinstance(data, dict):
        raise fail("expected a JSON object")
    version = data.get("format_version")
    if version not in READABLE_FORMAT_VERSIONS or isinstance(version, bool):
        raise fail(f"format_version: expected one of {', '.join(map(str, READABLE_FORMAT_VERSIONS))}, got "
                   f"{version!r}")
    seeds = data.get("seeds", 1) if version >= 2 else 1
    if not isinstance(seeds, int) or isinstance(seeds, bool) or not 1 <= seeds <= MAX_SEEDS:
        raise fail(f"seeds: expected a whole number from 1 to {MAX_SEEDS}, got {seeds!r}")
    symbols = {str(count): count / seeds for count in range(seeds + 1)} | {"-": math.nan}
    expected = f"a string of digits from 0 to {seeds} (the seeds that passed) and '-'"
    passed = data.get("passed")
    if not isinstance(passed, str) or set(passed) - set(symbols):
        raise fail(f"passed: expected {expected}, one per train caption")
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
    boosted = data.get("boosted")
    if boosted is not None and (not isinstance(boosted, str) or set(boosted) - set(symbols)
                                or len(boosted) != len(passed)
                                or any((a == "-") != (b == "-") for a, b in zip(passed, boosted, strict=True))):
        raise fail(f"boosted: expected {expected} as long as passed, with '-' in the same places")
    factor = data.get("boost_factor", 1.0)
    if (not isinstance(factor, int | float) or isinstance(factor, bool) or not math.isfinite(factor)
            or not 1.0 <= float(factor) <= MAX_UNLIKELY_GUIDANCE_FACTOR):
        raise fail(f"boost_factor: expected a number from 1 to {MAX_UNLIKELY_GUIDANCE_FACTOR:g}, got {factor!r}")
    return CaptionChecks(model=str(data.get("model", "")),
                         passed=np.array([symbols[symbol] for symbol in passed], dtype=np.float64), seeds=seeds,
                         neighbours=neighbours, warn_below=float(warn_below), path=path,
                         boosted=None if boosted is None else np.array([symbols[symbol] for symbol in boosted],
                                                                       dtype=np.float64),
                         boost_factor=float(factor))


def read_caption_checks(bundle_dir: str | Path, captions: int) -> CaptionChecks | None:
    """The bundle's caption checks, None when it has none; a damaged or mismatched file is refused, naming it."""
    path = Path(bundle_dir) / CAPTION_CHECKS_FILE
    if not path.is_file():
        return None
    return caption_checks_from_dict(read_json(path), captions, str(path))


Results = Sequence[Sequence[bool | None]]
"""One list per seed of each train caption's pass (None: no check applies), in the vocabulary's order."""


def caption_checks_document(model: str, passed: Results, settings: dict[str, Any], command: str,
                            boosted: Results | None = None, boost_factor: float = 1.0) -> dict[str, Any]:
    """The ``caption_checks.json`` document of one run: `passed` one list of results per seed (each in the
    vocabulary's train-caption order, None where no check applies); `boosted` the same at `boost_factor` times the
    guidance, or None."""
    seeds = len(passed)
    if not 1 <= seeds <= MAX_SEEDS or (boosted is not None and len(boosted) != seeds):
        raise ValueError(f"expected 1 to {MAX_SEEDS} seeds' results (boosted as many), got {seeds}")

    def symbols(results: Results) -> str:
        return "".join("-" if values[0] is None else str(sum(bool(value) for value in values))
                       for values in zip(*results, strict=True))

    def rate(results: Results) -> float | None:
        checked = [value for values in results for value in values if value is not None]
        return round(sum(checked) / len(checked), 4) if checked else None

    document = {"format_version": CAPTION_CHECKS_FORMAT_VERSION, "model": model, "command": command,
                "settings": settings, "seeds": seeds, "neighbours": NEIGHBOURS, "warn_below": WARN_BELOW,
                "captions": len(passed[0]), "pass_rate": rate(passed), "passed": symbols(passed)}
    if boosted is not None:
        document.update({"boost_factor": float(boost_factor), "boosted_pass_rate": rate(boosted),
                         "boosted": symbols(boosted)})
    return document


def write_caption_checks(bundle_dir: str | Path, document: dict[str, Any]) -> Path:
    """Write ``caption_checks.json`` into the bundle atomically (a failed write leaves the old file) after checking
    it reads back."""
    caption_checks_from_dict(document, int(document.get("captions", -1)), CAPTION_CHECKS_FILE)
    return write_text_atomic(Path(bundle_dir) / CAPTION_CHECKS_FILE,
                             json.dumps(document, indent=1, allow_nan=False) + "\n")
