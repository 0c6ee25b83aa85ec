# SPDX-License-Identifier: GPL-3.0-or-later
"""The Constraints sub-panel: "Use my keys as constraints" (the target rig's keyed poses: only the joints the keyed
bones move, or the whole body with Whole Body), the key poses kept (each frame and what it holds), and the
end-effector rows (a joint on an empty or a bone over a frame range).  The work is in
`timeline/constraint_source.py`; each operator here is one undo step and changes nothing when it fails."""

from __future__ import annotations

import bpy

from ...kmm_core.common.errors import KMMError
from ..timeline import constraint_source
from ..timeline.properties import rows_of

MAX_LISTED = 8
"""Key poses listed one per line in the panel; more are counted."""


def _timeline_frames(settings) -> tuple[int, int]:
    rows = rows_of(settings)
    if not rows:
        raise KMMError("the timeline table is empty: add its segments first")
    return min(row.start for row in rows), max(row.end for row in rows)


class KMM_OT_use_keys_as_constraints(bpy.types.Operator):
    """Make every keyed pose of the target armature inside the timeline a constraint the motion passes through
    (Esc cancels while the keys are read)"""

    bl_label = "Use My Keys as Constraints"
    bl_idname = "kmm.use_keys_as_constraints"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        """All at once (scripts, redo): the progress bar moves, nothing can be cancelled."""
        try:
            reading = _start_reading(context)
            window_manager = context.window_manager
            window_manager.progress_begin(0, 1)
            try:
                while not reading.step(float("inf"), lambda done, total: window_manager.progress_update(done / total)):
                    pass
            finally:
                window_manager.progress_end()
        except KMMError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        return _finish_reading(self, context, reading)

    def invoke(self, context, event):
        """From the panel: the keys are read in short steps on a timer, the progress bar moving; Esc cancels, with
        nothing changed."""
        if context.window is None:  # no window to run in (Blender as a module): all at once
            return self.execute(context)
        try:
            self._reading = _start_reading(context)
        except KMMError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        window_manager = context.window_manager
        window_manager.progress_begin(0, 1)
        self._timer = window_manager.event_timer_add(0.01, window=context.window)
        window_manager.modal_handler_add(self)
        _status(context, "Reading the keyed poses: Esc cancels")
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        return reading_event(self, context, self._reading, event.type, event.value)

    def _end_modal(self, context):
        window_manager = context.window_manager
        if getattr(self, "_timer", None) is not None:
            window_manager.event_timer_remove(self._timer)
            self._timer = None
        window_manager.progress_end()
        _status(context, None)


STEP_SECONDS = 0.1
"""Work done per timer event while the keys are read: Blender stays responsive to Esc between steps."""


def _start_reading(context) -> constraint_source.KeyPoseReading:
    settings = context.scene.kmm
    armature = settings.target_armature
    if armature is None:
        raise KMMError("pick the target armature whose keys become constraints")
    first, last = _timeline_frames(settings)
    return constraint_source.KeyPoseReading(context.scene, armature, first, last,
                                            whole_body=settings.key_poses_whole_body)


def reading_event(operator, context, reading: constraint_source.KeyPoseReading, event_type: str,
                  event_value: str) -> set[str]:
    """One event of the modal reading: Esc (or a right click) cancels (the frame put back, no key pose changed),
    a timer event does one step, anything else is held while the keys are read.  `operator._end_modal(context)`
    is called when it ends."""
    if event_type in {"ESC", "RIGHTMOUSE"} and event_value == "PRESS":
        reading.cancel()
        operator._end_modal(context)
        operator.report({"WARNING"}, "Use My Keys as Constraints cancelled: the key poses are unchanged")
        return {"CANCELLED"}
    if event_type != "TIMER":
        return {"RUNNING_MODAL"}
    try:
        done = reading.step(STEP_SECONDS)
    except KMMError as error:
        operator._end_modal(context)
        operator.report({"ERROR"}, str(error))
        return {"CANCELLED"}
    context.window_manager.progress_update(reading.fraction)
    if not done:
        return {"RUNNING_MODAL"}
    operator._end_modal(context)
    return _finish_reading(operator, context, reading)


