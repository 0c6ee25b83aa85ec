# SPDX-License-Identifier: GPL-3.0-or-later
"""Key-frame masking on sequences whose key frames are known, against a brute-force formula, padding, ties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kmm_core.common.errors import ConfigError, InputTensorError
from kmm_core.model.keyframe_masker import KeyFrameMasker, RandomMasker, sample_mask_ratio

METHODS = ["gaussian", "knn"]


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def static_runs_with_transitions(noise: float, seed: int = 0):
    """Three held poses (8 tokens each) joined by 3 distinct transition tokens: 27 tokens of 16 channels."""
    generator = seeded(seed)
    poses = torch.randn(3, 16, generator=generator) * 3
    p0, p1, p2 = poses
    tokens = [p0] * 8 + [p0 * 2 / 3 + p1 / 3, p0 / 3 + p1 * 2 / 3] + [p1] * 8 + [(p1 + p2) / 2] + [p2] * 8
    x = torch.stack(tokens) + noise * torch.randn(len(tokens), 16, generator=generator)
    runs = [set(range(0, 8)), set(range(10, 18)), set(range(19, 27))]
    transitions = {8, 9, 18}
    return x, runs, transitions


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_static_runs_yield_transitions_and_one_frame_per_pose(method, noise):
    x, runs, transitions = static_runs_with_transitions(noise)
    count = len(transitions) + len(runs)
    mask = KeyFrameMasker(method)(x[None], None, count / x.shape[0])[0]
    chosen = set(mask.nonzero().flatten().tolist())
    assert len(chosen) == count
    assert transitions <= chosen  # every distinct transition token is a key frame
    assert [len(chosen & run) for run in runs] == [1, 1, 1]  # one per held pose, never its redundant copies


def test_random_masker_picks_redundant_copies_on_the_same_sequence():
    x, runs, transitions = static_runs_with_transitions(noise=0.0)
    masks = RandomMasker()(x[None].expand(20, -1, -1), None, 6 / 27, generator=seeded(1))
    per_run = [[len(set(row.nonzero().flatten().tolist()) & run) for run in runs] for row in masks]
    assert max(max(counts) for counts in per_run) >= 2  # the contrast that motivates key-frame masking


def brute_force_scores(x: np.ndarray, method: str, bandwidth: float | None, k: int = 5) -> np.ndarray:
    """d_i * S_i straight from the definitions, one token at a time (no ties in random data)."""
    n = len(x)
    dist = np.array([[np.sqrt(((x[i] - x[j]) ** 2).sum()) for j in range(n)] for i in range(n)])
    if method == "gaussian":
        if bandwidth is None:
            bandwidth = np.median(dist[dist > 0])
        density = np.array([sum(math.exp(-((dist[i, j] / bandwidth) ** 2)) for j in range(n)) for i in range(n)])
    else:
        density = np.empty(n)
        for i in range(n):
            others = sorted(dist[i, j] ** 2 / x.shape[1] for j in range(n) if j != i)[:k]
            density[i] = math.exp(-np.mean(others))
    separation = np.empty(n)
    for i in range(n):
        denser = [dist[i, j] for j in range(n) if density[j] > density[i]]
        separation[i] = min(denser) if denser else dist[i].max()
    return density * separation


@pytest.mark.parametrize(("method", "bandwidth"), [("gaussian", None), ("gaussian", 2.5), ("knn", None)])
def test_batched_padded_masks_match_brute_force_formula(method, bandwidth):
    lengths = [12, 7, 3]
    ratios = torch.tensor([0.3, 0.5, 0.9])
    x = torch.randn(3, 12, 8, generator=seeded(2))
    x[1, 7:] = 1e3  # padding content must not matter
    valid = torch.arange(12)[None] < torch.tensor(lengths)[:, None]
    mask = KeyFrameMasker(method, bandwidth=bandwidth)(x, valid, ratios)
    for row, n in enumerate(lengths):
        count = max(1, math.floor(ratios[row].item() * n + 0.5))
        scores = brute_force_scores(x[row, :n].double().numpy(), method, bandwidth)
        expected = set(np.argsort(-scores)[:count].tolist())
        assert set(mask[row].nonzero().flatten().tolist()) == expected
        assert not mask[row, n:].any()


@pytest.mark.parametrize("masker", [KeyFrameMasker("gaussian"), KeyFrameMasker("knn"), RandomMasker()])
def test_counts_round_half_up_and_padding_is_never_selected(masker):
    x = torch.randn(4, 10, 6, generator=seeded(3))
    valid = torch.arange(10)[None] < torch.tensor([[10], [5], [1], [4]])
    ratios = torch.tensor([0.25, 0.5, 0.0, 1.0])  # 2.5 -> 3, 2.5 -> 3, 0 -> at least 1, 4
    mask = masker(x, valid, ratios, generator=seeded(4))
    assert mask.sum(dim=1).tolist() == [3, 3, 1, 4]
    assert not (mask & ~valid).any()


def test_ties_are_broken_deterministically_and_by_the_generator():
    x = torch.ones(1, 12, 4)  # every token identical: every score ties
    masker = KeyFrameMasker("gaussian")
    default_a, default_b = masker(x, None, 0.25), masker(x, None, 0.25)
    assert torch.equal(default_a, default_b) and default_a.sum() == 3
    by_seed = {
        tuple(masker(x, None, 0.25, generator=seeded(seed))[0].nonzero().flatten().tolist()) for seed in range(8)
    }
    assert len(by_seed) > 1  # the generator, not the position, decides among equals
    assert all(len(chosen) == 3 for chosen in by_seed)


@pytest.mark.parametrize("masker", [KeyFrameMasker("gaussian"), KeyFrameMasker("knn"), RandomMasker()])
def test_one_token_clip_masks_its_token(masker):
    mask = masker(torch.randn(2, 1, 5, generator=seeded(5)), None, 0.0)
    assert mask.tolist() == [[True], [True]]


def test_all_padding_row_is_an_error():
    valid = torch.tensor([[True, True], [False, False]])
    with pytest.raises(InputTensorError, match=r"rows \[1\]"):
        KeyFrameMasker()(torch.randn(2, 2, 3), valid, 0.5)


def test_bad_arguments_are_errors():
    with pytest.raises(ConfigError, match="method"):
        KeyFrameMasker("median")
    with pytest.raises(InputTensorError, match="mask_ratio"):
        RandomMasker()(torch.randn(1, 4, 3), None, 1.5)
    with pytest.raises(InputTensorError, match="valid"):
        RandomMasker()(torch.randn(1, 4, 3), torch.ones(1, 3, dtype=torch.bool), 0.5)


def test_cosine_mask_ratio_schedule():
    ratios = sample_mask_ratio(20000, generator=seeded(6))
    assert ratios.shape == (20000,) and ratios.dtype == torch.float32
    assert bool(((ratios >= 0) & (ratios <= 1)).all())
    assert abs(ratios.mean().item() - 2 / math.pi) < 0.01  # E[cos(pi/2 u)] = 2/pi
    assert abs((ratios > math.cos(math.pi / 4)).float().mean().item() - 0.5) < 0.02  # median at u = 1/2
    torch.testing.assert_close(sample_mask_ratio(5, generator=seeded(7)), sample_mask_ratio(5, generator=seeded(7)))
    with pytest.raises(ConfigError, match="schedule"):
        sample_mask_ratio(3, schedule="linear")
