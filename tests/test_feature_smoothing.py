# SPDX-License-Identifier: GPL-3.0-or-later
"""Smoothing of decoded features (kmm_core/humanml3d/feature_smoothing.py) on real data and the shipped tokenizer."""

from __future__ import annotations

import numpy as np
import pytest

from kmm_core.common.errors import ConfigError, InputTensorError
from kmm_core.evaluation.motion_quality import mean_jerk
from kmm_core.humanml3d.feature_smoothing import DECODED_SMOOTHING_SIGMA, smooth_decoded_features
from kmm_core.humanml3d.features import FOOT_CONTACTS, features_to_joints
from kmm_core.humanml3d.motion_kind import MotionKind

FPS = 20.0
WALK = MotionKind(walking=1.0, steady=1.0)
TURNING_WALK = MotionKind(walking=1.0)
WAVE = MotionKind(standing=1.0)


@pytest.fixture(scope="module")
def fixture_features(humanml3d_fixture_dir) -> np.ndarray:
    return np.load(humanml3d_fixture_dir / "new_joint_vecs" / "012314.npy").astype(np.float64)


def test_smoothing_keeps_contacts_and_zero_is_the_identity(fixture_features):
    smoothed = smooth_decoded_features(fixture_features)
    np.testing.assert_array_equal(smoothed[:, FOOT_CONTACTS], fixture_features[:, FOOT_CONTACTS])
    np.testing.assert_array_equal(smooth_decoded_features(fixture_features, 0.0), fixture_features)
    # Sub-frame smoothing: joints stay within millimetres of where they were (a few cm at most in fast moves).
    moved = np.linalg.norm(features_to_joints(smoothed) - features_to_joints(fixture_features), axis=-1)
    assert moved.mean() < 0.01 and moved.max() < 0.05


def test_smoothing_rejects_bad_input(fixture_features):
    with pytest.raises(InputTensorError, match="features"):
        smooth_decoded_features(fixture_features[:, :100])
    with pytest.raises(InputTensorError, match="sigma"):
        smooth_decoded_features(fixture_features, -1.0)
    from kmm_core.generation.timeline_generator import GenerationOptions

    with pytest.raises(ConfigError, match="smoothing"):
        GenerationOptions(smoothing=9.0)


def test_shipped_tokenizer_decodes_no_jerkier_than_real_motion_and_smoothing_loses_no_accuracy(bandai_namco_dir):
    """Real Bandai-Namco walks and runs (the shipped model's training data) through the shipped tokenizer, whose
    decoder the decoder stage retrained against jerk: decoded, they move no more jerkily than the real clips (the
    second-round decoder: 1.7x on the val split) yet not flattened; the feature smoothing lowers the jerk further and
    the reconstruction is no less accurate."""
    import torch

    from kmm_core.bundle.model_bundle import ModelBundle, default_bundle_path
    from kmm_core.bvh.joint_map import builtin_joint_map
    from kmm_core.bvh.reader import read_bvh
    from kmm_core.bvh.retarget import bvh_to_canonical_joints
    from kmm_core.humanml3d.preprocess import preprocess_joints

    torch.set_num_threads(1)
    bundle = ModelBundle.load(default_bundle_path(), device="cpu")
    joint_map = builtin_joint_map("bandai_namco")
    folder = bandai_namco_dir / "Bandai-Namco-Research-Motiondataset-2" / "data"
    paths = [*sorted(folder.glob("dataset-2_walk_normal_*.bvh"))[:3], *sorted(folder.glob("dataset-2_run_normal_*.bvh"))[:3]]
    real = [preprocess_joints(bvh_to_canonical_joints(read_bvh(p), joint_map)) for p in paths]
    decoded = [bundle.codes_to_features(bundle.joints_to_codes(clip), len(clip)) for clip in real]
    raw = [features_to_joints(f) for f in decoded]
    smoothed = [features_to_joints(smooth_decoded_features(f)) for f in decoded]
    level, raw_jerk, smoothed_jerk = (mean_jerk(m, FPS) for m in (real, raw, smoothed))
    assert 0.5 * level < raw_jerk < level, (raw_jerk, level)
    assert smoothed_jerk < raw_jerk

    def error(motions: list[np.ndarray]) -> float:
        return float(np.mean([np.linalg.norm((m - m[:, :1]) - (r - r[:, :1]), axis=-1).mean()
                              for m, r in zip(motions, real, strict=True)]))

    assert error(smoothed) <= error(raw) + 1e-3
    assert DECODED_SMOOTHING_SIGMA < 1.0  # shorter than a frame: timing is kept


