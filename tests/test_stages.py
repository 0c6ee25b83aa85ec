# SPDX-License-Identifier: GPL-3.0-or-later
"""The KMM training stages on the tiny real dataset: losses fall, weights reload exactly, resume is exact,
bad configs and data stop with clear messages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from kmm_core.bundle.model_bundle import ModelBundle
from kmm_core.common.errors import ConfigError, InputFileError
from kmm_core.data.motion_dataset import EmptySplitError, MotionClips, TokenClips, collate_motion, collate_tokens
from kmm_core.humanml3d.dataset_folder import HumanML3DFolder
from kmm_core.training.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from kmm_core.training.run_log import read_log
from kmm_core.training.stages import (
    STAGE_ORDER,
    ContrastiveTraining,
    GeneratorTraining,
    StageError,
    TokenizerTraining,
    load_project_config,
    load_stage_model,
    train_aligner,
    train_generator,
    train_tokenizer,
)
from kmm_core.training.trainer import TrainingError

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_TRAINING_CONFIG = REPO_ROOT / "training" / "configs" / "tiny.toml"

CPU = torch.device("cpu")


def tiny_config(dataset: Path, *overrides: str):
    return load_project_config(TINY_TRAINING_CONFIG, [f"data.root={dataset}", *overrides])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def motion_batch(prepared_dataset):
    clips = MotionClips(prepared_dataset, "train", max_frames=64, random_crop=False)
    return collate_motion([clips[i] for i in range(4)])


# -- losses fall ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_each_stage_loss_falls(tiny_run, stage):
    losses = [record["loss"] for record in read_log(tiny_run / stage / "log.jsonl") if record.get("kind") == "train"]
    assert len(losses) >= 3, losses
    assert losses[-1] < losses[0] * 0.97, f"{stage}: loss did not fall: {losses}"


@pytest.mark.parametrize(("stage", "metric"), [("tokenizer", "mpjpe_mm"), ("aligner", "top1"),
                                               ("evaluator", "top1"), ("generator", "accuracy"),
                                               ("decoder", "jerk_ratio")])
def test_each_stage_validates_on_the_val_split(tiny_run, prepared_dataset, stage, metric):
    if not (prepared_dataset / "val.txt").read_text().split():
        pytest.skip("the prepared test dataset has an empty val split")
    records = [r for r in read_log(tiny_run / stage / "log.jsonl") if r.get("kind") == "validation"]
    assert records, f"{stage}: no validation record"
    values = [r["metrics"][metric] for r in records]
    assert all(value == value and value >= 0 for value in values), values  # finite, not NaN


# -- exported weights = checkpoint = bundle ---------------------------------------------------------------------------


def test_tokenizer_weights_reload_to_identical_outputs(tiny_run, motion_batch):
    exported = load_stage_model(tiny_run, "tokenizer", CPU)
    config = load_project_config(TINY_TRAINING_CONFIG)
    from_checkpoint = TokenizerTraining(config.tokenizer)
    load_checkpoint(latest_checkpoint(tiny_run / "tokenizer" / "checkpoints"), from_checkpoint, restore_rng=False)
    from_checkpoint.eval()
    with torch.no_grad():
        a = exported(motion_batch.features, motion_batch.valid)
        b = from_checkpoint.tokenizer(motion_batch.features, motion_batch.valid)
    assert torch.equal(a.codes, b.codes)
    assert torch.equal(a.reconstruction, b.reconstruction)
    # The bundle ships the tokenizer with the decoder stage's refined decoder (same encoder and codebooks).
    refined = load_stage_model(tiny_run, "decoder", CPU)
    bundle = ModelBundle.load(tiny_run / "bundle", device="cpu")  # float16 on disk, float32 in memory
    with torch.no_grad():
        a = refined(motion_batch.features, motion_batch.valid)
        c = bundle.tokenizer(motion_batch.features, motion_batch.valid)
    assert (c.reconstruction - a.reconstruction).abs().mean() < 0.01  # a rare code flip moves a few frames more
    assert (c.codes == a.codes).float().mean() > 0.8


def test_aligner_and_generator_weights_reload_to_identical_outputs(tiny_run, motion_batch):
    config = load_project_config(TINY_TRAINING_CONFIG)
    aligner = load_stage_model(tiny_run, "aligner", CPU)
    from kmm_core.model.text_encoder import MiniLMTextEncoder

    encoder = MiniLMTextEncoder()
    trained = ContrastiveTraining(config.aligner, encoder)
    load_checkpoint(latest_checkpoint(tiny_run / "aligner" / "checkpoints"), trained, restore_rng=False)
    trained.eval()
    minilm = encoder.encode(motion_batch.captions)
    with torch.no_grad():
        assert torch.equal(aligner(minilm, motion_batch.features, motion_batch.valid).logits,
                           trained.aligner(minilm, motion_batch.features, motion_batch.valid).logits)

    generator = load_stage_model(tiny_run, "generator", CPU)
    tokenizer = load_stage_model(tiny_run, "tokenizer", CPU)
    trained_gen = GeneratorTraining(config.generator, tokenizer)
    load_checkpoint(latest_checkpoint(tiny_run / "generator" / "checkpoints"), trained_gen, restore_rng=False)
    trained_gen.eval()
    codes = tokenizer.encode(motion_batch.features, motion_batch.valid)
    valid = codes[..., 0] >= 0
    sentence = aligner.text_head(minilm).sentence
    with torch.no_grad():
        assert torch.equal(generator(codes[..., 0], valid, sentence), trained_gen.generator(codes[..., 0], valid, sentence))


# -- exact resume -----------------------------------------------------------------------------------------------------


def _interrupt_after(run: Path, stage: str, keep_step: int) -> None:
    """Make ``run`` look like it was stopped right after checkpoint ``keep_step``: later checkpoints and the export
    are gone."""
    for folder in list_checkpoints(run / stage / "checkpoints"):
        if int(folder.name.removeprefix("step_")) > keep_step:
            shutil.rmtree(folder)
    (run / f"{stage}.safetensors").unlink()


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def assert_generator_resumes_exactly(folder: Path, config, tiny_run: Path) -> Path:
    """Train the generator stage of ``config`` (checkpoints every 3 steps, 6 steps) on ``tiny_run``'s tokenizer and
    aligner in ``folder``/run, stop it after step 3, resume, and require the same weights; returns the run folder."""
    run = folder / "run"
    run.mkdir()
    for name in ("tokenizer", "aligner"):
        for suffix in (".safetensors", ".json"):
            shutil.copyfile(tiny_run / f"{name}{suffix}", run / f"{name}{suffix}")
    train_generator(config, run, device="cpu", progress=False)
    uninterrupted = _weights(run / "generator.safetensors")
    _interrupt_after(run, "generator", 3)
    train_generator(config, run, resume=True, device="cpu", progress=False)
    again = _weights(run / "generator.safetensors")
    for name in uninterrupted:
        assert torch.equal(uninterrupted[name], again[name]), name
    return run


def test_tokenizer_resume_reproduces_the_uninterrupted_run(tmp_path, prepared_dataset):
    config = tiny_config(prepared_dataset, "train.tokenizer.steps=8", "train.tokenizer.checkpoint_every=4",
                         "train.tokenizer.eval_every=0", "train.tokenizer.keep_checkpoints=5")
    run = tmp_path / "run"
    first = train_tokenizer(config, run, device="cpu", progress=False)
    assert first.train.step == 8
    uninterrupted = _weights(run / "tokenizer.safetensors")
    _interrupt_after(run, "tokenizer", 4)
    with pytest.raises(TrainingError, match="already holds checkpoints"):
        train_tokenizer(config, run, device="cpu", progress=False)
    resumed = train_tokenizer(config, run, resume=True, device="cpu", progress=False)
    assert resumed.train.step == 8
    again = _weights(run / "tokenizer.safetensors")
    assert uninterrupted.keys() == again.keys()
    for name in uninterrupted:
        assert torch.equal(uninterrupted[name], again[name]), name
    assert any("resumed from" in r.get("message", "") for r in read_log(run / "tokenizer" / "log.jsonl"))


def test_generator_resume_reproduces_the_uninterrupted_run(tmp_path, prepared_dataset, tiny_run):
    config = tiny_config(prepared_dataset, "train.generator.steps=6", "train.generator.checkpoint_every=3",
                         "train.generator.eval_every=0", "train.generator.keep_checkpoints=5")
    run = assert_generator_resumes_exactly(tmp_path, config, tiny_run)
    assert (run / "cache" / "generator_train.safetensors").is_file()  # codes are encoded once and cached


# -- datasets ---------------------------------------------------------------------------------------------------------


def test_motion_clips_windows_are_multiples_of_4_and_repeat_with_a_seed(prepared_dataset):
    def draw(seed: int):
        clips = MotionClips(prepared_dataset, "train", generator=torch.Generator().manual_seed(seed))
        return [clips[i] for i in range(len(clips))]

    items = draw(3)
    lengths = [item["features"].shape[0] for item in items]
    assert all(length % 4 == 0 and 40 <= length <= 196 for length in lengths)
    again = draw(3)
    assert all(torch.equal(a["features"], b["features"]) and a["caption"] == b["caption"] for a, b in zip(items, again, strict=False))
    other = draw(4)
    assert any(not torch.equal(a["features"], b["features"]) or a["caption"] != b["caption"]
               for a, b in zip(items, other, strict=False))
    batch = collate_motion(items[:5])
    assert batch.features.shape[0] == 5 and batch.valid.sum(1).tolist() == lengths[:5]
    assert torch.all(batch.features[~batch.valid] == 0)
    # features are normalised with the folder's statistics: roughly zero mean, unit scale
    stacked = torch.cat([item["features"] for item in items])
    assert stacked.mean().abs() < 0.5 and 0.3 < stacked.std() < 3


def test_token_clips_crop_and_pad(tiny_run):
    from safetensors.torch import load_file

    cache = load_file(str(tiny_run / "cache" / "generator_train.safetensors"))
    offsets = cache["code_offsets"].tolist()
    codes = [cache["codes"][a:b].transpose(0, 1) for a, b in zip(offsets[:-1], offsets[1:], strict=False)]  # (P, L, Q)
    conditions = [cache["conditions"][:1] for _ in codes]
    clips = TokenClips(codes, conditions, min_tokens=10, max_tokens=12)
    batch = collate_tokens([clips[i] for i in range(4)])
    assert batch.codes.shape[1] <= 12 and batch.codes.shape[2] == 2
    assert torch.all(batch.codes[batch.token_valid] >= 0) and torch.all(batch.codes[~batch.token_valid] == -1)


# -- clear errors -----------------------------------------------------------------------------------------------------


def test_bad_config_key_names_the_key(prepared_dataset, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY_TRAINING_CONFIG.read_text().replace("width = 32", "widht = 32"))
    with pytest.raises(ConfigError, match=r"bad.toml.*\[tokenizer\].*widht.*width"):
        load_project_config(bad)
    with pytest.raises(ConfigError, match="train.tokenizer.stpes"):
        tiny_config(prepared_dataset, "train.tokenizer.stpes=3")
    with pytest.raises(ConfigError, match=r"\[evaluator\].*embed_dimm"):
        tiny_config(prepared_dataset, "evaluator.embed_dimm=3")


def test_missing_dataset_folder_is_a_clear_error(tmp_path):
    config = tiny_config(tmp_path / "nowhere")
    with pytest.raises(InputFileError, match="nowhere.*training data folder not found"):
        train_tokenizer(config, tmp_path / "run", device="cpu", progress=False)


def test_empty_split_is_a_clear_error(tmp_path, prepared_dataset):
    dataset = tmp_path / "dataset"
    shutil.copytree(prepared_dataset, dataset)
    (dataset / "train.txt").write_text("\n")
    with pytest.raises(EmptySplitError, match=r"train.txt.*'train' split lists no clips"):
        train_tokenizer(tiny_config(dataset), tmp_path / "run", device="cpu", progress=False)


def test_generator_needs_a_trained_tokenizer_and_a_matching_vocabulary(tmp_path, prepared_dataset, tiny_run):
    with pytest.raises(StageError, match="tokenizer.safetensors: not found; train the tokenizer first"):
        train_generator(tiny_config(prepared_dataset), tmp_path / "empty", device="cpu", progress=False)
    run = tmp_path / "run"
    run.mkdir()
    for name in ("tokenizer", "aligner"):
        for suffix in (".safetensors", ".json"):
            shutil.copyfile(tiny_run / f"{name}{suffix}", run / f"{name}{suffix}")
    with pytest.raises(ConfigError, match="codebook_size=64.*codebook_size=32"):
        train_generator(tiny_config(prepared_dataset, "generator.codebook_size=64"), run, device="cpu", progress=False)
    with pytest.raises(ConfigError, match="cond_dim=384 must equal aligner.embed_dim"):
        train_generator(tiny_config(prepared_dataset, "generator.cond_dim=384"), run, device="cpu", progress=False)
    assert json.loads((tiny_run / "generator.json").read_text())["codebook_size"] == 32


# -- fine-tuning from given weights ([train.generator] init_weights) ---------------------------------------------------


def _run_with_components(tmp_path, tiny_run, name: str = "run") -> Path:
    run = tmp_path / name
    run.mkdir()
    for component in ("tokenizer", "aligner"):
        for suffix in (".safetensors", ".json"):
            shutil.copyfile(tiny_run / f"{component}{suffix}", run / f"{component}{suffix}")
    return run


def test_a_generator_fine_tune_starts_from_the_given_weights(tmp_path, prepared_dataset, tiny_run):
    """With init_weights the first validation is the given generator's own (a fresh one's is far worse), and the
    fine-tuned weights move away from it; without it the same run starts from scratch."""
    given = tiny_run / "generator.safetensors"
    settings = ("train.generator.steps=2", "train.generator.eval_every=1", "train.generator.checkpoint_every=0")
    tuned = _run_with_components(tmp_path, tiny_run, "tuned")
    train_generator(tiny_config(prepared_dataset, *settings, f"train.generator.init_weights={given}"), tuned,
                    device="cpu", progress=False)
    fresh = _run_with_components(tmp_path, tiny_run, "fresh")
    train_generator(tiny_config(prepared_dataset, *settings), fresh, device="cpu", progress=False)

    def first_accuracy(run: Path) -> float:
        return next(r["metrics"]["accuracy"] for r in read_log(run / "generator" / "log.jsonl")
                    if r.get("kind") == "validation")

    trained_accuracy = [r["metrics"]["accuracy"] for r in read_log(tiny_run / "generator" / "log.jsonl")
                        if r.get("kind") == "validation"][-1]
    assert first_accuracy(tuned) > first_accuracy(fresh) + 0.05
    assert abs(first_accuracy(tuned) - trained_accuracy) < 0.1
    start, after = _weights(given), _weights(tuned / "generator.safetensors")
    assert any(not torch.equal(start[name], after[name]) for name in start)


def _caption_drift(given: Path, tuned: Path, captions: list[str]) -> float:
    """Mean 1 - cosine between two aligners' sentence embeddings of ``captions``."""
    from kmm_core.model.text_encoder import MiniLMTextEncoder

    encoder = MiniLMTextEncoder()
    embeddings = []
    for run in (given, tuned):
        aligner = load_stage_model(run, "aligner", CPU)
        aligner.attach_text_encoder(encoder)
        with torch.no_grad():
            embeddings.append(aligner.encode_text(captions).sentence)
    return float((1.0 - (embeddings[0] * embeddings[1]).sum(-1)).mean())


