# SPDX-License-Identifier: GPL-3.0-or-later
"""The decoder's edges (issue 26): generated standing takes decoded as they are, with the last token repeated once
beyond the end, and with the first and last tokens repeated (what `ModelBundle.codes_to_features` does), each
cleaned as generation cleans them; drift as a ratio to the same real items', with and without the last 6 frames,
and the pelvis jerk (median over frames, m/s^3).

The first captions of 60 standing items of the val split, one seed.  Run from the repository root
(``data/prepared-all``: training/runs/kmm-small-all/COMMAND.md)::

    python benchmarks/measure_decoder_edges.py --data data/prepared-all
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from kmm_core.bundle.model_bundle import ModelBundle, default_bundle_path
from kmm_core.evaluation.body_motion import part_jerk, standing_drift
from kmm_core.generation.timeline_generator import generation_foot_lock
from kmm_core.humanml3d.features import FOOT_CONTACTS, features_to_joints
from kmm_core.model.decoding import decode_tokens
from kmm_core.model.motion_tokenizer import num_tokens_for_frames
from kmm_core.motion.foot_contact import clean_foot_contacts
from kmm_core.motion.model_timing import MODEL_FPS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure_standing_hold import _standing_items  # noqa: E402  (the same 60 items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    bundle = ModelBundle.load(default_bundle_path(), device="cpu")
    captions, frames, real = _standing_items(args.data, 60)
    real_drift = float(np.mean([standing_drift(j, MODEL_FPS) for j in real]))
    rng = torch.Generator().manual_seed(0)

    def as_is(codes: torch.Tensor, count: int) -> np.ndarray:
        with torch.no_grad():
            decoded = bundle.tokenizer.decode(codes, num_frames=count)[0].float().numpy()
        return bundle.normalizer.denormalize(decoded.astype(np.float64))

    def last_repeated(codes: torch.Tensor, count: int) -> np.ndarray:
        return as_is(torch.cat([codes, codes[:, -1:]], dim=1), count)

    ways = {"as decoded before": as_is, "last token repeated": last_repeated,
            "both ends repeated (shipped)": lambda codes, count: bundle.codes_to_features(codes, count)}
    takes: dict[str, list[np.ndarray]] = {name: [] for name in ways}
    for caption, count in zip(captions, frames, strict=True):
        result = decode_tokens(bundle.generator, [count], sentence=bundle.prompt_embeddings([caption]),
                               config=bundle.decoding, rng=rng)
        codes = result.codes[:, :num_tokens_for_frames(count)]
        for name, decode in ways.items():
            features = decode(codes, count)
            joints = features_to_joints(features)
            takes[name].append(clean_foot_contacts(joints, MODEL_FPS, features[:, FOOT_CONTACTS],
                                                   settings=generation_foot_lock()).joints)
    for name, motions in takes.items():
        drift = np.mean([standing_drift(m, MODEL_FPS) for m in motions]) / real_drift
        inner = np.mean([standing_drift(m[:-6], MODEL_FPS) for m in motions]) / real_drift
        jerk = np.mean([part_jerk(m, MODEL_FPS)["pelvis"] for m in motions])
        print(f"{name}: drift {drift:.2f}x real, without the last 6 frames {inner:.2f}x, pelvis jerk {jerk:.2f} m/s^3")


if __name__ == "__main__":
    main()
