# SPDX-License-Identifier: GPL-3.0-or-later
"""A bundle's prompt decoders (issue 39: the calm-standing shake is born in the tokenizer's decoder, and a decoder
taught to hold a calm body still damps every walking foot too; a walk's step is smoothed away by the tokenizer's
decoder): `kmm-train standing-decoder` / `walking-decoder` add to a bundle the decoder a `kmm-train decoder` run
refined, generation decodes standing prompts' frames, or plain walks', with it and every other frame with the
tokenizer's decoder, and a decoder refined from another tokenizer, or a config that is not the tokenizer's, is
refused naming the file.

The tiny run's bundle ships its refined decoder; the run's own pre-refinement tokenizer is a real, different decoder
of the same codes, used here as the standing one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from kmm_core.bundle.model_bundle import ModelBundle
from kmm_core.common.errors import KMMError
from kmm_core.generation.decoding_engine import GenerationOptions
from kmm_core.generation.timeline import Timeline
from kmm_core.generation.timeline_generator import generate_codes, generate_timeline
from kmm_core.humanml3d.feature_smoothing import (
    GESTURE_DECODER_CHANNELS,
    STANDING_DECODER_CHANNELS,
    STANDING_DECODER_RAMP,
    standing_decoder_weights,
    walking_decoder_weights,
)
from kmm_core.humanml3d.motion_kind import MotionKind
from kmm_core.motion.model_timing import MODEL_FPS
from kmm_core.training.cli import main as train_main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WALK_THEN_WAVE = {"fps": 20, "segments": [{"prompt": "a person walks forward", "frames": 40},
                                          {"prompt": "a person waves the right hand", "frames": 40}]}
WALK, WAVE = MotionKind(walking=1.0, steady=1.0), MotionKind(standing=1.0)
TWO_STEPS = GenerationOptions(steps=2, foot_lock=False)  # enough decoding for the tiny model, no foot clean-up


@pytest.fixture(scope="module")
def unrefined_run(tiny_run, tmp_path_factory) -> Path:
    """A run folder whose decoder.safetensors is the tiny run's tokenizer before its decoder stage: the same
    encoder and codebooks as the tiny bundle's tokenizer, another decoder."""
    run = tmp_path_factory.mktemp("standing") / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("bundle", "cache", "checkpoints"))
    shutil.copyfile(run / "tokenizer.safetensors", run / "decoder.safetensors")
    return run


@pytest.fixture(scope="module")
def dual_bundle(tiny_bundle, unrefined_run, tmp_path_factory) -> Path:
    bundle = tmp_path_factory.mktemp("dual") / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    assert train_main(["standing-decoder", "--bundle", str(bundle), "--run", str(unrefined_run),
                       "--standing-root-sigma", "1.5"]) == 0
    return bundle


