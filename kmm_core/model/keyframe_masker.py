# SPDX-License-Identifier: GPL-3.0-or-later
"""Which motion tokens to mask during training: KMM's key-frame masking, the random baseline, the ratio schedule.

Key frames (KMM, density-peak clustering): on a clip's token embeddings x_1..x_n,
    D_ij = ||x_i - x_j||,
    density d_i   "gaussian": sum over valid j of exp(-(D_ij / bandwidth)^2)     (the paper's full sum)
                  "knn":      exp(-mean of D_ij^2 / C over the k nearest other valid tokens)   (DPC-kNN, TCFormer)
    S_i = min over j denser than i of D_ij; the densest token takes max_j D_ij,
    score_i = d_i * S_i,
and the round(ratio * n) highest-scoring tokens are masked. Density peaks (one representative of each group of
similar poses) score highest, then isolated tokens such as transitions, and redundant near-duplicates of a denser
token score lowest: the model has to predict the informative frames instead of copying a neighbour.

Choices the paper leaves open, made here:
- bandwidth (gaussian): ``None`` = per clip, the median of the non-zero pairwise distances between valid tokens.
  The paper's literal exp(-D^2) depends on the arbitrary scale of the latent space; the median makes the kernel
  scale-free. Zero distances are left out because VQ tokens repeat exactly (static poses), and a median of zero
  would make every non-identical pair count as "far". A float gives a fixed bandwidth (1.0 = the paper's formula).
- knn distances are divided by sqrt(C) as in TCFormer, so the density does not vanish for wide embeddings.
- Ties: "denser than" and the final ranking are decided lexicographically by (value, random rank) - the exact limit
  of adding infinitesimal noise, with no scale to tune. The random ranks come from ``generator`` (a fixed seed if
  None), so the result is deterministic for a given generator state.
- Scores are compared as log d + log S, which ranks exactly like d * S but cannot underflow.
"""

from __future__ import annotations

import math

import torch

from ..common.errors import ConfigError, InputTensorError

TIE_BREAK_SEED = 20241110  # fixed seed for tie-breaking ranks when no generator is given


def cosine_mask_schedule(progress: torch.Tensor) -> torch.Tensor:
    """MaskGIT's cosine schedule: fraction of tokens masked at progress in [0, 1] (1 at 0, 0 at 1)."""
    return torch.cos(progress * (math.pi / 2))


def sample_mask_ratio(batch: int, schedule: str = "cosine", generator: torch.Generator | None = None) -> torch.Tensor:
    """Training mask ratios (batch,) as in MaskGIT/MoMask: ratio = cos(pi/2 * u), u ~ U(0, 1)."""
    if schedule != "cosine":
        raise ConfigError(f"sample_mask_ratio: schedule must be 'cosine', got {schedule!r}")
    if batch < 1:
        raise ConfigError(f"sample_mask_ratio: batch must be >= 1, got {batch}")
    return cosine_mask_schedule(torch.rand(batch, generator=generator, dtype=torch.float64)).float()


