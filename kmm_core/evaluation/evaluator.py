# SPDX-License-Identifier: GPL-3.0-or-later
"""The evaluator: text and motion encoders trained for evaluation only (``evaluator.safetensors``), never a
generator's own aligner.

Part of ``kmm-train eval`` (``evaluate.py``); docs/evaluation.md explains each number.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..common.bounded_read import read_json
from ..common.errors import ConfigError, InputFileError


class Evaluator:
    """Unit text and motion embeddings from the evaluation encoders; motions are given as raw 263-d features and
    normalised with the statistics the evaluator was trained with."""

    def __init__(self, model, normalizer, path: Path, device):
        self.model = model
        self.normalizer = normalizer
        self.path = path
        self.device = device

    def embed_texts(self, texts: Sequence[str], chunk: int = 256) -> np.ndarray:
        import torch

        rows = []
        with torch.no_grad():
            for start in range(0, len(texts), chunk):
                rows.append(self.model.encode_text(list(texts[start:start + chunk])).sentence.float().cpu().numpy())
        return np.concatenate(rows).astype(np.float64)

    def embed_motions(self, features: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """(N, D) embeddings; batches of similar length so that little padding enters the encoder."""
        import torch

        order = sorted(range(len(features)), key=lambda i: features[i].shape[0])
        out = np.zeros((len(features), self.model.embed_dim))
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                chunk = order[start:start + batch_size]
                longest = max(features[i].shape[0] for i in chunk)
                batch = torch.zeros(len(chunk), longest, features[chunk[0]].shape[1])
                valid = torch.zeros(len(chunk), longest, dtype=torch.bool)
                for row, index in enumerate(chunk):
                    frames = features[index].shape[0]
                    batch[row, :frames] = torch.from_numpy(self.normalizer.normalize(features[index]).astype(np.float32))
                    valid[row, :frames] = True
                embedded = self.model.encode_motion(batch.to(self.device), valid.to(self.device))
                out[chunk] = embedded.float().cpu().numpy()
        return out


def load_evaluator(folder: str | Path, device: str = "cpu") -> Evaluator:
    """The evaluator of a bundle or run folder: ``evaluator.safetensors`` + ``evaluator.json`` + Mean/Std.npy."""
    import torch

    from ..humanml3d.normalizer import Normalizer
    from ..model.configs import AlignerConfig
    from ..model.text_encoder import MiniLMTextEncoder
    from ..model.text_motion_aligner import TextMotionAligner
    from ..model.weights import load_weights

    folder = Path(folder)
    weights, config_path = folder / "evaluator.safetensors", folder / "evaluator.json"
    if not folder.is_dir():
        raise InputFileError(folder, "evaluator folder not found")
    for path in (weights, config_path):
        if not path.is_file():
            raise InputFileError(path, "not found: the evaluator is trained by `kmm-train evaluator` (or "
                                       "`kmm-train all`) and copied into bundles; pass --evaluator FOLDER")
    if (folder / "bundle.json").is_file():  # a bundle: its checksums cover what is read here
        from ..bundle.model_bundle import read_manifest
        from ..bundle.weight_checksums import STATISTICS_FILES, verify_bundle_files

        verify_bundle_files(folder, read_manifest(folder), [weights.name, config_path.name, *STATISTICS_FILES])
    try:
        config = AlignerConfig.from_dict(read_json(config_path, "evaluator config"), "evaluator")
    except ConfigError as error:
        raise InputFileError(config_path, str(error)) from None
    torch_device = torch.device(device)
    model = TextMotionAligner(config)
    load_weights(model, weights)
    model = model.float().to(torch_device).eval().requires_grad_(False)
    model.attach_text_encoder(MiniLMTextEncoder().to(torch_device))
    return Evaluator(model, Normalizer.from_folder(folder), folder, torch_device)
