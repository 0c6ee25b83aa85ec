# SPDX-License-Identifier: GPL-3.0-or-later
"""Timeline -> one continuous motion with the tiny trained bundle: lengths, seeds, progress, cancel, long windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kmm_core.common.errors import ConfigError
from kmm_core.common.progress import GenerationCancelled
from kmm_core.evaluation.motion_quality import jerk_curve
from kmm_core.generation.decoding_engine import GenerationOptions, StepCounter, decode_windowed, window_starts
from kmm_core.generation.timeline import Timeline
from kmm_core.generation.timeline_generator import generate_timeline
from kmm_core.model.motion_tokenizer import num_tokens_for_frames
from kmm_core.motion.motion_result import MotionResult

FAST = GenerationOptions(steps=2)


class FixedKinds:
    """Stands in for a bundle's prompt kinds (``prompt_kinds.PromptKinds``): each prompt's kind given outright."""

    def __init__(self, kinds):
        self.kinds = kinds

    def of(self, prompts):
        from kmm_core.humanml3d.motion_kind import MotionKind

        return [self.kinds.get(prompt, MotionKind()) for prompt in prompts]


@pytest.fixture(scope="module")
def bundle(tiny_model):
    return tiny_model


@pytest.fixture(scope="module")
def timeline():
    # 30 fps and lengths that are not multiples of a token: resampling and cropping must still be exact.
    return Timeline.from_dict({"fps": 30, "segments": [{"prompt": "a person walks forward", "frames": 37},
                                                       {"prompt": "a person waves the right hand", "seconds": 1.1},
                                                       {"prompt": "a person sits down", "frames": 29}]})


@pytest.mark.parametrize("transitions", ["per_token", "inpaint"])
def test_lengths_segments_and_root_are_exact_and_continuous(bundle, timeline, transitions, tmp_path):
    (motion,) = generate_timeline(bundle, timeline, seed=3, options=GenerationOptions(steps=2,
                                                                                        transitions=transitions))
    assert motion.fps == 30.0 and motion.num_frames == timeline.total_frames == 99
    assert motion.segment_frames.tolist() == [list(r) for r in timeline.segment_ranges()]
    assert motion.segment_prompts == timeline.prompts
    assert Timeline.from_dict(__import__("json").loads(motion.timeline_json)) == timeline
    # One motion: the pelvis never jumps between frames (a separately generated segment would restart at 0).
    step = np.linalg.norm(np.diff(motion.root_translation, axis=0), axis=-1)
    assert step.max() < 0.3
    assert np.isfinite(jerk_curve(motion.joints, motion.fps)).all()
    loaded = MotionResult.load(motion.save(tmp_path / "m.npz"))
    assert np.array_equal(loaded.joints, motion.joints)


def test_seeds_reproduce_and_variations_differ(bundle, timeline):
    first = generate_timeline(bundle, timeline, seed=11, variations=2, options=FAST)
    again = generate_timeline(bundle, timeline, seed=12, variations=1, options=FAST)
    assert len(first) == 2
    assert not np.array_equal(first[0].joints, first[1].joints)
    # Variation v uses seed + v: the second variation of seed 11 is the first of seed 12.
    assert np.array_equal(first[1].joints, again[0].joints)


def test_progress_reaches_total_and_cancel_stops_at_the_next_step(bundle, timeline):
    reports = []
    generate_timeline(bundle, timeline, seed=0, variations=2, options=FAST,
                      on_progress=lambda step, total, message: reports.append((step, total)))
    steps = [step for step, _ in reports]
    assert steps == sorted(steps) and steps[-1] == reports[-1][1] and len({t for _, t in reports}) == 1
    assert len(reports) == reports[-1][1]  # one report per decoding step
    seen = []
    with pytest.raises(GenerationCancelled):
        generate_timeline(bundle, timeline, seed=0, options=FAST,
                          on_progress=lambda step, total, message: seen.append(step),
                          should_cancel=lambda: len(seen) >= 1)
    assert seen == [1]


def test_long_timelines_decode_in_windows_that_continue_each_other(bundle):
    options = GenerationOptions(steps=1, max_window_tokens=32, window_overlap_tokens=8)
    frames = 400  # 100 tokens: 4 windows of 32 tokens overlapping by 8
    num_tokens = num_tokens_for_frames(frames)
    assert window_starts(num_tokens, options) == [0, 24, 48, 72]
    condition = torch.randn(1, bundle.generator.config.cond_dim).expand(num_tokens, -1)
    # The first 10 tokens are given: windowing must keep them and fill every other token.
    given = bundle.joints_to_codes(bundle.codes_to_joints(torch.zeros(10, 2, dtype=torch.int64), 40))
    fixed = torch.full((num_tokens, bundle.generator.config.num_quantizers), -1, dtype=torch.int64)
    fixed[:10] = given
    rng = torch.Generator().manual_seed(0)
    counter = StepCounter(4 * 2, None, None)
    codes = decode_windowed(bundle, frames, condition, fixed, options.decoding_config(bundle), rng, options, counter)
    assert codes.shape == (num_tokens, bundle.generator.config.num_quantizers)
    assert bool((codes >= 0).all()) and torch.equal(codes[:10], given)
    assert counter.done == counter.total

    long = Timeline.from_dict({"fps": 24, "segments": [{"prompt": "a person walks", "seconds": 12.5},
                                                       {"prompt": "a person runs", "seconds": 7.5}]})
    (motion,) = generate_timeline(bundle, long, seed=1, options=options)
    assert motion.num_frames == long.total_frames == 480
    assert np.linalg.norm(np.diff(motion.root_translation, axis=0), axis=-1).max() < 0.3


def test_standing_root_smoothing_changes_the_standing_segment_after_decoding_only(bundle, timeline):
    """The standing-root step runs on decoded features: the same seed gives the same tokens with it on or off, the
    walk before the wave is bit-identical, the wave's pelvis moves less jerkily with it, and 0 turns it off."""
    from kmm_core.generation.timeline_generator import generate_codes

    on = GenerationOptions(steps=2, foot_lock=False)
    off = GenerationOptions(steps=2, foot_lock=False, standing_root_sigma=0.0)
    config = on.decoding_config(bundle)
    assert on.standing_root_sigma is None and config.standing_root_sigma == 2.0  # default: the bundle's, on
    codes = [generate_codes(bundle, timeline, 5, options, StepCounter(10**6, None, None), config)[0] for options in (on, off)]
    assert torch.equal(codes[0], codes[1])
    smoothed, raw = (generate_timeline(bundle, timeline, seed=5, options=options)[0] for options in (on, off))
    walk_end, wave_end = (int(v) for v in smoothed.segment_frames[1])
    np.testing.assert_array_equal(smoothed.joints[:walk_end], raw.joints[:walk_end])
    wave = slice(walk_end + 6, wave_end)
    pelvis_jerk = [np.abs(np.diff(m.joints[wave, 0], n=3, axis=0)).mean() for m in (smoothed, raw)]
    assert pelvis_jerk[0] < pelvis_jerk[1], pelvis_jerk
    again = generate_timeline(bundle, timeline, seed=5, options=off)[0]
    np.testing.assert_array_equal(again.joints, raw.joints)