def test_the_standing_decoder_decodes_the_standing_frames_only(dual_bundle, tiny_model):
    dual = ModelBundle.load(dual_bundle, device="cpu")
    assert dual.standing_tokenizer is not None and tiny_model.standing_tokenizer is None
    assert dual.decoding.standing_root_sigma == 1.5 and tiny_model.decoding.standing_root_sigma == 2.0
    card = (dual_bundle / "README.md").read_text()  # the card's decoding table says what bundle.json ships
    assert "| `standing_root_sigma` | 1.5 |" in card and card.index("## Decoding") < card.index("## Standing decoder")
    assert "standing_decoder" in json.loads((dual_bundle / "bundle.json").read_text())["components"]
    # the codes: the same encoder and codebooks, so a seed draws the same tokens
    codes = [_walk_then_wave_codes(model) for model in (tiny_model, dual)]
    assert torch.equal(codes[0], codes[1])
    # features: weight 0 is the tokenizer's decoder bit for bit, weight 1 the standing decoder's
    frames = 80
    plain = dual.codes_to_features(codes[0], frames)
    np.testing.assert_array_equal(dual.codes_to_features(codes[0], frames, np.zeros(frames)), plain)
    np.testing.assert_array_equal(plain, tiny_model.codes_to_features(codes[0], frames, np.ones(frames)))
    standing = dual.codes_to_features(codes[0], frames, np.ones(frames))
    assert np.abs(standing - plain).max() > 1e-3
    arms = np.setdiff1d(np.arange(plain.shape[1]), STANDING_DECODER_CHANNELS)  # the arms stay the tokenizer's
    assert arms.size == 8 * 12 and np.array_equal(standing[:, arms], plain[:, arms])
    # a stretch of standing frames is decoded again with its context only: as the whole sequence blended
    weights = np.zeros(frames)
    weights[30:50] = np.linspace(0.2, 1.0, 20)
    expected = plain.copy()
    expected[:, STANDING_DECODER_CHANNELS] += weights[:, None] * (standing - plain)[:, STANDING_DECODER_CHANNELS]
    np.testing.assert_allclose(dual.codes_to_features(codes[0], frames, weights), expected, rtol=0, atol=1e-5)
    with pytest.raises(KMMError, match="standing: expected 80 weights in"):
        dual.codes_to_features(codes[0], frames, np.full(frames, 2.0))
    # a take: the walk as the plain bundle makes it, the wave decoded by the standing decoder
    weights = standing_decoder_weights(frames, [((0, 40), WALK), ((40, 80), WAVE)])
    assert not weights[:41].any() and np.all(weights[41 + STANDING_DECODER_RAMP:] == 1.0)
    takes = [generate_timeline(model, Timeline.from_dict(WALK_THEN_WAVE), seed=3, options=TWO_STEPS)[0].joints
             for model in (tiny_model, dual)]
    # (the walk's last two frames see the wave's first through the decoded features' 0.5-frame Gaussian, and the
    # walk's real strides are placed from all its frames: the rest of the walk agrees to float rounding)
    np.testing.assert_allclose(takes[0][:38], takes[1][:38], rtol=0, atol=1e-6)
    np.testing.assert_allclose(takes[0][38:40], takes[1][38:40], rtol=0, atol=1e-5)
    assert np.abs(takes[0][45:] - takes[1][45:]).max() > 1e-3
    assert WALK_THEN_WAVE["fps"] == MODEL_FPS  # so the take's frames are the decoder's frames


def _run_from_another_tokenizer(unrefined_run: Path, tmp_path: Path) -> tuple[Path, str]:
    """A copy of ``unrefined_run`` whose tokenizer (and refined decoder) has another encoder: the run folder and the
    encoder tensor that differs."""
    run = tmp_path / "run"
    shutil.copytree(unrefined_run, run)
    weights = load_file(str(run / "decoder.safetensors"))
    key = next(k for k in weights if k.startswith("encoder.") and k.endswith(".weight"))
    weights[key] = weights[key] * 1.5
    save_file(weights, str(run / "decoder.safetensors"))
    shutil.copyfile(run / "decoder.safetensors", run / "tokenizer.safetensors")  # consistent within its own run
    return run, key


