# SPDX-License-Identifier: GPL-3.0-or-later
"""Jobs from the scene: validate the scene's timeline and settings, build the protocol request (`Generate`, an
`Edit` that regenerates one segment of the active take, or `CheckPrompts` that asks before generating what the
model will make of the rows' prompts) with where its result goes, and hand it to the add-on's `JobController`
(controller.py), which runs it on its timer or, headless, to the end.

`start_generation()` / `start_regeneration()` / `start_prompt_check()` return at once; `run_generation_blocking()` /
`run_regeneration_blocking()` return the imported takes, `run_prompt_check_blocking()` the warnings (background
Blender, batch runs, scripts).  `config`
overrides the preferences' backend settings (scripts and tests).
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

import bpy

from ...kmm_core.common.errors import KMMError
from ...kmm_core.common.limits import MAX_SEED
from ...kmm_core.common.prompt_text import segment_prompt_problem
from ...kmm_core.generation.timeline import Timeline, TimelineError
from ...kmm_core.worker.protocol import MAX_CHECKED_PROMPTS, CheckPrompts, Edit, Generate
from ..backend.location import worker_python
from ..backend.session import BackendConfig, BackendSession, GenerationJob
from ..rigs import retarget as rig_retarget
from ..rigs import take_keys
from ..settings import extension_folder, get_preferences, model_checkpoint
from ..takes import importer as take_importer
from ..takes import segment_regenerator
from ..timeline import constraint_source, path_source, segment_table
from ..timeline.properties import rows_of, scene_fps
from .controller import JobTarget, controller

BLENDER_MAX_SEED = min(MAX_SEED, 2**31 - 1)
"""Blender integer properties are 32-bit signed: a random seed must fit the panel's Seed field."""


def backend_config(context: bpy.types.Context | None = None) -> BackendConfig:
    prefs = get_preferences(context)
    return BackendConfig(python=worker_python(prefs), device=prefs.device,
                         checkpoint=model_checkpoint(prefs))


def body_model_path(context: bpy.types.Context | None = None) -> str:
    """The SMPL model file set in the add-on preferences ('' when none): new takes get its body mesh."""
    path = getattr(get_preferences(context), "smpl_model_path", "")
    return bpy.path.abspath(path) if path else ""


def results_dir() -> Path:
    """A fresh folder for one job's .npz files: in the extension's user folder, else the temp folder."""
    # outside an installed extension (a legacy add-on, a test importing the package): the temp folder
    base = extension_folder("results") or Path(tempfile.gettempdir()) / "kmm_results"
    folder = base / time.strftime("%Y%m%d-%H%M%S")
    suffix = 0
    while folder.exists():
        suffix += 1
        folder = base / f"{time.strftime('%Y%m%d-%H%M%S')}-{suffix}"
    folder.mkdir(parents=True)
    return folder


def build_request(scene: bpy.types.Scene, output_dir: str | None = None) -> tuple[Generate, JobTarget]:
    """Validate the scene's timeline and settings; the generate request and where its result goes (the motion files
    into `output_dir`, default a fresh `results_dir()`).  One pass: the table, the path and the constraints are
    each read once into one timeline, validated once (the rows are checked one by one only to name the row at
    fault when it fails), and the rig's bone map is resolved once, by the target check."""
    settings = scene.kmm  # type: ignore[attr-defined]  # registered at run time by properties.register()
    rows = rows_of(settings)
    fps = scene_fps(scene)
    if not rows:
        raise KMMError("timeline: the timeline has no segments: add one")
    target = settings.target_armature
    bone_map, problem = rig_retarget.target_report(target)
    if problem:  # refused before the backend starts: any humanoid armature can be a target, this one cannot
        _raise_row_problem(rows, fps)
        raise KMMError(f"target armature: {problem}")
    timeline = segment_table.to_timeline_dict(rows, fps)
    if settings.loop:
        if len(rows) != 1:
            raise KMMError(f"Loop: a loop is one prompt cycling; the table has {len(rows)} segments")
        timeline["loop"] = True
    if settings.path_object is not None:
        timeline["path"] = path_source.path_points(settings.path_object, target)
    constraints = constraint_source.scene_constraints(scene, bone_map)
    if constraints:
        timeline["constraints"] = constraints
    try:
        Timeline.from_dict(timeline)
    except TimelineError as error:
        _raise_row_problem(rows, fps)
        raise KMMError(f"constraints: {error}" if str(error.field or "").startswith("constraints")
                       else f"timeline: {error}") from None
    if settings.random_seed:
        settings.seed = random.randrange(BLENDER_MAX_SEED)  # shown in the panel so a good take can be reproduced
    request = Generate(timeline=timeline, output_dir=output_dir or str(results_dir()), seed=settings.seed,
                       variations=settings.variations, guidance=settings.guidance, steps=settings.steps,
                       foot_lock=settings.foot_lock)
    options = take_keys.WriteOptions(root_motion=settings.root_motion, fps_mode=settings.fps_mode,
                                           start_frame=float(rows[0].start), push_to_nla=settings.push_to_nla)
    return request, JobTarget(scene.name, target.name if target else None, options,
                              body_model_path=body_model_path())


def _raise_row_problem(rows, fps: float) -> None:
    """Raise the table's first problem, naming its row, if it has one (the panel's own row check)."""
    problems = segment_table.row_problems(rows, fps)
    if problems:
        index, reason = min(problems.items())
        where = "timeline" if index < 0 else f"segment {index + 1}"
        raise KMMError(f"{where}: {reason}")