def test_an_anchored_aligner_fine_tune_keeps_the_captions_where_they_were(tmp_path, prepared_dataset, tiny_run,
                                                                        motion_batch):
    """``anchor_weight`` holds the fine-tuned text head's sentence embeddings near the given one's: the same
    aggressive fine-tune moves the data's captions several times less with it, still learns (the weights move),
    and logs the drift it holds down."""
    given = tiny_run / "aligner.safetensors"
    settings = ("train.aligner.steps=6", "train.aligner.lr=3e-3", "train.aligner.warmup=0", "train.aligner.log_every=1",
                "train.aligner.eval_every=0", "train.aligner.checkpoint_every=0", f"train.aligner.init_weights={given}")
    free, anchored = tmp_path / "free", tmp_path / "anchored"
    train_aligner(tiny_config(prepared_dataset, *settings), free, device="cpu", progress=False)
    train_aligner(tiny_config(prepared_dataset, *settings, "train.aligner.anchor_weight=50"), anchored, device="cpu",
                  progress=False)
    captions = list(dict.fromkeys(motion_batch.captions))
    free_drift, anchored_drift = (_caption_drift(tiny_run, run, captions) for run in (free, anchored))
    assert free_drift > 0.01, free_drift
    assert anchored_drift < free_drift / 3, (anchored_drift, free_drift)
    start, after = _weights(given), _weights(anchored / "aligner.safetensors")
    assert any(not torch.equal(start[name], after[name]) for name in start)
    trained = [r["metrics"] for r in read_log(anchored / "aligner" / "log.jsonl") if r.get("kind") == "train"]
    logged = [metrics["anchor_drift"] for metrics in trained]
    assert logged and all(0.0 <= value < 2.0 for value in logged)
    free_log = read_log(free / "aligner" / "log.jsonl")
    assert not any("anchor_drift" in r["metrics"] for r in free_log if r.get("kind") == "train")


