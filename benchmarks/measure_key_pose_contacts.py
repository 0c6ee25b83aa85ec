# SPDX-License-Identifier: GPL-3.0-or-later
"""Can an animator trust key poses?  Keys met, no pop around them, planted feet still planted, the walk still walks.

    python benchmarks/measure_key_pose_contacts.py [--bundle kmm_core/checkpoints/kmm-small] [--seeds 6]
        [--clips 12] [--data ../shared/data/bandai-namco/bandai-namco-bvh.tar.xz]
        [--out benchmarks/results/key_pose_contacts.md]

Three sets of takes, each generated twice with the same seed, with and without its constraints (shipped defaults:
foot clean-up on, constraints met after it):

* **off-prompt keys in a walk** (``--seeds``): a 6-s "a person walks forward" at 30 fps with a full-body pose at
  frame 90 the prompt would not make (both arms up: the frame of highest wrists of a generated "a person raises
  both hands above the head" take, turned to face the way the walk faces there and placed where the walk's pelvis
  is) and a right-wrist target at frame 140 (30 cm above and 20 cm in front of where the walk has it);
* **a right arm keyed at two frames** in the same walk (partial keys, ``"joints"``: the right arm's joints of the
  raised-arms pose at frames 60 and 120), the legs and body generated;
* **held-out real clips** (``--clips``, the test split of ``measure_constraints.py``, 6 s at 20 fps, each with its
  own caption): full-body poses at 30% and 70% of the clip and its right wrist at 50%, all taken from the clip.

Measured per take, against the same take without constraints:

* poses: mean joint error at the keyed frame (partial keys: of the joints the key moves, seen from the chain's
  parent, ``constraint_solver.partial_pose_error``), within 3 cm; targets: the joint's distance, within 2 cm;
* peak joint speed within ±10 frames of a key over the motion's peak joint speed elsewhere (<= 1.5);
* planted toes: mean horizontal speed of the toe joints between consecutive frames the take says they are planted
  (``foot_contacts``), within ±1 s of a key, over the same in the take without constraints (<= 1.5), and the
  share of those planted steps kept;
* travel: the pelvis' floor distance from the first to the last frame over the unconstrained take's (>= 0.7),
  where that take travels at least 1 m.

The same numbers without re-planting the feet (``meet_constraints(..., replant=False)``) show what it does.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from report_file import save_report  # noqa: E402  (benchmarks/ is the script's own folder)

from kmm_core.generation.constraint_solver import constraint_errors  # noqa: E402
from kmm_core.generation.constraints import body_facing  # noqa: E402
from kmm_core.generation.timeline import Timeline  # noqa: E402
from kmm_core.motion.model_timing import MODEL_FPS  # noqa: E402
from kmm_core.motion.skeleton import JOINT_INDEX  # noqa: E402

WALK = "a person walks forward"
ARMS_UP = "a person raises both hands above the head"
FPS = 30
WALK_FRAMES = 180
POSE_FRAME, TARGET_FRAME = 90, 140
ARM_FRAMES = (60, 120)
RIGHT_ARM = ("right_collar", "right_shoulder", "right_elbow", "right_wrist")
NEAR_FRAMES = 10
TOE_WINDOW_SECONDS = 1.0
POSE_LIMIT, TARGET_LIMIT, PEAK_LIMIT, TOE_LIMIT, TRAVEL_LIMIT = 0.03, 0.02, 1.5, 1.5, 0.7
TOES = (JOINT_INDEX["left_foot"], JOINT_INDEX["right_foot"])
TOE_COLUMNS = (1, 3)
CLIP_SECONDS = 6.0
CLIP_KEYS_AT = (0.3, 0.5, 0.7)
MIN_TRAVEL = 1.0
"""Metres the unconstrained take must travel for its travel ratio to be counted (a wave or a turn does not)."""


@dataclass
class Case:
    name: str
    timeline: Timeline       # with its constraints
    plain: Timeline          # the same without
    seed: int


def _yaw_matrix(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _heading(direction: np.ndarray) -> float:
    return float(np.arctan2(direction[0], direction[1]))


def placed_pose(pose: np.ndarray, walk: np.ndarray, frame: int) -> np.ndarray:
    """`pose` (22, 3) turned about its pelvis to face the way `walk` (T, 22, 3) faces at `frame` and moved so its
    pelvis is over the walk's there (its own height kept)."""
    turn = _heading(body_facing(walk[frame][None])[0]) - _heading(body_facing(pose[None])[0])
    centred = pose - pose[0] * [1.0, 0.0, 1.0]
    turned = centred @ _yaw_matrix(turn).T
    return turned + walk[frame, 0] * [1.0, 0.0, 1.0]


