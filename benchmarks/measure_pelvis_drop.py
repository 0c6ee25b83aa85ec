# SPDX-License-Identifier: GPL-3.0-or-later
"""How far the foot clean-up lowers the pelvis on generated walks and runs, for several `max_pelvis_drop` limits,
and what each limit costs in foot skating (issue 26: at 10 cm generated walks crouched visibly).

For 16 generated walks and runs (6 s, seed 0) the script prints, per limit: the mean of each take's deepest pelvis
drop, the skating ratio of the cleaned takes (share of grounded toe steps faster than 0.5 m/s), the share of held
foot-joint frames and the pelvis bob (m), beside the raw output's.  Run from the repository root::

    python benchmarks/measure_pelvis_drop.py
"""

from __future__ import annotations

import numpy as np
import torch

from kmm_core.bundle.model_bundle import ModelBundle, default_bundle_path
from kmm_core.evaluation.body_motion import pelvis_bob
from kmm_core.evaluation.generated_motions import generate_features
from kmm_core.evaluation.motion_quality import foot_skating
from kmm_core.humanml3d.features import FOOT_CONTACTS, features_to_joints
from kmm_core.motion.foot_contact import FootLockSettings, clean_foot_contacts
from kmm_core.motion.model_timing import MODEL_FPS

PROMPTS = ("a person walks forward", "the person walks", "a man walks in a straight line",
           "a woman is walking forward actively", "someone jogs forward", "a person runs forward",
           "a figure walks straight ahead in an elderly way", "someone walks slowly forward") * 2
LIMITS = (0.10, 0.05, 0.02)


def main() -> None:
    torch.set_num_threads(1)
    bundle = ModelBundle.load(default_bundle_path(), device="cpu")
    features = generate_features(bundle, PROMPTS, [120] * len(PROMPTS), seed=0)
    raw = [features_to_joints(f) for f in features]
    print(f"raw output: skating ratio {np.mean([foot_skating(j, MODEL_FPS).skating_ratio for j in raw]):.3f}, "
          f"pelvis bob {np.mean([pelvis_bob(j) for j in raw]):.4f} m")
    for limit in LIMITS:
        settings = FootLockSettings(hold_standing=True, max_pelvis_drop=limit)
        cleaned = [clean_foot_contacts(j, MODEL_FPS, f[:, FOOT_CONTACTS], settings=settings)
                   for j, f in zip(raw, features, strict=True)]
        print(f"max_pelvis_drop {limit:.2f} m: deepest drop per take {np.mean([c.pelvis_drop.max() for c in cleaned]):.3f}"
              f" m on average, skating ratio {np.mean([foot_skating(c.joints, MODEL_FPS).skating_ratio for c in cleaned]):.3f}, "
              f"held share {np.mean([c.contacts.mean() for c in cleaned]):.2f}, "
              f"pelvis bob {np.mean([pelvis_bob(c.joints) for c in cleaned]):.4f} m")


if __name__ == "__main__":
    main()
