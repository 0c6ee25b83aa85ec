# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender check: a take carries its own motion inside the .blend.

    take_travels.py <model bundle folder> <work folder>

Generates a take with the real worker (results in <work>/tmp, the temporary folder here), saves the .blend in
<work>/a, moves it to <work>/b, deletes every temporary motion file, reopens it and regenerates segment 2 (which
needs the motion the take was made from).  Also: the scene's frame range grows to cover a longer take (and does not
when Extend Frame Range is off), take names say prompt and seed, and generating the same again gets ' #2'.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import _harness

user_dir = _harness.start()
import bpy  # noqa: E402

package = _harness.import_extension_package(user_dir)
package.register()
from kmm_motion.kmm_blender.backend import session as backend_session  # noqa: E402
from kmm_motion.kmm_blender.jobs import runner as job_runner  # noqa: E402
from kmm_motion.kmm_blender.takes import provenance as take_provenance  # noqa: E402
from kmm_motion.kmm_blender.timeline.properties import set_rows  # noqa: E402
from kmm_motion.kmm_blender.timeline.segment_table import Row  # noqa: E402

bundle, work = sys.argv[1], Path(sys.argv[2])
results = Path(tempfile.gettempdir()) / "kmm_results"  # where the add-on puts results when not installed
context = bpy.context
scene = context.scene
scene.render.fps, scene.render.fps_base = 24, 1.0
scene.frame_start, scene.frame_end = 1, 50
settings = scene.kmm
worker = backend_session.BackendConfig(python=sys.executable, device="cpu", checkpoint=bundle)
result: dict = {"results_folder": str(results)}

# --- a 96-frame take on a 50-frame scene: the range grows; names say prompt and seed ---------------------------
set_rows(settings, [Row("walk forward", 1, 48), Row("turn left", 49, 96)])
settings.seed = 5
first = job_runner.run_generation_blocking(context, timeout=240, config=worker).takes[0]
result["first"] = first.action.name
result["frame_range_after_first"] = [scene.frame_start, scene.frame_end]
source = take_provenance.read(first.action).source
result["source_in_results"] = Path(source).is_relative_to(results)
result["stored_bytes"] = len(bytes(first.action[take_provenance.MOTION]))
result["file_bytes"] = Path(source).stat().st_size
again = job_runner.run_generation_blocking(context, timeout=240, config=worker).takes[0]
result["same_again"] = again.action.name
settings.extend_frame_range = False
set_rows(settings, [Row("walk forward", 1, 48), Row("turn left", 49, 120)])
settings.seed = 6
longer = job_runner.run_generation_blocking(context, timeout=240, config=worker).takes[0]
result["longer"] = [longer.action.name, longer.frame_end]
result["frame_range_when_off"] = [scene.frame_start, scene.frame_end]
settings.extend_frame_range = True
job_runner.release()

# --- save, move the .blend, delete the temporary motion files, reopen ----------------------------------------------
set_rows(settings, [Row("walk forward", 1, 48), Row("turn left", 49, 96)])
armature = settings.target_armature
armature.animation_data.action = first.action  # regenerate the first take
(work / "a").mkdir(parents=True)
bpy.ops.wm.save_as_mainfile(filepath=str(work / "a" / "scene.blend"))
(work / "b").mkdir()
shutil.move(str(work / "a" / "scene.blend"), str(work / "b" / "scene.blend"))
shutil.rmtree(results)
result["motion_files_left"] = sorted(str(p) for p in Path(tempfile.gettempdir()).rglob("*.npz"))
bpy.ops.wm.read_homefile(use_empty=True)
bpy.ops.wm.open_mainfile(filepath=str(work / "b" / "scene.blend"))
context = bpy.context
scene = context.scene
settings = scene.kmm
action = settings.target_armature.animation_data.action
result["reopened"] = {"active": action.name, "source_exists": Path(take_provenance.read(action).source).exists()}
settings.seed = 9
regenerated = job_runner.run_regeneration_blocking(context, timeout=240, config=worker, segment=1,
                                                   prompt="jump up").takes[0]
new_action = regenerated.action
result["regenerated"] = new_action.name
result["regenerated_markers"] = sorted([m.frame, m.name] for m in new_action.pose_markers)


def keys(action) -> dict[str, list]:
    from bpy_extras import anim_utils

    channelbag = anim_utils.action_get_channelbag_for_slot(action, action.slots[0])
    return {f"{fc.data_path}[{fc.array_index}]": [list(p.co) for p in fc.keyframe_points]
            for fc in channelbag.fcurves}


result["old_keys"], result["new_keys"] = keys(bpy.data.actions[result["first"]]), keys(new_action)
restored = take_provenance.read(new_action).source
result["new_source"] = restored
job_runner.release()
package.unregister()
_harness.emit(result)
