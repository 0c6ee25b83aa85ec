# SPDX-License-Identifier: GPL-3.0-or-later
"""The decoder stage (kmm-train decoder) on the tiny real dataset: the jerk term makes reconstructions smoother, the
codes the generator learned do not change, the bundle ships the refined decoder and refuses one refined from
another tokenizer, and an off stage says how to turn it on."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from kmm_core.common.errors import KMMError
from kmm_core.data.motion_dataset import MotionClips, collate_motion
from kmm_core.humanml3d.features_torch import features_to_joints_torch
from kmm_core.model.motion_tokenizer import MotionTokenizer
from kmm_core.motion.skeleton import JOINT_INDEX
from kmm_core.training.bundle_writer import assemble_bundle
from kmm_core.training.stages import (
    STILL_JOINTS,
    DecoderRefinement,
    StageError,
    load_project_config,
    load_stage_model,
    pelvis_bob_distance,
    pelvis_height_distance,
    root_trajectory_distance,
    run_stages,
    still_joint_distance,
    tokenizer_validation,
    train_decoder,
    wrist_speed_distance,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_TRAINING_CONFIG = REPO_ROOT / "training" / "configs" / "tiny.toml"
CPU = torch.device("cpu")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def train_batches(prepared_dataset):
    clips = MotionClips(prepared_dataset, "train", max_frames=64, random_crop=False)
    return clips.normalizer, [collate_motion([clips[i] for i in range(s, s + 8)]) for s in range(0, 32, 8)]


def _refine(tiny_run, normalizer, batches, jerk_weight: float, steps: int = 25) -> MotionTokenizer:
    torch.manual_seed(0)
    module = DecoderRefinement(load_stage_model(tiny_run, "tokenizer", CPU), normalizer, jerk_weight).train()
    optimizer = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=1e-3)
    for step in range(steps):
        loss, _ = module.compute_loss(batches[step % len(batches)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return module.tokenizer.eval()


def test_the_jerk_term_makes_reconstructions_smoother_and_keeps_the_codes(tiny_run, train_batches):
    normalizer, batches = train_batches
    original = load_stage_model(tiny_run, "tokenizer", CPU)
    plain = _refine(tiny_run, normalizer, batches, jerk_weight=0.0)
    smooth = _refine(tiny_run, normalizer, batches, jerk_weight=1.0)
    with torch.no_grad():
        ratios = {name: tokenizer_validation(model, batches, normalizer, CPU)["jerk_ratio"]
                  for name, model in (("plain", plain), ("smooth", smooth))}
        for batch in batches:  # frozen encoder and codebooks (no EMA update in training mode): the same codes
            assert torch.equal(smooth.encode(batch.features, batch.valid),
                               original.encode(batch.features, batch.valid))
    assert ratios["smooth"] < 0.8 * ratios["plain"], ratios
    for key, value in original.state_dict().items():
        if not key.startswith("decoder."):
            assert torch.equal(smooth.state_dict()[key], value), key


def test_the_stage_writes_a_tokenizer_whose_codes_are_the_tokenizers(tiny_run, prepared_dataset):
    clips = MotionClips(prepared_dataset, "val", max_frames=64, random_crop=False)
    batch = collate_motion([clips[i] for i in range(min(6, len(clips)))])
    tokenizer = load_stage_model(tiny_run, "tokenizer", CPU)
    refined = load_stage_model(tiny_run, "decoder", CPU)
    assert torch.equal(refined.encode(batch.features, batch.valid), tokenizer.encode(batch.features, batch.valid))
    changed = [key for key, value in refined.state_dict().items()
               if not torch.equal(value, tokenizer.state_dict()[key])]
    assert changed and all(key.startswith("decoder.") for key in changed), changed
    shipped = load_file(str(tiny_run / "bundle" / "tokenizer.safetensors"))
    refined_weights = load_file(str(tiny_run / "decoder.safetensors"))
    for key in changed:  # the bundle carries the refined decoder (float16)
        assert torch.allclose(shipped[key].float(), refined_weights[key], atol=1e-2, rtol=1e-2), key


def test_the_bundle_refuses_a_decoder_refined_from_another_tokenizer(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("bundle", "cache", "checkpoints"))
    weights = load_file(str(run / "decoder.safetensors"))
    key = next(k for k in weights if k.startswith("encoder."))
    weights[key] = weights[key] + 0.01
    save_file(weights, str(run / "decoder.safetensors"))
    with pytest.raises(KMMError, match=rf"decoder\.safetensors.*another tokenizer \({key} differs"):
        assemble_bundle(run, tmp_path / "bundle")
    assert not (tmp_path / "bundle" / "bundle.json").exists()


def test_an_off_decoder_stage_is_skipped_by_all_and_refused_alone(tiny_run, prepared_dataset, tmp_path, capsys):
    config = load_project_config(TINY_TRAINING_CONFIG, [f"data.root={prepared_dataset}", "decoder.jerk_weight=0"])
    with pytest.raises(StageError, match=r"\[decoder\] jerk_weight > 0"):
        train_decoder(config, tiny_run, device="cpu", progress=False)
    assert run_stages(config, tmp_path / "run", ["aligner", "decoder"], device="cpu", progress=False)[0].stage == "aligner"
    assert "stage decoder skipped" in capsys.readouterr().out
    assert not (tmp_path / "run" / "decoder.safetensors").exists()


def _refine_root(tiny_run, normalizer, batches, root_weight: float, steps: int = 25,
                 still_weight: float = 0.0, height_weight: float = 0.0, bob_weight: float = 0.0,
                 hand_weight: float = 0.0) -> MotionTokenizer:
    torch.manual_seed(0)
    module = DecoderRefinement(load_stage_model(tiny_run, "tokenizer", CPU), normalizer, 0.0, root_weight,
                               still_weight, height_weight=height_weight, bob_weight=bob_weight,
                               bob_span=10, hand_weight=hand_weight).train()
    optimizer = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=1e-3)
    for step in range(steps):
        loss, metrics = module.compute_loss(batches[step % len(batches)])
        assert ("root" in metrics) == (root_weight > 0) and ("still" in metrics) == (still_weight > 0)
        assert ("height" in metrics) == (height_weight > 0) and ("bob" in metrics) == (bob_weight > 0)
        assert ("hand" in metrics) == (hand_weight > 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return module.tokenizer.eval()


def test_root_trajectory_distance_sees_a_drifting_and_a_jittering_pelvis(train_batches):
    normalizer, batches = train_batches
    batch = batches[0]
    joints = features_to_joints_torch(normalizer.denormalize(batch.features))
    assert float(root_trajectory_distance(joints, joints, batch.valid)) == 0.0
    frames = torch.arange(joints.shape[1], dtype=joints.dtype)
    drift = joints.clone()
    drift[..., 0] += 0.01 * frames[None, :, None]  # the whole body slides 1 cm per frame (20 cm/s)
    jitter = joints.clone()
    jitter[..., 1] += 0.005 * (-1.0) ** frames[None, :, None]  # the whole body bobs 5 mm every frame
    # 1 cm per frame of step error, plus a tenth of the mean path error; 1 cm per frame of alternating steps.
    assert 1.0 < float(root_trajectory_distance(drift, joints, batch.valid)) < 1.0 + 0.1 * len(frames)
    assert float(root_trajectory_distance(jitter, joints, batch.valid)) == pytest.approx(1.0 + 0.05, rel=0.05)


def test_the_root_term_brings_the_reconstructed_pelvis_closer_to_the_real_one(tiny_run, train_batches):
    normalizer, batches = train_batches
    plain = _refine_root(tiny_run, normalizer, batches, root_weight=0.0, steps=40)
    rooted = _refine_root(tiny_run, normalizer, batches, root_weight=1.0, steps=40)

    def pelvis_error(model: MotionTokenizer) -> float:
        with torch.no_grad():
            total = 0.0
            for batch in batches:
                made = features_to_joints_torch(normalizer.denormalize(model(batch.features, batch.valid)
                                                                       .reconstruction))
                real = features_to_joints_torch(normalizer.denormalize(batch.features))
                total += float(root_trajectory_distance(made, real, batch.valid))
            return total / len(batches)

    assert pelvis_error(rooted) < 0.97 * pelvis_error(plain)  # 5.51 vs 5.76 cm: the tiny decoder moves little


def test_still_joint_distance_counts_only_joints_the_real_motion_holds_still(train_batches):
    """A real clip with its pelvis and feet held in place over its first half: a made motion whose hips wander
    1 cm per frame there costs 1 cm per still pelvis step; wandering where the real joints move costs nothing."""
    normalizer, batches = train_batches
    batch = batches[0]
    real = features_to_joints_torch(normalizer.denormalize(batch.features))[:1]
    valid = batch.valid[:1]
    frames = real.shape[1]
    half = frames // 2
    still = real.clone()
    still[:, :half] = still[:, :1]  # the first half holds the first pose (every joint still)
    assert float(still_joint_distance(still, still, valid, STILL_JOINTS["pelvis_feet"])) == 0.0
    wander = still.clone()
    wander[:, :half, 0, 0] += 0.01 * torch.arange(half, dtype=real.dtype)  # the pelvis slides 1 cm per frame
    # The clip's second half walks, so every still pelvis step is a held one: 1 cm each; with the feet (held too,
    # not wandering) one joint in five is off by 1 cm.
    assert float(still_joint_distance(wander, still, valid)) == pytest.approx(1.0, abs=1e-5)
    assert float(still_joint_distance(wander, still, valid, STILL_JOINTS["pelvis_feet"])) == pytest.approx(0.2, abs=1e-5)
    moving = real.clone()
    moving[:, :, 0, 0] += 0.01 * torch.arange(frames, dtype=real.dtype)
    reference = real.clone()
    reference[..., [0, 2]] += 0.02 * torch.arange(frames, dtype=real.dtype)[None, :, None, None]  # every joint moves
    assert float(still_joint_distance(moving + (reference - real), reference, valid)) == 0.0


def test_standing_feet_are_held_only_where_the_real_pelvis_stands_still_too():
    """Two real clips of 20 frames: one stands (every joint still), one walks (the body moves 2 cm per frame, the
    left foot planted).  A made motion whose left ankle and toe slide 1 cm per frame in both costs 1 cm per held foot
    step: with `pelvis_feet` in both (the walk's planted foot too, whose real steps that damps), with
    `pelvis_standing_feet` only in the standing one."""
    frames = 20
    steps = frames - 1
    standing = (0.01 * torch.arange(22 * 3, dtype=torch.float32)).reshape(1, 1, 22, 3).repeat(1, frames, 1, 1)
    walking = standing.clone()
    left = [JOINT_INDEX["left_ankle"], JOINT_INDEX["left_foot"]]
    moving = [j for j in range(22) if j not in left]
    walking[:, :, moving, 0] += 0.02 * torch.arange(frames, dtype=walking.dtype)[None, :, None]
    real = torch.cat([standing, walking])
    made = real.clone()
    made[:, :, left, 0] += 0.01 * torch.arange(frames, dtype=made.dtype)[None, :, None]
    valid = torch.ones(2, frames, dtype=torch.bool)

    def distance(clips: slice, which: str) -> float:
        return float(still_joint_distance(made[clips], real[clips], valid[clips], STILL_JOINTS[which]))

    stands, walks, both = slice(0, 1), slice(1, 2), slice(0, 2)
    # Standing: five held joints (pelvis, two ankles, two toes), two of them off by 1 cm per step, either way.
    assert distance(stands, "pelvis_feet") == pytest.approx(2 / 5, abs=1e-5)
    assert distance(stands, "pelvis_standing_feet") == pytest.approx(2 / 5, abs=1e-5)
    assert distance(stands, "pelvis") == 0.0
    # Walking: the pelvis moves, so only `pelvis_feet` holds the planted foot (its two joints, both off by 1 cm).
    assert distance(walks, "pelvis_feet") == pytest.approx(1.0, abs=1e-5)
    assert distance(walks, "pelvis_standing_feet") == 0.0
    # Both: 2 x 19 sliding steps over 5 x 19 held steps (standing) + 2 x 19 (the walk's planted foot) or + 0.
    assert distance(both, "pelvis_feet") == pytest.approx(2 * 2 * steps / (5 * steps + 2 * steps), abs=1e-5)
    assert distance(both, "pelvis_standing_feet") == pytest.approx(2 * steps / (5 * steps), abs=1e-5)
    # Clips told apart by their captions as well: the standing clip's feet held only when its caption stands.
    for clips, expected in (([True, True], 2 / 5), ([False, True], 0.0)):
        assert float(still_joint_distance(made, real, valid, STILL_JOINTS["pelvis_standing_caption_feet"],
                                          standing_clips=torch.tensor(clips))) == pytest.approx(expected, abs=1e-5)


def test_the_caption_gate_reads_each_clips_caption(tiny_run, train_batches):
    """`pelvis_standing_caption_feet` in training: a batch captioned as walks holds the pelvis alone (the feet term
    is off in every clip), one captioned as waves holds what `pelvis_standing_feet` holds."""
    import dataclasses

    normalizer, batches = train_batches
    tokenizer = load_stage_model(tiny_run, "tokenizer", CPU)

    def still(batch, joints: str) -> float:
        module = DecoderRefinement(tokenizer, normalizer, 0.0, 0.0, 1.0, joints).eval()
        with torch.no_grad():
            return module.compute_loss(batch)[1]["still"]

    for caption, same_as in (("a person walks forward", "pelvis"), ("a person waves the right hand",
                                                                      "pelvis_standing_feet")):
        batch = dataclasses.replace(batches[0], captions=[caption] * len(batches[0].captions))
        assert still(batch, "pelvis_standing_caption_feet") == pytest.approx(still(batch, same_as), rel=1e-6)


def test_a_longer_still_span_weighs_a_wander_over_a_jitter():
    """A real body standing still for 20 frames.  A made pelvis that slides 1 cm per frame costs 1 cm per step at a
    span of 1 and 4 cm at a span of 4 (4 frames of slide per step); one that jitters 1 cm back and forth costs 1 cm
    per step at a span of 1 and nothing at a span of 2 or 4 (every even step comes back)."""
    frames = 20
    real = (0.01 * torch.arange(22 * 3, dtype=torch.float32)).reshape(1, 1, 22, 3).repeat(1, frames, 1, 1)
    valid = torch.ones(1, frames, dtype=torch.bool)
    slide, jitter = real.clone(), real.clone()
    slide[:, :, 0, 0] += 0.01 * torch.arange(frames, dtype=real.dtype)
    jitter[:, :, 0, 0] += 0.01 * (torch.arange(frames) % 2).to(real.dtype)

    def distance(made: torch.Tensor, span: int) -> float:
        return float(still_joint_distance(made, real, valid, STILL_JOINTS["pelvis"], span))

    assert distance(slide, 1) == pytest.approx(1.0, abs=1e-5)
    assert distance(slide, 4) == pytest.approx(4.0, abs=1e-5)
    assert distance(jitter, 1) == pytest.approx(1.0, abs=1e-5)
    assert distance(jitter, 2) == pytest.approx(0.0, abs=1e-5) and distance(jitter, 4) == pytest.approx(0.0, abs=1e-5)
    # A step counts only where the real pelvis stands still on every frame of it: one that walks off 5 cm per frame
    # after frame 10 leaves the term the 4-frame steps before the walk (a made pelvis sliding there costs 4 cm each)
    # and none of the walk's (a made pelvis that never walks, 20 cm off per step there, costs nothing).
    walks = real.clone()
    walks[:, 10:, 0, 0] += 0.05 * torch.arange(1, frames - 9, dtype=real.dtype)
    assert float(still_joint_distance(slide + (walks - real), walks, valid, STILL_JOINTS["pelvis"], 4)) == \
        pytest.approx(4.0, abs=1e-5)
    assert float(still_joint_distance(real, walks, valid, STILL_JOINTS["pelvis"], 4)) == 0.0


def test_the_height_term_costs_hips_that_settle_low_where_the_real_ones_stand():
    """Real bodies standing still for 40 frames.  A made pelvis 2 cm low costs 2 cm, one that rises and falls 1 cm
    about the real height nothing (that is the bob term's), and windows count alike: one 2 cm low beside one at the
    real height costs 1 cm, one 2 cm low beside one 2 cm high 2 cm (an offset does not cancel across windows); a real
    squat in place is matched, not damped; a walking pelvis is not held."""
    frames = 40
    real = (0.01 * torch.arange(22 * 3, dtype=torch.float32)).reshape(1, 1, 22, 3).repeat(2, frames, 1, 1)
    valid = torch.ones(2, frames, dtype=torch.bool)

    def offset(*centimetres: float) -> torch.Tensor:
        made = real.clone()
        made[:, :, 0, 1] += 0.01 * torch.tensor(centimetres)[:, None]
        return made

    def distance(made: torch.Tensor, reference: torch.Tensor = real) -> float:
        return float(pelvis_height_distance(made, reference, valid))

    bob = real.clone()
    bob[:, :, 0, 1] += 0.01 * torch.sin(torch.arange(frames) * (2 * torch.pi / 20))
    assert distance(real) == 0.0 and distance(bob) == pytest.approx(0.0, abs=0.05)
    assert distance(offset(-2, -2)) == pytest.approx(2.0, rel=1e-4)
    assert distance(offset(-2, 0)) == pytest.approx(1.0, rel=1e-4)
    assert distance(offset(-2, 2)) == pytest.approx(2.0, rel=1e-4)
    squat = real.clone()
    squat[:, :, 0, 1] -= 0.01 * torch.arange(frames)
    assert distance(squat, squat) == 0.0 and distance(real, squat) == pytest.approx(20.0, abs=1e-3)
    walk = real.clone()
    walk[:, :, 0, 0] += 0.05 * torch.arange(frames)
    assert distance(offset(-2, -2) + (walk - real), walk) == 0.0


def test_the_bob_term_weighs_a_slow_rise_and_fall_by_its_whole_height():
    """A made pelvis that rises and falls 1 cm over a 20-frame cycle costs its whole rise over a 10-frame step (2 cm
    from a peak, 2 |cos| on average), a 1 mm frame jitter nothing at an even span; a real squat is matched and a
    walking pelvis not held, as by the height term; a window no longer than the span has no step."""
    frames = 40
    real = (0.01 * torch.arange(22 * 3, dtype=torch.float32)).reshape(1, 1, 22, 3).repeat(1, frames, 1, 1)
    valid = torch.ones(1, frames, dtype=torch.bool)
    bob, jitter = real.clone(), real.clone()
    bob[:, :, 0, 1] += 0.01 * torch.sin(torch.arange(frames) * (2 * torch.pi / 20) + torch.pi / 2)
    jitter[:, :, 0, 1] += 0.001 * (torch.arange(frames) % 2)

    def distance(made: torch.Tensor, reference: torch.Tensor = real, span: int = 10) -> float:
        return float(pelvis_bob_distance(made, reference, valid, span))

    half_cycle = 2 * torch.cos(torch.arange(frames - 10) * (torch.pi / 10)).abs().mean()
    assert distance(real) == 0.0 and float(half_cycle) > 1.2
    assert distance(bob) == pytest.approx(float(half_cycle), rel=1e-4)
    assert distance(jitter) == pytest.approx(0.0, abs=1e-5) and distance(jitter, span=1) == pytest.approx(0.1, abs=1e-4)
    squat = real.clone()
    squat[:, :, 0, 1] -= 0.01 * torch.arange(frames)
    assert distance(squat, squat) == 0.0 and distance(real, squat) == pytest.approx(10.0, abs=1e-4)
    walk = real.clone()
    walk[:, :, 0, 0] += 0.05 * torch.arange(frames)
    assert distance(bob + (walk - real), walk) == 0.0
    assert distance(bob, span=40) == 0.0


def test_the_hand_term_weighs_a_wrists_speed_whatever_its_phase():
    """A wrist swinging 10 cm side to side at the neck's height, against the same swing half a cycle later, costs
    nothing (the term sees speed, not path), against a still wrist its whole mean speed; the body carried along (the
    neck with it) costs nothing; frames outside the valid ones are not counted; a window no longer than the span
    has no step."""
    frames, span = 40, 4
    real = (0.01 * torch.arange(22 * 3, dtype=torch.float32)).reshape(1, 1, 22, 3).repeat(1, frames, 1, 1)
    valid = torch.ones(1, frames, dtype=torch.bool)
    wrist = JOINT_INDEX["right_wrist"]
    cycle = torch.arange(frames) * (2 * torch.pi / 16)
    wave, late_wave = real.clone(), real.clone()
    wave[:, :, wrist, 0] += 0.1 * torch.sin(cycle)
    late_wave[:, :, wrist, 0] += 0.1 * torch.sin(cycle + torch.pi)

    def distance(made: torch.Tensor, reference: torch.Tensor = wave, mask: torch.Tensor = valid) -> float:
        return float(wrist_speed_distance(made, reference, mask, span))

    speed = (wave[0, 1:, wrist, 0] - wave[0, :-1, wrist, 0]).abs() * 100.0
    mean_speed = float(torch.nn.functional.avg_pool1d(speed[None, None], span, stride=1).mean()) / 2  # two wrists
    assert distance(wave) == 0.0 and distance(late_wave) == pytest.approx(0.0, abs=1e-4)
    assert distance(real) == pytest.approx(mean_speed, rel=1e-4) and mean_speed > 1.0
    walk = torch.zeros_like(real)
    walk[..., 2] = 0.05 * torch.arange(frames, dtype=torch.float32)[None, :, None]
    assert distance(wave + walk, wave + walk) == 0.0 and distance(late_wave + walk, wave + walk) < 1e-3
    half = valid.clone()
    half[:, 20:] = False
    still_then_wave = wave.clone()
    still_then_wave[:, :20] = real[:, :20]
    assert distance(still_then_wave, wave, half) == pytest.approx(distance(real, wave, half), rel=1e-4)
    assert distance(still_then_wave, wave) < distance(real, wave)
    assert float(wrist_speed_distance(real[:, :span], wave[:, :span], valid[:, :span], span)) == 0.0


def _term_on_batches(model: MotionTokenizer, normalizer, batches, term) -> float:
    """Mean over ``batches`` of ``term(made, real, valid)`` on the joints of ``model``'s reconstruction and the
    real ones."""
    with torch.no_grad():
        return sum(float(term(features_to_joints_torch(normalizer.denormalize(model(b.features, b.valid).reconstruction)),
                              features_to_joints_torch(normalizer.denormalize(b.features)), b.valid))
                   for b in batches) / len(batches)


def test_the_hand_term_brings_the_reconstructed_wrists_speed_nearer_the_real(tiny_run, train_batches):
    normalizer, batches = train_batches

    def hand_error(model: MotionTokenizer) -> float:
        return _term_on_batches(model, normalizer, batches, wrist_speed_distance)

    plain = hand_error(_refine_root(tiny_run, normalizer, batches, 0.0, steps=40))
    assert hand_error(_refine_root(tiny_run, normalizer, batches, 0.0, steps=40, hand_weight=3.0)) < 0.97 * plain


def test_the_height_term_holds_the_reconstructed_hips_height(tiny_run, train_batches):
    normalizer, batches = train_batches

    def height_error(model: MotionTokenizer) -> float:
        return _term_on_batches(model, normalizer, batches, pelvis_height_distance)

    plain = height_error(_refine_root(tiny_run, normalizer, batches, 0.0, steps=40))
    assert height_error(_refine_root(tiny_run, normalizer, batches, 0.0, steps=40, height_weight=3.0)) < 0.97 * plain
    held = _refine_root(tiny_run, normalizer, batches, 0.0, steps=40, height_weight=3.0, bob_weight=3.0)
    assert height_error(held) < 0.97 * plain


def test_the_still_term_holds_the_reconstructed_hips_and_feet_where_the_real_ones_stand(tiny_run, train_batches):
    normalizer, batches = train_batches

    def refine(still_weight: float) -> MotionTokenizer:
        return _refine_root(tiny_run, normalizer, batches, 0.0, steps=40, still_weight=still_weight)

    def still_error(model: MotionTokenizer) -> float:
        return _term_on_batches(model, normalizer, batches, still_joint_distance)

    assert still_error(refine(3.0)) < 0.97 * still_error(refine(0.0))


def test_the_bundle_ships_the_runs_decoding_table(tiny_run, tmp_path):
    """`[decoding]` (the sampling chosen on the val split) travels from the run's config.json into bundle.json and
    is what the loaded bundle decodes with; the library's defaults write no table; a bad table is refused."""
    import json

    from kmm_core.bundle.model_bundle import ModelBundle

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("bundle", "cache", "checkpoints"))
    config = json.loads((run / "config.json").read_text())
    config["decoding"] = {**config.get("decoding", {}), "guidance_scale": 2.0}
    (run / "config.json").write_text(json.dumps(config))
    bundle = assemble_bundle(run, tmp_path / "chosen")
    assert json.loads((bundle / "bundle.json").read_text())["decoding"]["guidance_scale"] == 2.0
    assert ModelBundle.load(bundle, device="cpu").decoding.guidance_scale == 2.0
    config.pop("decoding")
    (run / "config.json").write_text(json.dumps(config))
    assert "decoding" not in json.loads((assemble_bundle(run, tmp_path / "plain") / "bundle.json").read_text())
    config["decoding"] = {"guidance_scale": -1.0}
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(KMMError, match=r"config\.json.*guidance_scale"):
        assemble_bundle(run, tmp_path / "bad")


def test_the_still_settings_are_checked_by_name(prepared_dataset):
    from kmm_core.common.errors import ConfigError
    from kmm_core.training.config import STILL_JOINT_CHOICES

    config = load_project_config(TINY_TRAINING_CONFIG, [f"data.root={prepared_dataset}", "decoder.still_weight=0.3",
                                                        "decoder.still_joints=pelvis_feet"])
    assert config.decoder.still_joints == "pelvis_feet" and STILL_JOINTS["pelvis_feet"].joints[0] == 0
    assert tuple(STILL_JOINTS) == STILL_JOINT_CHOICES  # every allowed value has its joints, and no other
    config = load_project_config(TINY_TRAINING_CONFIG, [f"data.root={prepared_dataset}",
                                                        "decoder.still_joints=pelvis_standing_feet"])
    assert config.decoder.still_joints == "pelvis_standing_feet"
    with pytest.raises(ConfigError, match="still_joints.*'pelvis', 'pelvis_feet', 'pelvis_standing_feet'.*'hands'"):
        load_project_config(TINY_TRAINING_CONFIG, [f"data.root={prepared_dataset}", "decoder.still_joints=hands"])
    with pytest.raises(ConfigError, match="still_weight"):
        load_project_config(TINY_TRAINING_CONFIG, [f"data.root={prepared_dataset}", "decoder.still_weight=-1"])
    assert load_project_config(TINY_TRAINING_CONFIG, [f"data.root={prepared_dataset}",
                                                      "decoder.still_span=5"]).decoder.still_span == 5
    for span in (0, 41):
        with pytest.raises(ConfigError, match=f"still_span.*1 to 40 frames, got {span}"):
            load_project_config(TINY_TRAINING_CONFIG, [f"data.root={prepared_dataset}", f"decoder.still_span={span}"])
    with pytest.raises(ConfigError, match="height_weight"):
        load_project_config(TINY_TRAINING_CONFIG, [f"data.root={prepared_dataset}", "decoder.height_weight=-0.5"])
    config = load_project_config(TINY_TRAINING_CONFIG, [f"data.root={prepared_dataset}", "decoder.height_weight=0.3"])
    assert config.decoder.height_weight == 0.3
    for span in (0, 41):
        with pytest.raises(ConfigError, match=f"bob_span.*1 to 40 frames, got {span}"):
            load_project_config(TINY_TRAINING_CONFIG, [f"data.root={prepared_dataset}", f"decoder.bob_span={span}"])
    with pytest.raises(ConfigError, match="bob_weight"):
        load_project_config(TINY_TRAINING_CONFIG, [f"data.root={prepared_dataset}", "decoder.bob_weight=-1"])
    with pytest.raises(ConfigError, match="hand_weight.*got -0.1"):
        load_project_config(TINY_TRAINING_CONFIG, [f"data.root={prepared_dataset}", "decoder.hand_weight=-0.1"])
    for span in (0, 41):
        with pytest.raises(ConfigError, match=f"hand_span.*1 to 40 frames, got {span}"):
            load_project_config(TINY_TRAINING_CONFIG, [f"data.root={prepared_dataset}", f"decoder.hand_span={span}"])
    config = load_project_config(TINY_TRAINING_CONFIG, [f"data.root={prepared_dataset}", "decoder.hand_weight=0.3",
                                                        "decoder.hand_span=8"])
    assert (config.decoder.hand_weight, config.decoder.hand_span) == (0.3, 8)
