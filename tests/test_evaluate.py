# SPDX-License-Identifier: GPL-3.0-or-later
"""`kmm-train eval` end to end: the tiny trained bundle on the real prepared test split, at CI sizes.

One session-scoped run of ``--compare BUNDLE BUNDLE`` (the same bundle twice) feeds most tests: it writes the JSON
and Markdown files, and the two rows must be identical because every random choice comes from fixed seeds.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from kmm_core.evaluation.report import BODY_COLUMNS, METRIC_KEYS, RESULTS_JSON, RESULTS_MD, read_results

REPLICATIONS = 2
TINY_SIZES = ["--replications", str(REPLICATIONS), "--max-samples", "16", "--mm-texts", "4", "--mm-generations", "3",
              "--max-directional", "4", "--transition-timelines", "2", "--timing-runs", "2", "--timing-seconds", "10",
              "--quiet"]
# Replicated per seed; the rest are single measurements (or intervals over clips / timing runs).
REPLICATED = ("r_precision_top1", "r_precision_top2", "r_precision_top3", "fid", "diversity", "mm_distance",
              "multimodality", "directional_accuracy_split", "directional_accuracy_paraphrase",
              "transition_peak_jerk", "transition_auj", "foot_skating_ratio", "short_action_after_walk",
              "short_action_left_rise", "animator_split_jerk_pelvis_ratio", "animator_split_jerk_head_ratio")
NOT_FOR_GROUND_TRUTH = ("multimodality", "directional_accuracy_paraphrase", "transition_peak_jerk", "transition_auj",
                        "parameters", "generation_seconds_per_minute", "tokenizer_mpjpe_mm", "codebook_perplexity",
                        *(f"{stage}{key}" for stage in ("raw_body_", "tokenizer_body_") for key, *_ in BODY_COLUMNS))
BODY_STAGES = ("body_", "raw_body_", "tokenizer_body_")
ANIMATOR_PREFIXES = ("animator_", "tokenizer_animator_")


def _run_eval(argv: list[str]) -> int:
    # Through kmm-train's dispatch, as a user runs it.
    from kmm_core.training.cli import main

    return main(["eval", *argv])


@pytest.fixture(scope="session")
def compare_results(tmp_path_factory, tiny_bundle, prepared_dataset) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("eval") / "results"
    code = _run_eval(["--compare", str(tiny_bundle), str(tiny_bundle), "--data", str(prepared_dataset),
                      "--split", "test", "--out", str(out), *TINY_SIZES])
    assert code == 0
    return out, json.loads((out / RESULTS_JSON).read_text(encoding="utf-8"))


def test_results_json_has_every_metric_with_confidence_intervals(compare_results):
    _, results = compare_results
    assert results["format_version"] == 1
    assert [row["kind"] for row in results["rows"]] == ["ground_truth", "checkpoint", "checkpoint"]
    names = [row["name"] for row in results["rows"]]
    assert len(set(names)) == 3, names
    truth = results["rows"][0]["metrics"]
    for row in results["rows"][1:]:
        assert tuple(row["metrics"]) == METRIC_KEYS
        for key, entry in row["metrics"].items():
            if key.startswith(ANIMATOR_PREFIXES) and entry is None:
                continue  # a subset the tiny split lacks, or a measure its subset does not take: test_animator_...
            if key.startswith(BODY_STAGES) and truth["body_" + key.split("body_", 1)[1]] is None:
                assert entry is None, key  # the split has no item of that kind (no walking or standing caption)
                continue
            assert entry is not None, key
            assert math.isfinite(entry["mean"]), (key, entry)
            assert entry["count"] >= 1
            if key in REPLICATED:
                assert entry["count"] == REPLICATIONS, (key, entry)
            if entry["count"] >= 2:  # an interval needs two measurements; a single one has none
                assert entry["ci95"] is not None and math.isfinite(entry["ci95"]) and entry["ci95"] >= 0, (key, entry)
        metrics = row["metrics"]
        assert 0 <= metrics["r_precision_top1"]["mean"] <= metrics["r_precision_top3"]["mean"] <= 1
        assert metrics["parameters"]["mean"] > 1000
        assert metrics["generation_seconds_per_minute"]["mean"] > 0
        assert metrics["tokenizer_mpjpe_mm"]["count"] == 16  # one measurement per clip
        assert 1 <= metrics["codebook_perplexity"]["mean"] <= 32  # the tiny codebook has 32 codes
        assert metrics["codebook_perplexity"]["ci95"] is None and metrics["parameters"]["ci95"] is None
        for key in ("directional_accuracy_split", "directional_accuracy_paraphrase", "foot_skating_ratio"):
            assert 0 <= metrics[key]["mean"] <= 1


def test_ground_truth_row_is_the_reference(compare_results):
    _, results = compare_results
    truth = results["rows"][0]["metrics"]
    # The real windows are the FID reference themselves.
    assert truth["fid"]["mean"] == pytest.approx(0.0, abs=1e-6)
    top = [truth[f"r_precision_top{k}"]["mean"] for k in (1, 2, 3)]
    # The tiny evaluator (30 training steps) may sit at chance level; only the ordering is guaranteed.
    assert 0 <= top[0] <= top[1] <= top[2] <= 1
    assert truth["r_precision_top1"]["count"] == REPLICATIONS
    assert truth["diversity"]["mean"] > 0 and truth["mm_distance"]["mean"] > 0
    # Real labelled clips pass the geometric check (99.6% over the whole archive).
    assert truth["directional_accuracy_split"]["mean"] >= 0.5
    for key in NOT_FOR_GROUND_TRUTH:
        assert truth[key] is None, key
    assert "k/16" in results["notes"]["r_precision_chance"]  # 16 items: one R-precision batch of 16


def test_markdown_table_has_ground_truth_and_one_row_per_checkpoint(compare_results):
    out, results = compare_results
    text = (out / RESULTS_MD).read_text(encoding="utf-8")
    main = text[:text.index("## Body parts")]  # the body-part table follows: test_body_parts_are_measured_...
    table = [line for line in main.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| Model | R-Prec top-1")
    assert table[1].startswith("| --- |")
    body = table[2:]
    assert [line.split(" | ")[0].removeprefix("| ") for line in body] == [row["name"] for row in results["rows"]]
    assert body[0].startswith("| ground truth | ")
    assert " ± " in body[1] and "–" in body[0]
    assert read_results(out) == results


def test_body_parts_are_measured_at_each_stage_with_a_plot(compare_results):
    out, results = compare_results
    truth, model = results["rows"][0]["metrics"], results["rows"][1]["metrics"]
    measured = [key for key, *_ in BODY_COLUMNS if truth["body_" + key] is not None]
    assert "frozen_feet" in measured and "jerk_left_hand_ratio" in measured
    assert any(key.endswith("_locomotion_ratio") or key == "gait_regularity_ratio" for key in measured), measured
    for key in measured:
        if key.endswith("_ratio"):
            assert truth["body_" + key]["mean"] == pytest.approx(1.0)  # real against real
        assert model["body_" + key]["count"] == REPLICATIONS and model["raw_body_" + key] is not None
        assert model["tokenizer_body_" + key]["count"] == 1  # one reconstruction of the fixed real windows
    assert truth["body_frozen_feet"]["mean"] < 0.1  # real feet rarely stand exactly still (a held end frame)
    text = (out / RESULTS_MD).read_text(encoding="utf-8")
    body = text[text.index("## Body parts"):text.index("## Notes")]
    names = [line.split(" | ")[0].removeprefix("| ") for line in body.splitlines() if line.startswith("| ")][2:]
    first = results["rows"][1]["name"]
    assert names[:4] == ["ground truth", first, f"{first}: raw decoder output", f"{first}: tokenizer reconstruction"]
    for number in (1, 2):
        assert (out / f"body-{number}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "body-1.png" in results["notes"]["body_plots"]


def test_animator_subsets_sit_beside_the_split(compare_results):
    out, results = compare_results
    truth, model = results["rows"][0]["metrics"], results["rows"][1]["metrics"]
    counts = results["subset_items"]
    assert counts["split"] == 16 and set(counts) <= {"split", "calm_standing", "walking"}
    for stage, count in (("", REPLICATIONS), ("tokenizer_", 1)):
        for measure in ("jerk_pelvis", "jerk_head"):
            assert model[f"{stage}animator_split_{measure}_ratio"]["count"] == count
        for subset in ("calm_standing", "walking"):
            keys = [k for k in model if k.startswith(f"{stage}animator_{subset}_") and model[k] is not None]
            if subset in counts:
                assert f"{stage}animator_{subset}_jerk_pelvis_ratio" in keys
                assert all(model[k]["count"] == count for k in keys)
                assert not any(k.endswith("_stride_regularity_ratio") for k in keys if subset == "calm_standing")
            else:
                assert not keys
    assert all(value is None for key, value in truth.items() if "animator_" in key or key.startswith("short_action"))
    assert model["short_action_after_walk"]["mean"] in (0.0, 0.5, 1.0)
    assert -1 < model["short_action_left_rise"]["mean"] < 1
    text = (out / RESULTS_MD).read_text(encoding="utf-8")
    table = text[text.index("## Where the animator looks"):text.index("## Notes")]
    names = [line.split(" | ")[0].removeprefix("| ") for line in table.splitlines() if line.startswith("| ")][2:]
    first = results["rows"][1]["name"]
    assert names[0] == f"{first}: split" and f"{first}: split, tokenizer reconstruction" in names
    assert len(names) == 2 * 2 * (1 + len(set(counts) - {"split"}))   # two rows, two stages, split + each subset


def test_compare_same_bundle_twice_gives_identical_generated_metrics(compare_results):
    # No RNG or cache state leaks between rows, so a row measured alone with --checkpoint agrees with its row in a
    # --compare table.
    _, results = compare_results
    first, second = (row["metrics"] for row in results["rows"][1:])
    timing = "generation_seconds_per_minute"  # wall-clock time is the only thing allowed to differ
    assert {k: v for k, v in first.items() if k != timing} == {k: v for k, v in second.items() if k != timing}


def test_bad_paths_give_clear_errors(tmp_path, tiny_bundle, prepared_dataset, capsys):
    missing = tmp_path / "no-such-bundle"
    assert _run_eval(["--checkpoint", str(missing), "--data", str(prepared_dataset), "--out", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert str(missing) in error and "no such folder" in error

    no_data = tmp_path / "no-such-data"
    assert _run_eval(["--checkpoint", str(tiny_bundle), "--data", str(no_data), "--out", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert str(no_data) in error and "not found" in error

    assert _run_eval(["--checkpoint", str(tiny_bundle), "--data", str(prepared_dataset), "--split", "holdout",
                      "--out", str(tmp_path)]) == 1
    assert "holdout.txt" in capsys.readouterr().err

    assert _run_eval(["--checkpoint", str(tiny_bundle), "--data", str(prepared_dataset), "--evaluator",
                      str(tmp_path), "--out", str(tmp_path)]) == 1
    assert str(tmp_path / "evaluator.safetensors") in capsys.readouterr().err

    assert _run_eval(["--checkpoint", str(tiny_bundle), "--data", str(prepared_dataset), "--replications", "0",
                      "--out", str(tmp_path)]) == 1
    assert "replications" in capsys.readouterr().err
    assert not (tmp_path / RESULTS_JSON).exists()


def test_bundle_without_evaluator_needs_one_given(tmp_path, tiny_bundle, prepared_dataset, capsys):
    bundle = tmp_path / "no-evaluator"
    shutil.copytree(tiny_bundle, bundle)
    manifest = json.loads((bundle / "bundle.json").read_text(encoding="utf-8"))
    manifest["components"] = [name for name in manifest["components"] if name != "evaluator"]
    (bundle / "bundle.json").write_text(json.dumps(manifest), encoding="utf-8")
    (bundle / "evaluator.safetensors").unlink()
    assert _run_eval(["--checkpoint", str(bundle), "--data", str(prepared_dataset), "--out", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert "no evaluator" in error and "--evaluator" in error


def test_transition_mode_is_a_checked_setting():
    from kmm_core.common.errors import ConfigError
    from kmm_core.evaluation.evaluate import build_parser
    from kmm_core.evaluation.settings import EvaluationSettings
    from kmm_core.generation.timeline import DEFAULT_TRANSITIONS

    assert EvaluationSettings().transitions == DEFAULT_TRANSITIONS
    with pytest.raises(ConfigError, match="transitions='sideways'"):
        EvaluationSettings(transitions="sideways")
    args = build_parser().parse_args(["--checkpoint", "b", "--data", "d", "--transitions", "inpaint"])
    assert args.transitions == "inpaint"


def test_results_reader_rejects_other_files(tmp_path):
    from kmm_core.common.errors import InputFileError

    path = tmp_path / RESULTS_JSON
    path.write_text('{"rows": []}', encoding="utf-8")
    with pytest.raises(InputFileError, match="format_version"):
        read_results(tmp_path)
    path.write_text("{", encoding="utf-8")
    with pytest.raises(InputFileError, match="line 1"):
        read_results(path)
