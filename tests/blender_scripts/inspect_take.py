# SPDX-License-Identifier: GPL-3.0-or-later
"""Open a saved .blend and report the active take of each armature: the keys of each of its F-curves, its markers,
its KMM custom properties (which motion file produced it) and that file as the take carries it (its bytes from the
.blend, written to a temporary file: "motion_file", "" for a take without its own copy).

    inspect_take.py <file.blend>
"""

from __future__ import annotations

import sys
import tempfile
import zlib
from pathlib import Path

import _harness

_harness.start()
import bpy  # noqa: E402
import numpy as np  # noqa: E402
from bpy_extras import anim_utils  # noqa: E402

bpy.ops.wm.open_mainfile(filepath=sys.argv[1])
scene = bpy.context.scene
takes = {}
for obj in bpy.data.objects:
    if obj.type != "ARMATURE" or obj.animation_data is None or obj.animation_data.action is None:
        continue
    action = obj.animation_data.action
    channelbag = anim_utils.action_get_channelbag_for_slot(action, obj.animation_data.action_slot)
    curves = {}
    for fcurve in channelbag.fcurves:
        points = fcurve.keyframe_points
        co = np.empty(2 * len(points), dtype=np.float32)
        points.foreach_get("co", co)
        curves[f"{fcurve.data_path}[{fcurve.array_index}]"] = co.reshape(-1, 2).tolist()  # [[frame, value], ...]
    motion_file = ""
    if "_kmm_motion" in action.keys():
        motion_file = str(Path(tempfile.mkdtemp(prefix="kmm_inspect_")) / "carried.npz")
        Path(motion_file).write_bytes(zlib.decompress(bytes(action["_kmm_motion"])))
    takes[obj.name] = {"action": action.name, "curves": curves, "motion_file": motion_file,
                       "markers": sorted([marker.frame, marker.name] for marker in action.pose_markers),
                       "properties": {key: action[key] for key in action.keys() if key.startswith("kmm_")}}
_harness.emit({"takes": takes, "frame_range": [scene.frame_start, scene.frame_end],
               "actions": sorted(action.name for action in bpy.data.actions)})
