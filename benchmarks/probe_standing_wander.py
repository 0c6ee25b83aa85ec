# SPDX-License-Identifier: GPL-3.0-or-later
"""Where the calm-standing drift is made, and what removing the slow wander in feature space would cost (probe, seed 0).

On the 56 calm standing items of the test split (`animator_subsets`), generated and smoothed as shipped
(`smooth_generated_features`), prints the pelvis drift (`standing_drift`, ratio to the real items) before and after
the foot-contact clean-up, with `hold_standing` on and off, the feet's speed relative to the pelvis, and the drift and
per-part jerk (ratios of means to real) of feature-space variants on standing prompts: the root's horizontal velocity
(features 1-2) less its slow part (a Gaussian of SIGMA frames), the legs' root-relative horizontal positions (ric x, z
of hips, knees, ankles, feet) held to their mean plus their fast part, and both.

Run: ``python benchmarks/probe_standing_wander.py --data /work/data-more/prepared-all-more``
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from kmm_core.bundle.model_bundle import ModelBundle  # noqa: E402
from kmm_core.bundle.model_choice import resolve_model  # noqa: E402
from kmm_core.evaluation import animator_subsets  # noqa: E402
from kmm_core.evaluation.body_motion import part_jerk, standing_drift  # noqa: E402
from kmm_core.evaluation.generated_motions import cleaned_joints, generate_features  # noqa: E402
from kmm_core.evaluation.settings import EvaluationSettings  # noqa: E402
from kmm_core.evaluation.split_data import choose_captions, load_items, window_reader  # noqa: E402
from kmm_core.generation.prompt_kinds import prompt_kinds  # noqa: E402
from kmm_core.generation.timeline_generator import generation_foot_lock  # noqa: E402
from kmm_core.humanml3d.dataset_folder import HumanML3DFolder  # noqa: E402
from kmm_core.humanml3d.feature_smoothing import smooth_generated_features  # noqa: E402
from kmm_core.humanml3d.features import FOOT_CONTACTS, RIC, features_to_joints  # noqa: E402
from kmm_core.motion.foot_contact import clean_foot_contacts  # noqa: E402
from kmm_core.motion.time_filters import gaussian_smooth  # noqa: E402

FPS = 20
LEG_JOINTS = (1, 2, 4, 5, 7, 8, 10, 11)
LEG_RIC_XZ = np.array([RIC.start + 3 * (joint - 1) + axis for joint in LEG_JOINTS for axis in (0, 2)])
FEET = [7, 10, 8, 11]


def without_slow_root(features: np.ndarray, sigma: float) -> np.ndarray:
    out = features.copy()
    out[:, 1:3] = features[:, 1:3] - gaussian_smooth(features[:, 1:3], sigma, axis=0)
    return out


def legs_held(features: np.ndarray, sigma: float) -> np.ndarray:
    out = features.copy()
    slow = gaussian_smooth(features[:, LEG_RIC_XZ], sigma, axis=0)
    out[:, LEG_RIC_XZ] = features[:, LEG_RIC_XZ] - (slow - slow.mean(axis=0))
    return out


def feet_speed_relative(joints: list[np.ndarray]) -> float:
    return float(np.mean([np.linalg.norm(np.diff(j[:, FEET][..., [0, 2]].mean(1) - j[:, 0, [0, 2]], axis=0),
                                         axis=-1).mean() * FPS for j in joints]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    args = parser.parse_args()
    bundle = ModelBundle.load(resolve_model("default"), device="cpu")
    folder = HumanML3DFolder(args.data)
    chosen = animator_subsets.select(load_items(folder, EvaluationSettings(split="test")), limit=None)["calm_standing"]
    window = window_reader(folder)
    real = [features_to_joints(window(item)) for item in chosen]
    real_drift = np.mean([standing_drift(j, FPS) for j in real])
    real_jerk = [part_jerk(j, FPS) for j in real]
    captions = choose_captions(chosen, 0)
    raw = generate_features(bundle, captions, [item.frames for item in chosen], 0)
    shipped = [smooth_generated_features(f, k) for f, k in zip(raw, prompt_kinds(bundle, captions), strict=True)]
    no_hold = dataclasses.replace(generation_foot_lock(), hold_standing=False)

    def drift(joints: list[np.ndarray]) -> float:
        return float(np.mean([standing_drift(j, FPS) for j in joints]) / real_drift)

    print(f"feet relative to the pelvis, speed generated / real: "
          f"{feet_speed_relative([features_to_joints(f) for f in shipped]) / feet_speed_relative(real):.2f}")
    zero = [np.concatenate([f[:, :1], np.zeros_like(f[:, 1:3]), f[:, 3:]], axis=1) for f in shipped]
    for name, features in (("shipped", shipped), ("root velocity zero", zero)):
        joints = [features_to_joints(f) for f in features]
        unheld = [clean_foot_contacts(j, FPS, f[:, FOOT_CONTACTS], settings=no_hold).joints
                  for j, f in zip(joints, features, strict=True)]
        print(f"{name}: drift before clean-up {drift(joints):.2f}, clean-up with hold_standing "
              f"{drift(cleaned_joints(joints, features)):.2f}, without {drift(unheld):.2f}")
    variants = {"shipped": shipped}
    for sigma in (6.4, 3.0, 1.0):
        variants[f"root slow velocity removed, sigma {sigma:g}"] = [without_slow_root(f, sigma) for f in shipped]
    variants["legs held, sigma 6.4"] = [legs_held(f, 6.4) for f in shipped]
    for sigma in (6.4, 3.0):
        variants[f"legs held 6.4 + root slow velocity removed, sigma {sigma:g}"] = [
            without_slow_root(legs_held(f, 6.4), sigma) for f in shipped]
    for name, features in variants.items():
        joints = cleaned_joints([features_to_joints(f) for f in features], features)
        jerk = [part_jerk(j, FPS) for j in joints]
        ratios = {k: round(float(np.mean([x[k] for x in jerk]) / np.mean([x[k] for x in real_jerk])), 2)
                  for k in jerk[0]}
        print(f"{name}: drift {drift(joints):.2f}, jerk {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
