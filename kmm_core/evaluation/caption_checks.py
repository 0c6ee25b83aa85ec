# SPDX-License-Identifier: GPL-3.0-or-later
"""How a bundle performs its own train captions: each generated once per seed and judged by its action's geometric
check (``kmm-train check-captions``, ``training/caption_checks_command.py``, writes the results into
``BUNDLE/caption_checks.json``, ``bundle/caption_checks.py``, from which the prompt check predicts, before
generating, whether the model will perform a prompt: the results of its nearest train captions, weighted by nearness).

Each caption is generated at SECONDS (4 s) with one seeded generator over the whole set (`generate_features`, the
bundle's decoding settings and gait cycles; no foot clean-up: the checks read the motion's shape), and judged by
the check of its action word (`action_checks.checks_for_action`) on the side the caption names, else its label's;
a caption whose action no check measures is stored as ``-`` and never counts.  About three minutes for kmm-small's
4,004 captions on two CPU cores, twice for a bundle with a raised guidance (at its guidance and at the raised one:
``decoding.unlikely_guidance_factor``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from ..common.errors import KMMError
from ..motion.model_timing import MODEL_FPS
from .action_checks import checks_for_action, label_side, prompt_side, run_check

SECONDS = 4.0
SEED = 0
BATCH_SIZE = 64


def caption_results(bundle, captions: Sequence[str], actions: Sequence[str], seed: int = SEED,
                    log: Callable[[str], None] = lambda _m: None,
                    guidance_boost: float | None = None) -> list[bool | None]:
    """Pass (True/False) of each caption generated once, None where no check measures its action.  `actions` are
    the vocabulary's "dataset/word" entries of the captions; `guidance_boost`: every caption's share of the bundle's
    raised guidance (0: the bundle's guidance, 1: ``decoding.unlikely_guidance_factor`` times it), None: each
    caption's own, as generation gives it (`generate_features`)."""
    from .generated_motions import generate_features, generated_joints

    if len(captions) != len(actions):
        raise KMMError(f"{len(captions)} captions but {len(actions)} actions")
    started = time.perf_counter()
    frames = int(round(SECONDS * MODEL_FPS))
    joints = generated_joints(generate_features(bundle, list(captions), [frames] * len(captions), seed, BATCH_SIZE,
                                                guidance_boost=guidance_boost), foot_lock=False)
    results: list[bool | None] = []
    for caption, action, motion in zip(captions, actions, joints, strict=True):
        word = action.split("/", 1)[-1]
        (check,) = checks_for_action(word) or ("",)
        results.append(bool(run_check(check, motion, MODEL_FPS, side=prompt_side(caption, label_side(word))).passed)
                       if check else None)
    log(f"{len(results)} captions generated and judged in {time.perf_counter() - started:.0f} s")
    return results
