# SPDX-License-Identifier: GPL-3.0-or-later
"""`kmm` refuses values beyond `kmm_core/common/limits.py` and unwritable outputs with exit 2/4 and one line on stderr, before
the model loads (the checkpoint given is missing: reaching the model would exit 3 instead)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kmm_core.common.limits import MAX_FPS, MAX_PROMPT_CHARS

REPO_ROOT = Path(__file__).resolve().parents[1]


def _kmm(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kmm_core.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})


def _one_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    return lines[0]


@pytest.mark.parametrize("arguments, words", [
    (["walk", "--seconds", "1", "--fps", "1e300"], f"fps: must be at most {MAX_FPS:g}"),
    (["walk", "--seconds", "1", "--fps", "200000"], f"fps: must be at most {MAX_FPS:g}"),
    (["walk", "--seconds", "1e308"], "--seconds: must be more than 0 and at most 600"),
    (["walk", "--seconds", "nan"], "--seconds"),
    (["x" * (MAX_PROMPT_CHARS + 1), "--seconds", "1"], f"the limit is {MAX_PROMPT_CHARS}"),
], ids=["fps-1e300", "fps-200000", "seconds-1e308", "seconds-nan", "long-prompt"])
def test_values_beyond_the_limits_exit_2_with_one_line(arguments, words, tmp_path):
    result = _kmm("generate", *arguments, "-o", str(tmp_path / "out.npz"), "--checkpoint", str(tmp_path / "none"))
    assert result.returncode == 2 and words in _one_line(result)


def test_a_timeline_with_a_400_digit_frame_count_exits_2(tmp_path):
    timeline = tmp_path / "t.json"
    timeline.write_text('{"fps": 30, "segments": [{"prompt": "walk", "frames": %s}]}' % ("9" * 400))
    result = _kmm("generate", "--timeline", str(timeline), "-o", str(tmp_path / "out.npz"))
    assert result.returncode == 2
    assert "segments[0].frames: a 400-digit number frames at 30 fps is longer than the longest timeline" in \
        _one_line(result)
    huge_prompt = tmp_path / "huge.json"  # the 10 MB prompt that once ran for 30 s
    huge_prompt.write_text(json.dumps({"segments": [{"prompt": "walk " * 2_000_000, "seconds": 1}]}))
    result = _kmm("generate", "--timeline", str(huge_prompt), "-o", str(tmp_path / "out.npz"))
    assert result.returncode == 2 and "the limit is 1000" in _one_line(result)


def test_outputs_that_cannot_be_written_fail_before_the_model_loads(tmp_path):
    missing_model = ["--checkpoint", str(tmp_path / "no-model")]
    folder = tmp_path / "a-folder.bvh"
    folder.mkdir()
    result = _kmm("generate", "walk", "--seconds", "1", "-o", str(folder), *missing_model)
    assert result.returncode == 2 and "is a folder" in _one_line(result)
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(read_only)],
                             capture_output=True).returncode == 0
    if not mounted:
        read_only.chmod(0o555)  # not root: the permission bits stop us
    try:
        for output in (["-o", str(read_only / "take.bvh")],
                       ["-o", str(tmp_path / "take.bvh"), "--preview", str(read_only / "take.gif")]):
            result = _kmm("generate", "walk", "--seconds", "1", *output, *missing_model)
            line = _one_line(result)
            assert result.returncode == 4 and f"{read_only}: cannot write" in line, line
            assert "Read-only file system" in line or "Permission denied" in line
    finally:
        if mounted:
            subprocess.run(["umount", str(read_only)], check=True)
    edited = _kmm("edit", str(tmp_path / "none.npz"), "--continue", "1e308", "--prompt", "sit", "-o",
                  str(tmp_path / "e.npz"))
    assert edited.returncode == 2 and "--continue: must be more than 0 and at most 600" in _one_line(edited)


def test_every_checkpoint_problem_exits_3(tmp_path, monkeypatch):
    """A broken config JSON (BundleError) and weights that do not fit their model (CheckpointError) once gave 3
    and 2: any checkpoint problem is now 3."""
    import shutil

    from kmm_core.bundle.model_bundle import default_bundle_path
    from kmm_core.bundle.weight_checksums import FILES_KEY

    bundle = Path(shutil.copytree(default_bundle_path(), tmp_path / "bundle"))
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest.pop(FILES_KEY)  # an old bundle without checksums: the loader itself has to catch the problems
    monkeypatch.setenv("KMM_ALLOW_UNCHECKED_BUNDLE", "1")  # loaded only with the explicit opt-out
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    config = json.loads((bundle / "aligner.json").read_text())
    config["embed_dim"] = config["embed_dim"] * 2  # the aligner's weights (read by generation) no longer fit
    (bundle / "aligner.json").write_text(json.dumps(config))
    result = _kmm("generate", "walk", "--seconds", "1", "--steps", "1", "--device", "cpu", "-o",
                  str(tmp_path / "a.npz"), "--checkpoint", str(bundle), "--quiet")
    assert result.returncode == 3, result.stderr[-2000:]
    assert "aligner.safetensors" in result.stderr.strip().splitlines()[-1]
    (bundle / "generator.json").write_text("{broken")
    result = _kmm("generate", "walk", "--seconds", "1", "-o", str(tmp_path / "a.npz"), "--checkpoint", str(bundle))
    assert result.returncode == 3 and "generator.json" in result.stderr


@pytest.mark.parametrize("command", [["kmm_core.cli", "generate", "wave", "-o", "x.npz"],
                                     ["kmm_core.training.cli", "eval"]])
def test_a_standing_root_sigma_and_no_smoothing_together_are_refused(command, tmp_path):
    """`--standing-root-sigma 3 --no-standing-root-smoothing` silently used 0: the two are one setting, and asking
    for both is refused naming them."""
    result = subprocess.run([sys.executable, "-m", *command, "--standing-root-sigma", "3",
                             "--no-standing-root-smoothing"], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 2, result.stderr
    assert ("argument --no-standing-root-smoothing: not allowed with argument --standing-root-sigma"
            in result.stderr) and "Traceback" not in result.stderr
