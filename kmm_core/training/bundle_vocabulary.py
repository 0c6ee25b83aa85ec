# SPDX-License-Identifier: GPL-3.0-or-later
"""Add the vocabulary files (``vocabulary.json`` + ``vocabulary.safetensors``) to a model bundle: what the model
was trained on, for ``kmm vocab``, and the caption embeddings and threshold of the out-of-vocabulary warning
(read by ``generation/prompt_vocabulary.py``).  ``kmm-train bundle``/``all`` call `add_vocabulary` after
``bundle_writer.assemble_bundle`` when the run's training data is still where ``dataset.json`` says;
``kmm-train vocabulary`` does it for any bundle.  Both files are then added to ``bundle.json``'s checksums
(``bundle_writer.record_checksums``), so every load verifies them like the weights.

Threshold, chosen on the validation split (captions of held-out takes): for each val caption, its best similarity
to the training captions of *other action families* (`action_family`: every walk is removed for a walk,
every raise for a raise), i.e. how close a real caption of an action the model would not know still comes to the
vocabulary.  The threshold is that distribution's `UNSEEN_QUANTILE` quantile: a prompt is warned about only when it
is farther from the vocabulary than 99% of such captions.  Erring on this side is deliberate: a warning on a prompt
the model does know teaches users to ignore warnings.  Measured and stored beside it: the false-alarm rate on val
captions against training captions of another wording (`caption_predicate`: a new wording of a known
action), on the held-out paraphrases of ``evaluation/paraphrases.py`` (other verbs and sentence shapes for known
actions), and the warning rate on clearly unknown prompts (`UNKNOWN_PROMPTS`).  Both text spaces are measured;
``prompt_vocabulary.CHECK_SPACE`` is the one the check uses.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..bundle.caption_checks import CAPTION_CHECKS_FILE
from ..bundle.vocabulary import (
    Vocabulary,
    measure_action_motion,
    read_vocabulary,
    vocabulary_from_dataset,
    write_vocabulary,
)
from ..common.atomic_write import atomic_path
from ..common.bounded_read import read_json
from ..common.errors import KMMError
from ..data.captions import NEUTRAL_SUBJECTS, SUBJECTS
from ..generation.prompt_vocabulary import (
    CHECK_SPACE,
    CONDITIONS_KEY,
    EMBEDDINGS_FILE,
    SPACES,
    VocabularyCheckUnavailable,
    embed_in_batches,
    embed_texts,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..bundle.model_bundle import ModelBundle

UNSEEN_QUANTILE = 0.01
_SUBJECTS = sorted(set(SUBJECTS) | set(NEUTRAL_SUBJECTS), key=len, reverse=True)
_ADJECTIVE_SUBJECT = re.compile(r"^an? [a-z-]+ person ")
# Prompts about actions absent from the project's training data (for the measured warning rate; none of these
# actions is in Bandai-Namco, CMU or the extra sources).
UNKNOWN_PROMPTS = (
    "a person juggles three balls", "a person plays the guitar", "someone swims the breaststroke",
    "a man rides a bicycle", "a woman types on a keyboard", "a person brushes their teeth",
    "someone paints a wall with a roller", "a person drives a car", "the person rows a boat",
    "a person plays the violin", "someone knits a scarf", "a man shaves his beard",
)


def action_family(action: str) -> str:
    """The verb an action label starts with: 'bandai-namco-2/walk-turn-left' -> 'walk', 'hdm05/kickLFront1Reps'
    -> 'kick', 'deepmimic/getup_facedown' -> 'getup' (actions of one family are near-synonyms for the check)."""
    content = action.rsplit("/", 1)[-1]
    match = re.match(r"[A-Za-z][a-z]*", content)
    return (match.group(0) if match else content).lower()


def caption_predicate(caption: str) -> str:
    """A caption without its subject ('a tired person walks forward' -> 'walks forward'): captions that differ
    only in the subject are one wording."""
    text = _ADJECTIVE_SUBJECT.sub("", caption)
    for subject in _SUBJECTS:
        if text.startswith(subject + " "):
            return text[len(subject) + 1:]
    return text


def _val_similarities(vocabulary: Vocabulary, val: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(known, unseen): per val caption, the best similarity to training captions of another wording, and to
    training captions of other action families (see the module docstring)."""
    similarity = val @ train.T
    train_wording = np.array([caption_predicate(c) for c in vocabulary.train_captions])
    train_family = np.array([action_family(a) for a in vocabulary.train_actions])
    known, unseen = [], []
    for row, (caption, action) in enumerate(zip(vocabulary.val_captions, vocabulary.val_actions, strict=True)):
        other_wording = train_wording != caption_predicate(caption)
        other_family = train_family != action_family(action)
        known.append(similarity[row, other_wording].max() if other_wording.any() else -1.0)
        unseen.append(similarity[row, other_family].max() if other_family.any() else 1.0)
    return np.array(known), np.array(unseen)