def test_the_refined_decoder_replaces_the_tokenizers_and_decodes_the_same_codes(tiny_bundle, tiny_model,
                                                                               unrefined_run, tmp_path, capsys):
    """`kmm-train refined-decoder` (issue 39: a wave's swing is lost in the tokenizer's decoder): the bundle's
    tokenizer becomes the run's, decoder and all, in the bundle's dtype; its encoder and codebooks are the bundle's,
    so a seed draws the same tokens, which the new decoder decodes; one refined from another tokenizer, or a run
    without a decoder stage, is refused naming the file, the bundle left as it was."""
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    assert train_main(["refined-decoder", "--bundle", str(bundle), "--run", str(unrefined_run)]) == 0
    assert "check-words" in capsys.readouterr().out
    refined = load_file(str(unrefined_run / "decoder.safetensors"))
    shipped = load_file(str(bundle / "tokenizer.safetensors"))
    before = load_file(str(tiny_bundle / "tokenizer.safetensors"))
    assert all(shipped[key].dtype == before[key].dtype for key in before)
    assert all(torch.equal(shipped[key], refined[key].to(before[key].dtype)) for key in refined)
    changed = [key for key in before if not torch.equal(shipped[key], before[key])]
    assert changed and all(key.startswith("decoder.") for key in changed)
    assert not (bundle / "word_checks.json").exists()
    card = (bundle / "README.md").read_text()
    assert "## Refined tokenizer decoder" in card and f"`{unrefined_run.name}`" in card
    model = ModelBundle.load(bundle, device="cpu")  # the checksums were recorded again
    codes = [_walk_then_wave_codes(m) for m in (tiny_model, model)]
    assert torch.equal(codes[0], codes[1])
    assert np.abs(model.codes_to_features(codes[0], 80) - tiny_model.codes_to_features(codes[0], 80)).max() > 1e-3

    other, key = _run_from_another_tokenizer(unrefined_run, tmp_path / "other")
    refused = tmp_path / "refused"
    shutil.copytree(tiny_bundle, refused)
    files = {name: (refused / name).read_bytes() for name in ("bundle.json", "tokenizer.safetensors")}
    assert train_main(["refined-decoder", "--bundle", str(refused), "--run", str(other)]) == 1
    error = capsys.readouterr().err
    assert "decoder.safetensors" in error and f"another tokenizer ({key} differs" in error, error
    (other / "decoder.safetensors").unlink()
    assert train_main(["refined-decoder", "--bundle", str(refused), "--run", str(other)]) == 1
    assert "decoder.safetensors" in (error := capsys.readouterr().err) and "not found" in error, error
    assert all((refused / name).read_bytes() == content for name, content in files.items())


def test_a_decoder_refined_from_another_tokenizer_is_refused(tiny_bundle, unrefined_run, tmp_path, capsys):
    run, key = _run_from_another_tokenizer(unrefined_run, tmp_path)
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    before = (bundle / "bundle.json").read_text()
    assert train_main(["standing-decoder", "--bundle", str(bundle), "--run", str(run)]) == 1
    error = capsys.readouterr().err
    assert "decoder.safetensors" in error and f"another tokenizer ({key} differs" in error, error
    assert (bundle / "bundle.json").read_text() == before and not (bundle / "standing_decoder.safetensors").exists()
    assert train_main(["standing-decoder", "--bundle", str(bundle), "--run", str(unrefined_run),
                       "--standing-root-sigma", "20"]) == 1
    assert "standing_root_sigma" in capsys.readouterr().err
    assert (bundle / "bundle.json").read_text() == before and not (bundle / "standing_decoder.safetensors").exists()
    manifest = json.loads(before)
    (bundle / "bundle.json").write_text(json.dumps({**manifest, "dtype": "int4"}))
    assert train_main(["standing-decoder", "--bundle", str(bundle), "--run", str(unrefined_run)]) == 1
    assert "dtype: 'int4' is not one of float16, float32" in capsys.readouterr().err
    assert not (bundle / "standing_decoder.safetensors").exists()


@pytest.mark.parametrize("command", ["standing-decoder", "walking-decoder", "gesture-decoder", "refined-decoder"])
def test_a_decoder_refined_on_a_source_the_licence_does_not_cover_is_refused(command, tiny_bundle, unrefined_run,
                                                                            tmp_path, capsys):
    """A decoder refined on data the bundle's data summary does not name (ACCAD's takes, for a bundle trained on
    CMU and HDM05 only) would carry that source's terms unsaid in the bundle's licence: refused, naming the run's
    data summary and the source, the bundle left as it was.  A source named whose every file was skipped (no
    clip: CMU's get-up trial, refused by its check) is no part of the decoder and is let through."""
    run = tmp_path / "run"
    shutil.copytree(unrefined_run, run)
    dataset = json.loads((run / "dataset.json").read_text())
    sources = dataset["sources"]
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    before = {path.name: path.read_bytes() for path in bundle.iterdir() if path.is_file()}
    (run / "dataset.json").write_text(json.dumps({
        **dataset, "sources": [*sources, "accad", "cmu-amc"],
        "per_dataset": {**dataset["per_dataset"], "accad": {"takes": 1, "clips": 2}}}))
    assert train_main([command, "--bundle", str(bundle), "--run", str(run)]) == 1
    error = capsys.readouterr().err
    assert "dataset.json" in error and "refined on data from accad, which" in error, error
    assert f"(its sources: {', '.join(sources)})" in error
    assert {path.name: path.read_bytes() for path in bundle.iterdir() if path.is_file()} == before
    (run / "dataset.json").write_text(json.dumps({**dataset, "sources": [*sources, "cmu-amc"]}))
    assert train_main([command, "--bundle", str(bundle), "--run", str(run)]) == 0


