# SPDX-License-Identifier: GPL-3.0-or-later
"""Data the add-on keeps: the timeline and generation settings per scene (saved in the .blend), and the state of
the running job per window manager (runtime only, never saved)."""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from ...kmm_core.common.errors import KMMError
from ...kmm_core.common.limits import MAX_GUIDANCE, MAX_SEED, MAX_STEPS, MAX_VARIATIONS, MIN_GUIDANCE
from ..rigs import take_keys
from .segment_table import SCENE_FRAME_LIMIT, Row


def _is_armature(_settings, obj: bpy.types.Object) -> bool:
    return obj.type == "ARMATURE"


def _is_path(_settings, obj: bpy.types.Object) -> bool:
    return obj.type in ("CURVE", "EMPTY")


class KMM_PG_segment(bpy.types.PropertyGroup):
    """One row of the timeline: a prompt held from `start` to `end` (inclusive scene frames)."""

    prompt: StringProperty(name="Prompt", description="What the character does in this segment", default="")
    start: IntProperty(name="Start", description="First frame of the segment", default=1)
    end: IntProperty(name="End", description="Last frame of the segment (inclusive)", default=60)
    # Set from the worker's result (prompt_warnings.py): the prompt is far from what the model was trained on.
    vocabulary_warning: StringProperty(name="Vocabulary Warning", default="")
    warned_prompt: StringProperty(name="Warned Prompt", default="")
    suggestions: StringProperty(name="Suggested Prompts", default="")
    # Set from the worker's result.info.conditions: the training captions nearest in meaning that completed the
    # prompt's condition (kmm_core/generation/prompt_conditions.py), kept with the prompt they were for.
    read_with: StringProperty(name="Read With", default="")
    read_with_prompt: StringProperty(name="Read With Prompt", default="")


EFFECTOR_ITEMS = [(name, name.replace("_", " ").title(), f"the {name.replace('_', ' ')} reaches the target")
                  for name in ("right_wrist", "left_wrist", "right_foot", "left_foot", "right_ankle", "left_ankle",
                               "head", "root")]


class KMM_PG_effector(bpy.types.PropertyGroup):
    """An end-effector target: `joint` at the target object (an empty) or bone from `start` to `end`."""

    joint: EnumProperty(name="Joint", items=EFFECTOR_ITEMS, default="right_wrist")
    target: PointerProperty(name="Target", type=bpy.types.Object,
                            description="An empty (its location) or an armature (with Bone: that bone's head)")
    bone: StringProperty(name="Bone", description="Bone of the target armature whose head is the target", default="")
    start: IntProperty(name="Start", description="First frame the joint is held on the target", default=1)
    end: IntProperty(name="End", description="Last frame the joint is held on the target", default=1)
    hard: BoolProperty(name="Hard", description="Met exactly (else Weight says how far towards it)", default=True)
    weight: FloatProperty(name="Weight", min=0.01, max=1.0, default=1.0)


