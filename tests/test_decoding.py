# SPDX-License-Identifier: GPL-3.0-or-later
"""Iterative decoding with a tiny generator trained on real tokens of the HumanML3D fixture clip."""

from __future__ import annotations

import math

import pytest
import torch
from model_test_data import stack_crops, train_tiny_tokenizer

from kmm_core.common.errors import ConfigError, InputTensorError
from kmm_core.common.progress import GenerationCancelled
from kmm_core.model.configs import DecodingConfig, GeneratorConfig
from kmm_core.model.decoding import (
    _favour_gait_cycle,
    _held_walk_tokens,
    _sample,
    _sample_residual_in_gait_cycle,
    candidate_rows,
    decode_tokens,
    gait_cycle_lag,
)
from kmm_core.model.masked_generator import GuidedModel, MaskedGenerator, guided_logits, token_condition_from_segments

COND_DIM = 16
CODEBOOK = 32
LAYERS = 3
STEPS = 6


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models(normalised_fixture_clip):
    """A tiny tokenizer, and a generator trained to reproduce the tokens of 4 real crops from their sentences."""
    crops = stack_crops(normalised_fixture_clip, (0, 40, 80, 120), 48)
    tokenizer = train_tiny_tokenizer(crops, None, num_quantizers=LAYERS, codebook_size=CODEBOOK)
    codes = tokenizer.encode(crops)
    token_valid = torch.ones(codes.shape[:2], dtype=torch.bool)
    embeddings = tokenizer.token_embeddings(codes)
    sentences = torch.randn(4, COND_DIM, generator=torch.Generator().manual_seed(7))
    generator = MaskedGenerator(GeneratorConfig(codebook_size=CODEBOOK, num_quantizers=LAYERS, cond_dim=COND_DIM,
                                                d_model=64, n_layers=2, backbone="transformer", residual_n_layers=1,
                                                dropout=0.0, random_replace_prob=0.0))
    optimiser = torch.optim.AdamW(generator.parameters(), lr=3e-3)
    rng = torch.Generator().manual_seed(1)
    for _ in range(150):
        out = generator.training_loss(codes, token_valid, sentences, token_embeddings=embeddings, generator=rng)
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
    generator.eval()
    return tokenizer, generator, codes, sentences


def test_reproducible_with_a_seed(models):
    _, generator, _, sentences = models
    config = DecodingConfig(steps=STEPS, temperature=1.0)
    first = decode_tokens(generator, [48, 30], sentence=sentences[:2], config=config, seed=11)
    again = decode_tokens(generator, [48, 30], sentence=sentences[:2], config=config, seed=11)
    other = decode_tokens(generator, [48, 30], sentence=sentences[:2], config=config, seed=12)
    assert torch.equal(first.codes, again.codes)
    assert not torch.equal(first.codes, other.codes)
    assert first.codes.shape == (2, 12, LAYERS)
    assert first.num_frames == [48, 30] and first.token_valid.sum(1).tolist() == [12, 8]
    assert bool((first.codes[1, 8:] == -1).all()) and bool((first.codes[first.token_valid] >= 0).all())


def test_trained_generator_recovers_its_training_tokens(models):
    _, generator, codes, sentences = models
    result = decode_tokens(generator, [48] * 4, sentence=sentences,
                           config=DecodingConfig(steps=STEPS, temperature=0.0, guidance_scale=1.0))
    base_accuracy = float((result.codes[..., 0] == codes[..., 0]).float().mean())
    assert base_accuracy > 0.5, base_accuracy


def test_fixed_tokens_stay_unchanged(models):
    _, generator, codes, sentences = models
    fixed = torch.full((2, 12), -1)
    fixed[:, :3] = codes[:2, :3, 0]  # in-betweening: both ends given
    fixed[:, 9:] = codes[2:, 9:, 0]
    result = decode_tokens(generator, [48, 48], sentence=sentences[:2], fixed_codes=fixed, seed=3,
                           config=DecodingConfig(steps=STEPS, top_k=5))
    given = fixed >= 0
    assert torch.equal(result.codes[..., 0][given], fixed[given])
    # Fixing all layers keeps the residual layers too.
    full = torch.full((2, 12, LAYERS), -1)
    full[:, :4] = codes[:2, :4]
    result = decode_tokens(generator, [48, 48], sentence=sentences[:2], fixed_codes=full, seed=3)
    assert torch.equal(result.codes[:, :4], codes[:2, :4])


def _masked_per_forward(generator, fixed: torch.Tensor, config: DecodingConfig, rng: torch.Generator) -> list[int]:
    """[MASK] tokens the generator's input held at each of its forward calls during one base-layer decode."""
    masked_per_call = []
    hook = generator.token_embedding.register_forward_hook(
        lambda m, args, out: masked_per_call.append(int((args[0] == generator.mask_id).sum())))
    try:
        decode_tokens(generator, fixed.shape[1] * 4, cond_per_token=None, sentence=torch.ones(1, COND_DIM),
                      fixed_codes=fixed, rng=rng, use_residual=False, config=config)
    finally:
        hook.remove()
    return masked_per_call


