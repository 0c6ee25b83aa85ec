# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender check: keys on the right arm only become partial key poses that hold that arm and let the walk walk, on
the rig Rigify generates (its FK controls) and on a Mixamo-named rig.

For each rig: the right arm (upper arm, forearm, hand) is keyed at two frames of a 150-frame walk (raised forward at
frame 40, out to the side at frame 110), nothing else keyed; "Use my keys as constraints" must store two poses that
hold the right arm's joints only, the panel's summary naming them; Generate runs the way the panel runs it (the
REAL worker with the shipped kmm-small model, the controller's timer driven by hand).  Measured on the rig's
evaluated joint points: the right wrist's place relative to the chest (the chest's turn found from the points it
carries: neck and collars) at each keyed frame, take against keys; the pelvis' travel; which foot is ahead, frame by
frame.  One undo must give back the keyed animation exactly.

Then bad input, each refused with a message naming the constraint and field, no job started, nothing changed: a
stored partial key naming a joint the skeleton does not have, and Import Timeline of a file whose partial key does
the same (the table and the kept key poses unchanged).  And Import Timeline of a valid file keeps its constraints.
Finally the cap: a keyed-frame count above `MAX_KEY_POSES` is refused before any frame is evaluated.
"""

from __future__ import annotations

import importlib
import json
import sys

import _harness
import numpy as np

user_dir = _harness.start()
import bpy  # noqa: E402
from mathutils import Matrix  # noqa: E402

package = _harness.import_extension_package(user_dir)
package.register()
import key_posing  # noqa: E402
from key_posing import joint_points, swing  # noqa: E402
from kmm_motion.kmm_blender.jobs import runner as job_runner  # noqa: E402
from kmm_motion.kmm_blender.rigs import retarget as rig_retarget  # noqa: E402
from kmm_motion.kmm_blender.timeline import constraint_source, segment_table  # noqa: E402
from kmm_motion.kmm_blender.timeline.properties import rows_of, set_rows  # noqa: E402
from kmm_motion.kmm_core.common.errors import KMMError  # noqa: E402
from kmm_motion.kmm_core.motion.skeleton import JOINT_INDEX  # noqa: E402

KEY_FRAMES = (40, 110)
LAST_FRAME = 150
CHEST = [JOINT_INDEX[name] for name in ("neck", "left_collar", "right_collar")]
SPINE3, WRIST, PELVIS = JOINT_INDEX["spine3"], JOINT_INDEX["right_wrist"], JOINT_INDEX["pelvis"]
ANKLES = (JOINT_INDEX["left_ankle"], JOINT_INDEX["right_ankle"])
result: dict = {}
context = bpy.context
scene = context.scene
scene.render.fps, scene.render.fps_base = 30, 1.0
scene.frame_start, scene.frame_end = 1, LAST_FRAME

_, generated, mixamo = key_posing.add_rigify_and_mixamo(context)
rigs = {"rigify": generated.name, "mixamo": mixamo.name}
ARM = {"rigify": ("upper_arm_fk.R", "forearm_fk.R", "hand_fk.R"),
       "mixamo": ("mixamorig:RightArm", "mixamorig:RightForeArm", "mixamorig:RightHand")}


def key_arm(obj, bones, frame: int) -> None:
    for name in bones:
        bone = obj.pose.bones[name]
        path = "rotation_quaternion" if bone.rotation_mode == "QUATERNION" else "rotation_euler"
        bone.keyframe_insert(path, frame=frame)


def key_right_arm(name: str, obj) -> None:
    upper, fore, hand = ARM[name]
    key_posing.start_keying(context, obj, f"{name}_arm_keys")
    swing(context, obj, upper, (0, -1, 0), 80)  # raised forward
    swing(context, obj, fore, (0, 0, 1), 40)
    key_arm(obj, ARM[name], KEY_FRAMES[0])
    for bone in ARM[name]:
        obj.pose.bones[bone].matrix_basis = Matrix()
    context.view_layer.update()
    swing(context, obj, upper, (0, 0, 1), 20)  # out to the side, a little up
    swing(context, obj, fore, (0, -1, 0), 60)
    key_arm(obj, ARM[name], KEY_FRAMES[1])


def wrist_in_chest(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the chest's carried points relative to spine3, the wrist relative to spine3) of one pose (22, 3)."""
    return points[CHEST] - points[SPINE3], points[WRIST] - points[SPINE3]


def wrist_error(keyed: np.ndarray, take: np.ndarray) -> float:
    """Metres between the take's right wrist and the keyed one, both seen from their chest (spine3 and the turn
    that best carries the keyed chest's points onto the take's)."""
    chest_key, wrist_key = wrist_in_chest(keyed)
    chest_take, wrist_take = wrist_in_chest(take)
    u, _, vt = np.linalg.svd(chest_take.T @ chest_key)
    d = np.sign(np.linalg.det(u @ vt))
    turn = u @ np.diag([1.0, 1.0, d]) @ vt
    return float(np.linalg.norm(turn @ wrist_key - wrist_take))