class KMM_PG_scene_settings(bpy.types.PropertyGroup):
    segments: CollectionProperty(type=KMM_PG_segment)
    # Key poses from "Use my keys as constraints" (timeline/constraint_source.py): a JSON list of pose constraints.
    constraint_poses: StringProperty(name="Key Poses", default="")
    # the keyed bones' orientations read with the key poses (JSON, tied to constraint_poses by its digest)
    constraint_orientations: StringProperty(name="Key Pose Orientations", default="")
    key_poses_whole_body: BoolProperty(
        name="Whole Body", default=False,
        description="Use My Keys as Constraints holds the whole body at every keyed frame (else only the joints the "
                    "keyed bones move: an arm, a leg from the keyed bone down, the root, the spine, neck or head)")
    effectors: CollectionProperty(type=KMM_PG_effector)
    active_segment_index: IntProperty(name="Active Segment", default=0)

    seed: IntProperty(name="Seed", description="Random seed of the generation (same seed, same motion)",
                      default=0, min=0, max=min(MAX_SEED, 2**31 - 1))  # Blender's ints are 32-bit signed
    random_seed: BoolProperty(name="Random Seed", description="Pick a new seed for every generation", default=False)
    variations: IntProperty(name="Variations", description="How many different motions to generate (one take each)",
                            default=1, min=1, soft_max=16, max=MAX_VARIATIONS)
    guidance: FloatProperty(name="Guidance", description="Classifier-free guidance scale: how strictly the motion "
                            "follows the prompts", default=4.0, min=MIN_GUIDANCE, soft_max=10.0,
                            max=MAX_GUIDANCE)
    steps: IntProperty(name="Steps", description="Decoding iterations of the masked generator",
                       default=10, min=1, soft_max=100, max=MAX_STEPS)
    path_object: PointerProperty(name="Path", type=bpy.types.Object, poll=_is_path,
                                 description="Curve (or empty with child empties as waypoints) the character walks "
                                             "along over the whole timeline; empty: wherever the motion goes")
    loop: BoolProperty(name="Loop", description="Make the (single-prompt) motion a cycle: its last frame leads "
                       "seamlessly into its first, for repeating in the NLA", default=False)
    foot_lock: BoolProperty(name="Lock Feet", description="Hold each foot still on the floor while it touches it "
                            "(off: the raw generated motion, which may slide)", default=True)
    target_armature: PointerProperty(name="Armature", type=bpy.types.Object, poll=_is_armature,
                                     description="Armature receiving the motion (empty: create a KMM armature)")
    root_motion: EnumProperty(
        name="Root Motion",
        items=((take_keys.ROOT_MOTION_WORLD, "World", "The character travels through the scene"),
               (take_keys.ROOT_MOTION_IN_PLACE, "In Place", "Remove horizontal travel, keep height and turns")),
        default=take_keys.ROOT_MOTION_WORLD,
    )
    fps_mode: EnumProperty(
        name="Frame Rate",
        items=((take_keys.FPS_RESAMPLE, "Match Scene", "Resample to the scene frame rate, keeping real time"),
               (take_keys.FPS_FRAME_PER_FRAME, "Frame per Frame",
                "One generated frame per scene frame (the motion plays at the scene's speed)")),
        default=take_keys.FPS_RESAMPLE,
    )
    push_to_nla: BoolProperty(name="Push to NLA", description="Put each new take in its own NLA strip",
                              default=False)
    extend_frame_range: BoolProperty(name="Extend Frame Range", default=True,
                                     description="Grow the scene's frame range when a new take is longer")


class KMM_PG_job(bpy.types.PropertyGroup):
    """What the panel shows about the backend and the running generation (not saved)."""

    status: StringProperty(name="Status", default="Idle")
    running: BoolProperty(name="Running", default=False)
    progress: FloatProperty(name="Progress", default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    error: StringProperty(name="Last Error", default="")
    advice: StringProperty(name="Advice", default="")
    detail: StringProperty(name="Detail", default="", description="Last line the backend wrote about the failure")
    last_takes: StringProperty(name="Last Takes", default="")
    model: StringProperty(name="Model", default="", description="Name of the model the backend loaded")
    model_licence: StringProperty(name="Model Licence", default="",
                                  description="What the loaded model's weights may be used for (its bundle.json)")


def scene_fps(scene: bpy.types.Scene) -> float:
    return scene.render.fps / scene.render.fps_base


def rows_of(settings: KMM_PG_scene_settings) -> list[Row]:
    return [Row(item.prompt, item.start, item.end) for item in settings.segments]


def set_rows(settings: KMM_PG_scene_settings, rows: list[Row]) -> None:
    """Replace the table's rows: all of them, or (a row Blender cannot hold) none, the table unchanged."""
    for index, row in enumerate(rows):
        if max(abs(row.start), abs(row.end)) > SCENE_FRAME_LIMIT:
            raise KMMError(f"segment {index + 1}: frames {row.start}-{row.end} are beyond Blender's last frame "
                           f"{SCENE_FRAME_LIMIT}")
    settings.segments.clear()
    for row in rows:
        item = settings.segments.add()
        item.prompt, item.start, item.end = row.prompt, row.start, row.end
    settings.active_segment_index = min(settings.active_segment_index, max(len(rows) - 1, 0))


classes = (KMM_PG_segment, KMM_PG_effector, KMM_PG_scene_settings, KMM_PG_job)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    # (type: ignore: the attributes are new at run time, and fake-bpy-module types PointerProperty() as None.)
    bpy.types.Scene.kmm = PointerProperty(type=KMM_PG_scene_settings)  # type: ignore[attr-defined, func-returns-value]
    bpy.types.WindowManager.kmm_job = PointerProperty(type=KMM_PG_job)  # type: ignore[attr-defined, func-returns-value]


def unregister() -> None:
    del bpy.types.WindowManager.kmm_job  # type: ignore[attr-defined]  # added by register()
    del bpy.types.Scene.kmm  # type: ignore[attr-defined]
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
