# SPDX-License-Identifier: GPL-3.0-or-later
"""Captions for the action labels of HDM05, the CMU exp-map subset and DeepMimic (see captions.py for
Bandai-Namco labels and CMU descriptions).

Each label maps to third-person verb phrases ("a person ..."); captions combine them with varied subjects and
sentence frames.  Side words are kept exactly (HDM05's ``R``/``L`` suffixes become "right"/"left"), and every
caption is checked to carry the same side words as its phrases.  HDM05 classes without a hand-written phrase
get one from their camelCase name (`hdm05_class_phrase`): ``kickRSide2Reps`` -> "kicks sideways with the right
leg twice".
"""

from __future__ import annotations

import random
import re

from .captions import NEUTRAL_SUBJECTS, third_person

# HDM05 classes of the project's subset (hdm05-subset-jointlearning), several phrasings each.
HDM05_PHRASES: dict[str, tuple[str, ...]] = {
    "depositFloorR": ("puts something down on the floor with the right hand",
                      "bends down and places an object on the floor with the right hand",
                      "sets something down on the ground using the right hand"),
    "elbowToKnee1RepsLelbowStart": ("touches the right knee with the left elbow",
                                    "brings the left elbow down to the right knee",
                                    "does a crunch bringing the left elbow to the right knee"),
    "grabHighR": ("reaches up high and grabs something with the right hand",
                  "stretches the right arm up to grab something high",
                  "grabs an object from a high shelf with the right hand"),
    "hopBothLegs1hops": ("hops once on both legs", "jumps up once with both feet together",
                         "does a small jump on both feet"),
    "jogLeftCircle4StepsRstart": ("jogs in a circle to the left, starting with the right foot",
                                  "jogs four steps around to the left, starting with the right foot",
                                  "runs slowly in a left curve, first stepping with the right foot"),
    "kickLFront1Reps": ("kicks forward with the left leg", "does a front kick with the left foot",
                        "kicks to the front with the left leg"),
    "lieDownFloor": ("lies down on the floor", "gets down and lies on the ground", "lies down flat on the floor"),
    "rotateArmsBothBackward1Reps": ("circles both arms backward", "rotates both arms backwards once",
                                    "swings both arms around in a backward circle"),
    "sneak2StepsLStart": ("sneaks two steps forward, starting with the left foot",
                          "tiptoes forward quietly, first stepping with the left foot",
                          "creeps two steps, starting with the left foot"),
    "squat1Reps": ("squats down once and stands back up", "does a squat", "bends the knees into a squat and rises"),
    "throwBasketball": ("throws a basketball", "throws a ball with both hands", "shoots a basketball"),
}

# Folder labels of the CMU exp-map subset.
CMU_EXPMAP_PHRASES: dict[str, tuple[str, ...]] = {
    "basketball": ("plays basketball", "dribbles and plays basketball", "moves around playing basketball"),
    "basketball_signal": ("makes basketball referee signals", "signals like a basketball referee",
                          "gives referee hand signals"),
    "directing_traffic": ("directs traffic", "directs traffic with arm signals", "waves cars through like a "
                          "traffic officer"),
    "jumping": ("jumps", "jumps up and down", "jumps forward"),
    "running": ("runs", "runs forward", "is running"),
    "soccer": ("plays soccer", "kicks a soccer ball around", "dribbles a football"),
    "walking": ("walks", "walks forward", "is walking"),
    "walking_extra": ("walks around", "walks at a steady pace", "walks forward"),
    "washwindow": ("washes a window", "wipes a window clean", "cleans a window with circular hand motions"),
}

