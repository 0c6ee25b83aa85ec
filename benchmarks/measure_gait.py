# SPDX-License-Identifier: GPL-3.0-or-later
"""The gait benchmark: generated walks and runs judged as biomechanics judges gait, and standing bodies' knees,
beside real ones.

Real: the walks and runs of the Bandai-Namco datasets whose takes `kmm-train prepare` puts in the test split
(`data/splits.py` on the source's own takes, seed 0: held out from training), at the model's 20 fps, all styles;
with `--other-performers`, also the forward walks of two performers no model here was trained on (ACCAD's Female1
and Male2 in ``../shared/data/more2``: the takes whose labelled actions are walking, turning, starting and stopping
only), and the walk's real range is then the pooled one.
Generated: each prompt of PROMPTS (the captions' own wording and an animator's paraphrases without the word "walk")
through the product's `generate_timeline` (clean-up on), SECONDS long at 20 fps, seeds 0..N-1.  Both are cut into
the same straight, steady windows and measured by `kmm_core/evaluation/gait.py`; the table gives each measure's
real median [10th-90th percentile] beside each prompt's median, and marks a generated median outside the real range.

Run: ``python benchmarks/measure_gait.py --bandai-namco DIR [--other-performers MORE2] [--checkpoint default]
[--seeds 6] [--walk-candidates N] [--without-gait-cycles] [--out FILE]``
(DIR: the Bandai-Namco archive or its extracted folder; MORE2: ``more2-mocap.tar.xz`` or its extracted folder).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import tarfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.report_file import save_report  # noqa: E402
from kmm_core.bundle.model_bundle import ModelBundle  # noqa: E402
from kmm_core.bundle.model_choice import resolve_model  # noqa: E402
from kmm_core.bvh import builtin_joint_map  # noqa: E402
from kmm_core.bvh.reader import parse_bvh  # noqa: E402
from kmm_core.bvh.retarget import bvh_to_canonical_joints  # noqa: E402
from kmm_core.data.sources import BvhLocation, bandai_namco_specs, read_bvh_texts  # noqa: E402
from kmm_core.data.splits import assign_splits  # noqa: E402
from kmm_core.evaluation.gait import MEASURES, RUN_WINDOW_SECONDS, WINDOW_SECONDS, take_gaits  # noqa: E402
from kmm_core.evaluation.posture import standing_knee_angle  # noqa: E402
from kmm_core.generation.decoding_engine import GenerationOptions  # noqa: E402
from kmm_core.generation.timeline import Timeline  # noqa: E402
from kmm_core.generation.timeline_generator import generate_timeline  # noqa: E402
from kmm_core.motion.model_timing import MODEL_FPS  # noqa: E402

WALK_CONTENTS = ("walk", "run", "dash")  # Bandai-Namco's straight gaits (walk-turn-*, walk-back ... are not straight)
STANDING_CONTENTS = ("raise-up-both-hands", "raise-up-left-hand", "raise-up-right-hand", "wave-both-hands",
                     "wave-left-hand", "wave-right-hand", "bow", "bye", "byebye", "call", "respond", "guide")
STANDING_PROMPTS = ["a person raises the left hand", "a person raises both hands", "a man waves both hands above his "
                    "head", "a person stands and waves calmly with the right hand", "a person picks up a box"]
PROMPTS = {
    "walk": ["a person walks forward", "someone walks", "a man walks at a normal pace",
             "a man makes his way across the room", "someone wanders ahead slowly",
             "a woman heads straight ahead on foot"],
    "run": ["a person runs forward", "someone jogs ahead"],
}
OTHER_PERFORMERS = ("ACCAD Female1", "ACCAD Male2")   # more2's takes.csv `source`; never in any training here
WALKING_ACTIONS = {"walk", "turn", "start from standing", "stop to standing", "stand idle"}  # its labelled actions
SECONDS = 10.0
ONLY_TOO_MUCH = ("skate", "step_asymmetry")   # less than recorded is no fault
ONLY_TOO_LITTLE = ("regularity",)              # the limp is irregular; a recorded walker may be very regular
WINDOWS = {"walk": WINDOW_SECONDS, "run": RUN_WINDOW_SECONDS}  # real runs are 2.2-2.5 s long
UNITS = {"cadence": "steps/min", "stride_length": "L", "speed": "L/s", "stance": "share", "double_support": "share",
         "step_asymmetry": "", "pelvis_bob": "share at 2/stride", "regularity": "", "skate": "L/s"}


def real_takes(path: Path):
    """(content, joints at 20 fps) of the test split's walks, runs and standing takes (an archive streamed once)."""
    scan = bandai_namco_specs(path)
    strata = {spec.take: spec.stratum for spec in scan.specs}
    split = assign_splits(strata, 0, 0.1, 0.1)
    chosen = [spec for spec in scan.specs if spec.content in WALK_CONTENTS + STANDING_CONTENTS
              and split[spec.take] == "test"]
    content_of = {spec.location: spec.content for spec in chosen}
    joint_map = builtin_joint_map("bandai_namco")
    for location, text in read_bvh_texts(list(content_of)):
        if isinstance(text, str):  # an unreadable file (reported by prepare) is left out; the rest still count
            yield content_of[location], bvh_to_canonical_joints(parse_bvh(text, location.path), joint_map, MODEL_FPS)