def test_unanchored_phrases_free_only_the_captions_that_name_them(tmp_path, prepared_dataset, tiny_run):
    """``unanchored_phrases`` leave the captions naming them out of the anchor term: in the same anchored
    fine-tune, the walks' captions move further than with every caption anchored (about a third further here: at
    this rate Adam's steps, not the anchor's weight, bound how still anything is held) and further than the captions
    still held, which stay where the fully anchored run keeps them."""
    given = tiny_run / "aligner.safetensors"
    settings = ("train.aligner.steps=6", "train.aligner.lr=3e-3", "train.aligner.warmup=0", "train.aligner.log_every=1",
                "train.aligner.eval_every=0", "train.aligner.checkpoint_every=0", f"train.aligner.init_weights={given}",
                "train.aligner.anchor_weight=500")
    held_run, freed_run = tmp_path / "held", tmp_path / "freed"
    train_aligner(tiny_config(prepared_dataset, *settings), held_run, device="cpu", progress=False)
    train_aligner(tiny_config(prepared_dataset, *settings, 'train.aligner.unanchored_phrases=["WALK"]'), freed_run,
                  device="cpu", progress=False)
    folder = HumanML3DFolder(prepared_dataset)
    captions = sorted({caption.text for name in folder.clip_names() if folder.has_captions(name)
                       for caption in folder.load_captions(name)})
    walks = [caption for caption in captions if "walk" in caption.lower()]
    others = [caption for caption in captions if "walk" not in caption.lower()]
    assert len(walks) >= 10 and len(others) >= 10, captions
    walks_held, walks_freed = (_caption_drift(tiny_run, run, walks) for run in (held_run, freed_run))
    others_held, others_freed = (_caption_drift(tiny_run, run, others) for run in (held_run, freed_run))
    assert walks_freed > 1.2 * walks_held, (walks_freed, walks_held)          # measured 0.106 vs 0.080
    assert walks_freed > 1.5 * others_freed, (walks_freed, others_freed)      # measured 0.106 vs 0.058
    assert others_freed < 1.1 * others_held, (others_freed, others_held)      # measured 0.058 vs 0.058


