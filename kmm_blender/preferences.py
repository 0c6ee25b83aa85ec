# SPDX-License-Identifier: GPL-3.0-or-later
"""Add-on preferences: the backend (installed by the add-on, or a Python of the user's own), device, checkpoint,
and a health check.

The model needs PyTorch, far too heavy to bundle with an extension, so it runs in a separate Python environment:
Install Backend (backend_setup.py) creates one in the extension's user folder; a user may instead point Own Backend
Python at an environment of their own.  The Check button shows, item by item, what that environment has or lacks.
"""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty, StringProperty

from . import backend_setup, doctor

# The add-on's module is the extension root package, one level above this sub-package.
ADDON_PACKAGE = __package__.rpartition(".")[0]

class KMM_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_PACKAGE

    python_path: StringProperty(
        name="Own Backend Python", subtype="FILE_PATH",
        description="Optional: the Python executable of an environment of your own with the backend's packages "
                    "(PyTorch ...); empty: the backend made by Install Backend",
    )
    install_variant: EnumProperty(
        name="Install",
        items=(("cpu", "CPU", "PyTorch for the CPU (smallest download, works everywhere)"),
               ("cuda", "CUDA", "PyTorch with CUDA for NVIDIA GPUs, and the fused Mamba kernels where they build"),
               ("offline", "Offline", "From a folder of wheels (no internet: pip --no-index --find-links)")),
        default="cpu",
    )
    wheel_folder: StringProperty(
        name="Wheel Folder", subtype="DIR_PATH",
        description="Offline install: a folder holding a wheel for every package of the backend "
                    "(made elsewhere with pip download -r backend_requirements.txt)",
    )
    torch_source: EnumProperty(
        name="PyTorch From",
        items=(("AUTO", "PyTorch's Own Index", "CPU: PyTorch's CPU wheels (small) on Linux and Windows; CUDA on "
                "Windows: PyTorch's CUDA wheels; every other package from the package index"),
               ("INDEX", "Package Index Only", "Everything from the package index pip is configured with (on Linux "
                "its torch is the CUDA build, several GB)")),
        default="AUTO",
    )
    install_python: StringProperty(
        name="Install With Python", subtype="FILE_PATH",
        description="Optional: the Python 3.11-3.13 the backend environment is made from; empty: Blender's own",
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
        backend_setup.draw_install_box(layout, self)
        layout.prop(self, "python_path")
        row = layout.row()
        row.prop(self, "device")
        layout.prop(self, "checkpoint")
        layout.prop(self, "smpl_model_path")
        column = layout.column(align=True)
        column.label(text="Code: GPL-3.0-or-later.", icon="INFO")
        column.label(text="Bundled model weights: CC BY-NC 4.0, non-commercial use only (inherited from the "
                          "training data).", icon="BLANK1")

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
    install_variant = "cpu"
    wheel_folder = ""
    torch_source = "AUTO"
    install_python = ""
    device = "auto"
    checkpoint = ""
    smpl_model_path = ""


def get_preferences(context: bpy.types.Context | None = None):
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_PACKAGE)
    return addon.preferences if addon is not None else _DefaultPreferences()


classes = (KMM_AddonPreferences,)

register, unregister = bpy.utils.register_classes_factory(classes)  # type: ignore[func-returns-value,misc]  # stubs: it returns (register, unregister)
