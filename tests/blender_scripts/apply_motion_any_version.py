# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender check that runs on every supported Blender (4.2 ... 5.x): apply a real MotionResult with each F-curve API
the running Blender offers, evaluate the pose, and register/unregister the extension.

Unlike apply_motion.py (which uses 4.4+ only features to inspect the result) everything here is version-neutral.
Run it with any Python that has a `bpy` wheel and numpy; the repository needs nothing else (torch-free kmm_core).
Prints one JSON result (see _harness.emit); exits non-zero on any exception.
"""

from __future__ import annotations

import time
from pathlib import Path

import _harness
import numpy as np

user_dir = _harness.start()
import bpy  # noqa: E402
import fixture_motion  # noqa: E402

package = _harness.import_extension_package(user_dir)
from kmm_motion.kmm_blender.rigs import armature_builder, take_keys  # noqa: E402
from kmm_motion.kmm_blender.rigs.axes import positions_to_blender  # noqa: E402
from kmm_motion.kmm_blender.takes import keyframe_writer  # noqa: E402
from kmm_motion.kmm_core.motion import skeleton  # noqa: E402
from kmm_motion.kmm_core.motion.motion_result import MotionResult  # noqa: E402

result: dict = {"blender_version": list(bpy.app.version), "numpy_version": np.__version__}


# --- registration ---------------------------------------------------------------------------------------------
result["before_register"] = _harness.registration_snapshot()
package.register()
result["registered"] = _harness.registration_snapshot()
package.unregister()
result["after_unregister"] = _harness.registration_snapshot()
package.register()  # a second cycle: register must not depend on state the first one left behind
result["registered_again"] = _harness.registration_snapshot()["types"]
package.unregister()

# --- a real MotionResult, through its file format (what `kmm generate` writes and the add-on reads) ------------
fixture = fixture_motion.load_fixture_motion()
motion_file = _harness.scratch_folder("kmm_versions_") / "take.npz"
MotionResult(
    fps=fixture.fps, joints=fixture.joints.astype(np.float32), root_translation=fixture.root_translation,
    local_rotations=fixture.local_rotations, rest_offsets=fixture.rest_offsets,
    segment_frames=fixture.segment_frames, segment_prompts=tuple(str(p) for p in fixture.segment_prompts),
).save(motion_file)
motion = MotionResult.load(motion_file)
frames = motion.num_frames
result["motion_frames"] = frames
result["segment_starts"] = [int(start) for start, _ in motion.segment_frames]

context = bpy.context
scene = context.scene
scene.render.fps, scene.render.fps_base = 24, 1.0
armature = armature_builder.create_armature(context)


def evaluated_heads(frame: int) -> np.ndarray:
    scene.frame_set(frame)
    world = armature.matrix_world
    return np.array([list(world @ armature.pose.bones[name].head) for name in skeleton.JOINT_NAMES])


def worst_distance(pairs: list[tuple[int, int]]) -> float:
    """Max distance (m) between evaluated bone heads at scene frame f and the motion's joints at motion frame m."""
    return max(float(np.linalg.norm(evaluated_heads(f) - positions_to_blender(motion.joints[m]), axis=-1).max())
               for f, m in pairs)


def fcurves_of(action) -> list:
    """All F-curves of an action, on any Blender: legacy `Action.fcurves` or the 4.4+ layered channelbags."""
    if hasattr(action, "layers") and len(action.layers):
        return [fc for layer in action.layers for strip in layer.strips for bag in strip.channelbags
                for fc in bag.fcurves]
    return list(getattr(action, "fcurves", []))


probe = bpy.data.actions.new("probe")
apis = []
if hasattr(probe, "fcurves") and bpy.app.version < (5, 0, 0):
    apis.append("legacy")
if hasattr(probe, "fcurve_ensure_for_datablock"):
    apis.append("datablock")
if keyframe_writer.available_api(probe) == "channelbag":
    apis.append("channelbag")
result["default_api"] = keyframe_writer.available_api(probe)
bpy.data.actions.remove(probe)
result["apis"] = apis

for api in apis:
    for fps_mode in (take_keys.FPS_RESAMPLE, take_keys.FPS_FRAME_PER_FRAME):
        key = f"{api}/{fps_mode}"
        options = take_keys.WriteOptions(fps_mode=fps_mode, start_frame=10, action_name=f"take {key}", api=api)
        started = time.perf_counter()
        take = keyframe_writer.write_take(armature, motion, options, scene)
        result.setdefault("write_seconds", {})[key] = time.perf_counter() - started
        if fps_mode == take_keys.FPS_RESAMPLE:  # 20 -> 24 fps: every 6th scene frame is every 5th motion frame
            pairs = [(10 + 6 * k, 5 * k) for k in range(0, (frames - 1) // 5 + 1, 2)]
        else:
            pairs = [(10 + m, m) for m in range(0, frames, 9)]
        result.setdefault("position_errors", {})[key] = worst_distance(pairs)
        result.setdefault("active_is_take", {})[key] = armature.animation_data.action == take.action
        curves = fcurves_of(take.action)
        result.setdefault("fcurve_counts", {})[key] = len(curves)
        # Every channel sits in its bone's group (the Dope Sheet/Graph Editor list them per bone).
        result.setdefault("ungrouped_or_misgrouped", {})[key] = sum(
            1 for fc in curves if fc.group is None or f'"{fc.group.name}"' not in fc.data_path)
        result.setdefault("group_counts", {})[key] = len({fc.group.name for fc in curves if fc.group is not None})
        result.setdefault("markers", {})[key] = [[m.name, m.frame] for m in take.action.pose_markers]
        result.setdefault("frame_ranges", {})[key] = [take.frame_start, take.frame_end]

# NLA push with the default API: the strip plays the take, the active action is cleared.
take = keyframe_writer.write_take(armature, motion, take_keys.WriteOptions(push_to_nla=True), scene)
result["nla_action_after_push"] = armature.animation_data.action.name if armature.animation_data.action else None
result["nla_error"] = worst_distance([(1 + 6 * k, 5 * k) for k in range(0, (frames - 1) // 5 + 1, 4)])

# --- the take carries its motion file: saved in the .blend, restored byte for byte after the file is gone --------
from kmm_motion.kmm_blender.takes import provenance as take_provenance  # noqa: E402

take_provenance.record(take.action, str(motion_file), take_keys.WriteOptions(), scene)
take.action.use_fake_user = True
take_name = take.action.name
original = motion_file.read_bytes()
blend = motion_file.parent / "travel.blend"
bpy.ops.wm.save_as_mainfile(filepath=str(blend))
motion_file.unlink()
bpy.ops.wm.open_mainfile(filepath=str(blend))
reopened = bpy.data.actions[take_name]
restored = take_provenance.motion_file(reopened, take_provenance.read(reopened), motion_file.parent / "restored")
result["restored_motion_identical"] = Path(restored).read_bytes() == original and restored != str(motion_file)

_harness.emit(result)
