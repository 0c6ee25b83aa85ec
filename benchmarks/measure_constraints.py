# SPDX-License-Identifier: GPL-3.0-or-later
"""Does generation meet the animator's constraints, without pops, while still doing what the prompt says?

    python benchmarks/measure_constraints.py [--bundle kmm_core/checkpoints/kmm-small]
        [--data ../shared/data/bandai-namco/bandai-namco-bvh.tar.xz] [--clips 32] [--seconds 4] [--seed 0]
        [--timing-seconds 60] [--out benchmarks/results/constraints.md]

Ground truth: held-out real motion, the Bandai-Namco clips of the test split (``data/splits.assign_splits``, the
split training used) at least ``--seconds`` long, round robin over their contents, each cropped to ``--seconds``
at 20 fps and brought onto the canonical skeleton as HumanML3D stores it (``process_motion`` then the joints of its
features).  Each clip becomes a one-prompt timeline (its own caption) with constraints taken
from the clip itself: full-body poses at 3 frames (20%, 55% and 90% of the clip) and two end-effector targets at
other frames (the right wrist at 35%, the left ankle at 75%).  The same timeline is generated with and without its
constraints (same seed), with the shipped defaults (foot clean-up on), and measured:

* poses: mean joint error (m) at each keyed frame, and the share within 3 cm;
* effector targets: the joint's distance (m) from its target, and the share within 2 cm;
* jerk near constraints: the mean jerk (``motion_quality.jerk_curve``) of the jerk samples within ±5 frames of a
  constrained frame over the mean jerk of the rest of the same motion; per motion, then the median and the share
  of motions at or below 1.3; the unconstrained motion's ratio at the same frames is the reference;
* the prompt still obeyed: R-precision (top 1 and top 3, all clips in one batch) of the bundle's evaluator, its
  95% bootstrap interval over clips, constrained vs unconstrained (and the real clips);
* time: a 1-minute timeline of three prompts generated with no constraints and with 12 (poses, targets, facings
  spread over it), ``--timing-seconds`` long, the added seconds.

Single-threaded torch on the CPU unless ``--device`` says otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from report_file import save_report  # noqa: E402  (benchmarks/ is the script's own folder)

from kmm_core.bvh.retarget import bvh_to_canonical_joints  # noqa: E402
from kmm_core.data.motion_files import motion_from_text  # noqa: E402
from kmm_core.data.sources import bandai_namco_specs, read_bvh_texts  # noqa: E402
from kmm_core.data.splits import assign_splits  # noqa: E402
from kmm_core.evaluation.motion_quality import jerk_curve  # noqa: E402
from kmm_core.generation.constraint_solver import constraint_errors  # noqa: E402
from kmm_core.generation.timeline import Timeline  # noqa: E402
from kmm_core.humanml3d.features import features_to_joints, joints_to_features  # noqa: E402
from kmm_core.humanml3d.preprocess import preprocess_joints, process_motion  # noqa: E402
from kmm_core.motion.model_timing import MODEL_FPS  # noqa: E402

POSE_AT = (0.20, 0.55, 0.90)
EFFECTORS_AT = (("right_wrist", 0.35), ("left_ankle", 0.75))
NEAR_FRAMES = 5
POSE_LIMIT, EFFECTOR_LIMIT, JERK_LIMIT = 0.03, 0.02, 1.3
CONTENTS = ("walk", "walk-turn-left", "walk-turn-right", "run", "wave-both-hands", "wave-left-hand",
            "wave-right-hand", "raise-up-both-hands", "raise-up-left-hand", "raise-up-right-hand")


@dataclass
class Clip:
    name: str
    caption: str
    joints: np.ndarray  # (T, 22, 3) canonical, 20 fps


def held_out_clips(archive: Path, count: int, seconds: float) -> list[Clip]:
    """`count` test-split clips at least `seconds` long, spread over the contents, canonical joints at 20 fps."""
    scan = bandai_namco_specs(archive)
    split = assign_splits({spec.take: spec.stratum for spec in scan.specs})
    tests = [spec for spec in scan.specs if split[spec.take] == "test" and spec.content in CONTENTS]
    by_content: dict[str, list] = {}
    for spec in tests:
        by_content.setdefault(spec.content, []).append(spec)
    chosen = []
    while any(by_content.values()):  # round robin over the contents: every test clip, in a fixed order
        for content in CONTENTS:
            if by_content.get(content):
                chosen.append(by_content[content].pop(0))
    frames = round(seconds * MODEL_FPS)
    clips = []
    specs = {spec.location: spec for spec in chosen}
    for location, text in read_bvh_texts(list(specs)):
        spec = specs[location]
        if isinstance(text, Exception):
            raise text
        joints = bvh_to_canonical_joints(motion_from_text(text, location.label), spec.joint_maps[0])
        if len(joints) > frames:  # HumanML3D's joints: the canonical skeleton recovered from the features
            clips.append(Clip(spec.clip_id, spec.captions[0], features_to_joints(process_motion(
                joints[:frames + 1])[0])))
    order = {spec.clip_id: index for index, spec in enumerate(chosen)}
    return sorted(clips, key=lambda clip: order[clip.name])[:count]


def clip_constraints(clip: Clip) -> list[dict]:
    frames = len(clip.joints)
    constraints = [{"type": "pose", "frame": round(share * (frames - 1)),
                    "positions": clip.joints[round(share * (frames - 1))].tolist()} for share in POSE_AT]
    from kmm_core.motion.skeleton import JOINT_INDEX

    for joint, share in EFFECTORS_AT:
        frame = round(share * (frames - 1))
        constraints.append({"type": "effector", "joint": joint, "frame": frame,
                            "position": clip.joints[frame, JOINT_INDEX[joint]].tolist()})
    return constraints


def clip_timeline(clip: Clip, constrained: bool) -> Timeline:
    data = {"fps": MODEL_FPS, "segments": [{"prompt": clip.caption, "frames": len(clip.joints)}]}
    if constrained:
        data["constraints"] = clip_constraints(clip)
    return Timeline.from_dict(data)


def jerk_ratio(joints: np.ndarray, frames: list[int], fps: float = MODEL_FPS) -> float:
    """Mean jerk of the samples within ±NEAR_FRAMES of `frames` over the mean jerk of the others."""
    curve = jerk_curve(np.asarray(joints, dtype=np.float64), fps)
    sample = np.arange(len(curve)) + 1.5  # jerk sample t spans frames t..t+3
    near = np.zeros(len(curve), dtype=bool)
    for frame in frames:
        near |= np.abs(sample - frame) <= NEAR_FRAMES
    return float(curve[near].mean() / max(curve[~near].mean(), 1e-9))


def r_precision_with_interval(texts: np.ndarray, motions: np.ndarray, rng: np.random.Generator,
                              resamples: int = 1000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(top1, top3) over all clips as one batch, and its 95% bootstrap interval over clips (low, high)."""
    distances = np.linalg.norm(texts[:, None] - motions[None], axis=-1)
    rank = (distances <= np.diag(distances)[:, None]).sum(axis=1) - 1
    hits = np.stack([rank < 1, rank < 3], axis=-1).astype(np.float64)
    boot = np.stack([hits[rng.integers(0, len(hits), len(hits))].mean(axis=0) for _ in range(resamples)])
    return hits.mean(axis=0), np.percentile(boot, 2.5, axis=0), np.percentile(boot, 97.5, axis=0)


