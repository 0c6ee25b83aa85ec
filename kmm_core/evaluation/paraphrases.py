# SPDX-License-Identifier: GPL-3.0-or-later
"""Held-out directional prompts: paraphrases that never occur in the training captions.

Training captions come from the templates of ``kmm_core/data/captions.py``; these prompts use other verbs,
subjects and sentence shapes ("lift your left arm above your head"), so a model that only memorised the
template wording cannot pass them.  tests/test_directional.py checks that no paraphrase equals or is contained
in any caption the templates can produce, that none contains a template verb phrase, and that each one parses
to its own intent.

Keys are the Bandai-Namco content labels used by ``directional.DirectionalIntent.content``.  The right-side
prompts are not mechanical mirrors of the left-side ones, so the two sides test different wordings.
"""

from __future__ import annotations

DIRECTIONAL_PARAPHRASES: dict[str, tuple[str, ...]] = {
    "raise-up-left-hand": (
        "lift your left arm above your head",
        "the man holds his left hand high over his head",
        "someone reaches up toward the ceiling with the left arm",
        "a woman stretches her left hand up to the sky",
        "the performer hoists the left arm overhead and keeps it there",
    ),
    "raise-up-right-hand": (
        "put your right hand up in the air",
        "the woman lifts her right arm straight over her head",
        "a dancer reaches high overhead with the right hand",
        "the student holds the right arm up as if asking a question",
        "he elevates his right hand above his head",
    ),
    "wave-left-hand": (
        "the man swings his left hand back and forth in greeting",
        "a woman greets a friend by waving her left palm",
        "someone says hello using only the left hand",
        "the kid waggles the left hand from side to side",
        "wave at the crowd with your left hand",
    ),
    "wave-right-hand": (
        "the woman swings her right hand side to side to say hi",
        "a man greets his neighbour with a wave of the right hand",
        "someone flaps the right hand back and forth to say goodbye",
        "the child happily waves her right palm at the camera",
        "greet the audience by waving your right hand",
    ),
    "walk-turn-left": (
        "the man strolls ahead and then veers off to his left",
        "a woman walking down the hall turns toward her left",
        "someone heads forward and pivots to the left mid-stride",
        "while walking, the person rotates counterclockwise and continues in the new direction",
        "walk a few steps and take the next turn on the left",
    ),
    "walk-turn-right": (
        "the woman walks on and then swerves to her right",
        "a man strides ahead before turning toward the right",
        "someone moving forward pivots right and keeps going",
        "while walking, the person rotates clockwise and continues in the new direction",
        "walk ahead and take the turn on the right",
    ),
    "walk-left": (
        "the man shuffles sideways toward his left",
        "a woman side-steps over to the left without turning",
        "someone slides to the left, facing forward the whole time",
        "the dancer crab-walks to the left",
        "move a few paces to your left while looking straight ahead",
    ),
    "walk-right": (
        "the woman shuffles sideways toward her right",
        "a man side-steps over to the right without turning",
        "someone slides to the right, still facing forward",
        "the boxer moves laterally to the right in small steps",
        "step a couple of paces to your right while looking straight ahead",
    ),
}


def paraphrase_prompts() -> list[tuple[str, str]]:
    """Every (content label, prompt) pair, in a fixed order."""
    return [(content, prompt) for content, prompts in DIRECTIONAL_PARAPHRASES.items() for prompt in prompts]