@pytest.mark.parametrize("component", ["standing_decoder", "walking_decoder", "gesture_decoder"])
def test_a_prompt_decoder_config_unlike_the_tokenizers_is_refused(component, gesture_bundle, tmp_path):
    from kmm_core.bundle.weight_checksums import FILES_KEY, bundle_file_names, checksum_entries

    bundle = tmp_path / "bundle"
    shutil.copytree(gesture_bundle, bundle)
    config = json.loads((bundle / f"{component}.json").read_text())
    config["res_blocks"] = config["res_blocks"] + 1
    (bundle / f"{component}.json").write_text(json.dumps(config))
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest[FILES_KEY] = checksum_entries(bundle, bundle_file_names(manifest["components"], bundle))
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(KMMError, match=rf"{component}\.json.*same configuration as tokenizer\.json"):
        ModelBundle.load(bundle, device="cpu")


def _walk_then_wave_codes(model: ModelBundle) -> torch.Tensor:
    """The codes `model` draws for WALK_THEN_WAVE at seed 3 with TWO_STEPS."""
    from kmm_core.generation.decoding_engine import StepCounter

    return generate_codes(model, Timeline.from_dict(WALK_THEN_WAVE), 3, TWO_STEPS, StepCounter(10**6, None, None),
                          TWO_STEPS.decoding_config(model))[0]


def _bundle_adding(base: Path, command: str, run: Path, folder: Path) -> Path:
    """A copy of the bundle ``base`` in ``folder`` after `kmm-train COMMAND --run RUN` added a prompt decoder."""
    bundle = folder / "bundle"
    shutil.copytree(base, bundle)
    assert train_main([command, "--bundle", str(bundle), "--run", str(run)]) == 0
    return bundle


def _card_after_adding_again(bundle_dir: Path, command: str, run: Path, tmp_path: Path) -> str:
    """The model card of a copy of `bundle_dir` after `kmm-train COMMAND` adds the same decoder once more."""
    return (_bundle_adding(bundle_dir, command, run, tmp_path) / "README.md").read_text()


def test_the_model_card_says_what_the_standing_decoder_does_once(dual_bundle, unrefined_run, tmp_path):
    card = _card_after_adding_again(dual_bundle, "standing-decoder", unrefined_run, tmp_path)
    assert card.count("## Standing decoder") == 1 and card.count("## Intended use and limits") == 1
    assert card.index("## Standing decoder") < card.index("## Intended use and limits")
    assert "Gaussian of 1.5 frames" in card and f"decoder run `{unrefined_run.name}`" in card


@pytest.fixture(scope="module")
def walking_bundle(dual_bundle, unrefined_run, tmp_path_factory) -> Path:
    """The dual bundle with the same other decoder as its walking decoder too."""
    return _bundle_adding(dual_bundle, "walking-decoder", unrefined_run, tmp_path_factory.mktemp("walking"))