def _prediction_shift(given: Path, tuned: Path, motion_batch) -> float:
    """Mean KL(given || tuned) of two generators' base-layer predictions on the same masked real clips (every
    second token masked; the tuned run's tokenizer and aligner are the given one's)."""
    from kmm_core.model.masked_generator import distillation_kl
    from kmm_core.model.text_encoder import MiniLMTextEncoder

    tokenizer, aligner = load_stage_model(given, "tokenizer", CPU), load_stage_model(given, "aligner", CPU)
    generators = [load_stage_model(run, "generator", CPU) for run in (given, tuned)]
    with torch.no_grad():
        codes = tokenizer.encode(motion_batch.features, motion_batch.valid)[..., 0]
        valid = codes >= 0
        masked = valid & (torch.arange(codes.shape[1]) % 2 == 0)
        inputs = codes.clamp(min=0).masked_fill(masked, generators[0].mask_id)
        sentence = aligner.text_head(MiniLMTextEncoder().encode(motion_batch.captions)).sentence
        logits = [generator(inputs, valid, sentence)[masked] for generator in generators]
    return float(distillation_kl(logits[1], logits[0]))


def test_a_distilled_generator_fine_tune_keeps_its_predictions(tmp_path, prepared_dataset, tiny_run, motion_batch):
    """``distill_weight`` holds a fine-tuned generator's predictions near the given one's: the same aggressive
    fine-tune shifts them several times less with it, still learns (the weights move), and logs the KL it holds
    down; without it nothing is logged."""
    given = tiny_run / "generator.safetensors"
    settings = ("train.generator.steps=6", "train.generator.lr=3e-3", "train.generator.warmup=0",
                "train.generator.log_every=1", "train.generator.eval_every=0", "train.generator.checkpoint_every=0",
                f"train.generator.init_weights={given}")
    free, distilled = _run_with_components(tmp_path, tiny_run, "free"), _run_with_components(tmp_path, tiny_run, "held")
    train_generator(tiny_config(prepared_dataset, *settings), free, device="cpu", progress=False)
    train_generator(tiny_config(prepared_dataset, *settings, "train.generator.distill_weight=20"), distilled,
                    device="cpu", progress=False)
    free_shift, held_shift = (_prediction_shift(tiny_run, run, motion_batch) for run in (free, distilled))
    assert free_shift > 0.015, free_shift                                 # measured 0.030
    assert held_shift < free_shift / 3, (held_shift, free_shift)         # measured 0.0037
    start, after = _weights(given), _weights(distilled / "generator.safetensors")
    assert any(not torch.equal(start[name], after[name]) for name in start)
    logged = [r["metrics"]["distill"] for r in read_log(distilled / "generator" / "log.jsonl") if r.get("kind") == "train"]
    assert len(logged) == 6 and all(value >= 0.0 for value in logged), logged
    assert not any("distill" in r["metrics"] for r in read_log(free / "generator" / "log.jsonl")
                   if r.get("kind") == "train")


