# SPDX-License-Identifier: GPL-3.0-or-later
"""Contrastive batches that hold a sided clip beside its mirror (`[train.aligner] mirror_pairs`), on the real prepared
takes of the tiny dataset: which clips are sided, how an epoch's draws are paired, and the aligner stage with it."""

from __future__ import annotations

import numpy as np
import pytest
from test_stages import tiny_config

from kmm_core.common.errors import ConfigError, InputFileError
from kmm_core.data.motion_dataset import MotionClips
from kmm_core.data.prepare import read_index
from kmm_core.training.batches import ShuffledBatches
from kmm_core.training.mirror_pairs import mirror_partners, paired_order


@pytest.fixture(scope="module")
def train_clips(prepared_dataset):
    return MotionClips(prepared_dataset, "train", max_frames=64, random_crop=False)


def caption_texts(clips: MotionClips) -> list[list[str]]:
    return [[caption.text for caption in captions] for captions in clips.captions]


def test_a_sided_clip_is_partnered_with_its_mirror_and_a_sideless_one_with_none(prepared_dataset, train_clips):
    captions = caption_texts(train_clips)
    partners = mirror_partners(prepared_dataset, train_clips.names, captions)
    rows = {row["name"]: row for row in read_index(prepared_dataset)}
    sided = np.flatnonzero(partners >= 0)
    assert 0 < len(sided) < len(partners)  # the real takes hold raised left hands and plain walks alike
    for index in sided:
        partner = partners[index]
        assert partners[partner] == index  # mutual
        mine, theirs = rows[train_clips.names[index]], rows[train_clips.names[partner]]
        assert (mine["take"], mine["window"]) == (theirs["take"], theirs["window"])
        assert {mine["mirrored"], theirs["mirrored"]} == {"0", "1"}
        assert set(captions[index]) != set(captions[partner])
        words = " ".join(captions[index]).split(), " ".join(captions[partner]).split()
        assert ("left" in words[0]) == ("right" in words[1]) and ("right" in words[0]) == ("left" in words[1])
    # A clip whose mirror says the same (a walk forward, a bow) is not paired: its caption would have two answers.
    for index in np.flatnonzero(partners < 0):
        name = train_clips.names[index]
        twin = [other for other, row in rows.items() if row["take"] == rows[name]["take"]
                and row["window"] == rows[name]["window"] and other != name]
        if twin and twin[0] in train_clips.names:
            assert set(captions[index]) == set(captions[train_clips.names.index(twin[0])])


def test_a_folder_without_index_names_what_is_missing(tmp_path):
    with pytest.raises(InputFileError, match="index.csv.*mirror_pairs"):
        mirror_partners(tmp_path, ["a"], [["a person walks"]])


def test_an_epoch_is_paired_in_place_as_long_as_drawn():
    partners = np.array([3, -1, -1, 0, 5, 4, -1, -1])
    order = np.array([1, 0, 6, 4, 2, 7, 3, 5])
    paired = paired_order(order, partners)
    assert len(paired) == len(order)
    assert paired.tolist() == [0, 3, 1, 6, 4, 5, 2, 7]  # each sided draw followed by its mirror, the rest two by two
    for position in range(0, len(paired), 2):
        first, second = paired[position], paired[position + 1]
        assert partners[first] in (second, -1) and (partners[first] == -1) == (partners[second] == -1)


def test_paired_batches_never_split_a_pair_across_processes_and_refuse_to_resume_unpaired(prepared_dataset,
                                                                                          train_clips):
    partners = mirror_partners(prepared_dataset, train_clips.names, caption_texts(train_clips))
    sizes = len(train_clips)
    ranks = [ShuffledBatches(list(range(sizes)), 4, seed=1, rank=rank, world_size=2, collate_fn=list,
                             partners=partners) for rank in (0, 1)]
    for batch in range(ranks[0].batches_per_epoch):
        for stream in ranks:
            indices = stream.batch_indices(0, batch)
            for first, second in zip(indices[::2], indices[1::2], strict=True):
                assert partners[first] in (second, -1)
    order = ranks[0].epoch_order(0)
    assert np.array_equal(order, ranks[0].epoch_order(0)) and not np.array_equal(order, ranks[0].epoch_order(1))
    drawn_sided = np.flatnonzero(partners[order] >= 0)
    assert len(drawn_sided) > 0 and all(partners[order[i]] == order[i + 1] for i in drawn_sided if i % 2 == 0)
    plain = ShuffledBatches(list(range(sizes)), 8, seed=1, collate_fn=list)  # the same global batch, unpaired
    with pytest.raises(ValueError, match="paired"):
        plain.load_state_dict(ranks[0].state_dict())
    with pytest.raises(ValueError, match="even batch_size"):
        ShuffledBatches(list(range(sizes)), 5, partners=partners, collate_fn=list)


def test_mirror_pairs_need_an_even_batch_and_a_contrastive_stage(tmp_path, prepared_dataset, tiny_run):
    from kmm_core.training.stages import StageError, train_generator

    with pytest.raises(ConfigError, match="mirror_pairs.*even batch_size"):
        tiny_config(prepared_dataset, "train.aligner.mirror_pairs=true", "train.aligner.batch_size=7")
    run = tmp_path / "run"
    run.mkdir()
    for component in ("tokenizer", "aligner"):
        for suffix in (".safetensors", ".json"):
            (run / f"{component}{suffix}").write_bytes((tiny_run / f"{component}{suffix}").read_bytes())
    config = tiny_config(prepared_dataset, "train.generator.mirror_pairs=true", "train.generator.steps=2")
    with pytest.raises(StageError, match=r"\[train.generator\] mirror_pairs.*aligner, evaluator"):
        train_generator(config, run, device="cpu", progress=False)
    assert not (run / "generator.safetensors").exists()


def test_an_aligner_trains_on_mirror_pairs_and_says_how_many_clips_are_sided(tmp_path, prepared_dataset, capsys):
    from kmm_core.training.stages import train_aligner

    config = tiny_config(prepared_dataset, "train.aligner.mirror_pairs=true", "train.aligner.steps=3",
                         "train.aligner.eval_every=0", "train.aligner.checkpoint_every=0")
    result = train_aligner(config, tmp_path / "run", device="cpu", progress=False)
    assert result.weights is not None and result.weights.is_file()
    assert "aligner: mirror pairs: " in capsys.readouterr().out
