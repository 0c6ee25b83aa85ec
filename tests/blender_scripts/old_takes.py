# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender check: a .blend saved by an earlier version of the add-on keeps working with this one.

`old_takes_e26ec61.blend` was saved by Blender 4.2 with the add-on at commit e26ec61 (the last one before the add-on's
sub-packages): a three-row timeline (seed 7, target the Rigify metarig), a take on a KMM armature and a retargeted
take on the metarig (with a stored bone map), both made from a synthetic motion whose file was deleted after saving
(the takes carry its bytes).  Opened here with the current add-on: the table, settings and target read back, each
take's provenance reads and its motion file is restored from the .blend, and one segment of each take is
regenerated in place (a real "edited" result built from the restored file, frames outside the segment bit-identical):
the new take is active, its keys outside the segment are the old ones.
"""

from __future__ import annotations

from pathlib import Path

import _harness
import numpy as np

user_dir = _harness.start()
import bpy  # noqa: E402
import fixture_motion  # noqa: E402

BLEND = Path(__file__).resolve().parent / "old_takes_e26ec61.blend"
work = _harness.scratch_folder("kmm_old_takes_")
bpy.ops.wm.open_mainfile(filepath=str(BLEND), load_ui=False)
package = _harness.import_extension_package(user_dir)
package.register()
from kmm_motion.kmm_blender.rigs import retarget as rig_retarget  # noqa: E402
from kmm_motion.kmm_blender.takes import provenance as take_provenance  # noqa: E402
from kmm_motion.kmm_blender.takes import segment_regenerator  # noqa: E402
from kmm_motion.kmm_blender.timeline.properties import rows_of  # noqa: E402
from kmm_motion.kmm_core.motion.motion_result import MotionResult  # noqa: E402

context = bpy.context
scene = context.scene
settings = scene.kmm
result: dict = {"blender_version": list(bpy.app.version)}
result["rows"] = [[row.prompt, row.start, row.end] for row in rows_of(settings)]
result["seed"] = [settings.seed, settings.random_seed]
result["target"] = settings.target_armature.name if settings.target_armature else None
result["stored_map"] = rig_retarget.stored_bone_map(bpy.data.objects["metarig"]) is not None


def curves_of(action, obj) -> dict:
    slot = getattr(obj.animation_data, "action_slot", None)
    if slot is None:
        fcurves = action.fcurves
    else:
        from bpy_extras import anim_utils

        own = next(s for s in action.slots if s.identifier == slot.identifier)
        fcurves = anim_utils.action_get_channelbag_for_slot(action, own).fcurves
    keys = {}
    for fcurve in fcurves:
        co = np.empty(2 * len(fcurve.keyframe_points), dtype=np.float32)
        fcurve.keyframe_points.foreach_get("co", co)
        keys[(fcurve.data_path, fcurve.array_index)] = co.reshape(-1, 2)
    return keys


for name in ("KMM Skeleton", "metarig"):
    armature = bpy.data.objects[name]
    old = armature.animation_data.action
    provenance = take_provenance.read(old)
    restored = take_provenance.motion_file(old, provenance, work / f"restored {name}")
    source = MotionResult.load(restored)
    start, end = (int(v) for v in source.segment_frames[1])
    edited = fixture_motion.with_segment_reversed(source, 1, "turn back")
    edited_path = edited.save(work / f"edited {name}.npz")
    plan = segment_regenerator.plan_regeneration(scene, armature, 1, "turn back")
    take = segment_regenerator.apply_regeneration(context, plan, str(edited_path))
    edited_bytes = edited_path.read_bytes()
    edited_path.unlink()  # the regenerated take must carry its own file too (it is a copy of the old take)
    carried = take_provenance.motion_file(take.action, take_provenance.read(take.action), work / f"carried {name}")
    before, after = curves_of(old, armature), curves_of(take.action, armature)
    frames = next(iter(before.values()))[:, 0]
    outside = (frames < start + 1) | (frames > end)  # scene frame = motion frame + 1 (start frame 1, 20 fps)
    result[name] = {
        "old_take": old.name, "source_restored": Path(restored).is_file() and restored != provenance.source,
        "new_take": take.action.name, "new_active": armature.animation_data.action == take.action,
        "same_channels": sorted(before) == sorted(after),
        "outside_kept": all(np.array_equal(before[key][outside], after[key][outside]) for key in before),
        "inside_changed": any(not np.allclose(before[key][~outside], after[key][~outside]) for key in before),
        "markers": sorted(m.name for m in take.action.pose_markers),
        "regenerated_carries_its_file": Path(carried).read_bytes() == edited_bytes}
package.unregister()
_harness.emit(result)
