# SPDX-License-Identifier: GPL-3.0-or-later
"""Retrieval metrics and confidence intervals against known answers."""

from __future__ import annotations

import numpy as np
import pytest

from kmm_core.common.errors import InputTensorError
from kmm_core.evaluation.confidence import (
    mean_confidence_interval,
    repeat_with_seeds,
    replication_seeds,
    summarize_runs,
)
from kmm_core.evaluation.retrieval_metrics import (
    diversity,
    euclidean_distance_matrix,
    fid,
    frechet_distance,
    gaussian_statistics,
    mm_distance,
    multimodality,
    r_precision,
    text_motion_scores,
)


def _random_covariance(rng: np.random.Generator, dim: int) -> np.ndarray:
    basis = rng.normal(size=(dim, dim))
    return basis @ basis.T / dim + 0.1 * np.eye(dim)


# ---------------------------------------------------------------------------------------------------------------
# distances, R-precision, MM-Dist
# ---------------------------------------------------------------------------------------------------------------

def test_distance_matrix_matches_direct_norms_and_is_never_nan():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 5)) * 1e3, rng.normal(size=(4, 5)) * 1e3
    direct = np.linalg.norm(a[:, None] - b[None], axis=-1)
    assert np.allclose(euclidean_distance_matrix(a, b), direct, rtol=1e-9)
    same = euclidean_distance_matrix(a, a)
    assert np.all(np.isfinite(same)) and np.allclose(np.diag(same), 0.0, atol=1e-4)


def test_r_precision_of_perfect_matches_is_one():
    rng = np.random.default_rng(1)
    motions = rng.normal(size=(96, 16))
    texts = motions + rng.normal(scale=1e-3, size=motions.shape)
    assert np.allclose(r_precision(texts, motions), [1.0, 1.0, 1.0])
    assert np.allclose(r_precision(texts, motions, seed=3), [1.0, 1.0, 1.0])


def test_r_precision_of_random_embeddings_is_chance():
    rng = np.random.default_rng(2)
    texts, motions = rng.normal(size=(32 * 400, 8)), rng.normal(size=(32 * 400, 8))
    scores = r_precision(texts, motions, seed=0)
    # Binomial standard error over 12,800 texts is < 0.003; chance is k / 32.
    assert np.allclose(scores, [1 / 32, 2 / 32, 3 / 32], atol=0.01)
    assert np.all(np.diff(scores) > 0)


def test_r_precision_counts_ranks_and_drops_the_incomplete_batch():
    # Motions in close pairs (2k, 2k+1) far from all others; even texts sit on their own motion (rank 1), odd
    # texts sit nearer their partner's motion than their own (rank 2): top-1 = 0.5, top-2 = top-3 = 1.
    rng = np.random.default_rng(3)
    motions = np.repeat(rng.normal(size=(16, 4)) * 100.0, 2, axis=0)
    motions[1::2, 0] += 0.1
    texts = motions.copy()
    texts[1::2, 0] -= 0.09
    extra = rng.normal(size=(5, 4))  # an incomplete second batch that would otherwise change the result
    scores = r_precision(np.concatenate([texts, extra]), np.concatenate([motions, -extra]))
    assert np.allclose(scores, [0.5, 1.0, 1.0])
    with pytest.raises(InputTensorError, match="full batch"):
        r_precision(texts[:10], motions[:10])
    with pytest.raises(InputTensorError, match="does not match"):
        r_precision(texts, motions[:, :3])


def test_mm_distance_is_the_offset_length():
    rng = np.random.default_rng(4)
    motions = rng.normal(size=(50, 6))
    offsets = rng.normal(size=(50, 6))
    offsets *= (2.5 / np.linalg.norm(offsets, axis=1))[:, None]
    assert mm_distance(motions + offsets, motions) == pytest.approx(2.5)


# ---------------------------------------------------------------------------------------------------------------
# FID
# ---------------------------------------------------------------------------------------------------------------

