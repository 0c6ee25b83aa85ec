# SPDX-License-Identifier: GPL-3.0-or-later
"""The animator's keys and targets in the scene -> the timeline's constraints (``kmm_core/generation/constraints.py``).

* **Key poses** ("Use my keys as constraints"): every frame the target armature's action has a key on, inside the
  timeline, becomes a pose constraint holding what was keyed there (``rig_pose.keyed_joints``: a keyed arm bone
  holds that arm, a leg bone that leg from it down, the hips the root, a spine, neck or head bone itself; keys on
  every bone the map drives, or the panel's Whole Body choice, make a whole-body pose).  The rig is evaluated once
  at each such frame, its joints read through the bone map (``rigs/retarget.py`` ``evaluated_joint_points``: the
  retargeting map used in reverse) and all the frames brought onto the canonical skeleton together by
  ``kmm_core/retarget/rig_pose.py`` ``fitting_steps`` (``KeyPoseReading``: in steps, a few frames or one step of
  the fit at a time, which the panel's operator shows as progress and Esc cancels).  At most ``MAX_KEY_POSES`` keyed frames are
  read (more is refused, naming the count).  The poses are stored on the scene as JSON (``kmm.constraint_poses``),
  so they are saved with the file and undone with it; beside them (``kmm.constraint_orientations``) the keyed bones'
  orientations, which the model does not hold (it holds joint positions) and the take gets back after the transfer
  (``held_rotations``, ``kmm_core/retarget/held_rotations.py``): a keyed hand bend, an arm's twist, a head's turn.
* **Targets**: the table of end-effector rows (``KMM_PG_effector``): a joint, an object (an empty) or a bone of an
  armature, a frame range.  Read when Generate builds its request, so moving the empty changes the target.

All positions are HumanML3D axes relative to the target armature's origin (as the take is keyed), divided by the
rig's scale (``rig_pose.rig_scale``).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Generator

import bpy
import numpy as np

from ...kmm_core.common.bounded_read import parse_json
from ...kmm_core.common.errors import InputFileError, KMMError
from ...kmm_core.motion.skeleton import NUM_JOINTS
from ...kmm_core.retarget.rig_pose import (
    FIT_ITERATIONS,
    canonical_point,
    fitting_steps,
    held_summary,
    keyed_joints,
    rig_scale,
)
from ..rigs import retarget as rig_retarget
from ..rigs.axes import HUMANML3D_TO_BLENDER

MAX_KEY_POSES = 1000
"""Most keyed frames "Use My Keys as Constraints" reads (about 33 s of an action keyed on every frame at 30 fps;
each costs one evaluation of the rig and a share of one fit).  A key pose on every frame leaves the model nothing to
generate; bake fewer keys, or use the action itself."""
_BONE_PATH = re.compile(r'^pose\.bones\["((?:[^"\\]|\\.)*)"\]')


def keyed_bones(armature: bpy.types.Object) -> dict[int, set[str]]:
    """Whole frame -> the pose bones the armature's active action has a key on there (any F-curve)."""
    action = armature.animation_data.action if armature.animation_data else None
    if action is None:
        raise KMMError(f"armature {armature.name!r} has no action: key its pose at some frames first")
    frames: dict[int, set[str]] = {}
    for curve in _fcurves(action, armature):
        match = _BONE_PATH.match(curve.data_path)
        if match is None:
            continue
        bone = re.sub(r"\\(.)", r"\1", match.group(1))
        for point in curve.keyframe_points:
            frames.setdefault(int(round(point.co[0])), set()).add(bone)
    if not frames:
        raise KMMError(f"armature {armature.name!r}: its action {action.name!r} has no pose bone keys")
    return frames


def keyed_frames(armature: bpy.types.Object) -> list[int]:
    """Whole frames the armature's active action has a key on (any F-curve of a pose bone), sorted."""
    return sorted(keyed_bones(armature))


def _fcurves(action, armature):
    """The action's F-curves (Blender 4.4+ keeps them in layers/strips/channelbags; older ones in action.fcurves)."""
    if hasattr(action, "fcurves") and len(getattr(action, "fcurves", ())) > 0:
        return list(action.fcurves)
    curves = []
    for layer in getattr(action, "layers", ()):
        for strip in layer.strips:
            for bag in getattr(strip, "channelbags", ()):
                curves.extend(bag.fcurves)
    return curves