def test_standing_root_smoothing_touches_only_the_root_of_standing_frames(fixture_features):
    """A walk then a wave on real features: the walk's frames come back bit-identical, the wave's root channels are
    smoothed (less frame-to-frame change), fading in from the walk without a step, and no other channel moves."""
    from kmm_core.humanml3d.feature_smoothing import ROOT_CHANNELS, STANDING_ROOT_SIGMA, smooth_standing_root

    features = smooth_decoded_features(fixture_features)
    half = len(features) // 2
    spans = [((0, half), WALK), ((half, len(features)), WAVE)]
    smoothed = smooth_standing_root(features, spans, torso_scale=0.0)
    np.testing.assert_array_equal(smoothed[:half], features[:half])
    np.testing.assert_array_equal(smoothed[:, 4:], features[:, 4:])
    inside = slice(half + 10, len(features))
    roughness = lambda f: np.abs(np.diff(f[inside, ROOT_CHANNELS], n=2, axis=0)).mean()  # noqa: E731
    assert roughness(smoothed) < 0.7 * roughness(features)
    change = np.abs(smoothed - features)[:, ROOT_CHANNELS].max(axis=1)
    fade = int(np.ceil(2 * STANDING_ROOT_SIGMA))
    assert change[half] < 0.25 * change[half + fade + 1:].max()  # faded in, not switched on
    # a later span overrides an earlier one; sigma 0 and a moving prompt change nothing
    overridden = smooth_standing_root(features, [*spans, ((half, len(features)), MotionKind())])
    np.testing.assert_array_equal(overridden, features)
    np.testing.assert_array_equal(smooth_standing_root(features, spans, 0.0), features)
    with pytest.raises(InputTensorError, match="standing root sigma"):
        smooth_standing_root(features, spans, -1.0)
    from kmm_core.generation.timeline_generator import GenerationOptions

    with pytest.raises(ConfigError, match="standing_root_sigma"):
        GenerationOptions(standing_root_sigma=20.0)


def test_standing_smoothing_calms_the_torso_chain_and_leaves_the_arms(fixture_features):
    """By default the torso chain (spine to head) of a standing segment is smoothed too: its head position and
    rotation channels move less from frame to frame, the walk before it comes back bit-identical, and every arm and
    leg channel is untouched, so a raised hand still rises."""
    from kmm_core.humanml3d.feature_smoothing import ROOT_CHANNELS, TORSO_CHANNELS, smooth_standing_root
    from kmm_core.humanml3d.features import RIC, ROTATIONS
    from kmm_core.motion.skeleton import JOINT_INDEX

    features = smooth_decoded_features(fixture_features)
    half = len(features) // 2
    spans = [((0, half), WALK), ((half, len(features)), WAVE)]
    smoothed = smooth_standing_root(features, spans)
    np.testing.assert_array_equal(smoothed[:half], features[:half])
    head = JOINT_INDEX["head"] - 1
    head_channels = [*range(RIC.start + 3 * head, RIC.start + 3 * head + 3),
                     *range(ROTATIONS.start + 6 * head, ROTATIONS.start + 6 * head + 6)]
    inside = slice(half + 10, len(features))
    roughness = lambda f: np.abs(np.diff(f[inside][:, head_channels], n=2, axis=0)).mean()  # noqa: E731
    assert roughness(smoothed) < 0.8 * roughness(features)
    untouched = np.setdiff1d(np.arange(features.shape[1]), [*range(ROOT_CHANNELS.start, ROOT_CHANNELS.stop),
                                                             *TORSO_CHANNELS])
    for arm in ("left_shoulder", "left_elbow", "left_wrist", "right_wrist", "left_knee"):
        assert RIC.start + 3 * (JOINT_INDEX[arm] - 1) in untouched
    np.testing.assert_array_equal(smoothed[:, untouched], features[:, untouched])


def test_walk_and_run_tokens_are_weighed_by_their_frames():
    """Each token's walking share (the guidance of `DecodingConfig.locomotion_guidance_factor`): whole tokens of a
    walk its share, a token across the boundary the mean over its frames, a later span overriding; with `steady`,
    the steady share (a walk that turns has none)."""
    from kmm_core.humanml3d.feature_smoothing import locomotion_token_weights

    spans = [((0, 10), WALK), ((10, 20), WAVE)]
    np.testing.assert_array_equal(locomotion_token_weights(5, spans, 4), [1.0, 1.0, 0.5, 0.0, 0.0])
    overridden = [*spans, ((4, 8), WAVE)]
    np.testing.assert_array_equal(locomotion_token_weights(5, overridden, 4), [1.0, 0.0, 0.5, 0.0, 0.0])
    np.testing.assert_array_equal(locomotion_token_weights(3, [((2, 99), MotionKind(0.5, 0.5))], 4),
                                  [0.25, 0.5, 0.5])
    turning = [((0, 8), WALK), ((8, 20), TURNING_WALK)]
    np.testing.assert_array_equal(locomotion_token_weights(5, turning, 4, steady=True), [1.0, 1.0, 0.0, 0.0, 0.0])