def test_cosine_schedule_masks_fewer_tokens_each_step(models):
    """Step s masks ceil(cos(pi/2 s/S) n_free) tokens; a step that masks the same tokens as the one before (all 10
    again at step 1) has the same input, so the generator runs once for both."""
    _, generator, codes, _ = models
    fixed = torch.full((1, 12), -1)
    fixed[0, :2] = codes[0, :2, 0]
    masked_per_call = _masked_per_forward(generator, fixed, DecodingConfig(steps=STEPS, guidance_scale=1.0),
                                          torch.Generator().manual_seed(0))
    schedule = [math.ceil(round(math.cos(math.pi / 2 * s / STEPS) * 10, 6)) for s in range(STEPS)]
    assert schedule == [10, 10, 9, 8, 5, 3]  # 10 free tokens
    assert masked_per_call == [10, 9, 8, 5, 3]


def test_a_step_reusing_the_logits_still_draws_its_sample(models):
    """8 free tokens over 10 steps mask all 8 at steps 0-3: the generator runs 7 times, but every step draws its
    Gumbel noise, so the random stream (and with it every later token) is the one a forward per step would use."""
    _, generator, codes, _ = models
    fixed = torch.full((1, 12), -1)
    fixed[0, :4] = codes[0, :4, 0]
    rng = torch.Generator().manual_seed(5)
    masked_per_call = _masked_per_forward(generator, fixed, DecodingConfig(steps=10, guidance_scale=1.0), rng)
    assert masked_per_call == [8, 7, 6, 5, 4, 3, 2]
    expected = torch.Generator().manual_seed(5)
    for _ in range(10):  # one (1, 12, K) uniform draw per step
        torch.rand((1, 12, CODEBOOK), generator=expected)
    assert torch.equal(rng.get_state(), expected.get_state())


def test_a_decode_embeds_its_conditions_once(models):
    """The conditions are the same at every step: embedded once for the base layer's steps and once for all the
    residual layers, and the tokens are those of a decode that embedded them at every call."""
    _, generator, _, sentences = models
    calls = {"base": 0, "residual": 0}
    hooks = [generator.condition.register_forward_hook(lambda *_: calls.__setitem__("base", calls["base"] + 1)),
             generator.residual.condition.register_forward_hook(
                 lambda *_: calls.__setitem__("residual", calls["residual"] + 1))]
    try:
        result = decode_tokens(generator, [48, 40], sentence=sentences[:2], seed=4,
                               config=DecodingConfig(steps=STEPS, guidance_scale=3.0))
    finally:
        for hook in hooks:
            hook.remove()
    assert calls == {"base": 1, "residual": 1}
    # The same decode by hand, every call embedding its own conditions (guided_logits): the same codes.
    valid = result.token_valid
    layers = [result.codes[..., 0]]
    for layer in range(1, LAYERS):
        with torch.no_grad():
            logits = guided_logits(generator.residual, 3.0, torch.stack(layers, dim=-1), layer, sentence=sentences[:2],
                                   cond_per_token=None, token_valid=valid)
        layers.append(logits.argmax(-1).masked_fill(~valid, -1))  # residual layers: temperature 0
    assert torch.equal(torch.stack(layers, dim=-1), result.codes)


def test_equal_rows_of_a_guided_batch_run_once(models):
    """Three samples of one sentence, all masked (a decode's first step): one conditional and one null-condition
    row are run, and every sample gets the logits the whole doubled batch gives; a row whose codes differ runs on
    its own."""
    _, generator, _, sentences = models
    sentence = sentences[:1].expand(3, -1)
    valid = torch.ones(3, 12, dtype=torch.bool)
    codes = torch.full((3, 12), generator.mask_id)
    rows = []
    hook = generator.token_embedding.register_forward_hook(lambda m, args, out: rows.append(args[0].shape[0]))
    try:
        with torch.no_grad():
            guided = GuidedModel(generator, 4.0, sentence=sentence, cond_per_token=None, token_valid=valid)
            logits = guided(codes)
            codes[1, 5] = 3
            changed = guided(codes)
            drop = torch.tensor([False] * 3 + [True] * 3)
            whole = generator(torch.cat([codes, codes]), torch.cat([valid, valid]), torch.cat([sentence, sentence]),
                              drop_condition=drop)
    finally:
        hook.remove()
    assert rows == [2, 4, 6]  # the last: the whole batch, for the comparison
    assert torch.allclose(changed, whole[3:] + 4.0 * (whole[:3] - whole[3:]), atol=1e-5)
    assert torch.equal(logits[0], logits[2]) and torch.equal(changed[0], changed[2])
    assert not torch.allclose(changed[1], logits[1])


def test_classifier_free_guidance(models):
    _, generator, codes, sentences = models
    base, valid = codes[:2, :, 0], torch.ones(2, 12, dtype=torch.bool)
    with torch.no_grad():
        conditional = generator(base, valid, sentences[:2])
        unconditional = generator(base, valid, sentences[:2], drop_condition=torch.ones(2, dtype=torch.bool))
        guided = guided_logits(generator, 4.0, base, sentence=sentences[:2], cond_per_token=None, token_valid=valid)
    assert torch.allclose(guided, unconditional + 4.0 * (conditional - unconditional), atol=1e-4)
    plain = decode_tokens(generator, [48, 48], sentence=sentences[:2], seed=5,
                          config=DecodingConfig(steps=STEPS, guidance_scale=1.0))
    strong = decode_tokens(generator, [48, 48], sentence=sentences[:2], seed=5,
                           config=DecodingConfig(steps=STEPS, guidance_scale=4.0))
    assert not torch.equal(plain.codes, strong.codes)


