# SPDX-License-Identifier: GPL-3.0-or-later
"""A calm standing body's hips: their height and their slow rise and fall, per bundle, where each decoder makes them.

On the calm-standing subset of the split (`animator_subsets`: normal-style waves and raised hands), for each bundle:
the real clips encoded and decoded again by the tokenizer's decoder and by the bundle's standing decoder (MPJPE, the
pelvis bob as a ratio of means to the real clips', the pelvis' and the lowest foot's mean height error), and the
subset's captions generated as the product shows them (the pelvis' mean height against the real clips', its bob).
A decoder refined to hold the hips still can do it by settling them low, which no ratio of jerk, drift or bob shows.

Run: ``python benchmarks/measure_standing_height.py --data DATA --split test --items 56 kmm-small runs/OTHER``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.measure_decoding_variants import product_joints  # noqa: E402
from kmm_core.bundle.model_bundle import ModelBundle  # noqa: E402
from kmm_core.bundle.model_choice import resolve_model  # noqa: E402
from kmm_core.evaluation import animator_subsets  # noqa: E402
from kmm_core.evaluation.body_motion import height_bob, pelvis_bob  # noqa: E402
from kmm_core.evaluation.generated_motions import generate_features  # noqa: E402
from kmm_core.evaluation.settings import EvaluationSettings  # noqa: E402
from kmm_core.evaluation.split_data import choose_captions, load_items, window_reader  # noqa: E402
from kmm_core.humanml3d.dataset_folder import HumanML3DFolder  # noqa: E402
from kmm_core.humanml3d.features import features_to_joints  # noqa: E402
from kmm_core.motion.skeleton import JOINT_INDEX  # noqa: E402

PELVIS = JOINT_INDEX["pelvis"]
FEET = [JOINT_INDEX["left_foot"], JOINT_INDEX["right_foot"]]


def head_bob(joints: np.ndarray) -> float:
    """The head's bob (every joint's height is a feature channel of its own, so the hips' channel alone could be held
    still while the body bobs)."""
    return height_bob(joints, "head")


def reconstruction_line(bundle: ModelBundle, real: list[np.ndarray], standing: bool) -> str:
    rows = []
    for joints in real:
        frames = len(joints)
        made = features_to_joints(bundle.codes_to_features(bundle.joints_to_codes(joints), frames,
                                                           standing=np.ones(frames) if standing else None))
        rows.append((np.linalg.norm(made - joints, axis=-1).mean(), pelvis_bob(made), pelvis_bob(joints),
                     head_bob(made), head_bob(joints),
                     (made[:, PELVIS, 1] - joints[:, PELVIS, 1]).mean(),
                     (made[:, FEET, 1].min(0) - joints[:, FEET, 1].min(0)).mean()))
    mpjpe, bob, real_bob, head, real_head, pelvis, foot = np.array(rows).mean(axis=0) * 1000.0
    return (f"| {'standing' if standing else 'tokenizer'} decoder's reconstruction | {mpjpe:.1f} | {bob / real_bob:.2f} "
            f"({bob:.2f} vs {real_bob:.2f} mm) | {head / real_head:.2f} ({head:.2f} vs {real_head:.2f} mm) | "
            f"{pelvis:+.1f} | {foot:+.1f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", help="bundles (a folder, or a shipped model's name)")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--items", type=int, default=56, help="calm standing items")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    folder = HumanML3DFolder(args.data)
    chosen = animator_subsets.select(load_items(folder, EvaluationSettings(split=args.split)),
                                     limit=args.items)["calm_standing"]
    window = window_reader(folder)
    real = [features_to_joints(window(item)) for item in chosen]
    real_height = np.mean([joints[:, PELVIS, 1].mean() for joints in real])
    real_bob = np.mean([pelvis_bob(joints) for joints in real])
    real_head = np.mean([head_bob(joints) for joints in real])
    captions = choose_captions(chosen, args.seed)
    print(f"{len(chosen)} calm standing items of {args.data} ({args.split}), captions and generation seed {args.seed}")
    for checkpoint in args.checkpoints:
        bundle = ModelBundle.load(resolve_model(checkpoint), device="cpu")
        print(f"\n## {checkpoint}\n\n| decoded | MPJPE (mm) | pelvis bob / real | head bob / real | "
              "pelvis height error (mm) | lowest foot height error (mm) |\n| --- | --- | --- | --- | --- | --- |")
        print(reconstruction_line(bundle, real, standing=False))
        if bundle.standing_tokenizer is not None:
            print(reconstruction_line(bundle, real, standing=True))
        joints = product_joints(generate_features(bundle, captions, [item.frames for item in chosen], args.seed),
                                captions, bundle.decoding.standing_root_sigma)
        height = np.mean([j[:, PELVIS, 1].mean() for j in joints])
        bob, head = np.mean([pelvis_bob(j) for j in joints]), np.mean([head_bob(j) for j in joints])
        print(f"| generated (as shown) | – | {bob / real_bob:.2f} ({bob * 1000:.2f} vs {real_bob * 1000:.2f} mm) | "
              f"{head / real_head:.2f} ({head * 1000:.2f} vs {real_head * 1000:.2f} mm) | "
              f"{(height - real_height) * 1000:+.1f} | – |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
