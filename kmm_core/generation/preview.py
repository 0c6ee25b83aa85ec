# SPDX-License-Identifier: GPL-3.0-or-later
"""An animated stick figure of a MotionResult, with the prompt of the segment being played, as GIF or MP4.

Rendered off-screen with matplotlib's Agg backend (no display needed); GIFs through Pillow, MP4 through ffmpeg
(an error says so when ffmpeg is missing).  A fixed 3-D view of the whole path, drawn on a floor grid, so travel and
turns are seen as they happen; the character's left side is drawn red, its right side blue, so "left" and "right"
prompts can be checked at a glance.  480 pixels square by default; a GIF keeps the take's timing exactly (each
frame's delay in the GIF's hundredths of a second, rounded so that the delays add up to the take's time).
Torch-free.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from ..common.atomic_write import atomic_path
from ..common.errors import KMMError
from ..motion.motion_result import MotionResult
from ..motion.skeleton import JOINT_NAMES, PARENTS

PREVIEW_SUFFIXES = (".gif", ".mp4")
MAX_PREVIEW_FPS = 15.0
"""Frames are skipped above this rate: a preview only needs to show what the motion does, quickly."""


SIDE_COLOURS = {"left": "tab:red", "right": "tab:blue", "centre": "0.35"}
GRID_SPACING_M = 0.5


def bone_colour(joint: int) -> str:
    """Colour of the bone ending at `joint`: by the side of the body it belongs to (left red, right blue)."""
    side = JOINT_NAMES[joint].split("_")[0]
    return SIDE_COLOURS.get(side, SIDE_COLOURS["centre"])


def floor_grid(root_xz: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Grid line positions (x and z, metres, multiples of GRID_SPACING_M) covering the root's path plus `margin`."""
    low = np.floor((root_xz.min(axis=0) - margin) / GRID_SPACING_M) * GRID_SPACING_M
    high = np.ceil((root_xz.max(axis=0) + margin) / GRID_SPACING_M) * GRID_SPACING_M
    return (np.arange(low[0], high[0] + 1e-9, GRID_SPACING_M), np.arange(low[1], high[1] + 1e-9, GRID_SPACING_M))


class PreviewError(KMMError, ValueError):
    """The preview cannot be written (names the file)."""


def _frame_indices(num_frames: int, fps: float, max_fps: float) -> tuple[np.ndarray, float]:
    stride = max(1, int(np.ceil(fps / max_fps)))
    return np.arange(0, num_frames, stride), fps / stride


def check_preview_path(path: str | Path) -> Path:
    """`path` if a preview can be written there: .gif or .mp4, an existing folder, ffmpeg on PATH for .mp4 (the
    command line checks this before generating, not after)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in PREVIEW_SUFFIXES:
        raise PreviewError(f"{path}: a preview must be .gif or .mp4, got {path.suffix!r}")
    if not path.parent.is_dir():
        raise PreviewError(f"{path}: the folder does not exist")
    if suffix == ".mp4" and shutil.which("ffmpeg") is None:
        raise PreviewError(f"{path}: writing MP4 needs ffmpeg on PATH; write a .gif instead")
    return path


PREVIEW_PIXELS = 480


def gif_delays_ms(count: int, fps: float) -> list[int]:
    """Each of `count` frames' delay (ms, whole hundredths of a second, as GIF stores them) shown at `fps`: rounded
    on the running total, so the frames add up to the take's own time (a fixed 60 ms for 15 fps played 11% fast)."""
    ends = np.round(np.arange(1, count + 1) * 100.0 / fps).astype(int)
    return (np.diff(np.concatenate([[0], ends])) * 10).tolist()


