# SPDX-License-Identifier: GPL-3.0-or-later
"""The model shipped inside the package (kmm_core/checkpoints/kmm-small): it loads, the CLI uses it when no
checkpoint is given, and what it generates is a plausible, finite human motion."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kmm_core.bundle.model_bundle import default_bundle_path, read_manifest
from kmm_core.motion.motion_result import MotionResult

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


@pytest.fixture(scope="module")
def shipped_bundle():
    import torch

    from kmm_core.bundle.model_bundle import ModelBundle

    torch.set_num_threads(1)
    return ModelBundle.load(default_bundle_path(), device="cpu")


@pytest.mark.parametrize("prompt", ["a person raises the left hand", "a person raises the right hand",
                                    "a person walks and turns left", "a person walks and turns right"])
def test_shipped_model_moves_the_named_side(shipped_bundle, prompt):
    """Directional check on fixed prompts and seeds (geometric, no learned evaluator)."""
    from kmm_core.evaluation.directional import directional_accuracy
    from kmm_core.generation.timeline import Timeline
    from kmm_core.generation.timeline_generator import generate_timeline

    motions = [generate_timeline(shipped_bundle, Timeline.single(prompt, 4.0), seed=seed)[0].joints
               for seed in SEEDS]
    report = directional_accuracy([prompt] * len(motions), motions, 20.0)
    assert report.overall_accuracy >= MIN_ACCURACY, report.summary()


def test_readme_example_timeline_obeys_each_side_specific_prompt(shipped_bundle):
    """The README's main job (examples/timeline.json): the "raises the left hand" and "turns right" segments, each
    judged on its own frames, do what they say."""
    from kmm_core.evaluation.directional import decide, parse_directional_intent
    from kmm_core.generation.timeline import Timeline
    from kmm_core.generation.timeline_generator import generate_timeline

    timeline = Timeline.from_file(REPO_ROOT / "examples" / "timeline.json")
    decisions = []
    for seed in (0, 1, 2):
        motion = generate_timeline(shipped_bundle, timeline, seed=seed)[0]
        joints = np.asarray(motion.joints, dtype=np.float64)
        for (start, end), prompt in zip(motion.segment_frames, motion.segment_prompts, strict=True):
            intent = parse_directional_intent(prompt)
            if intent is not None:
                decisions.append(decide(prompt, intent, joints[start:end], motion.fps))
    assert len(decisions) == 6
    assert sum(decision.correct for decision in decisions) >= 5, decisions


SEEDS = (0, 1, 2, 3)
MIN_ACCURACY = 0.75