def test_fid_of_a_set_with_itself_is_zero():
    rng = np.random.default_rng(5)
    embeddings = rng.normal(size=(500, 32)) @ rng.normal(size=(32, 32))
    assert fid(embeddings, embeddings) == pytest.approx(0.0, abs=1e-7)
    few = rng.normal(size=(10, 64))  # fewer samples than dimensions: singular covariance
    assert fid(few, few) == pytest.approx(0.0, abs=1e-7)


def test_frechet_distance_matches_the_closed_form_of_shifted_and_scaled_gaussians():
    rng = np.random.default_rng(6)
    dim = 12
    cov = _random_covariance(rng, dim)
    mean = rng.normal(size=dim)
    shift = rng.normal(size=dim)
    for scale in (0.5, 1.0, 3.0):
        # N(m, C) vs N(m + s, k^2 C): sqrt(C k^2 C) = k C, so FID = |s|^2 + (1 - k)^2 tr(C).
        expected = shift @ shift + (1.0 - scale) ** 2 * np.trace(cov)
        assert frechet_distance(mean, cov, mean + shift, scale ** 2 * cov) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_of_non_commuting_covariances_matches_the_definition():
    rng = np.random.default_rng(7)
    dim = 6
    cov_a, cov_b = _random_covariance(rng, dim), _random_covariance(rng, dim)
    # Definition via the (non-symmetric) product's eigenvalues: tr sqrt(A B) = sum sqrt(eig(A B)).
    trace_cross = np.sqrt(np.linalg.eigvals(cov_a @ cov_b).real).sum()
    expected = np.trace(cov_a) + np.trace(cov_b) - 2 * trace_cross
    assert frechet_distance(np.zeros(dim), cov_a, np.zeros(dim), cov_b) == pytest.approx(expected, rel=1e-9)
    # Symmetric in its arguments.
    assert frechet_distance(np.zeros(dim), cov_b, np.zeros(dim), cov_a) == pytest.approx(expected, rel=1e-9)


def test_fid_from_samples_approaches_the_closed_form():
    rng = np.random.default_rng(8)
    dim, count = 4, 40_000
    real = rng.normal(size=(count, dim))
    generated = 2.0 * rng.normal(size=(count, dim)) + 1.5
    # N(0, I) vs N(1.5, 4 I): 4 * 1.5^2 + 4 * (1 - 2)^2 = 13.
    assert fid(real, generated) == pytest.approx(13.0, rel=0.02)
    mean, cov = gaussian_statistics(generated)
    assert np.allclose(mean, 1.5, atol=0.05) and np.allclose(cov, 4 * np.eye(dim), atol=0.15)


def test_fid_rejects_mismatched_inputs():
    with pytest.raises(InputTensorError, match="width"):
        fid(np.zeros((5, 3)) + np.arange(5)[:, None], np.ones((5, 4)) * np.arange(5)[:, None])
    with pytest.raises(InputTensorError, match="NaN"):
        fid(np.full((5, 3), np.nan), np.ones((5, 3)))
    with pytest.raises(InputTensorError, match="cov_b"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(2))


# ---------------------------------------------------------------------------------------------------------------
# Diversity, MultiModality
# ---------------------------------------------------------------------------------------------------------------

def test_diversity_of_equidistant_points_is_their_distance():
    # Scaled basis vectors: every two distinct points are exactly 3 * sqrt(2) apart.
    points = 3.0 * np.eye(400)
    assert diversity(points, seed=0) == pytest.approx(3.0 * np.sqrt(2.0))
    assert diversity(np.ones((10, 4)), seed=0) == 0.0
    assert diversity(points, seed=1) == diversity(points, seed=1)
    with pytest.raises(InputTensorError, match="at least 2"):
        diversity(points[:1])


