# SPDX-License-Identifier: GPL-3.0-or-later
"""The real worker (`python -m kmm_core.worker` subprocesses, raw lines) stays responsive and exits cleanly: `hello`
and `cancel` are answered while a request with thousands of constraints is checked or generated, a client that
closes the worker's stdout (or both pipes) gets a clean exit with the documented code 0, and a cut-off or non-UTF-8
line is answered with its id when the id can be read."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from raw_worker import RawWorker

from kmm_core.bundle.model_bundle import default_bundle_path
from kmm_core.worker.client import worker_environment
from kmm_core.worker.protocol import MAX_LINE_BYTES, PROTOCOL_VERSION, ProtocolError, decode
from tests.motion_test_data import standing_pose

HELLO = b'{"type":"hello","id":"%s","client_version":"test","protocol_version":%d}' % (b"%s", PROTOCOL_VERSION)


def many_constraints_request(request_id: str, out: str, count: int) -> bytes:
    """A valid generate request: a 100 s timeline with `count` key poses (one per frame) and 200 decoding steps."""
    pose = standing_pose()
    timeline = {"fps": 20, "segments": [{"prompt": "a person stands still", "seconds": 100.0}],
                "constraints": [{"type": "pose", "frame": frame, "positions": pose} for frame in range(count)]}
    line = json.dumps({"type": "generate", "id": request_id, "timeline": timeline, "output_dir": out, "seed": 0,
                       "steps": 200}, separators=(",", ":")).encode()
    assert len(line) < MAX_LINE_BYTES
    return line


@pytest.mark.skipif(not default_bundle_path().is_dir(), reason="needs the shipped model")
def test_hello_and_cancel_are_answered_while_1500_key_poses_are_checked_and_generated(tmp_path):
    worker = RawWorker()
    try:
        assert worker.hello("warm")["type"] == "ready"  # torch imported before the heavy request
        worker.send_raw(many_constraints_request("heavy", str(tmp_path), 1500))
        worker.send_raw(HELLO % b"during")
        ready = worker.wait_terminal("during", 120)
        assert ready["type"] == "ready"
        assert worker.terminal("heavy") == []  # answered while the heavy request was still being checked or made
        worker.send({"type": "cancel", "id": "heavy"})
        answer = worker.wait_terminal("heavy", 120)
        assert answer["type"] == "error" and answer["kind"] == "cancelled", answer
        assert not list(tmp_path.glob("*.npz"))
        assert worker.hello("after")["type"] == "ready"
        time.sleep(0.3)
        assert len(worker.terminal("heavy")) == 1  # exactly one answer
        assert worker.close() == 0
    finally:
        if worker.process.poll() is None:
            worker.process.kill()


def test_a_bad_constraint_checked_in_the_job_thread_is_a_bad_request_naming_it(tmp_path):
    worker = RawWorker()
    try:
        timeline = {"fps": 20, "segments": [{"prompt": "a person walks", "seconds": 2.0}],
                    "constraints": [{"type": "effector", "joint": "left_hand", "frame": 3, "position": [0, 1, 0]}]}
        worker.send({"type": "generate", "id": "bad-joint", "timeline": timeline, "output_dir": str(tmp_path)})
        answer = worker.wait_terminal("bad-joint", 120)
        assert answer["type"] == "error" and answer["kind"] == "bad_request", answer
        assert answer["message"].startswith("generate.timeline: constraints[0].joint")
        assert "left_hand" in answer["message"]
        assert worker.close() == 0
    finally:
        if worker.process.poll() is None:
            worker.process.kill()


def _start_worker() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "kmm_core.worker", "--device", "cpu"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=worker_environment())


def _send(process: subprocess.Popen, line: bytes) -> None:
    try:
        process.stdin.write(line + b"\n")
        process.stdin.flush()
    except BrokenPipeError:  # the worker already left: what the test checks is how
        pass


@pytest.mark.parametrize("close_stdin_too", [False, True], ids=["stdout", "stdout-and-stdin"])
def test_a_client_that_closes_the_workers_stdout_gets_a_clean_exit_with_code_0(close_stdin_too):
    process = _start_worker()
    try:
        _send(process, HELLO % b"first")
        assert b'"ready"' in process.stdout.readline()
        process.stdout.close()  # the client stops reading: the next answer meets a closed pipe
        for number in range(3):
            _send(process, HELLO % f"unread-{number}".encode())
        if close_stdin_too:
            process.stdin.close()
        code = process.wait(60)
        stderr = process.stderr.read().decode("utf-8", "replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert code == 0, stderr
    assert "Traceback" not in stderr and "Fatal Python error" not in stderr, stderr


def test_a_cut_off_or_non_utf8_line_is_answered_with_its_readable_id():
    worker = RawWorker()
    try:
        worker.send_raw(b'{"type":"generate","id":"cut-1","timeline":{"fps":20,"segm')
        worker.send_raw(b'{"type":"hello","id":"latin-1","client_version":"caf\xe9"}')
        worker.send_raw(b'{"id":"first-2","type":"hello","client_version":"\xff\xfe"}')
        worker.send_raw(b'{"type":"hello","client_version":"\xff","id":"late-id"}')  # not at the head: unreadable
        for request_id, reason in (("cut-1", "not JSON"), ("latin-1", "not UTF-8"), ("first-2", "not UTF-8")):
            answer = worker.wait_terminal(request_id, 60)
            assert answer["kind"] == "bad_request" and reason in answer["message"], answer
        anonymous = worker.wait_terminal(None, 60)
        assert anonymous["kind"] == "bad_request" and "not UTF-8" in anonymous["message"]
        assert worker.hello()["type"] == "ready"
        assert worker.close() == 0
    finally:
        if worker.process.poll() is None:
            worker.process.kill()


def test_decode_reads_the_id_at_the_head_only_where_the_protocol_puts_it():
    def message_id(line: bytes) -> str | None:
        with pytest.raises(ProtocolError) as caught:
            decode(line)
        return caught.value.message_id

    assert message_id(b'{"type":"edit","id":"e-1","mode":"contin') == "e-1"
    assert message_id(b'{"type":"edit","id":"e-2"') == "e-2"
    assert message_id(b'{"type":"edit","id":"e-3') is None  # the id itself is cut off
    assert message_id(b'{"type":"edit","mode":"x","id":"e-4",') is None
    assert message_id(b'{"type":"edit","id":"' + b"x" * 200 + b'",') is None  # longer than any id
    # The worker's reader leaves the timeline's full check to the job thread; everything else is checked.
    line = b'{"type":"generate","id":"g","timeline":{"segments":[]},"output_dir":"/tmp"}'
    assert decode(line, deep=False)["timeline"] == {"segments": []}
    with pytest.raises(ProtocolError, match="generate.timeline"):
        decode(line)
    with pytest.raises(ProtocolError, match="generate.timeline: must be an object"):
        decode(b'{"type":"generate","id":"g","timeline":[],"output_dir":"/tmp"}', deep=False)