def test_the_residual_layers_take_their_own_guidance(models):
    """`residual_guidance_scale` guides the residual layers alone: the base layer's codes stay those of
    `guidance_scale`, and None means the same scale for both."""
    _, generator, _, sentences = models

    def decode(**settings):
        return decode_tokens(generator, [48, 48], sentence=sentences[:2], seed=5,
                             config=DecodingConfig(steps=STEPS, temperature=1.0, **settings)).codes

    strong = decode(guidance_scale=4.0)
    assert torch.equal(decode(guidance_scale=4.0, residual_guidance_scale=None), strong)
    assert torch.equal(decode(guidance_scale=4.0, residual_guidance_scale=4.0), strong)
    mixed = decode(guidance_scale=4.0, residual_guidance_scale=0.0)
    assert torch.equal(mixed[..., 0], strong[..., 0])
    assert not torch.equal(mixed[..., 1:], strong[..., 1:])
    with pytest.raises(ConfigError, match="residual_guidance_scale"):
        DecodingConfig(residual_guidance_scale=-1.0)


def test_walk_and_run_tokens_take_their_share_of_the_guidance(models):
    """`locomotion_guidance_factor` scales the guidance of the tokens `locomotion` weighs (walk and run prompts'):
    a row of walk tokens decodes as the whole batch would at the lower scale, a row of other tokens as shipped."""
    _, generator, codes, sentences = models
    base, valid = codes[:2, :, 0], torch.ones(2, 12, dtype=torch.bool)
    with torch.no_grad():
        per_token = guided_logits(generator, torch.tensor([[4.0] * 12, [2.0] * 12]), base, sentence=sentences[:2],
                                  cond_per_token=None, token_valid=valid)
        strong = guided_logits(generator, 4.0, base, sentence=sentences[:2], cond_per_token=None, token_valid=valid)
        weak = guided_logits(generator, 2.0, base, sentence=sentences[:2], cond_per_token=None, token_valid=valid)
    assert torch.allclose(per_token[0], strong[0], atol=1e-5) and torch.allclose(per_token[1], weak[1], atol=1e-5)

    def decode(locomotion=None, **settings):
        return decode_tokens(generator, [48, 48], sentence=sentences[:2], seed=5, locomotion=locomotion,
                             config=DecodingConfig(steps=STEPS, temperature=1.0, **settings)).codes

    walk_first = torch.tensor([[1.0] * 12, [0.0] * 12])
    shipped, halved = decode(guidance_scale=4.0), decode(guidance_scale=2.0)
    mixed = decode(walk_first, guidance_scale=4.0, locomotion_guidance_factor=0.5)
    assert torch.equal(mixed[0], halved[0]) and torch.equal(mixed[1], shipped[1])
    # A (B,) share is every token of its row's.
    assert torch.equal(decode(torch.tensor([1.0, 0.0]), guidance_scale=4.0, locomotion_guidance_factor=0.5), mixed)
    assert not torch.equal(shipped[0], halved[0])
    # A factor of 1, or no walk tokens, leaves the decode as it was.
    assert torch.equal(decode(walk_first, guidance_scale=4.0), shipped)
    assert torch.equal(decode(torch.zeros(2, 12), guidance_scale=4.0, locomotion_guidance_factor=0.5), shipped)
    # The repeat penalty on walk tokens alone: the walk row as with the penalty everywhere, the other as without.
    penalised = decode(guidance_scale=4.0, repeat_penalty=3.0)
    walk_penalty = decode(walk_first, guidance_scale=4.0, locomotion_repeat_penalty=3.0)
    assert torch.equal(walk_penalty[0], penalised[0]) and torch.equal(walk_penalty[1], shipped[1])
    assert not torch.equal(penalised[0], shipped[0])
    with pytest.raises(ConfigError, match="locomotion_repeat_penalty"):
        DecodingConfig(locomotion_repeat_penalty=-1.0)
    with pytest.raises(InputTensorError, match="locomotion"):
        decode(torch.ones(2, 5), locomotion_guidance_factor=0.5)
    with pytest.raises(ConfigError, match="locomotion_guidance_factor"):
        DecodingConfig(locomotion_guidance_factor=2.5)
    with pytest.raises(ValueError, match="per-token scale"):
        guided_logits(generator, torch.ones(2, 5), base, sentence=sentences[:2], cond_per_token=None,
                      token_valid=valid)