def measure(bundle, clips: list[Clip], seed: int, evaluator=None, options=None) -> dict:
    """Every number of the report for `clips` (see the module docstring)."""
    from kmm_core.generation.timeline_generator import generate_timeline

    pose_errors, effector_errors, ratios, reference_ratios, constrained, free = [], [], [], [], [], []
    for index, clip in enumerate(clips):
        timeline = clip_timeline(clip, True)
        keyed = generate_timeline(bundle, timeline, seed=seed + index, options=options)[0]
        plain = generate_timeline(bundle, clip_timeline(clip, False), seed=seed + index, options=options)[0]
        for _, kind, error in constraint_errors(keyed.joints, timeline.constraint_frames()):
            (pose_errors if kind == "pose" else effector_errors).append(error)
        frames = sorted({c.start for c in timeline.constraint_frames()})
        ratios.append(jerk_ratio(keyed.joints, frames))
        reference_ratios.append(jerk_ratio(plain.joints, frames))
        constrained.append(keyed.joints)
        free.append(plain.joints)
        print(f"{clip.name}: pose {np.mean(pose_errors[-3:]) * 100:.2f} cm, effector "
              f"{np.mean(effector_errors[-2:]) * 100:.2f} cm, jerk ratio {ratios[-1]:.2f} "
              f"(unconstrained {reference_ratios[-1]:.2f})", flush=True)
    result = {"pose_errors": np.asarray(pose_errors), "effector_errors": np.asarray(effector_errors),
              "ratios": np.asarray(ratios), "reference_ratios": np.asarray(reference_ratios)}
    if evaluator is not None:
        rng = np.random.default_rng(seed)
        texts = evaluator.embed_texts([clip.caption for clip in clips])
        for name, motions in (("constrained", constrained), ("unconstrained", free),
                              ("real", [clip.joints for clip in clips])):
            features = [joints_to_features(preprocess_joints(np.asarray(m, dtype=np.float64))) for m in motions]
            result[f"r_precision_{name}"] = r_precision_with_interval(texts, evaluator.embed_motions(features), rng)
    return result