def _scale(armature: bpy.types.Object, bone_map=None) -> float:
    target = rig_retarget.armature_target_skeleton(armature)
    return rig_scale(target, bone_map if bone_map is not None else rig_retarget.bone_map_for(armature, target))


def poses_from_keys(scene: bpy.types.Scene, armature: bpy.types.Object, first: int, last: int,
                    weight: object = "hard", whole_body: bool = False,
                    progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """A pose constraint for every keyed frame of `armature` within first..last, holding the joints its keyed bones
    move (`rig_pose.keyed_joints`; `whole_body`: every pose whole).  Each frame is evaluated once (the scene's
    current frame is restored), then all poses are fitted together.  `progress(done, total)` is called after each
    frame read.  Raises KMMError naming the rig, frame and joint when a pose cannot be read, or the count when there
    are more than `MAX_KEY_POSES` keyed frames (before anything is evaluated).  `KeyPoseReading` does the same in
    steps (the panel's operator, which Esc cancels)."""
    reading = KeyPoseReading(scene, armature, first, last, weight, whole_body)
    while not reading.step(float("inf"), progress):
        pass
    return reading.poses


class KeyPoseReading:
    """`poses_from_keys` in steps, so that an operator can show its progress and stop between steps: `step()`
    evaluates keyed frames, then runs the fit's fixed-point steps (`rig_pose.fitting_steps`, all poses together), for
    about the seconds it is given; `poses` holds the constraints once it returns True.  Everything is checked (timeline, cap, keyed bones) when it is made, before
    any frame is evaluated.  `cancel()`, or an error in a step, puts the scene's frame back; nothing is stored on the
    scene either way (the caller stores `poses`)."""

    def __init__(self, scene: bpy.types.Scene, armature: bpy.types.Object, first: int, last: int,
                 weight: object = "hard", whole_body: bool = False):
        by_frame = {frame: bones for frame, bones in keyed_bones(armature).items() if first <= frame <= last}
        if not by_frame:
            raise KMMError(f"armature {armature.name!r}: no key falls inside the timeline (frames {first} to {last})")
        if len(by_frame) > MAX_KEY_POSES:
            raise KMMError(f"armature {armature.name!r}: {len(by_frame)} keyed frames inside the timeline, at most "
                           f"{MAX_KEY_POSES} can become key poses (a key on every frame leaves nothing to generate): "
                           "keep the frames that matter, or narrow the timeline")
        self.scene, self.armature, self.weight = scene, armature, weight
        # the rig checked as Generate checks it: a stored map naming a bone the rig lacks is refused by name here,
        # not a KeyError when the first frame is read
        checked_map, problem = rig_retarget.target_report(armature)
        if problem is not None or checked_map is None:
            raise KMMError(f"Use My Keys as Constraints: {problem or 'the armature has no bone map'}")
        self.target = rig_retarget.armature_target_skeleton(armature)
        self.bone_map = checked_map
        parents = {bone.name: bone.parent.name if bone.parent else None for bone in armature.data.bones}
        self.frames: list[int] = []
        self.held: list[tuple[str, ...] | None] = []
        for frame in sorted(by_frame):
            joints = None if whole_body else keyed_joints(by_frame[frame], self.bone_map, parents)
            if joints != ():  # only bones no joint stands for (fingers, IK targets): nothing to hold
                self.frames.append(frame)
                self.held.append(joints)
        if not self.frames:
            raise KMMError(f"armature {armature.name!r}: the keyed bones are none the bone map reads (fingers, IK "
                           "targets?): key the body's bones, or choose Whole Body")
        self.points = np.empty((len(self.frames), NUM_JOINTS, 3))
        self.by_frame = by_frame
        self.driven = set(self.bone_map.driven_bones().values())
        self.rotations: list[dict[str, list[float]]] = [{} for _ in self.frames]
        self.orientations: dict[int, dict[str, list[float]]] = {}  # frame -> the keyed bones' orientations
        self.read = 0
        self.fit_steps = 0
        self._fitting: Generator[int, None, np.ndarray] | None = None
        self._fitted: np.ndarray | None = None
        self.poses: list[dict] = []
        self._restore: tuple[int, float] | None = (scene.frame_current, scene.frame_subframe)

    @property
    def fraction(self) -> float:
        """How much of the work is done, 0 to 1 (reading and fitting weigh about the same)."""
        fitting = 1.0 if self._fitted is not None else self.fit_steps / FIT_ITERATIONS
        return 0.5 * self.read / len(self.frames) + 0.5 * fitting

    def step(self, seconds: float = 0.1, progress: Callable[[int, int], None] | None = None) -> bool:
        """Work for about `seconds` (at least one frame or one fixed-point step); True when every pose is made.  `progress(done,
        total)` after each frame read.  KMMError (naming the rig, frame and joint) puts the frame back."""
        deadline = time.monotonic() + seconds
        count = len(self.frames)
        try:
            while self.read < count:
                frame = self.frames[self.read]
                self.scene.frame_set(frame)
                self.points[self.read] = rig_retarget.evaluated_joint_points(self.armature, self.bone_map)
                self.rotations[self.read] = keyed_rotations(self.armature, self.by_frame[frame] & self.driven)
                self.read += 1
                if progress is not None:
                    progress(self.read, count)
                if time.monotonic() > deadline:
                    return False
            self._put_frame_back()
            if self._fitting is None:
                self._fitting = fitting_steps(self.points, self.target, self.bone_map,
                                              [f"armature {self.armature.name!r} at frame {frame}"
                                               for frame in self.frames])
            while self._fitted is None:
                try:
                    self.fit_steps = next(self._fitting)
                except StopIteration as finished:
                    self._fitted = finished.value
                    break
                if time.monotonic() > deadline:
                    return False
        except BaseException:
            self._put_frame_back()
            raise
        self.poses = []
        self.orientations = {}
        for frame, joints, pose, rotations in zip(self.frames, self.held, self._fitted, self.rotations, strict=True):
            entry: dict = {"type": "pose", "frame": frame, "positions": pose.round(6).tolist()}
            if rotations:
                self.orientations[frame] = rotations
            if joints is not None:
                entry["joints"] = list(joints)
            if self.weight != "hard":
                entry["weight"] = self.weight
            self.poses.append(entry)
        return True

    def cancel(self) -> None:
        """Stop: the scene's frame back where it was, no poses."""
        self._put_frame_back()
        self.poses, self.orientations = [], {}

    def _put_frame_back(self) -> None:
        if self._restore is not None:
            frame, subframe = self._restore
            self._restore = None
            self.scene.frame_set(frame, subframe=subframe)


def keyed_rotations(armature: bpy.types.Object, bones: set[str]) -> dict[str, list[float]]:
    """{bone: its evaluated armature-space orientation (3x3, row by row)} of the keyed driven `bones`."""
    rotations = {}
    for name in sorted(bones):
        matrix = armature.pose.bones[name].matrix.to_3x3()
        rotations[name] = [round(float(matrix[row][column]), 6) for row in range(3) for column in range(3)]
    return rotations


def held_rotations(scene: bpy.types.Scene, armature: bpy.types.Object) -> list[tuple[int, dict[str, np.ndarray]]]:
    """(scene frame, {bone: armature-space 3x3}) of the key poses stored for `armature`: the keyed bones'
    orientations read with the poses (`kmm.constraint_orientations`), none when the scene's constraints are for
    another armature or were replaced since (a timeline file's, the batch's)."""
    settings = getattr(scene, "kmm", None)  # a scene without the add-on's settings (the keyer used on its own)
    text = getattr(settings, "constraint_orientations", "")
    if settings is None or settings.target_armature != armature or not text:
        return []
    try:
        stored = parse_json(text, "scene property kmm.constraint_orientations", "stored key pose orientations")
    except InputFileError as error:
        raise KMMError(str(error)) from None
    if not isinstance(stored, dict) or stored.get("poses") != _digest(settings.constraint_poses):
        return []
    held = []
    for frame, rotations in (stored.get("frames") or {}).items():
        try:
            held.append((int(frame), {str(bone): np.asarray(values, dtype=np.float64).reshape(3, 3)
                                      for bone, values in rotations.items() if bone in armature.pose.bones}))
        except (TypeError, ValueError, AttributeError):
            raise KMMError(f"scene property kmm.constraint_orientations: the key pose at frame {frame} holds a bone "
                           "orientation that is not 9 numbers: press Use My Keys again to read it afresh") from None
    return held


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def stored_poses(settings) -> list[dict]:
    """The pose constraints kept on the scene (``kmm.constraint_poses``), [] when none."""
    text = settings.constraint_poses
    if not text:
        return []
    try:  # NaN and infinities read as numbers: the timeline's check then names the constraint and field
        value = parse_json(text, "scene property kmm.constraint_poses", "stored constraints", allow_non_finite=True)
    except InputFileError as error:
        raise KMMError(str(error)) from None
    if not isinstance(value, list):
        raise KMMError("scene property kmm.constraint_poses: expected a list of constraints")
    return value


def store_poses(settings, poses: list[dict], orientations: dict[int, dict[str, list[float]]] | None = None) -> None:
    """Keep `poses` on the scene, and the keyed bones' `orientations` ({frame: {bone: 9 numbers}}) beside them,
    tied to those poses (a later change of the poses, by a file or the batch, leaves them unused)."""
    settings.constraint_poses = json.dumps(poses) if poses else ""
    settings.constraint_orientations = json.dumps(
        {"poses": _digest(settings.constraint_poses), "frames": {str(f): r for f, r in orientations.items()}}
    ) if poses and orientations else ""


def _world_point(row) -> np.ndarray:
    obj = row.target
    if obj is None:
        raise KMMError(f"target of the {row.joint} row: pick an empty or an armature (with a bone)")
    if obj.type == "ARMATURE" and row.bone:
        bone = obj.pose.bones.get(row.bone)
        if bone is None:
            raise KMMError(f"target of the {row.joint} row: armature {obj.name!r} has no bone {row.bone!r}")
        return np.array(obj.matrix_world @ bone.head, dtype=np.float64)
    return np.array(obj.matrix_world.translation, dtype=np.float64)


def effector_constraints(scene: bpy.types.Scene, armature: bpy.types.Object, bone_map=None) -> list[dict]:
    """The effector rows as constraints: each target's position at the row's first frame, relative to the
    armature.  `bone_map`: the rig's map when the caller has resolved it already (else it is resolved here)."""
    rows = list(scene.kmm.effectors)  # type: ignore[attr-defined]
    if not rows:
        return []
    scale = _scale(armature, bone_map)
    origin = np.array(armature.matrix_world.translation, dtype=np.float64)
    current = scene.frame_current, scene.frame_subframe
    constraints = []
    try:
        for row in rows:
            scene.frame_set(row.start)
            offset = (_world_point(row) - origin) @ HUMANML3D_TO_BLENDER  # C^T v for row vectors
            entry = {"type": "effector", "joint": row.joint, "start": row.start, "end": max(row.start, row.end),
                     "position": canonical_point(offset, scale).round(6).tolist()}
            if not row.hard:
                entry["weight"] = row.weight
            constraints.append(entry)
    finally:
        scene.frame_set(current[0], subframe=current[1])
    return constraints


def scene_constraints(scene: bpy.types.Scene, bone_map=None) -> list[dict]:
    """Every constraint of the scene (stored key poses, then effector rows), for the generate request; `bone_map`:
    the target rig's map, when the caller has resolved it (the request's target check)."""
    settings = scene.kmm  # type: ignore[attr-defined]
    armature = settings.target_armature
    poses = stored_poses(settings)
    if armature is None:
        if poses or len(settings.effectors):
            raise KMMError("constraints: pick the target armature they were keyed on")
        return []
    return poses + effector_constraints(scene, armature, bone_map)


def constraint_summary(entry: object) -> str:
    """One stored constraint in words for the panel: "frame 60: right arm", "frame 20: whole body", "frames
    200-260: right_wrist target", "frame 300: facing"."""
    if not isinstance(entry, dict):
        return "?"
    start, end = entry.get("frame", entry.get("start")), entry.get("frame", entry.get("end"))
    frames = f"frame {start}" if start == end else f"frames {start}-{end}"
    kind = entry.get("type")
    if kind == "pose":
        joints = entry.get("joints")
        return f"{frames}: {held_summary(list(joints) if isinstance(joints, list) else None)}"
    if kind == "effector":
        return f"{frames}: {entry.get('joint')} target"
    return f"{frames}: {kind}"