def test_tokens_of_prompts_the_model_rarely_performs_take_the_raised_guidance(models):
    """`unlikely_guidance_factor` raises the guidance of the tokens `unlikely` weighs (prompts whose nearest captions
    the model rarely performs at the scale): such a row decodes as the whole batch would at the raised scale, the
    other as shipped; with a walk's lower share both apply."""
    _, generator, _, sentences = models

    def decode(unlikely=None, locomotion=None, **settings):
        return decode_tokens(generator, [48, 48], sentence=sentences[:2], seed=5, unlikely=unlikely,
                             locomotion=locomotion, config=DecodingConfig(steps=STEPS, temperature=1.0, **settings)).codes

    first = torch.tensor([[1.0] * 12, [0.0] * 12])
    shipped, doubled = decode(guidance_scale=4.0), decode(guidance_scale=8.0)
    mixed = decode(first, guidance_scale=4.0, unlikely_guidance_factor=2.0)
    assert torch.equal(mixed[0], doubled[0]) and torch.equal(mixed[1], shipped[1])
    assert not torch.equal(shipped[0], doubled[0])
    assert torch.equal(decode(torch.tensor([1.0, 0.0]), guidance_scale=4.0, unlikely_guidance_factor=2.0), mixed)
    # A factor of 1 (the default), or no such token, leaves the decode as it was.
    assert torch.equal(decode(first, guidance_scale=4.0), shipped)
    assert torch.equal(decode(torch.zeros(2, 12), guidance_scale=4.0, unlikely_guidance_factor=2.0), shipped)
    # Both factors multiply: a walk token of such a prompt at 4 x 0.5 x 2.
    assert torch.equal(decode(first, first, guidance_scale=4.0, unlikely_guidance_factor=2.0,
                              locomotion_guidance_factor=0.5)[0], shipped[0])
    with pytest.raises(InputTensorError, match="unlikely: expected per-token weights"):
        decode(torch.ones(2, 5), unlikely_guidance_factor=2.0)
    for factor in (0.5, 4.5, float("nan")):
        with pytest.raises(ConfigError, match="unlikely_guidance_factor"):
            DecodingConfig(unlikely_guidance_factor=factor)


def test_gait_cycle_lag_is_where_settled_codes_agree_most():
    # A real walk's codes (the shipped tokenizer on "a person walks forward", benchmarks/results/walk_tokens.txt):
    # its cycle is 5 tokens (one second).
    walk = torch.tensor([121, 65, 224, 116, 238, 141, 202, 116, 168, 180, 65, 129, 116, 168, 141, 202, 224, 116, 238,
                         141, 202, 116, 168, 180, 65, 189, 116, 168, 141, 202])
    everything = torch.ones_like(walk, dtype=torch.bool)
    assert gait_cycle_lag(walk, everything) == 5
    # Only settled tokens count: with every other one masked the odd lags see no pair, and none agree at 4, 6, 8.
    assert gait_cycle_lag(walk, torch.arange(30) % 2 == 0) is None
    assert gait_cycle_lag(torch.arange(30), everything) is None  # no code comes back: no cycle
    assert gait_cycle_lag(walk[:3], everything) is None  # shorter than the shortest cycle


def test_a_walk_token_is_pulled_to_the_code_one_cycle_away_in_its_own_segment():
    mask = 99
    ids = torch.tensor([[7, 8, 9, 7, 8, 9, mask, mask, mask, 1, 2, mask, 5, 6]])
    is_mask = ids == mask
    bonus = torch.tensor([[2.0] * 9 + [0.0] + [1.0] * 4])  # two walk segments: tokens 0-8 and 10-13
    out = _favour_gait_cycle(torch.zeros(1, 14, 100), ids, is_mask, mask, bonus)
    # Segment 1 repeats every 3 tokens (no lag of 3-8 is longer than its settled pairs allow another), so masked
    # tokens 6-8 take the codes of tokens 3-5; segment 2 (2, ?, 5, 6) has no agreeing pair: nothing; token 9 has
    # no bonus.
    assert out.nonzero().tolist() == [[0, 6, 7], [0, 7, 8], [0, 8, 9]]
    assert out[0, 6, 7] == 2.0


def test_walk_tokens_keep_their_cycle_with_the_period_bonus():
    """`locomotion_period_bonus` on the walk row makes its codes come back one cycle later far more than without (a
    generator whose head gives every code even odds, so only the bonus repeats a code); the other row decodes as
    shipped."""
    generator, sentences = _even_odds_generator()

    def decode(**settings):
        return decode_tokens(generator, [160, 160], sentence=sentences, seed=3, locomotion=torch.tensor([1.0, 0.0]),
                             config=DecodingConfig(steps=STEPS, temperature=1.0, **settings)).codes[..., 0]

    shipped, cycled = decode(), decode(locomotion_period_bonus=20.0)
    assert torch.equal(cycled[1], shipped[1])
    assert agreement(shipped[0]) < 0.3 < 0.7 < agreement(cycled[0])
    with pytest.raises(ConfigError, match="locomotion_period_bonus"):
        DecodingConfig(locomotion_period_bonus=-1.0)
    with pytest.raises(ConfigError, match="locomotion_period_bonus"):
        DecodingConfig(locomotion_period_bonus=101.0)