def _finish_reading(operator, context, reading: constraint_source.KeyPoseReading) -> set[str]:
    poses = reading.poses
    constraint_source.store_poses(context.scene.kmm, poses, reading.orientations)
    operator.report({"INFO"}, f"{len(poses)} key pose(s): " + "; ".join(
        constraint_source.constraint_summary(pose) for pose in poses[:MAX_LISTED]) + (
        f"; and {len(poses) - MAX_LISTED} more" if len(poses) > MAX_LISTED else ""))
    return {"FINISHED"}


def _status(context, text: str | None) -> None:
    workspace = getattr(context, "workspace", None)
    if workspace is not None:
        workspace.status_text_set(text)


class KMM_OT_clear_constraints(bpy.types.Operator):
    """Forget the key poses and the end-effector targets"""

    bl_label = "Clear Constraints"
    bl_idname = "kmm.clear_constraints"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        settings = context.scene.kmm
        constraint_source.store_poses(settings, [])
        settings.effectors.clear()
        return {"FINISHED"}


class KMM_OT_effector_add(bpy.types.Operator):
    """Add an end-effector target: a joint held on an empty or a bone, at the current frame"""

    bl_label = "Add Target"
    bl_idname = "kmm.effector_add"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        row = context.scene.kmm.effectors.add()
        row.start = row.end = context.scene.frame_current
        active = context.active_object
        if active is not None and active.type == "EMPTY":
            row.target = active
        return {"FINISHED"}


class KMM_OT_effector_remove(bpy.types.Operator):
    """Remove this end-effector target"""

    bl_label = "Remove Target"
    bl_idname = "kmm.effector_remove"
    bl_options = {"REGISTER", "UNDO"}
    index: bpy.props.IntProperty(default=0)

    def execute(self, context):
        effectors = context.scene.kmm.effectors
        if 0 <= self.index < len(effectors):
            effectors.remove(self.index)
        return {"FINISHED"}


class KMM_PT_constraints(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "KMM"
    bl_label = "Constraints"
    bl_parent_id = "KMM_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        settings = context.scene.kmm
        line = layout.row(align=True)
        line.operator("kmm.use_keys_as_constraints", icon="KEYFRAME_HLT")
        line.prop(settings, "key_poses_whole_body", toggle=True)
        try:
            poses = constraint_source.stored_poses(settings)
        except KMMError as error:
            layout.label(text=str(error), icon="ERROR")
            poses = []
        if poses:
            column = layout.column(align=True)
            for pose in poses[:MAX_LISTED]:
                column.label(text=constraint_source.constraint_summary(pose), icon="ARMATURE_DATA")
            if len(poses) > MAX_LISTED:
                column.label(text=f"... and {len(poses) - MAX_LISTED} more")
        for index, row in enumerate(settings.effectors):
            box = layout.box()
            line = box.row(align=True)
            line.prop(row, "joint", text="")
            line.operator("kmm.effector_remove", text="", icon="X").index = index
            box.prop(row, "target")
            if row.target is not None and row.target.type == "ARMATURE":
                box.prop_search(row, "bone", row.target.data, "bones")
            line = box.row(align=True)
            line.prop(row, "start")
            line.prop(row, "end")
            line = box.row(align=True)
            line.prop(row, "hard")
            if not row.hard:
                line.prop(row, "weight")
        line = layout.row(align=True)
        line.operator("kmm.effector_add", icon="EMPTY_AXIS")
        line.operator("kmm.clear_constraints", icon="TRASH")


classes = (KMM_OT_use_keys_as_constraints, KMM_OT_clear_constraints, KMM_OT_effector_add, KMM_OT_effector_remove,
           KMM_PT_constraints)

register, unregister = bpy.utils.register_classes_factory(classes)  # type: ignore[func-returns-value,misc]
