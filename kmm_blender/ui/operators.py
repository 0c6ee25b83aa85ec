# SPDX-License-Identifier: GPL-3.0-or-later
"""Operators behind the panel's buttons: edit the timeline table, import/export it, generate/regenerate a
segment/cancel/release, apply a motion file, and the preferences' backend check."""

from __future__ import annotations

import json

import bpy
from bpy.props import EnumProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from ...kmm_core.common.errors import KMMError
from ..backend.location import worker_python
from ..jobs import controller as job_controller
from ..jobs import runner as job_runner
from ..rigs import armature_builder, take_keys
from ..settings import get_preferences
from ..takes import importer as take_importer
from ..takes import provenance as take_provenance
from ..timeline import segment_table
from ..timeline.properties import rows_of, scene_fps, set_rows

DEFAULT_SEGMENT_SECONDS = 2.0


def _run_job(operator, context, run_blocking, start, summary) -> set[str]:
    """A job: run to the end in background Blender (reporting `summary` of what it returned), else
    started on the job runner's timer. A KMMError is shown in the panel and reported; the scene stays untouched."""
    try:
        if bpy.app.background:
            operator.report({"INFO"}, summary(run_blocking(context)))
        else:
            start(context)
    except KMMError as error:
        context.window_manager.kmm_job.error = str(error).splitlines()[0]
        operator.report({"ERROR"}, str(error))
        return {"CANCELLED"}
    return {"FINISHED"}


class _TableOperator:
    """Base of the small operators that edit the scene's segment table (each one undo step)."""

    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None and hasattr(context.scene, "kmm")


class _NonEmptyTableOperator(_TableOperator):
    """Base of the table operators that act on existing segments: unavailable (greyed out) on an empty table."""

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return super().poll(context) and len(context.scene.kmm.segments) > 0


class KMM_OT_segment_add(_TableOperator, bpy.types.Operator):  # type: ignore[misc]  # stubs: bl_options is a set of literals, mixin infers set[str]
    """Add a segment after the last one"""

    bl_idname = "kmm.segment_add"
    bl_label = "Add Segment"

    def execute(self, context):
        settings = context.scene.kmm
        rows = rows_of(settings)
        start = rows[-1].end + 1 if rows else context.scene.frame_start
        length = max(int(round(DEFAULT_SEGMENT_SECONDS * scene_fps(context.scene))), 1)
        rows.append(segment_table.Row("", start, start + length - 1))
        set_rows(settings, rows)
        settings.active_segment_index = len(rows) - 1
        return {"FINISHED"}


class KMM_OT_segment_remove(_NonEmptyTableOperator, bpy.types.Operator):  # type: ignore[misc]  # stubs: bl_options is a set of literals, mixin infers set[str]
    """Remove the selected segment (the ones after it move up to close the gap)"""

    bl_idname = "kmm.segment_remove"
    bl_label = "Remove Segment"

    def execute(self, context):
        settings = context.scene.kmm
        rows = rows_of(settings)
        index = min(settings.active_segment_index, len(rows) - 1)
        first_start = rows[0].start
        del rows[index]
        set_rows(settings, segment_table.relayout(rows, first_start))
        settings.active_segment_index = max(min(index, len(rows) - 1), 0)
        return {"FINISHED"}


class KMM_OT_segment_duplicate(_NonEmptyTableOperator, bpy.types.Operator):  # type: ignore[misc]  # stubs: bl_options is a set of literals, mixin infers set[str]
    """Duplicate the selected segment right after itself"""

    bl_idname = "kmm.segment_duplicate"
    bl_label = "Duplicate Segment"

    def execute(self, context):
        settings = context.scene.kmm
        rows = rows_of(settings)
        index = min(settings.active_segment_index, len(rows) - 1)
        rows.insert(index + 1, rows[index])
        set_rows(settings, segment_table.relayout(rows))
        settings.active_segment_index = index + 1
        return {"FINISHED"}


class KMM_OT_segment_move(_TableOperator, bpy.types.Operator):  # type: ignore[misc]  # stubs: bl_options is a set of literals, mixin infers set[str]
    """Move the selected segment up or down (each segment keeps its length)"""

    bl_idname = "kmm.segment_move"
    bl_label = "Move Segment"

    direction: EnumProperty(items=(("UP", "Up", ""), ("DOWN", "Down", "")), default="UP")

    def execute(self, context):
        settings = context.scene.kmm
        rows = rows_of(settings)
        index = settings.active_segment_index
        other = index - 1 if self.direction == "UP" else index + 1
        if not (0 <= index < len(rows) and 0 <= other < len(rows)):
            return {"CANCELLED"}
        first_start = rows[0].start
        rows[index], rows[other] = rows[other], rows[index]
        set_rows(settings, segment_table.relayout(rows, first_start))
        settings.active_segment_index = other
        return {"FINISHED"}