def keyed_state(obj) -> dict:
    action = obj.animation_data.action if obj.animation_data else None
    return {"action": action.name if action else None, "actions": sorted(a.name for a in bpy.data.actions),
            "points": joint_points(obj, KEY_FRAMES).round(6).tolist(),
            "poses": bpy.context.scene.kmm.constraint_poses,
            "rows": [(row.prompt, row.start, row.end) for row in rows_of(bpy.context.scene.kmm)]}


config = key_posing.worker_config()
settings = scene.kmm
settings.random_seed = False
settings.seed = 2
set_rows(settings, [segment_table.Row("a person walks forward", 1, LAST_FRAME)])
for name in list(rigs):
    obj = bpy.data.objects[rigs[name]]
    scene = bpy.context.scene  # an undo replaces every data-block: take them afresh
    settings = scene.kmm
    key_right_arm(name, obj)
    settings.target_armature = obj
    settings.key_poses_whole_body = False
    outcome = bpy.ops.kmm.use_keys_as_constraints()
    poses = constraint_source.stored_poses(settings)
    keyed = joint_points(obj, KEY_FRAMES)
    scene.frame_set(1)
    bpy.ops.ed.undo_push(message=f"{name} keyed")
    before = keyed_state(obj)
    job = key_posing.generate_and_wait(config, limit_s=300)
    take = joint_points(obj, range(1, LAST_FRAME + 1))
    forward = take[-1, PELVIS] - take[0, PELVIS]
    forward[1] = 0.0
    ahead = np.sign((take[:, ANKLES[0]] - take[:, ANKLES[1]]) @ (forward / max(np.linalg.norm(forward), 1e-9)))
    ahead = ahead[ahead != 0]
    result[name] = {"operator": sorted(outcome), "pose_frames": [p["frame"] for p in poses],
                    "pose_joints": [p.get("joints") for p in poses],
                    "summaries": [constraint_source.constraint_summary(p) for p in poses],
                    "job": [job.state, job.error], "take": obj.animation_data.action.name,
                    "wrist_error_m": [wrist_error(keyed[k], take[frame - 1]) for k, frame in enumerate(KEY_FRAMES)],
                    "pelvis_travel_m": float(np.linalg.norm(forward)),
                    "foot_swaps": int(np.count_nonzero(np.diff(ahead))),
                    "leg_m": float(np.linalg.norm(keyed[0, 1] - keyed[0, 4]) + np.linalg.norm(keyed[0, 4] - keyed[0, 7]))}
    object_name = obj.name
    bpy.ops.ed.undo()
    obj = bpy.data.objects[object_name]
    result[name]["undo_restores"] = keyed_state(obj) == before
    print(name, result[name], file=sys.stderr, flush=True)
    job_runner.release()

# Bad input: refused by name, nothing started, nothing changed.
obj = bpy.data.objects[rigs["mixamo"]]
scene = bpy.context.scene
settings = scene.kmm
settings.target_armature = obj
settings.effectors.clear()
good_poses = settings.constraint_poses
bad_pose = json.loads(good_poses)[0] if good_poses else None


def refusal(action) -> dict:
    before = keyed_state(obj)
    message = action()
    return {"message": message, "unchanged": keyed_state(obj) == before,
            "running": bool(bpy.context.window_manager.kmm_job.running)}


def bad_stored_key(kind: str = "joint") -> str:
    if kind == "joint":
        broken = dict(bad_pose, joints=["right_shoulder", "right_hand"])
    else:  # a NaN in a stored key's positions (a damaged file, a script)
        positions = [list(p) for p in bad_pose["positions"]]
        positions[5][1] = float("nan")
        broken = dict(bad_pose, positions=positions)
    settings.constraint_poses = json.dumps([broken])
    try:
        job_runner.build_request(scene)
        return ""
    except KMMError as error:
        return str(error)
    finally:
        settings.constraint_poses = good_poses


folder = _harness.scratch_folder("kmm_partial_")
timeline_data = {"fps": 30, "segments": [{"prompt": "a person walks forward", "start": 1, "end": 90}],
                 "constraints": [dict(bad_pose, joints=["right_shoulder", "right_hand"]) if bad_pose else {}]}
(folder / "bad.json").write_text(json.dumps(timeline_data))
timeline_data["constraints"] = [dict(bad_pose, frame=60), {"type": "facing", "frame": 80, "direction": [0, 1]}]
(folder / "good.json").write_text(json.dumps(timeline_data))


def bad_import() -> str:
    """Import Timeline of the bad file: the operator refuses it, its error report is the message."""
    try:
        bpy.ops.kmm.timeline_import(filepath=str(folder / "bad.json"))
        return ""
    except RuntimeError as error:  # an operator's ERROR report reaches a script as RuntimeError("Error: ...")
        return str(error)


