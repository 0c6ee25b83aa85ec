# SPDX-License-Identifier: GPL-3.0-or-later
"""The timeline rows' prompt warnings (out of vocabulary, weak action words) drawn under the table, and
`kmm.use_suggestion`, which puts a suggested prompt into the row (the warnings themselves: timeline/prompt_warnings.py)."""

from __future__ import annotations

from typing import Any

import bpy
from bpy.props import IntProperty, StringProperty

from ..timeline.prompt_warnings import active_warning, read_with_of, suggestions_of


def draw_warnings(layout: bpy.types.UILayout | None, settings: Any, wrapped) -> None:
    """Under the table: each warned row's message and one button per suggestion; each row whose prompt was read
    with training captions nearest in meaning, those captions."""
    if layout is None:
        return
    for index, item in enumerate(settings.segments):
        captions = read_with_of(item)
        if captions:
            listed = ", ".join(f'"{caption}"' for caption in captions)
            wrapped(layout, f"Segment {index + 1} is read with what the model knows nearest to it: {listed}",
                    icon="INFO")
        message = active_warning(item)
        if not message:
            continue
        box = layout.box()
        wrapped(box, f"Segment {index + 1}: {message}", icon="QUESTION")
        for suggestion in suggestions_of(item):
            operator = box.operator("kmm.use_suggestion", text=f"Use \"{suggestion}\"", icon="FORWARD")
            operator.index = index
            operator.suggestion = suggestion


class KMM_OT_use_suggestion(bpy.types.Operator):
    """Replace the segment's prompt with this prompt the model knows"""

    bl_idname = "kmm.use_suggestion"
    bl_label = "Use Suggested Prompt"
    bl_options = {"REGISTER", "UNDO", "INTERNAL"}

    index: IntProperty(name="Segment", default=0, min=0)
    suggestion: StringProperty(name="Prompt", default="")

    def execute(self, context):
        segments = context.scene.kmm.segments
        if not 0 <= self.index < len(segments) or not self.suggestion.strip():
            self.report({"ERROR"}, f"segment {self.index + 1}: no such row or an empty suggestion")
            return {"CANCELLED"}
        segments[self.index].prompt = self.suggestion
        self.report({"INFO"}, f"Segment {self.index + 1}: prompt set to \"{self.suggestion}\"")
        return {"FINISHED"}


classes = (KMM_OT_use_suggestion,)

register, unregister = bpy.utils.register_classes_factory(classes)  # type: ignore[func-returns-value,misc]  # stubs: it returns (register, unregister)
