# SPDX-License-Identifier: GPL-3.0-or-later
"""What one evaluation measures with: its sizes, seeds and device (``EvaluationSettings``), and its error.

Part of ``kmm-train eval`` (``evaluate.py``); docs/evaluation.md explains each number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..common.errors import ConfigError, KMMError
from ..common.limits import MAX_STANDING_ROOT_SIGMA
from ..generation.timeline import DEFAULT_TRANSITIONS, TRANSITION_MODES
from ..humanml3d.feature_smoothing import DECODED_SMOOTHING_SIGMA
from ..motion.model_timing import FRAMES_PER_TOKEN
from .confidence import replication_seeds

GROUND_TRUTH = "ground truth"


class EvaluationError(KMMError, ValueError):
    """The evaluation cannot run as asked (no evaluator, too few clips, ...); the message says what to change."""


@dataclass(frozen=True)
class EvaluationSettings:
    """Sizes and seeds of one evaluation; the defaults follow the published protocol where one exists."""

    split: str = "test"
    replications: int = 20
    base_seed: int = 0
    max_samples: int | None = None       # items of the split used for the text-to-motion metrics (None: all)
    mm_texts: int = 100                  # MultiModality: texts ...
    mm_generations: int = 30             # ... times generations per text
    max_directional: int | None = None   # cap on the split's directional prompts and on the paraphrases
    directional_seconds: float = 4.0     # length of each paraphrase generation
    transition_timelines: int = 32       # multi-prompt timelines per replication for Peak Jerk / AUJ
    transition_segments: int = 3         # prompts per timeline
    timing_runs: int = 3                 # timed generations of a 1-minute timeline
    timing_seconds: float = 60.0
    min_frames: int = 40
    max_frames: int = 196
    batch_size: int = 32                 # generation / embedding batch
    device: str = "cpu"
    transitions: str = DEFAULT_TRANSITIONS  # how timeline prompts meet (transition and timing metrics)
    foot_lock: bool = True               # clean foot contacts as generation does (joint-based metrics, timelines)
    smoothing: float = DECODED_SMOOTHING_SIGMA  # Gaussian (frames) on decoded features, as generation does
    # Frames of the standing prompts' second root Gaussian; None: each bundle's own (decoding.standing_root_sigma),
    # as generation does; 0: off.
    standing_root_sigma: float | None = None
    subset_items: int = 64               # at most this many items in each animator subset (calm standing, walking)
    short_action: bool = True            # the short action after a walk, one timeline per replication

    def __post_init__(self) -> None:
        checks = {
            "replications": self.replications >= 1,
            "smoothing": 0 <= self.smoothing <= 4,
            "standing_root_sigma": (self.standing_root_sigma is None
                                        or 0 <= self.standing_root_sigma <= MAX_STANDING_ROOT_SIGMA),
            "max_samples": self.max_samples is None or self.max_samples >= 2,
            "mm_texts": self.mm_texts >= 1,
            "mm_generations": self.mm_generations >= 2,
            "max_directional": self.max_directional is None or self.max_directional >= 1,
            "directional_seconds": self.directional_seconds >= 1.0,
            "transition_timelines": self.transition_timelines >= 1,
            "transition_segments": self.transition_segments >= 2,
            "timing_runs": self.timing_runs >= 1,
            "timing_seconds": self.timing_seconds > 0,
            "min_frames": self.min_frames >= FRAMES_PER_TOKEN,
            "max_frames": self.max_frames >= self.min_frames,
            "batch_size": self.batch_size >= 1,
            "subset_items": self.subset_items >= 0,
            "transitions": self.transitions in TRANSITION_MODES,
        }
        bad = [f"{name}={getattr(self, name)!r}" for name, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"evaluation settings: invalid {', '.join(bad)} (sizes must be positive; "
                              f"mm_generations >= 2, transition_segments >= 2, max_frames >= min_frames)")
        if not re.fullmatch(r"cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"device: {self.device!r} is not cpu, cuda or cuda:N")

    @property
    def seeds(self) -> tuple[int, ...]:
        return replication_seeds(self.replications, self.base_seed)