def test_the_walking_decoder_decodes_the_plain_walks_frames_only(walking_bundle, dual_bundle, tiny_model):
    walking, dual = ModelBundle.load(walking_bundle, device="cpu"), ModelBundle.load(dual_bundle, device="cpu")
    assert walking.walking_tokenizer is not None and dual.walking_tokenizer is None
    assert json.loads((walking_bundle / "bundle.json").read_text())["components"][-2:] == ["standing_decoder",
                                                                                          "walking_decoder"]
    codes = _walk_then_wave_codes(tiny_model)
    frames = 80
    plain = walking.codes_to_features(codes, frames)
    np.testing.assert_array_equal(plain, dual.codes_to_features(codes, frames))
    walked = walking.codes_to_features(codes, frames, walking=np.ones(frames))
    # every channel from the walking decoder: here the same weights as the standing one, so its whole output
    assert np.abs(walked - plain).max() > 1e-3
    standing_everywhere = dual.codes_to_features(codes, frames, np.ones(frames))
    np.testing.assert_allclose(walked[:, STANDING_DECODER_CHANNELS], standing_everywhere[:, STANDING_DECODER_CHANNELS],
                               rtol=0, atol=1e-6)
    arms = np.setdiff1d(np.arange(plain.shape[1]), STANDING_DECODER_CHANNELS)
    assert np.abs(walked[:, arms] - plain[:, arms]).max() > 1e-3
    with pytest.raises(KMMError, match="walking: expected 80 weights in"):
        walking.codes_to_features(codes, frames, walking=np.full(frames, -1.0))
    # by the walking share, faded in next to another prompt
    spans = [((0, 40), WALK), ((40, 80), WAVE)]
    weights = walking_decoder_weights(frames, spans)
    assert np.all(weights[:40 - STANDING_DECODER_RAMP] == 1.0) and not weights[39:].any()
    assert not walking_decoder_weights(frames, [((0, 80), MotionKind())]).any()
    np.testing.assert_allclose(walking_decoder_weights(frames, [((0, 80), MotionKind(walking=0.6))]), 0.6)
    # generation: the walk decoded by the walking decoder, the wave (past the ramps) exactly as before
    np.testing.assert_allclose(walking.decode_kinds(codes, frames, spans),
                               walking.codes_to_features(codes, frames, standing_decoder_weights(frames, spans), weights),
                               rtol=0, atol=0)
    takes = [generate_timeline(model, Timeline.from_dict(WALK_THEN_WAVE), seed=3, options=TWO_STEPS)[0].joints
             for model in (dual, walking)]
    assert np.abs(takes[0][:30] - takes[1][:30]).max() > 1e-3
    # the wave's pose (past the ramp and the decoded features' 0.5-frame Gaussian) is as before; where the body
    # stands and faces follows the walk, so the pose is compared by each joint's distance from the pelvis
    wave = slice(40 + STANDING_DECODER_RAMP + 2, 80)
    reach = [np.linalg.norm(take[wave] - take[wave, :1], axis=-1) for take in takes]
    np.testing.assert_allclose(reach[0], reach[1], rtol=0, atol=1e-5)


def test_the_model_card_says_what_the_walking_decoder_does(walking_bundle, unrefined_run, tmp_path):
    card = _card_after_adding_again(walking_bundle, "walking-decoder", unrefined_run, tmp_path)
    assert card.count("## Walking decoder") == 1 and card.count("## Standing decoder") == 1
    assert card.index("## Walking decoder") < card.index("## Intended use and limits")
    assert "walk and run prompts" in card and "kmm-train walking-decoder" in card