def build_regeneration_request(scene: bpy.types.Scene, segment: int | None = None, prompt: str | None = None,
                               output_dir: str | None = None) -> tuple[Edit, JobTarget]:
    """Validate a "regenerate one segment of the active take" job; the edit request and its target.

    `segment` (0-based) defaults to the table's selected row, `prompt` to that row's prompt (a prompt equal to the
    take's own, or empty, keeps it)."""
    settings = scene.kmm  # type: ignore[attr-defined]  # registered at run time by properties.register()
    rows = rows_of(settings)
    index = settings.active_segment_index if segment is None else segment
    if segment is None and not 0 <= index < len(rows):
        raise KMMError("select the segment to regenerate in the timeline table")
    if prompt is None:
        prompt = rows[index].prompt if 0 <= index < len(rows) else ""
    plan = segment_regenerator.plan_regeneration(scene, settings.target_armature, index, prompt)
    if settings.random_seed:
        settings.seed = random.randrange(BLENDER_MAX_SEED)
    request = segment_regenerator.edit_request(plan, output_dir or str(results_dir()), seed=settings.seed,
                                               guidance=settings.guidance, steps=settings.steps)
    return request, JobTarget(scene.name, plan.armature_name, plan.provenance.options, regeneration=plan)


def build_prompt_check(scene: bpy.types.Scene) -> tuple[CheckPrompts, JobTarget]:
    """The check of the table's prompts, one per row in row order (so each answer names its row), and where its
    answer goes; a row whose prompt the table refuses is named first."""
    settings = scene.kmm  # type: ignore[attr-defined]  # registered at run time by properties.register()
    rows = rows_of(settings)
    if not rows:
        raise KMMError("timeline: the timeline has no segments: add one")
    for index, row in enumerate(rows):
        reason = segment_prompt_problem(row.prompt)
        if reason is not None:
            raise KMMError(f"segment {index + 1}: {reason}")
    if len(rows) > MAX_CHECKED_PROMPTS:
        raise KMMError(f"timeline: {len(rows)} segments; one check reads at most {MAX_CHECKED_PROMPTS} prompts")
    return (CheckPrompts(prompts=[row.prompt for row in rows]),
            JobTarget(scene.name, None, take_keys.WriteOptions()))


def start_generation(context: bpy.types.Context, config: BackendConfig | None = None) -> GenerationJob:
    """Submit the scene's timeline; returns at once (the timer takes over). Raises KMMError on invalid input."""
    request, target = build_request(context.scene)  # type: ignore[arg-type]  # stubs: Context.scene is optional
    return controller().start(request, target, config or backend_config(context))


def start_regeneration(context: bpy.types.Context, config: BackendConfig | None = None) -> GenerationJob:
    """Regenerate the selected segment of the active take in the background (like start_generation)."""
    request, target = build_regeneration_request(context.scene)  # type: ignore[arg-type]  # stubs: Context.scene is optional
    return controller().start(request, target, config or backend_config(context))


def run_generation_blocking(context: bpy.types.Context, timeout: float | None = None,
                            config: BackendConfig | None = None,
                            output_dir: str | None = None) -> take_importer.ImportedTakes:
    """Headless: generate and write the takes before returning; raises KMMError with the reason on failure.
    `output_dir`: where the motion files go (the takes carry their bytes, so a caller may delete it afterwards)."""
    request, target = build_request(context.scene, output_dir)  # type: ignore[arg-type]  # stubs: Context.scene is optional
    return controller().run_blocking(context, request, target, config or backend_config(context), timeout)


def run_regeneration_blocking(context: bpy.types.Context, timeout: float | None = None,
                              config: BackendConfig | None = None, segment: int | None = None,
                              prompt: str | None = None, output_dir: str | None = None) -> take_importer.ImportedTakes:
    """Headless: regenerate one segment of the active take (see build_regeneration_request); its one new take is
    `.takes[0]`."""
    request, target = build_regeneration_request(context.scene, segment, prompt, output_dir)  # type: ignore[arg-type]  # stubs: Context.scene is optional
    return controller().run_blocking(context, request, target, config or backend_config(context), timeout)


def start_prompt_check(context: bpy.types.Context, config: BackendConfig | None = None) -> GenerationJob:
    """Ask the backend what it will make of the table's prompts; returns at once (the timer puts the answer on the
    rows)."""
    request, target = build_prompt_check(context.scene)  # type: ignore[arg-type]  # stubs: Context.scene is optional
    return controller().start(request, target, config or backend_config(context))


def run_prompt_check_blocking(context: bpy.types.Context, timeout: float | None = None,
                              config: BackendConfig | None = None) -> list[str]:
    """Headless: check the table's prompts and put the answer on the rows before returning; the warnings'
    messages."""
    request, target = build_prompt_check(context.scene)  # type: ignore[arg-type]  # stubs: Context.scene is optional
    return controller().run_check_blocking(request, target, config or backend_config(context), timeout)


def tick() -> float | None:
    """One step of the controller's timer, for scripts without an event loop: drive a job the way the timer does."""
    return controller().tick()


def cancel() -> None:
    controller().cancel()


def release() -> None:
    controller().release()


def current_session() -> BackendSession | None:
    return controller().session
