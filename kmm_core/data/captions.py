# SPDX-License-Identifier: GPL-3.0-or-later
"""Natural captions for labelled motion clips (Bandai-Namco content x style labels).

Each clip gets several captions built from varied templates and synonyms so that the text encoder sees natural
language rather than label strings.  Side words (left/right) are kept exactly: directional contents are the
project's test bed for text-motion alignment, so a caption must never lose or change its side.

Evaluation paraphrases (prompts that never occur in training captions) live in the evaluation package; the
templates here deliberately avoid them.
"""

from __future__ import annotations

import random
import re

# Verb phrases per content label, for a third-person subject ("a person ...").
CONTENT_PHRASES: dict[str, tuple[str, ...]] = {
    "walk": ("walks forward", "walks straight ahead", "is walking forward", "takes steps forward", "strolls forward"),
    "run": ("runs forward", "jogs forward", "is running ahead", "runs straight ahead"),
    "dash": ("sprints forward", "dashes ahead", "runs forward at full speed", "bursts into a sprint"),
    "walk-back": ("walks backward", "steps backwards", "is walking backwards", "moves backward step by step"),
    "walk-left": ("walks sideways to the left", "steps to the left side", "sidesteps to the left",
                  "moves sideways toward the left"),
    "walk-right": ("walks sideways to the right", "steps to the right side", "sidesteps to the right",
                   "moves sideways toward the right"),
    "walk-turn-left": ("walks and turns left", "walks forward then turns to the left", "turns left while walking",
                       "makes a left turn while walking"),
    "walk-turn-right": ("walks and turns right", "walks forward then turns to the right", "turns right while walking",
                        "makes a right turn while walking"),
    "bow": ("bows", "bends forward in a bow", "takes a bow", "bows politely"),
    "bye": ("waves goodbye", "waves a hand to say goodbye", "says goodbye with a wave"),
    "byebye": ("waves goodbye energetically", "waves bye bye with big motions", "waves farewell repeatedly"),
    "guide": ("gestures to show the way", "points the way with an arm", "guides someone with a hand gesture"),
    "respond": ("responds with a gesture", "reacts and answers with a gesture", "acknowledges someone with a gesture"),
    "call": ("calls someone over", "beckons someone to come", "calls out and waves someone closer"),
    "punch": ("throws a punch", "punches forward", "strikes with a fist"),
    "kick": ("kicks", "kicks forward with a leg", "throws a kick"),
    "slash": ("slashes with a sword", "swings an imaginary blade", "makes a slashing attack"),
    "dance-short": ("dances briefly", "does a short dance", "dances a few moves"),
    "dance-long": ("dances", "performs a dance", "dances for a while"),
    "wave-both-hands": ("waves both hands", "waves with both hands", "waves both arms in greeting"),
    "wave-left-hand": ("waves the left hand", "waves with the left hand", "waves hello with the left hand",
                       "raises the left hand and waves"),
    "wave-right-hand": ("waves the right hand", "waves with the right hand", "waves hello with the right hand",
                        "raises the right hand and waves"),
    "raise-up-both-hands": ("raises both hands", "lifts both hands up", "raises both arms above the head"),
    "raise-up-left-hand": ("raises the left hand", "lifts the left hand up", "raises the left arm up high",
                           "puts the left hand up"),
    "raise-up-right-hand": ("raises the right hand", "lifts the right hand up", "raises the right arm up high",
                            "puts the right hand up"),
}

# Manner phrases per style label (placed after the verb phrase) and adjectives (placed before "person").
STYLE_MANNERS: dict[str, tuple[str, ...]] = {
    "normal": ("",),  # "a person bows normally" reads oddly; a normal style simply goes unmentioned
    "happy": ("happily", "in a cheerful way", "joyfully"),
    "sad": ("sadly", "in a sad way", "gloomily"),
    "angry": ("angrily", "in an angry way", "furiously"),
    "proud": ("proudly", "with pride", "in a proud manner"),
    "not-confident": ("timidly", "without confidence", "hesitantly"),
    "masculinity": ("in a masculine way", "with a masculine manner"),
    "masculine": ("in a masculine way", "with a masculine manner"),
    "feminine": ("in a feminine way", "with a feminine manner"),
    "childish": ("childishly", "like a child", "in a childish way"),
    "old": ("like an old person", "slowly like an elderly person", "in an elderly way"),
    "elderly": ("like an old person", "slowly like an elderly person", "in an elderly way"),
    "tired": ("tiredly", "as if tired", "wearily"),
    "exhausted": ("as if exhausted", "in an exhausted way", "wearily"),
    "active": ("actively", "energetically", "with a lot of energy"),
    "youthful": ("youthfully", "in a youthful way", "with youthful energy"),
    "musical": ("like in a musical", "theatrically", "in a musical style"),
    "giant": ("like a giant", "with heavy giant steps", "like a huge giant"),
    "chimpira": ("like a street thug", "with a swaggering thug style", "in a thuggish way"),
}