def test_a_new_standing_root_sigma_rewrites_the_cards_decoding_table(dual_bundle, unrefined_run, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(dual_bundle, bundle)
    assert train_main(["standing-decoder", "--bundle", str(bundle), "--run", str(unrefined_run),
                       "--standing-root-sigma", "1.0"]) == 0
    card = (bundle / "README.md").read_text()
    assert card.count("## Decoding") == 1 and card.count("## Standing decoder") == 1
    assert "| `standing_root_sigma` | 1.0 |" in card and "| `standing_root_sigma` | 1.5 |" not in card
    assert "smoothed again by a Gaussian of 1 frame (" in card
    assert json.loads((bundle / "bundle.json").read_text())["decoding"]["standing_root_sigma"] == 1.0


@pytest.fixture(scope="module")
def gesture_bundle(walking_bundle, unrefined_run, tmp_path_factory) -> Path:
    """The walking bundle with the same other decoder as its gesture decoder too."""
    return _bundle_adding(walking_bundle, "gesture-decoder", unrefined_run, tmp_path_factory.mktemp("gesture"))


def test_the_gesture_decoder_decodes_the_standing_frames_arms_only(gesture_bundle, walking_bundle, tiny_model,
                                                                   unrefined_run, tmp_path):
    """(issue 39: a wave's swing is lost in the tokenizer's decoder) `kmm-train gesture-decoder`: the arms of
    standing prompts' frames come from the gesture decoder, their root, legs and torso still from the standing
    decoder, every other frame as before."""
    gesture, walking = ModelBundle.load(gesture_bundle, device="cpu"), ModelBundle.load(walking_bundle, device="cpu")
    assert gesture.gesture_tokenizer is not None and walking.gesture_tokenizer is None
    assert json.loads((gesture_bundle / "bundle.json").read_text())["components"][-1] == "gesture_decoder"
    channels = np.sort(np.concatenate([STANDING_DECODER_CHANNELS, GESTURE_DECODER_CHANNELS]))
    assert np.array_equal(channels, np.arange(263)) and GESTURE_DECODER_CHANNELS.size == 8 * 12  # the arms, no more
    codes = _walk_then_wave_codes(tiny_model)
    frames = 80
    plain = gesture.codes_to_features(codes, frames)
    np.testing.assert_array_equal(plain, walking.codes_to_features(codes, frames))
    standing = gesture.codes_to_features(codes, frames, np.ones(frames))
    before = walking.codes_to_features(codes, frames, np.ones(frames))
    np.testing.assert_array_equal(standing[:, STANDING_DECODER_CHANNELS], before[:, STANDING_DECODER_CHANNELS])
    # here the gesture decoder has the standing (and walking) decoder's weights: the arms are that decoder's output
    whole = walking.codes_to_features(codes, frames, walking=np.ones(frames))
    np.testing.assert_allclose(standing[:, GESTURE_DECODER_CHANNELS], whole[:, GESTURE_DECODER_CHANNELS],
                               rtol=0, atol=1e-6)
    assert np.abs(standing[:, GESTURE_DECODER_CHANNELS] - before[:, GESTURE_DECODER_CHANNELS]).max() > 1e-3
    # generation: the walk as before, the wave's arms from the gesture decoder
    spans = [((0, 40), WALK), ((40, 80), WAVE)]
    shown, old = gesture.decode_kinds(codes, frames, spans), walking.decode_kinds(codes, frames, spans)
    np.testing.assert_array_equal(shown[:40 - STANDING_DECODER_RAMP], old[:40 - STANDING_DECODER_RAMP])
    np.testing.assert_array_equal(shown[:, STANDING_DECODER_CHANNELS], old[:, STANDING_DECODER_CHANNELS])
    assert np.abs(shown[44:, GESTURE_DECODER_CHANNELS] - old[44:, GESTURE_DECODER_CHANNELS]).max() > 1e-3
    card = _card_after_adding_again(gesture_bundle, "gesture-decoder", unrefined_run, tmp_path)
    assert card.count("## Gesture decoder") == 1 and card.index("## Gesture decoder") < card.index(
        "## Intended use and limits")
    assert "the arms of the frames of standing prompts" in card and "kmm-train gesture-decoder" in card


@pytest.mark.parametrize("command", ["standing-decoder", "walking-decoder", "gesture-decoder"])
def test_adding_a_prompt_decoder_removes_the_word_checks_of_the_motion_before(command, tiny_bundle, unrefined_run,
                                                                              tmp_path, capsys):
    """The word checks measured the motion the bundle made before the new decoder: they are removed (the weak-word
    warnings would describe another motion), the command says how to measure again, and the bundle loads."""
    base = tmp_path / "base"
    shutil.copytree(tiny_bundle, base)
    (base / "word_checks.json").write_text("{}")
    bundle = _bundle_adding(base, command, unrefined_run, tmp_path)
    assert not (bundle / "word_checks.json").exists()
    assert "word checks removed: run `kmm-train check-words" in capsys.readouterr().out
    ModelBundle.load(bundle, device="cpu")