def test_anchor_weight_needs_a_fine_tuned_aligner_or_evaluator(tmp_path, prepared_dataset, tiny_run):
    with pytest.raises(StageError, match=r"\[train.aligner\] anchor_weight = 1.0: .*with init_weights set"):
        train_aligner(tiny_config(prepared_dataset, "train.aligner.anchor_weight=1"), tmp_path / "aligner",
                      device="cpu", progress=False)
    run = _run_with_components(tmp_path, tiny_run)
    with pytest.raises(StageError, match=r"\[train.generator\] anchor_weight = 1.0: .*aligner and evaluator"):
        train_generator(tiny_config(prepared_dataset, "train.generator.anchor_weight=1",
                                    f"train.generator.init_weights={tiny_run / 'generator.safetensors'}"),
                        run, device="cpu", progress=False)
    with pytest.raises(ConfigError, match="anchor_weight"):
        tiny_config(prepared_dataset, "train.aligner.anchor_weight=-1")
    given = f"train.aligner.init_weights={tiny_run / 'aligner.safetensors'}"
    with pytest.raises(StageError, match=r"\[train.aligner\] unanchored_phrases = \['gets up'\]: .*set anchor_weight"):
        train_aligner(tiny_config(prepared_dataset, given, 'train.aligner.unanchored_phrases=["gets up"]'),
                      tmp_path / "unanchored", device="cpu", progress=False)
    with pytest.raises(ConfigError, match="unanchored_phrases.*empty phrase"):
        tiny_config(prepared_dataset, 'train.aligner.unanchored_phrases=["gets up", " "]')