class KMM_OT_fit_to_scene(_NonEmptyTableOperator, bpy.types.Operator):  # type: ignore[misc]  # stubs: bl_options is a set of literals, mixin infers set[str]
    """Stretch the segments over the scene's frame range, keeping their order and relative lengths"""

    bl_idname = "kmm.fit_to_scene"
    bl_label = "Fit to Scene Range"

    def execute(self, context):
        scene = context.scene
        try:
            rows = segment_table.fit_to_range(rows_of(scene.kmm), scene.frame_start, scene.frame_end)
        except KMMError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        set_rows(scene.kmm, rows)
        return {"FINISHED"}


class KMM_OT_timeline_import(bpy.types.Operator, ImportHelper):  # type: ignore[misc]  # stubs: io_utils helpers and Operator disagree on check/invoke
    """Replace the segments with a timeline file (.json or .toml; KMM or FlowMDM format)"""

    bl_idname = "kmm.timeline_import"
    bl_label = "Import Timeline"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json;*.toml", options={"HIDDEN"})

    def execute(self, context):
        scene = context.scene
        try:
            rows, constraints = segment_table.import_timeline(self.filepath, scene_fps(scene), scene.frame_start)  # type: ignore[attr-defined]  # property declared by Import/ExportHelper
        except KMMError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        set_rows(scene.kmm, rows)
        # The file's constraints replace the kept key poses (a file without any clears them, as the batch does).
        scene.kmm.constraint_poses = json.dumps(constraints) if constraints else ""
        self.report({"INFO"}, f"Imported {len(rows)} segment(s)" + (
            f" and {len(constraints)} constraint(s)" if constraints else ""))
        return {"FINISHED"}


class KMM_OT_timeline_export(bpy.types.Operator, ExportHelper):  # type: ignore[misc]  # stubs: io_utils helpers and Operator disagree on check/invoke
    """Save the segments as a timeline JSON file (usable with `kmm generate --timeline`)"""

    bl_idname = "kmm.timeline_export"
    bl_label = "Export Timeline"

    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"})

    def execute(self, context):
        scene = context.scene
        try:
            path = segment_table.export_rows(rows_of(scene.kmm), scene_fps(scene), self.filepath)  # type: ignore[attr-defined]  # property declared by Import/ExportHelper
        except KMMError as error:
            self.report({"ERROR"}, f"Not exported: {error}")
            return {"CANCELLED"}
        except OSError as error:
            self.report({"ERROR"}, f"Cannot write {self.filepath}: {error.strerror or error}")  # type: ignore[attr-defined]  # property declared by Import/ExportHelper
            return {"CANCELLED"}
        self.report({"INFO"}, f"Saved {path}")
        return {"FINISHED"}


class KMM_OT_new_armature(bpy.types.Operator):
    """Create the KMM armature (T-pose, one bone per joint) and use it as the target"""

    bl_idname = "kmm.new_armature"
    bl_label = "New KMM Armature"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        obj = armature_builder.create_armature(context, collection=context.collection)
        context.scene.kmm.target_armature = obj
        return {"FINISHED"}


class KMM_OT_generate(bpy.types.Operator):
    """Generate motion for the timeline in the background; the result becomes a new take (action)"""

    bl_idname = "kmm.generate"
    bl_label = "Generate"

    @classmethod
    def poll(cls, context):
        wm = context.window_manager
        return context.scene is not None and not (hasattr(wm, "kmm_job") and wm.kmm_job.running)

    def execute(self, context):
        return _run_job(self, context, job_runner.run_generation_blocking, job_runner.start_generation,
                        lambda imported: f"{len(imported.takes)} take(s) on {imported.armature.name!r}")


class KMM_OT_check_prompts(bpy.types.Operator):
    """Before generating: ask the model what it makes of each row's prompt (warnings, suggested prompts, and the
    training captions a prompt in your own words is read with), shown under the table"""

    bl_idname = "kmm.check_prompts"
    bl_label = "Check Prompts"

    @classmethod
    def poll(cls, context):
        wm = context.window_manager
        return (context.scene is not None and hasattr(context.scene, "kmm") and len(context.scene.kmm.segments) > 0
                and not (hasattr(wm, "kmm_job") and wm.kmm_job.running))

    def execute(self, context):
        return _run_job(self, context, job_runner.run_prompt_check_blocking, job_runner.start_prompt_check,
                        lambda messages: f"{len(context.scene.kmm.segments)} prompt(s) checked, "
                                         f"{len(messages)} warning(s)")


