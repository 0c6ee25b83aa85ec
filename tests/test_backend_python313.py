# SPDX-License-Identifier: GPL-3.0-or-later
"""The backend on Python 3.13, the Python of Blender 5.1 and later, whose add-on makes its backend environment with
Blender's own Python: the environment .ci/run makes at .venv-backend313 (Python 3.13, `pip install -e .`: PyPI's
torch 2.13.0, numpy 2, numba, MiniLM), or the Python named by KMM_BACKEND_PYTHON313.  It is driven as the add-on
drives its backend: `kmm doctor`, then the real worker over the protocol, loading the shipped model and generating
the README's timeline, whose result file (written by numpy 2) this Python reads and compares with the same
generation here (Python 3.11, numpy 1.x): the same motion."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from conftest import BACKEND_PYTHON313, REPO_ROOT

from kmm_core.bundle.model_bundle import ModelBundle, default_bundle_path
from kmm_core.generation.timeline import Timeline
from kmm_core.generation.timeline_generator import generate_timeline
from kmm_core.motion.motion_result import MotionResult
from kmm_core.worker.client import WorkerClient, worker_environment
from kmm_core.worker.protocol import Generate, Load

PYTHON = BACKEND_PYTHON313
README_TIMELINE = REPO_ROOT / "examples" / "timeline.json"
SAME_MOTION = 1e-4  # metres: the two Pythons' generations of one timeline and seed (measured: equal to 1e-6)

pytestmark = pytest.mark.skipif(not PYTHON.is_file(), reason=f"no Python 3.13 backend at {PYTHON} (.ci/run makes "
                                "it; or set KMM_BACKEND_PYTHON313 to a Python 3.13 with this project installed)")


def test_doctor_finds_every_part_on_python_313():
    completed = subprocess.run([str(PYTHON), "-m", "kmm_core.cli", "doctor"], capture_output=True, text=True,
                               timeout=600, check=False, env=worker_environment(), cwd=REPO_ROOT)
    report = completed.stdout + completed.stderr
    assert completed.returncode == 0, report
    assert "Python 3.13" in report and "everything needed is in place" in report, report


def test_the_worker_on_python_313_generates_the_motion_this_python_generates(tmp_path):
    client = WorkerClient(PYTHON, worker_args=("-m", "kmm_core.worker", "--device", "cpu"))
    try:
        ready = client.handshake(timeout=300)
        assert ready["python_version"].startswith("3.13") and ready["device"] == "cpu", ready
        loaded = client.wait_for(client.send(Load(checkpoint=None, device="cpu")), timeout=300)
        assert loaded["type"] == "result", loaded
        timeline = json.loads(README_TIMELINE.read_text())
        answer = client.wait_for(client.send(Generate(timeline=timeline, output_dir=str(tmp_path), seed=0)),
                                 timeout=600)
        assert answer["type"] == "result", answer
    finally:
        client.shutdown(20)
    there = MotionResult.load(answer["paths"][0])
    here = generate_timeline(ModelBundle.load(default_bundle_path(), device="cpu"), Timeline.from_dict(timeline),
                             seed=0)[0]
    assert there.num_frames == here.num_frames == Timeline.from_dict(timeline).total_frames
    assert there.segment_prompts == here.segment_prompts
    assert np.abs(np.asarray(there.joints) - np.asarray(here.joints)).max() < SAME_MOTION
    assert np.array_equal(there.foot_contacts, here.foot_contacts)
