# SPDX-License-Identifier: GPL-3.0-or-later
"""MMM-style transition inpainting, batched: the default way a multi-prompt timeline is generated.

1. Every segment is decoded on its own prompt, all segments in ONE batched decode (padded to the longest; the
   backbone's padding contract keeps each segment's result independent of the others' lengths).
2. Around every boundary, ``transition_tokens`` tokens on each side are re-decoded with everything else fixed. Only
   a local window is decoded: the free tokens plus ``context_tokens`` fixed tokens on each side, every window of the
   timeline in ONE batched decode. Free regions that overlap or touch (short segments) form one window.

Before, step 1 decoded the segments one after another and step 2 decoded the whole timeline again with only the
transition tokens free, so a 10-minute timeline paid 50 sequential decodes plus a 3,000-token one.
``benchmarks/bench_timeline_speed.py`` measures the two; ``benchmarks/measure_transition_modes.py`` checks that the
prompts are still obeyed as well.

Torch only; knows nothing of timelines (spans in tokens in, codes out), so the timeline generator stays the caller.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..common.progress import ProgressCallback
from ..model.configs import DecodingConfig
from ..model.decoding import CandidateScore, decode_tokens
from ..motion.model_timing import FRAMES_PER_TOKEN


def decode_segments_together(generator, lengths: Sequence[int], embeddings: Tensor, config: DecodingConfig,
                             rng: torch.Generator, on_progress: ProgressCallback | None,
                             locomotion: Sequence[float] | None = None,
                             steady_walk: Sequence[float] | None = None,
                             candidate_score: CandidateScore | None = None,
                             unlikely: Sequence[float] | None = None) -> list[Tensor]:
    """Codes (length_i, Q) of each segment, decoded in one batch; segment i is conditioned on embeddings[i] and, when
    given, guided as a walk or run as much as locomotion[i], its residual codes kept in the gait cycle as much as
    steady_walk[i] and its guidance raised as much as unlikely[i]; with `candidate_score`, steady walks keep the best
    of their candidate decodes (``decode_tokens``)."""
    device = next(generator.parameters()).device
    longest = max(lengths)
    condition = torch.zeros(len(lengths), longest, embeddings.shape[-1], device=device)
    for index, length in enumerate(lengths):
        condition[index, :length] = embeddings[index]
    weights, steady, raised = (None if w is None else torch.tensor([float(v) for v in w])
                               for w in (locomotion, steady_walk, unlikely))
    result = decode_tokens(generator, [length * FRAMES_PER_TOKEN for length in lengths], cond_per_token=condition,
                           config=config, rng=rng, locomotion=weights, steady_walk=steady, unlikely=raised,
                           candidate_score=candidate_score, on_progress=on_progress)
    return [result.codes[index, :length].cpu() for index, length in enumerate(lengths)]


def transition_windows(bounds: Sequence[int], num_tokens: int, width: int,
                       context: int) -> list[tuple[int, int, int, int]]:
    """(window start, free start, free end, window end) per group of boundaries, token indices.

    ``bounds`` = the first token of every segment plus ``num_tokens``; the free region of a boundary is
    ``width`` tokens on each side of it; regions that overlap or touch are merged into one window.
    """
    regions: list[list[int]] = []
    for boundary in bounds[1:-1]:
        start, end = max(0, boundary - width), min(num_tokens, boundary + width)
        if regions and start <= regions[-1][1]:
            regions[-1][1] = max(regions[-1][1], end)
        else:
            regions.append([start, end])
    return [(max(0, start - context), start, end, min(num_tokens, end + context)) for start, end in regions]


def inpaint_transitions(generator, codes: Tensor, condition: Tensor, windows: Sequence[tuple[int, int, int, int]],
                        config: DecodingConfig, rng: torch.Generator, on_progress: ProgressCallback | None,
                        locomotion: Tensor | None = None, steady_walk: Tensor | None = None,
                        unlikely: Tensor | None = None) -> Tensor:
    """``codes`` (L, Q) with the free region of every window re-decoded, all windows in one batch.

    ``condition`` (L, E) holds every token's condition vector (its segment's prompt), ``locomotion`` (L,) when given
    its share of walk and run prompts, ``steady_walk`` (L,) its share of those that keep their heading and
    ``unlikely`` (L,) its share of the raised guidance (``decode_tokens``); inside a window everything but the free
    region stays
    fixed, so each window continues the motion on both of its sides.
    """
    device = next(generator.parameters()).device
    layers = codes.shape[-1]
    longest = max(end - start for start, _, _, end in windows)
    fixed = torch.full((len(windows), longest, layers), -1, dtype=torch.int64)
    window_condition = torch.zeros(len(windows), longest, condition.shape[-1], device=device)
    window_locomotion, window_steady, window_unlikely = (None if w is None else torch.zeros(len(windows), longest)
                                                         for w in (locomotion, steady_walk, unlikely))
    for index, (start, free_start, free_end, end) in enumerate(windows):
        fixed[index, : end - start] = codes[start:end]
        fixed[index, free_start - start : free_end - start] = -1
        window_condition[index, : end - start] = condition[start:end]
        for share, windowed in ((locomotion, window_locomotion), (steady_walk, window_steady),
                                (unlikely, window_unlikely)):
            if windowed is not None:
                windowed[index, : end - start] = share[start:end]
    frames = [(end - start) * FRAMES_PER_TOKEN for start, _, _, end in windows]
    result = decode_tokens(generator, frames, cond_per_token=window_condition, fixed_codes=fixed.to(device),
                           config=config, rng=rng, locomotion=window_locomotion, steady_walk=window_steady,
                           unlikely=window_unlikely, on_progress=on_progress)
    decoded = result.codes.cpu()
    out = codes.clone()
    for index, (start, free_start, free_end, _end) in enumerate(windows):
        out[free_start:free_end] = decoded[index, free_start - start : free_end - start]
    return out
