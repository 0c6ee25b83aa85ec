# SPDX-License-Identifier: GPL-3.0-or-later
"""Iterative confidence-based decoding of motion tokens (MaskGIT / MoMask).

Start with every free token masked; at step s of S keep ceil(cos(π/2 · s/S) · n_free) tokens masked — those
the model was least confident about when it last predicted them — and predict them again.  Tokens unmasked in an
earlier step stay as they are, so the masked set shrinks monotonically and the last step leaves none.

*Fixed* tokens (given codes: the kept part of an edited motion, the context of a continuation, both sides of an
in-between or of a transition to inpaint) are never masked or changed.  Each token may carry its own condition
(``cond_per_token``), so one pass can decode a whole timeline of prompts.  Classifier-free guidance mixes the
conditional and the null-condition logits (``GuidedModel``: the doubled batch and its conditions built once per
decode, equal rows run once).  A step that masks the same tokens as the step before has the same input, so it
reuses that step's logits and only draws its sample again (the tokens are those of a pass per step).  All
randomness comes from one seeded ``torch.Generator``, so a seed reproduces a result exactly.
``on_progress(step, total, message)`` reports progress after every step, and ``should_cancel()`` returning True
then stops the decode with ``GenerationCancelled`` (both from ``progress.py``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..common.boolean_runs import true_runs
from ..common.errors import ConfigError, InputTensorError
from ..common.progress import CancelCheck, GenerationCancelled, ProgressCallback
from .configs import DecodingConfig
from .masked_generator import GuidedModel, MaskedGenerator
from .motion_tokenizer import num_tokens_for_frames

CandidateScore = Callable[[Tensor, Sequence[int]], Sequence[float]]
"""Scores candidate codes (n, L, Q) of the batch rows named (n indices, repeats allowed); higher is kept."""


@dataclass
class DecodeResult:
    codes: Tensor  # (B, L, Q) with the residual predictor, else (B, L, 1); -1 at padding
    token_valid: Tensor  # (B, L) bool
    num_frames: list[int]  # requested frames per sample (decode, then crop each sample to this)


def cosine_masked_fraction(step: int, steps: int) -> float:
    """Fraction of the free tokens masked at ``step`` (0-based) of ``steps``: 1 at the start, decreasing."""
    return math.cos(math.pi / 2 * step / steps)


@torch.no_grad()
def decode_tokens(
    generator: MaskedGenerator,
    num_frames: int | Sequence[int],
    *,
    sentence: Tensor | None = None,
    cond_per_token: Tensor | None = None,
    fixed_codes: Tensor | None = None,
    config: DecodingConfig | None = None,
    seed: int | None = None,
    rng: torch.Generator | None = None,
    use_residual: bool = True,
    locomotion: Tensor | None = None,
    steady_walk: Tensor | None = None,
    unlikely: Tensor | None = None,
    candidate_score: CandidateScore | None = None,
    on_progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
) -> DecodeResult:
    """Generate codes for clips of ``num_frames`` frames (ceil(frames / 4) tokens each).

    ``sentence`` (B, E) and/or ``cond_per_token`` (B, L, E) condition the generator (see MaskedGenerator).
    ``fixed_codes`` (B, L) or (B, L, q): codes >= 0 are kept unchanged, -1 marks tokens to generate; with q > 1
    the given residual layers are kept too.  ``rng`` (or ``seed``) makes the result reproducible.
    ``use_residual`` predicts the residual layers when the generator has a residual predictor.
    ``locomotion`` (B, L) in [0, 1], or (B,) for every token of a row: how much each token belongs to a plain walk
    or run prompt; those tokens are guided at ``config.locomotion_guidance_factor`` times the scale (blended by the
    weight; no effect at a factor of 1) and take ``config.locomotion_repeat_penalty`` and
    ``config.locomotion_period_bonus``.
    ``steady_walk``, shaped like ``locomotion``: how much each token belongs to a walk or run that keeps its heading
    (its prompt's steady walking share, ``generation/prompt_kinds.py``); those tokens' residual codes take
    ``config.locomotion_residual_period_bonus`` (None: no token does).
    ``unlikely``, shaped like ``locomotion``: how much each token belongs to a prompt the model rarely performs at
    the guidance scale (its prompt's boost weight, ``bundle/caption_checks.py`` ``boost_weight``); those tokens are
    guided at ``config.unlikely_guidance_factor`` times the scale (blended by the weight; None: no token is).
    ``candidate_score(codes, rows)``: with ``config.steady_walk_candidates`` N > 1, every row whose free tokens are
    all steady walk tokens (``candidate_rows``) is decoded N - 1 more times in the same batch (``RowStreams``: the
    extra rows draw from a generator seeded off ``rng``'s state, so ``rng`` gives the rows asked for exactly the draws
    it gives without them) and keeps the candidate with the highest score; ``codes`` (n, L, Q) are candidates of the
    rows ``rows`` (indices into this batch), and the first decode wins ties.  None (or N = 1): no candidates.
    ``on_progress`` / ``should_cancel`` are called after every step (the residual layers count one step each).
    """
    config = config or DecodingConfig()
    frames = [num_frames] if isinstance(num_frames, int) else list(num_frames)
    if not frames or any(not isinstance(f, int) or f < 1 for f in frames):
        raise ConfigError(f"num_frames: expected positive integers, got {num_frames!r}")
    device = next(generator.parameters()).device
    token_counts = torch.tensor([num_tokens_for_frames(f) for f in frames], device=device)
    batch, length = len(frames), int(token_counts.max())
    token_valid = torch.arange(length, device=device).unsqueeze(0) < token_counts.unsqueeze(1)
    fixed = _check_fixed(fixed_codes, batch, length, token_valid, generator)
    if rng is None:
        rng = torch.Generator()
        rng.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, ())))
    rows = candidate_rows(config, steady_walk, fixed, token_valid) if candidate_score is not None else []
    draws: torch.Generator | RowStreams = rng
    if rows:  # the candidates ride in the same batch, after the rows asked for, with their own random stream
        more = rows * (config.steady_walk_candidates - 1)
        take = torch.tensor(list(range(batch)) + more, device=device)
        sentence, cond_per_token, locomotion, steady_walk, unlikely = (
            None if values is None else values[take.to(values.device)]
            for values in (sentence, cond_per_token, locomotion, steady_walk, unlikely))
        fixed, token_valid = fixed[take], token_valid[take]
        draws = RowStreams(rng, torch.Generator().manual_seed(_derived_seed(rng)), batch)
    residual = generator.residual if use_residual else None
    total_steps = config.steps + (generator.config.num_quantizers - 1 if residual is not None else 0)
    was_training = generator.training
    generator.eval()
    try:
        base_scale = per_token_guidance(config.guidance_scale, config, locomotion, token_valid, unlikely)
        base = _decode_base(generator, fixed[..., 0], token_valid, sentence, cond_per_token, config, base_scale,
                            per_token_repeat_penalty(config, locomotion, token_valid),
                            _base_period_bonus(config, locomotion, steady_walk, token_valid), draws,
                            (on_progress, should_cancel), total_steps)
        layers = [base]
        if residual is not None:
            scale = base_scale if config.residual_guidance_scale is None else \
                per_token_guidance(config.residual_guidance_scale, config, locomotion, token_valid, unlikely)
            guided = GuidedModel(residual, scale, sentence=sentence, cond_per_token=cond_per_token,
                                 token_valid=token_valid)
            residual_bonus = per_token_period_bonus(config.locomotion_residual_period_bonus, steady_walk, token_valid)
            for layer in range(1, generator.config.num_quantizers):
                lower = torch.stack(layers, dim=-1)
                logits = guided(lower, layer)
                if residual_bonus is None:
                    sampled, _ = _sample(logits, config.residual_temperature, config.top_k, draws)
                else:
                    sampled = _sample_residual_in_gait_cycle(logits, lower, residual_bonus,
                                                             config.residual_temperature, config.top_k, draws)
                given = fixed[..., layer] if layer < fixed.shape[-1] else torch.full_like(base, -1)
                codes = torch.where(given >= 0, given, sampled).masked_fill(~token_valid, -1)
                layers.append(codes)
                _report((on_progress, should_cancel), config.steps + layer, total_steps)
    finally:
        generator.train(was_training)
    codes = torch.stack(layers, dim=-1)
    if rows:
        codes = _best_candidates(codes, batch, rows, config.steady_walk_candidates, candidate_score)
    return DecodeResult(codes=codes, token_valid=token_valid[:batch], num_frames=frames)


class RowStreams:
    """The random draws of a batch whose first ``rows`` rows draw from ``first`` (exactly as a batch of those rows
    alone would) and the others from ``rest``: a steady walk's candidate decodes change nothing the caller's
    generator gives the rows it asked for."""

    def __init__(self, first: torch.Generator, rest: torch.Generator, rows: int):
        self.first, self.rest, self.rows = first, rest, rows

    def rand(self, shape: Sequence[int]) -> Tensor:
        tail = tuple(shape[1:])
        return torch.cat([torch.rand((self.rows, *tail), generator=self.first),
                          torch.rand((shape[0] - self.rows, *tail), generator=self.rest)])


def candidate_rows(config: DecodingConfig, steady_walk: Tensor | None, fixed: Tensor,
                   token_valid: Tensor) -> list[int]:
    """Rows that take ``config.steady_walk_candidates`` decodes: at least one free token, and every free valid token
    at least half a steady walk's (``steady_walk``); none when the setting is 1."""
    if config.steady_walk_candidates <= 1 or steady_walk is None:
        return []
    weight = _walk_weight(steady_walk, token_valid)
    if weight is None:
        return []
    free = (fixed[..., 0] < 0) & token_valid
    steady = (weight >= 0.5) | ~free
    return [row for row in range(token_valid.shape[0]) if bool(free[row].any()) and bool(steady[row].all())]


def _derived_seed(rng: torch.Generator) -> int:
    """A seed read off ``rng``'s state without drawing from it (the same state gives the same seed)."""
    digest = hashlib.blake2b(rng.get_state().cpu().numpy().tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**62 - 1)


def _best_candidates(codes: Tensor, batch: int, rows: list[int], rounds: int, score: CandidateScore) -> Tensor:
    """The first ``batch`` rows of ``codes`` (B + extra, L, Q), each row of ``rows`` replaced by the best-scored of its
    ``rounds`` candidates: itself and its copies after the batch (round 1 of ``rows``, then round 2, ...)."""
    candidates = torch.cat([codes[rows], codes[batch:]])
    scores = torch.as_tensor([float(v) for v in score(candidates, rows * rounds)], dtype=torch.float64)
    if scores.shape != (len(rows) * rounds,) or not bool(torch.isfinite(scores).all()):
        raise InputTensorError(f"candidate_score: expected {len(rows) * rounds} finite scores, got "
                               f"{tuple(scores.shape)}")
    best = scores.view(rounds, len(rows)).argmax(dim=0)  # argmax takes the first of equal scores
    kept = codes[:batch].clone()
    for index, row in enumerate(rows):
        kept[row] = candidates[int(best[index]) * len(rows) + index]
    return kept


def _walk_weight(locomotion: Tensor | None, token_valid: Tensor, name: str = "locomotion") -> Tensor | None:
    """Each token's share (B, L) of plain walk and run prompts (a (B,) row share spread over its tokens), or None
    when no token has any; the same for any per-token weight shaped like it (``unlikely``)."""
    if locomotion is None:
        return None
    if locomotion.dim() == 1 and locomotion.shape[0] == token_valid.shape[0]:
        locomotion = locomotion[:, None].expand_as(token_valid)
    if locomotion.shape != token_valid.shape:
        raise InputTensorError(f"{name}: expected per-token weights {tuple(token_valid.shape)}, "
                               f"got {tuple(locomotion.shape)}")
    weight = locomotion.to(token_valid.device, torch.float32).clamp(0.0, 1.0)
    return weight if bool(weight.any()) else None


def per_token_guidance(scale: float, config: DecodingConfig, locomotion: Tensor | None,
                       token_valid: Tensor, unlikely: Tensor | None = None) -> float | Tensor:
    """`scale`, or per token (B, L) that scale with walk and run tokens' share of it
    (``config.locomotion_guidance_factor``, blended by the token's `locomotion` weight) and the tokens of prompts the
    model rarely performs at it raised (``config.unlikely_guidance_factor``, blended by their `unlikely` weight)."""
    result: float | Tensor = scale
    weight = _walk_weight(locomotion, token_valid)
    if weight is not None and config.locomotion_guidance_factor != 1.0:
        result = result * (1.0 + (config.locomotion_guidance_factor - 1.0) * weight)
    boost = _walk_weight(unlikely, token_valid, "unlikely")
    if boost is not None and config.unlikely_guidance_factor != 1.0:
        result = result * (1.0 + (config.unlikely_guidance_factor - 1.0) * boost)
    return result


def per_token_repeat_penalty(config: DecodingConfig, locomotion: Tensor | None, token_valid: Tensor) -> float | Tensor:
    """``config.repeat_penalty``, plus on walk and run tokens ``config.locomotion_repeat_penalty`` times their share."""
    weight = _walk_weight(locomotion, token_valid)
    if weight is None or config.locomotion_repeat_penalty == 0.0:
        return config.repeat_penalty
    return config.repeat_penalty + config.locomotion_repeat_penalty * weight


def per_token_period_bonus(bonus: float, walks: Tensor | None, token_valid: Tensor) -> Tensor | None:
    """``bonus`` (``config.locomotion_period_bonus``, or ``locomotion_residual_period_bonus`` or
    ``steady_walk_period_bonus`` with the steady walks) times each token's share (B, L) of the ``walks`` given; None
    when off."""
    weight = _walk_weight(walks, token_valid)
    if weight is None or bonus == 0.0:
        return None
    return bonus * weight


def _base_period_bonus(config: DecodingConfig, locomotion: Tensor | None, steady_walk: Tensor | None,
                       token_valid: Tensor) -> Tensor | None:
    """The base layer's gait-cycle bonus per token (B, L): ``locomotion_period_bonus`` on walk tokens plus
    ``steady_walk_period_bonus`` on steady walk tokens; None when neither has any."""
    walks = per_token_period_bonus(config.locomotion_period_bonus, locomotion, token_valid)
    steady = per_token_period_bonus(config.steady_walk_period_bonus, steady_walk, token_valid)
    if walks is None or steady is None:
        return steady if walks is None else walks
    return walks + steady


def _decode_base(generator: MaskedGenerator, fixed_base: Tensor, token_valid: Tensor, sentence: Tensor | None,
                 cond_per_token: Tensor | None, config: DecodingConfig, guidance_scale: float | Tensor,
                 repeat_penalty: float | Tensor, period_bonus: Tensor | None, rng: torch.Generator | RowStreams,
                 report_to: tuple[ProgressCallback | None, CancelCheck | None], total_steps: int) -> Tensor:
    mask_id = generator.mask_id
    is_fixed = fixed_base >= 0
    free = token_valid & ~is_fixed
    n_free = free.sum(dim=1)
    ids = torch.where(is_fixed, fixed_base, torch.full_like(fixed_base, mask_id))
    # Lower score = masked first.  Fixed tokens, padding and tokens already settled never compete (+inf).
    scores = torch.where(free, torch.zeros(ids.shape, device=ids.device), torch.full(ids.shape, math.inf,
                                                                                        device=ids.device))
    guided = GuidedModel(generator, guidance_scale, sentence=sentence, cond_per_token=cond_per_token,
                         token_valid=token_valid)
    logits, previous_mask = None, None
    for step in range(config.steps):
        # ceil, but cos(π/3) · 10 = 5.000000000000001 must give 5, not 6: ignore float round-off.
        n_mask = torch.ceil(cosine_masked_fraction(step, config.steps) * n_free.double() - 1e-6).long()
        ranks = scores.argsort(dim=1, stable=True).argsort(dim=1)
        is_mask = free & (ranks < n_mask.unsqueeze(1))
        if config.spaced_commits and previous_mask is not None:
            is_mask = is_mask | _crowded_commits(previous_mask & ~is_mask, scores)
        ids = ids.masked_fill(is_mask, mask_id)
        # The same tokens masked as in the step before means the same input (every other token is settled or
        # fixed), so the same logits: only the sampling is drawn again.  Early steps of a short free region (8
        # transition tokens: steps 1-3 of 10) and step 1 of most segments mask every free token again.
        if previous_mask is None or not torch.equal(is_mask, previous_mask):
            logits = guided(ids)
        previous_mask = is_mask
        step_logits = logits if not torch.is_tensor(repeat_penalty) and repeat_penalty == 0 else \
            _penalise_repeats(logits, ids, is_mask, mask_id, repeat_penalty)
        if period_bonus is not None:
            step_logits = _favour_gait_cycle(step_logits, ids, is_mask, mask_id, period_bonus)
        sampled, confidence = _sample(step_logits, config.temperature, config.top_k, rng)
        if config.walk_holds_settle_last and period_bonus is not None:
            confidence = confidence.masked_fill(_held_walk_tokens(torch.where(is_mask, sampled, ids), is_mask,
                                                                  period_bonus > 0), 0.0)
        if config.remask_noise > 0:
            annealing = 1.0 - (step + 1) / config.steps
            confidence = confidence.log() + config.remask_noise * annealing * _gumbel(confidence.shape, rng,
                                                                                    confidence.device)
        ids = torch.where(is_mask, sampled, ids)
        if config.commit_order == "left_to_right":  # earlier tokens score higher, so later ones stay masked
            confidence = -torch.arange(ids.shape[1], device=ids.device, dtype=scores.dtype).expand_as(scores)
        scores = torch.where(is_mask, confidence, torch.full_like(scores, math.inf))
        _report(report_to, step + 1, total_steps)
    return ids.masked_fill(~token_valid, -1)


def _held_walk_tokens(drawn: Tensor, is_mask: Tensor, walk: Tensor) -> Tensor:
    """(B, L) True at each masked walk token whose ``drawn`` code (the step's draw, settled codes elsewhere) equals
    both its neighbours': a pose held over three tokens, which ``walk_holds_settle_last`` leaves masked."""
    held = torch.zeros_like(is_mask)
    held[:, 1:-1] = (drawn[:, 1:-1] == drawn[:, :-2]) & (drawn[:, 1:-1] == drawn[:, 2:])
    return held & is_mask & walk


def _penalise_repeats(logits: Tensor, ids: Tensor, is_mask: Tensor, mask_id: int, penalty: float | Tensor) -> Tensor:
    """``logits`` (B, L, K) less ``penalty`` (a number, or (B, L): each masked token's own) at the code of each
    settled left and right neighbour of a masked token (a fixed or already drawn token; not a masked one or
    padding)."""
    settled = (ids != mask_id) & (ids >= 0)
    codes = ids.where(settled, 0).unsqueeze(-1)
    out = logits.clone()
    at = penalty.unsqueeze(-1).to(out.dtype) if torch.is_tensor(penalty) else torch.full_like(out[..., :1], penalty)
    left_holds = (settled[:, :-1] & is_mask[:, 1:]).unsqueeze(-1).to(out.dtype)   # token i+1 sees token i
    right_holds = (settled[:, 1:] & is_mask[:, :-1]).unsqueeze(-1).to(out.dtype)  # token i sees token i+1
    out[:, 1:].scatter_add_(-1, codes[:, :-1], -at[:, 1:] * left_holds)
    out[:, :-1].scatter_add_(-1, codes[:, 1:], -at[:, :-1] * right_holds)
    return out


GAIT_CYCLE_TOKENS = range(3, 9)
"""Lags (tokens of 4 frames at 20 fps: 0.6-1.6 s) a walk or run's gait cycle may take (`_favour_gait_cycle`)."""


def gait_cycle_lag(codes: Tensor, settled: Tensor) -> int | None:
    """The lag in GAIT_CYCLE_TOKENS at which the settled ``codes`` (L,) of one segment agree most (agreeing pairs
    over settled pairs plus one, so a lag seen once does not beat one seen agreeing many times), or None when no
    lag has an agreeing pair yet."""
    best, best_rate = None, 0.0
    for lag in GAIT_CYCLE_TOKENS:
        if lag >= codes.shape[0]:
            break
        both = settled[:-lag] & settled[lag:]
        agree = int((both & (codes[:-lag] == codes[lag:])).sum())
        rate = agree / (int(both.sum()) + 1)
        if rate > best_rate:
            best, best_rate = lag, rate
    return best


def _favour_gait_cycle(logits: Tensor, ids: Tensor, is_mask: Tensor, mask_id: int, bonus: Tensor) -> Tensor:
    """``logits`` (B, L, K) plus ``bonus`` (B, L: each masked token's own) at the code of the settled token one gait
    cycle (`gait_cycle_lag` of its segment: the run of consecutive tokens with a bonus) earlier and later."""
    settled = (ids != mask_id) & (ids >= 0)
    out = logits.clone()
    for row in range(ids.shape[0]):
        for start, end in true_runs((bonus[row] > 0).cpu()):
            known = settled[row, start:end]
            codes = ids[row, start:end].where(known, 0)  # a masked or padding token's id indexes no code
            lag = gait_cycle_lag(codes, known)
            if lag is None:
                continue
            wanted, at = is_mask[row, start:end], bonus[row, start:end].to(out.dtype)
            for source, target in ((slice(None, -lag), slice(lag, None)), (slice(lag, None), slice(None, -lag))):
                holds = (known[source] & wanted[target]).to(out.dtype) * at[target]
                out[row, start:end][target].scatter_add_(-1, codes[source].unsqueeze(-1), holds.unsqueeze(-1))
    return out


def _sample_residual_in_gait_cycle(logits: Tensor, lower: Tensor, bonus: Tensor, temperature: float,
                                   top_k: int | None, rng: torch.Generator | RowStreams) -> Tensor:
    """One residual layer's codes (B, L) from ``logits`` (B, L, K), drawn as `_sample` draws them (the same noise),
    except in each run of walk tokens (``bonus`` (B, L) > 0): tokens one gait cycle apart (`gait_cycle_lag` of the
    run's base codes) whose ``lower`` layers (B, L, l) repeat form a chain (t, t + lag, t + 2 lag ...), and each
    token of a chain gets its ``bonus`` added to the chain's consensus code (the one most likely over all its tokens:
    the largest sum of log-probabilities), so a repeated step is decoded the same way each time, as the walk's steps
    agree it goes.  Copying one step's code along the chain instead made every step a copy of the walk's first (its
    feet swung 0.84x as high as real, not 0.88x) or of its last (a sneak travelled 0.19 m/s, not 0.35):
    walk_cycle_residual.md."""
    filtered = _top_k_filtered(logits, top_k)
    noise = None if temperature == 0 else _gumbel(filtered.shape, rng, filtered.device)
    codes = _gumbel_max(filtered, temperature, noise)
    log_probs = filtered.log_softmax(dim=-1)
    for row in range(logits.shape[0]):
        for start, end in true_runs((bonus[row] > 0).cpu()):
            base = lower[row, start:end, 0]
            lag = gait_cycle_lag(base, base >= 0)
            if lag is None:
                continue
            repeats = (lower[row, start:end - lag] == lower[row, start + lag:end]).all(dim=-1).tolist()
            chain_of = list(range(end - start))  # each token's chain: the first token of it
            for offset, repeated in enumerate(repeats):
                if repeated:
                    chain_of[offset + lag] = chain_of[offset]
            chains: dict[int, list[int]] = {}
            for offset, first in enumerate(chain_of):
                chains.setdefault(first, []).append(start + offset)
            for tokens in chains.values():
                if len(tokens) < 2:
                    continue
                consensus = log_probs[row, tokens].sum(dim=0).argmax()
                pulled = filtered[row, tokens].clone()
                pulled[:, consensus] += bonus[row, tokens].to(pulled.dtype)
                codes[row, tokens] = _gumbel_max(pulled, temperature, None if noise is None else noise[row, tokens])
    return codes


def _crowded_commits(settling: Tensor, scores: Tensor) -> Tensor:
    """Of the tokens ``settling`` (B, L) at this step, those with a settling neighbour at least as confident (the
    left one wins a tie): they wait a step, so no two neighbours settle together."""
    beaten = torch.zeros_like(settling)
    left_settles = settling[:, :-1] & settling[:, 1:]  # pairs (i, i + 1) both settling
    beaten[:, 1:] |= left_settles & (scores[:, :-1] >= scores[:, 1:])
    beaten[:, :-1] |= left_settles & (scores[:, 1:] > scores[:, :-1])
    return settling & beaten


def _sample(logits: Tensor, temperature: float, top_k: int | None,
            rng: torch.Generator | RowStreams) -> tuple[Tensor, Tensor]:
    """Sampled codes and their probability under the unfiltered, untempered softmax (the confidence)."""
    filtered = _top_k_filtered(logits, top_k)
    noise = None if temperature == 0 else _gumbel(filtered.shape, rng, filtered.device)
    sampled = _gumbel_max(filtered, temperature, noise)
    confidence = logits.softmax(dim=-1).gather(-1, sampled.unsqueeze(-1)).squeeze(-1)
    return sampled, confidence


def _gumbel_max(filtered: Tensor, temperature: float, noise: Tensor | None) -> Tensor:
    """Codes drawn from softmax(filtered / T) by Gumbel-max, argmax(filtered / T + noise); at T = 0 (no noise) the
    most likely code.  (x / 1 is x: no division at T = 1.)"""
    if noise is None:
        return filtered.argmax(dim=-1)
    return (filtered if temperature == 1 else filtered / temperature).add(noise).argmax(dim=-1)


def _top_k_filtered(logits: Tensor, top_k: int | None) -> Tensor:
    """``logits`` with every code below the ``top_k`` most likely at -inf (unchanged when None or >= K)."""
    if top_k is None or top_k >= logits.shape[-1]:
        return logits
    kth = logits.topk(top_k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, -math.inf)


def _gumbel(shape: Sequence[int], rng: torch.Generator | RowStreams, device: torch.device) -> Tensor:
    uniform = rng.rand(shape) if isinstance(rng, RowStreams) else torch.rand(tuple(shape), generator=rng)
    noise = uniform.clamp_(1e-10, 1 - 1e-10)
    return noise.log_().neg_().log_().neg_().to(device)  # -log(-log(u)), in place


def _report(report_to: tuple[ProgressCallback | None, CancelCheck | None], step: int, total: int) -> None:
    on_progress, should_cancel = report_to
    if on_progress is not None:
        on_progress(step, total, "decoding")
    if should_cancel is not None and should_cancel():
        raise GenerationCancelled(f"decoding cancelled after step {step} of {total}")


def _check_fixed(fixed_codes: Tensor | None, batch: int, length: int, token_valid: Tensor,
                 generator: MaskedGenerator) -> Tensor:
    """(B, L, q) fixed codes (-1 = free) validated against the requested lengths."""
    if fixed_codes is None:
        return torch.full((batch, length, 1), -1, dtype=torch.int64, device=token_valid.device)
    fixed = fixed_codes.to(token_valid.device).long()
    if fixed.dim() == 2:
        fixed = fixed.unsqueeze(-1)
    if fixed.dim() != 3 or fixed.shape[:2] != (batch, length):
        raise InputTensorError(f"fixed_codes: expected ({batch}, {length}) or ({batch}, {length}, q) for the requested "
                          f"lengths, got {tuple(fixed_codes.shape)}")
    if fixed.shape[-1] > generator.config.num_quantizers:
        raise InputTensorError(f"fixed_codes: {fixed.shape[-1]} layers but the model has {generator.config.num_quantizers}")
    if fixed.numel() and int(fixed.max()) >= generator.config.codebook_size:
        raise InputTensorError(f"fixed_codes: code {int(fixed.max())} is outside the codebook "
                          f"(size {generator.config.codebook_size})")
    outside = (fixed >= 0).any(-1) & ~token_valid
    if bool(outside.any()):
        sample, token = (int(v) for v in outside.nonzero()[0])
        raise InputTensorError(f"fixed_codes: sample {sample} fixes token {token}, beyond its requested length")
    return fixed
