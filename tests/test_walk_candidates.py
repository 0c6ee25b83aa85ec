# SPDX-License-Identifier: GPL-3.0-or-later
"""The score that picks a straight walk's candidate decode (kmm_core/generation/walk_candidates.py), with the shipped
model on a real Bandai-Namco walk: the real walk's own codes score as a real walk steps, the same walk held on one
code (what a gliding candidate settles on) scores low, and a window's spans are its own."""

from __future__ import annotations

import pytest
import torch

from kmm_core.bvh import builtin_joint_map, bvh_to_canonical_joints, read_bvh
from kmm_core.generation.walk_candidates import stride_score, window_spans
from kmm_core.humanml3d.gait_rhythm import gait_regularity
from kmm_core.motion.model_timing import MODEL_FPS
from kmm_core.motion.resample import resample_positions


@pytest.fixture(scope="module")
def real_walk(bandai_namco_dir):
    """8 s of the real `dataset-2_walk_normal_001.bvh` as canonical joints at 20 fps."""
    clip = read_bvh(bandai_namco_dir / "Bandai-Namco-Research-Motiondataset-2" / "data" / "dataset-2_walk_normal_001.bvh")
    joints = bvh_to_canonical_joints(clip, builtin_joint_map("bandai_namco"))
    return resample_positions(joints, clip.fps, MODEL_FPS)[:160]


def test_a_real_walk_outscores_the_same_walk_held_or_out_of_order(shipped_bundle, real_walk):
    assert gait_regularity(real_walk, MODEL_FPS) > 0.85
    codes = shipped_bundle.joints_to_codes(real_walk)  # (40, Q)
    frames = 4 * codes.shape[0]
    held = codes.clone()
    held[4:] = codes[4]  # after its first step the walk settles on one code, as a gliding candidate does
    shuffled = codes[torch.randperm(codes.shape[0], generator=torch.Generator().manual_seed(0))]  # steps lose order
    score = stride_score(shipped_bundle, [(frames, [((0, frames), "a person walks forward")])])
    walking, gliding, stumbling = score(torch.stack([codes, held, shuffled]), [0, 0, 0])
    assert walking > 0.6 and gliding < 0.35 and stumbling < 0.35  # measured 0.67, 0.20, 0.15


def test_a_window_sees_its_own_part_of_every_span():
    spans = [((0, 120), "a person walks forward"), ((120, 200), "a person waves")]
    assert window_spans(spans, 0, 100) == [((0, 100), "a person walks forward")]
    assert window_spans(spans, 25, 100) == [((0, 20), "a person walks forward"), ((20, 100), "a person waves")]
    assert window_spans(spans, 30, 80) == [((0, 80), "a person waves")]
