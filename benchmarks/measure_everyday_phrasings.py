# SPDX-License-Identifier: GPL-3.0-or-later
"""The everyday phrasing suite: prompts as animators write them, each judged by geometry, and whether the product
warned before generating.

Each phrasing of SUITE names what must be seen with a check label (a content label the geometric checks know:
`kmm_core/evaluation/action_checks.py` `checks_for_action`, its side from `label_side`); it is generated alone
through the product's `generate_timeline` (clean-up on), SECONDS long at 20 fps, seeds 0..N-1, and passes when at
least two thirds of its seeds pass the check (`take_checks.step_result`: the whole take or its first 3-second part
that passes; a walk or run whose label names no direction also fails when it goes mostly sideways,
`CRAB_WALK_FRACTION`, and a take that puts a foot over the head fails every check whose real clips never do,
`action_checks.foot_over_head`).  The product's prompt warnings (`prompt_vocabulary.prompt_warnings`: far from every training caption,
a weak action word, or nearest captions the model mostly does not perform) are read before generating; a failing
phrasing without a warning is a failure not said before it happened.  Beside them, the training captions a prompt
in the animator's own words is read with (`prompt_conditions.retrieved_captions`), which `kmm generate` and the
panel's Check Prompts also show before generating: the heaviest is listed.

`HELD_OUT_SUITE` (``--suite held-out``, written to ``everyday_phrasings_held_out.md``) is a second set of 44
phrasings, written after every shipped setting was chosen, none of which is chosen on it: what a rule chosen on
SUITE is worth on wording it was not chosen on.  `STYLED_SUITE` (``--suite styled``,
``everyday_phrasings_styled.md``), written later still and likewise never chosen on, asks for a direction and a
manner at once ("an old man walks backwards"): whether the direction survives the style.

Run: ``python benchmarks/measure_everyday_phrasings.py [--checkpoint default] [--seeds 3] [--suite held-out|styled]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.report_file import save_report  # noqa: E402
from kmm_core.bundle.model_bundle import ModelBundle  # noqa: E402
from kmm_core.bundle.model_choice import resolve_model  # noqa: E402
from kmm_core.evaluation.action_checks import (  # noqa: E402
    FOOT_OVER_HEAD_CHECKS,
    checks_for_action,
    foot_over_head,
    label_side,
    sideways_travel_fraction,
)
from kmm_core.evaluation.take_checks import BOX_CHECK, step_result  # noqa: E402
from kmm_core.generation.decoding_engine import GenerationOptions  # noqa: E402
from kmm_core.generation.prompt_conditions import retrieved_captions  # noqa: E402
from kmm_core.generation.prompt_vocabulary import prompt_warnings  # noqa: E402
from kmm_core.generation.timeline import Timeline  # noqa: E402
from kmm_core.generation.timeline_generator import generate_timeline  # noqa: E402
from kmm_core.motion.model_timing import MODEL_FPS  # noqa: E402

SECONDS = 5.0
# (what an animator types, the check label that says what must be seen)
SUITE = [
    ("a man makes his way across the room", "walk"), ("someone wanders ahead slowly", "walk"),
    ("a woman heads straight ahead on foot", "walk"), ("a person ambles forward", "walk"),
    ("a person goes forward", "walk"), ("someone strolls along", "walk"), ("a man walks in a hurry", "walk"),
    ("a person paces forward", "walk"), ("she walks down the street", "walk"), ("the character walks ahead", "walk"),
    ("a person jogs forward", "run"), ("someone jogs in a circle", "jog circle"), ("a man runs as fast as he can", "run"),
    ("a woman sprints ahead", "run"), ("a person runs away", "run"),
    ("a person walks backwards", "walk back"), ("someone steps back a few steps", "walk back"),
    ("a person walks to the left", "walk toward left"), ("a man sidesteps to the right", "walk right"),
    ("a person turns around", "turn"), ("someone turns to the left", "turn left"),
    ("a person turns right and walks", "turn right"),
    ("a person sits down on a chair", "sit"), ("someone sits down", "sit"), ("a man crouches down", "crouch"),
    ("a person crouches and looks around", "crouch"), ("a woman squats down", "squat"),
    ("a person kneels down", "crouch"),
    ("a person picks up a box", "pick box"), ("someone picks something up from the floor", "pick box"),
    ("a man bends down to pick up a bag", "pick box"), ("a person reaches down to the ground", "bend"),
    ("a person lies down on the floor", "lie"), ("someone lies down to rest", "lie"),
    ("a person gets up from the floor", "getup"), ("a man crawls on the floor", "crawl"),
    ("a baby-like crawl forward", "crawl"),
    ("a person jumps", "jump"), ("someone jumps up and down", "jump"), ("a man hops on one leg", "hop"),
    ("a person leaps forward", "jump"),
    ("a person kicks with the right leg", "kick right"), ("someone kicks a ball with the left foot", "kick left"),
    ("a person punches with the right hand", "punch right"), ("a boxer throws punches", "punch"),
    ("a person throws a ball", "throw"), ("someone swings a sword", "swing"),
    ("a person waves hello", "wave"), ("a man waves both hands above his head", "wave"),
    ("someone waves goodbye with the right hand", "wave right"), ("a person waves at a friend", "wave"),
    ("a person raises the left hand", "raise left"), ("someone raises both arms", "raise both"),
    ("a person stretches the arms above the head", "raise both"), ("a man reaches up for something high",
                                                                    "reach"),
    ("a person points forward", "signal"), ("someone beckons a friend to come", "call"),
    ("a person bows", "bow"), ("someone takes a bow", "bow"), ("a man bows politely", "bow"),
    ("a person dances", "dance"), ("someone dances happily", "dance"), ("a person spins around", "spin"),
    ("a person does a cartwheel", "cartwheel"), ("a person falls down", "fall"),
    ("a person climbs up the stairs", "climb"),
]

# A second set, written after every shipped setting was chosen, none of which is chosen on it: a warning rule or a
# reading chosen on SUITE is judged on this one (`--suite held-out`).
HELD_OUT_SUITE = [
    ("a man strides across the floor", "walk"), ("someone saunters along slowly", "walk"),
    ("the woman walks briskly ahead", "walk"), ("a person takes a leisurely walk", "walk"),
    ("an old man shuffles forward", "walk"), ("a soldier marches forward", "walk"),
    ("someone dashes forward", "run"), ("a man jogs slowly ahead", "run"), ("a runner sprints down the track", "run"),
    ("a person backs away slowly", "walk back"), ("someone walks backward carefully", "walk back"),
    ("a person steps sideways to the right", "walk right"), ("a woman walks to the right", "walk toward right"),
    ("someone turns around and walks back", "turn"), ("a man turns to his right", "turn right"),
    ("someone jogs around in a circle", "jog circle"),
    ("a person squats down low", "squat"), ("someone crouches to hide", "crouch"),
    ("a woman sits on the floor", "sit"), ("a person bends over to touch the toes", "bend"),
    ("a man picks up something from the ground", "pick"),
    ("a person lies on the ground", "lie"), ("someone gets up off the floor", "getup"),
    ("a person crawls on all fours", "crawl"), ("a man falls to the ground", "fall"),
    ("a person jumps in place", "jump"), ("someone hops forward on both feet", "hop"), ("a kid jumps for joy", "jump"),
    ("a person kicks the air with the left leg", "kick left"), ("a fighter kicks forward", "kick"),
    ("someone punches the air", "punch"), ("a person jabs with the left fist", "jab left"),
    ("someone waves with the left hand", "wave left"), ("a person waves to the crowd", "wave"),
    ("a man lifts both arms up", "raise both"), ("a person raises the right arm", "raise right"),
    ("someone throws a stone", "throw"), ("a person bows to the audience", "bow"),
    ("someone dances to music", "dance"), ("a person spins in place", "spin"),
    ("a gymnast does a backflip", "flip"), ("someone climbs a ladder", "climb"),
    ("a person points at something", "signal"), ("a man salutes", "signal"),
]

STYLED_SUITE = [
    ("an old man walks backwards", "walk back"), ("a tired person walks backwards", "walk back"),
    ("a person walks backwards slowly", "walk back"), ("someone walks backward angrily", "walk back"),
    ("a happy child walks backwards", "walk back"), ("a woman walks backwards proudly", "walk back"),
    ("someone walks backwards sadly", "walk back"), ("a soldier marches backwards", "walk back"),
    ("an old man sidesteps to the left", "walk left"), ("a tired woman steps sideways to the right", "walk right"),
    ("someone happily sidesteps to the left", "walk left"), ("an angry man sidesteps to the right", "walk right"),
    ("an old man walks and turns left", "turn left"), ("a tired person walks and turns right", "turn right"),
    ("a happy woman walks forward", "walk"), ("an exhausted man jogs forward", "run"),
]
SUITES = {"main": (SUITE, "everyday_phrasings.md", ""),
          "held-out": (HELD_OUT_SUITE, "everyday_phrasings_held_out.md",
                       " (held out: written after every shipped setting was chosen, none chosen on it)"),
          "styled": (STYLED_SUITE, "everyday_phrasings_styled.md",
                     " in a manner (a direction and a style at once; held out like the second set)")}

CRAB_WALK_FRACTION = 0.5
"""A walk or run whose label names no direction fails when at least this share of its pelvis path goes toward the
body's own side (`sideways_travel_fraction`, whole take): a crab-walk is not a stroll.  Walks straight ahead measure
0.05-0.25 (a little sway and drift), crab-walks 0.5-0.9."""


def judge(label: str, joints: np.ndarray) -> bool:
    (check,) = (BOX_CHECK,) if label.endswith("box") else checks_for_action(label)
    if check in ("travel", "run") and abs(sideways_travel_fraction(joints)) >= CRAB_WALK_FRACTION:
        return False
    if check not in FOOT_OVER_HEAD_CHECKS and foot_over_head(joints):
        return False  # a pick-up that flings a leg over the head is no pick-up, whatever its hands reach
    return bool(step_result(check, label_side(label), joints).result.passed)


def generated(bundle: ModelBundle, prompt: str, seconds: float, seed: int,
              options: GenerationOptions | None = None) -> np.ndarray:
    """(T, 22, 3) joints of `prompt` alone for `seconds` at `seed`, as the product generates it (`options`)."""
    timeline = Timeline.from_dict({"fps": MODEL_FPS, "segments": [{"prompt": prompt, "start": 1,
                                                                    "end": int(round(seconds * MODEL_FPS))}]})
    return np.asarray(generate_timeline(bundle, timeline, seed=seed, options=options)[0].joints, dtype=np.float64)


def phrasing_verdicts(bundle: ModelBundle, phrasing: str, label: str, seeds: int,
                      seconds: float = SECONDS) -> list[bool]:
    """`phrasing` generated alone at seeds 0..seeds-1, each take judged by its label's check (`judge`)."""
    return [judge(label, generated(bundle, phrasing, seconds, seed)) for seed in range(seeds)]