def raised_arms_pose(bundle, seed: int) -> np.ndarray:
    from kmm_core.generation.timeline_generator import generate_timeline

    take = generate_timeline(bundle, Timeline.from_dict({"fps": FPS, "segments": [{"prompt": ARMS_UP,
                                                                                     "frames": 90}]}), seed=seed)[0]
    wrists = take.joints[:, [JOINT_INDEX["left_wrist"], JOINT_INDEX["right_wrist"]], 1].mean(axis=1)
    return np.asarray(take.joints[int(np.argmax(wrists))], dtype=np.float64)


def walk_cases(bundle, seed: int) -> list[Case]:
    """The off-prompt full pose + wrist target, and the right arm keyed alone at two frames, in one walk."""
    from kmm_core.generation.timeline_generator import generate_timeline

    base = {"fps": FPS, "segments": [{"prompt": WALK, "frames": WALK_FRAMES}]}
    plain = Timeline.from_dict(base)
    walk = generate_timeline(bundle, plain, seed=seed)[0].joints
    arms = raised_arms_pose(bundle, seed + 1000)
    pose = placed_pose(arms, walk, POSE_FRAME)
    forward = np.append(body_facing(walk[TARGET_FRAME][None])[0], 0.0)[[0, 2, 1]]
    wrist = walk[TARGET_FRAME, JOINT_INDEX["right_wrist"]] + [0.0, 0.3, 0.0] + 0.2 * forward
    full = [{"type": "pose", "frame": POSE_FRAME, "positions": pose.tolist()},
            {"type": "effector", "joint": "right_wrist", "frame": TARGET_FRAME, "position": wrist.tolist()}]
    partial = [{"type": "pose", "frame": frame, "positions": placed_pose(arms, walk, frame).tolist(),
                "joints": list(RIGHT_ARM)} for frame in ARM_FRAMES]
    return [Case("off-prompt pose + wrist target", Timeline.from_dict({**base, "constraints": full}), plain, seed),
            Case("right arm keyed at two frames", Timeline.from_dict({**base, "constraints": partial}), plain, seed)]


def clip_cases(clips, seed: int) -> list[Case]:
    """Each clip's own caption, a full-body pose of the clip at 30% and 70% of it and its right wrist at 50%."""
    cases = []
    for index, clip in enumerate(clips):
        frames = len(clip.joints)
        at = [round(share * (frames - 1)) for share in CLIP_KEYS_AT]
        constraints = [{"type": "pose", "frame": frame, "positions": clip.joints[frame].tolist()}
                       for frame in (at[0], at[2])]
        constraints.append({"type": "effector", "joint": "right_wrist", "frame": at[1],
                            "position": clip.joints[at[1], JOINT_INDEX["right_wrist"]].tolist()})
        base = {"fps": MODEL_FPS, "segments": [{"prompt": clip.caption, "frames": frames}]}
        cases.append(Case("held-out real clip", Timeline.from_dict({**base, "constraints": constraints}),
                          Timeline.from_dict(base), seed + index))
    return cases


def peak_speed_ratio(joints: np.ndarray, keys: list[int], fps: float) -> float:
    """Peak joint speed within ±NEAR_FRAMES of a key over the peak elsewhere."""
    speed = np.linalg.norm(np.diff(joints, axis=0), axis=-1).max(axis=1) * fps  # (T-1,) fastest joint per step
    steps = np.arange(len(speed)) + 0.5
    near = np.zeros(len(speed), dtype=bool)
    for key in keys:
        near |= np.abs(steps - key) <= NEAR_FRAMES
    return float(speed[near].max() / max(speed[~near].max(), 1e-9))


