# SPDX-License-Identifier: GPL-3.0-or-later
"""Load a ``.safetensors`` weights file into a module: the one reader shared by loading a bundle (inference),
resuming training and loading an evaluator.

Only safetensors are read (never pickle), and a file that does not fit the module fails naming the missing keys,
the unexpected keys and the shape mismatches.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..errors import InputFileError

MODEL_FILE = "model.safetensors"
"""The weights file inside a training checkpoint folder (``load_weights`` accepts the folder too)."""


class CheckpointError(InputFileError):
    """A checkpoint or weights file is missing, unreadable, or does not fit the module / optimizer."""


def load_weights(module: torch.nn.Module, path: str | Path) -> None:
    """Load a ``.safetensors`` weights file (or a checkpoint folder's) into ``module``, casting to its dtypes.

    Fails naming the missing keys, unexpected keys and shape mismatches when the file does not fit the module.
    """
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    tensors = read_tensors(path)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    mismatched = [
        f"{name} {tuple(tensors[name].shape)} vs module {tuple(expected[name].shape)}"
        for name in sorted(set(expected) & set(tensors))
        if tensors[name].shape != expected[name].shape
    ]
    problems = []
    for label, names in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
        if names:
            shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise CheckpointError(path, f"weights do not match {type(module).__name__}: " + "; ".join(problems))
    module.load_state_dict(tensors, strict=True)


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, on the CPU (CheckpointError naming the file when it cannot be read)."""
    if not path.is_file():
        raise CheckpointError(path, "file not found")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(path, f"not a readable safetensors file: {error}") from None