def test_steady_walks_take_the_extra_base_pull():
    """`steady_walk_period_bonus` adds to the base layer's pull on a steady walk row only: its codes come back one
    cycle later more often than with the walk's own pull alone, a walk that turns (a walk, not a steady one) decodes
    as with the walk's pull alone, and at 0 or with no steady walk given nothing changes."""
    generator, sentences = _even_odds_generator()
    first_row_steady = torch.tensor([1.0, 0.0])

    def decode(steady_walk=first_row_steady, **settings):
        return decode_tokens(generator, [160, 160], sentence=sentences, seed=3, locomotion=torch.tensor([1.0, 1.0]),
                             steady_walk=steady_walk,
                             config=DecodingConfig(steps=STEPS, temperature=1.0, locomotion_period_bonus=2.0,
                                                   **settings)).codes[..., 0]

    walk_pull, steady_pull = decode(), decode(steady_walk_period_bonus=20.0)
    assert torch.equal(decode(steady_walk_period_bonus=0.0), walk_pull)
    assert torch.equal(decode(None, steady_walk_period_bonus=20.0), walk_pull)
    assert torch.equal(steady_pull[1], walk_pull[1])
    assert agreement(walk_pull[0]) < 0.5 < 0.7 < agreement(steady_pull[0])
    for bad in (-1.0, 101.0, math.inf):
        with pytest.raises(ConfigError, match="steady_walk_period_bonus"):
            DecodingConfig(steady_walk_period_bonus=bad)


def _even_odds_generator() -> tuple[MaskedGenerator, torch.Tensor]:
    """A generator whose head gives every code even odds (only a bonus repeats a code), and two sentences."""
    torch.manual_seed(0)
    generator = MaskedGenerator(GeneratorConfig(codebook_size=CODEBOOK, num_quantizers=1, cond_dim=COND_DIM,
                                                d_model=32, n_layers=1, backbone="transformer", dropout=0.0))
    with torch.no_grad():
        generator.head[-1].weight.zero_()
        generator.head[-1].bias.zero_()
    return generator, torch.randn(2, COND_DIM, generator=torch.Generator().manual_seed(7))


def agreement(codes: torch.Tensor) -> float:
    """The share of codes equal to the one a gait cycle (`gait_cycle_lag`, else 3 tokens) later."""
    lag = gait_cycle_lag(codes, torch.ones_like(codes, dtype=torch.bool)) or 3
    return float((codes[:-lag] == codes[lag:]).float().mean())


def test_a_walk_tokens_residual_codes_take_their_chains_consensus():
    """The residual layer's pull: in a walk segment whose base codes repeat every 3 tokens, tokens 3 apart whose lower
    layers repeat form a chain, and every token of a chain takes the chain's consensus code (the largest sum of
    log-probabilities over it) when the bonus outweighs its own preference; a token in no chain, a token outside the
    segment and a row with no bonus are drawn as `_sample` draws them, with the same noise."""
    logits = torch.randn(2, 12, 40, generator=torch.Generator().manual_seed(5))
    base = torch.tensor([[4, 5, 6] * 4] * 2)
    lower = torch.stack([base, torch.zeros_like(base)], dim=-1)  # (B, L, 2): base and one residual layer
    lower[0, 7, 1] = 3  # token 7's first residual differs from tokens 4 and 10: it breaks the chain 1-4-7-10
    bonus = torch.zeros(2, 12)
    bonus[0, :11] = 50.0  # row 0: a walk of tokens 0-10 (token 11 is another prompt's); row 1: no walk
    chains = ([0, 3, 6, 9], [1, 4], [2, 5, 8])
    for temperature in (0.0, 1.0):
        plain, _ = _sample(logits, temperature, None, torch.Generator().manual_seed(9))
        codes = _sample_residual_in_gait_cycle(logits, lower, bonus, temperature, None,
                                               torch.Generator().manual_seed(9))
        drawn = [7, 10, 11]  # alone in their chain, or not a walk token
        assert torch.equal(codes[1], plain[1]) and torch.equal(codes[0, drawn], plain[0, drawn])
        for chain in chains:
            consensus = int(logits[0, chain].log_softmax(dim=-1).sum(dim=0).argmax())
            assert codes[0, chain].tolist() == [consensus] * len(chain), (temperature, chain)
        assert not torch.equal(codes[0], plain[0])


