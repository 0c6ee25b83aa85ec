# SPDX-License-Identifier: GPL-3.0-or-later
"""Real gait cycles under generated walks (bundle/gait_cycles.py, training/gait_cycle_library.py,
generation/gait_matching.py): strides cut from real Bandai-Namco walks and runs of the training split, stored
checksummed in the bundle, played where a take walks, judged with the gait benchmark's own measures."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

from kmm_core.bundle.gait_cycles import GAIT_CYCLES_JSON, GAIT_CYCLES_WEIGHTS, read_gait_cycles
from kmm_core.bundle.model_bundle import ModelBundle, read_manifest
from kmm_core.bundle.weight_checksums import WeightFileError
from kmm_core.common.errors import InputFileError
from kmm_core.evaluation.gait import take_gaits
from kmm_core.generation import gait_matching
from kmm_core.generation.gait_matching import walk_on_gait_cycles
from kmm_core.generation.timeline import Timeline
from kmm_core.generation.timeline_generator import generate_timeline
from kmm_core.humanml3d.motion_kind import MotionKind
from kmm_core.motion.time_filters import gaussian_smooth
from kmm_core.training.gait_cycle_library import cycle_frames


def _clips_of(prepared_dataset, content: str) -> list[np.ndarray]:
    rows = list(csv.DictReader((prepared_dataset / "index.csv").open()))
    return [np.load(prepared_dataset / "new_joint_vecs" / f"{row['name']}.npy") for row in rows
            if row["dataset"] == "bandai-namco-2" and row["content"] == content]


def test_real_walks_and_runs_are_cut_into_strides_and_a_wave_into_none(prepared_dataset):
    """Real takes: walks give strides of about a second, runs shorter and faster ones; standing waves give none."""
    def strides(content):
        cut = [(clip, first, last) for clip in _clips_of(prepared_dataset, content)
               for first, last in cycle_frames(clip)]
        seconds = np.array([(last - first) / 20.0 for _, first, last in cut])
        speed = np.array([np.linalg.norm(clip[first:last, 1:3], axis=1).mean() * 20.0 for clip, first, last in cut])
        return seconds, speed

    walk_seconds, walk_speed = strides("walk")
    run_seconds, run_speed = strides("run")
    assert len(walk_seconds) >= 4 and len(run_seconds) >= 2
    assert 0.8 <= np.median(walk_seconds) <= 1.4, walk_seconds      # real walking: 100-130 steps a minute
    assert np.median(run_seconds) < 0.8 * np.median(walk_seconds), (run_seconds, walk_seconds)
    assert np.median(run_speed) > 1.5 * np.median(walk_speed), (run_speed, walk_speed)
    assert sum(len(cycle_frames(clip)) for clip in _clips_of(prepared_dataset, "wave-right-hand")) == 0


def test_strides_a_walker_took_one_after_another_stay_one_after_another(tiny_bundle, prepared_dataset):
    """A real walk's steady stretch is cut whole, so a stride starts on the frame the one before it ended (cut in
    separate 2-s windows, a walk's strides of about a second were never consecutive), and the bundle knows which
    stride each walker took next (`GaitCycles.successor`)."""
    consecutive = 0
    for clip in _clips_of(prepared_dataset, "walk"):
        cut = cycle_frames(clip)
        consecutive += sum(later[0] == earlier[1] for earlier, later in zip(cut, cut[1:], strict=False))
    assert consecutive >= 2

    cycles = read_gait_cycles(tiny_bundle)
    following = np.flatnonzero(cycles.successor >= 0)
    assert len(following) >= 2
    for cycle in following:
        successor = cycles.successor[cycle]
        assert cycles.clips[successor] == cycles.clips[cycle]
        assert cycles.frames[successor, 0] == cycles.frames[cycle, 1]
        assert np.allclose(cycles.samples[successor, 0], cycles.samples[cycle, -1])   # the same frame


def test_cycles_cut_before_their_frames_were_recorded_still_read(tiny_bundle, tmp_path):
    """Cycles without ``frames`` read as cycles no stride follows; malformed frames are refused, naming them."""
    from dataclasses import replace

    from kmm_core.bundle.gait_cycles import write_gait_cycles
    from kmm_core.training.bundle_writer import record_checksums

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    cycles = read_gait_cycles(bundle)
    write_gait_cycles(bundle, replace(cycles, frames=None), {})
    record_checksums(bundle)
    older = read_gait_cycles(bundle)
    assert older.frames is None and np.all(older.successor == -1) and len(older) == len(cycles)
    with pytest.raises(InputFileError, match=r"gait_cycles\.safetensors: frames must be \d+ pairs"):
        write_gait_cycles(bundle, replace(cycles, frames=cycles.frames[:, ::-1]), {})


def test_kmm_train_all_adds_cycles_of_its_training_split_checksummed(tiny_bundle, prepared_dataset):
    cycles = read_gait_cycles(tiny_bundle)
    assert cycles is not None and len(cycles) >= 4
    train = set((prepared_dataset / "train.txt").read_text().split())
    assert set(cycles.clips) <= train, set(cycles.clips) - train   # never a held-out take
    assert np.allclose(np.linalg.norm(cycles.embeddings, axis=1), 1.0, atol=1e-2)
    files = read_manifest(tiny_bundle)["files"]
    assert GAIT_CYCLES_JSON in files and GAIT_CYCLES_WEIGHTS in files


def test_the_open_model_plays_no_bandai_namco_stride(tmp_path):
    """The commercial-use model's cycles come from its own (CMU) data: not one from Bandai-Namco's takes."""
    from kmm_core.bundle.model_bundle import checkpoints_root

    cycles = read_gait_cycles(checkpoints_root() / "kmm-small-open")
    assert cycles is not None and len(cycles) >= 10
    assert not [clip for clip in cycles.clips if clip.lstrip("M").startswith("dataset-")]


def test_damaged_or_malformed_cycles_are_refused_naming_the_file(tiny_bundle, prepared_dataset, tmp_path):
    from kmm_core.bundle.gait_cycles import write_gait_cycles
    from kmm_core.training.bundle_writer import record_checksums

    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_bundle, damaged)
    data = bytearray((damaged / GAIT_CYCLES_WEIGHTS).read_bytes())
    data[-5] ^= 0xFF
    (damaged / GAIT_CYCLES_WEIGHTS).write_bytes(bytes(data))
    bundle = ModelBundle.load(damaged, device="cpu")
    walk = _clips_of(prepared_dataset, "walk")[0]   # a real walk: it travels, so the cycles are read
    with pytest.raises(WeightFileError, match=r"gait_cycles\.safetensors: SHA-256"):
        walk_on_gait_cycles(bundle, walk, [((0, len(walk)), "a person walks forward")],
                            [((0, len(walk)), MotionKind(walking=1.0, steady=1.0))], 0)

    malformed = tmp_path / "malformed"
    shutil.copytree(tiny_bundle, malformed)
    cycles = read_gait_cycles(malformed)
    samples = cycles.samples.copy()
    samples[0, 3, 5] = np.nan
    with pytest.raises(InputFileError, match=r"gait_cycles\.safetensors.*samples holds NaN"):
        write_gait_cycles(malformed, type(cycles)(samples, cycles.speed, cycles.duration, cycles.embeddings,
                                                  cycles.space, cycles.clips), {})
    (malformed / GAIT_CYCLES_JSON).write_text((malformed / GAIT_CYCLES_JSON).read_text().replace(
        '"phase_samples": 24', '"phase_samples": 12'))
    record_checksums(malformed)
    with pytest.raises(InputFileError, match=r"gait_cycles\.json.*phase_samples"):
        read_gait_cycles(malformed)


def _walk_features(bundle):
    from kmm_core.generation.decoding_engine import GenerationOptions, StepCounter
    from kmm_core.generation.timeline_generator import generate_codes

    timeline = Timeline.from_dict({"fps": 20, "segments": [{"prompt": "a person walks forward", "start": 1,
                                                            "end": 100}]})
    options = GenerationOptions()
    codes, frames = generate_codes(bundle, timeline, 0, options, StepCounter(10**6, None, None),
                                   options.decoding_config(bundle))
    return bundle.codes_to_features(codes, frames)


def test_frames_that_do_not_walk_are_left_as_decoded(shipped_bundle):
    """A standing prompt's frames and a walk's own frames of no walking share come back bit for bit."""
    features = _walk_features(shipped_bundle)
    span = (0, len(features))
    for kind in (MotionKind(standing=1.0), MotionKind()):
        out = walk_on_gait_cycles(shipped_bundle, features, [(span, "a person walks forward")], [(span, kind)], 0)
        assert np.array_equal(out, features)
    walked = walk_on_gait_cycles(shipped_bundle, features, [(span, "a person walks forward")],
                                 [(span, MotionKind(walking=1.0, steady=1.0))], 0)
    assert not np.array_equal(walked, features)


def _gaits(bundle, prompt: str, seeds=range(3)):
    timeline = Timeline.from_dict({"fps": 20, "segments": [{"prompt": prompt, "start": 1, "end": 200}]})
    return [gait for seed in seeds for gait in take_gaits(generate_timeline(bundle, timeline, seed=seed)[0].joints,
                                                           20.0)]


def test_the_default_walks_with_two_pelvis_rises_a_stride_and_even_steps(shipped_bundle):
    """The gait benchmark's measures on the shipped model's walk, with its cycles and without them: the generated
    walk alone rises once a stride (a limp); played on real strides it rises twice, steps evenly, at a real cadence
    (Bandai-Namco's held-out walks: bob share 0.83-0.99, asymmetry <= 0.10, 104-131 steps a minute)."""
    played = _gaits(shipped_bundle, "a person walks forward")
    assert len(played) >= 4
    median = {name: float(np.median([getattr(g, name) for g in played]))
              for name in ("pelvis_bob", "step_asymmetry", "cadence", "regularity")}
    assert median["pelvis_bob"] >= 0.83 and median["step_asymmetry"] <= 0.1, median
    assert 100.0 <= median["cadence"] <= 131.0 and median["regularity"] >= 0.93, median

    object.__setattr__(shipped_bundle, "_gait_cycles", False)   # as a bundle without cycles decodes
    try:
        generated = _gaits(shipped_bundle, "a person walks forward")
    finally:
        object.__delattr__(shipped_bundle, "_gait_cycles")
    assert np.median([g.pelvis_bob for g in generated]) < median["pelvis_bob"] - 0.15


def test_kmm_train_gait_cycles_cuts_them_again_and_says_so_in_the_card(tiny_bundle, prepared_dataset, tmp_path,
                                                                       capsys):
    import json

    from kmm_core.bundle.weight_checksums import verify_bundle_files
    from kmm_core.training.cli import main as train_main

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    before = (bundle / GAIT_CYCLES_WEIGHTS).read_bytes()
    for name in (GAIT_CYCLES_JSON, GAIT_CYCLES_WEIGHTS):
        (bundle / name).unlink()
    assert train_main(["gait-cycles", "--dataset", str(prepared_dataset), "--bundle", str(bundle)]) == 0
    assert "gait cycles (bandai-namco" in capsys.readouterr().out
    assert (bundle / GAIT_CYCLES_WEIGHTS).read_bytes() == before          # the same strides, cut again
    assert verify_bundle_files(bundle, read_manifest(bundle)) == len(read_manifest(bundle)["files"])
    assert "## Gait cycles" in (bundle / "README.md").read_text(encoding="utf-8")

    manifest = json.loads((bundle / "bundle.json").read_text(encoding="utf-8"))
    manifest["dataset"].pop("per_dataset")
    (bundle / "bundle.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert train_main(["gait-cycles", "--dataset", str(prepared_dataset), "--bundle", str(bundle)]) == 1
    assert "bundle.json: names no datasets" in capsys.readouterr().err


def test_each_next_stride_is_the_walkers_own_or_keeps_its_pace_and_posture(shipped_bundle):
    """"someone walks" finds CMU strides of walkers carrying the pelvis 5-10 cm higher or lower than one another; at
    every heel strike a walk goes on with the stride its walker took next in the same recording where one was cut,
    else with another within `POSTURE_VARIATION` of its pelvis height and `STRIDE_VARIATION` of its duration (a
    switch between walkers, stride after stride, rose or dropped the hips once a stride: the gait benchmark's bob
    share 0.49), else with another stride of the same recording, else with another of its pelvis height, and only
    where there is none with itself again (a CMU recording's last stride, like none other in pace and posture, was
    played eight times over in "someone walks", seed 0: a machine's walk)."""
    from kmm_core.generation.gait_matching import (
        POSTURE_VARIATION,
        STRIDE_VARIATION,
        _bundle_cycles,
        _next_cycle,
        candidate_cycles,
    )
    from kmm_core.generation.prompt_vocabulary import embed_texts

    cycles = _bundle_cycles(shipped_bundle)
    candidates = candidate_cycles(cycles, embed_texts(shipped_bundle, ["someone walks"], cycles.space)[0],
                                  np.array([0.0, 1.2]))
    heights = cycles.pelvis_height[candidates]
    assert heights.max() - heights.min() > 0.05
    recordings = {cycles.clips[candidate] for candidate in candidates}
    rng, successors, repeated, lone = np.random.default_rng(0), 0, 0, 0
    for first in candidates:
        cycle = int(first)
        for _ in range(20):
            following = _next_cycle(cycles, cycle, candidates, rng)
            if cycles.successor[cycle] >= 0 and cycles.clips[cycle] in recordings:
                assert following == cycles.successor[cycle]
                successors += 1
            else:
                others = candidates[candidates != cycle]
                similar = others[
                    (np.abs(cycles.duration[others] / cycles.duration[cycle] - 1) <= STRIDE_VARIATION)
                    & (np.abs(cycles.pelvis_height[others] - cycles.pelvis_height[cycle]) <= POSTURE_VARIATION)]
                same_recording = [other for other in others if cycles.clips[other] == cycles.clips[cycle]]
                if len(similar):
                    assert following in similar
                elif same_recording:
                    assert following in same_recording
                    lone += 1
                elif any(np.abs(cycles.pelvis_height[others] - cycles.pelvis_height[cycle]) <= POSTURE_VARIATION):
                    assert abs(cycles.pelvis_height[following] - cycles.pelvis_height[cycle]) <= POSTURE_VARIATION
                    assert following != cycle
                repeated += following == cycle
            cycle = following
    assert successors >= 1 and lone >= 1    # a recording's strides in turn; a lone stride goes back to its walker's
    assert repeated <= 45   # 118 of 160 with the stride itself drawn among those like it; 40: two strides like no
    #                         other candidate in posture, nor in pace, with no other stride of their recording


def test_a_walk_plays_a_recordings_strides_in_order_and_the_hips_stay_where_its_walker_held_them(shipped_bundle,
                                                                                                 monkeypatch):
    """"a person walks forward" plays a Bandai-Namco walker's strides in the order they were recorded (no stride
    repeated: its feet vary from stride to stride as that walker's did), and the foot clean-up changes the played
    pelvis height only slowly (lowered within 0.2 s to reach a held foot at the end of each stance, it bobbed once a
    stride: 11-25 mm within half a second, 5-7 mm now; "someone walks" at two rises in 0.65 of its windows)."""
    from kmm_core.generation import timeline_generator
    from kmm_core.generation.gait_matching import _bundle_cycles

    cycles = _bundle_cycles(shipped_bundle)
    played, features = [], {}
    original_next, original_walk = gait_matching._next_cycle, timeline_generator.walk_on_gait_cycles

    def next_cycle(cycles, cycle, candidates, rng):
        played.append((cycle, original_next(cycles, cycle, candidates, rng)))
        return played[-1][1]

    def walk(*args):
        features["walked"] = original_walk(*args)
        return features["walked"]

    monkeypatch.setattr(gait_matching, "_next_cycle", next_cycle)
    monkeypatch.setattr(timeline_generator, "walk_on_gait_cycles", walk)
    timeline = Timeline.from_dict({"fps": 20, "segments": [{"prompt": "a person walks forward", "start": 1,
                                                            "end": 200}]})
    joints = generate_timeline(shipped_bundle, timeline, seed=0)[0].joints
    in_order = [cycles.successor[cycle] == following for cycle, following in played]
    assert len(played) >= 6 and sum(in_order) >= len(played) // 2, played
    walking = slice(60, 180)
    shift = joints[walking, 0, 1] - features["walked"][walking, 3]   # final pelvis height - played root height
    fast = shift - gaussian_smooth(shift, 10.0)                      # what changes within half a second
    assert np.ptp(fast) < 0.01, np.ptp(fast)                         # measured 6 mm; 13.5 mm lowered within 0.2 s
