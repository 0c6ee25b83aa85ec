# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender check of how a regenerated segment is merged into a take when the motion is RESAMPLED (20 fps motion on a
24 fps scene), without a worker: any Blender 4.2 ... 5.x with numpy can run it.

The "edited" file is built the way the worker's `edit` promises (docs/worker_protocol.md): every frame outside the
segment is copied bit for bit from the source, the frames inside are other real motion (the fixture clip's own frames,
played backwards).  Reports the keys of both takes and of a plain write of the edited file, and what a broken result
file does (nothing may change).
"""

from __future__ import annotations

from dataclasses import replace

import _harness
import numpy as np

user_dir = _harness.start()
import bpy  # noqa: E402
import fixture_motion  # noqa: E402

package = _harness.import_extension_package(user_dir)
package.register()
from kmm_motion.kmm_blender.rigs import take_keys  # noqa: E402
from kmm_motion.kmm_blender.takes import importer as take_importer  # noqa: E402
from kmm_motion.kmm_blender.takes import keyframe_writer, segment_regenerator  # noqa: E402
from kmm_motion.kmm_blender.takes import provenance as take_provenance  # noqa: E402
from kmm_motion.kmm_core.common.errors import KMMError  # noqa: E402
from kmm_motion.kmm_core.motion.motion_result import MotionResult  # noqa: E402

work = _harness.scratch_folder("kmm_regen_keys_")
context = bpy.context
scene = context.scene
scene.render.fps, scene.render.fps_base = 24, 1.0
source = fixture_motion.three_segment_take(MotionResult)  # 170 frames at 20 fps
SEGMENTS = fixture_motion.FIXTURE_SEGMENTS
source_path = source.save(work / "source.npz")
edited = fixture_motion.with_segment_reversed(source, 1, "turn back")
edited_path = edited.save(work / "edited.npz")
result: dict = {"blender_version": list(bpy.app.version)}

options = take_keys.WriteOptions(start_frame=1.0)
first = take_importer.import_takes(context, [str(source_path)], None, options)
armature, old = first.armature, first.takes[0].action
slot = segment_regenerator._active_slot_identifier(armature)


def keys_of(action: bpy.types.Action) -> dict[str, list]:
    curves = segment_regenerator._kmm_curves(action, slot, action.name)
    keys = {}
    for (path, index), fcurve in curves.items():
        co = np.empty(2 * len(fcurve.keyframe_points), dtype=np.float32)
        fcurve.keyframe_points.foreach_get("co", co)
        keys[f"{path}[{index}]"] = co.reshape(-1, 2).tolist()
    return keys


plan = segment_regenerator.plan_regeneration(scene, armature, 1, "turn back")
result["plan"] = {"prompt": plan.prompt, "motion_range": list(plan.motion_range), "source": plan.source}
result["old"] = keys_of(old)

# A broken result file: an error, and the scene is as it was.
broken = work / "broken.npz"
broken.write_bytes(b"not a zip file")
actions_before = sorted(a.name for a in bpy.data.actions)
try:
    segment_regenerator.apply_regeneration(context, plan, str(broken))
    result["broken"] = "no error"
except KMMError as error:
    result["broken"] = str(error)
result["broken_unchanged"] = [sorted(a.name for a in bpy.data.actions) == actions_before,
                              armature.animation_data.action == old]

take = segment_regenerator.apply_regeneration(context, plan, str(edited_path))
result["new_name"] = take.action.name
result["new_active"] = armature.animation_data.action == take.action
result["new"] = keys_of(take.action)
result["new_markers"] = sorted([m.frame, m.name] for m in take.action.pose_markers)
result["new_source"] = take_provenance.read(take.action).source
fresh = keyframe_writer.take_keys(armature, edited, replace(options), scene)
result["fresh"] = {"frames": fresh.frames.tolist(), "quaternions": fresh.quaternions.tolist(),
                   "locations": fresh.locations.tolist()}
package.unregister()
_harness.emit(result)