def real_gaits(path: Path) -> tuple[dict[str, list[dict[str, float]]], list[float]]:
    """({"walk": [...], "run": [...]}: the gait of every steady window of the test split's straight walks and runs,
    the standing knee angle of each of its standing takes)."""
    found: dict[str, list[dict[str, float]]] = {"walk": [], "run": []}
    knees: list[float] = []
    for content, joints in real_takes(path):
        if content in STANDING_CONTENTS:
            if (angle := standing_knee_angle(joints, MODEL_FPS)) is not None:
                knees.append(angle)
            continue
        kind = "walk" if content == "walk" else "run"
        found[kind] += [gait.as_dict() for gait in take_gaits(joints, MODEL_FPS, WINDOWS[kind])]
    return found, knees


def style_walks(path: Path) -> dict[str, list[dict[str, float]]]:
    """The gait of every steady window of Bandai-Namco's straight walks in every split (training takes included),
    by the style its takes were performed in (feminine, old, proud, ...): what real walkers of one style do, beside a
    generated walk that plays one style's strides (the strides `generation/gait_matching.py` plays are chosen by the
    captions, and the captions name the style: "a woman takes steps forward" for the feminine walks)."""
    chosen = [spec for spec in bandai_namco_specs(path).specs if spec.content == "walk"]
    style_of = {spec.location: spec.style for spec in chosen}
    joint_map = builtin_joint_map("bandai_namco")
    found: dict[str, list[dict[str, float]]] = {}
    for location, text in read_bvh_texts(list(style_of)):
        if isinstance(text, str):
            joints = bvh_to_canonical_joints(parse_bvh(text, location.path), joint_map, MODEL_FPS)
            found.setdefault(style_of[location], []).extend(
                gait.as_dict() for gait in take_gaits(joints, MODEL_FPS, WINDOWS["walk"]))
    return {style: gaits for style, gaits in sorted(found.items()) if gaits}


STYLE_MEASURES = ("cadence", "stride_length", "speed", "stance", "double_support")


def style_lines(styles: dict[str, list[dict[str, float]]]) -> list[str]:
    """The report's section on real walks by style: per style, each measure's median [10th-90th]."""
    lines = ["## Real walks by style", "",
             "Bandai-Namco's straight walks of every split (training takes included: what real walkers of one style "
             "do), by the style each take was performed in; each cell the median [10th-90th] over steady windows.  "
             "A generated walk plays one style's recorded strides (`generation/gait_matching.py`, chosen by the "
             "captions), so where it leaves the pooled range above, this is the range to read it against.", "",
             "| style | steady windows | " + " | ".join(f"{m} ({UNITS[m]})" for m in STYLE_MEASURES) + " |",
             "| --- | --- |" + " --- |" * len(STYLE_MEASURES)]
    for style, gaits in styles.items():
        cells = []
        for measure in STYLE_MEASURES:
            values = [g[measure] for g in gaits]
            low, high = np.percentile(values, [10, 90])
            cells.append(f"{np.median(values):.2f} [{low:.2f}-{high:.2f}]")
        lines.append(f"| {style} | {len(gaits)} | " + " | ".join(cells) + " |")
    return lines + [""]


