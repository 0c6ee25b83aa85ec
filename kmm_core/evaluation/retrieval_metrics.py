# SPDX-License-Identifier: GPL-3.0-or-later
"""Text-to-motion metrics computed from evaluator embeddings (Guo et al. 2022), in NumPy.

The evaluator (a text encoder and a motion encoder trained contrastively, never the generator's own aligner) turns
texts and motions into vectors; everything here works on those vectors only:

- R-precision: in batches of 32 (text, motion) pairs, rank the 32 motions by Euclidean distance to each text;
  top-1/2/3 = share of texts whose own motion is among the 1/2/3 nearest.  Chance level is k/32.
- MM-Dist: mean distance between each text and its own motion.
- FID: Fréchet distance between Gaussians fitted to real and generated motion embeddings.
- Diversity: mean distance between 300 random pairs of motions.
- MultiModality: for each text, mean distance between 10 random pairs of its own generations.

Randomness (batch order, pair choice) comes from an explicit seed so that repeated runs are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..common.errors import InputTensorError

R_PRECISION_BATCH = 32
R_PRECISION_TOP_K = 3
DIVERSITY_PAIRS = 300
MULTIMODALITY_PAIRS = 10


def _check_embeddings(array: np.ndarray, name: str, ndim: int = 2) -> np.ndarray:
    values = np.asarray(array, dtype=np.float64)
    if values.ndim != ndim:
        raise InputTensorError(f"{name}: expected a {ndim}-d array of embeddings, got shape {values.shape}")
    if values.size == 0:
        raise InputTensorError(f"{name}: is empty (shape {values.shape})")
    if not np.all(np.isfinite(values)):
        raise InputTensorError(f"{name}: contains NaN or infinite values")
    return values


def _check_paired(texts: np.ndarray, motions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    texts = _check_embeddings(texts, "text_embeddings")
    motions = _check_embeddings(motions, "motion_embeddings")
    if texts.shape != motions.shape:
        raise InputTensorError(f"motion_embeddings: shape {motions.shape} does not match text_embeddings "
                               f"{texts.shape} (one motion per text, same width)")
    return texts, motions


def euclidean_distance_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) Euclidean distances between rows of a (N, D) and b (M, D).

    Uses |a|^2 + |b|^2 - 2 a.b and clips the tiny negative values that cancellation leaves for (near-)identical
    rows, so the square root never returns NaN.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    squared = (np.sum(a * a, axis=1)[:, None] + np.sum(b * b, axis=1)[None, :] - 2.0 * a @ b.T)
    return np.sqrt(np.maximum(squared, 0.0))


def r_precision(text_embeddings: np.ndarray, motion_embeddings: np.ndarray, batch_size: int = R_PRECISION_BATCH,
                top_k: int = R_PRECISION_TOP_K, seed: int | None = None) -> np.ndarray:
    """(top_k,) share of texts whose own motion ranks within the k nearest of its batch, k = 1..top_k.

    Pairs are split into consecutive batches of `batch_size` (after a seeded shuffle when `seed` is given, as the
    reference evaluation shuffles its loader); an incomplete last batch is dropped, as the reference drops it.
    Ties are broken against the true motion (it must be strictly nearer than an equally distant other).
    """
    texts, motions = _check_paired(text_embeddings, motion_embeddings)
    if batch_size < 1 or top_k < 1 or top_k > batch_size:
        raise InputTensorError(f"batch_size/top_k: need 1 <= top_k <= batch_size, got {top_k}, {batch_size}")
    count = texts.shape[0]
    if count < batch_size:
        raise InputTensorError(f"text_embeddings: R-precision needs at least one full batch of {batch_size} pairs, "
                               f"got {count}")
    order = np.random.default_rng(seed).permutation(count) if seed is not None else np.arange(count)
    num_batches = count // batch_size
    hits = np.zeros(top_k)
    for batch in range(num_batches):
        index = order[batch * batch_size:(batch + 1) * batch_size]
        distances = euclidean_distance_matrix(texts[index], motions[index])
        own = np.diag(distances)
        # Rank of the true motion = number of other motions at least as close (ties count against it).
        closer = (distances <= own[:, None]).sum(axis=1) - 1
        for k in range(top_k):
            hits[k] += np.count_nonzero(closer <= k)
    return hits / (num_batches * batch_size)


def mm_distance(text_embeddings: np.ndarray, motion_embeddings: np.ndarray) -> float:
    """Mean Euclidean distance between each text embedding and its own motion's embedding ("matching score")."""
    texts, motions = _check_paired(text_embeddings, motion_embeddings)
    return float(np.linalg.norm(texts - motions, axis=1).mean())


def gaussian_statistics(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), covariance (D, D)) of embeddings (N, D), the unbiased covariance (N - 1)."""
    values = _check_embeddings(embeddings, "embeddings")
    if values.shape[0] < 2:
        raise InputTensorError(f"embeddings: a covariance needs at least 2 samples, got {values.shape[0]}")
    return values.mean(axis=0), np.cov(values, rowvar=False).reshape(values.shape[1], values.shape[1])


def _symmetric_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition (negative round-off
    eigenvalues clipped to zero)."""
    symmetric = 0.5 * (matrix + matrix.T)
    eigenvalues, eigenvectors = np.linalg.eigh(symmetric)
    return (eigenvectors * np.sqrt(np.maximum(eigenvalues, 0.0))) @ eigenvectors.T


