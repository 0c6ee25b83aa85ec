# SPDX-License-Identifier: GPL-3.0-or-later
"""The stick-figure preview: sides are told apart by colour and the floor grid covers the whole path."""

from __future__ import annotations

import numpy as np
from PIL import Image

from kmm_core.generation.preview import GRID_SPACING_M, SIDE_COLOURS, bone_colour, floor_grid, write_preview
from kmm_core.motion.motion_result import MotionResult
from kmm_core.motion.skeleton import JOINT_INDEX, rest_positions


def test_left_bones_red_right_bones_blue_spine_grey():
    assert bone_colour(JOINT_INDEX["left_wrist"]) == SIDE_COLOURS["left"] == "tab:red"
    assert bone_colour(JOINT_INDEX["right_knee"]) == SIDE_COLOURS["right"] == "tab:blue"
    assert bone_colour(JOINT_INDEX["head"]) == bone_colour(JOINT_INDEX["spine2"]) == SIDE_COLOURS["centre"]


def test_floor_grid_covers_the_root_path_with_a_margin():
    path = np.array([[0.0, 0.0], [3.2, 1.1], [2.0, -4.3]])
    xs, zs = floor_grid(path, margin=1.0)
    assert xs[0] <= -1.0 and xs[-1] >= 4.2 and zs[0] <= -5.3 and zs[-1] >= 2.1
    assert np.allclose(np.diff(xs), GRID_SPACING_M) and np.allclose(np.diff(zs), GRID_SPACING_M)


def test_walking_figure_preview_shows_red_and_blue_pixels(tmp_path):
    rest = rest_positions()
    rest = rest - np.array([0.0, rest[:, 1].min(), 0.0])  # feet on the floor
    frames = np.stack([rest + np.array([0.0, 0.0, 0.05 * t]) for t in range(30)])  # walks 1.5 m forward
    motion = MotionResult.from_joints(frames, fps=20.0)
    path = write_preview(motion, tmp_path / "walk.gif")
    with Image.open(path) as gif:
        gif.seek(gif.n_frames // 2)
        pixels = np.asarray(gif.convert("RGB"), dtype=np.int32)
    red = (pixels[..., 0] > 180) & (pixels[..., 1] < 120) & (pixels[..., 2] < 120)
    blue = (pixels[..., 2] > 150) & (pixels[..., 0] < 100)
    assert red.sum() > 20 and blue.sum() > 20
