# SPDX-License-Identifier: GPL-3.0-or-later
"""Batches of similar length (`[train.<stage>] length_buckets`): the same items per epoch, far less padding."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from test_stages import assert_generator_resumes_exactly, tiny_config

from kmm_core.common.errors import ConfigError
from kmm_core.training.batches import ShuffledBatches
from kmm_core.training.stages import StageError, train_tokenizer


def _valid_share(batches: ShuffledBatches, lengths: np.ndarray, epoch: int) -> float:
    order = batches.epoch_order(epoch)[: batches.batches_per_epoch * batches.batch_size]
    rows = lengths[order].reshape(batches.batches_per_epoch, batches.batch_size)
    return float(rows.sum() / (rows.max(axis=1).sum() * batches.batch_size))


@pytest.mark.parametrize("weighted", [False, True])
def test_buckets_draw_the_same_items_with_far_less_padding(weighted):
    # Window lengths like the default data's (mean 22 tokens, a few at the 49-token cap).
    lengths = np.clip(np.random.default_rng(0).gamma(4.0, 5.5, size=1000).round(), 10, 49).astype(np.int64)
    weights = np.where(np.arange(1000) < 50, 10.0, 1.0) if weighted else None
    plain = ShuffledBatches(list(range(1000)), 32, seed=5, collate_fn=list, weights=weights)
    bucketed = ShuffledBatches(list(range(1000)), 32, seed=5, collate_fn=list, weights=weights, lengths=lengths,
                               length_buckets=8)
    used = plain.batches_per_epoch * 32
    for epoch in (0, 1):
        # Exactly the items the plain stream draws in that epoch, each as often.
        assert Counter(bucketed.epoch_order(epoch)[:used].tolist()) == Counter(plain.epoch_order(epoch)[:used].tolist())
        assert np.array_equal(bucketed.epoch_order(epoch), bucketed.epoch_order(epoch))  # (seed, epoch) alone
    assert _valid_share(plain, lengths, 0) < 0.6
    assert _valid_share(bucketed, lengths, 0) > 0.85
    # The batches are shuffled: neither the first nor the last batches of an epoch are all the short ones.
    first_batches = lengths[bucketed.epoch_order(0)[:used]].reshape(-1, 32).max(axis=1)
    assert not np.all(np.diff(first_batches) >= 0)
    # The stream hands out these batches, in this order.
    assert next(iter(bucketed)) == bucketed.epoch_order(0)[:32].tolist()


def test_resuming_with_other_buckets_is_refused_and_old_checkpoints_mean_none():
    lengths = np.arange(200) % 40 + 10
    bucketed = ShuffledBatches(list(range(200)), 16, seed=1, collate_fn=list, lengths=lengths, length_buckets=4)
    plain = ShuffledBatches(list(range(200)), 16, seed=1, collate_fn=list)
    with pytest.raises(ValueError, match="length_buckets=4"):
        plain.load_state_dict(bucketed.state_dict())
    old_state = {key: value for key, value in plain.state_dict().items() if key != "length_buckets"}
    plain.load_state_dict(old_state)  # written before buckets existed: it had none
    with pytest.raises(ValueError, match="length_buckets=0"):
        bucketed.load_state_dict(old_state)
    with pytest.raises(ValueError, match="needs the length of each of the 200 items"):
        ShuffledBatches(list(range(200)), 16, length_buckets=4)


def test_a_bucketed_generator_stage_trains_and_resumes_exactly(tmp_path, prepared_dataset, tiny_run):
    config = tiny_config(prepared_dataset, "train.generator.steps=6", "train.generator.checkpoint_every=3",
                         "train.generator.eval_every=0", "train.generator.keep_checkpoints=5",
                         "train.generator.batch_size=4", "train.generator.length_buckets=2")
    assert_generator_resumes_exactly(tmp_path, config, tiny_run)


def test_buckets_on_a_stage_whose_items_have_no_length_name_the_stage(tmp_path, prepared_dataset):
    config = tiny_config(prepared_dataset, "train.tokenizer.steps=2", "train.tokenizer.length_buckets=4")
    with pytest.raises(StageError, match=r"\[train.tokenizer\] length_buckets = 4"):
        train_tokenizer(config, tmp_path / "run", device="cpu", progress=False)
    with pytest.raises(ConfigError, match="length_buckets"):
        tiny_config(prepared_dataset, "train.generator.length_buckets=-1")
