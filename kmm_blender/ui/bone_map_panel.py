# SPDX-License-Identifier: GPL-3.0-or-later
"""The "Target Rig" panel and its operators: which bone map the target armature uses (a preset, "auto", or the
user's own), the canonical joints it leaves out, and fixing a row, exporting and importing the map as JSON.

The panel shows the map before anything is generated; a rig no map fits shows the reason in red (Generate refuses
it at once, see job_runner.build_request).  Fixing a row stores the whole map on the armature (custom property
"kmm_bone_map", saved with the .blend); Reset goes back to the detected map.
"""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from ...kmm_core.common.errors import KMMError
from ...kmm_core.motion import skeleton
from ...kmm_core.retarget.bone_map import load_bone_map, save_bone_map
from ..rigs import retarget as rig_retarget

_JOINT_ITEMS = tuple((name, name.replace("_", " ").title(), "") for name in skeleton.JOINT_NAMES)


def _target(context):
    settings = getattr(context.scene, "kmm", None)
    return settings.target_armature if settings is not None else None


class _TargetOperator:
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        target = _target(context)
        return target is not None and target.type == "ARMATURE"


class KMM_OT_bone_map_set_row(_TargetOperator, bpy.types.Operator):  # type: ignore[misc]  # stubs: mixin bl_options
    """Choose the bone a canonical joint drives on the target armature (empty: none)"""

    bl_idname = "kmm.bone_map_set_row"
    bl_label = "Set Bone"

    joint: EnumProperty(items=_JOINT_ITEMS, name="Joint")
    bone: StringProperty(name="Bone")

    def invoke(self, context, event):
        current = rig_retarget.bone_map_for(_target(context)).bones.get(self.joint) if not rig_retarget.target_problem(
            _target(context)) else None
        self.bone = current or ""
        return context.window_manager.invoke_props_dialog(self)

    def draw(self, context):
        self.layout.prop(self, "joint")
        self.layout.prop_search(self, "bone", _target(context).data, "bones")

    def execute(self, context):
        target = _target(context)
        if self.bone and self.bone not in target.data.bones:
            self.report({"ERROR"}, f"armature {target.name!r} has no bone {self.bone!r}")
            return {"CANCELLED"}
        try:
            current = rig_retarget.bone_map_for(target)
        except KMMError:
            from ...kmm_core.retarget.bone_map import BoneMap

            current = BoneMap(name="user", kind="user", bones={j: None for j in skeleton.JOINT_NAMES})
        rig_retarget.store_bone_map(target, current.with_bone(self.joint, self.bone or None))
        return {"FINISHED"}


class KMM_OT_bone_map_reset(_TargetOperator, bpy.types.Operator):  # type: ignore[misc]  # stubs: mixin bl_options
    """Forget the map stored on the target armature and use the detected one (preset or automatic)"""

    bl_idname = "kmm.bone_map_reset"
    bl_label = "Reset Bone Map"

    def execute(self, context):
        rig_retarget.clear_bone_map(_target(context))
        return {"FINISHED"}


class KMM_OT_bone_map_export(bpy.types.Operator, ExportHelper):  # type: ignore[misc]  # stubs: io helpers
    """Save the target armature's bone map as JSON (usable with `kmm retarget --bone-map` and batch.py)"""

    bl_idname = "kmm.bone_map_export"
    bl_label = "Export Bone Map"

    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        return _TargetOperator.poll.__func__(cls, context)  # type: ignore[attr-defined]

    def execute(self, context):
        try:
            path = save_bone_map(rig_retarget.bone_map_for(_target(context)), self.filepath)  # type: ignore[attr-defined]
        except (KMMError, OSError) as error:
            self.report({"ERROR"}, f"Not exported: {error}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Saved {path}")
        return {"FINISHED"}


class KMM_OT_bone_map_import(bpy.types.Operator, ImportHelper):  # type: ignore[misc]  # stubs: io helpers
    """Use a bone map JSON file for the target armature (stored on the armature)"""

    bl_idname = "kmm.bone_map_import"
    bl_label = "Import Bone Map"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        return _TargetOperator.poll.__func__(cls, context)  # type: ignore[attr-defined]

    def execute(self, context):
        target = _target(context)
        try:
            bone_map = load_bone_map(self.filepath)  # type: ignore[attr-defined]
            bone_map.check(target.data.bones.keys(), target.name)
        except KMMError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        rig_retarget.store_bone_map(target, bone_map)
        self.report({"INFO"}, f"Bone map {bone_map.name!r} on {target.name!r}")
        return {"FINISHED"}


class KMM_PT_target_rig(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "KMM"
    bl_label = "Target Rig"
    bl_parent_id = "KMM_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        target = _target(context)
        layout.prop(context.scene.kmm, "target_armature", text="Armature")
        if target is None:
            layout.label(text="A new KMM armature is made on Generate", icon="INFO")
            return
        label, unmatched, problem, bone_map = rig_retarget.describe_target(target)  # the rig read once per redraw
        layout.label(text=f"Bone map: {label}", icon="GROUP_BONE")
        if problem:
            box = layout.box()
            box.alert = True
            for start in range(0, len(problem), 48):
                box.label(text=problem[start:start + 48], icon="ERROR" if start == 0 else "BLANK1")
        elif unmatched:
            layout.label(text="No bone for: " + ", ".join(unmatched), icon="INFO")
        if problem is None and bone_map is not None:
            column = layout.column(align=True)
            for joint in skeleton.JOINT_NAMES:
                row = column.row(align=True)
                row.label(text=joint)
                operator = row.operator("kmm.bone_map_set_row", text=bone_map.bones.get(joint) or "-")
                operator.joint = joint
        row = layout.row(align=True)
        row.operator("kmm.bone_map_import", icon="IMPORT")
        row.operator("kmm.bone_map_export", icon="EXPORT")
        row.operator("kmm.bone_map_reset", text="", icon="LOOP_BACK")


classes = (KMM_OT_bone_map_set_row, KMM_OT_bone_map_reset, KMM_OT_bone_map_export, KMM_OT_bone_map_import,
           KMM_PT_target_rig)

register, unregister = bpy.utils.register_classes_factory(classes)  # type: ignore[func-returns-value,misc]  # stubs: it returns (register, unregister)
