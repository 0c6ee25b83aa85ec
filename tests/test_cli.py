# SPDX-License-Identifier: GPL-3.0-or-later
"""`kmm` with the tiny trained bundle: outputs by suffix, preview, doctor --json (as the add-on reads it), exit codes."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from blender_scripts.bvh_import import run_blender_import
from PIL import Image

from kmm_core.cli import EXIT_BAD_ARGUMENTS, EXIT_MODEL_MISSING, main
from kmm_core.generation.decoding_engine import GenerationOptions
from kmm_core.generation.timeline import Timeline
from kmm_core.generation.timeline_generator import generate_timeline
from kmm_core.generation.variation_likeness import alike_variations
from kmm_core.motion.motion_result import MotionResult
from kmm_core.motion.skeleton import JOINT_NAMES
from kmm_core.worker.client import worker_environment

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def timeline_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "timeline.json"
    path.write_text(json.dumps({"fps": 24, "segments": [{"prompt": "a person walks forward", "seconds": 1.0},
                                                        {"prompt": "a person waves", "frames": 19}]}))
    return path


def test_generate_timeline_to_npz_with_gif_preview(tiny_bundle, timeline_file, tmp_path, capsys):
    out, preview = tmp_path / "out.npz", tmp_path / "out.gif"
    code = main(["generate", "--timeline", str(timeline_file), "-o", str(out), "--preview", str(preview),
                 "--checkpoint", str(tiny_bundle), "--steps", "2", "--seed", "3", "--variations", "2",
                 "--device", "cpu", "--quiet"])
    assert code == 0
    motions = [MotionResult.load(tmp_path / f"out_{v}.npz") for v in range(2)]
    timeline = Timeline.from_file(timeline_file)
    assert all(m.num_frames == timeline.total_frames == 43 and m.fps == 24 for m in motions)
    assert motions[0].segment_prompts == timeline.prompts
    with Image.open(preview) as gif:
        assert gif.n_frames >= 10  # every other frame of 43 at 24 fps (preview capped at 15 fps)
    # Variations that came out as one motion are said to be (variation_likeness.py), and only those.
    alike = alike_variations([motion.joints for motion in motions])
    assert ("came out as the same motion" in capsys.readouterr().err) == bool(alike)


def test_python_m_generate_bvh_imports_in_blender(tiny_bundle, tmp_path):
    out = tmp_path / "walk.bvh"
    completed = subprocess.run([sys.executable, "-m", "kmm_core.cli", "generate", "a person walks forward",
                                "--seconds", "1.5", "--fps", "30", "-o", str(out), "--checkpoint", str(tiny_bundle),
                                "--steps", "2", "--seed", "1", "--device", "cpu"],
                               capture_output=True, text=True, env=worker_environment(), timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert "wrote" in completed.stderr
    recorded = run_blender_import([{"path": str(out), "frames": [0, 44]}], tmp_path)
    assert sorted(recorded["names_0"]) == sorted(JOINT_NAMES)
    heads = recorded["heads_0"]
    assert heads.shape == (2, len(JOINT_NAMES), 3) and np.isfinite(heads).all()
    assert "Frames: 45" in out.read_text()


def test_doctor_json_is_what_the_blender_addon_reads(tiny_bundle, tmp_path):
    completed = subprocess.run([sys.executable, "-m", "kmm_core.cli", "doctor", "--json", "--checkpoint",
                                str(tiny_bundle)], capture_output=True, text=True, env=worker_environment(),
                               timeout=300)
    report = json.loads(completed.stdout)
    assert set(report) == {"ok", "checks"}
    names = [check["name"] for check in report["checks"]]
    assert names == ["python", "torch", "cuda", "mamba_kernels", "cpu_scan", "checkpoint", "licence", "weights",
                     "model_configs", "statistics", "text_encoder"]
    assert all(set(check) >= {"name", "ok", "detail"} for check in report["checks"])
    assert report["ok"] is True and completed.returncode == 0
    # The add-on's parser, imported the way Blender imports it (inside the extension package).
    (tmp_path / "kmm_motion").symlink_to(REPO_ROOT, target_is_directory=True)
    sys.path.insert(0, str(tmp_path))
    try:
        doctor = importlib.import_module("kmm_motion.kmm_blender.backend.doctor")
        parsed = doctor.parse_doctor_output(completed.stdout)
    finally:
        sys.path.remove(str(tmp_path))
    assert not parsed.error and parsed.ok and [item.name for item in parsed.items] == names
    missing = subprocess.run([sys.executable, "-m", "kmm_core.cli", "doctor", "--json", "--checkpoint",
                              str(tmp_path / "none")], capture_output=True, text=True, env=worker_environment(),
                             timeout=300)
    report = json.loads(missing.stdout)
    assert report["ok"] is False and missing.returncode == 1
    assert next(c for c in report["checks"] if c["name"] == "checkpoint")["ok"] is False


def test_bad_arguments_and_missing_model_have_their_exit_codes(tiny_bundle, tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["generate", "walk", "--seconds", "1", "--device", "tpu", "-o", str(tmp_path / "a.npz")])
    assert exited.value.code == EXIT_BAD_ARGUMENTS
    assert main(["generate", "walk", "-o", str(tmp_path / "a.npz")]) == EXIT_BAD_ARGUMENTS  # no --seconds
    assert main(["generate", "walk", "--seconds", "1", "-o", str(tmp_path / "a.fbx")]) == EXIT_BAD_ARGUMENTS
    bad = tmp_path / "bad.json"
    bad.write_text('{"segments": [{"prompt": "walk", "seconds": 1}, {"prompt": "  ", "seconds": 1}]}')
    assert main(["generate", "--timeline", str(bad), "-o", str(tmp_path / "a.npz")]) == EXIT_BAD_ARGUMENTS
    assert "segments[1].prompt: the prompt is empty" in capsys.readouterr().err
    assert main(["generate", "walk", "--seconds", "1", "-o", str(tmp_path / "a.npz"), "--checkpoint",
                 str(tmp_path / "missing")]) == EXIT_MODEL_MISSING
    assert "missing: no such folder. Train one with" in capsys.readouterr().err
    assert main(["edit", str(tmp_path / "none.npz"), "--segment", "0", "-o", str(tmp_path / "b.npz"),
                 "--checkpoint", str(tiny_bundle)]) == EXIT_BAD_ARGUMENTS
    assert main(["generate", "walk", "--seconds", "1", "-o", str(tmp_path / "a.npz"), "--checkpoint",
                 str(tiny_bundle), "--unlikely-guidance", "5"]) == EXIT_BAD_ARGUMENTS
    assert "unlikely_guidance_factor: must be between 1 and 4, got 5.0" in capsys.readouterr().err
    assert not (tmp_path / "a.npz").exists()
    if not torch.cuda.is_available():
        assert main(["generate", "walk", "--seconds", "1", "-o", str(tmp_path / "a.npz"), "--device", "cuda",
                     "--checkpoint", str(tiny_bundle)]) == EXIT_BAD_ARGUMENTS
        assert "no CUDA device" in capsys.readouterr().err


def test_edit_continue_writes_a_longer_motion(tiny_bundle, tiny_model, timeline_file, tmp_path):
    source = tmp_path / "source.npz"
    common = ["--checkpoint", str(tiny_bundle), "--steps", "1", "--seed", "2", "--device", "cpu", "--quiet"]
    (motion,) = generate_timeline(tiny_model, Timeline.from_file(timeline_file), seed=2,
                                  options=GenerationOptions(steps=1))
    motion.save(source)
    longer = tmp_path / "longer.npz"
    assert main(["edit", str(source), "--continue", "0.5", "--prompt", "a person sits", "-o", str(longer),
                 *common]) == 0
    before, after = MotionResult.load(source), MotionResult.load(longer)
    assert after.num_frames == before.num_frames + 12
    assert np.array_equal(after.joints[:before.num_frames], before.joints)


def test_no_standing_root_smoothing_turns_the_step_off(tiny_bundle, tiny_model, timeline_file, tmp_path):
    """`--no-standing-root-smoothing` gives what generation gives with the step at 0; the default smooths the wave."""
    outputs = {}
    for name, flags in (("default", []), ("off", ["--no-standing-root-smoothing"])):
        out = tmp_path / f"{name}.npz"
        assert main(["generate", "--timeline", str(timeline_file), "-o", str(out), "--checkpoint", str(tiny_bundle),
                     "--steps", "2", "--seed", "4", "--device", "cpu", "--quiet", *flags]) == 0
        outputs[name] = MotionResult.load(out).joints
    options = GenerationOptions(steps=2, standing_root_sigma=0.0)
    (expected,) = generate_timeline(tiny_model, Timeline.from_file(timeline_file), seed=4, options=options)
    np.testing.assert_allclose(outputs["off"], expected.joints, rtol=0, atol=1e-6)
    assert not np.allclose(outputs["default"], outputs["off"])


@pytest.mark.parametrize(("field", "flag", "own", "library", "too_high", "error", "walk_seconds"), [
    ("standing_root_sigma", "--standing-root-sigma", "1", "2", "20",
     "standing_root_sigma: must be between 0 and 8 frames", "1"),
    ("locomotion_guidance_factor", "--walk-guidance", "0", "1", "3", "walk_guidance_factor: must be between 0 and 2",
     "1"),
    # A one-second walk is 5 tokens, too few for a cycle of 3-8 tokens to show: this one walks 4 seconds.
    # --walk-cycle sets the base layer's pull, the residual layers' and the steady walks' extra together.
    (("locomotion_period_bonus", "locomotion_residual_period_bonus", "steady_walk_period_bonus"), "--walk-cycle", "50", "0", "200",
     "walk_cycle_bonus: must be between 0 and 100", "4"),
    # --walk-candidates: the straight walk's candidate decodes (a whole number), the best-stepping one kept.  Whether
    # the kept one differs from the first draw depends on the tiny model's candidates, so this case checks the
    # choice itself in test_the_walk_candidates_option_reaches_the_decoding.
    ("steady_walk_candidates", "--walk-candidates", "3", "1", "9", "walk_candidates: must be a whole number from 1 to 8",
     "4"),
])
def test_a_decoding_setting_is_the_models_unless_asked(tiny_bundle, timeline_file, tmp_path, capsys, field, flag, own,
                                                       library, too_high, error, walk_seconds, monkeypatch):
    """A bundle carries decoding settings chosen for it (bundle.json "decoding": the standing-root sigma chosen
    against its decoder, the guidance share of its walk segments), generation takes them when none is asked for,
    the option overrides them, and a value out of range is refused naming the option (or the bundle's field), before
    any output is written.  (The walk is a whole walk and the wave a whole stand: the prompts' kinds are given
    outright; the tiny model's few captions make them partial, tests/test_prompt_kinds.py measures the real ones.)"""
    from kmm_core.generation.prompt_kinds import PromptKinds
    from kmm_core.humanml3d.motion_kind import MotionKind

    monkeypatch.setattr(PromptKinds, "of", lambda self, prompts: [
        MotionKind(1.0, 1.0, 0.0) if "walk" in prompt else MotionKind(0.0, 0.0, 1.0) for prompt in prompts])
    if walk_seconds != "1":
        timeline_file = tmp_path / "timeline.json"
        timeline_file.write_text(json.dumps({"fps": 24, "segments": [
            {"prompt": "a person walks forward", "seconds": float(walk_seconds)}, {"prompt": "a person waves",
                                                                                  "frames": 19}]}))
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    manifest = json.loads((bundle / "bundle.json").read_text())
    fields = field if isinstance(field, tuple) else (field,)
    field = fields[0]
    cast = int if field == "steady_walk_candidates" else float
    manifest["decoding"] = {**manifest.get("decoding", {}), **{name: cast(own) for name in fields}}
    (bundle / "bundle.json").write_text(json.dumps(manifest, indent=1))

    def generate(checkpoint: Path, name: str, *flags: str) -> np.ndarray:
        out = tmp_path / f"{name}.npz"
        assert main(["generate", "--timeline", str(timeline_file), "-o", str(out), "--checkpoint", str(checkpoint),
                     "--steps", "2", "--seed", "4", "--device", "cpu", "--quiet", *flags]) == 0
        return MotionResult.load(out).joints

    owns = generate(bundle, "own")
    np.testing.assert_array_equal(owns, generate(tiny_bundle, "asked", flag, own))
    if field != "steady_walk_candidates":
        assert not np.allclose(owns, generate(tiny_bundle, "library_default"))
    np.testing.assert_array_equal(generate(bundle, "library_asked", flag, library),
                                  generate(tiny_bundle, "library_default_again"))
    capsys.readouterr()
    refused = tmp_path / "refused.npz"
    assert main(["generate", "--timeline", str(timeline_file), "-o", str(refused), "--checkpoint", str(tiny_bundle),
                 "--steps", "2", flag, too_high, "--quiet"]) == EXIT_BAD_ARGUMENTS
    assert error in capsys.readouterr().err and not refused.exists()
    manifest["decoding"][field] = cast(too_high)
    (bundle / "bundle.json").write_text(json.dumps(manifest, indent=1))
    assert main(["generate", "--timeline", str(timeline_file), "-o", str(refused), "--checkpoint", str(bundle),
                 "--steps", "2", "--quiet"]) != 0
    assert field in capsys.readouterr().err and not refused.exists()


def test_the_walk_candidates_option_reaches_the_decoding(tiny_model):
    """`--walk-candidates N` becomes the decoding's `steady_walk_candidates` (the bundle's when not given)."""
    from kmm_core import cli as kmm_cli

    def candidates(*flags: str) -> int:
        args = kmm_cli.build_parser().parse_args(["generate", "a person walks forward", "-o", "walk.npz", *flags])
        return kmm_cli._options(args).decoding_config(tiny_model).steady_walk_candidates

    assert candidates("--walk-candidates", "3") == 3
    assert candidates() == tiny_model.decoding.steady_walk_candidates == 1