def test_walk_residual_layers_keep_their_cycle_with_the_residual_period_bonus(models):
    """`locomotion_residual_period_bonus` makes a steady walk row's residual codes repeat one cycle later where its
    lower layers do, the base layer is drawn as without it, the other row (a walk that turns: a walk, not a steady
    one) decodes as before; at 0, or with no steady walk given, nothing changes."""
    _, generator, _, sentences = models
    locomotion, steady = torch.tensor([1.0, 1.0]), torch.tensor([1.0, 0.0])

    def decode(steady_walk=steady, **settings):
        return decode_tokens(generator, [160, 160], sentence=sentences[:2], seed=3, locomotion=locomotion,
                             steady_walk=steady_walk,
                             config=DecodingConfig(steps=STEPS, temperature=1.0, locomotion_period_bonus=20.0,
                                                   **settings)).codes

    base_cycle, cycled, off = decode(), decode(locomotion_residual_period_bonus=20.0), \
        decode(locomotion_residual_period_bonus=0.0)
    assert torch.equal(base_cycle, off)
    assert torch.equal(decode(None, locomotion_residual_period_bonus=20.0), base_cycle)
    assert torch.equal(cycled[..., 0], base_cycle[..., 0]) and torch.equal(cycled[1], base_cycle[1])
    walk = cycled[0]
    lag = gait_cycle_lag(walk[:, 0], torch.ones(walk.shape[0], dtype=torch.bool))
    assert lag is not None

    def residual_agreement(codes):
        repeated = (codes[lag:, :1] == codes[:-lag, :1]).all(-1)
        return float((codes[:-lag, 1][repeated] == codes[lag:, 1][repeated]).float().mean()), int(repeated.sum())

    agree_before, repeats = residual_agreement(base_cycle[0])
    agree_after, _ = residual_agreement(walk)
    # A residual the generator is sure of by more than the bonus keeps its own code (the tiny model's are: 1 of 37)
    assert repeats >= 10 and agree_before < 0.8 < 0.95 < agree_after
    with pytest.raises(ConfigError, match="locomotion_residual_period_bonus"):
        DecodingConfig(locomotion_residual_period_bonus=101.0)


def test_progress_and_cancellation(models):
    _, generator, _, sentences = models
    calls = []
    decode_tokens(generator, 40, sentence=sentences[:1], seed=1, config=DecodingConfig(steps=STEPS),
                  on_progress=lambda step, total, message: calls.append((step, total, message)))
    total = STEPS + LAYERS - 1
    assert calls == [(s, total, "decoding") for s in range(1, total + 1)]
    seen = []

    generator.train()
    with pytest.raises(GenerationCancelled, match="step 3 of"):
        decode_tokens(generator, 40, sentence=sentences[:1], seed=1, config=DecodingConfig(steps=STEPS),
                      on_progress=lambda step, total, message: seen.append(step), should_cancel=lambda: seen[-1] >= 3)
    assert seen == [1, 2, 3] and generator.training  # the caller's mode is restored
    generator.eval()

    def raising(step, total, message):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        decode_tokens(generator, 40, sentence=sentences[:1], on_progress=raising)


def test_per_token_conditions_and_decoding_to_features(models):
    tokenizer, generator, _, sentences = models
    per_token = token_condition_from_segments(sentences[:2], [(0, 24), (32, 60)], num_tokens=15)
    result = decode_tokens(generator, 58, cond_per_token=per_token.unsqueeze(0), seed=2,
                           config=DecodingConfig(steps=STEPS))
    assert result.codes.shape == (1, 15, LAYERS)
    with torch.no_grad():
        features = tokenizer.decode(result.codes, num_frames=58)
    assert features.shape == (1, 58, 263) and bool(torch.isfinite(features).all())
    base_only = decode_tokens(generator, 58, cond_per_token=per_token.unsqueeze(0), seed=2, use_residual=False,
                              config=DecodingConfig(steps=STEPS))
    assert base_only.codes.shape == (1, 15, 1)
    assert torch.equal(base_only.codes[..., 0], result.codes[..., 0])  # same seed, same base layer


def test_mamba_generator_decodes_with_guidance(models):
    _, _, codes, sentences = models
    torch.manual_seed(0)
    generator = MaskedGenerator(GeneratorConfig(codebook_size=CODEBOOK, num_quantizers=LAYERS, cond_dim=COND_DIM,
                                                d_model=32, n_layers=1, backbone="mamba", residual_n_layers=1))
    result = decode_tokens(generator, [44, 20], sentence=sentences[:2], seed=4,
                           config=DecodingConfig(steps=3, guidance_scale=4.0, top_k=8))
    assert result.codes.shape == (2, 11, LAYERS) and bool((result.codes[1, 5:] == -1).all())
    assert bool((result.codes[result.token_valid] >= 0).all())


def test_bad_requests_are_named(models):
    _, generator, codes, sentences = models
    with pytest.raises(ConfigError, match="num_frames"):
        decode_tokens(generator, 0, sentence=sentences[:1])
    beyond = torch.full((2, 12), -1)
    beyond[1, 11] = 3
    with pytest.raises(InputTensorError, match="sample 1 fixes token 11"):
        decode_tokens(generator, [48, 40], sentence=sentences[:2], fixed_codes=beyond)
    with pytest.raises(InputTensorError, match=r"expected \(1, 10\)"):
        decode_tokens(generator, [40], sentence=sentences[:1], fixed_codes=beyond[:1])
    with pytest.raises(InputTensorError, match="outside the codebook"):
        decode_tokens(generator, [48], sentence=sentences[:1], fixed_codes=torch.full((1, 12), CODEBOOK))
    with pytest.raises(InputTensorError, match="sentence"):
        decode_tokens(generator, [48], sentence=sentences[:1, :5])
    with pytest.raises(ConfigError, match="steps"):
        DecodingConfig.from_dict({"steps": 0})