def passes(verdicts: list[bool]) -> bool:
    """A phrasing passes when at least two thirds of its seeds pass."""
    return sum(verdicts) * 3 >= 2 * len(verdicts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--suite", choices=tuple(SUITES), default="main",
                        help="the 66 phrasings settings were chosen on, the 44 held out from every choice, or the "
                             "16 that ask for a direction in a manner")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/everyday_phrasings[_held_out|_styled].md")
    args = parser.parse_args(argv)
    suite, name, title = SUITES[args.suite]
    out = args.out or (REPO_ROOT / "benchmarks" / "results" / name)
    bundle = ModelBundle.load(resolve_model(args.checkpoint), device="cpu")
    rows, passed, unwarned = [], 0, []
    for phrasing, label in suite:
        if not checks_for_action(label) and not label.endswith("box"):
            raise SystemExit(f"{label!r}: no geometric check knows this label")
        warnings = prompt_warnings(bundle, [(0, phrasing)])
        ((share, read_with),) = retrieved_captions(bundle, [phrasing])
        reading = f'{1 - share:.0%}: "{read_with[0]}"' if read_with else "–"
        verdicts = phrasing_verdicts(bundle, phrasing, label, args.seeds)
        ok = passes(verdicts)
        passed += ok
        if not ok and not warnings:
            unwarned.append(f"{phrasing!r}" + (f' (read with "{read_with[0]}")' if read_with else ""))
        check = (BOX_CHECK,) if label.endswith("box") else checks_for_action(label)
        rows.append(f"| {phrasing} | {check[0]}{f' ({label_side(label)})' if label_side(label) else ''} | "
                    f"{sum(verdicts)} of {args.seeds} | {'yes' if ok else '**no**'} | "
                    f"{'yes' if warnings else '–'} | {reading} |")
    share = passed / len(suite)
    lines = [f"# Everyday phrasings, judged by geometry{title}", "",
             f"Command: `python benchmarks/measure_everyday_phrasings.py --checkpoint {args.checkpoint} --seeds "
             f"{args.seeds}{'' if args.suite == 'main' else ' --suite ' + args.suite}`.  {len(suite)} prompts as "
             f"animators write them, each alone for {SECONDS:g} s, seeds "
             f"0-{args.seeds - 1}; a phrasing passes when two thirds of its seeds pass its check (a travel or run "
             f"check also fails a take that goes {CRAB_WALK_FRACTION:.0%} of its path or more toward its own side, "
             "and a take that puts a foot over the head fails every check whose real clips never do: "
             "`action_checks.foot_over_head`); "
             "\"warned\": the product's prompt warnings said something before generating.", "",
             f"**{passed} of {len(suite)} pass ({share:.0%})**; failures not warned before generating: "
             f"{len(unwarned)}{': ' + '; '.join(unwarned) if unwarned else ''}.", "",
             "| phrasing | check | seeds passing | passes | warned | read with (share, heaviest caption) |",
             "| --- | --- | --- | --- | --- | --- |", *rows, ""]
    save_report(out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
