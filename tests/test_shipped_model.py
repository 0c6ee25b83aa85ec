# SPDX-License-Identifier: GPL-3.0-or-later
"""The model shipped inside the package (kmm_core/checkpoints/kmm-small): it loads, the CLI uses it when no
checkpoint is given, and what it generates is a plausible, finite human motion."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kmm_core.model_bundle import default_bundle_path, read_manifest
from kmm_core.motion_result import MotionResult

REPO_ROOT = Path(__file__).resolve().parents[1]


def _kmm(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kmm_core.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
                                            "PYTHONPATH": str(REPO_ROOT)})


def test_shipped_bundle_is_complete_and_says_its_licence():
    bundle = default_bundle_path()
    manifest = read_manifest(bundle)
    assert {"tokenizer", "aligner", "generator", "evaluator"} <= set(manifest["components"])
    assert "non-commercial" in manifest["licence"].lower()
    assert (bundle / "README.md").is_file(), "the shipped model needs its model card"
    size = sum(path.stat().st_size for path in bundle.iterdir())
    assert size < 100 * 2**20


def test_cli_generates_with_the_shipped_model_when_no_checkpoint_is_given(tmp_path):
    done = _kmm("generate", "a person walks forward", "--seconds", "3", "--seed", "0", "-o", "walk.npz",
                "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    motion = MotionResult.load(tmp_path / "walk.npz")
    assert motion.joints.shape == (60, 22, 3) and motion.fps == 20.0
    assert np.isfinite(motion.joints).all()
    # A standing/walking person: the pelvis is between knee and chest height, the head above it.
    pelvis_height = np.median(motion.joints[:, 0, 1])
    assert 0.5 < pelvis_height < 1.3
    assert np.all(np.median(motion.joints[:, 15, 1]) > pelvis_height)


def test_same_seed_same_motion_with_the_shipped_model(tmp_path):
    for name in ("a.npz", "b.npz"):
        done = _kmm("generate", "a person raises the left hand", "--seconds", "2", "--seed", "7", "-o", name,
                    "--quiet", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    first, second = MotionResult.load(tmp_path / "a.npz"), MotionResult.load(tmp_path / "b.npz")
    np.testing.assert_array_equal(first.joints, second.joints)


@pytest.mark.parametrize("side", ["left", "right"])
def test_shipped_model_raises_the_named_hand(side):
    """Directional check on fixed prompts and seeds (geometric, no learned evaluator)."""
    import torch

    from kmm_core.evaluation.directional import directional_accuracy
    from kmm_core.generation.timeline import Timeline
    from kmm_core.generation.timeline_generator import generate_timeline
    from kmm_core.model_bundle import ModelBundle

    torch.set_num_threads(1)
    bundle = ModelBundle.load(default_bundle_path(), device="cpu")
    prompt = f"a person raises the {side} hand"
    motions = [generate_timeline(bundle, Timeline.single(prompt, 4.0), seed=seed)[0].joints for seed in SEEDS]
    report = directional_accuracy([prompt] * len(motions), motions, 20.0)
    assert report.overall_accuracy >= MIN_ACCURACY, report.summary()


SEEDS = (0, 1, 2, 3)
MIN_ACCURACY = 0.75