def timing(bundle, seconds: float, seed: int) -> tuple[float, float, int]:
    """Seconds to generate a `seconds`-long three-prompt timeline without and with 12 constraints."""
    from kmm_core.generation.timeline_generator import generate_timeline
    from kmm_core.motion.skeleton import rest_positions, tpose_offsets

    frames = round(seconds * MODEL_FPS)
    third = frames // 3
    prompts = ("a person walks forward", "a person waves with the right hand", "a person walks forward")
    base = {"fps": MODEL_FPS, "segments": [{"prompt": p, "frames": third if i < 2 else frames - 2 * third}
                                           for i, p in enumerate(prompts)]}
    standing = rest_positions(tpose_offsets())
    standing[:, 1] += 0.93
    constraints = []
    for k in range(4):
        frame = round((k + 0.5) * frames / 4)
        constraints.append({"type": "pose", "frame": frame, "positions": (standing + [0, 0, 1.5 * k]).tolist()})
        constraints.append({"type": "effector", "joint": "right_wrist", "frame": frame + 30,
                            "position": [-0.3, 1.5, 1.5 * k + 0.6]})
        constraints.append({"type": "facing", "frame": frame + 60, "direction": [0, 1]})
    timings = []
    for data in (base, {**base, "constraints": constraints}):
        start = time.perf_counter()
        generate_timeline(bundle, Timeline.from_dict(data), seed=seed)
        timings.append(time.perf_counter() - start)
    return timings[0], timings[1], len(constraints)


def share(values: np.ndarray, limit: float) -> str:
    return f"{np.mean(values <= limit) * 100:.1f}% ({int(np.sum(values <= limit))}/{len(values)})"