def write_preview(motion: MotionResult, path: str | Path, *, max_fps: float = MAX_PREVIEW_FPS, size: float = 6.0,
                  dpi: int = PREVIEW_PIXELS // 6) -> Path:
    """Write the animation to `path` (.gif or .mp4) and return the path."""
    path = check_preview_path(path)

    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import animation
    from matplotlib import pyplot as plt

    joints = np.asarray(motion.joints, dtype=np.float64)
    frames, preview_fps = _frame_indices(len(joints), motion.fps, max_fps)
    prompts = [""] * len(joints)
    for (start, end), prompt in zip(motion.segment_frames, motion.segment_prompts, strict=True):
        prompts[int(start):int(end)] = [prompt] * (int(end) - int(start))

    figure = plt.figure(figsize=(size, size), dpi=dpi)
    figure.subplots_adjust(left=0.0, right=1.0, bottom=0.0, top=0.9)
    axes = figure.add_subplot(projection="3d")
    # HumanML3D is Y-up; matplotlib's 3-D axes are Z-up: plot (x, z, y).
    bones = [axes.plot([], [], [], color=bone_colour(joint), linewidth=2.5)[0]
             for joint in range(1, len(PARENTS))]
    title = axes.set_title("", fontsize=10)
    reach = 1.0
    root_xz = joints[:, 0][:, [0, 2]]
    grid_x, grid_z = floor_grid(root_xz, margin=reach)
    # one fixed view of the whole path (a cube, so proportions hold), the path drawn on the floor
    centre = (root_xz.min(axis=0) + root_xz.max(axis=0)) / 2.0
    half = max(reach, float(np.ptp(root_xz, axis=0).max()) / 2.0 + 0.6)
    height = max(2.2, float(joints[..., 1].max()) + 0.2)
    axes.set_xlim(centre[0] - half, centre[0] + half)
    axes.set_ylim(centre[1] - half, centre[1] + half)
    axes.set_zlim(0.0, height)
    axes.set_box_aspect((1.0, 1.0, height / (2.0 * half)), zoom=1.3)  # metres the same on every axis
    axes.view_init(elev=22.0, azim=-60.0)
    axes.plot(root_xz[:, 0], root_xz[:, 1], np.zeros(len(root_xz)), color="0.55", linewidth=1.0, linestyle="--")

    def draw(index: int):
        pose = joints[frames[index]]
        for bone, (joint, parent) in zip(bones, enumerate(PARENTS[1:], start=1), strict=True):
            bone.set_data_3d([pose[parent, 0], pose[joint, 0]], [pose[parent, 2], pose[joint, 2]],
                             [pose[parent, 1], pose[joint, 1]])
        title.set_text(f"{prompts[frames[index]][:60]}\nframe {frames[index]} / {len(joints)}")
        return [*bones, title]

    for x in grid_x:
        axes.plot([x, x], [grid_z[0], grid_z[-1]], [0.0, 0.0], color="0.85", linewidth=0.5)
    for z in grid_z:
        axes.plot([grid_x[0], grid_x[-1]], [z, z], [0.0, 0.0], color="0.85", linewidth=0.5)
    axes.set_axis_off()
    try:
        with atomic_path(path) as temporary:  # same suffix, so the writer picks the same format
            if path.suffix.lower() == ".gif":
                _write_gif(figure, draw, len(frames), preview_fps, temporary)
            else:
                player = animation.FuncAnimation(figure, draw, frames=len(frames), interval=1000.0 / preview_fps,
                                                 blit=False)
                player.save(str(temporary), writer=animation.FFMpegWriter(fps=preview_fps), dpi=dpi)
    finally:
        plt.close(figure)
    return path


def _write_gif(figure, draw, count: int, fps: float, target: Path) -> None:
    """The frames drawn one by one into a GIF whose delays keep the take's time (`gif_delays_ms`)."""
    from PIL import Image

    images = []
    for index in range(count):
        draw(index)
        figure.canvas.draw()
        images.append(Image.fromarray(np.asarray(figure.canvas.buffer_rgba())[..., :3]).convert(
            "P", palette=Image.Palette.ADAPTIVE, colors=32))
    images[0].save(target, format="GIF", save_all=True, append_images=images[1:], duration=gif_delays_ms(count, fps),
                   loop=0, optimize=True, disposal=1)