STYLE_ADJECTIVES: dict[str, tuple[str, ...]] = {
    "normal": ("",), "happy": ("happy", "cheerful"), "sad": ("sad",), "angry": ("angry",), "proud": ("proud",),
    "not-confident": ("shy", "timid"), "masculinity": ("masculine",), "masculine": ("masculine",),
    "feminine": ("feminine",), "childish": ("childish",), "old": ("old", "elderly"), "elderly": ("old", "elderly"),
    "tired": ("tired",), "exhausted": ("exhausted",), "active": ("energetic", "active"), "youthful": ("young",),
    "musical": ("theatrical",), "giant": ("giant",), "chimpira": ("swaggering",),
}

SUBJECTS = ("a person", "someone", "a man", "a woman", "the person", "a figure")

_SIDE_WORD = re.compile(r"\b(left|right)\b")


def _side_words(text: str) -> list[str]:
    return _SIDE_WORD.findall(text)


def captions_for_label(content: str, style: str | None, seed: int | str, count: int = 3) -> list[str]:
    """`count` distinct captions for a content (and optional style) label, deterministic in `seed`.

    Raises KeyError naming the label when it has no phrases, so a new label cannot silently get a wrong caption.
    """
    if content not in CONTENT_PHRASES:
        raise KeyError(f"no caption phrases for content label {content!r}")
    if style is not None and style not in STYLE_MANNERS:
        raise KeyError(f"no caption phrases for style label {style!r}")
    rng = random.Random(f"{seed}|{content}|{style}")
    candidates: list[str] = []
    for phrase in CONTENT_PHRASES[content]:
        for subject in SUBJECTS:
            candidates.append(f"{subject} {phrase}")
            if style is None:
                continue
            for manner in STYLE_MANNERS[style]:
                # Skip doubled manners: "waves bye bye with big motions with a feminine manner",
                # "waves goodbye energetically actively".
                doubled = (manner.startswith("with ") and " with " in f" {phrase} ") or (
                    manner.endswith("ly") and phrase.split()[-1].endswith("ly"))
                if manner and not doubled:
                    candidates.append(f"{subject} {phrase} {manner}")
            for adjective in STYLE_ADJECTIVES[style]:
                if adjective:
                    article = "an" if adjective[0] in "aeiou" else "a"
                    candidates.append(f"{article} {adjective} person {phrase}")
    candidates = sorted(set(candidates))
    rng.shuffle(candidates)
    # Prefer captions that mention the style when there is one, but keep plain ones too for variety.
    chosen = candidates[: max(1, count)]
    expected_sides = _side_words(" ".join(CONTENT_PHRASES[content]))
    for caption in chosen:
        if expected_sides and set(_side_words(caption)) != set(expected_sides):
            raise AssertionError(f"caption {caption!r} lost its side word for content {content!r}")
    return chosen


# ---------------------------------------------------------------------------------------------------------------
# CMU descriptions ("walk", "slow walk/stride", "jump up to grab, reach for, tiptoe") -> captions
# ---------------------------------------------------------------------------------------------------------------

# Subjects for CMU clips: the database does not say who moves, so stay neutral.
NEUTRAL_SUBJECTS = ("a person", "someone", "the person", "a figure")

# A leading modifier of a description's activity and the adverb it becomes after the verb ("slow walk" ->
# "walks slowly", "forward jump" -> "jumps forward").
_MODIFIER_ADVERBS = {
    "slow": "slowly", "brisk": "briskly", "fast": "fast", "quick": "quickly", "careful": "carefully",
    "forward": "forward", "forwards": "forward", "backward": "backward", "backwards": "backward",
    "sideways": "sideways", "sidestep": "sideways", "casual": "casually", "normal": "", "regular": "",
}
# Words after which a verb phrase needs an object to read as a sentence ("reach for" -> "reaches for something").
_NEEDS_OBJECT = {"for", "grab", "at", "to", "with", "pick", "hold", "touch"}
_IRREGULAR_THIRD_PERSON = {"be": "is", "have": "has", "do": "does", "go": "goes"}


def _already_third_person(word: str) -> bool:
    """'jumps' (a description may say "forward jumps") is already conjugated; 'toss' and 'bus' are not."""
    return len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is"))