def planted_toe_speed(joints: np.ndarray, contacts: np.ndarray, keys: list[int], fps: float) -> tuple[float, int]:
    """Mean horizontal speed (m/s) of the toes on their planted frames within ±1 s of a key, and how many."""
    window = round(TOE_WINDOW_SECONDS * fps)
    near = np.zeros(len(joints), dtype=bool)
    for key in keys:
        near[max(0, key - window):key + window + 1] = True
    speeds = []
    for toe, column in zip(TOES, TOE_COLUMNS, strict=True):
        step = np.linalg.norm(np.diff(np.asarray(joints[:, toe][:, [0, 2]], dtype=np.float64), axis=0), axis=-1)
        held = near & (np.asarray(contacts)[:, column] > 0)
        planted = held[:-1] & held[1:]  # a step between two planted frames: a lift-off or landing is not one
        speeds.extend(step[planted] * fps)
    return (float(np.mean(speeds)) if speeds else 0.0), len(speeds)


def travel(joints: np.ndarray) -> float:
    return float(np.linalg.norm((joints[-1, 0] - joints[0, 0])[[0, 2]]))


def measure_case(bundle, case: Case, replant: bool = True) -> dict:
    from kmm_core.generation import timeline_generator
    from kmm_core.generation.constraint_solver import meet_constraints

    original = timeline_generator.meet_constraints
    if not replant:
        timeline_generator.meet_constraints = lambda motion, constraints, **options: meet_constraints(
            motion, constraints, replant=False, **options)
    try:
        keyed = timeline_generator.generate_timeline(bundle, case.timeline, seed=case.seed)[0]
    finally:
        timeline_generator.meet_constraints = original
    plain = timeline_generator.generate_timeline(bundle, case.plain, seed=case.seed)[0]
    constraints = case.timeline.constraint_frames()
    keys = sorted({c.start for c in constraints})
    poses, targets = [], []
    for _, kind, error in constraint_errors(np.asarray(keyed.joints, dtype=np.float64), constraints):
        (poses if kind == "pose" else targets).append(error)
    keyed_toes, keyed_count = planted_toe_speed(keyed.joints, keyed.foot_contacts, keys, keyed.fps)
    plain_toes, plain_count = planted_toe_speed(plain.joints, plain.foot_contacts, keys, plain.fps)
    return {"poses": poses, "targets": targets,
            "peak": peak_speed_ratio(np.asarray(keyed.joints, dtype=np.float64), keys, keyed.fps),
            "peak_plain": peak_speed_ratio(np.asarray(plain.joints, dtype=np.float64), keys, plain.fps),
            "toes": keyed_toes / max(plain_toes, 1e-9), "toe_speed": keyed_toes, "toe_speed_plain": plain_toes,
            "planted_kept": keyed_count / max(plain_count, 1),
            "travel": (travel(keyed.joints) / travel(plain.joints) if travel(plain.joints) >= MIN_TRAVEL
                       else np.nan)}


def summary_rows(name: str, results: list[dict]) -> list[str]:
    poses = np.concatenate([r["poses"] for r in results]) if any(r["poses"] for r in results) else np.zeros(0)
    targets = np.concatenate([r["targets"] for r in results]) if any(r["targets"] for r in results) else np.zeros(0)
    peak = np.array([r["peak"] for r in results])
    toes = np.array([r["toes"] for r in results])
    trav = np.array([r["travel"] for r in results if np.isfinite(r["travel"])])

    def within(values: np.ndarray, limit: float, below: bool = True) -> str:
        if not len(values):
            return "-"
        ok = values <= limit if below else values >= limit
        return f"{int(ok.sum())}/{len(values)}"

    pose_text = (f"{poses.max() * 100:.2f} cm ({within(poses, POSE_LIMIT)})" if len(poses) else "-")
    target_text = (f"{targets.max() * 100:.2f} cm ({within(targets, TARGET_LIMIT)})" if len(targets) else "-")
    return [f"| {name} | {len(results)} | {pose_text} | {target_text} | {peak.max():.2f} ({within(peak, PEAK_LIMIT)}) "
            f"| {np.median(toes):.2f} / {toes.max():.2f} ({within(toes, TOE_LIMIT)}) "
            f"| {np.mean([r['planted_kept'] for r in results]):.2f} | "
            + (f"{trav.min():.2f} ({within(trav, TRAVEL_LIMIT, below=False)})" if len(trav) else "-") + " |"]