def map_naming_a_missing_bone() -> str:
    """Use My Keys with a stored bone map that names a bone the rig lacks (Generate refuses it by name)."""
    stored = rig_retarget.bone_map_for(obj)
    rig_retarget.store_bone_map(obj, stored.with_bone("left_wrist", "mixamorig:NoSuchHand"))
    try:
        bpy.ops.kmm.use_keys_as_constraints()
        return ""
    except RuntimeError as error:  # the operator's ERROR report
        return str(error)
    finally:
        rig_retarget.clear_bone_map(obj)


bad = {"stored_key": refusal(bad_stored_key), "import": refusal(bad_import),
       "nan_stored_key": refusal(lambda: bad_stored_key("nan")), "missing_bone": refusal(map_naming_a_missing_bone)}
result["bad"] = bad
outcome = bpy.ops.kmm.timeline_import(filepath=str(folder / "good.json"))
kept = json.loads(bpy.context.scene.kmm.constraint_poses or "[]")
result["import_keeps"] = {"operator": sorted(outcome), "types": [c.get("type") for c in kept],
                          "joints": [c.get("joints") for c in kept], "frames": [c.get("frame") for c in kept],
                          "rows": [(r.prompt, r.start, r.end) for r in rows_of(bpy.context.scene.kmm)]}



class RecordingLayout:
    """Stands in for a UILayout: records the labels the Constraints panel draws."""

    def __init__(self, labels: list):
        self.labels = labels

    def label(self, text="", **_kwargs):
        self.labels.append(text)

    def operator(self, *_args, **_kwargs):
        return type("Properties", (), {})()

    def prop(self, *_args, **_kwargs):
        return None

    def prop_search(self, *_args, **_kwargs):
        return None

    def row(self, **_kwargs):
        return self

    column = box = row


labels: list = []
constraints_panel = importlib.import_module("kmm_motion.kmm_blender.ui.constraints_panel")
constraints_panel.KMM_PT_constraints.draw(type("Panel", (), {"layout": RecordingLayout(labels)})(), bpy.context)
result["panel_labels"] = labels

# Cancel: the panel's operator reads the keys in steps on a timer (its modal events driven by hand here: Blender as a
# module has no window), one keyed frame per step; Esc midway puts the frame back and changes no key pose, and the
# steps run to the end store the same poses as the all-at-once path.
class ModalOperator:
    """Stands in for the running operator: records its reports and the end of its modal run."""

    def __init__(self):
        self.reports, self.ended = [], 0

    def report(self, kind, text):
        self.reports.append((sorted(kind)[0], text))

    def _end_modal(self, _context):
        self.ended += 1


constraints_panel.STEP_SECONDS = 0.0
set_rows(settings, [segment_table.Row("a person walks forward", 1, LAST_FRAME)])
settings.key_poses_whole_body = False
scene.frame_set(7)
kept_before = settings.constraint_poses
operator, reading = ModalOperator(), constraints_panel._start_reading(bpy.context)
returned = [constraints_panel.reading_event(operator, bpy.context, reading, "MOUSEMOVE", "NOTHING"),
            constraints_panel.reading_event(operator, bpy.context, reading, "TIMER", "NOTHING")]
midway = {"frame": scene.frame_current, "fraction": reading.fraction}
returned.append(constraints_panel.reading_event(operator, bpy.context, reading, "ESC", "PRESS"))
result["cancel"] = {"returned": [sorted(r) for r in returned], "midway": midway, "frame_after": scene.frame_current,
                    "unchanged": settings.constraint_poses == kept_before, "ended": operator.ended,
                    "reports": operator.reports}
expected = constraint_source.poses_from_keys(scene, obj, 1, LAST_FRAME)
operator, reading = ModalOperator(), constraints_panel._start_reading(bpy.context)
steps, outcome = 0, {"RUNNING_MODAL"}
while outcome == {"RUNNING_MODAL"} and steps < 100:
    outcome = constraints_panel.reading_event(operator, bpy.context, reading, "TIMER", "NOTHING")
    steps += 1
result["modal_finish"] = {"returned": sorted(outcome), "steps": steps, "ended": operator.ended,
                          "same_as_at_once": constraint_source.stored_poses(settings) == expected,
                          "poses": len(expected), "frame_after": scene.frame_current, "reports": operator.reports}

# The cap: more keyed frames than MAX_KEY_POSES is refused, naming the count, before any frame is evaluated.
cap = constraint_source.MAX_KEY_POSES
action = obj.animation_data.action
curve = next(c for c in constraint_source._fcurves(action, obj) if c.data_path.startswith("pose.bones["))
curve.keyframe_points.add(cap + 5)
for index, point in enumerate(curve.keyframe_points):
    point.co = (index + 1, 0.0)
try:
    constraint_source.poses_from_keys(bpy.context.scene, obj, 1, cap + 10)
    result["cap"] = ""
except KMMError as error:
    result["cap"] = str(error)
result["cap_value"] = cap
result["cap_keyed"] = len({round(point.co[0]) for point in curve.keyframe_points})
_harness.emit(result)
