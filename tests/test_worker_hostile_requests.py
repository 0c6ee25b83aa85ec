# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 31, the worker: requests within every documented limit always get an answer that fits one protocol line;
a cancel of a finished or unknown id is not remembered; a CUDA device the backend lacks is a user error; a worker
killed while saving leaves no temporary file for good.  The real worker (`python -m kmm_core.worker`) with the
shipped model, spoken to in raw lines."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from raw_worker import RawWorker

from kmm_core.common.atomic_write import STALE_TEMPORARY_SECONDS, is_our_temporary_name, remove_stale_temporaries
from kmm_core.common.limits import MAX_PROMPT_CHARS
from kmm_core.worker.protocol import MAX_FULL_WARNINGS, MAX_LINE_BYTES, summarise_warnings

REPO_ROOT = Path(__file__).resolve().parents[1]
SHORT = {"fps": 20, "segments": [{"prompt": "a person walks forward", "seconds": 0.4}]}


@pytest.fixture(scope="module")
def worker():
    raw = RawWorker()
    try:
        assert raw.hello(timeout=180)["type"] == "ready"
        yield raw
    finally:
        if raw.process.poll() is None:
            raw.close()


def _unfamiliar_prompt(rng: random.Random, number: int) -> str:
    """A 1000-character prompt of made-up words (far from every training caption), unique by `number`."""
    words = [f"q{number}x"]
    while sum(len(w) + 1 for w in words) < MAX_PROMPT_CHARS:
        words.append("".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(rng.randint(4, 9))))
    return " ".join(words)[:MAX_PROMPT_CHARS]


def test_900_segments_of_long_unfamiliar_prompts_get_an_answer_that_fits_one_line(worker, tmp_path):
    rng = random.Random(31)
    segments = [{"prompt": _unfamiliar_prompt(rng, n), "seconds": 0.2} for n in range(900)]
    request = {"type": "generate", "id": "many-warnings", "timeline": {"fps": 20, "segments": segments},
               "output_dir": str(tmp_path), "seed": 0, "steps": 1, "foot_lock": False}
    line = json.dumps(request)
    assert len(line.encode()) < MAX_LINE_BYTES  # the request itself is within every limit
    worker.send_raw(line)
    answer = worker.wait_terminal("many-warnings", 600)
    assert answer["type"] == "result", answer  # it was "internal": the answer was several MiB
    warnings = answer["warnings"]
    assert len(warnings) == MAX_FULL_WARNINGS + 1
    assert [w["segment"] for w in warnings[:MAX_FULL_WARNINGS]] == list(range(MAX_FULL_WARNINGS))
    assert all(w["prompt"] == segments[w["segment"]]["prompt"] for w in warnings[:MAX_FULL_WARNINGS])
    summary = warnings[-1]
    assert summary["segment"] is None and summary["prompt"] == "" and summary["suggestions"] == []
    assert summary["message"].startswith(f"{900 - MAX_FULL_WARNINGS} more prompts (segments 20-899) are far")
    # The line the worker wrote was decoded by RawWorker, which refuses a line over the limit.
    assert len(json.dumps(answer, ensure_ascii=False).encode()) < MAX_LINE_BYTES
    assert len(answer["paths"]) == 1 and Path(answer["paths"][0]).is_file()
    # Which training captions completed each far prompt (info.conditions) did not fit beside them: their count did.
    assert answer["info"]["conditions"] == [] and answer["info"]["conditions_left_out"] == 900


def test_summarised_warnings_always_fit():
    warning = {"segment": 0, "prompt": "x" * 1000, "similarity": 0.1, "threshold": 0.5, "message": "m" * 1200,
               "suggestions": ["a person walks"] * 3, "predicted_pass_rate": None}
    many = [{**warning, "segment": n} for n in range(0, 6000, 2)]  # no two adjacent: the longest segment list
    summarised = summarise_warnings(many)
    assert len(summarised) == MAX_FULL_WARNINGS + 1 and len(summarised[-1]["message"]) < 1200
    assert summarise_warnings(many[:3]) == many[:3]
    assert summarise_warnings(many, keep=0)[0]["message"].startswith("3000 more prompts (segments 0, 2, 4, ")


def test_a_cancel_of_an_unknown_or_finished_id_is_not_remembered(worker, tmp_path):
    def generate(request_id: str) -> dict:
        worker.send({"type": "generate", "id": request_id, "timeline": SHORT, "output_dir": str(tmp_path),
                     "seed": 0, "steps": 1})
        return worker.wait_terminal(request_id, 300)

    worker.send({"type": "cancel", "id": "job-1"})  # nothing of that id is queued or running
    first = generate("job-1")
    assert first["type"] == "result", first
    worker.send({"type": "cancel", "id": "job-1"})  # that request has finished
    worker.received.clear()
    second = generate("job-1")
    assert second["type"] == "result", second  # reusing the id runs normally


def test_a_cuda_device_this_backend_lacks_is_a_user_error(worker):
    import torch

    device = "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"
    worker.send({"type": "load", "id": "load-cuda", "checkpoint": None, "device": device})
    answer = worker.wait_terminal("load-cuda", 120)
    assert answer["type"] == "error" and answer["kind"] == "bad_request", answer
    expected = "CUDA is not available in this backend" if device == "cuda" else "CUDA device(s)"
    assert expected in answer["message"] and device in answer["message"] and answer["trace"] == ""
    assert "this is a bug" not in (answer["message"] + answer["advice"]).lower()
    assert "CPU" in answer["advice"] and "Auto" in answer["advice"]
    assert worker.hello("after-cuda")["type"] == "ready"


