# SPDX-License-Identifier: GPL-3.0-or-later
"""`kmm-train check-captions` and its file (bundle/caption_checks.py): a tiny real bundle's train captions generated
and judged, the file refused when it does not fit, and the shipped model's prompt check warning, before generating,
about prompts whose nearest training captions it does not perform."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from kmm_core.bundle.caption_checks import (
    BOOST_FULL_BELOW,
    BOOST_FULL_GAIN,
    CAPTION_CHECKS_FILE,
    NEARNESS,
    PERFORMED_SHARE,
    WARN_BELOW,
    boost_weight,
    caption_checks_document,
    caption_checks_from_dict,
    read_caption_checks,
    write_caption_checks,
)
from kmm_core.bundle.model_bundle import checkpoints_root
from kmm_core.bundle.vocabulary import read_vocabulary
from kmm_core.common.errors import InputFileError
from kmm_core.training.caption_checks_command import main as check_captions_main


def test_the_prediction_weighs_the_nearest_checked_captions():
    checks = caption_checks_from_dict(caption_checks_document("m", [[True, False, None, True, False]], {}, ""), 5)
    assert np.isnan(checks.passed[2]) and checks.neighbours == 8
    # Caption 2 is nearest but has no check; of the others, 1 (failed) and 0 (passed) are nearest.
    # Each weighs by how near it is beside the nearest checked one: exp((similarity - best) / NEARNESS).
    rate, failed, boost, usual = checks.predicted(np.array([0.9, 0.8, 0.99, 0.1, 0.2]))
    assert failed == 1 and boost == 0.0 and usual == rate  # no results at a raised guidance: no boost
    weight = {index: np.exp((similarity - 0.9) / NEARNESS) for index, similarity in ((0, 0.9), (1, 0.8), (3, 0.1),
                                                                                    (4, 0.2))}
    assert rate == pytest.approx((weight[0] + weight[3]) / sum(weight.values()))
    # Far captions say little: three failed ones near the prompt outweigh five performed ones 0.3 further off.
    near = caption_checks_from_dict(caption_checks_document("m", [[False] * 3 + [True] * 5], {}, ""), 8)
    assert near.predicted(np.array([0.98, 0.93, 0.75, 0.67, 0.64, 0.62, 0.60, 0.57]))[0] < WARN_BELOW
    one = caption_checks_from_dict({**caption_checks_document("m", [[True, False, None, True, False]], {}, ""),
                                    "neighbours": 1}, 5)
    assert one.predicted(np.array([0.1, 0.9, 0.0, 0.0, 0.0])) == (0.0, 1, 0.0, 0.0)
    assert caption_checks_from_dict(caption_checks_document("m", [[None, None]], {}, ""), 2).predicted(
        np.zeros(2)) is None


def test_the_raised_guidance_goes_to_prompts_it_helps_that_the_model_rarely_performs():
    """`boost_weight`: all of it at a pass rate up to BOOST_FULL_BELOW with a gain of BOOST_FULL_GAIN or more, none from
    the warning's threshold, none without a gain, in proportion to a smaller gain; the prediction is then the rate at
    the guidance the prompt gets, beside the rate at the bundle's own (which the warning reads, naming a caption the
    model fails there)."""
    assert boost_weight(BOOST_FULL_BELOW, BOOST_FULL_BELOW + BOOST_FULL_GAIN) == 1.0
    assert boost_weight(0.0, 1.0) == 1.0
    assert boost_weight(WARN_BELOW, 1.0) == 0.0 and boost_weight(0.9, 1.0) == 0.0  # performed: keeps its guidance
    assert boost_weight(0.1, 0.1) == 0.0 and boost_weight(0.1, 0.0) == 0.0  # the raised guidance does not help
    assert boost_weight(0.1, 0.1 + BOOST_FULL_GAIN / 2) == pytest.approx(0.5)
    assert boost_weight(0.1, None) == 0.0
    assert 0.0 < boost_weight(0.4, 1.0) < 1.0  # fading out between BOOST_FULL_BELOW and the threshold
    # Captions 0-2 fail at the guidance and pass raised; 3 passes at both; 4 fails at both.
    document = caption_checks_document("m", [[False, False, False, True, False]], {}, "",
                                       [[True, True, True, True, False]], 2.0)
    checks = caption_checks_from_dict(document, 5)
    assert checks.boost_factor == 2.0 and document["boosted_pass_rate"] == 0.8
    near_failures = np.array([0.9, 0.9, 0.9, 0.1, 0.1])
    rate, failed, boost, usual = checks.predicted(near_failures)
    assert boost == 1.0 and rate == pytest.approx(1.0, abs=0.01) and usual == pytest.approx(0.0, abs=0.01)
    assert failed == 0
    rate, failed, boost, usual = checks.predicted(np.array([0.1, 0.1, 0.1, 0.9, 0.9]))  # half performed: no boost
    assert boost == pytest.approx(0.0, abs=1e-3) and rate == pytest.approx(0.5, abs=0.01) and failed == 4


def test_each_caption_is_judged_over_its_seeds():
    """Three seeds per caption: the file holds how many passed, the prediction reads the shares, and a caption counts as
    performed (offered, read with far prompts) from PERFORMED_SHARE of its seeds; a one-seed file of format 1 still
    reads as it did."""
    seeds = [[True, True, False, None], [True, False, False, None], [True, True, False, None]]
    document = caption_checks_document("m", seeds, {"seeds": [0, 1, 2]}, "", seeds[::-1], 2.0)
    assert document["passed"] == "320-" and document["seeds"] == 3 and document["pass_rate"] == round(5 / 9, 4)
    checks = caption_checks_from_dict(document, 4)
    np.testing.assert_allclose(checks.passed[:3], [1.0, 2 / 3, 0.0])
    assert checks.seeds == 3 and np.isnan(checks.passed[3])
    assert PERFORMED_SHARE == 0.5
    assert checks.unperformed.tolist() == [False, False, True, False]  # no check: never unperformed
    assert checks.performed_counts() == (2, 2)  # of the three checked, at the guidance and raised
    rate, failed, _, _ = checks.predicted(np.array([0.5, 0.9, 0.5, 0.99]))
    weight = np.exp((np.array([0.5, 0.9, 0.5]) - 0.9) / NEARNESS)
    assert rate == pytest.approx(weight @ [1.0, 2 / 3, 0.0] / weight.sum()) and failed == 2
    one_seed = {"format_version": 1, "model": "m", "passed": "10-", "boosted": "11-", "boost_factor": 2.0}
    old = caption_checks_from_dict(one_seed, 3)
    assert old.seeds == 1 and old.passed[:2].tolist() == [1.0, 0.0] and old.unperformed.tolist() == [False, True, False]
    with pytest.raises(InputFileError, match="passed: expected a string of digits from 0 to 1"):
        caption_checks_from_dict({**one_seed, "passed": "30-", "seeds": 3}, 3)  # format 1 knows one seed only
    with pytest.raises(ValueError, match="boosted as many"):
        caption_checks_document("m", seeds, {}, "", seeds[:1])


@pytest.mark.parametrize(("change", "message"), [
    ({"format_version": 3}, "format_version: expected one of 1, 2, got 3"),
    ({"passed": "10x"}, "passed: expected a string of digits from 0 to 1 (the seeds that passed) and '-'"),
    ({"passed": "12-"}, "passed: expected a string of digits from 0 to 1"),
    ({"seeds": 0}, "seeds: expected a whole number from 1 to 9, got 0"),
    ({"passed": "1"}, "passed: 1 results, but the vocabulary has 3 train captions"),
    ({"neighbours": 0}, "neighbours: expected a whole number from 1 to 64, got 0"),
    ({"warn_below": 1.5}, "warn_below: expected a share from 0 to 1, got 1.5"),
    ({"warn_below": True}, "warn_below: expected a share from 0 to 1, got True"),
    ({"boosted": "1-0"}, "boosted: expected a string of digits from 0 to 1 (the seeds that passed) and '-' as long "
                         "as passed, with '-' in the same"),
    ({"boosted": "10"}, "boosted: expected a string"),
    ({"boosted": "10-", "boost_factor": 0.5}, "boost_factor: expected a number from 1 to 4, got 0.5"),
])
def test_a_file_that_does_not_fit_is_refused_naming_it(tmp_path, change, message):
    document = {**caption_checks_document("m", [[True, False, None]], {}, ""), **change}
    (tmp_path / CAPTION_CHECKS_FILE).write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(InputFileError, match=CAPTION_CHECKS_FILE) as raised:
        read_caption_checks(tmp_path, 3)
    assert message in str(raised.value)
    assert read_caption_checks(tmp_path / "missing", 3) is None


def test_a_refused_write_leaves_the_old_file(tmp_path):
    write_caption_checks(tmp_path, caption_checks_document("m", [[True, False]], {}, "first"))
    with pytest.raises(InputFileError):
        write_caption_checks(tmp_path, {**caption_checks_document("m", [[True]], {}, "second"), "captions": 2})
    assert json.loads((tmp_path / CAPTION_CHECKS_FILE).read_text())["command"] == "first"


@pytest.fixture(scope="module")
def checked_bundle(tiny_bundle, tmp_path_factory):
    """A copy of the tiny real bundle whose train captions `kmm-train check-captions` generated and judged."""
    bundle = tmp_path_factory.mktemp("captions") / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    assert check_captions_main(["--checkpoint", str(bundle), "--threads", "1", "--quiet"]) == 0
    return bundle


def test_check_captions_judges_every_train_caption(checked_bundle):
    vocabulary = read_vocabulary(checked_bundle)
    checks = read_caption_checks(checked_bundle, len(vocabulary.train_captions))
    document = json.loads((checked_bundle / CAPTION_CHECKS_FILE).read_text())
    assert document["command"].startswith("kmm-train check-captions --checkpoint")
    assert document["captions"] == len(vocabulary.train_captions) == len(checks.passed)
    assert document["seeds"] == checks.seeds == 3 and document["settings"]["seeds"] == [0, 1, 2]
    # Every caption whose action a check measures is judged (the tiny model's travel is whatever it learnt), and
    # only those.
    from kmm_core.evaluation.action_checks import checks_for_action

    has_check = np.array([bool(checks_for_action(action.split("/", 1)[-1])) for action in vocabulary.train_actions])
    assert has_check.any()
    np.testing.assert_array_equal(np.isfinite(checks.passed), has_check)
    # The same seed generates the same motion: a second run writes the same results.
    again = checked_bundle.parent / "again"
    shutil.copytree(checked_bundle, again)
    assert check_captions_main(["--checkpoint", str(again), "--threads", "1", "--quiet"]) == 0
    assert json.loads((again / CAPTION_CHECKS_FILE).read_text())["passed"] == document["passed"]


def test_the_prompt_check_reads_the_results(checked_bundle):
    from kmm_core.bundle.model_bundle import ModelBundle
    from kmm_core.generation.prompt_vocabulary import PromptVocabulary

    path = checked_bundle / CAPTION_CHECKS_FILE
    document = json.loads(path.read_text())
    bundle = ModelBundle.load(checked_bundle, device="cpu")
    vocabulary = read_vocabulary(checked_bundle)
    prompt = vocabulary.train_captions[0]
    for symbol, warned in (("0", True), ("1", True), ("2", False), ("3", False)):  # of 3 seeds
        path.write_text(json.dumps({**document, "passed": symbol * document["captions"]}))
        (check,) = PromptVocabulary.load(bundle).check([prompt])
        assert check.unlikely is warned and check.predicted_pass_rate == pytest.approx(int(symbol) / 3)
        if warned:
            assert f'"{prompt}": the model performed {int(symbol) / 3:.0%} of the training captions nearest it' \
                in check.warning
            assert check.unperformed == prompt and check.suggestions == ()  # none it performs to offer
            assert check.to_dict(0)["predicted_pass_rate"] == round(int(symbol) / 3, 4)
    path.write_text(json.dumps({**document, "passed": "1"}))
    with pytest.raises(InputFileError, match="run `kmm-train check-captions` again"):
        PromptVocabulary.load(bundle)


@pytest.fixture(scope="module")
def boosted_bundle(tiny_bundle, tmp_path_factory):
    """A copy of the tiny bundle decoding with a raised guidance (`decoding.unlikely_guidance_factor` 2), its train
    captions checked at both guidances over a caption_checks.json of another vocabulary (which generation refuses:
    the command writes it anew without reading it)."""
    bundle = tmp_path_factory.mktemp("boosted") / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest["decoding"] = {**manifest.get("decoding", {}), "unlikely_guidance_factor": 2.0}
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    (bundle / CAPTION_CHECKS_FILE).write_text(json.dumps(caption_checks_document("m", [[True]], {}, "old")))
    assert check_captions_main(["--checkpoint", str(bundle), "--threads", "1", "--quiet"]) == 0
    return bundle


def test_a_bundle_with_a_raised_guidance_has_its_captions_checked_at_both(boosted_bundle, tiny_model):
    from kmm_core.evaluation.caption_checks import caption_results

    document = json.loads((boosted_bundle / CAPTION_CHECKS_FILE).read_text())
    vocabulary = read_vocabulary(boosted_bundle)
    assert document["boost_factor"] == 2.0 and len(document["boosted"]) == len(document["passed"])
    # The first pass of each seed is at the bundle's own guidance: what the bundle without the factor performs.
    plain = [caption_results(tiny_model, vocabulary.train_captions, vocabulary.train_actions, seed=seed,
                             guidance_boost=0.0) for seed in range(3)]
    assert document["passed"] == "".join("-" if values[0] is None else str(sum(map(bool, values)))
                                         for values in zip(*plain, strict=True))
    assert [symbol == "-" for symbol in document["boosted"]] == [symbol == "-" for symbol in document["passed"]]


def test_a_prompt_the_model_performs_only_guided_harder_is_generated_so(boosted_bundle):
    """All captions failed at the guidance and performed raised: the prompt takes the whole raised guidance, is
    predicted at it (no warning), and generates as the take would at twice the guidance; measured at another factor
    than the bundle decodes with, the raised results are not used."""
    from kmm_core.bundle.model_bundle import ModelBundle
    from kmm_core.generation.decoding_engine import GenerationOptions
    from kmm_core.generation.prompt_vocabulary import PromptVocabulary
    from kmm_core.generation.timeline import Timeline
    from kmm_core.generation.timeline_generator import generate_timeline

    path = boosted_bundle / CAPTION_CHECKS_FILE
    document = json.loads(path.read_text())
    checked = "".join("-" if symbol == "-" else "0" for symbol in document["passed"])
    path.write_text(json.dumps({**document, "passed": checked, "boosted": checked.replace("0", "3")}))
    bundle = ModelBundle.load(boosted_bundle, device="cpu")
    prompt = read_vocabulary(boosted_bundle).train_captions[0]
    (check,) = PromptVocabulary.load(bundle).check([prompt])
    assert check.guidance_boost == 1.0 and check.predicted_pass_rate == pytest.approx(1.0)
    # Still warned: the model rarely performs it at its own guidance, and the warning says both.
    assert check.unlikely and check.usual_pass_rate == 0.0
    assert "nearest it at its usual guidance" in check.warning and "guided harder (2.0x), as this prompt is, it " \
        "performed 100% of them" in check.warning
    timeline = Timeline.from_dict({"fps": 20, "segments": [{"prompt": prompt, "start": 1, "end": 40}]})
    raised = generate_timeline(bundle, timeline, seed=3)[0].joints
    guidance = bundle.decoding.guidance_scale
    as_doubled = generate_timeline(bundle, timeline, seed=3, options=GenerationOptions(
        guidance=2 * guidance, unlikely_guidance_factor=1.0))[0].joints
    as_usual = generate_timeline(bundle, timeline, seed=3, options=GenerationOptions(unlikely_guidance_factor=1.0))[0]
    np.testing.assert_allclose(raised, as_doubled, atol=1e-6)
    assert not np.allclose(raised, as_usual.joints, atol=1e-3)
    path.write_text(json.dumps({**document, "passed": checked, "boosted": checked.replace("0", "3"),
                                "boost_factor": 3.0}))
    (check,) = PromptVocabulary.load(ModelBundle.load(boosted_bundle, device="cpu")).check([prompt])
    assert check.guidance_boost == 0.0 and check.unlikely and check.predicted_pass_rate == 0.0


@pytest.mark.parametrize(("args", "message"), [
    (["--seed", "-1"], "--seed -1: must be from 0 to"),
    (["--seeds", "0"], "--seeds 0: must be from 1 to 9"),
    (["--seeds", "10"], "--seeds 10: must be from 1 to 9"),
    (["--threads", "0"], "threads"),
])
def test_bad_options_are_named_before_any_work(tiny_bundle, args, message, capsys):
    assert check_captions_main(["--checkpoint", str(tiny_bundle), *args, "--quiet"]) == 1
    assert message in capsys.readouterr().err
    assert not (tiny_bundle / CAPTION_CHECKS_FILE).exists()


@pytest.mark.parametrize("name", ["kmm-small", "kmm-small-open"])
def test_the_shipped_models_carry_their_caption_checks(name):
    folder = checkpoints_root() / name
    vocabulary = read_vocabulary(folder)
    checks = read_caption_checks(folder, len(vocabulary.train_captions))
    assert checks is not None and checks.warn_below == 0.5
    assert 0.6 < np.nanmean(checks.passed) < 0.95  # most of its own captions performed, not all


def test_the_default_warns_before_generating_what_it_will_not_perform():
    """The everyday phrasing suite's kneel failed with no warning before this file, the kicks were warned about as
    weak words and are now also unlikely (benchmarks/results/everyday_phrasings.md); the cartwheel,
    whose three nearest captions the model did not perform, is warned since the neighbours weigh by nearness (five
    dance spins 0.3 further off outweighed them by similarity alone); a plain walk and a wave with both hands stay
    unwarned."""
    from kmm_core.bundle.model_bundle import ModelBundle
    from kmm_core.bundle.model_choice import resolve_model
    from kmm_core.generation.prompt_vocabulary import check_prompts

    bundle = ModelBundle.load(resolve_model("default"), device="cpu")
    kneel, bow, kick, cartwheel, walk, wave = check_prompts(bundle, [
        "a person kneels down", "a man bows politely", "someone kicks a ball with the left foot",
        "a person does a cartwheel", "a person walks forward", "a man waves both hands above his head"])
    for check in (kneel, kick, cartwheel):
        assert check.unlikely and check.warned and check.predicted_pass_rate < 0.5
        assert check.unperformed and f'(not "{check.unperformed}")' in check.warning
        assert check.offered_prompts()
    assert not walk.warned and not wave.warned and walk.predicted_pass_rate > 0.9 and wave.predicted_pass_rate > 0.9
    # The bow's nearest captions are performed at twice the guidance (caption_checks.json's `boosted`): it is
    # generated there and predicted there, and still warned about (rarely performed at the model's own guidance);
    # a walk and a wave, which the model performs, keep their guidance.
    assert bow.guidance_boost == 1.0 and bow.boost_factor == 2.0 and bow.unlikely and bow.usual_pass_rate < 0.5
    assert bow.predicted_pass_rate >= 0.5 and walk.guidance_boost == wave.guidance_boost == 0.0
    assert "guided harder (2.0x), as this prompt is" in bow.warning
