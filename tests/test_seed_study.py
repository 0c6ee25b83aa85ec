# SPDX-License-Identifier: GPL-3.0-or-later
"""`kmm-train ablate` end to end on the tiny trained run and the real prepared data: 2 masking rows x 2 training
seeds, a Ctrl-C in the middle of the second run, `--resume`, and the table over training seeds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from kmm_core.evaluation.seed_table import compare_rows, summarise_seeds
from kmm_core.training.ablate_command import (
    EXIT_STOPPED,
    ROWS,
    StudyRun,
    main,
    parse_rows,
    parse_seeds,
    parse_shard,
    planned_runs,
    shard_runs,
)
from kmm_core.training.run_log import read_log

REPO_ROOT = Path(__file__).resolve().parents[1]
EVAL_SIZES = ["--replications", "2", "--max-samples", "16", "--mm-texts", "2", "--mm-generations", "2",
              "--max-directional", "2", "--transition-timelines", "1", "--timing-runs", "1", "--timing-seconds", "4"]
STEPS = 120


def _study_args(base: Path, out: Path, data: Path, steps: int = STEPS) -> list[str]:
    return ["--base", str(base), "--rows", "keyframe_gaussian,random", "--seeds", "0,1", "--out", str(out),
            "--steps", str(steps), "--set", f"data.root={data}", "--set", "train.generator.checkpoint_every=4",
            "--set", "train.generator.eval_every=0", "--device", "cpu", "--threads", "1", "--no-progress",
            "--data", str(data), *EVAL_SIZES]


@pytest.fixture(scope="module")
def interrupted_then_resumed(tmp_path_factory, tiny_run, prepared_dataset):
    """The study stopped by SIGINT while the second run trains, then finished with --resume (and what it printed)."""
    out = tmp_path_factory.mktemp("seed_study") / "study"
    args = _study_args(tiny_run, out, prepared_dataset)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "kmm_core.training.cli", "ablate", *args], cwd=REPO_ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoints = out / "runs" / "random-seed0" / "generator" / "checkpoints"
    try:
        deadline = time.monotonic() + 300
        while not (checkpoints.is_dir() and any(checkpoints.glob("step_*"))):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the second run wrote no checkpoint within 300 s"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, stopped_err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:  # a failed assertion above must not leave the study running
            process.kill()
            process.communicate()
    first_results = out / "evaluations" / "keyframe_gaussian-seed0" / "results.json"
    state = {"code": process.returncode, "stderr": stopped_err, "first_mtime": first_results.stat().st_mtime_ns,
             "second_finished": (out / "runs" / "random-seed0" / "generator.safetensors").is_file()}
    resumed = subprocess.run([sys.executable, "-m", "kmm_core.training.cli", "ablate", *args, "--resume"],
                             cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    return out, state, resumed


def test_ctrl_c_stops_the_study_and_resume_finishes_it(interrupted_then_resumed):
    out, state, resumed = interrupted_then_resumed
    assert state["code"] == EXIT_STOPPED, state["stderr"]
    assert "continue with --resume" in state["stderr"]
    assert not state["second_finished"]  # stopped inside the second run's training
    assert resumed.returncode == 0, resumed.stderr
    assert "run 1/4 keyframe_gaussian-seed0: finished earlier, skipped" in resumed.stderr
    first = out / "evaluations" / "keyframe_gaussian-seed0" / "results.json"
    assert first.stat().st_mtime_ns == state["first_mtime"]  # the finished run was not redone
    log = read_log(out / "runs" / "random-seed0" / "generator" / "log.jsonl")
    assert any("resumed from" in record.get("message", "") for record in log)
    for name in ("keyframe_gaussian-seed0", "random-seed0", "keyframe_gaussian-seed1", "random-seed1"):
        assert (out / "evaluations" / name / "results.md").is_file()
        assert json.loads((out / "bundles" / name / "bundle.json").read_text())["name"].endswith(
            f"training seed {name[-1]}")


def test_each_run_has_its_rows_masker_and_training_seed(interrupted_then_resumed):
    out, _, _ = interrupted_then_resumed
    weights = {}
    for row in ("keyframe_gaussian", "random"):
        for seed in (0, 1):
            run = out / "runs" / f"{row}-seed{seed}"
            config = json.loads((run / "config.json").read_text())
            assert config["generator"]["masker"] == ROWS[row][0]
            assert config["train"]["generator"]["seed"] == seed
            assert config["train"]["generator"]["steps"] == STEPS
            weights[row, seed] = load_file(str(run / "generator.safetensors"))
    shared = json.loads((out / "study.json").read_text())
    assert "masker" not in shared["config"]["generator"] and shared["evaluation"]["replications"] == 2
    key = next(iter(weights["random", 0]))
    assert not weights["random", 0][key].equal(weights["random", 1][key])  # seeds change the initialisation


def test_table_has_mean_and_interval_over_training_seeds_and_verdicts(interrupted_then_resumed):
    out, _, _ = interrupted_then_resumed
    table = json.loads((out / "results.json").read_text())
    assert table["finished_runs"] == table["planned_runs"] == 4
    rows = {row["row"]: row for row in table["rows"]}
    assert set(rows) == {"keyframe_gaussian", "random"}
    for row in rows.values():
        assert row["seeds"] == [0, 1]
        fid = row["metrics"]["fid"]
        per_seed = [json.loads((out / "evaluations" / f"{row['row']}-seed{s}" / "results.json").read_text())
                    ["rows"][1]["metrics"]["fid"]["mean"] for s in (0, 1)]
        assert fid["per_seed"] == {"0": per_seed[0], "1": per_seed[1]}
        assert fid["mean"] == pytest.approx(sum(per_seed) / 2)
        # Student t with 1 degree of freedom: t_0.975 = 12.706; half-width = t * s / sqrt(2) = t * |a - b| / 2.
        assert fid["ci95"] == pytest.approx(12.7062047 * abs(per_seed[0] - per_seed[1]) / 2, rel=1e-6)
    verdicts = {item["metric"]: item for item in table["verdicts"]}
    assert {"fid", "r_precision_top1", "mm_distance", "diversity"} <= set(verdicts)
    assert "parameters" not in verdicts and "codebook_perplexity" not in verdicts
    for item in verdicts.values():
        a, b = item["row_interval"], item["against_interval"]
        overlap = a["low"] <= b["high"] and b["low"] <= a["high"]
        assert (item["verdict"] == "within the intervals") == overlap
    text = (out / "results.md").read_text()
    assert "Key-frame masking (Gaussian density)" in text and "Random masking" in text
    assert "- FID ↓: keyframe_gaussian" in text and "4 of 4 planned runs finished" in text


def test_resume_must_measure_the_same_study(interrupted_then_resumed, tiny_run, prepared_dataset, capsys):
    out, _, _ = interrupted_then_resumed
    assert main(_study_args(tiny_run, out, prepared_dataset)) == 1
    assert "already holds a seed study" in capsys.readouterr().err
    assert main([*_study_args(tiny_run, out, prepared_dataset, steps=STEPS + 1), "--resume"]) == 1
    err = capsys.readouterr().err
    assert "--resume must measure the same study" in err and "train.generator.steps: 120 then, 121 now" in err


def test_shards_split_the_planned_runs_and_a_shard_of_a_finished_study_trains_nothing(
        interrupted_then_resumed, tiny_run, prepared_dataset, capsys):
    runs = planned_runs(["keyframe_gaussian", "dpc_knn", "random"], [0, 1, 2])
    shards = [shard_runs(runs, parse_shard(f"{k}/2")) for k in (1, 2)]
    assert sorted(shards[0] + shards[1], key=runs.index) == runs and not set(shards[0]) & set(shards[1])
    assert [len(s) for s in shards] == [5, 4] and shards[1][0] == StudyRun("dpc_knn", 0)
    assert shard_runs(runs, parse_shard(None)) == runs
    for bad, message in (("3/2", "needs 1 <= K <= N"), ("0/2", "needs 1 <= K <= N"), ("two", "is not K/N")):
        with pytest.raises(Exception, match=message):
            parse_shard(bad)
    out, _, _ = interrupted_then_resumed
    table = out / "results.json"
    before = table.read_text()
    assert main([*_study_args(tiny_run, out, prepared_dataset), "--resume", "--shard", "2/2"]) == 0
    err = capsys.readouterr().err
    assert "run 2/4 random-seed0: finished earlier, skipped" in err and "run 4/4 random-seed1: finished earlier" in err
    assert "run 1/4" not in err and "run 3/4" not in err and "training" not in err
    assert json.loads(table.read_text())["finished_runs"] == 4 and table.read_text() == before


def test_bad_rows_seeds_and_base_are_clear_errors(tmp_path, tiny_run, prepared_dataset, capsys):
    with pytest.raises(Exception, match="dpc: rows are keyframe_gaussian, dpc_knn, random"):
        parse_rows("keyframe_gaussian,dpc")
    with pytest.raises(Exception, match="distinct seeds"):
        parse_seeds("0,0")
    assert parse_rows("dpc_knn,random") == ["dpc_knn", "random"] and ROWS["dpc_knn"][0] == "keyframe_knn"
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text((tiny_run / "config.json").read_text())
    assert main(_study_args(base, tmp_path / "out", prepared_dataset)) == 1
    assert "Mean.npy: not found: --base must be a finished run folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing written before the inputs are checked


def test_verdict_needs_intervals_that_do_not_overlap():
    def metrics(values):
        return {seed: {"fid": {"mean": v, "ci95": None, "count": 1},
                       "diversity": {"mean": 9.0 + v, "ci95": None, "count": 1}} for seed, v in enumerate(values)}

    ground_truth = {"diversity": {"mean": 9.0, "ci95": 0.0, "count": 2}}
    low, high, spread = (summarise_seeds(metrics(v)) for v in ([0.30, 0.31, 0.32], [0.50, 0.52, 0.51],
                                                              [0.10, 0.90, 0.50]))
    verdicts = {item["metric"]: item["verdict"] for item in compare_rows(low, high, ground_truth, "keyframe_gaussian")}
    assert verdicts == {"fid": "better", "diversity": "better"}  # diversity: closer to the ground truth's 9.0
    assert {item["verdict"] for item in compare_rows(high, low, ground_truth, "dpc_knn")} == {"worse"}
    assert {item["verdict"] for item in compare_rows(spread, low, ground_truth, "x")} == {"within the intervals"}