KILLED_WRITER = """
import os, signal, sys
from kmm_core.common.atomic_write import atomic_open
with atomic_open(sys.argv[1], "wb") as stream:
    stream.write(b"half of a result")
    stream.flush()
    os.kill(os.getpid(), signal.SIGKILL)  # killed while saving
"""


def _killed_while_saving(path: Path) -> Path:
    """Really kill a process in the middle of an atomic write of `path`; the temporary file it leaves."""
    before = set(os.listdir(path.parent))
    completed = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLED_WRITER), str(path)], cwd=REPO_ROOT,
                               capture_output=True, timeout=60)
    assert completed.returncode == -9
    (left,) = set(os.listdir(path.parent)) - before
    assert is_our_temporary_name(left)
    return path.parent / left


def test_a_worker_killed_while_saving_leaves_no_temporary_for_good(worker, tmp_path):
    stale = _killed_while_saving(tmp_path / "kmm-earlier_0.npz")
    old = time.time() - STALE_TEMPORARY_SECONDS - 60
    os.utime(stale, (old, old))
    fresh = _killed_while_saving(tmp_path / "kmm-other_0.npz")  # maybe a write in progress: kept
    not_ours = [tmp_path / ".notes.tmp", tmp_path / ".cache.abcdefgh.tmp.npz.keep", tmp_path / "x.abcdefgh.tmp"]
    for path in not_ours:
        path.write_text("user data")
        os.utime(path, (old, old))
    linked = tmp_path / ".link.abcdefgh.tmp.npz"
    linked.symlink_to(tmp_path / ".notes.tmp")
    os.utime(linked, (old, old), follow_symlinks=False)
    worker.send({"type": "generate", "id": "after-kill", "timeline": SHORT, "output_dir": str(tmp_path), "seed": 0,
                 "steps": 1})
    answer = worker.wait_terminal("after-kill", 300)
    assert answer["type"] == "result", answer
    assert not stale.exists() and fresh.exists()
    assert all(path.exists() for path in not_ours) and linked.is_symlink()
    # Nothing of ours but the results and the fresh temporary remains.
    assert sorted(p.name for p in tmp_path.iterdir() if is_our_temporary_name(p.name)) == sorted([fresh.name,
                                                                                                   linked.name])


def test_remove_stale_temporaries_only_removes_our_old_files(tmp_path):
    stale = _killed_while_saving(tmp_path / "take.bvh")
    assert remove_stale_temporaries(tmp_path) == []  # too young
    assert remove_stale_temporaries(tmp_path, older_than=-1) == [stale]
    (tmp_path / ".folder.abcdefgh.tmp").mkdir()
    assert remove_stale_temporaries(tmp_path, older_than=-1) == [] and (tmp_path / ".folder.abcdefgh.tmp").is_dir()


def test_a_deeply_nested_request_line_is_a_bad_request_naming_its_id():
    from kmm_core.worker.protocol import ProtocolError, decode

    line = '{"type":"generate","id":"deep","output_dir":"/tmp","timeline":' + "[" * 500 + "]" * 500 + "}"
    with pytest.raises(ProtocolError, match="nests lists/objects more than 64 deep") as caught:
        decode(line)
    assert caught.value.message_id == "deep"


@pytest.mark.parametrize(("variable", "value"), [("KMM_SELECTIVE_SCAN", "fast"), ("KMM_SCAN_MARCH", "bogus;x")])
def test_a_wrong_scan_environment_is_the_environments_fault_in_the_worker_and_in_doctor(variable, value, tmp_path):
    """`kmm doctor` warned about KMM_SELECTIVE_SCAN=fast (or a bad KMM_SCAN_MARCH), then said "everything needed is
    in place" and exited 0, while `kmm generate` and the worker refused the same environment; the worker advised
    "Fix the request's values" with a full traceback.  Now doctor fails naming the variable, and the worker's error
    is the backend's (`backend`), advising to fix the environment, with no traceback."""
    import os
    import subprocess
    import sys

    env = {**os.environ, variable: value, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    if variable == "KMM_SCAN_MARCH":
        env["KMM_SELECTIVE_SCAN"] = "compiled"  # the C++ loop is the one built for an instruction set
        env["KMM_CACHE_DIR"] = str(tmp_path)
    doctor = subprocess.run([sys.executable, "-m", "kmm_core.cli", "doctor"], capture_output=True, text=True,
                            env=env, timeout=300)
    assert doctor.returncode != 0, doctor.stdout
    assert f"[FAIL] cpu_scan: {variable}=" in doctor.stdout and "everything needed is in place" not in doctor.stdout
    generate = subprocess.run([sys.executable, "-m", "kmm_core.cli", "generate", "a person walks forward",
                               "--seconds", "1", "-o", str(tmp_path / "take.npz"), "--quiet"], capture_output=True,
                              text=True, env=env, timeout=300)
    assert generate.returncode != 0 and f"{variable}=" in generate.stderr
    raw = RawWorker(env={variable: value, **({"KMM_SELECTIVE_SCAN": "compiled", "KMM_CACHE_DIR": str(tmp_path)}
                                           if variable == "KMM_SCAN_MARCH" else {})})
    try:
        assert raw.hello(timeout=180)["type"] == "ready"
        raw.send({"type": "generate", "id": "env", "timeline": SHORT, "output_dir": str(tmp_path), "seed": 0,
                  "steps": 1, "foot_lock": False})
        answer = raw.wait_terminal("env", 300)
    finally:
        raw.close()
    assert answer["type"] == "error" and answer["kind"] == "backend", answer
    assert f"{variable}=" in answer["message"] and "environment" in answer["advice"]
    assert "request's values" not in answer["advice"] and answer["trace"] == ""