def test_the_walk_cycle_option_sets_every_cycle_pull(bundle):
    """`--walk-cycle B` (GenerationOptions.walk_cycle_bonus) overrides the three cycle bonuses (base, residual, the
    steady walks' extra); None keeps the bundle's."""
    from dataclasses import replace

    bundle_config = replace(bundle.decoding, locomotion_period_bonus=8.0, locomotion_residual_period_bonus=8.0,
                            steady_walk_period_bonus=16.0)
    pulls = ("locomotion_period_bonus", "locomotion_residual_period_bonus", "steady_walk_period_bonus")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bundle, "decoding", bundle_config)
        off = GenerationOptions(walk_cycle_bonus=0.0).decoding_config(bundle)
        kept = GenerationOptions().decoding_config(bundle)
        five = GenerationOptions(walk_cycle_bonus=5.0).decoding_config(bundle)
    assert [getattr(off, name) for name in pulls] == [0.0, 0.0, 0.0]
    assert [getattr(kept, name) for name in pulls] == [8.0, 8.0, 16.0]
    assert [getattr(five, name) for name in pulls] == [5.0, 5.0, 5.0]


@pytest.mark.parametrize("transitions", ["per_token", "inpaint"])
def test_only_steady_walks_take_the_residual_gait_cycle(bundle, transitions, monkeypatch):
    """Every decode of a timeline is told how much each token belongs to a walk that keeps its heading
    (`steady_walk`, where `decoding.locomotion_residual_period_bonus` applies) beside how much to any walk
    (`locomotion`): its prompt's steady and walking shares (`prompt_kinds`; given outright here, measured on the
    shipped model's captions in tests/test_prompt_kinds.py): the straight walk's tokens are both, the turning walk's
    only a walk, the wave's neither."""
    from kmm_core.generation import decoding_engine, transition_inpainting
    from kmm_core.generation.timeline_generator import generate_codes
    from kmm_core.humanml3d.motion_kind import MotionKind

    monkeypatch.setattr(bundle, "_prompt_kinds", FixedKinds({
        "a person walks forward": MotionKind(1.0, 1.0, 0.0),
        "a person walks forward and turns left": MotionKind(1.0, 0.0, 0.0),
        "a person waves the right hand": MotionKind(0.0, 0.0, 1.0)}), raising=False)
    seen = []

    def spy(original):
        def decode(*args, **kwargs):
            seen.append((kwargs["locomotion"], kwargs["steady_walk"]))
            return original(*args, **kwargs)
        return decode

    for module in (decoding_engine, transition_inpainting):
        monkeypatch.setattr(module, "decode_tokens", spy(module.decode_tokens))
    source = Timeline.from_dict({"fps": 20, "segments": [
        {"prompt": "a person walks forward", "frames": 40}, {"prompt": "a person walks forward and turns left",
                                                            "frames": 40},
        {"prompt": "a person waves the right hand", "frames": 40}]})
    options = GenerationOptions(steps=2, foot_lock=False, transitions=transitions)
    generate_codes(bundle, source, 5, options, StepCounter(10**6, None, None), options.decoding_config(bundle))
    first_locomotion, first_steady = seen[0]
    if transitions == "per_token":  # one decode of the whole timeline, per token
        assert first_locomotion[0].tolist() == [1.0] * 20 + [0.0] * 10
        assert first_steady[0].tolist() == [1.0] * 10 + [0.0] * 20
    else:  # the segments together, one row each, then the transition windows per token
        assert first_locomotion.tolist() == [1.0, 1.0, 0.0] and first_steady.tolist() == [1.0, 0.0, 0.0]
        windows_locomotion, windows_steady = seen[1]
        assert bool((windows_steady <= windows_locomotion).all()) and bool(windows_steady.any())
        assert bool((windows_locomotion - windows_steady).any())