def calibrate(bundle: ModelBundle, vocabulary: Vocabulary) -> tuple[dict, dict[str, np.ndarray]]:
    """The ``out_of_vocabulary`` entry and the training-caption embeddings of every space measured."""
    from ..evaluation.paraphrases import paraphrase_prompts

    if not vocabulary.val_captions or len(vocabulary.val_actions) != len(vocabulary.val_captions):
        raise VocabularyCheckUnavailable("the dataset has no validation captions (with their actions) to choose "
                                         "the threshold on")
    if len(vocabulary.train_actions) != len(vocabulary.train_captions):
        raise VocabularyCheckUnavailable("the vocabulary lacks the actions of its training captions")
    paraphrases = [prompt for _, prompt in paraphrase_prompts()]
    spaces = [space for space in SPACES if space != "aligner" or bundle.aligner is not None]
    measured: dict[str, dict] = {}
    embeddings: dict[str, np.ndarray] = {}
    for space in spaces:
        train = embed_texts(bundle, vocabulary.train_captions, space)
        known, unseen = _val_similarities(vocabulary, embed_texts(bundle, vocabulary.val_captions, space), train)
        threshold = float(np.quantile(unseen, UNSEEN_QUANTILE))
        paraphrase_best = (embed_texts(bundle, paraphrases, space) @ train.T).max(axis=1)
        unknown_best = (embed_texts(bundle, UNKNOWN_PROMPTS, space) @ train.T).max(axis=1)
        embeddings[space] = train
        measured[space] = {
            "threshold": round(threshold, 4),
            "val_false_alarm_rate": round(float(np.mean(known < threshold)), 4),
            "val_unseen_action_warning_rate": round(float(np.mean(unseen < threshold)), 4),
            "paraphrase_false_alarm_rate": round(float(np.mean(paraphrase_best < threshold)), 4),
            "paraphrases_warned": [p for p, v in zip(paraphrases, paraphrase_best, strict=True) if v < threshold],
            "unknown_prompt_warning_rate": round(float(np.mean(unknown_best < threshold)), 4),
            "unknown_prompts": {p: round(float(v), 4) for p, v in zip(UNKNOWN_PROMPTS, unknown_best, strict=True)},
        }
    space = CHECK_SPACE if CHECK_SPACE in spaces else spaces[0]
    report = {
        "space": space,
        **measured[space],
        "chosen_on": (f"validation split ({len(vocabulary.val_captions)} distinct captions): the "
                      f"{UNSEEN_QUANTILE:.0%} quantile of each val caption's best similarity to training captions of "
                      "other action families (a real caption of an action the model would not know)"),
        "paraphrases": len(paraphrases),
        "train_captions": len(vocabulary.train_captions),
        "spaces": measured,
    }
    return report, embeddings


def write_prompt_vocabulary(bundle: ModelBundle, vocabulary: Vocabulary, bundle_dir: str | Path | None = None
                            ) -> dict:
    """Embed the training captions, choose space and threshold, write vocabulary.json + vocabulary.safetensors into
    the bundle folder (default: the bundle's own), removing caption checks made for other captions; returns the
    ``out_of_vocabulary`` entry."""
    import torch
    from safetensors.torch import save_file

    from .bundle_writer import record_checksums

    folder = Path(bundle_dir) if bundle_dir is not None else bundle.path
    if not vocabulary.train_captions:
        raise VocabularyCheckUnavailable("the dataset has no training captions")
    report, embeddings = calibrate(bundle, vocabulary)
    with atomic_path(folder / EMBEDDINGS_FILE) as temporary:
        save_file({"train_embeddings": torch.from_numpy(embeddings[report["space"]]).to(torch.float16),
                   CONDITIONS_KEY: torch.from_numpy(caption_conditions(bundle, vocabulary.train_captions))},
                  str(temporary), metadata={"captions": str(len(vocabulary.train_captions)), "space": report["space"]})
    write_vocabulary(folder, Vocabulary(**{**vocabulary.__dict__, "out_of_vocabulary": report}))
    (folder / CAPTION_CHECKS_FILE).unlink(missing_ok=True)  # its results follow the old captions' order
    record_checksums(folder)  # bundle.json's checksums now cover the vocabulary files too
    return report


