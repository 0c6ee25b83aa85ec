# SPDX-License-Identifier: GPL-3.0-or-later
"""A crawler's hands: how high the wrists stay over the floor, with and without the hands put down.

Each crawl prompt is generated alone for 5 s at seeds 0-2, as shipped and with `motion/hand_support.py`'s step
switched off (the take as the foot clean-up leaves it), and measured: the lower and the higher wrist's median height
over the floor (the floor: a low percentile of each frame's lowest joint other than the wrists, `floor_height`), how fast a wrist
that is down moves over the floor, the crawl check
(`action_checks`: the higher wrist's height held for a second, at most 0.20 m) and the share of frames whose body is
on its hands (`hand_support.support_weights` over 0.5).  Real crawls keep their wrists within about 5 cm of the floor
while a hand is down.  The picture shows one take's wrist heights over time, both ways.

Run: ``python benchmarks/measure_hand_support.py [--checkpoint default] [--seeds 3] [--out FILE]``  (about 20 s)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from unittest import mock

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.measure_everyday_phrasings import SECONDS, generated  # noqa: E402
from benchmarks.report_file import save_figure, save_report  # noqa: E402
from kmm_core.bundle.model_bundle import ModelBundle  # noqa: E402
from kmm_core.bundle.model_choice import resolve_model  # noqa: E402
from kmm_core.evaluation.action_checks import run_check  # noqa: E402
from kmm_core.motion import take_cleanup  # noqa: E402
from kmm_core.motion.hand_support import ARMS, floor_height, support_weights  # noqa: E402
from kmm_core.motion.model_timing import MODEL_FPS  # noqa: E402

PROMPTS = ("a baby-like crawl forward", "a person crawls on all fours", "someone crawls on hands and knees",
           "a person crawls forward on hands and knees")
WRISTS = [wrist for _, _, wrist in ARMS]
DOWN = 0.08
"""Metres over the floor under which a wrist counts as down (a palm flat on the floor puts it at about 0.04)."""


def wrist_heights(joints: np.ndarray) -> np.ndarray:
    """(T, 2) each wrist's height over the floor under the rest of the body (`hand_support.floor_height`)."""
    return joints[:, WRISTS, 1] - floor_height(joints)


def takes(bundle: ModelBundle, prompt: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(as shipped, without the hands put down) joints of `prompt` at `seed`."""
    shipped = generated(bundle, prompt, SECONDS, seed)
    with mock.patch.object(take_cleanup, "hands_planted_motion", lambda motion: motion):
        hovering = generated(bundle, prompt, SECONDS, seed)
    return shipped, hovering


def down_speed(joints: np.ndarray) -> str:
    """The median speed over the floor (m/s) of a wrist while it is within `DOWN` of the floor ("–" when never)."""
    down = wrist_heights(joints)[1:] < DOWN
    speed = np.linalg.norm(np.diff(joints[:, WRISTS][:, :, [0, 2]], axis=0), axis=-1) * MODEL_FPS
    return f"{np.median(speed[down]):.2f}" if down.any() else "–"


def row(prompt: str, seed: int, shipped: np.ndarray, hovering: np.ndarray) -> str:
    cells = []
    for joints in (hovering, shipped):
        heights = wrist_heights(joints)
        check = run_check("crawl", joints)
        cells += [f"{np.median(heights.min(axis=1)):.2f} / {np.median(heights.max(axis=1)):.2f}",
                  down_speed(joints), f"{check.value:.2f} {'pass' if check.passed else 'miss'}"]
    on_hands = float(np.mean(support_weights(hovering) > 0.5))
    return f"| {prompt} | {seed} | {on_hands:.2f} | " + " | ".join(cells) + " |"


def figure(prompt: str, seed: int, shipped: np.ndarray, hovering: np.ndarray):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.2), sharey=True)
    for axis, wrist, name in zip(axes, range(2), ("left wrist", "right wrist"), strict=True):
        axis.plot(wrist_heights(hovering)[:, wrist], label="without the hands put down")
        axis.plot(wrist_heights(shipped)[:, wrist], label="as shipped")
        axis.plot(support_weights(hovering) * 0.1, "k:", label="on its hands (weight x 0.1)")
        axis.axhline(0.05, color="grey", lw=0.6)
        axis.set_title(f'"{prompt}", seed {seed}: {name}', fontsize=9)
        axis.set_xlabel("frame (20 fps)")
    axes[0].set_ylabel("m over the floor")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "hand_support.md")
    args = parser.parse_args(argv)
    bundle = ModelBundle.load(resolve_model(args.checkpoint), device="cpu")
    rows, pictured = [], None
    for prompt in PROMPTS:
        for seed in range(args.seeds):
            shipped, hovering = takes(bundle, prompt, seed)
            rows.append(row(prompt, seed, shipped, hovering))
            pictured = pictured or (prompt, seed, shipped, hovering)
    picture = args.out.with_suffix(".png")
    save_figure(picture, figure(*pictured))
    save_report(args.out, [
        "# A crawler's hands on the floor", "",
        f"Command: `python benchmarks/measure_hand_support.py --checkpoint {args.checkpoint} --seeds {args.seeds}`.  "
        f"Each prompt alone for {SECONDS:g} s; wrist heights over the floor in metres (each take's median of the "
        "lower / the higher wrist), the median speed over the floor of a wrist while it is down (within "
        f"{DOWN:g} m of the floor: a hand bearing weight stays put), the crawl check (the higher wrist held for 1 s, at "
        "most 0.20 m), without the "
        "hands put down (the take as the foot clean-up leaves it) and as shipped (`kmm_core/motion/hand_support.py`); "
        "\"on its hands\": the share of frames whose body is on all fours (support weight over 0.5).  Real crawls: "
        f"wrists within about 0.05 m of the floor while a hand is down.  Picture: [{picture.name}]({picture.name}).",
        "",
        "| prompt | seed | on its hands | wrists without | a hand down, its speed, without | crawl check without "
        "| wrists as shipped | a hand down, its speed, as shipped | crawl check as shipped |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |", *rows, ""])
    return 0


if __name__ == "__main__":
    sys.exit(main())