def other_performer_walks(path: Path) -> list[dict[str, float]]:
    """The gait of every steady window of the forward walks of `OTHER_PERFORMERS` in more2 (archive or folder):
    the takes ``takes.csv`` labels as walking (turning, starting, stopping) and nothing else."""
    if path.is_dir():
        table = (path / "takes.csv").read_text(encoding="utf-8")
    else:
        with tarfile.open(path) as archive:
            member = archive.extractfile("takes.csv")
            if member is None:
                raise SystemExit(f"{path}: no takes.csv in the archive")
            table = member.read().decode("utf-8")
    chosen = [row["file"] for row in csv.DictReader(io.StringIO(table))
              if row["source"] in OTHER_PERFORMERS and "walk" in row["actions"].split(";")
              and set(row["actions"].split(";")) <= WALKING_ACTIONS]
    locations = [BvhLocation(str(path / name)) if path.is_dir() else BvhLocation(str(path), name) for name in chosen]
    joint_map = builtin_joint_map("accad_male1")  # the same 22 joint names as ACCAD's Male1 (more2/README.md)
    gaits = []
    for location, text in read_bvh_texts(locations):
        if isinstance(text, str):
            joints = bvh_to_canonical_joints(parse_bvh(text, location.label), joint_map, MODEL_FPS)
            gaits += [gait.as_dict() for gait in take_gaits(joints, MODEL_FPS, WINDOWS["walk"])]
    return gaits


def generated_knees(bundle: ModelBundle, prompt: str, seeds: int, options: GenerationOptions) -> list[float]:
    angles = []
    for seed in range(seeds):
        timeline = Timeline.from_dict({"fps": MODEL_FPS, "segments": [{"prompt": prompt, "seconds": 6.0}]})
        joints = np.asarray(generate_timeline(bundle, timeline, seed=seed, options=options)[0].joints, dtype=np.float64)
        if (angle := standing_knee_angle(joints, MODEL_FPS)) is not None:
            angles.append(angle)
    return angles


def generated_gaits(bundle: ModelBundle, prompt: str, seeds: int, window: float,
                    options: GenerationOptions) -> list[dict[str, float]]:
    gaits = []
    for seed in range(seeds):
        timeline = Timeline.from_dict({"fps": MODEL_FPS, "segments": [{"prompt": prompt, "seconds": SECONDS}]})
        joints = np.asarray(generate_timeline(bundle, timeline, seed=seed, options=options)[0].joints, dtype=np.float64)
        gaits += [gait.as_dict() for gait in take_gaits(joints, MODEL_FPS, window)]
    return gaits


