# SPDX-License-Identifier: GPL-3.0-or-later
"""Balanced sampling (`[train.<stage>] balance`): rare actions of small sources are drawn more often, resumably."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from test_stages import _run_with_components, assert_generator_resumes_exactly, tiny_config

from kmm_core.common.errors import InputFileError
from kmm_core.data.prepare import read_index
from kmm_core.training.balanced_sampling import action_groups, group_shares, sampling_weights
from kmm_core.training.batches import ShuffledBatches


def test_weights_give_each_group_n_to_the_balance():
    groups = ["big"] * 90 + ["small"] * 10
    uniform = group_shares(groups, sampling_weights(groups, 1.0))
    assert uniform["big"] == pytest.approx(0.9) and uniform["small"] == pytest.approx(0.1)
    root = group_shares(groups, sampling_weights(groups, 0.5))
    assert root["small"] == pytest.approx(np.sqrt(10) / (np.sqrt(10) + np.sqrt(90)))
    equal = group_shares(groups, sampling_weights(groups, 0.0))
    assert equal["big"] == pytest.approx(0.5) and equal["small"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="balance"):
        sampling_weights(groups, 1.5)


def test_group_weights_multiply_the_chosen_groups_totals_by_name_or_pattern():
    groups = ["bandai/walk"] * 80 + ["accad/travel"] * 4 + ["accad/run"] * 6 + ["cmu/jump"] * 10
    plain = group_shares(groups, sampling_weights(groups, 0.5))
    weighted = group_shares(groups, sampling_weights(groups, 0.5, {"accad/*": 3.0, "accad/run": 2.0}))
    # Relative to an unchosen group, a chosen one's total is multiplied by its keys' factors (3 for both, 2 more for run).
    ratio = {group: (weighted[group] / weighted["cmu/jump"]) / (plain[group] / plain["cmu/jump"]) for group in plain}
    assert ratio == pytest.approx({"bandai/walk": 1.0, "accad/travel": 3.0, "accad/run": 6.0, "cmu/jump": 1.0})
    assert sum(weighted.values()) == pytest.approx(1.0)
    # Within a group its clips still share equally.
    per_clip = sampling_weights(groups, 0.5, {"accad/*": 3.0})
    assert np.ptp(per_clip[80:84]) == 0
    with pytest.raises(ValueError, match=r"'acad/\*'.*matches no action group.*accad/run"):
        sampling_weights(groups, 0.5, {"acad/*": 3.0})  # misspelt: would otherwise change nothing
    for factor in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match=r"'cmu/jump'.*finite and > 0"):
            sampling_weights(groups, 0.5, {"cmu/jump": factor})


def test_group_weights_are_checked_when_the_config_is_read(prepared_dataset):
    from kmm_core.common.errors import ConfigError

    config = tiny_config(prepared_dataset, 'train.generator.group_weights={"cmu/*" = 3.0}')
    assert config.train.generator.group_weights == {"cmu/*": 3.0}
    with pytest.raises(ConfigError, match=r"group_weights.*'cmu/\*'.*> 0.*-1"):
        tiny_config(prepared_dataset, 'train.generator.group_weights={"cmu/*" = -1.0}')


def test_a_group_weight_matching_no_training_group_stops_the_stage_naming_it(tmp_path, prepared_dataset, tiny_run):
    from kmm_core.training.stages import StageError, train_generator

    config = tiny_config(prepared_dataset, "train.generator.steps=2", "train.generator.eval_every=0",
                         'train.generator.group_weights={"accad/travel" = 3.0}')  # the tiny data has no ACCAD
    run = _run_with_components(tmp_path, tiny_run)
    with pytest.raises(StageError, match=r"\[train.generator\] group_weights\['accad/travel'\].*matches no"):
        train_generator(config, run, device="cpu", progress=False)
    assert not (run / "generator.safetensors").exists()


def test_a_balance_outside_0_to_1_is_a_config_error_naming_the_key(prepared_dataset):
    from kmm_core.common.errors import ConfigError

    with pytest.raises(ConfigError, match=r"balance.*\[0, 1\].*1\.5"):
        tiny_config(prepared_dataset, "train.generator.balance=1.5")


def test_groups_come_from_the_prepared_index(prepared_dataset):
    rows = read_index(prepared_dataset)
    names = [row["name"] for row in rows[:20]] + ["not_a_clip"]
    groups = action_groups(prepared_dataset, names)
    assert groups[:20] == [f"{row['dataset']}/{row['content']}" for row in rows[:20]]
    assert groups[-1] == "(not in index.csv)"


def test_a_folder_without_index_is_a_clear_error(tmp_path):
    with pytest.raises(InputFileError, match="index.csv"):
        action_groups(tmp_path, ["a"])


def test_weighted_epochs_draw_the_small_group_as_often_as_weighted_and_repeat_with_the_seed():
    dataset = list(range(1000))
    groups = ["big"] * 950 + ["small"] * 50
    batches = ShuffledBatches(dataset, 50, seed=3, weights=sampling_weights(groups, 0.0), collate_fn=list)
    order = batches.epoch_order(0)
    drawn_small = np.mean(order >= 950)
    assert 0.44 < drawn_small < 0.56  # half of the draws, from 5% of the clips
    assert np.array_equal(order, batches.epoch_order(0)) and not np.array_equal(order, batches.epoch_order(1))
    # Resuming a weighted stream as a shuffled one (or back) is refused: the saved position would mean other items.
    plain = ShuffledBatches(dataset, 50, seed=3, collate_fn=list)
    with pytest.raises(ValueError, match="weighted"):
        plain.load_state_dict(batches.state_dict())


def test_a_balanced_generator_stage_trains_resumes_exactly_and_logs_its_shares(tmp_path, prepared_dataset, tiny_run,
                                                                               capsys):
    config = tiny_config(prepared_dataset, "train.generator.steps=6", "train.generator.checkpoint_every=3",
                         "train.generator.eval_every=0", "train.generator.keep_checkpoints=5",
                         "train.generator.balance=0.0", 'train.generator.group_weights={"cmu/*" = 3.0}')
    assert_generator_resumes_exactly(tmp_path, config, tiny_run)
    out = capsys.readouterr().out
    assert "balanced sampling (balance = 0.0)" in out
    assert "group_weights['cmu/*'] = 3.0: cmu/" in out  # the chosen groups' shares are logged
    # The stage had several action groups to balance (the draws' shares are checked in the test above).
    rows = {row["name"]: row for row in read_index(prepared_dataset)}
    assert len(Counter(f"{r['dataset']}/{r['content']}" for r in rows.values() if r["split"] == "train")) > 5


def test_named_takes_are_grouped_by_the_action_their_check_measures(tmp_path):
    """ACCAD names every take for what happens in it (real file names of shared/data/more), so its contents are nearly one per take: grouped as they are,
    62 contents of 2 clips took 41% of the draws.  They group by their check's action instead."""
    from kmm_core.data.take_names import read_take_name

    stems = {"Male1_B3_Walk": "travel", "Male1_B2_WalkToStand": "travel", "Male1_B14_WalkTurnRight135": "turn",
             "Male1_C03_Run": "run", "Male1_A10_LieToCrouch": "getup", "Male1_A11_CrawlForward": "crawl",
             "Male1_A2_Sway": "other"}
    rows = ["name,take,dataset,content,style,split,mirrored,window,start_frame,frames,padded_frames,source"]
    for stem in stems:
        content = read_take_name(stem).content
        rows += [f"{prefix}accad_{stem},accad_{stem},accad,{content},,train,{int(bool(prefix))},0,0,80,0,x.bvh"
                 for prefix in ("", "M")]
    rows.append("walk_1,walk_1,bandai-namco-2,walk,normal,train,0,0,0,80,0,y.bvh")
    (tmp_path / "index.csv").write_text("\n".join(rows) + "\n")
    names = [f"{prefix}accad_{stem}" for stem in stems for prefix in ("", "M")] + ["walk_1"]
    groups = action_groups(tmp_path, names)
    assert groups[:-1] == [f"accad/{action}" for action in stems.values() for _ in range(2)]
    assert groups[-1] == "bandai-namco-2/walk"  # other sources keep dataset/content
    shares = group_shares(groups, sampling_weights(groups, 0.0))
    assert shares["accad/travel"] == pytest.approx(1 / 7)  # two takes of one action share one group's draws