def report(args, clips: list[Clip], result: dict, times: tuple[float, float, int] | None) -> list[str]:
    pose, effector = result["pose_errors"], result["effector_errors"]
    ratios, reference = result["ratios"], result["reference_ratios"]
    lines = ["# Constraints: key poses and end-effector targets from held-out real motion", "",
             f"`{' '.join(sys.argv)}`", "",
             f"Bundle `{args.bundle}`, {len(clips)} Bandai-Namco test-split clips of {args.seconds:g} s at 20 fps, "
             f"seeds {args.seed}..{args.seed + len(clips) - 1}, defaults (inpainted transitions, foot clean-up, "
             "constraints met on the decoded motion).  Per clip: full-body poses at 3 frames, a right-wrist and a left-ankle "
             "target at 2 others, all taken from the clip itself.", "",
             "| measure | value | goal |", "| --- | --- | --- |",
             f"| poses within 3 cm mean joint error | {share(pose, POSE_LIMIT)} | >= 95% |",
             f"| pose mean joint error, mean / max | {pose.mean() * 100:.2f} cm / {pose.max() * 100:.2f} cm | |",
             f"| effector targets within 2 cm | {share(effector, EFFECTOR_LIMIT)} | >= 95% |",
             f"| effector error, mean / max | {effector.mean() * 100:.2f} cm / {effector.max() * 100:.2f} cm | |",
             f"| jerk within ±{NEAR_FRAMES} frames of a constraint / elsewhere, median over motions | "
             f"{np.median(ratios):.2f} (unconstrained motion at the same frames: {np.median(reference):.2f}) | "
             f"<= {JERK_LIMIT} |",
             f"| motions with that ratio <= {JERK_LIMIT} | {share(ratios, JERK_LIMIT)} (unconstrained: "
             f"{share(reference, JERK_LIMIT)}) | |"]
    for name in ("constrained", "unconstrained", "real"):
        key = f"r_precision_{name}"
        if key in result:
            value, low, high = result[key]
            lines.append(f"| R-precision top 1 / top 3, {name} ({len(clips)} clips in one batch) | "
                         f"{value[0]:.3f} [{low[0]:.3f}, {high[0]:.3f}] / {value[1]:.3f} [{low[1]:.3f}, "
                         f"{high[1]:.3f}] | constrained within the unconstrained interval |")
    if times is not None:
        plain, keyed, count = times
        lines.append(f"| time for a {args.timing_seconds:g} s three-prompt timeline, no constraints / "
                     f"{count} constraints | {plain:.1f} s / {keyed:.1f} s (+{keyed - plain:.1f} s, "
                     f"{(keyed / plain - 1) * 100:.0f}%) | |")
    lines += ["", "Jerk ratio: mean of `jerk_curve` samples centred within ±5 frames of any constrained frame over "
              "the mean of the others in the same motion (m/s³ both).  R-precision: evaluator text/motion "
              "embeddings, each caption ranked against all clips' motions; interval: 95% bootstrap over clips."]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default=str(REPO_ROOT / "kmm_core" / "checkpoints" / "kmm-small"))
    parser.add_argument("--data", default=str(REPO_ROOT.parent / "shared" / "data" / "bandai-namco"
                                             / "bandai-namco-bvh.tar.xz"))
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timing-seconds", type=float, default=60.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-ablate-tokens", dest="ablate_tokens", action="store_false",
                        help="skip the run with the constraint tokens kept")
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "constraints.md"))
    args = parser.parse_args(argv)
    import torch

    from kmm_core.bundle.model_bundle import ModelBundle
    from kmm_core.evaluation.evaluator import load_evaluator

    if args.device == "cpu":
        torch.set_num_threads(1)
    bundle = ModelBundle.load(args.bundle, device=args.device)
    clips = held_out_clips(Path(args.data), args.clips, args.seconds)
    result = measure(bundle, clips, args.seed, load_evaluator(args.bundle, device=args.device))
    times = timing(bundle, args.timing_seconds, args.seed) if args.timing_seconds > 0 else None
    lines = report(args, clips, result, times)
    if args.ablate_tokens:
        from kmm_core.generation.decoding_engine import GenerationOptions

        tokens = measure(bundle, clips, args.seed, options=GenerationOptions(constraint_tokens=True))
        lines += ["", "## Ablation: constraint tokens kept (`GenerationOptions.constraint_tokens=True`)", "",
                  "The motion that meets the constraints is encoded, its tokens at the constrained frames kept and "
                  "the 2 tokens each side decoded again, then the constraints met as above.", "",
                  "| measure | value |", "| --- | --- |",
                  f"| poses within 3 cm | {share(tokens['pose_errors'], POSE_LIMIT)} |",
                  f"| effector targets within 2 cm | {share(tokens['effector_errors'], EFFECTOR_LIMIT)} |",
                  f"| jerk ratio near constraints, median | {np.median(tokens['ratios']):.2f} |",
                  f"| motions with that ratio <= {JERK_LIMIT} | {share(tokens['ratios'], JERK_LIMIT)} |"]
    save_report(Path(args.out), lines)


if __name__ == "__main__":
    main()