def test_walk_segments_take_the_bundles_walk_guidance(bundle, timeline, monkeypatch):
    """`decoding.locomotion_guidance_factor` guides a walk's tokens at its share of the scale: a walk alone decodes
    as at that scale, a wave alone as shipped, and in a timeline only the walk (and the transitions that see it)
    changes; the wave's own tokens stay bit-identical.  (The kinds given outright: a whole walk and a whole wave.)"""
    from dataclasses import replace

    from kmm_core.humanml3d.motion_kind import MotionKind

    monkeypatch.setattr(bundle, "_prompt_kinds", FixedKinds({
        "a person walks forward": MotionKind(1.0, 1.0, 0.0), "a person waves the right hand": MotionKind(0.0, 0.0, 1.0)}),
        raising=False)

    from kmm_core.generation.timeline_generator import generate_codes, token_boundaries

    options = GenerationOptions(steps=3, foot_lock=False)
    shipped = replace(options.decoding_config(bundle), guidance_scale=4.0)
    walks_unguided = replace(shipped, locomotion_guidance_factor=0.0)  # the tiny model: only no guidance differs

    def codes(source, config):
        return generate_codes(bundle, source, 5, options, StepCounter(10**6, None, None), config)[0]

    walk = Timeline.from_dict({"fps": 20, "segments": [{"prompt": "a person walks forward", "frames": 64}]})
    wave = Timeline.from_dict({"fps": 20, "segments": [{"prompt": "a person waves the right hand", "frames": 64}]})
    assert torch.equal(codes(walk, walks_unguided), codes(walk, replace(shipped, guidance_scale=0.0)))
    assert not torch.equal(codes(walk, walks_unguided), codes(walk, shipped))
    assert torch.equal(codes(wave, walks_unguided), codes(wave, shipped))
    mixed, plain = codes(timeline, walks_unguided), codes(timeline, shipped)
    bounds = token_boundaries(timeline.segment_ranges(20), mixed.shape[0])
    walk_tokens = slice(0, bounds[1] - options.transition_tokens)
    wave_tokens = slice(bounds[1] + options.transition_tokens, bounds[2] - options.transition_tokens)
    assert not torch.equal(mixed[walk_tokens], plain[walk_tokens])
    assert torch.equal(mixed[wave_tokens], plain[wave_tokens])