def test_a_distilled_generator_fine_tune_resumes_exactly(tmp_path, prepared_dataset, tiny_run):
    """The frozen copy is the given weights again after an interruption, not the checkpoint's."""
    assert_generator_resumes_exactly(tmp_path, tiny_config(
        prepared_dataset, "train.generator.steps=6", "train.generator.checkpoint_every=3",
        f"train.generator.init_weights={tiny_run / 'generator.safetensors'}", "train.generator.distill_weight=2"),
        tiny_run)


def test_distill_weight_needs_a_fine_tuned_generator(tmp_path, prepared_dataset, tiny_run):
    run = _run_with_components(tmp_path, tiny_run)
    with pytest.raises(StageError, match=r"\[train.generator\] distill_weight = 1.0: .*generator stage with init_weights"):
        train_generator(tiny_config(prepared_dataset, "train.generator.distill_weight=1"), run, device="cpu",
                        progress=False)
    with pytest.raises(StageError, match=r"\[train.aligner\] distill_weight = 1.0"):
        train_aligner(tiny_config(prepared_dataset, "train.aligner.distill_weight=1",
                                  f"train.aligner.init_weights={tiny_run / 'aligner.safetensors'}"),
                      tmp_path / "aligner", device="cpu", progress=False)
    with pytest.raises(ConfigError, match="distill_weight"):
        tiny_config(prepared_dataset, "train.generator.distill_weight=-1")


def test_init_weights_refuses_another_generator_and_other_stages(tmp_path, prepared_dataset, tiny_run):
    given = tiny_run / "generator.safetensors"
    run = _run_with_components(tmp_path, tiny_run)
    with pytest.raises(StageError, match=r"init_weights: .*generator\.json is another generator .*n_layers"):
        train_generator(tiny_config(prepared_dataset, "generator.n_layers=3", f"train.generator.init_weights={given}"),
                        run, device="cpu", progress=False)
    with pytest.raises(StageError, match="init_weights: .*missing.safetensors not found"):
        train_generator(tiny_config(prepared_dataset, f"train.generator.init_weights={tmp_path}/missing.safetensors"),
                        run, device="cpu", progress=False)
    with pytest.raises(StageError, match=r"\[train.tokenizer\] init_weights .*only the aligner, evaluator, generator"):
        train_tokenizer(tiny_config(prepared_dataset, f"train.tokenizer.init_weights={given}"), tmp_path / "tok",
                        device="cpu", progress=False)
