# SPDX-License-Identifier: GPL-3.0-or-later
"""`kmm-train eval-actions` end to end: the tiny trained bundle on the real prepared test split (Bandai-Namco + CMU),
through kmm-train's command line, at CI sizes; plus the retrieval rule on hand-made embeddings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kmm_core.bundle.vocabulary import read_vocabulary
from kmm_core.evaluation.action_evaluation import action_prototypes, retrieval_ranks
from kmm_core.evaluation.action_report import ACTIONS_JSON, ACTIONS_MD

SIZES = ["--prompts-per-action", "2", "--generations-per-prompt", "2", "--seed", "3", "--threads", "1", "--quiet"]


def _run(argv: list[str]) -> int:
    from kmm_core.training.cli import main

    return main(["eval-actions", *argv])


@pytest.fixture(scope="module")
def action_results(tmp_path_factory, tiny_bundle, prepared_dataset) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("eval_actions") / "actions"
    assert _run(["--checkpoint", str(tiny_bundle), "--data", str(prepared_dataset), "--split", "test",
                 "--out", str(out), *SIZES]) == 0
    return out, json.loads((out / ACTIONS_JSON).read_text(encoding="utf-8"))


def test_every_action_word_of_the_vocabulary_has_one_row(action_results, tiny_bundle):
    _, results = action_results
    vocabulary = read_vocabulary(tiny_bundle)
    assert [row["action"] for row in results["actions"]] == list(vocabulary.action_words)
    walk = next(row for row in results["actions"] if row["action"] == "walk")
    # The same word in several datasets is one row with all of them and their training takes summed.
    assert walk["datasets"] == sorted({a.dataset for a in vocabulary.actions if a.content == "walk"})
    assert len(walk["datasets"]) >= 2
    assert walk["train_takes"] == sum(a.train_takes for a in vocabulary.actions if a.content == "walk")


def test_rows_hold_generated_and_real_rates_and_the_pass_rule(action_results):
    _, results = action_results
    settings = results["settings"]
    assert settings["top_k"] == 3 and settings["pass_rate"] == 0.5 and settings["seed"] == 3
    sources = set()
    for row in results["actions"]:
        sources.add(row["prompt_source"])
        assert 1 <= len(row["prompts"]) <= 2
        assert row["generations"] == 2 * len(row["prompts"])
        generated = row["generated"]
        assert 0 <= generated["top1"] <= generated["topk"] <= 1
        if row["prompt_source"] == "split":
            assert 1 <= row["real_clips"] <= 2
            assert 0 <= row["real"]["top1"] <= row["real"]["topk"] <= 1
        else:
            assert row["real_clips"] == 0 and row["real"]["topk"] is None
        checks = generated["checks"]
        expected = generated["topk"] >= 0.5 and all(entry["rate"] >= 0.5 for entry in checks.values())
        assert row["passed"] == expected, row["action"]
    assert sources == {"split", "examples"}   # the tiny data has test clips for most actions, not for all
    assert results["passing"] == sum(row["passed"] for row in results["actions"])


def test_checks_follow_the_action_word_and_the_side_words(action_results):
    _, results = action_results
    rows = {row["action"]: row for row in results["actions"]}
    assert set(rows["jump"]["generated"]["checks"]) == {"jump"}
    assert rows["jump"]["real"]["checks"]["jump"]["count"] == rows["jump"]["real_clips"]
    assert set(rows["kick"]["generated"]["checks"]) == {"kick"}
    for action in ("raise-up-left-hand", "wave-right-hand", "walk-turn-left"):
        side = rows[action]["generated"]["checks"]["side"]
        assert side["count"] == rows[action]["generations"]
        if rows[action]["prompt_source"] == "split":   # real labelled clips name their side correctly
            assert rows[action]["real"]["checks"]["side"]["rate"] == 1.0
    assert set(rows["walk"]["generated"]["checks"]) == {"travel"}      # every action word has its check


def test_markdown_lists_every_action_passing_or_not(action_results):
    out, results = action_results
    text = (out / ACTIONS_MD).read_text(encoding="utf-8")
    assert f"**{results['passing']} of {len(results['actions'])} actions pass.**" in text
    assert "kmm-train eval-actions --checkpoint" in text
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| Action | Dataset(s) | Train takes | Prompts | n (gen / real) | Gen. top-1 | "
                               "Gen. top-3")
    assert table[1].startswith("| --- |")
    body = table[2:]
    assert [line.split(" | ")[0].removeprefix("| ").strip("`") for line in body] == \
        [row["action"] for row in results["actions"]]
    for line, row in zip(body, results["actions"], strict=True):
        assert line.endswith("| **PASS** |" if row["passed"] else "| fail |")
    # Actions whose real clips the evaluator does not retrieve are named in the header (the tiny evaluator has some).
    blind = [row["action"] for row in results["actions"]
             if row["real"]["topk"] is not None and row["real"]["topk"] < 0.5]
    assert blind
    assert all(f"`{name}`" in text.split("| Action |")[0] for name in blind)


def test_same_seed_gives_the_same_results(action_results, tiny_bundle, prepared_dataset, tmp_path):
    _, first = action_results
    out = tmp_path / "again"
    assert _run(["--checkpoint", str(tiny_bundle), "--data", str(prepared_dataset), "--out", str(out),
                 *SIZES]) == 0
    second = json.loads((out / ACTIONS_JSON).read_text(encoding="utf-8"))
    assert second["actions"] == first["actions"]


def test_bad_inputs_give_clear_errors(tmp_path, tiny_bundle, prepared_dataset, capsys):
    no_index = tmp_path / "plain"
    shutil.copytree(prepared_dataset, no_index)
    (no_index / "index.csv").unlink()
    assert _run(["--checkpoint", str(tiny_bundle), "--data", str(no_index), "--out", str(tmp_path / "o")]) == 1
    error = capsys.readouterr().err
    assert "index.csv" in error and "kmm-train prepare" in error

    missing = tmp_path / "no-bundle"
    assert _run(["--checkpoint", str(missing), "--data", str(prepared_dataset), "--out", str(tmp_path / "o")]) == 1
    assert str(missing) in capsys.readouterr().err

    # A model name goes through the one resolver (kmm_core.bundle.model_choice): an unknown one lists what is installed.
    assert _run(["--checkpoint", "no-such-model", "--data", str(prepared_dataset), "--out", str(tmp_path / "o")]) == 1
    error = capsys.readouterr().err
    assert "no-such-model" in error and "kmm-small" in error

    assert _run(["--checkpoint", str(tiny_bundle), "--data", str(prepared_dataset), "--out", str(tmp_path / "o"),
                 "--pass-rate", "0"]) == 1
    assert "pass_rate=0.0" in capsys.readouterr().err


def test_retrieval_rank_uses_one_prototype_per_action_and_ties_count_against():
    texts = [np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0]]), np.array([[0.0, 1.0, 0.0]]), np.array([[0.0, 0.0, 2.0]])]
    prototypes = action_prototypes(texts)
    np.testing.assert_allclose(np.linalg.norm(prototypes, axis=1), 1.0)
    np.testing.assert_allclose(prototypes[0], np.array([0.9, 0.3, 0.0]) / np.linalg.norm([0.9, 0.3, 0.0]))
    motions = np.array([[1.0, 0.1, 0.0], [0.0, 0.0, 5.0], [0.0, 1.0, 1.0]])
    ranks = retrieval_ranks(motions, prototypes, [0, 1, 1])
    assert ranks[0] == 1           # closest to its own prototype
    assert ranks[1] == 3           # as far from its own prototype as from action 0's: the tie ranks it last
    assert ranks[2] == 2           # equally close to actions 1 and 2: the tie counts against it