class KMM_OT_regenerate_segment(bpy.types.Operator):
    """Regenerate the selected segment of the active take as a new take; every key outside the segment stays as it is
    (uses the row's prompt when you changed it, and the seed from Settings)"""

    bl_idname = "kmm.regenerate_segment"
    bl_label = "Regenerate Segment"

    @classmethod
    def poll(cls, context):
        wm = context.window_manager
        if context.scene is None or not hasattr(context.scene, "kmm") or (hasattr(wm, "kmm_job")
                                                                         and wm.kmm_job.running):
            return False
        armature = context.scene.kmm.target_armature
        action = armature.animation_data.action if armature is not None and armature.animation_data else None
        if not take_provenance.has_provenance(action):
            cls.poll_message_set("The target armature's active action must be a KMM take")
            return False
        return len(context.scene.kmm.segments) > 0

    def execute(self, context):
        return _run_job(self, context, job_runner.run_regeneration_blocking, job_runner.start_regeneration,
                        lambda imported: f"New take {imported.takes[0].action.name!r}")


class KMM_OT_cancel(bpy.types.Operator):
    """Stop the running generation (nothing in the scene changes)"""

    bl_idname = "kmm.cancel"
    bl_label = "Cancel"

    def execute(self, context):
        job_runner.cancel()
        return {"FINISHED"}


class KMM_OT_release(bpy.types.Operator):
    """Stop the backend process and free its memory (it restarts on the next generation)"""

    bl_idname = "kmm.release"
    bl_label = "Release Backend"

    def execute(self, context):
        job_runner.release()
        self.report({"INFO"}, "KMM backend released")
        return {"FINISHED"}


class KMM_OT_apply_motion_file(bpy.types.Operator, ImportHelper):  # type: ignore[misc]  # stubs: io_utils helpers and Operator disagree on check/invoke
    """Apply a motion file written by `kmm generate` (.npz) as a new take"""

    bl_idname = "kmm.apply_motion_file"
    bl_label = "Apply Motion File"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".npz"
    filter_glob: StringProperty(default="*.npz", options={"HIDDEN"})

    def execute(self, context):
        settings = context.scene.kmm
        start = settings.segments[0].start if len(settings.segments) else context.scene.frame_start
        options = take_keys.WriteOptions(root_motion=settings.root_motion, fps_mode=settings.fps_mode,
                                               start_frame=float(start), push_to_nla=settings.push_to_nla)
        try:
            imported = take_importer.import_takes(context, [self.filepath], settings.target_armature, options,  # type: ignore[attr-defined]  # property declared by Import/ExportHelper
                                                  body_model_path=job_runner.body_model_path(context))
        except KMMError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        if settings.target_armature is None:
            settings.target_armature = imported.armature
        self.report({"INFO"}, f"Take {imported.takes[0].action.name!r} on {imported.armature.name!r}")
        for warning in imported.warnings:
            self.report({"WARNING"}, warning)
        return {"FINISHED"}


class KMM_OT_check_backend(bpy.types.Operator):
    """Run `kmm doctor` with the backend Python and list what is installed and what is missing"""

    bl_idname = "kmm.check_backend"
    bl_label = "Check Backend"

    def execute(self, context):
        python = worker_python(get_preferences(context))
        report = job_controller.controller().start_check(python, blocking=bpy.app.background)
        if report is None:  # the controller's timer polls it; the preferences show the report
            return {"FINISHED"}
        if report.error:
            self.report({"ERROR"}, f"Backend check failed: {report.error.splitlines()[0]}")
            return {"CANCELLED"}
        missing = [item.name for item in report.items if not item.ok]
        self.report({"WARNING"} if missing else {"INFO"},
                    f"Backend missing: {', '.join(missing)}" if missing else "Backend OK")
        return {"FINISHED"}


class KMM_OT_report(bpy.types.Operator):
    """Internal: show a message from the background job in the status bar and Info log"""

    bl_idname = "kmm.report"
    bl_label = "KMM Report"
    bl_options = {"INTERNAL"}

    level: EnumProperty(items=(("INFO", "Info", ""), ("WARNING", "Warning", ""), ("ERROR", "Error", "")))
    message: StringProperty()

    def execute(self, context):
        self.report({self.level}, self.message)
        return {"FINISHED"}


classes = (
    KMM_OT_segment_add, KMM_OT_segment_remove, KMM_OT_segment_duplicate, KMM_OT_segment_move, KMM_OT_fit_to_scene,
    KMM_OT_timeline_import, KMM_OT_timeline_export, KMM_OT_new_armature, KMM_OT_generate, KMM_OT_check_prompts,
    KMM_OT_regenerate_segment, KMM_OT_cancel,
    KMM_OT_release, KMM_OT_apply_motion_file, KMM_OT_check_backend, KMM_OT_report,
)

register, unregister = bpy.utils.register_classes_factory(classes)  # type: ignore[func-returns-value,misc]  # stubs: it returns (register, unregister)
