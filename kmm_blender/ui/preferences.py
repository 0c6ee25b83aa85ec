# SPDX-License-Identifier: GPL-3.0-or-later
"""Add-on preferences: the backend (installed by the add-on, or a Python of the user's own), device, the model
(Default kmm-small, Open kmm-small-open, or a custom bundle folder), and a health check.

The model needs PyTorch, far too heavy to bundle with an extension, so it runs in a separate Python environment:
Install Backend (ui/backend_buttons.py) creates one in the extension's user folder; a user may instead point Own Backend
Python at an environment of their own.  The Check button shows, item by item, what that environment has or lacks.
"""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty, StringProperty

from ..backend import doctor
from ..jobs.controller import controller  # the controller owns the last check
from ..settings import ADDON_PACKAGE
from . import backend_buttons

MODEL_CHOICES = (
    ("DEFAULT", "Default - kmm-small, non-commercial",
     "The default model, trained on all the data (Bandai-Namco included): non-commercial use only"),
    ("OPEN", "Open - kmm-small-open, commercial use allowed",
     "Trained only on data whose licence allows commercial use (CMU, HDM05): usable in commercial productions "
     "under CC BY-SA 3.0 (attribution, share-alike)"),
    ("CUSTOM", "Custom Folder", "A model bundle folder of your own (the one holding bundle.json)"),
)


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
                    "(made elsewhere with pip download -r requirements.txt)",
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
    model: EnumProperty(
        name="Model", items=MODEL_CHOICES, default="DEFAULT",
        description="Which trained model generates the motion (the panel shows the loaded model and its licence)",
    )
    checkpoint: StringProperty(
        name="Custom Model Folder", subtype="DIR_PATH",
        description="With Model = Custom Folder: a model bundle folder (the one holding bundle.json, e.g. "
                    "runs/small/bundle written by kmm-train)",
    )
    smpl_model_path: StringProperty(
        name="SMPL model file (.npz)", subtype="FILE_PATH",
        description="Optional: your own SMPL / SMPL-H / SMPL-X .npz model file; when set, a new take also gets the "
                    "skinned body mesh on its armature (see docs/blender.md)",
    )

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        backend_buttons.draw_install_box(layout, self)
        layout.prop(self, "python_path")
        row = layout.row()
        row.prop(self, "device")
        layout.prop(self, "model")
        if self.model == "CUSTOM":
            layout.prop(self, "checkpoint")
        layout.prop(self, "smpl_model_path")
        column = layout.column(align=True)
        column.label(text="Code: GPL-3.0-or-later.", icon="INFO")
        for line in licence_lines(self.model):
            column.label(text=line, icon="BLANK1")

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


def licence_lines(model: str) -> tuple[str, ...]:
    """What the chosen model's weights may be used for (the loaded model's own line is on the panel)."""
    if model == "OPEN":
        return ("Open model (kmm-small-open): commercial use allowed under CC BY-SA 3.0 - credit CMU and HDM05",
                "and share adaptations of the weights alike (its model card lists the acknowledgements).")
    if model == "CUSTOM":
        return ("Custom model: the licence its bundle.json states (shown in the panel once loaded).",)
    return ("Default model (kmm-small): non-commercial use only (CC BY-NC 4.0 training data, inherited).",
            "For commercial work choose Model: Open.")


classes = (KMM_AddonPreferences,)

register, unregister = bpy.utils.register_classes_factory(classes)  # type: ignore[func-returns-value,misc]  # stubs: it returns (register, unregister)
