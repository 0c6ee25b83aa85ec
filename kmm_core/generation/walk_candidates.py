# SPDX-License-Identifier: GPL-3.0-or-later
"""Which candidate decode of a steady walk to keep: the one whose motion steps most regularly.

A bundle's ``decoding.steady_walk_candidates`` N > 1 makes ``decode_tokens`` draw N candidates of every steady walk
or run (a prompt whose nearest training captions' clips walk on a steady heading: ``prompt_kinds.py``) and
keep the best by the score made here: each candidate's codes decoded to motion the way generation shows it
(``ModelBundle.decode_kinds``: the walking decoder on a walk's frames; the decoded features' smoothing; the foot
clean-up, which holds planted feet and can flatten a step the raw decode had), scored by its gait regularity (the
autocorrelation peak of the pelvis height and of the legs' alternation, ``humanml3d/gait_rhythm.py``).  A candidate
that settles on one held code glides with a flat pelvis and scores low.  Other prompts' tokens never take candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from ..humanml3d.feature_smoothing import smooth_decoded_features
from ..humanml3d.features import FOOT_CONTACTS, features_to_joints
from ..humanml3d.gait_rhythm import gait_regularity
from ..model.motion_tokenizer import num_tokens_for_frames
from ..motion.foot_contact import FootLockSettings, clean_foot_contacts
from ..motion.model_timing import FRAMES_PER_TOKEN, MODEL_FPS
from .prompt_kinds import spans_and_kinds

if TYPE_CHECKING:  # pragma: no cover
    from torch import Tensor

    from ..bundle.model_bundle import ModelBundle
    from ..model.decoding import CandidateScore

SpansAndPrompts = Sequence[tuple[tuple[int, int], str]]
SHOWN_FEET = FootLockSettings(hold_standing=True)
"""The foot clean-up of a generated take on a timeline without paths (``timeline_generator.generation_foot_lock``)."""
SCORED_FEET = replace(SHOWN_FEET, drop_seconds=SHOWN_FEET.blend_seconds)
"""The same clean-up, the pelvis lowered only within the locks' blend as it once was: lowered over half a second, a
candidate that glides on held feet (its pelvis sinking and rising slowly to reach them) scored 0.46 instead of 0.20
against a real walk's 0.67, `tests/test_walk_candidates.py`; the candidates are told apart by how they step."""


def stride_score(bundle: ModelBundle, rows: Sequence[tuple[int, SpansAndPrompts]],
                 measured: Sequence[tuple[int, int]] | None = None) -> CandidateScore:
    """A ``decode_tokens`` candidate score for a batch whose row i covers ``rows[i]`` = (frames at 20 fps, its spans
    and prompts in those frames): the gait regularity of each candidate's motion as generation shows it (decoded,
    smoothed, feet cleaned up as on a timeline without paths: ``SCORED_FEET``), over the frames ``measured[i]``
    ([start, end): the part being drawn, its fixed context decoded with it but not measured) or the whole row."""

    kinds = [spans_and_kinds(bundle, spans_and_prompts) for _, spans_and_prompts in rows]  # once, not per candidate

    def score(codes: Tensor, which: Sequence[int]) -> list[float]:
        values = []
        for candidate, row in zip(codes, which, strict=True):
            frames = rows[row][0]
            tokens = candidate[:num_tokens_for_frames(frames)].unsqueeze(0).to(bundle.device)
            features = smooth_decoded_features(bundle.decode_kinds(tokens, frames, kinds[row]))
            shown = clean_foot_contacts(features_to_joints(features), MODEL_FPS, features[:, FOOT_CONTACTS],
                                        settings=SCORED_FEET).joints
            start, end = (0, frames) if measured is None else measured[row]
            values.append(gait_regularity(shown[start:end], MODEL_FPS) if end - start >= 4 else 0.0)
        return values

    return score


def window_spans(spans_and_prompts: SpansAndPrompts, start_token: int, frames: int) -> list[tuple[tuple[int, int], str]]:
    """The spans (20 fps) of a window that starts at token ``start_token`` and is ``frames`` long, in its own frames."""
    offset = start_token * FRAMES_PER_TOKEN
    shifted = [((max(0, a - offset), min(frames, b - offset)), prompt) for (a, b), prompt in spans_and_prompts]
    return [(span, prompt) for span, prompt in shifted if span[0] < span[1]]
