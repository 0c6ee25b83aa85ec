# SPDX-License-Identifier: GPL-3.0-or-later
"""Where does the jerk of generated motion come from?  Mean jerk (m/s^3, `motion_quality.mean_jerk`, 20 fps) of:

    python benchmarks/measure_jerk_sources.py [--bundle kmm_core/checkpoints/kmm-small]
        [--bandai-namco ../shared/data/bandai-namco/bandai-namco-bvh.tar.xz] [--clips 6] [--seeds 3]
        [--out benchmarks/results/jerk_sources.md]

* real Bandai-Namco clips (walk, run, wave, kick, ...; canonical joints), the reference level;
* the same clips through the tokenizer (encode -> decode): what the VQ decoder alone adds, and with the decoded
  features smoothed as generation does (`humanml3d/feature_smoothing.py`);
* the same clips made rigid on the T-pose skeleton (IK -> FK, what BVH/Blender show) and after the foot-contact
  cleanup: what IK and the cleanup add;
* generated single-prompt motions (the clips' content as prompts): raw decode, smoothed, smoothed + foot-locked
  (the default);
* generated 3-prompt timelines: jerk within +-0.5 s of a boundary vs. the rest, per transition mode;
* the decoder's token phase: mean jerk by frame index mod 4 (a token is 4 frames); a flat profile means no
  token-rate artefact.

Every number is a mean over frames; the table says which rows come from the same clips.  CPU, one torch thread.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
import tarfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from report_file import save_report  # noqa: E402  (benchmarks/ is the script's own folder)

from kmm_core.bvh.joint_map import builtin_joint_map  # noqa: E402
from kmm_core.bvh.reader import parse_bvh, read_bvh  # noqa: E402
from kmm_core.bvh.retarget import bvh_to_canonical_joints  # noqa: E402
from kmm_core.evaluation.motion_quality import jerk_curve, mean_jerk  # noqa: E402
from kmm_core.humanml3d.preprocess import preprocess_joints  # noqa: E402
from kmm_core.motion.foot_contact import clean_foot_contacts  # noqa: E402
from kmm_core.motion.kinematics import forward_kinematics, inverse_kinematics  # noqa: E402

FPS = 20.0
CONTENTS = {"walk": "a person walks forward", "run": "a person runs forward",
            "wave-both-hands": "a person waves both hands", "kick": "a person kicks",
            "walk-turn-left": "a person walks and turns left", "bow": "a person bows"}


def real_clips(source: Path, per_content: int) -> dict[str, list[np.ndarray]]:
    """Canonical joints of the first `per_content` 'normal' style clips of each content (folder or archive)."""
    joint_map = builtin_joint_map("bandai_namco")
    patterns = {c: f"*_{c}_normal_*.bvh" for c in CONTENTS}
    found: dict[str, list[np.ndarray]] = {c: [] for c in CONTENTS}

    def take(name: str, load) -> None:
        base = name.rsplit("/", 1)[-1]
        for content, pattern in patterns.items():
            if fnmatch.fnmatch(base, pattern) and len(found[content]) < per_content:
                found[content].append(preprocess_joints(bvh_to_canonical_joints(load(), joint_map)))

    if source.is_dir():
        for path in sorted(source.rglob("*.bvh")):
            take(str(path), lambda p=path: read_bvh(p))
    else:
        with tarfile.open(source, "r|*") as archive:
            for member in archive:
                if member.isfile() and member.name.endswith(".bvh"):
                    data = archive.extractfile(member).read().decode("utf-8", errors="replace")
                    take(member.name, lambda d=data, n=member.name: parse_bvh(d, n))
    return found


def phase_profile(motions: list[np.ndarray]) -> list[float]:
    """Mean jerk by (frame index mod 4) of the jerk curve (value t uses frames t..t+3)."""
    curves = [jerk_curve(m, FPS) for m in motions]
    return [float(np.concatenate([c[p::4] for c in curves]).mean()) for p in range(4)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=str(REPO_ROOT / "kmm_core" / "checkpoints" / "kmm-small"))
    parser.add_argument("--bandai-namco", type=Path,
                        default=REPO_ROOT.parent / "shared" / "data" / "bandai-namco" / "bandai-namco-bvh.tar.xz")
    parser.add_argument("--clips", type=int, default=6, help="clips per content")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "jerk_sources.md")
    args = parser.parse_args(argv)

    import torch

    from kmm_core.bundle.model_bundle import ModelBundle
    from kmm_core.generation.timeline import TRANSITION_MODES, Timeline
    from kmm_core.generation.timeline_generator import GenerationOptions, generate_timeline
    from kmm_core.humanml3d.feature_smoothing import smooth_decoded_features
    from kmm_core.humanml3d.features import features_to_joints

    torch.set_num_threads(1)
    bundle = ModelBundle.load(args.bundle, device="cpu")
    clips = real_clips(args.bandai_namco, args.clips)
    real = [clip for content in CONTENTS for clip in clips[content]]
    rows: list[tuple[str, float, str]] = []
    level = mean_jerk(real, FPS)
    rows.append(("real clips", level, f"{len(real)} Bandai-Namco clips ({', '.join(CONTENTS)})"))
    decoded = [bundle.codes_to_features(bundle.joints_to_codes(clip), len(clip)) for clip in real]
    recon = [features_to_joints(f) for f in decoded]
    rows.append(("real -> tokenizer encode/decode", mean_jerk(recon, FPS), "same clips"))
    smoothed = [features_to_joints(smooth_decoded_features(f)) for f in decoded]
    rows.append(("real -> tokenizer -> feature smoothing", mean_jerk(smoothed, FPS), "same clips"))
    rigid = [forward_kinematics(*inverse_kinematics(clip)) for clip in real]
    rows.append(("real -> IK/FK on the T-pose rig", mean_jerk(rigid, FPS), "same clips"))
    locked = [clean_foot_contacts(clip, FPS).joints for clip in real]
    rows.append(("real -> foot-contact cleanup", mean_jerk(locked, FPS), "same clips (geometry-only contacts)"))

    raw, smooth, cleaned = [], [], []
    for content, prompt in CONTENTS.items():
        seconds = float(np.median([len(c) for c in clips[content]]) / FPS) if clips[content] else 4.0
        for seed in range(args.seeds):
            timeline = Timeline.single(prompt, max(2.0, seconds))
            raw.append(generate_timeline(bundle, timeline, seed=seed, options=GenerationOptions(
                foot_lock=False, smoothing=0.0))[0].joints.astype(np.float64))
            smooth.append(generate_timeline(bundle, timeline, seed=seed, options=GenerationOptions(
                foot_lock=False))[0].joints.astype(np.float64))
            cleaned.append(generate_timeline(bundle, timeline, seed=seed)[0].joints.astype(np.float64))
    rows.append(("generated, raw decode", mean_jerk(raw, FPS), f"{len(raw)} single-prompt motions (the contents)"))
    rows.append(("generated, feature smoothing", mean_jerk(smooth, FPS), "same seeds"))
    rigid_smooth = [forward_kinematics(*inverse_kinematics(m)) for m in smooth]
    rows.append(("generated, feature smoothing, on the rig (IK/FK)", mean_jerk(rigid_smooth, FPS),
                 "same seeds: what BVH/Blender showed before the cleanup"))
    rows.append(("generated, smoothing + foot lock (default)", mean_jerk(cleaned, FPS), "same seeds"))

    prompts = list(CONTENTS.values())
    for mode in TRANSITION_MODES:
        for label, options in (("raw decode", GenerationOptions(transitions=mode, foot_lock=False, smoothing=0.0)),
                               ("default", GenerationOptions(transitions=mode))):
            near, far = [], []
            for seed in range(args.seeds):
                timeline = Timeline.from_dict({"fps": FPS, "segments": [
                    {"prompt": prompts[(seed + k) % len(prompts)], "seconds": 3.0} for k in range(3)]})
                motion = generate_timeline(bundle, timeline, seed=seed, options=options)[0]
                curve = jerk_curve(motion.joints, FPS)
                mask = np.zeros(len(curve), bool)
                for start, _ in motion.segment_frames[1:]:
                    mask[max(0, start - 10):start + 10] = True
                near.append(curve[mask])
                far.append(curve[~mask])
            rows.append((f"timelines ({mode}, {label}), within 0.5 s of a boundary",
                         float(np.concatenate(near).mean()), f"{args.seeds} 3-prompt timelines"))
            rows.append((f"timelines ({mode}, {label}), elsewhere", float(np.concatenate(far).mean()),
                         "same timelines"))

    lines = ["# Sources of jerk", "",
             f"`python benchmarks/measure_jerk_sources.py --clips {args.clips} --seeds {args.seeds}` with "
             f"`{Path(args.bundle).name}`; mean jerk over all frames, m/s^3, 20 fps (`motion_quality.mean_jerk`).", "",
             "| motion | mean jerk | × real | what |", "| --- | --- | --- | --- |"]
    lines += [f"| {name} | {value:.1f} | {value / level:.2f} | {what} |" for name, value, what in rows]
    lines += ["", "Token phase (mean jerk by frame index mod 4; a token is 4 frames):", "",
              "| motion | phase 0 | phase 1 | phase 2 | phase 3 |", "| --- | --- | --- | --- | --- |"]
    for name, motions in (("real clips", real), ("real -> tokenizer", recon), ("generated, raw", raw)):
        lines.append(f"| {name} | " + " | ".join(f"{v:.1f}" for v in phase_profile(motions)) + " |")
    lines.append("")
    save_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
