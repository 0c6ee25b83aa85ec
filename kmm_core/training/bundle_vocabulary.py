# SPDX-License-Identifier: GPL-3.0-or-later
"""Add the vocabulary files (``vocabulary.json`` + ``vocabulary.safetensors``) to a model bundle: what the model
was trained on, for ``kmm vocab``, and the caption embeddings and threshold of the out-of-vocabulary warning
(``generation/prompt_vocabulary.py``).  ``kmm-train bundle``/``all`` call `add_vocabulary` when the run's
training data is still where ``dataset.json`` says; ``kmm-train vocabulary`` does it for any bundle."""

from __future__ import annotations

from pathlib import Path

from ..errors import KMMError, read_json_file
from ..vocabulary import vocabulary_from_dataset


def dataset_root_of_run(run_dir: str | Path) -> Path | None:
    """The prepared dataset a run trained on (``dataset.json``'s root), if it still has its index.csv."""
    summary_path = Path(run_dir) / "dataset.json"
    if not summary_path.is_file():
        return None
    summary = read_json_file(summary_path, "dataset summary")
    root = summary.get("root") if isinstance(summary, dict) else None
    if not isinstance(root, str) or not (Path(root) / "index.csv").is_file():
        return None
    return Path(root)


def add_vocabulary(bundle_dir: str | Path, dataset_dir: str | Path, model_name: str | None = None,
                   seed: int = 0) -> dict:
    """Write the vocabulary files into `bundle_dir` from the prepared data `dataset_dir`; returns the
    ``out_of_vocabulary`` report (threshold and measured rates).  Only vocabulary files are written."""
    import torch

    from ..generation.prompt_vocabulary import write_prompt_vocabulary
    from ..model_bundle import ModelBundle, read_manifest

    manifest = read_manifest(bundle_dir)
    name = model_name or manifest.get("name") or Path(bundle_dir).name
    vocabulary = vocabulary_from_dataset(dataset_dir, str(name), seed=seed)
    bundle = ModelBundle.load(bundle_dir, device="cpu")
    with torch.no_grad():
        return write_prompt_vocabulary(bundle, vocabulary, bundle_dir)


def add_vocabulary_after_bundle(bundle_dir: str | Path, run_dir: str | Path, model_name: str | None = None) -> str:
    """What ``kmm-train bundle``/``all`` print after writing a bundle: the vocabulary added, or why not."""
    root = dataset_root_of_run(run_dir)
    if root is None:
        return ("no vocabulary file written: the run's training data (dataset.json root) is not available; run "
                "`kmm-train vocabulary --dataset <prepared data> --bundle <bundle>` to add it")
    try:
        report = add_vocabulary(bundle_dir, root, model_name)
    except KMMError as error:
        return f"no vocabulary file written: {error}"
    return (f"vocabulary written from {root}: {report['train_captions']} training captions, out-of-vocabulary "
            f"threshold {report['threshold']:.3f} (paraphrase false alarms {report['paraphrase_false_alarm_rate']:.1%})")