def _settling_per_step(generator, config: DecodingConfig, seed: int) -> list[torch.Tensor]:
    """The tokens each generator call's input settled (held [MASK] in the call before, a code in this one)."""
    inputs = []
    hook = generator.token_embedding.register_forward_hook(lambda m, args, out: inputs.append(args[0][0].clone()))
    try:
        result = decode_tokens(generator, 48, sentence=torch.ones(1, COND_DIM), fixed_codes=torch.full((1, 12), -1),
                               rng=torch.Generator().manual_seed(seed), use_residual=False, config=config)
    finally:
        hook.remove()
    assert bool((result.codes[..., 0] >= 0).all())  # every token decoded
    masks = [ids == generator.mask_id for ids in inputs]
    return [before & ~after for before, after in zip(masks, masks[1:], strict=False)]


def test_spaced_commits_never_settle_two_neighbours_at_once(models):
    """Plain parallel decoding settles neighbouring tokens at the same step (each drawn without seeing the other:
    a walk's neighbours then repeat one code); with ``spaced_commits`` the less confident of two waits a step (only
    the tokens left masked at the last step, never seen by a later call, settle together)."""
    _, generator, _, _ = models
    plain = DecodingConfig(steps=STEPS, guidance_scale=1.0)
    spaced = DecodingConfig(steps=STEPS, guidance_scale=1.0, spaced_commits=True)
    together = [bool((s[:-1] & s[1:]).any()) for seed in range(4) for s in _settling_per_step(generator, plain, seed)]
    assert any(together)
    for seed in range(4):
        settling = _settling_per_step(generator, spaced, seed)
        assert not any(bool((s[:-1] & s[1:]).any()) for s in settling)
        assert sum(int(s.sum()) for s in settling) > 0


def test_crowded_commits_keep_the_more_confident_neighbour():
    from kmm_core.model.decoding import _crowded_commits

    settling = torch.tensor([[True, True, False, True, True, True, False]])
    scores = torch.tensor([[0.2, 0.9, 0.5, 0.4, 0.4, 0.1, 0.3]])
    # 0 waits for 1; 3 and 4 tie (the left one settles, 4 waits); 5 waits for the more confident 4.
    assert _crowded_commits(settling, scores).tolist() == [[True, False, False, False, True, True, False]]
    with pytest.raises(ConfigError, match="spaced_commits"):
        DecodingConfig(spaced_commits="yes")


def test_left_to_right_commits_settle_tokens_in_time_order(models):
    """``commit_order = "left_to_right"`` (a measured candidate for the walk's rhythm): every step settles the
    earliest tokens still masked, never one after a token still masked."""
    _, generator, _, _ = models
    config = DecodingConfig(steps=STEPS, guidance_scale=1.0, commit_order="left_to_right")
    settled = torch.zeros(12, dtype=torch.bool)
    for settling in _settling_per_step(generator, config, seed=3):
        settled |= settling[0]
        first_masked = int((~settled).nonzero()[0]) if not bool(settled.all()) else 12
        assert bool(settled[:first_masked].all()) and not bool(settled[first_masked:].any())
    with pytest.raises(ConfigError, match="commit_order"):
        DecodingConfig(commit_order="random")


def test_repeat_penalty_lowers_only_the_codes_settled_neighbours_hold(models):
    from kmm_core.model.decoding import _penalise_repeats

    mask_id = 9
    ids = torch.tensor([[2, mask_id, 3, mask_id, -1]])  # -1: padding, never a neighbour
    logits = torch.zeros(1, 5, 5)
    out = _penalise_repeats(logits, ids, ids == mask_id, mask_id, 1.5)
    expected = torch.zeros(1, 5, 5)
    expected[0, 1, 2] = expected[0, 1, 3] = expected[0, 3, 3] = -1.5  # token 1 sees 2 and 3, token 3 sees 3
    assert torch.equal(out, expected) and torch.equal(logits, torch.zeros(1, 5, 5))  # the cached logits untouched
    # On the trained generator: a large penalty leaves fewer tokens equal to their neighbour (tokens of the last
    # step settle together, unseen by each other).
    _, generator, _, sentences = models
    repeats = {}
    for penalty in (0.0, 100.0):
        config = DecodingConfig(steps=12, guidance_scale=1.0, repeat_penalty=penalty, temperature=0.0)
        base = decode_tokens(generator, [48] * 4, sentence=sentences, config=config, seed=0,
                             use_residual=False).codes[..., 0]
        repeats[penalty] = int((base[:, 1:] == base[:, :-1]).sum())
    assert repeats[100.0] < repeats[0.0]
    with pytest.raises(ConfigError, match="repeat_penalty"):
        DecodingConfig(repeat_penalty=-1)


def test_held_walk_tokens_are_the_middles_of_three_alike():
    drawn = torch.tensor([[4, 4, 4, 4, 7, 7, 1, 1, 1, 2]])
    is_mask = torch.tensor([[True] * 9 + [False]])
    walk = torch.tensor([[True] * 7 + [False] * 3])
    # Tokens 1 and 2 sit between two 4s; token 5 is one of a pair (a pair is part of a real step); token 7 sits
    # between two 1s but is not a walk token; the ends have one neighbour.
    assert _held_walk_tokens(drawn, is_mask, walk).nonzero()[:, 1].tolist() == [1, 2]
    assert not _held_walk_tokens(drawn, torch.zeros_like(is_mask), walk).any()