def _cell(values: list[float], low: float | None = None, high: float | None = None,
          none: str = "no steady window") -> str:
    if not values:
        return none
    median = float(np.median(values))
    outside = low is not None and high is not None and not low <= median <= high
    return f"**{median:.2f}**" if outside else f"{median:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bandai-namco", type=Path, required=True, help="Bandai-Namco archive or extracted folder")
    parser.add_argument("--other-performers", type=Path, default=None,
                        help="more2-mocap.tar.xz or its folder: ACCAD Female1 and Male2's walks join the real walks")
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "gait.md")
    parser.add_argument("--without-gait-cycles", action="store_true",
                        help="decode as a bundle without real gait cycles does (the generated legs alone: the gain "
                             "of generation/gait_matching.py)")
    parser.add_argument("--without-walking-decoder", action="store_true",
                        help="decode walks' and runs' frames with the tokenizer's decoder, as a bundle without a "
                             "walking decoder does (what `kmm-train walking-decoder` adds under real strides)")
    parser.add_argument("--walk-candidates", type=int, default=None,
                        help="candidate decodes per steady walk (default: the bundle's; 1 measures what the "
                             "candidates of generation/walk_candidates.py add)")
    parser.add_argument("--walk-cycle", type=float, default=None,
                        help="the walks' pull toward their gait cycle (default: the bundle's; 0 measures what "
                             "`kmm generate --walk-cycle` adds)")
    parser.add_argument("--walk-guidance", type=float, default=None,
                        help="the walks' share of the guidance (default: the bundle's; 1 measures what `kmm generate "
                             "--walk-guidance` adds)")
    args = parser.parse_args(argv)
    options = GenerationOptions(walk_candidates=args.walk_candidates, walk_cycle_bonus=args.walk_cycle,
                                walk_guidance_factor=args.walk_guidance)
    real, real_knees = real_gaits(args.bandai_namco)
    bandai_namco_walks = list(real["walk"])
    others = other_performer_walks(args.other_performers) if args.other_performers else []
    real["walk"] += others
    bundle = ModelBundle.load(resolve_model(args.checkpoint), device="cpu")
    if args.without_gait_cycles:
        object.__setattr__(bundle, "_gait_cycles", False)  # what cached_on_bundle keeps for a bundle without them
    if args.without_walking_decoder:
        bundle.walking_tokenizer = None  # as loaded from a bundle without walking_decoder.*
    lines = ["# Gait: generated walks and runs against real ones", "",
             f"Command: `python benchmarks/measure_gait.py --bandai-namco DIR --checkpoint {args.checkpoint} --seeds "
             f"{args.seeds}{' --without-gait-cycles' if args.without_gait_cycles else ''}"
             f"{' --without-walking-decoder' if args.without_walking_decoder else ''}"
             f"{f' --walk-candidates {args.walk_candidates}' if args.walk_candidates is not None else ''}"
             f"{f' --walk-cycle {args.walk_cycle:g}' if args.walk_cycle is not None else ''}"
             f"{f' --walk-guidance {args.walk_guidance:g}' if args.walk_guidance is not None else ''}"
             f"{' --other-performers MORE2' if others else ''}`.  Real: Bandai-Namco's test-split straight walks "
             f"({len(bandai_namco_walks)} steady windows) and runs ({len(real['run'])})"
             + (f", and the straight walks of two performers never trained on (ACCAD Female1 and Male2, "
                f"{len(others)} windows), pooled with Bandai-Namco's for the walk's real range" if others else "")
             + f"; generated: {SECONDS:g} s per prompt and seed, seeds 0-{args.seeds - 1}, "
             "cut into the same straight steady windows (3 s for walks, 2 s for runs, whose real takes are short; "
             "`kmm_core/evaluation/gait.py`).  Each cell: the median "
             "over windows; **bold**: outside the real 10th-90th percentile (skate and step asymmetry: above "
             "the 90th, less than recorded is no fault; regularity: below the 10th, a walk more regular than most "
             "recorded ones is one whose walker was: the strides played are a recording's own, one after another, "
             "and Bandai-Namco's walks measure up to 1.00).  L: leg length.", ""]
    for kind, prompts in PROMPTS.items():
        reference = real[kind]
        ranges = {m: (float(np.percentile([g[m] for g in reference], 10)),
                      float(np.percentile([g[m] for g in reference], 90))) for m in MEASURES} if reference else {}
        split = kind == "walk" and bool(others)  # the two real sources side by side, then the pooled range
        sources = [("Bandai-Namco test", bandai_namco_walks), ("other performers", others)] if split else []
        header = ("| measure | " + "".join(f"{name} median | " for name, _ in sources) + "real median [10th-90th] | "
                  + " | ".join(f'"{p}"' for p in prompts) + " |")
        lines += [f"## {kind.capitalize()}", "", header, "| --- | --- |" + " --- |" * (len(prompts) + len(sources))]
        generated = {prompt: generated_gaits(bundle, prompt, args.seeds, WINDOWS[kind], options) for prompt in prompts}
        for measure in MEASURES:
            values = [g[measure] for g in reference]
            real_cell = (f"{np.median(values):.2f} [{ranges[measure][0]:.2f}-{ranges[measure][1]:.2f}]"
                         if values else "no window")
            low, high = ranges.get(measure, (None, None))
            if low is not None and measure in ONLY_TOO_MUCH:
                low = -np.inf
            if high is not None and measure in ONLY_TOO_LITTLE:
                high = np.inf
            cells = [_cell([g[measure] for g in generated[p]], low, high) for p in prompts]
            unit = f" ({UNITS[measure]})" if UNITS[measure] else ""
            own = "".join(f"{np.median([g[measure] for g in gaits]):.2f} | " for _, gaits in sources)
            lines.append(f"| {measure}{unit} | {own}{real_cell} | " + " | ".join(cells) + " |")
        lines.append("| steady windows | " + "".join(f"{len(gaits)} | " for _, gaits in sources) + str(len(reference))
                     + " | " + " | ".join(str(len(generated[p])) for p in prompts) + " |")
        lines.append("")
    knees = {prompt: generated_knees(bundle, prompt, args.seeds, options) for prompt in STANDING_PROMPTS}
    low, high = np.percentile(real_knees, [10, 90])
    lines += ["## Standing: the knee angle (degrees, 180 = straight) while the body stands", "",
              f"Real: {len(real_knees)} standing takes of the test split (raises, waves, bows, greetings), median "
              f"{np.median(real_knees):.1f} [{low:.1f}-{high:.1f}]; generated: 6 s per prompt and seed, the standing "
              "frames of the takes that stand a second or more (`kmm_core/evaluation/posture.py`).", "",
              "| prompt | median knee angle | takes that stand |",
              "| --- | --- | --- |"]
    lines += [f"| \"{prompt}\" | {_cell(angles, low, high, 'stands less than a second')} | "
              f"{len(angles)} of {args.seeds} |"
              for prompt, angles in knees.items()]
    lines.append("")
    lines += style_lines(style_walks(args.bandai_namco))
    save_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
