# SPDX-License-Identifier: GPL-3.0-or-later
"""The "KMM" tab of the 3D Viewport sidebar: the timeline table with its problems shown on the offending rows,
generation settings, and the running job (progress, Cancel, Release, last error)."""

from __future__ import annotations

import bpy

from ..settings import get_preferences
from ..timeline import prompt_warnings, segment_table
from ..timeline.properties import rows_of, scene_fps
from . import prompt_suggestions
from .preferences import MODEL_CHOICES


def _problems(context: bpy.types.Context) -> dict[int, str]:
    """The table's problems: validated once per edit of the table (segment_table keeps them), however many rows
    are drawn."""
    scene = context.scene
    return segment_table.row_problems(rows_of(scene.kmm), scene_fps(scene))  # type: ignore[arg-type]  # stubs: Context.scene is optional


def _wrapped(layout: bpy.types.UILayout, text: str, icon: str = "NONE", width: int = 48) -> None:
    """Long messages over several labels (Blender labels do not wrap)."""
    words, line, first = text.split(), "", True
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            layout.label(text=line, icon=icon if first else "BLANK1")  # type: ignore[arg-type]  # icon names: Blender checks them
            line, first = word, False
        else:
            line = f"{line} {word}".strip()
    if line:
        layout.label(text=line, icon=icon if first else "BLANK1")  # type: ignore[arg-type]  # icon names: Blender checks them


class KMM_UL_segments(bpy.types.UIList):
    """Rows of the timeline: prompt, start, end; a warning icon on rows with a problem."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0, flt_flag=0):
        problems = _problems(context)
        row = layout.row(align=True)
        row.alert = index in problems
        warned = bool(prompt_warnings.active_warning(item))
        row.label(text="", icon="ERROR" if index in problems else "QUESTION" if warned else "DOT")
        row.prop(item, "prompt", text="", emboss=True, placeholder="describe the motion")
        sub = row.row(align=True)
        sub.ui_units_x = 5
        sub.prop(item, "start", text="")
        sub.prop(item, "end", text="")
        if index == getattr(active_data, active_propname):
            # On the selected row: remake this segment of the active take (greyed out when there is none).
            row.operator("kmm.regenerate_segment", text="", icon="FILE_REFRESH")


class KMM_PT_main(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "KMM"
    bl_label = "KMM Motion"

    @classmethod
    def poll(cls, context):
        return context.scene is not None and hasattr(context.scene, "kmm")

    def draw(self, context):
        layout = self.layout
        settings = context.scene.kmm

        row = layout.row()
        row.template_list("KMM_UL_segments", "", settings, "segments", settings, "active_segment_index", rows=4)
        column = row.column(align=True)
        column.operator("kmm.segment_add", text="", icon="ADD")
        column.operator("kmm.segment_remove", text="", icon="REMOVE")
        column.operator("kmm.segment_duplicate", text="", icon="DUPLICATE")
        column.separator()
        column.operator("kmm.segment_move", text="", icon="TRIA_UP").direction = "UP"
        column.operator("kmm.segment_move", text="", icon="TRIA_DOWN").direction = "DOWN"

        problems = _problems(context)
        if problems:
            box = layout.box()
            for index, reason in sorted(problems.items()):
                where = "Timeline" if index < 0 else f"Segment {index + 1}"
                _wrapped(box, f"{where}: {reason}", icon="ERROR")
        prompt_suggestions.draw_warnings(layout, settings, _wrapped)

        row = layout.row(align=True)
        row.operator("kmm.check_prompts", icon="VIEWZOOM")
        row.operator("kmm.fit_to_scene", icon="ARROW_LEFTRIGHT")
        row.operator("kmm.timeline_import", text="", icon="IMPORT")
        row.operator("kmm.timeline_export", text="", icon="EXPORT")

        self._draw_job(layout, context)

    def _draw_job(self, layout, context):
        state = context.window_manager.kmm_job
        column = layout.column()
        if state.running:
            column.progress(factor=state.progress, type="BAR", text=state.status)
            column.operator("kmm.cancel", icon="CANCEL")
        else:
            column.scale_y = 1.4
            column.operator("kmm.generate", icon="PLAY")
            segment = context.scene.kmm.active_segment_index + 1
            column.operator("kmm.regenerate_segment", text=f"Regenerate Segment {segment}", icon="FILE_REFRESH")
            if state.status and state.status != "Idle":
                layout.label(text=state.status, icon="INFO")
        if state.error:
            box = layout.box()
            box.alert = True
            _wrapped(box, state.error, icon="ERROR")
            if state.detail:
                _wrapped(box, state.detail, icon="CONSOLE")
            if state.advice:
                _wrapped(box, state.advice, icon="QUESTION")
        if state.last_takes:
            layout.label(text=f"Last: {state.last_takes}", icon="ACTION")
        draw_model_line(layout, context)
        layout.operator("kmm.release", icon="UNLINKED")


class KMM_PT_settings(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "KMM"
    bl_label = "Settings"
    bl_parent_id = "KMM_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        settings = context.scene.kmm
        row = layout.row(align=True)
        row.prop(settings, "target_armature")
        row.operator("kmm.new_armature", text="", icon="ARMATURE_DATA")
        layout.prop(settings, "root_motion")
        layout.prop(settings, "fps_mode")
        layout.prop(settings, "push_to_nla")
        layout.prop(settings, "extend_frame_range")
        layout.separator()
        row = layout.row(align=True)
        row.prop(settings, "seed")
        row.prop(settings, "random_seed", text="", icon="FILE_REFRESH")
        layout.prop(settings, "variations")
        layout.prop(settings, "guidance")
        layout.prop(settings, "steps")
        layout.prop(settings, "foot_lock")
        layout.prop(settings, "loop")
        layout.prop(settings, "path_object")
        layout.separator()
        layout.operator("kmm.apply_motion_file", icon="FILE")
        layout.label(text="Code: GPL-3.0-or-later", icon="INFO")


def draw_model_line(layout, context) -> None:
    """The loaded model and its one-line licence (from its bundle.json, via the worker's load result); before the
    first load, the preference's choice."""
    state = context.window_manager.kmm_job
    if state.model:
        _wrapped(layout, f"Model: {state.model} - {state.model_licence}", icon="INFO")
        return
    choice = getattr(get_preferences(context), "model", "DEFAULT")
    label = dict((key, name) for key, name, _ in MODEL_CHOICES).get(choice, choice)
    _wrapped(layout, f"Model: {label} (not loaded yet)", icon="INFO")


classes = (KMM_UL_segments, KMM_PT_main, KMM_PT_settings)

register, unregister = bpy.utils.register_classes_factory(classes)  # type: ignore[func-returns-value,misc]  # stubs: it returns (register, unregister)