def third_person(verb: str) -> str:
    """'walk' -> 'walks', 'reach' -> 'reaches', 'carry' -> 'carries' (English third person singular)."""
    if verb in _IRREGULAR_THIRD_PERSON:
        return _IRREGULAR_THIRD_PERSON[verb]
    if _already_third_person(verb):
        return verb
    if verb.endswith(("s", "sh", "ch", "x", "z")):
        return verb + "es"
    if len(verb) > 1 and verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def _activity_phrase(activity: str) -> str:
    """One activity of a description as a third-person predicate: 'slow walk' -> 'walks slowly'."""
    words = activity.split()
    if not words:
        return ""
    if words[0].endswith("ed") and len(words) > 1:
        # An adjective + noun such as "exaggerated stride" describes how: "with an exaggerated stride".
        article = "an" if words[0][0] in "aeiou" else "a"
        return f"with {article} {' '.join(words)}"
    adverb = ""
    if words[0] in _MODIFIER_ADVERBS and len(words) > 1:
        adverb, words = _MODIFIER_ADVERBS[words[0]], words[1:]
    if len(words[0]) > 4 and words[0].endswith("ing"):
        phrase = " ".join(["is", *words])  # "boxing" -> "is boxing", "shaking hands" -> "is shaking hands"
    else:
        phrase = " ".join([third_person(words[0]), *words[1:]])
    if words[-1] in _NEEDS_OBJECT:
        phrase += " something"
    return f"{phrase} {adverb}".strip()


def _description_activities(description: str) -> list[list[str]]:
    """Activities of a description in order, each a list of alternatives ('run/jog' -> ['run', 'jog'])."""
    text = description.lower().strip()
    if " - " in text:  # "playground - climb, swing": the part after the dash lists the activities
        text = text.split(" - ", 1)[1]
    text = re.sub(r"\([^)]*\)", " ", text)  # asides such as "(human subject)" are not activities
    text = re.sub(r"[()\"]", " ", text)
    activities = []
    for part in re.split(r"[,;]| and | then ", text):
        alternatives = [" ".join(alt.split()) for alt in part.split("/")]
        alternatives = [alt for alt in alternatives if alt]
        if alternatives:
            activities.append(alternatives)
    return activities


def description_content(description: str) -> str:
    """A short content key of a CMU description: the verb of its first activity ('slow walk/stride' -> 'walk')."""
    activities = _description_activities(description)
    if not activities:
        raise ValueError(f"description {description!r} names no activity")
    words = activities[0][0].split()
    if words[0] in _MODIFIER_ADVERBS and len(words) > 1:
        words = words[1:]
    verb = words[0]
    if _already_third_person(verb):
        verb = verb[:-2] if verb.endswith(("ches", "shes", "xes")) else verb[:-1]
    return verb


def captions_for_description(description: str, seed: int | str, count: int = 3) -> list[str]:
    """`count` distinct captions for a free-text mocap description, deterministic in `seed`.

    "walk" -> "a person walks"; "run/jog" -> "someone runs" / "a person jogs"; "jump, balance" ->
    "a person jumps and balances".  Side words of the description are kept as they are.
    """
    activities = _description_activities(description)
    if not activities:
        raise ValueError(f"description {description!r} names no activity")
    rng = random.Random(f"{seed}|{description}")
    # Every combination of alternatives, each with every subject and both connectors.
    predicates: list[str] = [""]
    for index, alternatives in enumerate(activities):
        extended = []
        for sofar in predicates:
            for alternative in alternatives:
                phrase = _activity_phrase(alternative)
                if not sofar:
                    extended.append(phrase)
                elif phrase.startswith("with "):
                    extended.append(f"{sofar} {phrase}")
                elif index == len(activities) - 1:
                    extended.append(f"{sofar} and {phrase}")
                else:
                    extended.append(f"{sofar}, {phrase}")
        predicates = sorted(set(extended))[:64]  # bound the combinations of long descriptions
    candidates = sorted({f"{subject} {predicate}" for predicate in predicates for subject in NEUTRAL_SUBJECTS})
    rng.shuffle(candidates)
    chosen = candidates[: max(1, count)]
    # Sides must survive the rewriting of the activities (asides in parentheses are dropped before).
    expected_sides = _side_words(" ".join(alt for alternatives in activities for alt in alternatives))
    for caption in chosen:
        if set(_side_words(caption)) != set(expected_sides):
            raise AssertionError(f"caption {caption!r} changed the side words of description {description!r}")
    return chosen
