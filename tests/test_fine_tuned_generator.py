# SPDX-License-Identifier: GPL-3.0-or-later
"""`kmm-train fine-tuned-generator`: a generator fine-tuned from a bundle's own ([train.generator] init_weights, a few
real steps on the tiny dataset) goes back into a copy of that bundle with the run's data, licence and vocabulary;
a run that trained on another tokenizer, aligner or normalisation is refused by name and the bundle left as it was."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from kmm_core.bundle.model_bundle import ModelBundle
from kmm_core.bundle.weight_checksums import file_sha256
from kmm_core.bundle.word_strength import WORD_CHECKS_FILE
from kmm_core.training.checkpoint import FINE_TUNED_FROM, TRAINED_ON_ALIGNER
from kmm_core.training.cli import main
from kmm_core.training.model_card import ACTION_RESULTS_BEGIN, ACTION_RESULTS_END

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_TRAINING_CONFIG = REPO_ROOT / "training" / "configs" / "tiny.toml"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _fine_tune_folders(tiny_bundle: Path, prepared_dataset: Path, root: Path, components: tuple[str, ...]):
    """The tiny data with the bundle's Mean/Std, a run folder holding the bundle's ``components``, and the common
    arguments of a `kmm-train` stage on them."""
    data = root / "data"
    shutil.copytree(prepared_dataset, data)
    for name in ("Mean.npy", "Std.npy"):
        shutil.copyfile(tiny_bundle / name, data / name)
    run = root / "run"
    run.mkdir()
    for name in components:
        for suffix in (".safetensors", ".json"):
            shutil.copyfile(tiny_bundle / f"{name}{suffix}", run / f"{name}{suffix}")
    return run, ["--config", str(TINY_TRAINING_CONFIG), "--out", str(run), "--device", "cpu", "--no-progress",
                 "--threads", "1", "--set", f"data.root={data}"]


@pytest.fixture(scope="module")
def fine_tune_run(tiny_bundle, prepared_dataset, tmp_path_factory) -> Path:
    """Three generator steps from the tiny bundle's generator, on the bundle's tokenizer, aligner and Mean/Std."""
    run, common = _fine_tune_folders(tiny_bundle, prepared_dataset, tmp_path_factory.mktemp("fine_tune"),
                                     ("tokenizer", "aligner"))
    assert main(["generator", *common, "--set", "train.generator.steps=3",
                 "--set", f"train.generator.init_weights={tiny_bundle / 'generator.safetensors'}"]) == 0
    return run


def _copy_bundle(tiny_bundle: Path, target: Path) -> Path:
    shutil.copytree(tiny_bundle, target)
    (target / WORD_CHECKS_FILE).write_text("{}")  # measured the old generator: must not survive the swap
    return target


def test_the_fine_tuned_generator_goes_into_the_bundle(tiny_bundle, fine_tune_run, tmp_path, capsys):
    bundle = _copy_bundle(tiny_bundle, tmp_path / "bundle")
    assert main(["fine-tuned-generator", "--bundle", str(bundle), "--run", str(fine_tune_run)]) == 0
    assert "generator of" in capsys.readouterr().out
    before, after = load_file(str(tiny_bundle / "generator.safetensors")), load_file(str(bundle / "generator.safetensors"))
    assert after.keys() == before.keys() and all(t.dtype == torch.float16 for t in after.values())
    assert any(not torch.equal(before[key], after[key]) for key in before)
    tuned = load_file(str(fine_tune_run / "generator.safetensors"))
    assert all(torch.equal(after[key], tuned[key].half()) for key in tuned)
    for name in ("tokenizer.safetensors", "aligner.safetensors", "evaluator.safetensors", "Mean.npy"):
        assert (bundle / name).read_bytes() == (tiny_bundle / name).read_bytes()
    assert not (bundle / WORD_CHECKS_FILE).exists()
    assert (bundle / "vocabulary.json").is_file()
    loaded = ModelBundle.load(bundle, device="cpu")  # every checksum verified
    assert loaded.generator is not None
    card = (bundle / "README.md").read_text()
    assert card.count("## Fine-tuned generator") == 1 and "3 steps" in card and fine_tune_run.name in card
    # Done twice, the card still has one such section.
    assert main(["fine-tuned-generator", "--bundle", str(bundle), "--run", str(fine_tune_run)]) == 0
    assert (bundle / "README.md").read_text().count("## Fine-tuned generator") == 1
    # Its How to reproduce says, once, that its commands make the bundle the fine-tune started from.
    reproduce = (bundle / "README.md").read_text().split("## How to reproduce", 1)[1]
    assert reproduce.count("The commands below make the bundle as first trained") == 1
    assert "training/README.md" in reproduce.split("```", 1)[0]


@pytest.mark.parametrize(("what", "message"), [
    ("tokenizer", "learned another tokenizer's codes"),
    ("aligner", "learned another aligner's conditions"),
    ("Mean.npy", "normalised its clips otherwise"),
    ("generator.json", "the run's generator is not this bundle's"),
])
def test_a_run_of_another_model_is_refused_and_the_bundle_kept(what, message, tiny_bundle, fine_tune_run, tmp_path,
                                                               capsys):
    bundle = _copy_bundle(tiny_bundle, tmp_path / "bundle")
    run = tmp_path / "run"
    shutil.copytree(fine_tune_run, run)
    if what in ("tokenizer", "aligner"):
        tensors = load_file(str(run / f"{what}.safetensors"))
        key = next(k for k in sorted(tensors) if not k.startswith("decoder.") and tensors[k].is_floating_point())
        tensors[key] = tensors[key] + 1
        save_file(tensors, str(run / f"{what}.safetensors"))
    elif what == "Mean.npy":
        np.save(run / "Mean.npy", np.load(run / "Mean.npy") + 1)
    else:
        config = json.loads((run / "generator.json").read_text())
        config["dropout"] = 0.3
        (run / "generator.json").write_text(json.dumps(config))
    files_before = {path.name: path.read_bytes() for path in bundle.iterdir()}
    assert main(["fine-tuned-generator", "--bundle", str(bundle), "--run", str(run)]) == 1
    assert message in capsys.readouterr().err
    assert {path.name: path.read_bytes() for path in bundle.iterdir()} == files_before


def test_an_aligner_fine_tuned_before_the_generator_goes_in_with_it(tiny_bundle, prepared_dataset, tmp_path, capsys):
    """[train.aligner] init_weights then [train.generator] init_weights in one run: both go into the bundle (the
    generator learned the new aligner's conditions); the card names both."""
    run, common = _fine_tune_folders(tiny_bundle, prepared_dataset, tmp_path, ("tokenizer",))
    assert main(["aligner", *common, "--set", "train.aligner.steps=2",
                 "--set", f"train.aligner.init_weights={tiny_bundle / 'aligner.safetensors'}"]) == 0
    assert main(["generator", *common, "--set", "train.generator.steps=2",
                 "--set", f"train.generator.init_weights={tiny_bundle / 'generator.safetensors'}"]) == 0
    bundle = _copy_bundle(tiny_bundle, tmp_path / "bundle")
    assert main(["fine-tuned-generator", "--bundle", str(bundle), "--run", str(run)]) == 0
    for name in ("aligner", "generator"):
        tuned = load_file(str(run / f"{name}.safetensors"))
        shipped = load_file(str(bundle / f"{name}.safetensors"))
        assert all(torch.equal(shipped[key], tuned[key].half()) for key in tuned)
        assert any(not torch.equal(shipped[key], load_file(str(tiny_bundle / f"{name}.safetensors"))[key])
                   for key in shipped)
    assert "`aligner` and `generator` fine-tuned" in (bundle / "README.md").read_text() or \
        "`generator` and `aligner` fine-tuned" in (bundle / "README.md").read_text()
    ModelBundle.load(bundle, device="cpu")

    # The aligner the generator learned is told by the SHA-256 in the generator's header, not by file times: a copy
    # of the run whose aligner looks newer goes in; an aligner trained further after the generator is refused.
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    later = (moved / "generator.safetensors").stat().st_mtime + 60
    os.utime(moved / "aligner.safetensors", (later, later))
    assert main(["fine-tuned-generator", "--bundle", str(_copy_bundle(tiny_bundle, tmp_path / "b2")),
                 "--run", str(moved)]) == 0
    tensors = load_file(str(moved / "aligner.safetensors"))
    key = next(k for k in sorted(tensors) if tensors[k].is_floating_point())
    save_file({**tensors, key: tensors[key] * 1.01}, str(moved / "aligner.safetensors"))
    os.utime(moved / "aligner.safetensors", (later - 120, later - 120))  # older than the generator, yet not its own
    refused = _copy_bundle(tiny_bundle, tmp_path / "b3")
    assert main(["fine-tuned-generator", "--bundle", str(refused), "--run", str(moved)]) == 1
    assert "is not the aligner generator.safetensors was trained on" in capsys.readouterr().err
    assert (refused / "aligner.safetensors").read_bytes() == (tiny_bundle / "aligner.safetensors").read_bytes()


@pytest.fixture(scope="module")
def second_seed_run(tiny_bundle, prepared_dataset, tmp_path_factory) -> Path:
    """`fine_tune_run`'s fine-tune again with another training seed."""
    run, common = _fine_tune_folders(tiny_bundle, prepared_dataset, tmp_path_factory.mktemp("second_seed"),
                                     ("tokenizer", "aligner"))
    assert main(["generator", *common, "--set", "train.generator.steps=3", "--set", "train.generator.seed=1",
                 "--set", f"train.generator.init_weights={tiny_bundle / 'generator.safetensors'}"]) == 0
    return run


def test_the_mean_of_two_seeds_goes_into_the_bundle(tiny_bundle, fine_tune_run, second_seed_run, tmp_path, capsys):
    """`kmm-train average-generators`: each tensor is the two runs' mean, the header keeps the aligner the runs
    learned, and `fine-tuned-generator` takes the averaged folder as it takes a run; the card names the runs."""
    out = tmp_path / "mean"
    assert main(["average-generators", "--runs", str(fine_tune_run), str(second_seed_run), "--out", str(out)]) == 0
    assert "the mean of 2 generators" in capsys.readouterr().out
    first, second = (load_file(str(run / "generator.safetensors")) for run in (fine_tune_run, second_seed_run))
    mean = load_file(str(out / "generator.safetensors"))
    assert mean.keys() == first.keys()
    assert any(not torch.equal(first[key], second[key]) for key in first)  # the seeds did differ
    for key, value in mean.items():
        assert value.dtype == first[key].dtype
        assert torch.equal(value, ((first[key].double() + second[key].double()) / 2).to(value.dtype))
    with safe_open(str(out / "generator.safetensors"), framework="pt") as weights:
        header = weights.metadata()
    with safe_open(str(fine_tune_run / "generator.safetensors"), framework="pt") as weights:
        assert header[TRAINED_ON_ALIGNER] == weights.metadata()[TRAINED_ON_ALIGNER]
    assert header[FINE_TUNED_FROM] == file_sha256(tiny_bundle / "generator.safetensors")  # the start, by content
    record = json.loads((out / "averaged_from.json").read_text())
    assert [entry["run"] for entry in record["runs"]] == [str(fine_tune_run), str(second_seed_run)]

    bundle = _copy_bundle(tiny_bundle, tmp_path / "bundle")
    assert main(["fine-tuned-generator", "--bundle", str(bundle), "--run", str(out)]) == 0
    shipped = load_file(str(bundle / "generator.safetensors"))
    assert all(torch.equal(shipped[key], mean[key].half()) for key in mean)
    ModelBundle.load(bundle, device="cpu")
    card = (bundle / "README.md").read_text()
    assert "the mean of the generators of 2 fine-tunes" in card and second_seed_run.name in card


@pytest.mark.parametrize(("what", "message"), [
    ("one run", "--runs: name two runs or more (got 1)"),
    ("the same run twice", "--runs: a run is named twice"),
    ("from scratch", "init_weights is empty"),
    ("another start", "only fine-tunes of one start average"),
    ("other start weights", "fine_tuned_from_sha256): only fine-tunes of one start average"),
    ("another aligner", "aligner.safetensors: differs from"),
    ("other data", "the runs trained on other data"),
    ("another shape", "has shape"),
    ("no generator", "generator.safetensors: not found"),
    ("unreadable weights", "generator.safetensors: not a readable safetensors file"),
])
def test_runs_that_do_not_share_a_start_are_refused_and_nothing_written(what, message, fine_tune_run,
                                                                       second_seed_run, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(second_seed_run, other)
    config = json.loads((other / "config.json").read_text())
    if what == "from scratch":
        config["train"]["generator"]["init_weights"] = ""
    elif what == "another start":
        config["train"]["generator"]["init_weights"] = str(tmp_path / "elsewhere.safetensors")
    (other / "config.json").write_text(json.dumps(config))
    if what == "another aligner":
        tensors = load_file(str(other / "aligner.safetensors"))
        key = next(k for k in sorted(tensors) if tensors[k].is_floating_point())
        save_file({**tensors, key: tensors[key] + 1}, str(other / "aligner.safetensors"))
    elif what == "other data":
        dataset = json.loads((other / "dataset.json").read_text())
        (other / "dataset.json").write_text(json.dumps({**dataset, "train_clips": dataset["train_clips"] + 1}))
    elif what == "another shape":
        tensors = load_file(str(other / "generator.safetensors"))
        key = next(k for k in sorted(tensors) if tensors[k].dim() == 2)
        with safe_open(str(other / "generator.safetensors"), framework="pt") as weights:
            header = weights.metadata()
        save_file({**tensors, key: tensors[key][:-1]}, str(other / "generator.safetensors"), metadata=header)
    elif what == "other start weights":  # the same path, other weights there when it trained
        tensors = load_file(str(other / "generator.safetensors"))
        with safe_open(str(other / "generator.safetensors"), framework="pt") as weights:
            header = weights.metadata()
        save_file(tensors, str(other / "generator.safetensors"), metadata={**header, FINE_TUNED_FROM: "0" * 64})
    elif what == "no generator":
        (other / "generator.safetensors").unlink()
    elif what == "unreadable weights":
        (other / "generator.safetensors").write_bytes(b"not safetensors")
    runs = {"one run": [fine_tune_run], "the same run twice": [fine_tune_run, fine_tune_run]}.get(
        what, [fine_tune_run, other])
    out = tmp_path / "mean"
    assert main(["average-generators", "--runs", *map(str, runs), "--out", str(out)]) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_a_fine_tune_moved_back_toward_its_start(tiny_bundle, fine_tune_run, tmp_path, capsys):
    """`average-generators --start-weight W`: each tensor is W x the start + (1 - W) x the run (one run is enough),
    the start read from a copy named with --start as from the runs' init_weights, and the card says so."""
    start = load_file(str(tiny_bundle / "generator.safetensors"))
    tuned = load_file(str(fine_tune_run / "generator.safetensors"))
    out = tmp_path / "mixed"
    assert main(["average-generators", "--runs", str(fine_tune_run), "--start-weight", "0.25", "--out", str(out)]) == 0
    assert "0.25 of the way back to their start" in capsys.readouterr().out
    mixed = load_file(str(out / "generator.safetensors"))
    assert any(not torch.equal(start[key].to(tuned[key].dtype), tuned[key]) for key in tuned)  # the run moved
    for key, value in mixed.items():
        assert value.dtype == tuned[key].dtype
        assert torch.equal(value, (0.25 * start[key].double() + 0.75 * tuned[key].double()).to(value.dtype))
    record = json.loads((out / "averaged_from.json").read_text())
    assert record["start_weight"] == 0.25 and record["start_sha256"] == file_sha256(tiny_bundle / "generator.safetensors")

    copy = tmp_path / "start-copy.safetensors"
    shutil.copyfile(tiny_bundle / "generator.safetensors", copy)
    again = tmp_path / "mixed-from-copy"
    assert main(["average-generators", "--runs", str(fine_tune_run), "--start-weight", "0.25", "--start", str(copy),
                 "--out", str(again)]) == 0
    from_copy = load_file(str(again / "generator.safetensors"))
    assert all(torch.equal(from_copy[key], mixed[key]) for key in mixed)

    bundle = _copy_bundle(tiny_bundle, tmp_path / "bundle")
    assert main(["fine-tuned-generator", "--bundle", str(bundle), "--run", str(out)]) == 0
    ModelBundle.load(bundle, device="cpu")
    card = (bundle / "README.md").read_text()
    assert f"the generator of the fine-tune `{fine_tune_run}`" in card and "`--start-weight 0.25`" in card


@pytest.mark.parametrize(("what", "message"), [
    ("a share of 1", "--start-weight: a share from 0"),
    ("a start changed since", "the file holds other weights by now; name a copy of the start with --start"),
    ("a missing start", "start-missing.safetensors: not found"),
    ("no recorded start", "records no fine_tuned_from_sha256"),
])
def test_a_start_that_is_not_the_runs_start_is_refused(what, message, tiny_bundle, fine_tune_run, tmp_path, capsys):
    run, weight, start = fine_tune_run, "0.5", tmp_path / "start.safetensors"
    tensors = load_file(str(tiny_bundle / "generator.safetensors"))
    key = next(k for k in sorted(tensors) if tensors[k].is_floating_point())
    save_file({**tensors, key: tensors[key] + 1} if what == "a start changed since" else tensors, str(start))
    if what == "a share of 1":
        weight = "1"
    elif what == "a missing start":
        start = tmp_path / "start-missing.safetensors"
    elif what == "no recorded start":
        run = tmp_path / "old-run"
        shutil.copytree(fine_tune_run, run)
        with safe_open(str(run / "generator.safetensors"), framework="pt") as weights:
            header = {k: v for k, v in weights.metadata().items() if k != FINE_TUNED_FROM}
        save_file(load_file(str(run / "generator.safetensors")), str(run / "generator.safetensors"), metadata=header)
    out = tmp_path / "mixed"
    assert main(["average-generators", "--runs", str(run), "--start-weight", weight, "--start", str(start),
                 "--out", str(out)]) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_the_cards_per_action_results_follow_the_generator(tiny_bundle, fine_tune_run, tmp_path, capsys):
    """The per-action results measured the generator a fine-tune replaces: `fine-tuned-generator` says they are not
    measured for the new one, and `kmm-train action-results` puts new ones (eval-actions' markdown) in their place,
    once; an empty file or a bundle without a card is refused by name."""
    bundle = _copy_bundle(tiny_bundle, tmp_path / "bundle")
    card = bundle / "README.md"
    card.write_text(card.read_text().replace(
        ACTION_RESULTS_BEGIN + "\n", ACTION_RESULTS_BEGIN + "\n# Per-action results: the old generator's\n", 1))
    assert main(["fine-tuned-generator", "--bundle", str(bundle), "--run", str(fine_tune_run)]) == 0
    text = card.read_text()
    assert "the old generator's" not in text and "Not measured for this bundle's current generator" in text
    results = tmp_path / "actions.md"
    results.write_text("# Per-action results: tiny\n\n**2 of 3 actions pass.**\n")
    assert main(["action-results", "--bundle", str(bundle), "--results", str(results)]) == 0
    text = card.read_text()
    assert text.count("**2 of 3 actions pass.**") == 1 and "Not measured" not in text.split("## How to reproduce")[0]
    assert text.count(ACTION_RESULTS_BEGIN) == 1 and text.count(ACTION_RESULTS_END) == 1
    ModelBundle.load(bundle, device="cpu")
    capsys.readouterr()
    results.write_text("  \n")
    assert main(["action-results", "--bundle", str(bundle), "--results", str(results)]) == 1
    assert "per-action results file is empty" in capsys.readouterr().err
    card.unlink()
    results.write_text("# Per-action results\n")
    assert main(["action-results", "--bundle", str(bundle), "--results", str(results)]) == 1
    assert "no model card with a per-action results section" in capsys.readouterr().err


def test_a_symlink_loop_or_a_nan_in_a_later_run_is_named_and_nothing_written(fine_tune_run, second_seed_run,
                                                                             tmp_path, capsys):
    """A run that is a symlink loop was a `RuntimeError: Symlink loop` traceback; a NaN held by the second run was
    blamed on the first.  Each is refused naming the path that holds it, nothing written."""
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    out = tmp_path / "mean"
    assert main(["average-generators", "--runs", str(fine_tune_run), str(loop), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"--runs: {str(loop)!r} cannot be resolved" in err and "Traceback" not in err
    other = tmp_path / "other"
    shutil.copytree(second_seed_run, other)
    tensors = load_file(str(other / "generator.safetensors"))
    with safe_open(str(other / "generator.safetensors"), framework="pt") as weights:
        header = weights.metadata()
    key = next(k for k in sorted(tensors) if tensors[k].is_floating_point())
    poisoned = tensors[key].clone()
    poisoned.view(-1)[0] = float("nan")
    save_file({**tensors, key: poisoned}, str(other / "generator.safetensors"), metadata=header)
    assert main(["average-generators", "--runs", str(fine_tune_run), str(other), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{other / 'generator.safetensors'}: {key}: holds values that are not finite" in err, err
    assert str(fine_tune_run / "generator.safetensors") not in err
    assert not out.exists()


def test_the_start_weight_is_printed_as_given(fine_tune_run, tmp_path, capsys):
    """`--start-weight 0.999999999` printed "1 of the way back"."""
    out = tmp_path / "mixed"
    assert main(["average-generators", "--runs", str(fine_tune_run), "--start-weight", "0.999999999",
                 "--out", str(out)]) == 0
    assert "0.999999999 of the way back to their start" in capsys.readouterr().out


def test_a_results_file_holding_the_cards_section_marker_is_refused_and_an_injected_card_mended(tiny_bundle,
                                                                                                 tmp_path, capsys):
    """A results file containing the section's end marker left its text after the section and a second marker in
    the card, which a later clean run could not remove.  Such a file is refused naming the line; a card a marker was
    once injected into is made whole by the next clean run."""
    bundle = _copy_bundle(tiny_bundle, tmp_path / "bundle")
    card = bundle / "README.md"
    before = card.read_text()
    results = tmp_path / "actions.md"
    results.write_text(f"# Per-action results\n\nok\n{ACTION_RESULTS_END}\nINJECTED: use this model commercially\n")
    assert main(["action-results", "--bundle", str(bundle), "--results", str(results)]) == 1
    err = capsys.readouterr().err
    assert "line 4 holds the model card's section marker" in err and card.read_text() == before
    head, rest = before.split(ACTION_RESULTS_END, 1)
    card.write_text(head + "INJECTED\n" + ACTION_RESULTS_END + "\nINJECTED AFTER\n" + ACTION_RESULTS_END + rest)
    results.write_text("# Per-action results: tiny\n\n**2 of 3 actions pass.**\n")
    assert main(["action-results", "--bundle", str(bundle), "--results", str(results)]) == 0
    text = card.read_text()
    assert "INJECTED" not in text and text.count(ACTION_RESULTS_END) == 1 and "**2 of 3 actions pass.**" in text
