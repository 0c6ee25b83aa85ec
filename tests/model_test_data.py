# SPDX-License-Identifier: GPL-3.0-or-later
"""Real model inputs shared by the tiny-model tests: the normalised HumanML3D fixture clip, crops of it, and a
tiny motion tokenizer trained a few steps on such crops (its codes are the real tokens the generator tests use)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from kmm_core.model.configs import QuantizerConfig, TokenizerConfig
from kmm_core.model.motion_tokenizer import MotionTokenizer

FIXTURE_CLIP = "012314"  # 170 frames x 263 features


def load_normalised_fixture_clip(fixture_dir: Path) -> torch.Tensor:
    """The fixture clip's features normalised with the fixture's Mean/Std, as float32 (170, 263)."""
    features = np.load(fixture_dir / "new_joint_vecs" / f"{FIXTURE_CLIP}.npy")
    mean = np.load(fixture_dir / "Mean.npy")
    std = np.load(fixture_dir / "Std.npy")
    return torch.tensor((features - mean) / std, dtype=torch.float32)


def stack_crops(clip: torch.Tensor, starts: Iterable[int], length: int) -> torch.Tensor:
    """(len(starts), length, features): a batch of equal-length crops, copied out of `clip`."""
    return torch.stack([clip[s : s + length] for s in starts])


def train_tiny_tokenizer(crops: torch.Tensor, valid: torch.Tensor | None, *, num_quantizers: int, codebook_size: int,
                         steps: int = 8) -> MotionTokenizer:
    """A width-32 tokenizer (seed 0) trained `steps` AdamW steps on `crops`, returned in eval mode: a few steps are
    enough to give codes that depend on the motion, which is all the generator tests need."""
    torch.manual_seed(0)
    tokenizer = MotionTokenizer(TokenizerConfig(width=32, res_blocks=1, quantizer=QuantizerConfig(
        num_quantizers=num_quantizers, codebook_size=codebook_size, code_dim=16)))
    optimiser = torch.optim.AdamW(tokenizer.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = tokenizer(crops, valid).losses["total"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    tokenizer.eval()
    return tokenizer