def test_diversity_of_gaussian_samples_is_the_expected_distance():
    rng = np.random.default_rng(9)
    dim = 256
    samples = rng.normal(size=(2000, dim))
    # |x - y| for x, y ~ N(0, I_d) concentrates at sqrt(2 d).
    assert diversity(samples, seed=0) == pytest.approx(np.sqrt(2 * dim), rel=0.02)


def test_multimodality_is_the_mean_within_text_distance():
    scales = np.array([1.0, 2.0, 4.0])
    generations = scales[:, None, None] * np.eye(30)[None]  # text i: 30 generations pairwise scales[i]*sqrt(2) apart
    assert multimodality(generations, seed=0) == pytest.approx(scales.mean() * np.sqrt(2.0))
    with pytest.raises(InputTensorError, match="3-d"):
        multimodality(generations[0])


def test_text_motion_scores_bundle():
    rng = np.random.default_rng(10)
    motions = rng.normal(size=(320, 8))
    scores = text_motion_scores(motions, motions, motions, seed=0)
    assert scores.r_precision == (1.0, 1.0, 1.0)
    assert scores.mm_distance == 0.0 and scores.fid == pytest.approx(0.0, abs=1e-7)
    assert set(scores.as_dict()) == {"r_precision_top1", "r_precision_top2", "r_precision_top3", "mm_distance",
                                     "fid", "diversity"}


# ---------------------------------------------------------------------------------------------------------------
# confidence intervals
# ---------------------------------------------------------------------------------------------------------------

def test_confidence_interval_of_a_constant_is_zero():
    interval = mean_confidence_interval([0.42] * 20)
    assert interval.mean == pytest.approx(0.42) and interval.half_width == pytest.approx(0.0, abs=1e-15)
    single = mean_confidence_interval([3.0])
    assert single.mean == 3.0 and np.isnan(single.half_width)
    with pytest.raises(InputTensorError, match="no measurements"):
        mean_confidence_interval([])


def test_confidence_interval_uses_student_t():
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    # t_{0.975, 4} = 2.776 (statistical tables); s = sqrt(2.5).
    interval = mean_confidence_interval(values)
    assert interval.mean == 3.0
    assert interval.half_width == pytest.approx(2.776 * np.sqrt(2.5) / np.sqrt(5), rel=1e-3)
    assert (interval.low, interval.high) == pytest.approx((3.0 - interval.half_width, 3.0 + interval.half_width))
    assert str(interval) == f"3.000 ± {interval.half_width:.3f}"


def test_confidence_interval_covers_the_true_mean_95_percent_of_the_time():
    rng = np.random.default_rng(11)
    trials = 4000
    hits = 0
    for _ in range(trials):
        interval = mean_confidence_interval(rng.normal(1.0, 2.0, size=5))
        hits += interval.low <= 1.0 <= interval.high
    # With n = 5 a normal-quantile interval would cover only ~88%; Student's t gives 95% (se ~0.35%).
    assert hits / trials == pytest.approx(0.95, abs=0.015)


def test_repeated_runs_with_fixed_seeds_are_reproducible():
    rng = np.random.default_rng(12)
    motions = rng.normal(size=(64, 8))
    texts = motions + rng.normal(scale=1.5, size=motions.shape)

    def run(seed: int) -> dict[str, float]:
        return text_motion_scores(texts, motions, motions, seed=seed).as_dict()

    seeds = replication_seeds(6, base_seed=100)
    assert seeds == (100, 101, 102, 103, 104, 105)
    first, second = repeat_with_seeds(run, seeds), repeat_with_seeds(run, seeds)
    assert first == second
    # Shuffled batches and random pairs vary with the seed; MM-Dist and FID do not.
    assert first["r_precision_top1"].half_width > 0 and first["diversity"].half_width > 0
    assert first["mm_distance"].half_width == pytest.approx(0.0, abs=1e-12)
    assert first["fid"].count == 6
    with pytest.raises(InputTensorError, match="differ"):
        summarize_runs([{"a": 1.0}, {"b": 2.0}])
