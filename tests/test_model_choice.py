# SPDX-License-Identifier: GPL-3.0-or-later
"""Choosing the model by name, each bundle's licence from its training data, the model card, and the vocabulary
files under bundle.json's checksums.

A real "open" run (conftest `open_run`): `kmm-train prepare` on real CMU BVH clips and real HDM05 ASF/AMC clips
(both commercially usable), then `kmm-train all` with the tiny config cut to a few steps per stage.  Its bundle and
the tiny default bundle (Bandai-Namco + CMU) are put on a model shelf in a temporary folder (`model_shelf`, used
through ``KMM_CHECKPOINTS_DIR``), so nothing depends on kmm-small-open being shipped."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kmm_core.bundle.model_bundle import CHECKPOINTS_ENV, ModelBundle, default_bundle_path, read_manifest
from kmm_core.bundle.model_choice import UnknownModelError, installed_bundles, licence_line, resolve_model
from kmm_core.bundle.weight_checksums import (
    FILES_KEY,
    GAIT_CYCLE_FILES,
    VOCABULARY_FILES,
    WeightFileError,
    verify_bundle_files,
)
from kmm_core.data.source_licences import (
    CMU_ACKNOWLEDGEMENT,
    HDM05_ACKNOWLEDGEMENT,
    SOURCE_LICENCES,
    UnknownSourceError,
    combined_licence,
    source_kind,
)
from kmm_core.generation.prompt_vocabulary import PromptVocabulary
from kmm_core.training.cli import main as train_main
from kmm_core.training.model_card import ACTION_RESULTS_BEGIN, ACTION_RESULTS_END, ACTION_RESULTS_HEADING
from kmm_core.training.run_log import read_log

REPO_ROOT = Path(__file__).resolve().parents[1]
OPEN_LICENCE = "CC BY-SA 3.0, commercial use allowed"
DEFAULT_LICENCE = "CC BY-NC 4.0, non-commercial use only"


@pytest.fixture(scope="module")
def shelf(model_shelf) -> Path:
    return model_shelf


@pytest.fixture(scope="module")
def open_data(open_prepared_dataset) -> Path:
    return open_prepared_dataset


def _env(shelf: Path) -> dict[str, str]:
    return {**os.environ, CHECKPOINTS_ENV: str(shelf), "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1"}


def _kmm(shelf: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kmm_core.cli", *args], capture_output=True, text=True,
                          timeout=600, cwd=REPO_ROOT, env=_env(shelf))


# ---- the resolver ---------------------------------------------------------------------------------------------------
def test_names_aliases_and_paths_resolve(shelf, tmp_path, monkeypatch):
    assert installed_bundles(shelf) == ["kmm-small", "kmm-small-open"]
    assert resolve_model("default", shelf) == resolve_model("kmm-small", shelf) == shelf / "kmm-small"
    assert resolve_model("open", shelf) == resolve_model(" Open ", shelf) == shelf / "kmm-small-open"
    assert resolve_model(None, shelf) == resolve_model("", shelf) == shelf / "kmm-small"
    assert resolve_model(str(tmp_path / "any"), shelf) == tmp_path / "any"  # a path is returned as given
    assert resolve_model(tmp_path, shelf) == tmp_path
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my-bundle").mkdir()
    assert resolve_model("my-bundle", shelf) == Path("my-bundle")  # a folder in the current directory
    monkeypatch.setenv(CHECKPOINTS_ENV, str(shelf))
    assert resolve_model("open") == shelf / "kmm-small-open" and default_bundle_path() == shelf / "kmm-small"
    monkeypatch.delenv(CHECKPOINTS_ENV)
    assert default_bundle_path() == REPO_ROOT / "kmm_core" / "checkpoints" / "kmm-small"


def test_unknown_or_missing_models_name_what_was_asked_and_what_exists(shelf, tmp_path):
    with pytest.raises(UnknownModelError, match=r"model 'kmm-large': no such bundle in .*Installed: kmm-small, "
                                                r"kmm-small-open\. Give one of those names, default = kmm-small, "
                                                r"open = kmm-small-open, or a bundle folder path"):
        resolve_model("kmm-large", shelf)
    only_default = tmp_path / "checkpoints"
    shutil.copytree(shelf / "kmm-small", only_default / "kmm-small")
    (only_default / "not-a-bundle").mkdir()
    with pytest.raises(UnknownModelError, match=r"model 'open' \(= kmm-small-open\): no such bundle .*Installed: "
                                                r"kmm-small\. "):
        resolve_model("open", only_default)
    with pytest.raises(UnknownModelError, match="Installed: none"):
        resolve_model("default", tmp_path / "empty")


def test_kmm_commands_take_model_names(shelf, tmp_path):
    vocab = _kmm(shelf, "vocab", "--checkpoint", "open")
    assert vocab.returncode == 0, vocab.stderr
    assert vocab.stdout.startswith("Model kmm-small-open was trained on")
    assert vocab.stdout.rstrip().endswith(f"Licence of kmm-small-open's weights: {OPEN_LICENCE}")
    data = json.loads(_kmm(shelf, "vocab", "--json").stdout)   # no --checkpoint: the shelf's default
    assert data["licence"]["licence"] == DEFAULT_LICENCE and data["licence"]["commercial_use"] is False
    assert "Bandai-Namco" in data["licence"]["licence_note"]
    doctor = json.loads(_kmm(shelf, "doctor", "--json", "--checkpoint", "open").stdout)
    checks = {check["name"]: check for check in doctor["checks"]}
    assert checks["checkpoint"]["ok"] and str(shelf / "kmm-small-open") in checks["checkpoint"]["detail"]
    assert checks["licence"]["detail"] == f"kmm-small-open: {OPEN_LICENCE}"
    assert checks["weights"]["ok"] and checks["weights"]["detail"].startswith("14 files match")
    out = tmp_path / "walk.npz"
    generated = _kmm(shelf, "generate", "a person walks forward", "--seconds", "1", "--steps", "2", "--seed", "0",
                     "--device", "cpu", "--quiet", "--checkpoint", "open", "-o", str(out))
    assert generated.returncode == 0, generated.stderr
    assert out.is_file()
    unknown = _kmm(shelf, "generate", "a person walks", "--seconds", "1", "--checkpoint", "nosuch", "-o",
                   str(tmp_path / "x.npz"))
    assert unknown.returncode == 3 and "Traceback" not in unknown.stderr
    assert "model 'nosuch': no such bundle" in unknown.stderr and "kmm-small, kmm-small-open" in unknown.stderr
    assert not (tmp_path / "x.npz").exists()


def test_worker_load_takes_model_names_and_reports_the_licence(shelf):
    from kmm_core.worker.client import WorkerClient
    from kmm_core.worker.protocol import Load

    client = WorkerClient(sys.executable, extra_env={CHECKPOINTS_ENV: str(shelf), "OMP_NUM_THREADS": "1"},
                          worker_args=("-m", "kmm_core.worker", "--device", "cpu"))
    try:
        client.handshake(timeout=180)
        opened = client.wait_for(client.send(Load(checkpoint="open", device="cpu")), timeout=300)
        unknown = client.wait_for(client.send(Load(checkpoint="kmm-large", device="cpu")), timeout=60)
        default = client.wait_for(client.send(Load(checkpoint="default", device="cpu")), timeout=300)
    finally:
        client.shutdown(20)
    assert opened["type"] == "result", opened
    assert {key: opened["info"][key] for key in ("checkpoint", "device", "name", "licence", "commercial_use")} == {
        "checkpoint": str((shelf / "kmm-small-open").resolve()), "device": "cpu", "name": "kmm-small-open",
        "licence": OPEN_LICENCE, "commercial_use": True}
    assert unknown["type"] == "error" and unknown["kind"] == "model_missing"
    assert "model 'kmm-large': no such bundle" in unknown["message"] and "kmm-small-open" in unknown["message"]
    assert default["info"]["licence"] == DEFAULT_LICENCE and default["info"]["commercial_use"] is False


def test_kmm_train_eval_takes_model_names(shelf, prepared_dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(CHECKPOINTS_ENV, str(shelf))
    sizes = ["--replications", "1", "--max-samples", "8", "--mm-texts", "2", "--mm-generations", "2",
             "--max-directional", "2", "--transition-timelines", "1", "--timing-runs", "1", "--timing-seconds", "4",
             "--quiet"]
    assert train_main(["eval", "--compare", "default", "open", "--evaluator", "default", "--data",
                       str(prepared_dataset), "--out", str(tmp_path / "results"), *sizes]) == 0
    results = json.loads((tmp_path / "results" / "results.json").read_text(encoding="utf-8"))
    rows = {row["name"]: row for row in results["rows"]}
    assert rows["kmm-small-open"]["checkpoint"] == str((shelf / "kmm-small-open").resolve())
    assert [row["kind"] for row in results["rows"]] == ["ground_truth", "checkpoint", "checkpoint"]
    assert train_main(["eval", "--checkpoint", "kmm-large", "--data", str(prepared_dataset), "--out",
                       str(tmp_path / "none")]) == 1
    assert "model 'kmm-large': no such bundle" in capsys.readouterr().err


# ---- licences ---------------------------------------------------------------------------------------------------------
def test_the_licence_combines_the_sources_terms():
    everything = combined_licence(["bandai-namco", "cmu", "hdm05", "cmu-expmap", "cmu-iclone", "deepmimic"])
    assert everything.licence == "CC BY-NC 4.0 + CC BY-SA 3.0, non-commercial use only"
    assert not everything.commercial_use and everything.share_alike
    assert "DeepMimic humanoid motion clips: commercial use unverified" in everything.licence_note
    assert len(everything.acknowledgements) == 5   # CMU's text once for its three sources (+ the iClone note)
    opened = combined_licence(["cmu", "hdm05", "cmu-expmap", "cmu"])
    assert (opened.licence, opened.commercial_use, opened.share_alike) == (OPEN_LICENCE, True, True)
    assert opened.acknowledgements == (CMU_ACKNOWLEDGEMENT, HDM05_ACKNOWLEDGEMENT)
    assert "NSF EIA-0196217" in CMU_ACKNOWLEDGEMENT and "Documentation Mocap Database HDM05" in HDM05_ACKNOWLEDGEMENT
    assert combined_licence(["cmu"]).licence == "CMU terms, commercial use allowed"
    assert not combined_licence(["cmu", "deepmimic"]).commercial_use   # provenance unverified: not commercial
    assert not combined_licence(["user"]).commercial_use
    unknown = combined_licence([])
    assert not unknown.commercial_use and unknown.licence.startswith("unknown")
    with pytest.raises(UnknownSourceError, match="'mixamo' has no licence entry"):
        combined_licence(["cmu", "mixamo"])
    assert source_kind("bandai-namco-2") == "bandai-namco" and source_kind("cmu-expmap") == "cmu-expmap"
    assert set(SOURCE_LICENCES) == {"bandai-namco", "cmu", "cmu-expmap", "hdm05", "cmu-iclone", "deepmimic", "accad",
                                    "cmu-amc", "user"}


def test_each_bundle_carries_the_licence_of_its_own_data(open_run, tiny_bundle):
    opened = read_manifest(open_run / "bundle")
    assert opened["name"] == "kmm-small-open" and opened["dataset"]["sources"] == ["cmu", "hdm05"]
    assert opened["licence"] == OPEN_LICENCE and opened["commercial_use"] is True and opened["share_alike"] is True
    assert opened["acknowledgements"] == [CMU_ACKNOWLEDGEMENT, HDM05_ACKNOWLEDGEMENT]
    assert "CC BY-SA 3.0" in opened["licence_note"] and "GPL-3.0-or-later" in opened["licence_note"]
    assert set(opened["dataset"]["per_dataset"]) == {"cmu", "hdm05"}
    default = read_manifest(tiny_bundle)
    assert default["licence"] == DEFAULT_LICENCE and default["commercial_use"] is False
    assert default["acknowledgements"][1] == CMU_ACKNOWLEDGEMENT
    # A bundle made before the licence fields (the shipped kmm-small today) still loads and gets a licence line
    # from the sources its dataset records.
    legacy = {key: value for key, value in default.items() if key not in ("licence_note", "commercial_use")}
    legacy["licence"] = "Code: GPL-3.0-or-later. Weights trained on the Bandai-Namco ... (old long note)"
    assert licence_line(legacy) == DEFAULT_LICENCE


# ---- the model card ---------------------------------------------------------------------------------------------------
def test_the_model_card_is_written_from_the_run(open_run, open_data):
    card = (open_run / "bundle" / "README.md").read_text(encoding="utf-8")
    assert card.startswith("# Model card: kmm-small-open\n")
    assert f"**Licence of the weights: {OPEN_LICENCE}.**" in card
    report = json.loads((open_data / "report.json").read_text(encoding="utf-8"))
    for name, row in report["per_dataset"].items():   # clips and minutes per source, from the prepare report
        licence = "CMU terms" if name == "cmu" else "CC BY-SA 3.0"
        assert (f"| {name} | {licence} | {row['takes']} | {row['contents']} | {row['clips']} | {row['minutes']} |"
                in card)
    for stage in ("tokenizer", "aligner", "evaluator", "generator"):   # steps and losses, from the run's logs
        records = read_log(open_run / stage / "log.jsonl")
        last_train = [r for r in records if r["kind"] == "train"][-1]
        steps = max(r["step"] for r in records)
        assert steps == 8 and f"| {stage} | {steps} | 8 | 0 | {last_train['loss']:.3f} |" in card
    assert CMU_ACKNOWLEDGEMENT in card and HDM05_ACKNOWLEDGEMENT in card
    section = card[card.index(ACTION_RESULTS_HEADING):]
    assert section.index(ACTION_RESULTS_BEGIN) < section.index("Not measured") < section.index(ACTION_RESULTS_END)
    assert "--cmu-descriptions" in card and "--hdm05 " in card and "--min-source-frames 10" in card
    assert "kmm-train all --config CONFIG.toml --set data.root=DATA --out RUN --threads 1 --name kmm-small-open" in card
    parameters = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in card.splitlines()
                  if line.startswith("| generator |") and line.rstrip().endswith(" M |")}
    bundle = ModelBundle.load(open_run / "bundle", device="cpu")
    count = sum(p.numel() for p in bundle.generator.parameters())
    assert parameters["generator"] == f"{count / 1e6:.2f} M"


def test_per_action_results_are_included_verbatim_when_given(open_run, tmp_path, capsys):
    results = tmp_path / "actions.md"
    results.write_text("| action | retrieval | geometric check | pass |\n| --- | --- | --- | --- |\n"
                       "| squat | 0.8 | pelvis drops | yes |\n", encoding="utf-8")
    out = tmp_path / "bundle"
    assert train_main(["bundle", "--run", str(open_run), "--out", str(out), "--name", "kmm-small-open",
                       "--action-results", str(results)]) == 0
    assert f"licence: {OPEN_LICENCE}" in capsys.readouterr().out
    card = (out / "README.md").read_text(encoding="utf-8")
    inside = card[card.index(ACTION_RESULTS_BEGIN) + len(ACTION_RESULTS_BEGIN):card.index(ACTION_RESULTS_END)]
    assert inside.strip("\n") == results.read_text(encoding="utf-8").strip("\n")
    assert "--action-results actions.md" in card
    missing = tmp_path / "no-results.md"
    assert train_main(["bundle", "--run", str(open_run), "--out", str(tmp_path / "other"), "--action-results",
                       str(missing)]) == 1
    assert f"{missing}: cannot read the per-action results" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


# ---- the vocabulary files under the checksums -------------------------------------------------------------------------
def test_vocabulary_files_are_checksummed_and_verified_on_load(open_run, tmp_path, capsys):
    from kmm_core.cli import main as kmm_main

    bundle = Path(shutil.copytree(open_run / "bundle", tmp_path / "bundle"))
    manifest = read_manifest(bundle)
    assert set(VOCABULARY_FILES + GAIT_CYCLE_FILES) <= set(manifest[FILES_KEY]) and len(manifest[FILES_KEY]) == 14
    assert verify_bundle_files(bundle, manifest) == 14
    embeddings = bundle / "vocabulary.safetensors"
    data = bytearray(embeddings.read_bytes())
    data[-64:] = bytes(64)
    embeddings.write_bytes(bytes(data))
    loaded = ModelBundle.load(bundle, device="cpu")  # generation does not read the vocabulary files...
    with pytest.raises(WeightFileError, match=r"vocabulary\.safetensors: SHA-256 .* does not match"):
        PromptVocabulary.load(loaded)  # ...the out-of-vocabulary check does, and checks them first
    shutil.copyfile(open_run / "bundle" / "vocabulary.safetensors", embeddings)
    (bundle / "vocabulary.json").write_text((bundle / "vocabulary.json").read_text(encoding="utf-8")
                                            .replace("squat", "juggle"), encoding="utf-8")
    assert kmm_main(["vocab", "--checkpoint", str(bundle)]) == 3
    assert f"{bundle / 'vocabulary.json'}: is " in capsys.readouterr().err
    # A bundle whose vocabulary came before these checksums (the shipped kmm-small today) loads as before.
    for name in VOCABULARY_FILES:
        manifest[FILES_KEY].pop(name)
    (bundle / "bundle.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert ModelBundle.load(bundle, device="cpu").config["name"] == "kmm-small-open"
    assert kmm_main(["vocab", "--checkpoint", str(bundle)]) == 0


def test_kmm_train_vocabulary_records_the_new_checksums(open_run, open_data, tmp_path):
    bundle = tmp_path / "rebundled"
    assert train_main(["bundle", "--run", str(open_run), "--out", str(bundle)]) == 0
    for name in VOCABULARY_FILES:   # what a bundle without its data looks like
        (bundle / name).unlink()
    from kmm_core.training.bundle_writer import record_checksums

    assert set(record_checksums(bundle)[FILES_KEY]).isdisjoint(VOCABULARY_FILES)
    assert train_main(["vocabulary", "--dataset", str(open_data), "--bundle", str(bundle)]) == 0
    manifest = read_manifest(bundle)
    assert set(VOCABULARY_FILES) <= set(manifest[FILES_KEY]) and verify_bundle_files(bundle, manifest) == 14


def test_the_decoding_a_run_chose_ships_in_its_bundle_and_card(open_run, tmp_path):
    """A run config's `[decoding]` table (here the walk guidance of the default recipe) becomes the bundle's
    `decoding`, the loaded model decodes with it, and the model card lists it; a bundle with the library's sampling
    has no such section."""
    assert "## Decoding" not in (open_run / "bundle" / "README.md").read_text(encoding="utf-8")
    run = tmp_path / "run"
    shutil.copytree(open_run, run, ignore=shutil.ignore_patterns("bundle"))
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    config["decoding"] = {"guidance_scale": 4.0, "locomotion_guidance_factor": 0.5}
    (run / "config.json").write_text(json.dumps(config), encoding="utf-8")
    out = tmp_path / "bundle"
    assert train_main(["bundle", "--run", str(run), "--out", str(out), "--name", "kmm-small-open"]) == 0
    assert read_manifest(out)["decoding"]["locomotion_guidance_factor"] == 0.5
    assert ModelBundle.load(out, device="cpu").decoding.locomotion_guidance_factor == 0.5
    card = (out / "README.md").read_text(encoding="utf-8")
    section = card[card.index("## Decoding"):card.index("## Intended use and limits")]
    assert "| `locomotion_guidance_factor` | 0.5 |" in section and "--walk-guidance" in section
