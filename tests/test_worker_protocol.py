# SPDX-License-Identifier: GPL-3.0-or-later
"""The worker protocol (encode/decode/validation) and WorkerClient against a real subprocess: tests/standin_worker.py,
which speaks the protocol through kmm_core.worker.protocol without a model (the torch server comes separately)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import kmm_core
from kmm_core.common.errors import KMMError
from kmm_core.generation.timeline import Timeline
from kmm_core.motion.motion_result import MotionResult
from kmm_core.worker.client import (
    PACKAGE_PARENT,
    WorkerClient,
    WorkerError,
    WorkerTimeout,
    exit_advice,
    worker_environment,
)
from kmm_core.worker.protocol import (
    EVENT_TYPES,
    MAX_LINE_BYTES,
    PROTOCOL_VERSION,
    REQUEST_TYPES,
    Cancel,
    CheckPrompts,
    Edit,
    Error,
    Generate,
    Hello,
    Load,
    Log,
    Progress,
    ProtocolError,
    Ready,
    Result,
    Shutdown,
    clip_text,
    decode,
    encode,
)

STANDIN_WORKER = Path(__file__).with_name("standin_worker.py")
TIMELINE = {"fps": 30, "segments": [{"prompt": "a person walks forward", "seconds": 2.0},
                                    {"prompt": "waves with the right hand", "frames": 45}]}


# ---- protocol -------------------------------------------------------------------------------------------------------
def test_every_message_round_trips_through_one_line():
    messages = [
        Hello(client_version="0.1.0", id="h1"),
        Load(checkpoint=None, device="cuda:1", id="l1"),
        Generate(timeline=TIMELINE, output_dir="/tmp/out", seed=7, variations=3, guidance=4.0, steps=10, id="g1"),
        Edit(mode="regenerate", source="/tmp/a.npz", output_dir="/tmp", segment=1, prompt="jumps", id="e1"),
        Edit(mode="continue", source="/tmp/a.npz", output_dir="/tmp", prompt="sits down", seconds=2.5, id="e2"),
        Edit(mode="inbetween", source="/tmp/a.npz", target="/tmp/b.npz", output_dir="/tmp", seconds=1.0, id="e3"),
        CheckPrompts(prompts=["a person walks forward", "someone ambles along"], id="c1"),
        Cancel(id="g1"),
        Shutdown(),
        Ready(protocol_version=1, package_version="0.1.0", device="cpu", torch_version="2.13.0",
              cuda_available=False, id="h1"),
        Progress(id="g1", step=3, total=10, message="decoding — ünïcode"),
        Result(id="g1", paths=["/tmp/out/g1_0.npz"], info={"seconds": 3.5}),
        Error(kind="out_of_memory", message="CUDA out of memory", id="g1", advice="fewer variations",
              trace="line 1\nline 2"),
        Log(level="info", message="loaded"),
    ]
    for message in messages:
        line = encode(message)
        assert "\n" not in line
        decoded = decode(line + "\n")
        assert decoded == {"type": type(message).TYPE, **{k: v for k, v in vars(message).items()}}
        assert list(decoded)[0] == "type"
        if "id" in decoded:
            assert list(decoded)[1] == "id"  # the client reads the id of an oversized answer from the line's head
    assert set(REQUEST_TYPES) == {"hello", "load", "generate", "edit", "check_prompts", "cancel", "shutdown"}
    assert set(EVENT_TYPES) == {"ready", "progress", "result", "error", "log"}


def test_decode_fills_defaults():
    message = decode('{"type":"generate","id":"g","timeline":{"lengths":[40],"text":["walk"]},"output_dir":"o"}')
    assert (message["seed"], message["variations"], message["guidance"], message["steps"]) == (None, 1, None, None)
    assert decode('{"type":"load","id":"l"}')["device"] == "auto"


@pytest.mark.parametrize("line, field, words", [
    ('{"type":"generate","id":"g","timeline":{"segments":[{"prompt":"","seconds":2}]},"output_dir":"o"}',
     "timeline", "segments[0].prompt: the prompt is empty"),
    ('{"type":"generate","id":"g","timeline":{},"output_dir":"o","variations":0}', "timeline", "segments"),
    ('{"type":"generate","id":"g","timeline":{"lengths":[40],"text":["a"]},"output_dir":"o","variations":0}',
     "variations", "between 1 and 64"),
    ('{"type":"generate","id":"g","timeline":{"lengths":[40],"text":["a"]},"output_dir":"o","seed":-1}',
     "seed", "between"),
    ('{"type":"generate","id":"g","timeline":{"lengths":[40],"text":["a"]},"output_dir":"o","steps":2.5}',
     "steps", "integer"),
    ('{"type":"generate","id":"g","timeline":{"lengths":[40],"text":["a"]}}', "output_dir", "missing"),
    ('{"type":"generate","id":"g","timeline":{"lengths":[40],"text":["a"]},"output_dir":"o","temperature":1}',
     "temperature", "unknown field"),
    ('{"type":"load","id":"l","device":"gpu"}', "device", "'auto', 'cpu', 'cuda'"),
    ('{"type":"load","id":""}', "id", "empty"),
    ('{"type":"load","id":7}', "id", "string"),
    ('{"type":"teleport","id":"t"}', "type", "unknown message type"),
    ('{"type":"check_prompts","id":"c","prompts":[]}', "prompts", "1 to 1000 prompts"),
    ('{"type":"check_prompts","id":"c","prompts":"walk"}', "prompts", "list of prompts"),
    ('{"type":"check_prompts","id":"c","prompts":["walk",7]}', "prompts", "[1] must be a string"),
    ('{"id":"t"}', "type", "unknown message type"),
    ('{"type":"edit","id":"e","mode":"regenerate","source":"a.npz","output_dir":"o"}', "segment", "exactly one"),
    ('{"type":"edit","id":"e","mode":"regenerate","source":"a.npz","output_dir":"o","segment":0,'
     '"frame_range":[0,10]}', "segment", "exactly one"),
    ('{"type":"edit","id":"e","mode":"regenerate","source":"a.npz","output_dir":"o","frame_range":[10,5]}',
     "frame_range", "start < end"),
    ('{"type":"edit","id":"e","mode":"continue","source":"a.npz","output_dir":"o","prompt":"run"}', "seconds",
     "needs 'seconds'"),
    ('{"type":"edit","id":"e","mode":"continue","source":"a.npz","output_dir":"o","seconds":2}', "prompt",
     "needs a 'prompt'"),
    ('{"type":"edit","id":"e","mode":"inbetween","source":"a.npz","output_dir":"o","seconds":2}', "target",
     "needs a 'target'"),
    ('{"type":"edit","id":"e","mode":"inbetween","source":"a.npz","target":"b.npz","output_dir":"o","seconds":2,'
     '"segment":1}', "segment", "not used by inbetween"),
    ('{"type":"edit","id":"e","mode":"undo","source":"a.npz","output_dir":"o"}', "mode", "must be one of"),
    ('{"type":"progress","id":"g","step":11,"total":10}', "step", "beyond total"),
    ('{"type":"error","id":null,"kind":"segfault","message":"x"}', "kind", "must be one of"),
    ('{"type":"ready","id":"h","protocol_version":1,"package_version":"0.1","device":"cpu","torch_version":"2",'
     '"cuda_available":"no"}', "cuda_available", "true or false"),
])
def test_invalid_messages_name_type_and_field(line, field, words):
    with pytest.raises(ProtocolError) as caught:
        decode(line)
    assert caught.value.field == field
    assert words in caught.value.reason
    assert isinstance(caught.value, KMMError)
    message = json.loads(line)
    if isinstance(message.get("id"), str) and message["id"]:
        assert caught.value.message_id == message["id"]  # so the worker can answer that request


@pytest.mark.parametrize("line, words", [
    ("not json", "not JSON"),
    ('{"type": "log", "level": "info", "message": NaN}', "NaN is not valid JSON"),
    ("[1, 2]", "must hold a JSON object"),
    (b'{"type":"log","level":"info","message":"\xff"}', "not UTF-8"),
])
def test_lines_that_are_not_messages(line, words):
    with pytest.raises(ProtocolError, match=words):
        decode(line)


def test_line_size_limit_on_both_sides():
    big = "x" * MAX_LINE_BYTES
    with pytest.raises(ProtocolError, match="limit is 1048576"):
        encode(Result(id="g", paths=[big]))
    with pytest.raises(ProtocolError, match="limit is 1048576"):
        decode('{"type":"result","id":"g","paths":["' + big + '"]}')
    with pytest.raises(ProtocolError, match="limit is 65536"):
        encode(Error(kind="internal", message="x", trace="t" * 70000))
    clipped = clip_text("t" * 70000 + "END")
    assert len(clipped) == 65536 and clipped.endswith("END") and clipped.startswith("[...]")
    encode(Error(kind="internal", message="x", trace=clipped))


def test_direction_filter_and_encode_checks():
    with pytest.raises(ProtocolError, match="not expected here"):
        decode(encode(Progress(id="g", step=1, total=2)), REQUEST_TYPES)
    with pytest.raises(ProtocolError, match="id: must not be empty"):
        encode(Generate(timeline=TIMELINE, output_dir="o"))  # ids are chosen by the client before sending
    with pytest.raises(ProtocolError, match="cannot be written as JSON"):
        encode(Result(id="g", info={"value": float("nan")}))
    with pytest.raises(ProtocolError, match="not a protocol message"):
        encode(Timeline.from_dict(TIMELINE).segments[0])


# ---- client against the stand-in worker ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def standin_env(humanml3d_fixture_dir) -> dict[str, str]:
    return {"STANDIN_JOINTS": str(humanml3d_fixture_dir / "new_joints" / "012314.npy")}


def start_standin(standin_env, **extra) -> WorkerClient:
    return WorkerClient(sys.executable, extra_env={**standin_env, **extra}, worker_args=[str(STANDIN_WORKER)])


@pytest.fixture(scope="module")
def worker(standin_env):
    client = start_standin(standin_env)
    client.handshake(timeout=30)
    yield client
    assert client.shutdown(timeout=10) == 0


def test_handshake_reports_the_worker(worker):
    assert worker.is_alive()
    assert worker.info["protocol_version"] == PROTOCOL_VERSION
    assert worker.info["package_version"] == kmm_core.__version__
    assert worker.info["device"] == "cpu" and worker.info["cuda_available"] is False
    assert worker.info["python_version"] == sys.version.split()[0]


def test_generate_writes_loadable_results_with_progress(worker, tmp_path):
    request_id = worker.send(Generate(timeline=TIMELINE, output_dir=str(tmp_path), variations=2, steps=5))
    assert request_id.startswith("generate-")
    seen = []
    answer = worker.wait_for(request_id, timeout=60, on_event=seen.append)
    assert answer["type"] == "result", answer
    assert [(e["type"], e["step"], e["total"]) for e in seen] == [("progress", s, 5) for s in range(1, 6)]
    timeline = Timeline.from_dict(TIMELINE)
    assert answer["info"]["frames"] == sum(timeline.to_model_frames()) == 70
    first, second = (MotionResult.load(path) for path in answer["paths"])
    assert first.num_frames == 70 and first.fps == 20.0
    assert [tuple(r) for r in first.segment_frames.tolist()] == timeline.segment_ranges(20)
    assert first.segment_prompts == timeline.prompts
    np.testing.assert_allclose(second.joints[..., 0] - first.joints[..., 0], 1.0, atol=1e-5)
    assert worker.pending() == []


def test_poll_never_blocks_and_delivers_in_order(worker, tmp_path):
    started = time.monotonic()
    assert worker.poll() == []
    assert time.monotonic() - started < 0.5
    request_id = worker.send({"type": "generate", "timeline": TIMELINE, "output_dir": str(tmp_path), "steps": 3})
    events = []
    deadline = time.monotonic() + 30
    while not any(e["type"] == "result" for e in events) and time.monotonic() < deadline:
        events.extend(worker.poll())
        time.sleep(0.01)
    assert [e["type"] for e in events] == ["progress"] * 3 + ["result"]
    assert all(e["id"] == request_id for e in events)


def test_wait_for_keeps_other_requests_events_for_poll(worker, tmp_path):
    first = worker.send(Generate(timeline=TIMELINE, output_dir=str(tmp_path), steps=2))
    second = worker.send(Load(checkpoint=None))
    assert worker.wait_for(second, timeout=30)["info"] == {"checkpoint": None, "device": "cpu"}
    # The generate finished first (the stand-in worker runs requests in order); its events wait for poll().
    assert worker.wait_for(first, timeout=30)["type"] == "result"
    assert worker.poll() == []
    with pytest.raises(WorkerError, match="no request with id 'nothing'"):
        worker.wait_for("nothing", timeout=1)


def test_error_events_carry_kind_and_advice(worker, tmp_path):
    missing = worker.wait_for(worker.send(Load(checkpoint=str(tmp_path / "absent.safetensors"))), timeout=30)
    assert (missing["type"], missing["kind"]) == ("error", "model_missing") and "absent" in missing["message"]
    oom = worker.wait_for(worker.send(Generate(timeline={"lengths": [40], "text": ["oom"]}, output_dir=str(tmp_path))),
                          timeout=30)
    assert oom["kind"] == "out_of_memory" and oom["advice"]
    edit = worker.wait_for(worker.send(Edit(mode="continue", source="a.npz", output_dir=str(tmp_path),
                                            prompt="run", seconds=2.0)), timeout=30)
    assert edit["kind"] == "bad_request"


def test_invalid_requests_fail_before_sending(worker):
    with pytest.raises(ProtocolError, match="timeline"):
        worker.send({"type": "generate", "timeline": {"segments": []}, "output_dir": "o"})
    with pytest.raises(ProtocolError, match="still running"):
        worker.send(Generate(timeline={"lengths": [40], "text": ["slow"]}, output_dir="o", id="dup"))
        worker.send(Generate(timeline={"lengths": [40], "text": ["slow"]}, output_dir="o", id="dup"))
    worker.cancel("dup")
    assert worker.wait_for("dup", timeout=30)["kind"] == "cancelled"


def test_stray_stdout_lines_become_warnings(worker, tmp_path):
    request_id = worker.send(Generate(timeline={"lengths": [40], "text": ["junk"]}, output_dir=str(tmp_path), steps=1))
    answer = worker.wait_for(request_id, timeout=30)
    logs = [e for e in worker.poll() if e["type"] == "log"]
    assert answer["type"] == "result"
    assert len(logs) == 1 and logs[0]["level"] == "warning" and "this line is not JSON" in logs[0]["message"]


def test_oversized_answer_fails_its_request(worker, tmp_path):
    request_id = worker.send(Generate(timeline={"lengths": [40], "text": ["huge"]}, output_dir=str(tmp_path)))
    answer = worker.wait_for(request_id, timeout=30)
    assert answer["type"] == "error" and "longer than 1048576 bytes" in answer["message"]
    assert worker.is_alive()  # and the stream is still in step:
    assert worker.wait_for(worker.send(Load()), timeout=30)["type"] == "result"


def test_cancel_stops_a_running_request(worker, tmp_path):
    request_id = worker.send(Generate(timeline={"lengths": [40], "text": ["slow"]}, output_dir=str(tmp_path)))
    deadline = time.monotonic() + 30
    events = []
    while not events and time.monotonic() < deadline:
        events = worker.poll()
        time.sleep(0.01)
    assert events and events[0]["type"] == "progress"
    started = time.monotonic()
    worker.cancel(request_id)
    answer = worker.wait_for(request_id, timeout=30)
    assert answer["kind"] == "cancelled" and time.monotonic() - started < 5.0  # the slow job alone runs 5 s+
    worker.poll()


def test_wait_for_times_out_with_the_stderr_tail(worker, tmp_path):
    request_id = worker.send(Generate(timeline={"lengths": [40], "text": ["slow"]}, output_dir=str(tmp_path)))
    with pytest.raises(WorkerTimeout, match="within 0.2 s"):
        worker.wait_for(request_id, timeout=0.2)
    worker.cancel(request_id)
    assert worker.wait_for(request_id, timeout=30)["kind"] == "cancelled"
    worker.poll()


def test_a_crash_becomes_an_error_with_the_stderr_tail(standin_env, tmp_path):
    client = start_standin(standin_env)
    client.handshake(timeout=30)
    request_id = client.send(Generate(timeline={"lengths": [40], "text": ["crash"]}, output_dir=str(tmp_path)))
    answer = client.wait_for(request_id, timeout=30)
    assert (answer["type"], answer["kind"], answer["id"]) == ("error", "internal", request_id)
    assert "exit code 3" in answer["message"]
    assert "the stand-in worker crashed on purpose" in answer["trace"]
    assert not client.is_alive() and client.returncode == 3
    with pytest.raises(WorkerError, match="not running"):
        client.send(Load())
    assert client.shutdown(timeout=1) == 3


def test_a_worker_that_dies_at_import_is_reported(tmp_path):
    client = WorkerClient(sys.executable, worker_args=["-c", "import kmm_no_such_module_for_tests"])
    with pytest.raises(WorkerError) as caught:
        client.handshake(timeout=30)
    assert "No module named 'kmm_no_such_module_for_tests'" in caught.value.stderr_tail
    assert "A module is missing" in str(caught.value)
    # Idle death is reported too: the worker above died while the handshake waited; one that dies with nothing
    # pending leaves an error event for poll().
    idle = WorkerClient(sys.executable, worker_args=["-c", "import sys; sys.stderr.write('bye\\n'); sys.exit(5)"])
    deadline = time.monotonic() + 30
    events = []
    while not events and time.monotonic() < deadline:
        events = idle.poll()
        time.sleep(0.01)
    assert [(e["type"], e["id"], e["kind"]) for e in events] == [("error", None, "internal")]
    assert "exit code 5" in events[0]["message"] and events[0]["trace"] == "bye"


def test_protocol_version_mismatch_is_refused(standin_env):
    client = start_standin(standin_env, STANDIN_PROTOCOL_VERSION=str(PROTOCOL_VERSION + 1))
    with pytest.raises(WorkerError, match=f"protocol version {PROTOCOL_VERSION + 1}"):
        client.handshake(timeout=30)
    assert client.shutdown(timeout=10) == 0


def test_a_missing_python_is_reported():
    with pytest.raises(WorkerError, match="cannot start the worker"):
        WorkerClient("/nonexistent/bin/python3")


def test_shutdown_kills_a_hung_worker_and_cancels_its_requests(standin_env, tmp_path):
    client = start_standin(standin_env, STANDIN_IGNORE_SHUTDOWN="1")
    client.handshake(timeout=30)
    request_id = client.send(Generate(timeline={"lengths": [40], "text": ["slow"]}, output_dir=str(tmp_path)))
    started = time.monotonic()
    returncode = client.shutdown(timeout=0.5)
    assert time.monotonic() - started < 5.0
    assert returncode != 0 and not client.is_alive()
    errors = [e for e in client.poll() if e["type"] == "error"]
    assert [(e["id"], e["kind"]) for e in errors] == [(request_id, "cancelled")]


def test_graceful_shutdown_cancels_running_work(standin_env, tmp_path):
    client = start_standin(standin_env)
    client.handshake(timeout=30)
    request_id = client.send(Generate(timeline={"lengths": [40], "text": ["slow"]}, output_dir=str(tmp_path)))
    assert client.shutdown(timeout=10) == 0
    errors = [e for e in client.poll() if e["type"] == "error"]
    assert [(e["id"], e["kind"]) for e in errors] == [(request_id, "cancelled")]


def test_worker_environment_puts_this_package_first():
    env = worker_environment({"EXTRA": "1", "PYTHONPATH": "/opt/extra"},
                             base={"PYTHONHOME": "/blender/python", "PATH": "/bin", "PYTHONPATH": "/ignored"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(PACKAGE_PARENT), "/opt/extra"]
    assert "PYTHONHOME" not in env and env["EXTRA"] == "1" and env["PATH"] == "/bin"
    assert (PACKAGE_PARENT / "kmm_core" / "__init__.py").is_file()
    # And a plain interpreter given that environment imports this very copy of kmm_core.
    found = subprocess.run([sys.executable, "-c", "import kmm_core; print(kmm_core.__file__)"], env=env, cwd="/",
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(found) == PACKAGE_PARENT / "kmm_core" / "__init__.py"


@pytest.mark.parametrize("returncode, tail, words", [
    (1, "ModuleNotFoundError: No module named 'torch'", "PyTorch is not installed"),
    (1, "ModuleNotFoundError: No module named 'safetensors'", "A module is missing"),
    (-9, "", "ran out of memory"),
    (-11, "", "signal 11"),
    (1, "ValueError: boom", "report it"),
])
def test_exit_advice(returncode, tail, words):
    assert words in exit_advice(returncode, tail)


def test_add_on_side_modules_import_without_torch():
    code = ("import sys; import kmm_core.worker.client, kmm_core.worker.protocol, kmm_core.generation.timeline, "
            "kmm_core.motion.motion_result; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], env=worker_environment(), capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_the_documented_examples_are_valid_messages():
    text = (Path(__file__).resolve().parents[1] / "docs" / "worker_protocol.md").read_text(encoding="utf-8")
    examples = text.split("## Examples", 1)[1].split("```json", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(examples) >= 15
    decoded = [decode(line) for line in examples]
    assert {message["type"] for message in decoded} == set(REQUEST_TYPES) | set(EVENT_TYPES)
    assert {message["mode"] for message in decoded if message["type"] == "edit"} == {"regenerate", "continue",
                                                                                       "inbetween"}