def caption_conditions(bundle: ModelBundle, captions: list[str] | tuple[str, ...]) -> np.ndarray:
    """(N, cond_dim) float32: the generator's own condition of each caption (``vocabulary.safetensors``'
    ``train_conditions``, where ``generation/prompt_conditions.py`` finds the captions nearest a prompt's own
    condition)."""
    conditions = embed_in_batches(bundle, captions, bundle.prompt_embeddings)
    return conditions if len(conditions) else np.zeros((0, bundle.text_conditioner.cond_dim), dtype=np.float32)


def add_caption_conditions(bundle_dir: str | Path) -> int:
    """Write the generator's conditions of the training captions into an existing bundle's
    ``vocabulary.safetensors`` (a bundle made before they were stored), everything else in it untouched; returns
    the number of captions."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from ..bundle.model_bundle import ModelBundle
    from ..bundle.weight_checksums import verify_vocabulary_files
    from .bundle_writer import record_checksums

    folder = Path(bundle_dir)
    bundle = ModelBundle.load(folder, device="cpu")
    vocabulary = read_vocabulary(folder)
    path = folder / EMBEDDINGS_FILE
    if not path.is_file():
        raise VocabularyCheckUnavailable(f"{path}: no caption embeddings (`kmm-train vocabulary --dataset ... "
                                         f"--bundle {folder}` writes them with the conditions)")
    verify_vocabulary_files(folder, bundle.config)  # a damaged file is named here, not rewritten
    tensors = load_file(str(path))
    tensors[CONDITIONS_KEY] = torch.from_numpy(caption_conditions(bundle, vocabulary.train_captions))
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata=metadata)
    record_checksums(folder)
    return len(vocabulary.train_captions)


def dataset_root_of_run(run_dir: str | Path) -> Path | None:
    """The prepared dataset a run trained on (``dataset.json``'s root), if it still has its index.csv."""
    summary_path = Path(run_dir) / "dataset.json"
    if not summary_path.is_file():
        return None
    summary = read_json(summary_path, "dataset summary", allow_non_finite=True)
    root = summary.get("root") if isinstance(summary, dict) else None
    if not isinstance(root, str) or not (Path(root) / "index.csv").is_file():
        return None
    return Path(root)


def add_vocabulary(bundle_dir: str | Path, dataset_dir: str | Path, model_name: str | None = None,
                   seed: int = 0) -> dict:
    """Write the vocabulary files into `bundle_dir` from the prepared data `dataset_dir`; returns the
    ``out_of_vocabulary`` report (threshold and measured rates).  Only vocabulary files are written."""
    import torch

    from ..bundle.model_bundle import ModelBundle, read_manifest

    manifest = read_manifest(bundle_dir)
    name = model_name or manifest.get("name") or Path(bundle_dir).name
    vocabulary = vocabulary_from_dataset(dataset_dir, str(name), seed=seed)
    bundle = ModelBundle.load(bundle_dir, device="cpu")
    with torch.no_grad():
        return write_prompt_vocabulary(bundle, vocabulary, bundle_dir)


def add_action_motion(bundle_dir: str | Path, dataset_dir: str | Path) -> dict[str, dict[str, float]]:
    """Measure each action's ``motion`` (``humanml3d/motion_kind.py``) on the training clips of the prepared data
    `dataset_dir` and write it into the bundle's ``vocabulary.json``, captions and embeddings untouched (a bundle
    whose training data is gone: any prepared folder with the same actions serves); returns every action's motion
    now in the vocabulary."""
    from .bundle_writer import record_checksums

    vocabulary = measure_action_motion(dataset_dir, read_vocabulary(bundle_dir))
    write_vocabulary(bundle_dir, vocabulary)
    record_checksums(bundle_dir)
    return {name: kind.to_dict() for name, kind in vocabulary.action_motion().items()}


def add_vocabulary_after_bundle(bundle_dir: str | Path, run_dir: str | Path, model_name: str | None = None) -> str:
    """What ``kmm-train bundle``/``all`` print after writing a bundle: the vocabulary and the gait cycles
    (``gait_cycle_library.py``) added, or why not."""
    root = dataset_root_of_run(run_dir)
    if root is None:
        return ("no vocabulary file written: the run's training data (dataset.json root) is not available; run "
                "`kmm-train vocabulary --dataset <prepared data> --bundle <bundle>` to add it")
    try:
        report = add_vocabulary(bundle_dir, root, model_name)
    except KMMError as error:
        return f"no vocabulary file written: {error}"
    from .gait_cycle_library import add_gait_cycles

    try:
        cycles = add_gait_cycles(bundle_dir, root)
    except KMMError as error:
        cycles = f"no gait cycles written: {error}"
    return (f"vocabulary written from {root}: {report['train_captions']} training captions, out-of-vocabulary "
            f"threshold {report['threshold']:.3f} (paraphrase false alarms {report['paraphrase_false_alarm_rate']:.1%})"
            f"; {cycles}")