def test_walk_holds_settle_last_breaks_up_held_codes():
    """A generator that favours one code fills a walk with runs of it; with `walk_holds_settle_last` a token drawn
    alike both neighbours waits and is drawn again beside settled neighbours (the repeat penalty then sees them):
    far fewer tokens sit between two of their own code.  The other row (no walk) decodes as without it."""
    generator, sentences = _even_odds_generator()
    with torch.no_grad():
        generator.head[-1].bias[0] = 4.0  # one code takes most of the mass

    def decode(**settings):
        return decode_tokens(generator, [160, 160], sentence=sentences, seed=3, locomotion=torch.tensor([1.0, 0.0]),
                             config=DecodingConfig(steps=STEPS, temperature=1.0, locomotion_period_bonus=0.5,
                                                   locomotion_repeat_penalty=2.0, **settings)).codes[..., 0]

    def held(codes):
        return int(((codes[1:-1] == codes[:-2]) & (codes[1:-1] == codes[2:])).sum())

    plain, waiting = decode(), decode(walk_holds_settle_last=True)
    assert torch.equal(plain[1], waiting[1])
    assert held(waiting[0]) * 3 < held(plain[0])
    with pytest.raises(ConfigError, match="walk_holds_settle_last"):
        DecodingConfig(walk_holds_settle_last="yes")


def test_steady_walks_keep_the_best_scored_of_their_candidate_decodes():
    """`steady_walk_candidates` N draws N - 1 more decodes of each steady walk row and keeps the best-scored one: the
    kept codes score the highest of every candidate the score saw, the first decode wins a tie, the other row and the
    caller's generator are exactly as without it, and N = 1 or no score decodes as before."""
    generator, sentences = _even_odds_generator()
    config = DecodingConfig(steps=STEPS, temperature=1.0)
    seen = []

    def twos(codes, rows):  # a stand-in score: how many base codes are even
        values = [float((candidate[..., 0] % 2 == 0).sum()) for candidate in codes]
        seen.append((list(rows), values, codes.clone()))
        return values

    def decode(score=twos, **settings):
        rng = torch.Generator().manual_seed(3)
        codes = decode_tokens(generator, [160, 120], sentence=sentences, rng=rng, steady_walk=torch.tensor([1.0, 0.0]),
                              candidate_score=score, config=DecodingConfig(steps=STEPS, temperature=1.0,
                                                                           **settings)).codes
        return codes, rng.get_state()

    (before, state), (one, one_state) = decode(None), decode(steady_walk_candidates=1)
    assert torch.equal(one, before) and torch.equal(one_state, state) and not seen
    best, best_state = decode(steady_walk_candidates=4)
    rows, values, candidates = seen[-1]
    assert rows == [0] * 4 and torch.equal(candidates[0], before[0])  # the first decode is the first candidate
    assert len({tuple(c[..., 0].tolist()) for c in candidates}) == 4  # the extra decodes differ from it and each other
    assert torch.equal(best[0], candidates[values.index(max(values))]) and max(values) > values[0]
    assert torch.equal(best[1], before[1]) and torch.equal(best_state, state)
    tied, _ = decode(lambda codes, rows: [1.0] * len(rows), steady_walk_candidates=4)
    assert torch.equal(tied, before)
    assert torch.equal(decode(steady_walk_candidates=4)[0], best)  # the extra decodes are seeded: reproducible
    with pytest.raises(InputTensorError, match="candidate_score: expected 4 finite scores"):
        decode(lambda codes, rows: [1.0], steady_walk_candidates=4)
    with pytest.raises(InputTensorError, match="candidate_score"):
        decode(lambda codes, rows: [math.nan] * len(rows), steady_walk_candidates=4)
    for bad in (0, 9, 2.5, True, "2"):
        with pytest.raises(ConfigError, match="steady_walk_candidates"):
            DecodingConfig(steady_walk_candidates=bad)
    assert config.steady_walk_candidates == 1


def test_candidate_rows_are_the_rows_whose_free_tokens_are_all_steady():
    config = DecodingConfig(steady_walk_candidates=3)
    valid = torch.ones(4, 6, dtype=torch.bool)
    valid[3, 4:] = False
    fixed = torch.full((4, 6, 1), -1)
    fixed[2] = 5  # every token given: nothing to draw
    fixed[1, :2] = 5  # the tokens that are not steady are given: the free ones are all steady
    steady = torch.tensor([[1.0] * 6, [0.0, 0.0] + [1.0] * 4, [1.0] * 6, [1.0] * 4 + [0.0] * 2])
    assert candidate_rows(config, steady, fixed, valid) == [0, 1, 3]
    steady[0, 5] = 0.4  # one free token is less than half a steady walk's
    assert candidate_rows(config, steady, fixed, valid) == [1, 3]
    assert candidate_rows(DecodingConfig(), steady, fixed, valid) == []
    assert candidate_rows(config, None, fixed, valid) == []
    assert candidate_rows(config, torch.tensor([1.0, 0.0, 0.0, 0.0]), fixed, valid) == [0]