def _check_inputs(tokens_emb: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    if tokens_emb.dim() != 3:
        raise InputTensorError(f"masker: tokens_emb must be (batch, length, channels), got {tuple(tokens_emb.shape)}")
    if valid is None:
        return torch.ones(tokens_emb.shape[:2], dtype=torch.bool, device=tokens_emb.device)
    if valid.dtype != torch.bool or tuple(valid.shape) != tuple(tokens_emb.shape[:2]):
        raise InputTensorError(
            f"masker: valid must be a bool tensor of shape {tuple(tokens_emb.shape[:2])}, got {valid.dtype} {tuple(valid.shape)}"
        )
    empty_rows = (~valid.any(dim=1)).nonzero().flatten().tolist()
    if empty_rows:
        raise InputTensorError(f"masker: rows {empty_rows} of valid have no valid token (all padding)")
    return valid


def _mask_counts(mask_ratio: float | torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """round(ratio * valid_len) per row (half rounds up), at least 1, at most valid_len."""
    valid_len = valid.sum(dim=1)
    ratio = torch.as_tensor(mask_ratio, dtype=torch.float64, device=valid.device)
    if ratio.dim() == 0:
        ratio = ratio.expand(valid.shape[0])
    if tuple(ratio.shape) != (valid.shape[0],):
        raise InputTensorError(
            f"masker: mask_ratio must be a float or a ({valid.shape[0]},) tensor, got {tuple(ratio.shape)}"
        )
    if not bool(((ratio >= 0) & (ratio <= 1)).all()):
        raise InputTensorError(f"masker: mask_ratio must lie in [0, 1], got {ratio.tolist()}")
    counts = torch.floor(ratio * valid_len + 0.5).long()
    return torch.minimum(counts.clamp(min=1), valid_len)


def _tie_break_ranks(shape: torch.Size, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """A random permutation rank per row: distinct values that order otherwise-equal entries."""
    if generator is None:
        generator = torch.Generator().manual_seed(TIE_BREAK_SEED)
    keys = torch.rand(shape, generator=generator, dtype=torch.float64)
    return keys.argsort(dim=-1).argsort(dim=-1).to(device)


def _select_top(scores: torch.Tensor, ranks: torch.Tensor, valid: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Mask the counts[b] valid tokens with the highest (score, rank); padding is ordered after every valid token."""
    order = ranks.argsort(dim=1, descending=True)
    order = order.gather(1, scores.gather(1, order).argsort(dim=1, descending=True, stable=True))
    order = order.gather(1, valid.gather(1, order).to(torch.int8).argsort(dim=1, descending=True, stable=True))
    position_in_order = order.argsort(dim=1)
    return (position_in_order < counts[:, None]) & valid


class _TopScoreMasker:
    """Base of the maskers: mask, per clip, the round(ratio * valid tokens) valid tokens that score highest; the
    subclasses only say how tokens score (and how ties break)."""

    def __call__(
        self,
        tokens_emb: torch.Tensor,
        valid: torch.Tensor | None,
        mask_ratio: float | torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        valid = _check_inputs(tokens_emb, valid)
        counts = _mask_counts(mask_ratio, valid)
        scores, ranks = self._scores_and_ranks(tokens_emb, valid, generator)
        return _select_top(scores, ranks, valid, counts)

    def _scores_and_ranks(
        self, tokens_emb: torch.Tensor, valid: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores (B, L) float64, tie-break ranks (B, L) long) of the tokens."""
        raise NotImplementedError


class RandomMasker(_TopScoreMasker):
    """Uniformly random tokens: the baseline of KMM's ablation (and MaskGIT/MoMask's masking)."""

    def _scores_and_ranks(
        self, tokens_emb: torch.Tensor, valid: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        scores = torch.rand(valid.shape, generator=generator, dtype=torch.float64).to(valid.device)
        ranks = torch.zeros(valid.shape, dtype=torch.long, device=valid.device)  # continuous scores: no ties
        return scores, ranks


class KeyFrameMasker(_TopScoreMasker):
    """KMM's key-frame masking: mask the tokens with the highest density-peak score (see the module docstring)."""

    def __init__(self, method: str = "gaussian", bandwidth: float | None = None, k: int = 5):
        if method not in ("gaussian", "knn"):
            raise ConfigError(f"KeyFrameMasker: method must be 'gaussian' or 'knn', got {method!r}")
        if bandwidth is not None and not bandwidth > 0:
            raise ConfigError(f"KeyFrameMasker: bandwidth must be > 0 or None, got {bandwidth}")
        if k < 1:
            raise ConfigError(f"KeyFrameMasker: k must be >= 1, got {k}")
        self.method = method
        self.bandwidth = bandwidth
        self.k = k

    def _scores_and_ranks(
        self, tokens_emb: torch.Tensor, valid: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ranks = _tie_break_ranks(valid.shape, generator, valid.device)
        return self.scores(tokens_emb, valid, ranks), ranks

    @torch.no_grad()
    def scores(self, tokens_emb: torch.Tensor, valid: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
        """log(d_i * S_i) per token (B, L); -inf where S_i = 0 (a duplicate of a denser token) and at padding."""
        x = tokens_emb.detach().to(torch.float64)
        distances = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")  # exact: duplicates give 0
        pair_valid = valid[:, :, None] & valid[:, None, :]
        log_density = self._log_density(distances, x.shape[2], valid, pair_valid)

        # j is denser than i when (log d_j, rank_j) > (log d_i, rank_i) lexicographically.
        density_i, density_j = log_density[:, :, None], log_density[:, None, :]
        denser = (density_j > density_i) | ((density_j == density_i) & (ranks[:, None, :] > ranks[:, :, None]))
        denser &= pair_valid
        inf = torch.tensor(math.inf, dtype=torch.float64, device=x.device)
        to_denser = torch.where(denser, distances, inf).amin(dim=2)
        farthest = torch.where(pair_valid, distances, -inf).amax(dim=2)
        separation = torch.where(denser.any(dim=2), to_denser, farthest)

        scores = log_density + torch.log(separation)  # log(0) = -inf: duplicates rank last, by tie-break rank
        return torch.where(valid, scores, -inf)

    def _log_density(
        self, distances: torch.Tensor, channels: int, valid: torch.Tensor, pair_valid: torch.Tensor
    ) -> torch.Tensor:
        inf = torch.tensor(math.inf, dtype=distances.dtype, device=distances.device)
        if self.method == "gaussian":
            bandwidth = self._bandwidth(distances, pair_valid)
            exponent = -((distances / bandwidth[:, None, None]) ** 2)
            return torch.where(pair_valid, exponent, -inf).logsumexp(dim=2)

        # knn: mean squared (scaled) distance to the k nearest *other* valid tokens; k shrinks for short clips.
        scaled_sq = distances.square() / channels
        eye = torch.eye(distances.shape[1], dtype=torch.bool, device=distances.device)
        candidates = torch.where(pair_valid & ~eye, scaled_sq, inf)
        k = min(self.k, distances.shape[1] - 1)
        if k == 0:  # single-token sequences: every density is equal
            return torch.zeros(valid.shape, dtype=distances.dtype, device=distances.device)
        nearest = candidates.topk(k, dim=2, largest=False).values
        finite = torch.isfinite(nearest)
        counts = finite.sum(dim=2).clamp(min=1)
        mean_sq = torch.where(finite, nearest, 0).sum(dim=2) / counts
        return -mean_sq

    def _bandwidth(self, distances: torch.Tensor, pair_valid: torch.Tensor) -> torch.Tensor:
        """Fixed bandwidth, or per clip the median non-zero distance between valid tokens (1 if there is none)."""
        batch = distances.shape[0]
        if self.bandwidth is not None:
            return torch.full((batch,), float(self.bandwidth), dtype=distances.dtype, device=distances.device)
        medians = []
        for row in range(batch):
            nonzero = distances[row][pair_valid[row] & (distances[row] > 0)]
            medians.append(nonzero.median() if nonzero.numel() else distances.new_tensor(1.0))
        return torch.stack(medians)
