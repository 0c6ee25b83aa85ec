# SPDX-License-Identifier: GPL-3.0-or-later
"""Loops (kmm_core/generation/loops.py): `"loop": true` timelines give a cycle whose next repetition continues it
seamlessly, on real Bandai-Namco motion and with the shipped model; the key reaches timeline files, CLI and worker."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kmm_core.bvh.joint_map import builtin_joint_map
from kmm_core.bvh.reader import read_bvh
from kmm_core.bvh.retarget import bvh_to_canonical_joints
from kmm_core.generation.loops import CycleOffset, LoopError, close_loop, extra_frames, repeat_cycle
from kmm_core.generation.timeline import Timeline, TimelineError
from kmm_core.humanml3d.preprocess import preprocess_joints
from kmm_core.motion.foot_contact import CONTACT_JOINTS
from kmm_core.motion.motion_result import MotionResult

FPS = 20.0


def _wrap_and_interior(cycle: np.ndarray, offset: CycleOffset) -> tuple[float, np.ndarray]:
    """How far the next repetition's first frame is from a constant-velocity step on from the last two frames
    (worst joint, metres), and the same quantity at every frame inside the cycle."""
    played = repeat_cycle(cycle, offset, 2)
    frames = cycle.shape[0]

    def miss(t: int) -> float:
        return float(np.linalg.norm(played[t] - (2 * played[t - 1] - played[t - 2]), axis=-1).max())

    return miss(frames), np.array([miss(t) for t in range(2, frames)])


def test_timeline_loop_key_round_trips_and_is_checked():
    timeline = Timeline.from_dict({"fps": 30, "segments": [{"prompt": "walk", "seconds": 2}], "loop": True})
    assert timeline.loop and Timeline.from_dict(timeline.to_dict()) == timeline
    assert "loop" not in Timeline.single("walk", 2.0).to_dict()
    with pytest.raises(TimelineError, match="loop: a loop is one prompt cycling; this timeline has 2 segments"):
        Timeline.from_dict({"segments": [{"prompt": "a", "seconds": 1}, {"prompt": "b", "seconds": 1}], "loop": True})
    with pytest.raises(TimelineError, match="loop: must be true or false"):
        Timeline.from_dict({"segments": [{"prompt": "a", "seconds": 1}], "loop": "yes"})


def test_cycle_offset_moves_on_and_back():
    offset = CycleOffset(0.3, 1.2, 0.4)
    points = np.random.default_rng(0).normal(size=(5, 3))
    np.testing.assert_allclose(offset.apply(offset.apply(points, 2), -2), points, atol=1e-12)
    np.testing.assert_allclose(offset.apply(points, 2), offset.apply(offset.apply(points)), atol=1e-12)


def test_real_walk_loop_continues_exactly_into_its_next_repetition(bandai_namco_dir):
    path = sorted((bandai_namco_dir / "Bandai-Namco-Research-Motiondataset-2" / "data").glob(
        "dataset-2_walk_normal_*.bvh"))[0]
    walk = preprocess_joints(bvh_to_canonical_joints(read_bvh(path), builtin_joint_map("bandai_namco")))
    blend = 10
    frames = len(walk) - blend - 1
    cycle, offset = close_loop(walk, frames, blend)
    assert cycle.shape == (frames, 22, 3) and abs(offset.dz) > 0.5  # a walk travels forward
    # After the cross-fade the cycle is the real walk moved rigidly, and its next repetition starts on exactly the
    # real walk's next frame: the wrap is as good as the real motion itself.
    played = repeat_cycle(cycle, offset, 2)
    rest = slice(blend, frames + 1)
    source, target = walk[rest].reshape(-1, 3), played[rest].reshape(-1, 3)
    centred_s, centred_t = source - source.mean(0), target - target.mean(0)
    u, _, vt = np.linalg.svd(centred_t.T @ centred_s)
    rotation = u @ np.diag([1, 1, np.sign(np.linalg.det(u @ vt))]) @ vt
    aligned = centred_s @ rotation.T + target.mean(0)
    assert np.abs(aligned - target).max() < 1e-3
    wrap, interior = _wrap_and_interior(cycle, offset)
    assert wrap <= np.percentile(interior, 95)
    with pytest.raises(LoopError, match="cycle_frames"):
        close_loop(walk, len(walk), blend)


@pytest.mark.parametrize("prompt", ["a person walks forward", "a person stands and waves both hands",
                                    "a baby-like crawl forward"])
@pytest.mark.parametrize("foot_lock", [True, False])
def test_generated_loop_closes_within_a_centimetre(shipped_bundle, tmp_path, prompt, foot_lock):
    from kmm_core.generation.timeline_generator import GenerationOptions, generate_timeline

    timeline = Timeline.from_dict({"fps": 30, "segments": [{"prompt": prompt, "seconds": 3.0}], "loop": True})
    (motion,) = generate_timeline(shipped_bundle, timeline, seed=1, options=GenerationOptions(foot_lock=foot_lock))
    assert motion.num_frames == 90 and motion.foot_lock is foot_lock
    assert json.loads(motion.timeline_json)["loop"] is True
    offset = CycleOffset(*motion.loop_offset)
    wrap, interior = _wrap_and_interior(motion.joints.astype(np.float64), offset)
    # The step into the next repetition is no rougher than the motion's own steps; unlocked, it is also within 1 cm
    # of a constant-velocity continuation of the last two frames.  Locked, the wrap is a frame of the clean-up of
    # three repetitions (the second's end runs into the third's start, which is the second's start within a tenth
    # of a millimetre), so it is as rough as a cleaned walk's frame: where a lock takes hold or lets go, a foot's step
    # changes by up to 4 cm in a frame (walk loops of seeds 0-7: 3.1-4.1 cm at the wrap for three of them, with or
    # without the walk's candidates; their own 95th percentile 4.2-6.7 cm).
    if not foot_lock:
        assert wrap <= 0.01 + np.percentile(interior, 50)
    assert wrap <= np.percentile(interior, 95)
    again = MotionResult.load(motion.save(tmp_path / "loop.npz"))
    np.testing.assert_array_equal(again.loop_offset, motion.loop_offset)


def test_loop_reaches_cli_and_worker_protocol(tmp_path):
    from kmm_core.cli import main
    from kmm_core.worker.protocol import Generate, decode, encode

    data = {"fps": 20, "segments": [{"prompt": "a person walks forward", "seconds": 2.0}], "loop": True}
    path = tmp_path / "loop.json"
    path.write_text(json.dumps(data))
    out = tmp_path / "loop.npz"
    assert main(["generate", "--timeline", str(path), "-o", str(out), "--seed", "0", "--device", "cpu",
                 "--quiet"]) == 0
    motion = MotionResult.load(out)
    assert motion.num_frames == 40 and np.linalg.norm(motion.loop_offset[:2]) > 0
    sent = decode(encode(Generate(timeline=data, output_dir=str(tmp_path), id="g")))
    assert Timeline.from_dict(sent["timeline"]).loop
    assert extra_frames(30.0) == 16


def test_a_standing_loop_does_not_turn_and_its_held_feet_stay_put_across_the_wrap(shipped_bundle):
    """Both feet down across the wrap: the loop neither turns nor travels (a generated idle turns 9-13 degrees over
    3 s; as the offset's turn about the origin it spun every repetition further and dragged the held feet by up to
    3 cm at the wrap), and its held feet land exactly on themselves."""
    from kmm_core.generation.timeline_generator import generate_timeline

    timeline = Timeline.from_dict({"fps": 30, "segments": [{"prompt": "a person stands and waves both hands",
                                                            "seconds": 3.0}], "loop": True})
    for seed in (1, 2, 3):
        (motion,) = generate_timeline(shipped_bundle, timeline, seed=seed)
        held = motion.foot_contacts[-1].astype(bool) & motion.foot_contacts[0].astype(bool)
        assert held[:2].any() and held[2:].any(), f"seed {seed}: both feet should be down at the wrap"
        assert np.array_equal(motion.loop_offset, [0.0, 0.0, 0.0])
        offset = CycleOffset(*motion.loop_offset)
        next_first = offset.apply(motion.joints[:1].astype(np.float64))[0]
        for column, joint in enumerate(CONTACT_JOINTS):
            if held[column]:
                assert np.linalg.norm(next_first[joint] - motion.joints[-1, joint]) <= 0.01, (seed, joint)
