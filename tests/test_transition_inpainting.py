# SPDX-License-Identifier: GPL-3.0-or-later
"""Batched transition inpainting (the default timeline mode) with the tiny trained bundle: windows, batching that
gives the same segments as decoding each alone, and fixed tokens that stay fixed."""

from __future__ import annotations

import pytest
import torch

from kmm_core.generation.decoding_engine import GenerationOptions
from kmm_core.generation.timeline import Timeline
from kmm_core.generation.timeline_generator import generate_timeline, planned_steps
from kmm_core.generation.transition_inpainting import (
    decode_segments_together,
    inpaint_transitions,
    transition_windows,
)
from kmm_core.model.configs import DecodingConfig
from kmm_core.model.decoding import decode_tokens
from kmm_core.motion.model_timing import FRAMES_PER_TOKEN

GREEDY = DecodingConfig(steps=3, temperature=0.0)  # no sampling noise: batched and alone must agree exactly


def test_windows_cover_each_boundary_and_merge_overlapping_regions():
    # Segments start at tokens 0, 10, 13, 40 of 50: the free regions around 10 and 13 overlap and merge.
    assert transition_windows([0, 10, 13, 40, 50], 50, width=4, context=5) == [(1, 6, 17, 22), (31, 36, 44, 49)]
    # Clipped at both ends of the timeline.
    assert transition_windows([0, 2, 9], 9, width=4, context=16) == [(0, 0, 6, 9)]
    assert transition_windows([0, 30], 30, width=4, context=16) == []


def test_segments_decoded_together_equal_each_decoded_alone(tiny_model):
    """Padding never leaks between segments: the batched decode gives every segment its own greedy result."""
    generator = tiny_model.generator
    embeddings = torch.randn(3, generator.config.cond_dim, generator=torch.Generator().manual_seed(0))
    lengths = [7, 12, 3]
    together = decode_segments_together(generator, lengths, embeddings, GREEDY, torch.Generator().manual_seed(1),
                                        None)
    for index, length in enumerate(lengths):
        alone = decode_tokens(generator, length * FRAMES_PER_TOKEN,
                              cond_per_token=embeddings[index].expand(1, length, -1), config=GREEDY,
                              rng=torch.Generator().manual_seed(2))
        assert together[index].shape == alone.codes[0].shape
        assert torch.equal(together[index], alone.codes[0])


def test_inpainting_changes_only_the_free_regions(tiny_model):
    generator = tiny_model.generator
    layers = generator.config.num_quantizers
    codes = torch.randint(0, generator.config.codebook_size, (40, layers), generator=torch.Generator().manual_seed(3))
    condition = torch.randn(40, generator.config.cond_dim, generator=torch.Generator().manual_seed(4))
    windows = transition_windows([0, 12, 27, 40], 40, width=3, context=4)
    out = inpaint_transitions(generator, codes, condition, windows, DecodingConfig(steps=3),
                              torch.Generator().manual_seed(5), None)
    free = torch.zeros(40, dtype=torch.bool)
    for _, start, end, _ in windows:
        free[start:end] = True
    assert torch.equal(out[~free], codes[~free])
    assert bool((out[free] >= 0).all()) and bool((out[free] < generator.config.codebook_size).all())
    assert not torch.equal(out[free], codes[free])  # random codes are not what the model predicts


@pytest.mark.parametrize("context", [1, 16])
def test_inpaint_timeline_progress_total_matches_the_batched_decodes(tiny_model, context):
    timeline = Timeline.from_dict({"fps": 20, "segments": [{"prompt": p, "seconds": 1.2} for p in
                                                           ("a person walks", "a person jumps", "a person sits down")]})
    options = GenerationOptions(steps=2, transitions="inpaint", inpaint_context_tokens=context)
    seen = []
    result = generate_timeline(tiny_model, timeline, seed=3, options=options,
                               on_progress=lambda step, total, message: seen.append((step, total)))[0]
    total = planned_steps(tiny_model, timeline, options, options.decoding_config(tiny_model))
    assert seen[-1] == (total, total) and len(seen) == total
    assert result.joints.shape[0] == timeline.total_frames
