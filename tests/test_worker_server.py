# SPDX-License-Identifier: GPL-3.0-or-later
"""The real worker (`python -m kmm_core.worker`) as a subprocess with the tiny trained bundle, through WorkerClient."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from kmm_core.generation.timeline import Timeline
from kmm_core.generation.variation_likeness import alike_variations
from kmm_core.motion.motion_result import MotionResult
from kmm_core.worker.client import WorkerClient, worker_environment
from kmm_core.worker.protocol import MAX_LINE_BYTES, PROTOCOL_VERSION, CheckPrompts, Edit, Generate, Load

TIMELINE = {"fps": 30, "segments": [{"prompt": "a person walks forward", "seconds": 1.0},
                                    {"prompt": "a person waves", "frames": 31}]}
# Ten minutes: each of its decoding steps takes the tiny model about 5 ms (a minute's, about 2.7 ms), so the cancel
# test's bound in steps leaves the worker's reader thread and the OS scheduler tens of milliseconds to deliver it.
LONG_TIMELINE = {"fps": 20, "segments": [{"prompt": "a person walks in a circle", "seconds": 600.0}]}


@pytest.fixture(scope="module")
def worker(tiny_bundle):
    # One torch thread: the tiny model's OpenMP threads would otherwise spin on both cores and delay the worker's
    # reader thread, so a cancel could land several (millisecond) steps late.
    client = WorkerClient(sys.executable, {"OMP_NUM_THREADS": "1"},
                          worker_args=("-m", "kmm_core.worker", "--device", "cpu"))
    try:
        ready = client.handshake(timeout=180)
        assert ready["device"] == "cpu" and ready["protocol_version"] == PROTOCOL_VERSION
        answer = client.wait_for(client.send(Load(checkpoint=str(tiny_bundle), device="cpu")), timeout=180)
        assert answer["type"] == "result", answer
        assert answer["paths"] == [] and answer["info"]["device"] == "cpu"
        yield client
    finally:
        client.shutdown(20)


def _wait(client, request_id, timeout=180):
    events = []
    answer = client.wait_for(request_id, timeout=timeout, on_event=events.append)
    return answer, events


def test_generate_reports_progress_and_writes_results(worker, tmp_path):
    answer, events = _wait(worker, worker.send(Generate(timeline=TIMELINE, output_dir=str(tmp_path), seed=4,
                                                        variations=2, steps=2)))
    assert answer["type"] == "result", answer
    names = [os.path.basename(p) for p in answer["paths"]]  # made by the worker, one stem per request
    assert names[0].startswith("kmm-") and names == [names[0][:-6] + "_0.npz", names[0][:-6] + "_1.npz"]
    progress = [e for e in events if e["type"] == "progress"]
    assert progress and progress[-1]["step"] == progress[-1]["total"]
    assert [e["step"] for e in progress] == sorted(e["step"] for e in progress)
    motions = [MotionResult.load(p) for p in answer["paths"]]
    assert all(m.num_frames == Timeline.from_dict(TIMELINE).total_frames and m.fps == 30 for m in motions)
    assert not np.array_equal(motions[0].joints, motions[1].joints)
    # Which variations came out as one motion, measured on the files it wrote (variation_likeness.py).
    assert answer["info"]["alike"] == [item.to_dict() for item in alike_variations([m.joints for m in motions])]
    # A second request reuses the loaded model: no loading step, same seed -> same motion.
    again, events = _wait(worker, worker.send(Generate(timeline=TIMELINE, output_dir=str(tmp_path), seed=4,
                                                       steps=2)))
    assert again["type"] == "result"
    assert not any("load" in e.get("message", "") for e in events)
    assert np.array_equal(MotionResult.load(again["paths"][0]).joints, motions[0].joints)
    edited, _ = _wait(worker, worker.send(Edit(mode="regenerate", source=answer["paths"][0], segment=1,
                                               prompt="a person jumps", output_dir=str(tmp_path), seed=1, steps=2)))
    assert edited["type"] == "result", edited
    result = MotionResult.load(edited["paths"][0])
    assert np.array_equal(result.joints[:30], motions[0].joints[:30])
    assert result.segment_prompts[1] == "a person jumps"
    # The source was foot-locked (the default), so the regenerated segment is too (edit_cleanup.py).
    assert result.foot_lock and np.array_equal(result.foot_contacts[:30], motions[0].foot_contacts[:30])


def test_the_result_names_the_training_captions_that_completed_a_prompt(worker, tmp_path, tiny_bundle):
    """info.conditions (generation/prompt_conditions.py): a prompt unlike the training captions is generated partly
    from the nearest ones the model performs, named per segment; a training caption keeps its own condition."""
    from kmm_core.bundle.vocabulary import read_vocabulary

    captions = read_vocabulary(tiny_bundle).train_captions
    timeline = {"fps": 20, "segments": [{"prompt": captions[0], "seconds": 1.0},
                                        {"prompt": "somebody ambles slowly across a big room", "seconds": 1.0}]}
    answer, _ = _wait(worker, worker.send(Generate(timeline=timeline, output_dir=str(tmp_path), steps=2)))
    assert answer["type"] == "result", answer
    (entry,) = answer["info"]["conditions"]
    assert entry["segment"] == 1 and entry["prompt"] == "somebody ambles slowly across a big room"
    assert 1 <= len(entry["captions"]) <= 3 and set(entry["captions"]) <= set(captions)
    assert 0.3 <= entry["own_share"] < 1.0


def test_check_prompts_answers_before_generating_what_the_generation_will_say(worker, tmp_path, tiny_bundle):
    """check_prompts (protocol 5): the same warnings and info.conditions, per segment, as a generation of those
    prompts answers with, and no motion file written."""
    from kmm_core.bundle.vocabulary import read_vocabulary

    captions = read_vocabulary(tiny_bundle).train_captions
    prompts = [captions[0], "somebody ambles slowly across a big room", "a person juggles three flaming torches"]
    checked, _ = _wait(worker, worker.send(CheckPrompts(prompts=prompts)))
    assert checked["type"] == "result", checked
    assert checked["paths"] == [] and checked["info"]["prompts"] == 3
    timeline = {"fps": 20, "segments": [{"prompt": prompt, "seconds": 1.0} for prompt in prompts]}
    generated, _ = _wait(worker, worker.send(Generate(timeline=timeline, output_dir=str(tmp_path), steps=2)))
    assert generated["type"] == "result", generated
    assert checked["info"]["conditions"] == generated["info"]["conditions"]
    assert [entry["segment"] for entry in checked["info"]["conditions"]] == [1, 2]
    assert checked["warnings"] == generated["warnings"]
    assert any(warning["segment"] == 2 for warning in checked["warnings"])  # far from every tiny caption
    worker._write('{"type":"check_prompts","id":"bad-prompts","prompts":["a person walks",""]}')
    deadline, errors = time.monotonic() + 30, []
    while not errors and time.monotonic() < deadline:
        errors += [e for e in worker.poll() if e["type"] == "error"]
        time.sleep(0.05)
    assert errors and errors[0]["id"] == "bad-prompts" and errors[0]["kind"] == "bad_request"
    assert "check_prompts.prompts: [1]" in errors[0]["message"], errors


def test_cancel_takes_effect_at_the_next_step_and_the_worker_keeps_serving(worker, tmp_path):
    request_id = worker.send(Generate(timeline=LONG_TIMELINE, output_dir=str(tmp_path), seed=0, steps=200))
    steps = []

    def on_event(event):
        if event["type"] == "progress" and event["step"] > 0:
            steps.append(event["step"])
            if len(steps) == 1:
                worker.cancel(request_id)

    answer = worker.wait_for(request_id, timeout=180, on_event=on_event)
    assert answer["type"] == "error" and answer["kind"] == "cancelled", answer
    # Stopped a few steps after the cancel, not after the 800 of four windows: the worker's reader thread sees the
    # cancel line some milliseconds after it is sent (on a loaded CI machine, with a minute's 2.7 ms steps, once 14
    # steps late), so the bound leaves room for that latency and still fails a cancel that is ignored.
    assert len(steps) <= 12
    assert not list(tmp_path.iterdir())
    after, _ = _wait(worker, worker.send(Generate(timeline=TIMELINE, output_dir=str(tmp_path), steps=1)))
    assert after["type"] == "result"


def test_malformed_and_invalid_requests_get_errors_and_the_worker_keeps_serving(worker, tmp_path):
    worker._write("this is not json")
    worker._write('{"type":"generate","id":"bad-timeline","timeline":{"segments":[{"prompt":"","seconds":1}]},'
                  '"output_dir":"/tmp"}')
    worker._write('{"type":"generate","id":"too-long","timeline":"' + "x" * (MAX_LINE_BYTES + 10) + '"}')
    deadline, errors = time.monotonic() + 30, []
    while len(errors) < 3 and time.monotonic() < deadline:
        errors += [e for e in worker.poll() if e["type"] == "error"]
        time.sleep(0.05)
    by_id = {e["id"]: e for e in errors}
    assert by_id[None]["kind"] == "bad_request" and "not JSON" in by_id[None]["message"]
    assert by_id["bad-timeline"]["kind"] == "bad_request" and "segments[0].prompt" in by_id["bad-timeline"]["message"]
    assert by_id["too-long"]["kind"] == "bad_request"
    missing, _ = _wait(worker, worker.send(Load(checkpoint=str(tmp_path / "no-such-bundle"))))
    assert missing["type"] == "error" and missing["kind"] == "model_missing" and missing["advice"]
    bad_source, _ = _wait(worker, worker.send(Edit(mode="continue", source=str(tmp_path / "none.npz"),
                                                   prompt="walk", seconds=1.0, output_dir=str(tmp_path))))
    assert bad_source["kind"] == "bad_request" and "none.npz" in bad_source["message"]
    still, _ = _wait(worker, worker.send(Generate(timeline=TIMELINE, output_dir=str(tmp_path), steps=1)))
    assert still["type"] == "result"  # the failed load kept the loaded model


def test_shutdown_and_end_of_stdin_exit_cleanly():
    # One torch thread: the tiny model's OpenMP threads would otherwise spin on both cores and delay the worker's
    # reader thread, so a cancel could land several (millisecond) steps late.
    client = WorkerClient(sys.executable, {"OMP_NUM_THREADS": "1"},
                          worker_args=("-m", "kmm_core.worker", "--device", "cpu"))
    assert client.shutdown(30) == 0
    process = subprocess.Popen([sys.executable, "-m", "kmm_core.worker"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=worker_environment())
    process.stdin.close()
    assert process.wait(30) == 0


PARENT_SCRIPT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-m", "kmm_core.worker"], stdin=int(sys.argv[1]), pass_fds=(int(sys.argv[1]),))
print(child.pid, flush=True)
time.sleep(600)
"""


def test_the_worker_exits_when_its_parent_dies_even_if_stdin_stays_open():
    read_end, write_end = os.pipe()  # we keep the write end: the worker never sees end of stdin
    try:
        parent = subprocess.Popen([sys.executable, "-c", PARENT_SCRIPT, str(read_end)], pass_fds=(read_end,),
                                  stdout=subprocess.PIPE, env=worker_environment(), text=True)
        worker_pid = int(parent.stdout.readline())
        time.sleep(1.0)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _alive(worker_pid):
            time.sleep(0.2)
        assert not _alive(worker_pid)
    finally:
        os.close(read_end)
        os.close(write_end)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as gone.
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
