# SPDX-License-Identifier: GPL-3.0-or-later
"""BackendSession (the add-on's connection to the worker; no bpy) against the stand-in worker, a real subprocess
speaking the real protocol: success, progress, cancel, crash, load failure, version mismatch, release, timeout."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from kmm_core.motion.motion_result import MotionResult

STANDIN = Path(__file__).resolve().with_name("standin_worker.py")
TIMELINE = {"fps": 30, "segments": [{"prompt": "walk forward", "seconds": 1.0}, {"prompt": "wave", "seconds": 0.5}]}


@pytest.fixture(scope="module")
def bs(addon_module):
    """kmm_blender.backend.session imported the way Blender imports it: inside the extension package."""
    return addon_module("kmm_blender.backend.session")


def _config(bs, mode: str = "", **env: str):
    extra = {"KMM_STANDIN_MODE": mode, **env} if mode else env
    return bs.BackendConfig(python=sys.executable, device="cpu", worker_args=(str(STANDIN),),
                            extra_env=tuple(sorted(extra.items())))


def _request(bs, tmp_path: Path, prompt: str = "walk forward", **fields):
    """A protocol Generate message (the package's own class, as the add-on builds it)."""
    timeline = {**TIMELINE, "segments": [{**TIMELINE["segments"][0], "prompt": prompt}, TIMELINE["segments"][1]]}
    return bs.Generate(timeline=timeline, output_dir=str(tmp_path), **fields)


def _drive(session, job, timeout: float = 60.0) -> list[tuple[int, int]]:
    """Pump like Blender's timer until the job ends; the (step, total) pairs seen on the way."""
    seen, deadline = [], time.monotonic() + timeout
    while not job.finished:
        session.pump()
        if (job.step, job.total) not in seen:
            seen.append((job.step, job.total))
        assert time.monotonic() < deadline, f"job still {job.state} after {timeout} s"
        time.sleep(0.02)
    return seen


def test_a_job_starts_the_worker_reports_progress_and_ends_with_real_motion_files(bs, tmp_path):
    session = bs.BackendSession(_config(bs))
    try:
        job = session.submit(_request(bs, tmp_path, variations=2, steps=3))
        assert job.state == bs.WAITING and session.state == bs.STARTING  # submit never waits for the worker
        seen = _drive(session, job)
        assert job.state == bs.DONE and job.error == "" and job.fraction == 1.0
        assert seen[-1] == (3, 3)  # the total of 3 steps came with the progress events
        assert session.state == bs.READY and session.status_text() == "Backend ready (cpu)"
        motions = [MotionResult.load(path) for path in job.paths]
        assert len(motions) == 2 and all(m.num_frames == 30 and m.fps == 20 for m in motions)  # 1.5 s at 20 fps
        assert list(motions[0].segment_prompts) == ["walk forward", "wave"]
        # The worker stays up: a second job goes straight to it.
        again = session.submit(_request(bs, tmp_path, steps=1))
        assert again.state == bs.RUNNING
        _drive(session, again)
        assert again.state == bs.DONE
    finally:
        session.release()
    assert session.state == bs.STOPPED and session.client is None


def test_requests_are_protocol_messages_and_one_job_runs_at_a_time(bs, tmp_path):
    session = bs.BackendSession(_config(bs))
    try:
        with pytest.raises(bs.KMMError, match="protocol Generate, Edit or CheckPrompts message, not dict"):
            session.submit({"type": "generate", "timeline": TIMELINE, "output_dir": str(tmp_path)})
        job = session.submit(_request(bs, tmp_path, prompt="slow"))
        with pytest.raises(bs.KMMError, match="already running"):
            session.submit(_request(bs, tmp_path))
        while job.step < 2:
            session.pump()
            time.sleep(0.02)
        session.cancel()
        assert job.state == bs.CANCELLING
        _drive(session, job, timeout=10.0)
        assert job.state == bs.CANCELLED and job.step < job.total and job.paths == []
    finally:
        session.release()


def test_a_crash_fails_the_job_with_the_trace_and_specific_advice_and_the_next_job_restarts(bs, tmp_path):
    session = bs.BackendSession(_config(bs, "crash"))
    try:
        job = session.submit(_request(bs, tmp_path))
        _drive(session, job)
        assert job.state == bs.FAILED and "stopped unexpectedly" in job.error
        assert "out of memory" in bs.last_line(job.trace) and "Device to CPU" in job.advice
        assert session.state == bs.BROKEN
    finally:
        session.release()
    healthy = bs.BackendSession(_config(bs))
    try:
        job = healthy.submit(_request(bs, tmp_path))
        _drive(healthy, job)
        assert job.state == bs.DONE
    finally:
        healthy.release()


@pytest.mark.parametrize(("config_kwargs", "error", "advice"), [
    ({"mode": "fail_load"}, "the model could not be loaded: checkpoint", "train one"),
    ({"STANDIN_PROTOCOL_VERSION": "99"}, "the worker speaks protocol 99", "kmm_core bundled with the add-on"),
])
def test_load_failure_and_version_mismatch_fail_the_job_before_it_runs(bs, tmp_path, config_kwargs, error, advice):
    session = bs.BackendSession(_config(bs, **config_kwargs))
    try:
        job = session.submit(_request(bs, tmp_path))
        _drive(session, job)
        assert job.state == bs.FAILED and job.error.startswith(error) and advice in job.advice
        assert session.state == bs.BROKEN and job.request_id is None  # the request was never sent
    finally:
        session.release()


def test_no_python_fails_at_once_saying_how_to_install_the_backend(bs, tmp_path):
    session = bs.BackendSession(bs.BackendConfig(python=""))
    job = session.submit(_request(bs, tmp_path))
    assert job.state == bs.FAILED and "no backend is installed" in job.error
    assert "Install Backend" in job.advice and "preferences" in job.advice
    assert session.status_text().startswith("Backend failed")


def test_release_cancels_a_running_job_and_a_timeout_fails_it(bs, tmp_path):
    session = bs.BackendSession(_config(bs))
    job = session.submit(_request(bs, tmp_path, prompt="slow"))
    while job.state != bs.RUNNING or job.step < 1:
        session.pump()
        time.sleep(0.02)
    client = session.client
    session.release()
    assert job.state == bs.CANCELLED and "released" in job.error and not client.is_alive()
    job = session.submit(_request(bs, tmp_path, prompt="slow"))
    session.run_to_completion(timeout=1.5)
    assert job.state == bs.FAILED and "no result within 1.5 s" in job.error and session.client is None