def frechet_distance(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray) -> float:
    """Fréchet distance ||mu_a - mu_b||^2 + Tr(C_a + C_b - 2 (C_a C_b)^(1/2)) between two Gaussians.

    Tr((C_a C_b)^(1/2)) equals Tr((S C_b S)^(1/2)) with S = C_a^(1/2), and S C_b S is symmetric positive
    semi-definite, so both roots come from symmetric eigendecompositions: no complex round-off, no failure on
    singular covariances (fewer samples than dimensions), no need to add an epsilon to the diagonal.
    """
    mean_a = np.atleast_1d(np.asarray(mean_a, dtype=np.float64))
    mean_b = np.atleast_1d(np.asarray(mean_b, dtype=np.float64))
    cov_a = np.atleast_2d(np.asarray(cov_a, dtype=np.float64))
    cov_b = np.atleast_2d(np.asarray(cov_b, dtype=np.float64))
    dim = mean_a.shape[0]
    for name, value, shape in (("mean_b", mean_b, (dim,)), ("cov_a", cov_a, (dim, dim)), ("cov_b", cov_b, (dim, dim))):
        if value.shape != shape:
            raise InputTensorError(f"{name}: expected shape {shape}, got {value.shape}")
        if not np.all(np.isfinite(value)):
            raise InputTensorError(f"{name}: contains NaN or infinite values")
    root_a = _symmetric_sqrt(cov_a)
    inner = root_a @ cov_b @ root_a
    eigenvalues = np.linalg.eigvalsh(0.5 * (inner + inner.T))
    trace_cross = float(np.sqrt(np.maximum(eigenvalues, 0.0)).sum())
    difference = mean_a - mean_b
    distance = float(difference @ difference + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_cross)
    # Round-off can leave a tiny negative number for identical distributions.
    return max(distance, 0.0)


def fid(real_embeddings: np.ndarray, generated_embeddings: np.ndarray) -> float:
    """FID between real and generated motion embeddings (N, D) and (M, D)."""
    mean_real, cov_real = gaussian_statistics(real_embeddings)
    mean_generated, cov_generated = gaussian_statistics(generated_embeddings)
    if mean_real.shape != mean_generated.shape:
        raise InputTensorError(f"generated_embeddings: width {mean_generated.shape[0]} differs from the real "
                               f"embeddings' {mean_real.shape[0]}")
    return frechet_distance(mean_real, cov_real, mean_generated, cov_generated)


def _random_distinct_pairs(count: int, num_pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """num_pairs index pairs (i, j), i != j, uniform over ordered pairs of distinct items."""
    first = rng.integers(0, count, size=num_pairs)
    second = (first + rng.integers(1, count, size=num_pairs)) % count
    return first, second


def diversity(motion_embeddings: np.ndarray, num_pairs: int = DIVERSITY_PAIRS, seed: int = 0) -> float:
    """Mean distance between `num_pairs` random pairs of distinct motions (embeddings (N, D))."""
    motions = _check_embeddings(motion_embeddings, "motion_embeddings")
    if motions.shape[0] < 2:
        raise InputTensorError(f"motion_embeddings: diversity needs at least 2 motions, got {motions.shape[0]}")
    if num_pairs < 1:
        raise InputTensorError(f"num_pairs: must be positive, got {num_pairs}")
    first, second = _random_distinct_pairs(motions.shape[0], num_pairs, np.random.default_rng(seed))
    return float(np.linalg.norm(motions[first] - motions[second], axis=1).mean())


def multimodality(generation_embeddings: np.ndarray, num_pairs: int = MULTIMODALITY_PAIRS, seed: int = 0) -> float:
    """Mean distance between `num_pairs` random pairs of generations of the same text.

    generation_embeddings: (num_texts, generations_per_text, D), e.g. up to 100 texts x 30 generations.
    """
    generations = _check_embeddings(generation_embeddings, "generation_embeddings", ndim=3)
    num_texts, per_text, _ = generations.shape
    if per_text < 2:
        raise InputTensorError(f"generation_embeddings: multimodality needs at least 2 generations per text, "
                               f"got {per_text}")
    if num_pairs < 1:
        raise InputTensorError(f"num_pairs: must be positive, got {num_pairs}")
    rng = np.random.default_rng(seed)
    distances = []
    for text in range(num_texts):
        first, second = _random_distinct_pairs(per_text, num_pairs, rng)
        distances.append(np.linalg.norm(generations[text, first] - generations[text, second], axis=1))
    return float(np.mean(distances))


@dataclass(frozen=True)
class TextMotionScores:
    """The standard text-to-motion metrics of one evaluation run."""

    r_precision: tuple[float, ...]   # top-1, top-2, top-3
    mm_distance: float
    fid: float
    diversity: float

    def as_dict(self) -> dict[str, float]:
        scores = {f"r_precision_top{k + 1}": value for k, value in enumerate(self.r_precision)}
        scores.update(mm_distance=self.mm_distance, fid=self.fid, diversity=self.diversity)
        return scores


def text_motion_scores(text_embeddings: np.ndarray, motion_embeddings: np.ndarray, real_motion_embeddings: np.ndarray,
                       seed: int = 0) -> TextMotionScores:
    """R-precision, MM-Dist, FID (against the real motions) and Diversity of generated motions, one seed."""
    return TextMotionScores(
        r_precision=tuple(float(v) for v in r_precision(text_embeddings, motion_embeddings, seed=seed)),
        mm_distance=mm_distance(text_embeddings, motion_embeddings),
        fid=fid(real_motion_embeddings, motion_embeddings),
        diversity=diversity(motion_embeddings, seed=seed),
    )
