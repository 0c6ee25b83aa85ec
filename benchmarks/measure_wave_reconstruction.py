# SPDX-License-Identifier: GPL-3.0-or-later
"""Does a bundle's decoder keep a real wave's swing?  Real normal-style one-hand waves of a split (Bandai-Namco 2,
not mirrored) are encoded by the bundle's tokenizer and decoded again, by its tokenizer's decoder and as generation
decodes a wave prompt (`ModelBundle.decode_kinds`: the standing decoder's body, the tokenizer's arms), and measured
by the directional check of "a person waves the left / right hand" (`kmm_core/evaluation/directional.py`): the log
ratio of the waving wrist's side-to-side energy to the idle one's (the check passes at 2.2), and each wrist's energy
as a ratio to the real clip's.  The waves' dominant swing frequency is printed too (the codes are 4 frames, 0.2 s).

Run from the repository root::

    python benchmarks/measure_wave_reconstruction.py --data data/prepared-all --checkpoint default
    python benchmarks/measure_wave_reconstruction.py --data data/prepared-all --checkpoint default \\
        --tokenizer RUN/decoder.safetensors   # a `kmm-train decoder` run's refined tokenizer in the bundle's place
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch

from kmm_core.bundle.model_bundle import ModelBundle
from kmm_core.bundle.model_choice import resolve_model
from kmm_core.data.motion_dataset import FRAMES_PER_TOKEN
from kmm_core.evaluation.directional import left_axes, measure_intent, parse_directional_intent
from kmm_core.generation.prompt_kinds import prompt_kinds
from kmm_core.humanml3d.features import features_to_joints
from kmm_core.model.weights import load_weights
from kmm_core.motion.model_timing import MODEL_FPS
from kmm_core.motion.skeleton import JOINT_INDEX

WAVES = ("wave-left-hand", "wave-right-hand")


def wave_rows(data: Path, split: str, limit: int) -> list[dict[str, str]]:
    with open(data / "index.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == split and row["mirrored"] == "0"
                and row["content"] in WAVES and row["style"] == "normal"]
    return rows[:limit]


def swing_frequency(joints: np.ndarray, side: str) -> float:
    """The dominant frequency (Hz, above 0.5) of the wrist's side-to-side position relative to the pelvis."""
    wrist = joints[:, JOINT_INDEX[f"{side}_wrist"]] - joints[:, 0]
    lateral = np.einsum("tc,tc->t", wrist, left_axes(joints))
    lateral = lateral - lateral.mean()
    spectrum = np.abs(np.fft.rfft(lateral * np.hanning(len(lateral))))
    hz = np.fft.rfftfreq(len(lateral), 1 / MODEL_FPS)
    keep = hz > 0.5
    return float(hz[keep][np.argmax(spectrum[keep])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--checkpoint", default="default", help="model: default, open, a shipped name, or a folder")
    parser.add_argument("--tokenizer", type=Path, help="a whole tokenizer's weights (a `kmm-train decoder` run's "
                        "decoder.safetensors) to decode with instead of the bundle's")
    parser.add_argument("--split", default="test")
    parser.add_argument("--clips", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(1)
    bundle = ModelBundle.load(resolve_model(args.checkpoint), device="cpu")
    if args.tokenizer is not None:
        load_weights(bundle.tokenizer, args.tokenizer)
        bundle.tokenizer.eval()
    rows = wave_rows(args.data, args.split, args.clips)
    if not rows:
        raise SystemExit(f"no normal-style one-hand waves in the {args.split} split of {args.data}")
    print(f"# Waves through the decoder: {args.checkpoint}" + (f" with {args.tokenizer}" if args.tokenizer else ""))
    print("\nlog ratio of the waving wrist's side-to-side energy to the idle one's (passes at 2.2), and each "
          "wrist's energy / the real clip's\n")
    print("| clip | real | tokenizer's decoder | as a wave prompt is decoded | waving wrist / real | idle wrist / real "
          "| swing (Hz) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    table = []
    with torch.no_grad():
        for row in rows:
            side = row["content"].split("-")[1]
            idle = "right" if side == "left" else "left"
            prompt = f"a person waves the {side} hand"
            kind = prompt_kinds(bundle, [prompt])[0]
            intent = parse_directional_intent(prompt)
            features = np.load(args.data / "new_joint_vecs" / f"{row['name']}.npy").astype(np.float64)
            features = features[:len(features) // FRAMES_PER_TOKEN * FRAMES_PER_TOKEN]
            codes = bundle.tokenizer.encode(torch.from_numpy(bundle.normalizer.normalize(features)).float()[None])
            decoded = (features, bundle.codes_to_features(codes, len(features)),
                       bundle.decode_kinds(codes, len(features), [((0, len(features)), kind)]))
            joints = [features_to_joints(x) for x in decoded]
            measured = [measure_intent(intent, j, MODEL_FPS) for j in joints]
            sign = 1.0 if side == "left" else -1.0  # the score is left over right
            scores = [sign * m[0] for m in measured]
            energy = [m[2] for m in measured]
            waving = energy[1][f"{side}_lateral_energy"] / energy[0][f"{side}_lateral_energy"]
            still = energy[1][f"{idle}_lateral_energy"] / energy[0][f"{idle}_lateral_energy"]
            hz = swing_frequency(joints[0], side)
            table.append([*scores, waving, still, hz])
            print(f"| {row['name']} | {scores[0]:+.2f} | {scores[1]:+.2f} | {scores[2]:+.2f} | {waving:.2f} | "
                  f"{still:.2f} | {hz:.2f} |")
    values = np.array(table)
    median = np.median(values, axis=0)
    passes = (values[:, :3] >= 2.2).sum(axis=0)
    print(f"| **median** ({len(rows)} clips) | {median[0]:+.2f} | {median[1]:+.2f} | {median[2]:+.2f} | "
          f"{median[3]:.2f} | {median[4]:.2f} | {median[5]:.2f} |")
    print(f"| **passing** | {passes[0]} | {passes[1]} | {passes[2]} | | | |")


if __name__ == "__main__":
    main()