# DeepMimic clip labels (file names without "humanoid3d_"; long walks share their base label).
DEEPMIMIC_PHRASES: dict[str, tuple[str, ...]] = {
    "backflip": ("does a backflip", "flips backwards", "jumps into a back somersault"),
    "cartwheel": ("does a cartwheel", "turns a cartwheel", "performs a cartwheel"),
    "crawl": ("crawls on hands and knees", "crawls forward on the floor", "crawls forward"),
    "dance_a": ("dances", "does a dance", "dances energetically"),
    "dance_b": ("dances", "dances in place", "does a little dance"),
    "dance_spin": ("dances and spins around", "does a spinning dance move", "twirls while dancing"),
    "getup_facedown": ("gets up from lying face down", "stands up from lying on the stomach",
                       "rises from the floor after lying face down"),
    "getup_faceup": ("gets up from lying on the back", "stands up from lying face up",
                     "rises from the floor after lying on the back"),
    "jog": ("jogs forward", "jogs", "runs at an easy pace"),
    "jump": ("jumps forward", "leaps forward with both feet", "jumps"),
    "kick": ("kicks", "does a kick", "kicks forward"),
    "punch": ("throws a punch", "punches forward", "strikes with a fist"),
    "roll": ("does a forward roll", "rolls forward on the ground", "dives into a roll"),
    "run": ("runs forward", "runs", "is running fast"),
    "sideflip": ("does a side flip", "flips sideways in the air", "performs a sideways somersault"),
    "spin": ("spins around", "turns around in place", "spins on the spot"),
    "spinkick": ("does a spinning kick", "spins and kicks", "does a roundhouse kick"),
    "stealthy_walk": ("sneaks forward", "walks stealthily", "creeps forward quietly"),
    "walk": ("walks forward", "walks", "is walking"),
    "zombie_walk": ("walks like a zombie", "shambles forward like a zombie", "staggers forward like a zombie"),
}

_SIDE_WORD = re.compile(r"\b(left|right)\b")
_FRAMES = ("{subject} {phrase}", "{subject} {phrase}.", "{subject} {phrase}")


def _sides(text: str) -> list[str]:
    return sorted(set(_SIDE_WORD.findall(text)))


def captions_from_phrases(phrases: tuple[str, ...], seed: int | str, count: int = 3) -> list[str]:
    """`count` distinct captions (subject + one of `phrases`), deterministic in `seed`; side words kept."""
    if not phrases:
        raise ValueError("no phrases to caption")
    candidates = sorted({f"{subject} {phrase}" for phrase in phrases for subject in NEUTRAL_SUBJECTS})
    rng = random.Random(f"{seed}|{'|'.join(phrases)}")
    rng.shuffle(candidates)
    # Cover every phrasing before repeating one with another subject.
    chosen: list[str] = []
    for phrase in phrases:
        for caption in candidates:
            if caption.endswith(" " + phrase) and caption not in chosen:
                chosen.append(caption)
                break
    rng.shuffle(chosen)
    chosen += [c for c in candidates if c not in chosen]
    chosen = chosen[: max(1, count)]
    for caption, phrase in ((c, next(p for p in phrases if c.endswith(" " + p))) for c in chosen):
        if _sides(caption) != _sides(phrase):
            raise AssertionError(f"caption {caption!r} changed the side words of {phrase!r}")
    return chosen


# ---------------------------------------------------------------------------------------------------------------
# HDM05 camelCase class names -> phrases
# ---------------------------------------------------------------------------------------------------------------

_NUMBER_WORDS = {"1": "once", "2": "twice", "3": "three times", "4": "four times"}
_STEP_NUMBERS = {"1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six", "8": "eight"}
_BODY_PART_OF_VERB = {"kick": "leg", "punch": "hand", "grab": "hand", "deposit": "hand", "hop": "leg",
                      "stand": "leg", "turn": "", "walk": "", "jog": "", "sneak": "", "jump": "", "throw": "hand",
                      "rotate": "", "elbow": "", "clap": "", "sit": "", "lie": "", "skier": "", "shuffle": ""}
