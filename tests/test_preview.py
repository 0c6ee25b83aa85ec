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


def test_the_preview_is_480_pixels_keeps_the_takes_time_and_holds_its_camera(tmp_path):
    """The preview was 240 pixels, its camera followed the hips (travel and turns could not be seen) and a 30 fps
    take played 11% fast (a fixed 60 ms a frame for 15 fps).  Now 480 pixels, the delays add up to the take's time
    to within one hundredth of a second, and the view is fixed: the figure walks across it."""
    from kmm_core.generation.preview import gif_delays_ms

    rest = rest_positions()
    rest = rest - np.array([0.0, rest[:, 1].min(), 0.0])
    frames = np.stack([rest + np.array([0.0, 0.0, 0.05 * t]) for t in range(90)])  # 3 s at 30 fps, 4.5 m
    motion = MotionResult.from_joints(frames, fps=30.0)
    path = write_preview(motion, tmp_path / "walk.gif")
    with Image.open(path) as gif:
        assert gif.size == (480, 480)
        delays, columns = [], []
        for index in range(gif.n_frames):
            gif.seek(index)
            delays.append(gif.info["duration"])
            pixels = np.asarray(gif.convert("RGB"), dtype=np.int32)
            red = (pixels[..., 0] > 180) & (pixels[..., 1] < 120) & (pixels[..., 2] < 120)
            columns.append(np.flatnonzero(red.any(axis=0)).mean() if red.any() else np.nan)
    assert abs(sum(delays) - 3000) <= 10, sum(delays)
    assert sum(gif_delays_ms(8, 15.0)) == 530 and all(d % 10 == 0 for d in gif_delays_ms(8, 15.0))
    assert np.nanmax(columns) - np.nanmin(columns) > 40  # the figure moves across a fixed view


def test_the_guides_preview_picture_is_what_its_command_makes_now(tmp_path):
    """docs/cli.md shows the preview of the README's timeline; its caption names the command.  Made again here from
    the current default model and code, it has the committed picture's size, frames and timing, and its frames
    differ only by the GIF's palette (a stale picture from another model or renderer differs everywhere)."""
    import subprocess
    import sys

    from conftest import REPO_ROOT

    committed = REPO_ROOT / "docs" / "images" / "preview-timeline.gif"
    fresh = tmp_path / "preview.gif"
    done = subprocess.run([sys.executable, "-m", "kmm_core.cli", "generate", "--timeline",
                           str(REPO_ROOT / "examples" / "timeline.json"), "--seed", "0", "-o",
                           str(tmp_path / "take.npz"), "--preview", str(fresh), "--quiet"], capture_output=True,
                          text=True, timeout=600, env={"PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1",
                                                       "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    with Image.open(committed) as old, Image.open(fresh) as new:
        assert old.size == new.size == (480, 480) and old.n_frames == new.n_frames
        for index in (0, old.n_frames // 2, old.n_frames - 1):
            old.seek(index)
            new.seek(index)
            assert old.info["duration"] == new.info["duration"]
            a = np.asarray(old.convert("L"), dtype=np.float64)
            b = np.asarray(new.convert("L"), dtype=np.float64)
            assert np.mean(np.abs(a - b) > 40) < 0.002, index  # at most 0.2% of the pixels differ visibly