HEADER = ["| takes | n | pose error, worst (within 3 cm) | target error, worst (within 2 cm) | peak joint speed near "
          "keys / elsewhere, worst (<= 1.5) | planted toe speed vs without constraints, median / worst (<= 1.5) | "
          "planted frames kept | travel vs without, worst (>= 0.7) |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default=str(REPO_ROOT / "kmm_core" / "checkpoints" / "kmm-small"))
    parser.add_argument("--data", default=str(REPO_ROOT.parent / "shared" / "data" / "bandai-namco"
                                             / "bandai-namco-bvh.tar.xz"))
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "key_pose_contacts.md"))
    args = parser.parse_args(argv)
    import torch

    from kmm_core.bundle.model_bundle import ModelBundle

    torch.set_num_threads(1)
    bundle = ModelBundle.load(args.bundle, device="cpu")
    groups: dict[str, list[Case]] = {}
    for seed in range(args.seeds):
        for case in walk_cases(bundle, seed):
            groups.setdefault(case.name, []).append(case)
    if args.clips > 0:
        from measure_constraints import held_out_clips

        groups["held-out real clip"] = clip_cases(held_out_clips(Path(args.data), args.clips, CLIP_SECONDS), 0)
    lines = ["# Key poses an animator can trust: keys met, planted feet planted, the walk still walks", "",
             f"`{' '.join(sys.argv)}`", "",
             f"Bundle `{Path(args.bundle).name}`, shipped defaults (foot clean-up on, constraints met after it, "
             f"planted feet re-planted).  Walk takes: \"{WALK}\", 6 s at {FPS} fps, seeds 0..{args.seeds - 1}; "
             f"held-out clips: {args.clips} Bandai-Namco test-split clips of {CLIP_SECONDS:g} s at 20 fps (seeds 0..).  See the "
             "script's docstring for every measure.", ""]
    for replant in (True, False):
        lines += ["## " + ("With the feet re-planted (shipped)" if replant else
                           "Without re-planting (the constraints alone, for comparison)"), "", *HEADER]
        for name, cases in groups.items():
            results = []
            for case in cases:
                result = measure_case(bundle, case, replant)
                results.append(result)
                print(f"{'replant' if replant else 'plain'} {name} seed {case.seed}: poses "
                      f"{np.round(np.asarray(result['poses']) * 100, 2)} cm, targets "
                      f"{np.round(np.asarray(result['targets']) * 100, 2)} cm, peak {result['peak']:.2f} "
                      f"(unconstrained {result['peak_plain']:.2f}), toes {result['toes']:.2f} "
                      f"({result['toe_speed']:.3f} vs {result['toe_speed_plain']:.3f} m/s, kept "
                      f"{result['planted_kept']:.2f}), travel {result['travel']:.2f}", flush=True)
            lines += summary_rows(name, results)
        lines.append("")
    lines += ["Peak joint speed: the fastest joint's speed per frame step, its maximum within ±10 frames of a "
              "constrained frame over its maximum elsewhere.  Planted toe speed: horizontal, from one frame to the "
              "next where the take's `foot_contacts` mark the toe held on both, within ±1 s of a constrained frame; the ratio "
              "to the same take generated without constraints (same seed, same frames' window).  Planted frames "
              "kept: those frames' count over the unconstrained take's (a key that moves a planted foot releases "
              "it for a step).  Travel: pelvis floor distance first to last frame."]
    save_report(Path(args.out), lines)


if __name__ == "__main__":
    main()
