# SPDX-License-Identifier: GPL-3.0-or-later
"""The clean-up of a fresh generation, applied to the new frames of an edit (NumPy, torch-free).

An edit (`editing.py`: regenerate, continue, in-between) decodes new frames and splices them between kept frames of
a source MotionResult.  When the source was foot-locked (its `foot_lock` flag: the clean-up a fresh take gets,
`motion/take_cleanup.cleaned_motion`), the new frames get that same clean-up, so an edited take is as clean as a fresh
one:

1. a window of the edited motion, the new part plus up to `CONTEXT_SECONDS` of kept frames on each side (so a
   contact that crosses the part's edge is decided with the kept frames, as in a whole take), is foot-locked with
   contact channels (the source's recorded `foot_contacts` on kept frames, the model's decoded contact channels on
   new frames) and a body on all fours put on its hands, as a fresh take is (`motion/take_cleanup.cleaned_motion`);
2. the cleaned new frames replace the spliced ones, cross-faded back to the spliced frames over the part's first and
   last `blend` frames (the same margin in which the splice itself cross-fades from the kept poses), so the part
   still meets the kept frames without a jump;
3. bone rotations of the part are recomputed by inverse kinematics (quaternion hemispheres continued from the kept
   frame before), and `foot_contacts` holds the source's contacts on kept frames and the clean-up's inside.

Frames outside the part are never written: they stay bit-identical to the source (the blend margin lies inside
the part).  Smoothing of decoded features needs nothing here (the edit decodes with the same `smoothing`), and a
segment's `path` is followed by `editing.regenerate` before the splice (`paths.follow_paths`).
"""

from __future__ import annotations

import numpy as np

from ..common.smoothstep import smoothstep
from ..motion.kinematics import inverse_kinematics
from ..motion.motion_result import MotionResult
from ..motion.take_cleanup import cleaned_motion

CONTEXT_SECONDS = 1.0
"""Kept motion on each side of the new part that the clean-up sees (its contacts decide the part's edge locks)."""


def part_weights(count: int, blend: int, fade_in: bool, fade_out: bool) -> np.ndarray:
    """(count,) weight of the cleaned frames across a part: 1 inside, easing to 0 over `blend` frames at a faded
    edge (the frame just outside the edge would be weight 0)."""
    position = np.arange(count, dtype=np.float64)
    weight = np.ones(count)
    if blend > 0 and fade_in:
        weight = np.minimum(weight, smoothstep((position + 1.0) / (blend + 1.0)))
    if blend > 0 and fade_out:
        weight = np.minimum(weight, smoothstep((count - position) / (blend + 1.0)))
    return weight


def clean_edited_part(edited: MotionResult, start: int, end: int, kept_contacts: np.ndarray,
                      new_channels: np.ndarray, blend: int) -> MotionResult:
    """`edited` with its frames [start, end) foot-locked (see the module docstring); every other frame is the very
    same values.  `kept_contacts` (T, 4): the contacts recorded for the kept frames (rows inside the part are
    ignored); `new_channels` (end - start, 4): decoded contact channels of the new frames; `blend`: frames of the
    cross-fade inside each edge of the part that meets kept frames."""
    total, fps = edited.num_frames, edited.fps
    context = int(round(CONTEXT_SECONDS * fps))
    first, last = max(0, start - context), min(total, end + context)
    channels = np.asarray(kept_contacts, dtype=np.float64)[first:last].copy()
    channels[start - first:end - first] = np.asarray(new_channels, dtype=np.float64)
    window = MotionResult(fps=fps, joints=edited.joints[first:last], root_translation=edited.root_translation[first:last],
                          local_rotations=edited.local_rotations[first:last], rest_offsets=edited.rest_offsets,
                          joint_names=edited.joint_names)
    locked = cleaned_motion(window, channels)
    weight = part_weights(end - start, blend, start > 0, end < total)[:, None, None]
    spliced = edited.joints[start:end].astype(np.float64)
    part = spliced * (1.0 - weight) + locked.joints[start - first:end - first] * weight
    root, rotations = inverse_kinematics(part, edited.rest_offsets)
    rotations = rotations.astype(np.float32)
    if start > 0:  # keep the quaternion hemisphere continuous with the kept frame before
        flip = np.sum(rotations[0] * edited.local_rotations[start - 1], axis=-1) < 0
        rotations[:, flip] *= -1.0
    joints, roots, local = edited.joints.copy(), edited.root_translation.copy(), edited.local_rotations.copy()
    joints[start:end], roots[start:end], local[start:end] = part, root, rotations
    contacts = np.asarray(kept_contacts, dtype=np.uint8).copy()
    contacts[start:end] = locked.foot_contacts[start - first:end - first]
    return MotionResult(fps=fps, joints=joints, root_translation=roots, local_rotations=local,
                        rest_offsets=edited.rest_offsets, joint_names=edited.joint_names,
                        segment_frames=edited.segment_frames, segment_prompts=edited.segment_prompts,
                        timeline_json=edited.timeline_json, foot_lock=True, foot_contacts=contacts,
                        loop_offset=edited.loop_offset)
