# SPDX-License-Identifier: GPL-3.0-or-later
"""Fuzz the real worker: a few thousand random and mutated protocol lines (seeded) to one `python -m kmm_core.worker`
process.  Every line whose id can be read gets exactly one terminal event with that id, every other line exactly one
id-less error, every event the worker writes is valid protocol, and the worker still answers hello afterwards.

Lines that are *valid* requests run for real; to keep the test to seconds, the few valid generate/edit requests kept
are short (≤ 1 s, 1-2 steps, into the test's folder) and valid loads stay on the CPU - everything else a mutation
makes valid but expensive is not sent (counted in the assertion message).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter

import numpy as np
import pytest
from raw_worker import RawWorker

from kmm_core.generation.timeline import Timeline
from kmm_core.motion.motion_result import MotionResult
from kmm_core.worker.protocol import REQUEST_TYPES, ProtocolError, decode, readable_id

SEED = 17
LINES = 3000
MAX_MODEL_RUNS = 3
STRANGE_VALUES = [None, True, False, 0, -1, 1, 2**31, 2**64, 1e308, -1e308, 1.5, 1e-320, "", " ", "x" * 300,
                  "a" * 1001, "\ud800", "\u0000", "../x", "/abs/ABS", "cuda:9", "auto", [], [1, 2], [0, 0], {}, {"a": 1},
                  [[[[[]]]]], "NaN", -0.0]
RAW_VALUES = ["NaN", "Infinity", "-Infinity", "1e400", "9" * 400, "-" + "9" * 400, "1" * 5000, '"\\ud800"',
              "[" * 5000 + "]" * 5000]


def _templates(out: str, source: str) -> list[dict]:
    timeline = {"fps": 20, "segments": [{"prompt": "a person walks forward", "seconds": 0.4}]}
    return [
        {"type": "hello", "client_version": "fuzz", "protocol_version": 1},
        {"type": "load", "checkpoint": out + "/no-such-bundle", "device": "cpu"},
        {"type": "generate", "timeline": timeline, "output_dir": out, "seed": 1, "steps": 1},
        {"type": "generate", "timeline": {"lengths": [8, 12], "text": ["walk", "wave"]}, "output_dir": out,
         "steps": 1, "variations": 1},
        {"type": "edit", "mode": "continue", "source": source, "prompt": "a person sits", "seconds": 0.4,
         "output_dir": out, "steps": 1},
        {"type": "edit", "mode": "regenerate", "source": source, "segment": 0, "output_dir": out, "steps": 1},
        {"type": "edit", "mode": "inbetween", "source": source, "target": source, "seconds": 0.4,
         "output_dir": out, "steps": 2},
        {"type": "cancel"},
        {"type": "ready", "protocol_version": 1, "package_version": "x", "device": "cpu", "torch_version": "2",
         "cuda_available": False},
    ]


def _mutate_value(rng: random.Random, message: dict) -> dict:
    message = json.loads(json.dumps(message))
    for _ in range(rng.randint(1, 3)):
        target = message
        if "timeline" in message and isinstance(message["timeline"], dict) and rng.random() < 0.4:
            target = message["timeline"]
            if isinstance(target.get("segments"), list) and target["segments"] and rng.random() < 0.7:
                target = target["segments"][0] if isinstance(target["segments"][0], dict) else target
        keys = list(target) or ["type"]
        action = rng.random()
        key = rng.choice(keys + ["extra", "seconds", "frames", "fps", "start", "end", "id"])
        if action < 0.6:
            target[key] = rng.choice(STRANGE_VALUES)
        elif action < 0.8 and key in target:
            del target[key]
        else:
            target[key] = [target.get(key)] * rng.randint(1, 3)
    return message


def _mutate_bytes(rng: random.Random, line: bytes) -> bytes:
    data = bytearray(line)
    for _ in range(rng.randint(1, 6)):
        choice = rng.random()
        position = rng.randrange(len(data) + 1)
        if choice < 0.35 and data:
            data[min(position, len(data) - 1)] = rng.randrange(256)
        elif choice < 0.55:
            data[position:position] = rng.choice([b"\x00", b"\xff", b'"', b"{", b"}", b"[", b",", b"\\", b"\xc3",
                                                  b"\\u0000", b"\\ud800", b"1e999", b"NaN"])
        elif choice < 0.75:
            del data[position:position + rng.randint(1, 20)]
        else:
            data = data[:position]
    return bytes(data).replace(b"\n", b"").replace(b"\r", b"")


def _raw_substitution(rng: random.Random, message: dict) -> bytes:
    """A message with one value replaced by text json.dumps would never write (NaN, 400 digits, deep nesting)."""
    key = rng.choice(["seed", "steps", "guidance", "variations", "seconds", "segment", "protocol_version"])
    marker = "__RAW__"
    message = dict(message, **{key: marker})
    return json.dumps(message).replace(f'"{marker}"', rng.choice(RAW_VALUES)).encode("utf-8", "surrogatepass")


def _random_line(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.3:
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))).replace(b"\n", b"")
    if kind < 0.6:
        return json.dumps(rng.choice(STRANGE_VALUES)).encode("utf-8", "surrogatepass")
    if kind < 0.8:
        return json.dumps({"type": rng.choice(list(REQUEST_TYPES) + ["nope", 3, None])}).encode()
    return rng.choice(RAW_VALUES).encode()


def _expected_id(line: bytes) -> tuple[bool, str | None]:
    """(answered, id): whether the worker owes this line a terminal event, and the id that event carries."""
    try:
        data = json.loads(line.decode("utf-8"))
        line_id = readable_id(data.get("id")) if isinstance(data, dict) else None
    except (ValueError, RecursionError):
        line_id = None
    try:
        message = decode(line, REQUEST_TYPES)
    except ProtocolError as error:
        return True, error.message_id
    except Exception:  # noqa: BLE001 - the worker must answer these as internal errors
        return True, line_id
    return message["type"] != "cancel", message.get("id")


def _model_cost_ok(message: dict, out: str) -> bool:
    if message["type"] == "load":
        return message["device"] in ("cpu", "auto")
    if message["type"] not in ("generate", "edit") or message["output_dir"] != out:
        return message["type"] not in ("generate", "edit")
    if message["variations"] != 1 or message["steps"] is None or message["steps"] > 2:
        return False
    if message["type"] == "generate":
        return Timeline.from_dict(message["timeline"]).total_seconds <= 1.0
    return message["seconds"] is None or message["seconds"] <= 1.0


def build_lines(out: str, source: str) -> tuple[list[bytes], Counter]:
    rng = random.Random(SEED)
    templates = _templates(out, source)
    lines, skipped, model_runs = [], Counter(), 0
    while len(lines) < LINES:
        number = len(lines)
        message = dict(rng.choice(templates), id=f"fz-{number:05d}")
        style = rng.random()
        if style < 0.35:
            line = json.dumps(_mutate_value(rng, message), ensure_ascii=rng.random() < 0.5).encode(
                "utf-8", "surrogatepass")
        elif style < 0.65:
            line = _mutate_bytes(rng, json.dumps(message).encode())
        elif style < 0.8:
            line = _raw_substitution(rng, message)
        elif style < 0.9:
            line = _random_line(rng)
        else:
            line = json.dumps(message).encode()
        if not line.strip():
            continue
        try:
            valid = decode(line, REQUEST_TYPES)
        except Exception:  # noqa: BLE001 - invalid lines are what we want
            valid = None
        if valid is not None:
            if valid["type"] == "shutdown":
                skipped["shutdown"] += 1
                continue
            if valid["type"] in ("load", "generate", "edit"):
                if not _model_cost_ok(valid, out) or (valid["type"] != "load" and model_runs >= MAX_MODEL_RUNS):
                    skipped["expensive"] += 1
                    continue
                model_runs += valid["type"] != "load"
        lines.append(line)
    return lines, skipped


@pytest.fixture(scope="module")
def source_motion(tmp_path_factory, humanml3d_fixture_dir) -> str:
    joints = np.load(humanml3d_fixture_dir / "new_joints" / "012314.npy")[:24]
    motion = MotionResult.from_joints(joints, 20.0, timeline=Timeline.single("a person walks", 1.2))
    return str(motion.save(tmp_path_factory.mktemp("fuzz-source") / "source.npz"))


def test_fuzzed_lines_each_get_exactly_one_answer_and_the_worker_keeps_serving(tmp_path, source_motion):
    out = str(tmp_path / "out")
    lines, skipped = build_lines(out, source_motion)
    expected_ids, expected_anonymous = Counter(), 0
    for line in lines:
        answered, line_id = _expected_id(line)
        if answered and line_id is None:
            expected_anonymous += 1
        elif answered:
            expected_ids[line_id] += 1
    worker = RawWorker(cwd=tmp_path)
    try:
        preload = worker.wait_terminal(worker.send({"type": "load", "id": "preload", "device": "cpu"}) or "preload")
        assert preload["type"] == "result", preload  # the model loads once, before the clock starts
        worker.received.remove(preload)
        started = time.monotonic()
        # Written from a thread: a worker that stops reading (a dead reader) must fail the test, not hang it.
        writer = threading.Thread(target=lambda: [worker.send_raw(line) for line in lines], daemon=True)
        writer.start()
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            terminal = [e for e in worker.drain() if e["type"] in ("ready", "result", "error")]
            if len(terminal) >= sum(expected_ids.values()) + expected_anonymous:
                break
            assert worker.process.poll() is None, "".join(worker.stderr[-40:])
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        writer.join(timeout=1.0)
        assert not writer.is_alive(), "the worker stopped reading its input:\n" + "".join(worker.stderr[-40:])
        assert worker.hello("after-fuzz")["type"] == "ready"
        time.sleep(0.5)  # anything late (a second answer to some line) would arrive by now
        terminal = [e for e in worker.drain() if e["type"] in ("ready", "result", "error")
                    and e.get("id") != "after-fuzz"]
        got_ids = Counter(e["id"] for e in terminal if e.get("id") is not None)
        got_anonymous = sum(1 for e in terminal if e.get("id") is None)
        assert got_ids == expected_ids, (got_ids - expected_ids, expected_ids - got_ids)
        assert got_anonymous == expected_anonymous
        kinds = Counter(e.get("kind", e["type"]) for e in terminal)
        assert kinds["bad_request"] > LINES // 2 and kinds["ready"] > 0 and kinds["result"] > 0, (kinds, skipped)
        assert kinds["internal"] == 0, [e for e in terminal if e.get("kind") == "internal"][:3]
        print(f"fuzz: {len(lines)} lines in {elapsed:.1f} s, answers {dict(kinds)}, not sent {dict(skipped)}")
        assert worker.close() == 0
    finally:
        if worker.process.poll() is None:
            worker.process.kill()