_WORD_PHRASES = {"front": "forward", "side": "sideways", "back": "backward", "high": "high", "low": "low",
                 "middle": "at middle height", "floor": "on the floor", "forward": "forward", "backward": "backward",
                 "left": "to the left", "right": "to the right", "circle": "in a circle", "both": "",
                 "legs": "on both legs", "arms": "both arms", "down": "down", "up": "up"}


def split_camel_case(name: str) -> list[str]:
    """'kickLFront1Reps' -> ['kick', 'L', 'Front', '1', 'Reps'] (single capitals stay separate words)."""
    return re.findall(r"[A-Z](?=[A-Z0-9]|$)|[A-Z]?[a-z]+|\d+", name)


def hdm05_class_phrase(name: str) -> str:
    """A third-person phrase for any HDM05 class name; hand-written phrases win where they exist.

    Rules: the first word is the verb; a lone ``L``/``R`` is the side of the acting limb ("with the left leg"),
    ``Lstart``/``LStart``/``Rstart`` the foot a walk starts with; ``<n>Reps``/``<n>hops`` the repetitions,
    ``<n>Steps`` the number of steps; other words become adverbs ("Front" -> "forward").
    """
    if name in HDM05_PHRASES:
        return HDM05_PHRASES[name][0]
    words = split_camel_case(name)
    if not words:
        raise ValueError(f"HDM05 class {name!r} has no words")
    verb = words[0].lower()
    side: str | None = None
    start: str | None = None
    repetitions = steps = ""
    extras: list[str] = []
    index = 1
    while index < len(words):
        word, following = words[index], words[index + 1] if index + 1 < len(words) else ""
        lower = word.lower()
        if word in ("L", "R") and following.lower() == "start":
            start = "left" if word == "L" else "right"
            index += 2
            continue
        if lower in ("lstart", "rstart"):
            start = "left" if lower[0] == "l" else "right"
        elif word in ("L", "R"):
            side = "left" if word == "L" else "right"
        elif word.isdigit() and following.lower() in ("reps", "hops"):
            repetitions = _NUMBER_WORDS.get(word, f"{word} times")
            index += 2
            continue
        elif word.isdigit() and following.lower() == "steps":
            steps = f"{_STEP_NUMBERS.get(word, word)} steps"
            index += 2
            continue
        elif lower in _WORD_PHRASES and _WORD_PHRASES[lower]:
            extras.append(_WORD_PHRASES[lower])
        index += 1
    if verb.endswith("ing"):   # "jumpingJack1Reps" -> "does jumping jacks once"
        nouns = [w.lower() for w in words[1:] if w.isalpha() and len(w) > 1 and w.lower() not in ("reps", "hops")]
        parts = ["does", verb, *nouns[:-1], *[n if n.endswith("s") else n + "s" for n in nouns[-1:]]]
        return " ".join(parts + ([repetitions] if repetitions else []))
    if side and "both arms" in extras:   # "rotateArmsLForward" -> "rotates the left arm forward"
        extras[extras.index("both arms")] = f"the {side} arm"
        side = None
    parts = [third_person(verb)]
    if steps:
        parts.append(steps)
    parts += extras
    if side:
        limb = _BODY_PART_OF_VERB.get(verb, "hand") or "hand"
        parts.append(f"with the {side} {limb}")
    if repetitions:
        parts.append(repetitions)
    if start:
        parts.append(f"starting with the {start} foot")
    return " ".join(parts).replace("  ", " ")


def hdm05_phrases(name: str) -> tuple[str, ...]:
    return HDM05_PHRASES.get(name) or (hdm05_class_phrase(name),)


def deepmimic_label(stem: str) -> str:
    """The label of a DeepMimic motion file stem: 'humanoid3d_long_walk2' -> 'walk', 'humanoid3d_stealthy_walk0'
    -> 'stealthy_walk', 'humanoid3d_long_zombie' -> 'zombie_walk'."""
    label = stem.removeprefix("humanoid3d_").removeprefix("long_")
    label = re.sub(r"\d+$", "", label)
    return {"zombie": "zombie_walk"}.get(label, label)
