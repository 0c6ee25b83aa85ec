# SPDX-License-Identifier: GPL-3.0-or-later
"""Load a ``.safetensors`` weights file into a module: the one reader shared by loading a bundle (inference),
resuming training and loading an evaluator.

Only safetensors are read (never pickle), and a file that does not fit the module fails naming the missing keys,
the unexpected keys and the shape mismatches; weights holding NaN or infinity are refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from ..common.errors import InputFileError

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
    for name, tensor in tensors.items():  # NaN/inf weights only ever come from damage or a diverged run
        if tensor.is_floating_point() and not _all_finite(tensor):
            count = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(path, f"{count} non-finite value(s) (NaN or infinity) in {name}: the file is damaged "
                                        f"or the run diverged; these weights cannot be used")
    module.load_state_dict(tensors, strict=True)


def _all_finite(tensor: torch.Tensor) -> bool:
    """True when no value is NaN or infinite.  NumPy on the tensor's own memory where it can: torch's per-tensor
    isfinite goes through its thread pool, which on a busy 2-core machine cost ~0.8 s of CPU per bundle file
    (benchmarks/results/cold_start_before_after.md); bfloat16 (no NumPy type) and non-CPU tensors stay with torch."""
    if tensor.device.type == "cpu" and tensor.dtype != torch.bfloat16:
        return bool(np.isfinite(tensor.detach().numpy()).all())
    return bool(torch.isfinite(tensor).all())


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, on the CPU (CheckpointError naming the file when it cannot be read)."""
    if not path.is_file():
        raise CheckpointError(path, "file not found")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(path, f"not a readable safetensors file: {error}") from None


def read_header(path: Path) -> dict[str, str]:
    """The metadata of a safetensors file's header (CheckpointError naming the file when it cannot be read)."""
    if not path.is_file():
        raise CheckpointError(path, "file not found")
    try:
        with safe_open(str(path), framework="pt") as weights:
            return dict(weights.metadata() or {})
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(path, f"not a readable safetensors file: {error}") from None
