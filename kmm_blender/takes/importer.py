# SPDX-License-Identifier: GPL-3.0-or-later
"""Turn the worker's MotionResult files into takes on an armature, all or nothing.

Used by the panel (when a job finishes) and by the headless batch script alike.  Every file is loaded and validated
before Blender data is touched; if writing still fails part-way, whatever was created is removed again, so a failed
generation changes nothing in the scene.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace

import bpy

from ...kmm_core.common.errors import KMMError
from ...kmm_core.motion.motion_result import MotionResult
from ..rigs import armature_builder, body_mesh, take_keys
from ..rigs import retarget as rig_retarget
from . import keyframe_writer
from . import provenance as take_provenance


@dataclass
class ImportedTakes:
    armature: bpy.types.Object
    created_armature: bool
    takes: list[keyframe_writer.Take]
    warnings: list[str] = field(default_factory=list)  # problems that did not stop the takes (e.g. the body mesh)


def take_name(prompts: Sequence[str], variation: int, variations: int, seed: int | None = None,
              existing: Collection[str] = ()) -> str:
    """'KMM walk forward +2 seed 7': the first prompt, how many segments follow, and the seed that made the take
    (variation v of seed s used seed s + v); without a known seed, 'v2' numbers the variations.  A name already in
    `existing` gets ' #2', ' #3', ... (never Blender's '.001')."""
    first = prompts[0] if prompts else "motion"
    more = f" +{len(prompts) - 1}" if len(prompts) > 1 else ""
    made = f" seed {seed + variation}" if seed is not None else (f" v{variation + 1}" if variations > 1 else "")
    return unique_name(f"KMM {first[:32].strip()}{more}{made}", existing)


def unique_name(name: str, existing: Collection[str]) -> str:
    if name not in existing:
        return name
    number = 2
    while f"{name} #{number}" in existing:
        number += 1
    return f"{name} #{number}"


def cover_takes(scene: bpy.types.Scene, takes: Sequence[keyframe_writer.Take]) -> bool:
    """Grow the scene's frame range to cover every take (never shrink it); returns whether it changed."""
    first = min(int(math.floor(take.frame_start)) for take in takes)
    last = max(int(math.ceil(take.frame_end)) for take in takes)
    changed = first < scene.frame_start or last > scene.frame_end
    if last > scene.frame_end:
        scene.frame_end = last
    if first < scene.frame_start:
        scene.frame_start = max(first, 0)
    return changed


def import_takes(
    context: bpy.types.Context,
    paths: Sequence[str],
    target: bpy.types.Object | None,
    options: take_keys.WriteOptions,
    seed: int | None = None,
    body_model_path: str | None = None,
) -> ImportedTakes:
    """Load every result in `paths` and write each as a take on `target` (None: a new KMM armature); with
    `body_model_path` (an SMPL model file) a new armature also gets the body mesh.

    The first take ends up active (or on top of the NLA when pushing); the others stay available as actions.
    `seed`: the generation's seed (names the takes).  The scene's frame range grows to cover the takes unless the
    scene's KMM setting Extend Frame Range is off.
    """
    if not paths:
        raise KMMError("the backend returned no motion files")
    motions = [MotionResult.load(path) for path in paths]
    problem = rig_retarget.target_problem(target)
    if problem:
        raise KMMError(f"target armature: {problem} (leave the Armature field empty to create a KMM armature)")

    created_armature = target is None
    created_actions: list[bpy.types.Action] = []
    previous_action = target.animation_data.action if target is not None and target.animation_data else None
    previous_fake_user = previous_action.use_fake_user if previous_action is not None else False
    tracks_before = len(target.animation_data.nla_tracks) if target is not None and target.animation_data else 0
    try:
        armature = target or armature_builder.create_armature(context, offsets=motions[0].rest_offsets)
        takes: list[keyframe_writer.Take] = []
        # Write the last variation first so that the first one ends up active / on the top NLA track.
        for index in reversed(range(len(motions))):
            name = take_name(motions[index].segment_prompts, index, len(motions), seed, bpy.data.actions.keys())
            take = keyframe_writer.write_take(armature, motions[index], replace(options, action_name=name),
                                              context.scene)
            created_actions.append(take.action)
            take_provenance.record(take.action, paths[index], options, context.scene)  # type: ignore[arg-type]  # for later edits; stubs: Context.scene is optional
            takes.insert(0, take)
    except BaseException:
        for action in created_actions:
            bpy.data.actions.remove(action)
        if created_armature and "armature" in locals():
            data = armature.data
            bpy.data.objects.remove(armature)
            bpy.data.armatures.remove(data)  # type: ignore[arg-type]  # an armature object's data (stubs: any ID)
        elif target is not None and target.animation_data is not None:
            tracks = target.animation_data.nla_tracks
            while len(tracks) > tracks_before:  # new tracks are appended on top
                tracks.remove(tracks[-1])
            target.animation_data.action = previous_action
            if previous_action is not None:
                previous_action.use_fake_user = previous_fake_user
        raise
    settings = getattr(context.scene, "kmm", None)
    if getattr(settings, "extend_frame_range", True):
        cover_takes(context.scene, takes)  # type: ignore[arg-type]  # stubs: Context.scene is optional
    # Only after every take is in place: the optional body mesh never undoes a take.
    warnings = [f"the action {take.kept_action!r} that {armature.name!r} played is kept (fake user: pick it again in "
                "the Action editor)" for take in takes if take.kept_action]
    warnings += list(dict.fromkeys(warning for take in takes for warning in take.warnings))
    warning = body_mesh.ensure_body_mesh(armature, body_model_path)
    return ImportedTakes(armature=armature, created_armature=created_armature, takes=takes,
                         warnings=warnings + ([warning] if warning else []))
