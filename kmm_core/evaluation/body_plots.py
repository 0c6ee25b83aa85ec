# SPDX-License-Identifier: GPL-3.0-or-later
"""A picture of how a model moves against real motion, written by `kmm-train eval` for each model: one walking
item and one standing item of the split, real beside generated (and the tokenizer's reconstruction), over time:
the pelvis height (a walk bobs once per step), the pelvis' horizontal speed (a walk's swings with every step, a
standing figure's stays near zero) and the head's jerk (a standing head is calm)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..common.atomic_write import atomic_path
from ..motion.skeleton import JOINT_INDEX

PELVIS, HEAD = JOINT_INDEX["pelvis"], JOINT_INDEX["head"]


def _curves(joints: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pelvis height (T,), pelvis horizontal speed (T-1,), head jerk (T-3,)) in m, m/s, m/s^3."""
    height = joints[:, PELVIS, 1]
    speed = np.linalg.norm(np.diff(joints[:, PELVIS][:, [0, 2]], axis=0), axis=-1) * fps
    jerk = np.linalg.norm(np.diff(joints[:, HEAD], n=3, axis=0), axis=-1) * fps ** 3
    return height, speed, jerk


def write_body_plot(path: str | Path, title: str, columns: Sequence[tuple[str, dict[str, np.ndarray]]],
                    fps: float) -> Path:
    """One PNG: a column per (caption, {"real": joints, "generated": joints, ...}), three rows of curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = ("pelvis height (m)", "pelvis speed (m/s)", "head jerk (m/s³)")
    figure, axes = plt.subplots(len(rows), len(columns), figsize=(6.0 * len(columns), 7.5), squeeze=False,
                                sharex="col")
    styles = {"real": ("black", "-"), "generated": ("tab:red", "-"), "tokenizer": ("tab:blue", ":")}
    try:
        for column, (caption, motions) in enumerate(columns):
            axes[0][column].set_title(caption[:60], fontsize=10)
            for label, joints in motions.items():
                color, line = styles.get(label, ("tab:gray", "--"))
                for row, values in enumerate(_curves(np.asarray(joints, dtype=np.float64), fps)):
                    seconds = np.arange(len(values)) / fps
                    axes[row][column].plot(seconds, values, color=color, linestyle=line, linewidth=1.2, label=label)
            for row, name in enumerate(rows):
                axes[row][column].set_ylabel(name)
                axes[row][column].grid(alpha=0.3)
            axes[-1][column].set_xlabel("seconds")
        axes[0][0].legend(loc="upper right", fontsize=8)
        figure.suptitle(title)
        figure.tight_layout()
        path = Path(path)
        with atomic_path(path) as temporary:
            figure.savefig(temporary, dpi=80)
    finally:
        plt.close(figure)
    return path
