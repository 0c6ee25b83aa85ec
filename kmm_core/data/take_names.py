# SPDX-License-Identifier: GPL-3.0-or-later
"""Captions and action checks from a take's descriptive file name (ACCAD's ``Male1_B24_WalkToCrouch``).

A name is camelCase words in the order things happen, ``To`` or ``2`` between the parts: ``WalkToCrouch`` walks,
then crouches; ``Walk2Hop2Walk`` walks, hops and walks on; ``WalkTurnLeft135`` walks and turns 135 degrees to the
left.  `read_take_name` turns it into `TakeStep`s, each with several phrasings and the geometric check of
``evaluation/action_checks.py`` that must pass on the take for the step to be believed (None: nothing to measure,
e.g. standing still).  `take_phrases` joins the steps in order ("walks forward, then crouches down"), one full
phrase per phrasing; ``action_captions.captions_from_phrases`` adds the subjects.

The content label (`ReadTake.content`) is the steps' label words joined by '-' ("walk-crouch"), chosen so that
``checks_for_action`` of the label gives the check of the take's distinctive step ("crouch" -> squat, "lying-getup"
-> getup, "sidestep-left" -> sideways, not "step" -> spin).  A name with a word no rule knows raises ValueError
naming the word; the source reports the file as skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WORD = re.compile(r"[A-Z][a-z]*|[a-z]+|\d+")
_SUFFIXES = re.compile(r"_(?:Take_\d+|Working)$")
_JOINERS = (", then ", " and then ", ", and then ")
TURN_ANGLES = ("45", "90", "135", "180")


@dataclass(frozen=True)
class TakeStep:
    """One thing that happens in a take: its label word(s), phrasings (third person), and its check."""

    label: str
    phrases: tuple[str, ...]
    check: str | None = None      # one of action_checks.CHECK_NAMES or evaluation.take_checks.BOX_CHECK, or None
    side: str | None = None       # "left"/"right" for a sided check (turn, sideways)


@dataclass(frozen=True)
class ReadTake:
    name: str                     # the descriptive part of the file name ("WalkToCrouch")
    steps: tuple[TakeStep, ...]

    @property
    def content(self) -> str:
        return "-".join(step.label for step in self.steps)


def descriptive_part(stem: str) -> str:
    """``Male1_B24_WalkToCrouch`` -> ``WalkToCrouch``; ``Male1_A15_SkipToStand_Take_001`` -> ``SkipToStand``."""
    stem = _SUFFIXES.sub("", stem)
    parts = stem.split("_")
    if len(parts) < 3 or not parts[2]:
        raise ValueError(f"file name {stem!r} is not <set>_<group><n>_<WhatHappens>")
    return "".join(parts[2:])


def _turn(side: str, angle: str) -> TakeStep:
    return TakeStep(f"turn-{side}-{angle}", (f"turns {angle} degrees to the {side}", f"turns {side} by {angle} degrees",
                                             f"makes a {angle}-degree turn to the {side}"), "turn", side)


_TURN_AROUND = TakeStep("turn-around", ("turns around", "turns all the way around", "makes a half turn"), "turn")
_CHANGE_DIRECTION = TakeStep("change-direction", ("changes direction", "turns and changes direction",
                                                  "switches direction"), "turn")
_STOP = TakeStep("stop", ("stops", "comes to a stop", "halts"))


def _locomotion(verb: str, backward: bool, box: bool = False, quick: bool = False) -> TakeStep:
    if box:
        present = "walking" if verb == "walk" else "running"
        return TakeStep(f"{verb}-carry-box", (f"{verb}s carrying a box", f"carries a box while {present}",
                                              f"{verb}s forward holding a box"), "travel" if verb == "walk" else "run")
    if backward:
        return TakeStep(f"{verb}-backward", (f"{verb}s backwards", f"{verb}s backward",
                                             f"{verb}s backwards, facing ahead"), "backward")
    return TakeStep(verb, (f"{verb}s forward", f"{verb}s", f"{verb}s ahead"), "travel" if verb == "walk" else "run")


def _read_steps(words: list[str], name: str) -> list[TakeStep | str]:
    """Steps in order; the separators ``To``/``2`` stay as "|" markers (they matter for stand and crouch)."""
    lower = [w.lower() for w in words]
    steps: list[TakeStep | str] = []
    verb = "walk"      # the locomotion the name last named (a later "Forward" continues it)
    i = 0

    def at(*expected: str) -> bool:
        return tuple(lower[i:i + len(expected)]) == expected

    while i < len(lower):
        word = lower[i]
        if word in ("to", "2"):
            steps.append("|")
            i += 1
        elif word in ("walk", "run"):
            verb = word
            backward = i + 1 < len(lower) and lower[i + 1] in ("back", "backwards", "backward")
            box = at(word, "with", "box")
            steps.append(_locomotion(word, backward, box))
            i += 3 if box else 2 if backward else 1
        elif word == "forward" and steps:
            previous = next(s for s in reversed(steps) if s != "|")
            if previous.label != verb:   # "WalkBackToForward": walks forward again; "RunForward": said already
                steps.append(_locomotion(verb, False))
            i += 1
        elif word in ("turn", "trun"):
            side = lower[i + 1] if i + 1 < len(lower) else ""
            angle = lower[i + 2] if i + 2 < len(lower) else ""
            if side in ("left", "right") and angle in TURN_ANGLES:
                steps.append(_turn(side, angle))
                i += 3
            elif side == "around":
                steps.append(_TURN_AROUND)
                i += 2
            elif side == "change":
                steps.append(_CHANGE_DIRECTION)
                i += 3 if at(word, "change", "direction") else 2
            else:   # "RunBackTurnRunForward": turns to face the other way
                steps.append(_TURN_AROUND)
                i += 1
        elif at("quick", "side", "step") or at("side", "step"):
            quick = word == "quick"
            i += 3 if quick else 2
            side = lower[i] if i < len(lower) else ""
            if side not in ("left", "right"):
                raise ValueError(f"{name}: a side step needs Left or Right after it")
            how = "quickly " if quick else ""
            steps.append(TakeStep(f"sidestep-{side}", (f"{how}sidesteps to the {side}",
                                                       f"{how}steps sideways to the {side}",
                                                       f"{how}moves sideways to the {side}"), "sideways", side))
            i += 1
        elif at("pick", "up", "box") or at("pickup", "box"):
            steps.append(TakeStep("pick-up-box", ("picks up a box from the floor", "bends down and picks up a box",
                                                  "picks a box up off the ground"), "reach_box"))
            i += 2 if word == "pickup" else 3
        elif at("lift", "box"):
            steps.append(TakeStep("lift-box", ("lifts a box from the floor", "bends down and lifts a box up",
                                               "picks a heavy box up off the ground"), "reach_box"))
            i += 2
        elif at("put", "down", "box"):
            steps.append(TakeStep("put-down-box", ("puts a box down on the floor", "bends down and sets a box down",
                                                   "places a box on the ground"), "reach_box"))
            i += 3
        elif word == "crawl":
            direction = lower[i + 1] if i + 1 < len(lower) else ""
            if direction == "forward":
                steps.append(TakeStep("crawl-forward", ("crawls forward on hands and knees", "crawls forward on the "
                                                        "floor", "crawls ahead on all fours"), "crawl"))
            elif direction in ("backward", "backwards"):
                steps.append(TakeStep("crawl-backward", ("crawls backwards on hands and knees",
                                                         "crawls backward on the floor", "crawls back on all fours"),
                                      "crawl"))
            else:
                raise ValueError(f"{name}: Crawl needs Forward or Backward after it")
            i += 2
        elif word == "lie":
            i += 2 if at("lie", "down") else 1
            if i < len(lower) and lower[i] == "to" and lower[i + 1:i + 2] == ["crouch"]:
                steps.append(TakeStep("lying", ("lies on the floor", "lies on the ground", "lies flat on the floor"),
                                      "lie"))
                # no check: the getup check asks for standing at the end, this take ends crouched
                steps.append(TakeStep("getup", ("gets up into a crouch", "rises from the floor to a crouch",
                                                "gets up off the ground into a crouching position")))
                i += 2
            else:
                steps.append(TakeStep("lie-down", ("lies down on the floor", "gets down and lies on the floor",
                                                   "lies down flat on the ground"), "lie"))
        elif word == "crouch":
            steps.append(TakeStep("crouch", ("crouches down", "squats down into a crouch", "gets down into a crouch"),
                                  "squat"))
            i += 1
        elif word in ("skip", "skipping"):
            steps.append(TakeStep("skip", ("skips forward", "skips along", "skips ahead"), "travel"))
            i += 1
        elif word in ("hop", "leap", "jump"):
            phrases = {"hop": ("hops", "does a hop", "hops once"), "leap": ("leaps", "leaps forward",
                                                                            "takes a big leap"),
                       "jump": ("jumps", "jumps up", "does a jump")}[word]
            steps.append(TakeStep(word, phrases, "jump"))
            i += 1
        elif word == "stand":
            steps.append(TakeStep("stand", ("stands still", "stands in place", "stands quietly")))
            i += 1
        elif word == "stop":
            steps.append(_STOP)
            i += 1
        elif word == "sway":
            steps.append(TakeStep("sway", ("sways from side to side while standing", "stands and sways gently",
                                           "shifts the weight from side to side")))
            i += 1
        elif at("swing", "arms"):
            steps.append(TakeStep("idle-armswing", ("stands and swings the arms loosely",
                                                    "swings both arms back and forth while standing",
                                                    "stands, swinging the arms")))
            i += 2
        elif at("look", "around"):
            steps.append(TakeStep("look-around", ("stands and looks around", "looks around while standing",
                                                  "turns the head to look around")))
            i += 2
        else:
            raise ValueError(f"{name}: no caption rule for the word {words[i]!r}")
    return steps


def _in_context(steps: list[TakeStep | str]) -> tuple[TakeStep, ...]:
    """Standing and crouching said as what they are at their place: a crouch before a walk or run is where the take
    starts ("rises from a crouch, then walks forward"), a stand after a walk is a stop."""
    result: list[TakeStep] = []
    for index, step in enumerate(steps):
        if step == "|":
            continue
        later = [s for s in steps[index + 1:] if s != "|"]
        if step.label == "stand" and result and result[-1].check in ("travel", "run", "backward"):
            step = TakeStep("stop-stand", ("stops and stands still", "comes to a stop and stands",
                                           "slows down and stops"))
        elif step.label == "crouch" and later and later[0].check in ("travel", "run", "backward"):
            step = TakeStep("crouch", ("starts in a crouch and stands up", "rises from a crouch",
                                       "stands up from a crouch"), "squat")
        result.append(step)
    return tuple(result)


def read_take_name(stem: str) -> ReadTake:
    """The steps of a take from its file stem (see the module docstring); ValueError for a word no rule knows."""
    name = descriptive_part(stem)
    words = _WORD.findall(name)
    if not words:
        raise ValueError(f"{stem}: no words in the name")
    steps = _in_context(_read_steps(words, name))
    if not steps:
        raise ValueError(f"{stem}: the name describes no action")
    return ReadTake(name, steps)


def take_phrases(take: ReadTake) -> tuple[str, ...]:
    """One full phrase per phrasing: the steps in order, each in its k-th wording, joined by "then" variants."""
    count = max(len(step.phrases) for step in take.steps)
    phrases = []
    for k in range(count):
        parts = [step.phrases[k % len(step.phrases)] for step in take.steps]
        joiner = _JOINERS[k % len(_JOINERS)]
        if len(parts) > 2 and joiner != ", then ":   # "A, B and then C"
            phrases.append(", ".join(parts[:-1]) + joiner + parts[-1])
        else:
            phrases.append(joiner.join(parts))
    return tuple(dict.fromkeys(phrases))
