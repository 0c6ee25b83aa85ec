# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender check (any supported Blender): the writer's bulk keys equal the keys written the straightforward way.

Two real takes of the fixture motion are written with `keyframe_writer.write_take`: one retargeted (the motion's
skeleton 10% taller than the armature, so `rigs/retarget.py` computes the keys) with bones in Euler and axis-angle
modes, and one exact (`rigs/take_keys.py`).  The same keys (`keyframe_writer.take_keys`, each bone's rotation
channel from `rotation_values`) are then written again key by key into a second action: `keyframe_points.insert`,
`interpolation = 'LINEAR'` on each key, `FCurve.update()`.  Every F-curve's frames, values, handles (float32, bit for
bit), interpolation and handle types must agree.  Version-neutral: run it with any Python that has a bpy wheel.
Prints one JSON result (see _harness.emit).
"""

from __future__ import annotations

import _harness
import numpy as np

user_dir = _harness.start()
import bpy  # noqa: E402
import fixture_motion  # noqa: E402

package = _harness.import_extension_package(user_dir)
from kmm_motion.kmm_blender.rigs import armature_builder, take_keys  # noqa: E402
from kmm_motion.kmm_blender.takes import keyframe_writer  # noqa: E402

FIELDS = (("co", 2, np.float32), ("handle_left", 2, np.float32), ("handle_right", 2, np.float32),
          ("interpolation", 1, np.int32), ("handle_left_type", 1, np.int32), ("handle_right_type", 1, np.int32))


def fcurves_of(action: bpy.types.Action, slot=None):
    """The F-curves of `action` (4.2-4.3: Action.fcurves; 4.4+: the slot's channelbag)."""
    from bpy_extras import anim_utils

    if slot is not None and hasattr(anim_utils, "action_get_channelbag_for_slot"):
        return anim_utils.action_get_channelbag_for_slot(action, slot).fcurves
    return action.fcurves


def reference_action(name: str, channels: list[tuple[str, int, str, np.ndarray]], frames: np.ndarray):
    """The keys written one at a time, the way a script without foreach_set would."""
    from bpy_extras import anim_utils

    action = bpy.data.actions.new(name)
    slot = None
    if hasattr(anim_utils, "action_ensure_channelbag_for_slot") and hasattr(action, "slots"):
        slot = action.slots.new(id_type="OBJECT", name=name)
        fcurves = anim_utils.action_ensure_channelbag_for_slot(action, slot).fcurves
        new = lambda path, index, group: fcurves.new(path, index=index, group_name=group)  # noqa: E731
    else:
        new = lambda path, index, group: action.fcurves.new(path, index=index, action_group=group)  # noqa: E731
    for path, index, group, values in channels:
        fcurve = new(path, index, group)
        for frame, value in zip(frames, values, strict=True):
            fcurve.keyframe_points.insert(float(frame), float(value)).interpolation = "LINEAR"
        fcurve.update()
    return action, slot


def compare(take: keyframe_writer.Take, obj: bpy.types.Object, motion, options) -> dict:
    keys = keyframe_writer.take_keys(obj, motion, options, bpy.context.scene)
    channels = []
    for joint, name in enumerate(keys.bone_names):
        mode = obj.pose.bones[name].rotation_mode
        channel, count = keyframe_writer.rotation_channel(mode)
        values = keyframe_writer.rotation_values(keys.quaternions[:, joint], mode)
        channels += [(f'pose.bones["{name}"].{channel}', c, name, values[:, c]) for c in range(count)]
    channels += [(f'pose.bones["{keys.location_bone}"].location', a, keys.location_bone, keys.locations[:, a])
                 for a in range(3)]
    reference, slot = reference_action(f"{options.action_name} per key", channels, keys.frames)

    written = {(f.data_path, f.array_index): f for f in fcurves_of(take.action, obj.animation_data.action_slot
                                                                   if hasattr(obj.animation_data, "action_slot")
                                                                   else None)}
    expected = {(f.data_path, f.array_index): f for f in fcurves_of(reference, slot)}
    differing = {field: 0 for field, _, _ in FIELDS}
    keys_compared = 0
    for curve in set(written) & set(expected):
        fast, slow = written[curve].keyframe_points, expected[curve].keyframe_points
        if len(fast) != len(slow):
            differing["co"] += max(len(fast), len(slow))
            continue
        keys_compared += len(fast)
        for field, width, dtype in FIELDS:
            a, b = np.empty(width * len(fast), dtype), np.empty(width * len(slow), dtype)
            fast.foreach_get(field, a)
            slow.foreach_get(field, b)
            differing[field] += int(np.count_nonzero(a.view(np.uint32) != b.view(np.uint32)))
    groups = {curve: (written[curve].group.name if written[curve].group else None) for curve in written}
    return {"fcurves": len(written), "reference_fcurves": len(expected),
            "missing": sorted(map(str, set(written) ^ set(expected))), "keys_compared": keys_compared,
            "differing": differing,
            "groups_differing": sum(groups[c] != (expected[c].group.name if expected[c].group else None)
                                    for c in set(written) & set(expected)),
            "channels": sorted({path.rsplit(".", 1)[1] for path, _ in written}),
            "handle_y_spread": float(np.ptp([p.handle_left[1] - p.co[1] for f in written.values()
                                             for p in list(f.keyframe_points)[:50]]))}


result: dict = {"blender_version": list(bpy.app.version)}
scene = bpy.context.scene
scene.render.fps, scene.render.fps_base = 24, 1.0  # the 20 fps fixture is resampled, as in a real scene
motion = fixture_motion.load_fixture_motion()

exact = armature_builder.create_armature(bpy.context)
take = keyframe_writer.write_take(exact, motion, take_keys.WriteOptions(action_name="exact"), scene)
result["exact"] = compare(take, exact, motion, take_keys.WriteOptions(action_name="exact"))

retargeted = armature_builder.create_armature(bpy.context)
retargeted.pose.bones["left_elbow"].rotation_mode = "XYZ"
retargeted.pose.bones["right_knee"].rotation_mode = "AXIS_ANGLE"
taller = fixture_motion.load_fixture_motion()
taller.rest_offsets = taller.rest_offsets * 1.1  # another skeleton than the armature's: the keys are retargeted
result["retargeted_fits_exactly"] = take_keys.fits_motion_skeleton(retargeted, taller)
options = take_keys.WriteOptions(action_name="retargeted", root_motion=take_keys.ROOT_MOTION_IN_PLACE)
take = keyframe_writer.write_take(retargeted, taller, options, scene)
result["retargeted"] = compare(take, retargeted, taller, options)
_harness.emit(result)