def test_straight_walks_keep_the_most_regular_of_their_candidate_decodes(bundle, monkeypatch):
    """`walk_candidates` N (the bundle's ``decoding.steady_walk_candidates``): a timeline's straight walk is decoded
    N times, in the segments' batch or on its own, scored by the gait regularity of each candidate's decoded motion,
    and the best kept; the wave's own tokens and a turning walk are exactly as with one draw, the progress total is
    unchanged, and a timeline whose decode mixes a walk with other prompts per token draws one."""
    from kmm_core.generation import decoding_engine, timeline_generator, walk_candidates
    from kmm_core.generation.timeline_generator import generate_codes, planned_steps, token_boundaries
    from kmm_core.humanml3d.motion_kind import MotionKind

    monkeypatch.setattr(bundle, "_prompt_kinds", FixedKinds({   # the kinds given outright (test_prompt_kinds.py)
        "a person walks forward": MotionKind(1.0, 1.0, 0.0), "a person walks and turns left": MotionKind(1.0, 0.0, 0.0),
        "a person waves the right hand": MotionKind(0.0, 0.0, 1.0)}), raising=False)

    scored = []

    def recording(bundle_, rows, drawn=None):
        score = walk_candidates.stride_score(bundle_, rows, drawn)

        def record(codes, which):
            values = score(codes, which)
            scored.append((codes.clone(), list(which), values))
            return values
        return record

    for module in (decoding_engine, timeline_generator):
        monkeypatch.setattr(module, "stride_score", recording)

    def codes(source, count, transitions="inpaint"):
        options = GenerationOptions(steps=2, foot_lock=False, transitions=transitions, walk_candidates=count)
        config = options.decoding_config(bundle)
        counter = StepCounter(planned_steps(bundle, source, options, config), None, None)
        out = generate_codes(bundle, source, 5, options, counter, config)[0]
        assert counter.done == counter.total  # every step reported once: the candidates ride in the same decodes
        return out

    walk_then_wave = Timeline.from_dict({"fps": 20, "segments": [
        {"prompt": "a person walks forward", "frames": 80}, {"prompt": "a person walks and turns left", "frames": 60},
        {"prompt": "a person waves the right hand", "frames": 60}]})
    one = codes(walk_then_wave, 1)
    assert not scored
    three = codes(walk_then_wave, 3)
    (candidates, rows, values), = scored  # one decode drew candidates: the segments' batch, the straight walk's row
    assert rows == [0, 0, 0] and len(values) == 3
    bounds = token_boundaries(walk_then_wave.segment_ranges(20), one.shape[0])
    best = candidates[int(np.argmax(values))]
    assert torch.equal(three[:bounds[1] - 4], best[:bounds[1] - 4])  # the kept walk, up to its transition
    assert torch.equal(candidates[0][:bounds[1] - 4], one[:bounds[1] - 4])  # the first candidate: the one draw
    turning, wave = slice(bounds[1] + 4, bounds[2] - 4), slice(bounds[2] + 4, bounds[3])
    assert torch.equal(three[turning], one[turning]) and torch.equal(three[wave], one[wave])

    scored.clear()
    alone = Timeline.from_dict({"fps": 20, "segments": [{"prompt": "a person walks forward", "frames": 80}]})
    codes(alone, 4)
    (_, rows, values), = scored  # a single segment is decoded in windows: the same candidates
    assert rows == [0] * 4
    scored.clear()
    assert torch.equal(codes(walk_then_wave, 3, "per_token"), codes(walk_then_wave, 1, "per_token")) and not scored
    with pytest.raises(ConfigError, match="walk_candidates: must be a whole number from 1 to 8"):
        GenerationOptions(walk_candidates=0)
