# SPDX-License-Identifier: GPL-3.0-or-later
"""Add-on preferences: which Python runs the model, on which device, with which checkpoint; and a health check.

The model needs PyTorch, far too heavy to bundle with an extension, so it runs in a Python environment of the
user's choosing (see docs/blender.md).  The Check button shows, item by item, what that environment has or lacks.
"""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty, StringProperty

from . import doctor

# The add-on's module is the extension root package, one level above this sub-package.
ADDON_PACKAGE = __package__.rpartition(".")[0]

class KMM_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_PACKAGE

    python_path: StringProperty(
        name="Backend Python", subtype="FILE_PATH",
        description="Python executable of an environment with kmm-motion and PyTorch installed",
    )
    device: EnumProperty(
        name="Device",
        items=(("auto", "Automatic", "CUDA when available, else CPU"), ("cpu", "CPU", "Always the CPU"),
               ("cuda", "CUDA", "The first NVIDIA GPU")),
        default="auto",
    )
    checkpoint: StringProperty(
        name="Checkpoint", subtype="DIR_PATH",
        description="Model bundle folder (the one holding bundle.json, e.g. runs/small/bundle written by kmm-train); "
                    "empty: the default shipped with kmm-motion",
    )
    smpl_model_path: StringProperty(
        name="SMPL model file (.npz)", subtype="FILE_PATH",
        description="Optional: your own SMPL / SMPL-H / SMPL-X .npz model file; when set, a new take also gets the "
                    "skinned body mesh on its armature (see docs/blender.md)",
    )

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.prop(self, "python_path")
        row = layout.row()
        row.prop(self, "device")
        layout.prop(self, "checkpoint")
        layout.prop(self, "smpl_model_path")

        box = layout.box()
        row = box.row()
        row.label(text="Install the backend into that Python:")
        row.operator("kmm.copy_install_command", text="Copy", icon="COPYDOWN")
        box.label(text=doctor.install_command(self.python_path))

        from .job_controller import controller  # the controller owns the last check

        row = layout.row()
        running = controller().check is not None
        row.enabled = not running
        row.operator("kmm.check_backend", text="Checking..." if running else "Check Backend", icon="CHECKMARK")
        draw_report(layout, controller().check_report)


def draw_report(layout: bpy.types.UILayout, report: doctor.DoctorReport | None) -> None:
    if report is None:
        return
    column = layout.column(align=True)
    if report.error:
        for index, line in enumerate(report.error.splitlines()):
            column.label(text=line, icon="ERROR" if index == 0 else "BLANK1")
        return
    for item in report.items:
        column.label(text=f"{item.name}: {item.detail}" if item.detail else item.name,
                     icon="CHECKMARK" if item.ok else "CANCEL")


class _DefaultPreferences:
    """Used when the add-on runs without being enabled as an add-on (tests importing the package directly)."""

    python_path = ""
    device = "auto"
    checkpoint = ""
    smpl_model_path = ""


def get_preferences(context: bpy.types.Context | None = None):
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_PACKAGE)
    return addon.preferences if addon is not None else _DefaultPreferences()


classes = (KMM_AddonPreferences,)

register, unregister = bpy.utils.register_classes_factory(classes)  # type: ignore[func-returns-value,misc]  # stubs: it returns (register, unregister)
