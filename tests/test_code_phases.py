# SPDX-License-Identifier: GPL-3.0-or-later
"""The generator's clips tokenized at several frame offsets (`[train.generator] code_phases`)."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from test_stages import assert_generator_resumes_exactly, tiny_config

from kmm_core.common.errors import ConfigError
from kmm_core.data.motion_dataset import MotionClips, TokenClips, collate_motion
from kmm_core.training.stages import StageError, encode_split, load_stage_model, train_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def encoded(prepared_dataset, tiny_run):
    """The tiny dataset's train clips encoded by the tiny run's tokenizer from frame 0 only and at all 4 offsets."""
    clips = MotionClips(prepared_dataset, "train", max_frames=196, random_crop=False)
    tokenizer = load_stage_model(tiny_run, "tokenizer", torch.device("cpu"))

    def condition(texts: list[str]) -> torch.Tensor:
        return torch.zeros(len(texts), 3)

    one, _ = encode_split(clips, tokenizer, condition, torch.device("cpu"), phases=1)
    four, conditions = encode_split(clips, tokenizer, condition, torch.device("cpu"), phases=4)
    return clips, tokenizer, one, four, conditions


def test_each_phase_is_the_clip_tokenized_from_its_own_frame(encoded):
    clips, tokenizer, one, four, _ = encoded
    assert all(c.shape[0] == 1 for c in one) and all(c.shape[0] == 4 for c in four)
    for index in (0, len(clips) // 2, len(clips) - 1):
        frames = clips.num_frames[index]
        tokens = four[index].shape[1]
        assert tokens == -(-(frames - 3) // 4)  # every phase as long as the shortest (from frame 3)
        assert torch.equal(four[index][0], one[index][0, :tokens])  # phase 0: the plain encoding
        for phase in (1, 3):
            window = torch.from_numpy(clips.normalized_features(index)[phase:])
            batch = collate_motion([{"features": window, "caption": "", "name": ""}])
            alone = tokenizer.encode(batch.features, batch.valid)[0, :tokens]
            # The last two tokens see the batch's padding (the clip encoded among longer ones), the rest must match.
            assert torch.equal(four[index][phase, :-2], alone[:-2]), (index, phase)
    # A real motion's codes depend on where its tokens start: the offsets give other code sequences (the tiny
    # tokenizer uses few codes, so only some tokens change; the shipped one changes most, see the recipe's comment).
    differing = [float((c[0, :, 0] != c[2, :, 0]).float().mean()) for c in four]
    assert sum(differing) / len(differing) > 0.05 and max(differing) > 0.2


def test_windows_draw_every_phase_and_validation_reads_phase_0(encoded):
    _, _, one, four, conditions = encoded
    drawn = TokenClips(four, conditions, min_tokens=10, max_tokens=12, generator=torch.Generator().manual_seed(0))
    seen = Counter()
    item = drawn.codes[0]
    for _ in range(200):
        window = drawn[0]["codes"]
        matches = [p for p in range(4) for start in range(item.shape[1] - window.shape[0] + 1)
                   if torch.equal(item[p, start : start + window.shape[0]], window)]
        assert matches, "a window that is no phase's codes"
        seen.update({matches[0]})
    assert set(seen) == {0, 1, 2, 3} and min(seen.values()) > 20
    fixed = TokenClips(four, conditions, min_tokens=10, max_tokens=12, random_crop=False)
    assert all(torch.equal(fixed[i]["codes"], fixed.codes[i][0, :12]) for i in range(len(fixed)))
    # One phase draws exactly what an (L, Q) array drew before phases existed (same random stream).
    plain = TokenClips([c[0] for c in one], conditions, min_tokens=10, max_tokens=12,
                       generator=torch.Generator().manual_seed(1))
    wrapped = TokenClips(one, conditions, min_tokens=10, max_tokens=12, generator=torch.Generator().manual_seed(1))
    for index in range(len(plain)):
        assert torch.equal(plain[index]["codes"], wrapped[index]["codes"])
    assert plain.window_lengths().tolist() == wrapped.window_lengths().tolist()


def test_a_generator_stage_on_four_phases_trains_and_resumes_exactly(tmp_path, prepared_dataset, tiny_run):
    config = tiny_config(prepared_dataset, "train.generator.steps=6", "train.generator.checkpoint_every=3",
                         "train.generator.eval_every=0", "train.generator.keep_checkpoints=5",
                         "train.generator.batch_size=4", "train.generator.code_phases=4")
    run = assert_generator_resumes_exactly(tmp_path, config, tiny_run)
    from safetensors import safe_open

    with safe_open(str(run / "cache" / "generator_train.safetensors"), "pt") as handle:
        assert handle.get_slice("codes").get_shape()[1] == 4  # the cache holds the four phases
        assert handle.metadata()["key"].endswith("-phases4")
    with safe_open(str(run / "cache" / "generator_val.safetensors"), "pt") as handle:
        assert handle.get_slice("codes").get_shape()[1] == 1  # validation: the clips as they start


def test_phases_outside_a_token_or_on_another_stage_are_refused(tmp_path, prepared_dataset):
    for bad in (0, 5):
        with pytest.raises(ConfigError, match=r"code_phases.*1\.\.4"):
            tiny_config(prepared_dataset, f"train.generator.code_phases={bad}")
    config = tiny_config(prepared_dataset, "train.tokenizer.steps=2", "train.tokenizer.code_phases=2")
    with pytest.raises(StageError, match=r"\[train.tokenizer\] code_phases = 2"):
        train_tokenizer(config, tmp_path / "run", device="cpu", progress=False)
