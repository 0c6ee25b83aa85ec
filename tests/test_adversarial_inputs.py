# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 31: seeded fuzzing of every hand-editable input - timeline JSON, bone-map JSON, BVH text, bundle configs.

Each case starts from a real, valid input (the shipped bundle's configs, a shipped bone-map preset, a BVH written by
our own writer, a timeline with a path) and mutates it with fixed seeds (values of every type and magnitude,
deleted/added keys, deep nesting, byte and token damage, truncation).  Every case must either load or raise a
KMMError subclass - never another exception type, never a hang (each case has a time limit), never NaN or
infinity in what loads.  200 cases per input kind, well under 40 s on 2 CPU cores."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import random
import signal
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

from kmm_core.bundle.model_bundle import default_bundle_path, read_component_configs
from kmm_core.bvh.reader import parse_bvh, read_bvh
from kmm_core.bvh.writer import write_bvh
from kmm_core.common.errors import KMMError, short_repr
from kmm_core.generation.timeline import Timeline
from kmm_core.model.configs import AlignerConfig, DecodingConfig, GeneratorConfig, TokenizerConfig
from kmm_core.motion.skeleton import JOINT_NAMES, NUM_JOINTS, tpose_offsets
from kmm_core.retarget.bone_map import bone_map_from_dict, load_bone_map
from kmm_core.retarget.bone_map import preset as preset_named
from tests.motion_test_data import small_turns

CASES = 200
CASE_SECONDS = 5  # one case running longer is a hang

# Values of every type and magnitude a hand-edited or hostile file can hold.
HOSTILE_VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 2**31, -(2**63), 10**400, 1e308, -1e308, 5e-324, -0.0, 0.5, 1e-300,
    float("nan"), float("inf"), "", "x", "nan", "1e999", "../../etc/passwd", "\u0000", "\ud800", "a" * 5000,
    [], [1, 2], [[0, 0], [1e308, 0]], {}, {"a": 1}, [[[[[[[]]]]]]],
]


@contextmanager
def _time_limit(seconds: int):
    def _timeout(signum, frame):
        raise TimeoutError(f"a case ran longer than {seconds} s (a hang)")

    previous = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


BENIGN_VALUES: list[Any] = [0.5, 1, 2, 2.5, 20, 24, 30, 60, "a person runs", "mixamorig:Spine", None,
                            [[0, 0], [1, 1]], False, True]


def _mutate_json(data: Any, rng: random.Random) -> Any:
    """One to four random structural mutations of a JSON value (a deep copy); a quarter of the cases change one
    value to a plausible one only (so that loading is exercised as well as refusing)."""
    data = copy.deepcopy(data)
    if rng.random() < 0.25:
        containers = [c for c in _containers(data) if c]
        parent = rng.choice(containers)
        key = rng.choice(list(parent.keys()) if isinstance(parent, dict) else list(range(len(parent))))
        parent[key] = copy.deepcopy(rng.choice(BENIGN_VALUES))
        return data
    deep: list = []
    for _ in range(rng.randint(1, 4)):
        containers = _containers(data)
        kind = rng.random()
        if not containers or kind < 0.05:
            data = rng.choice([[data], {"wrapped": data}, rng.choice(HOSTILE_VALUES)])
            continue
        parent = rng.choice(containers)
        keys = list(parent.keys()) if isinstance(parent, dict) else list(range(len(parent)))
        if kind < 0.55 and keys:  # replace a value
            parent[rng.choice(keys)] = copy.deepcopy(rng.choice(HOSTILE_VALUES))
        elif kind < 0.65 and keys:  # delete one
            del parent[rng.choice(keys)]
        elif kind < 0.75:  # add one
            if isinstance(parent, dict):
                parent[rng.choice(["extra", "fps", "seconds", "points", "d_model", "bones", "path"])] = \
                    copy.deepcopy(rng.choice(HOSTILE_VALUES))
            else:
                parent.append(copy.deepcopy(rng.choice(keys and [parent[k] for k in keys] or HOSTILE_VALUES)))
        elif kind < 0.85 and keys:  # nest a value deeply (last: copying a deep value would recurse)
            deep.append((parent, rng.choice(keys), rng.choice([2, 70, 900, 3000])))
        elif keys:  # scale a number by a huge or tiny factor
            key = rng.choice(keys)
            if isinstance(parent[key], int | float) and not isinstance(parent[key], bool):
                try:
                    parent[key] = parent[key] * rng.choice([-1, 0, 1e6, 1e300, 1e-300, 10**30])
                except OverflowError:
                    parent[key] = 10**400
    for parent, key, depth in deep:
        try:
            value = parent[key]
        except (KeyError, IndexError):  # deleted by a later mutation
            continue
        for _ in range(depth):
            value = [value]
        parent[key] = value
    return data


def _containers(data: Any) -> list:
    found, stack = [], [data]
    while stack:
        value = stack.pop()
        if isinstance(value, dict | list):
            found.append(value)
            stack.extend(value.values() if isinstance(value, dict) else value)
    return found


def _text(data: Any) -> str:
    """JSON text of mutated data; Python's spelling of NaN/Infinity kept (a hostile file can hold them), and too
    deep data written by hand."""
    try:
        return json.dumps(data, allow_nan=True)
    except (RecursionError, ValueError):
        return "[" * 5000 + "]" * 5000


def _mutate_text(text: str, rng: random.Random) -> str:
    """Byte and token damage: flips, cut, duplicated or dropped lines, numbers replaced by hostile spellings."""
    for _ in range(rng.randint(1, 3)):
        kind = rng.random()
        if kind < 0.2 and text:
            at = rng.randrange(len(text))
            text = text[:at] + chr(rng.randrange(0, 0x3000)) + text[at + 1:]
        elif kind < 0.35:
            text = text[: rng.randrange(len(text) + 1)]
        elif kind < 0.55:
            lines = text.splitlines()
            if lines:
                at = rng.randrange(len(lines))
                lines.insert(at, lines[at]) if rng.random() < 0.5 else lines.pop(at)
            text = "\n".join(lines)
        else:
            tokens = text.split(" ")
            if tokens:
                at = rng.randrange(len(tokens))
                tokens[at] = rng.choice(["nan", "inf", "-inf", "1e308", "1e999", "9" * 400, "-1", "0", "x", "",
                                         "{", "}", "CHANNELS", "JOINT", "999999999", "Frames:", "0.0000001"])
            text = " ".join(tokens)
    return text


def _all_finite(value: Any) -> bool:
    """No NaN or infinity anywhere in a loaded object (numbers, arrays, dataclasses, containers)."""
    stack, seen = [value], 0
    while stack:
        item = stack.pop()
        seen += 1
        if isinstance(item, bool) or item is None or isinstance(item, str):
            continue
        if isinstance(item, int | float):
            if not math.isfinite(item):
                return False
        elif isinstance(item, np.ndarray):
            if item.dtype.kind == "f" and not np.isfinite(item).all():
                return False
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            stack.extend(getattr(item, f.name) for f in dataclasses.fields(item))
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return True


def _run_cases(make_case: Callable[[random.Random], Any], load: Callable[[Any], Any], seed: int) -> dict[str, int]:
    """Run CASES seeded cases: each loads (finite) or raises a KMMError; anything else fails with the case."""
    outcome = {"loaded": 0, "refused": 0}
    for number in range(CASES):
        rng = random.Random(seed * 100_003 + number)
        case = make_case(rng)
        started = time.monotonic()
        try:
            with _time_limit(CASE_SECONDS):
                result = load(case)
        except KMMError as error:
            assert str(error), f"case {number}: an empty error message"
            outcome["refused"] += 1
            continue
        except Exception as error:  # noqa: BLE001 - the finding
            pytest.fail(f"case {number} (seed {seed}) raised {type(error).__name__}: {short_repr(error, 300)}\n"
                        f"input: {short_repr(case, 600)}")
        assert _all_finite(result), f"case {number} (seed {seed}) loaded with NaN/infinity: {short_repr(case, 600)}"
        assert time.monotonic() - started < CASE_SECONDS
        outcome["loaded"] += 1
    return outcome


# ---- timelines ------------------------------------------------------------------------------------------------------
TIMELINE = {"fps": 30, "loop": False, "segments": [
    {"prompt": "a person walks forward", "seconds": 2.0, "path": {"points": [[0, 0], [0, 2.5]], "times": [0, 2]}},
    {"prompt": "a person jumps", "frames": 24},
    {"prompt": "a person waves", "seconds": 1.5},
]}


@pytest.mark.parametrize("seed", [1, 2])
def test_fuzzed_timelines_load_or_raise_kmm_errors(seed, tmp_path):
    path = tmp_path / "timeline.json"

    def load(case: tuple[str, Any]):
        how, data = case
        if how == "dict":
            return Timeline.from_dict(data)
        path.write_text(data if isinstance(data, str) else _text(data), encoding="utf-8", errors="surrogatepass")
        return Timeline.from_file(path)

    def make(rng: random.Random):
        data = _mutate_json(TIMELINE, rng)
        roll = rng.random()
        if roll < 0.4:
            return "dict", data
        if roll < 0.7:
            return "file", _text(data)
        return "file", _mutate_text(json.dumps(TIMELINE, indent=1), rng)

    outcome = _run_cases(make, load, seed)
    assert outcome["loaded"] > 5 and outcome["refused"] > 50, outcome  # both sides exercised


# ---- constraints ----------------------------------------------------------------------------------------------------
CONSTRAINT_COUNTS = (2, 50, 1000, 10_001)  # copies of one constraint: agreeing crowds, and past the cap
CONSTRAINT_NUMBERS: list[Any] = [float("nan"), float("inf"), -float("inf"), 1e308, -1e308, 1e6, 100, 70.0, 5e-324,
                                 -0.0, 10**400, True, None, "1"]


def _constraint_numbers(constraint: dict) -> list[tuple[list, int]]:
    """(list, index) of every number in a constraint's vectors (positions, rotations, directions)."""
    slots = []
    for value in constraint.values():
        if isinstance(value, list):
            for row in (value if value and isinstance(value[0], list) else [value]):
                slots += [(row, index) for index in range(len(row))]
    return slots


@pytest.mark.parametrize("seed", [7])
def test_fuzzed_constraints_load_and_solve_or_raise_kmm_errors(seed, humanml3d_fixture_dir):
    """Timelines whose constraints are mutated (random counts, frames, joints, NaN and huge numbers, targets far
    away, structural damage): each loads and is met on a real motion (finite), or is refused with a KMMError."""
    from kmm_core.generation.constraint_solver import meet_constraints
    from kmm_core.generation.constraints import EFFECTOR_JOINTS
    from kmm_core.motion.motion_result import MotionResult
    from kmm_core.motion.skeleton import JOINT_NAMES

    clip = np.load(humanml3d_fixture_dir / "new_joints" / "012314.npy").astype(np.float64)[:120]
    motion = MotionResult.from_joints(clip, 20.0)
    constrained = {"fps": 20, "segments": [{"prompt": "a person waves", "start": 1, "end": 120}], "constraints": [
        {"type": "pose", "frame": 31, "positions": clip[30].tolist()},
        {"type": "effector", "joint": "right_wrist", "start": 51, "end": 61,
         "position": (clip[55, 21] + 0.1).tolist(), "orientation": [1, 0, 0, 0]},
        {"type": "effector", "joint": "root", "frame": 91, "position": (clip[90, 0] + [0.1, 0, 0.1]).tolist(),
         "weight": 0.5},
        {"type": "facing", "frame": 101, "direction": [0, 1]},
        {"type": "pose", "frame": 111, "positions": clip[110].tolist(), "joints": ["right_shoulder", "right_elbow"]},
    ]}
    names = [*EFFECTOR_JOINTS, *JOINT_NAMES, "", "LEFT_WRIST", "left hand", None, 5, ["head"]]

    def make(rng: random.Random):
        data = copy.deepcopy(constrained)
        constraints = data["constraints"]
        for _ in range(rng.randint(1, 2)):
            kind = rng.random()
            chosen = rng.choice(constraints) if constraints else {}
            if kind < 0.15:  # a crowd of copies
                constraints += [copy.deepcopy(chosen) for _ in range(rng.choice(CONSTRAINT_COUNTS))]
            elif kind < 0.35:  # a frame anywhere, or not a frame
                key = rng.choice([key for key in ("frame", "start", "end") if key in chosen] or ["frame"])
                chosen[key] = rng.choice([0, 1, -1, 120, 121, 10**12, 2**63, 10**400, 10**5000, 1.5, float("nan"), True,
                                          rng.randint(-50, 200)]) if rng.random() < 0.5 else rng.randint(1, 120)
            elif kind < 0.45:  # any joint name
                chosen["joint"] = rng.choice(names if rng.random() < 0.5 else list(EFFECTOR_JOINTS))
            elif kind < 0.65:  # a hostile number in a vector
                slots = _constraint_numbers(chosen)
                if slots:
                    row, index = rng.choice(slots)
                    row[index] = rng.choice(CONSTRAINT_NUMBERS) if rng.random() < 0.6 else row[index] * 1.01
            elif kind < 0.8 and "position" in chosen:  # a target moved anywhere up to 100 m (70 m: the issue's)
                chosen["position"] = [p + rng.uniform(-100, 100) * rng.random() ** 3 for p in chosen["position"]]
            elif kind < 0.9:  # a new random target
                constraints.append({"type": "effector", "joint": rng.choice(list(EFFECTOR_JOINTS)),
                                    "frame": rng.randint(1, 120),
                                    "position": [rng.uniform(-3, 3), rng.uniform(-0.2, 2.5), rng.uniform(-3, 3)]})
            else:
                data = _mutate_json(data, rng)
                if not isinstance(data, dict) or not isinstance(data.get("constraints"), list):
                    return data
                constraints = data["constraints"]
        return data

    def load(data: Any):
        timeline = Timeline.from_dict(data)
        if timeline.constraints and timeline.total_frames == motion.num_frames:
            return meet_constraints(motion, timeline.constraint_frames(), first_frame=timeline.start_frame or 0)
        return timeline

    outcome = _run_cases(make, load, seed)
    assert outcome["loaded"] > 20 and outcome["refused"] > 50, outcome  # both sides exercised


# ---- bone maps ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["mixamo", "rigify"])
def test_fuzzed_bone_maps_load_or_raise_kmm_errors(preset, tmp_path):
    shipped = preset_named(preset)  # a real map: the preset resolved on a rig with every bone name it knows
    bone_map, _ = shipped.resolve([name for names in shipped.bones.values() for name in names])
    source = json.loads(json.dumps(bone_map.to_dict()))
    assert bone_map_from_dict(copy.deepcopy(source), "seed.json") == bone_map
    path = tmp_path / "map.json"

    def load(case: tuple[str, Any]):
        how, data = case
        if how == "dict":
            return bone_map_from_dict(data, "map.json")
        path.write_text(data, encoding="utf-8", errors="surrogatepass")
        return load_bone_map(path)

    def make(rng: random.Random):
        roll = rng.random()
        if roll < 0.4:
            return "dict", _mutate_json(source, rng)
        if roll < 0.75:
            return "file", _text(_mutate_json(source, rng))
        return "file", _mutate_text(json.dumps(source, indent=1), rng)

    outcome = _run_cases(make, load, 10 + len(preset))
    assert outcome["refused"] > 50 and outcome["loaded"] > 0, outcome


# ---- BVH text -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bvh_text(tmp_path_factory) -> str:
    """A real BVH of the 22-joint skeleton written by our own writer (12 frames of small turns)."""
    translation, rotations = small_turns(12)
    path = tmp_path_factory.mktemp("bvh") / "seed.bvh"
    write_bvh(path, translation, rotations, tpose_offsets(), fps=30.0)
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("seed", [3, 4])
def test_fuzzed_bvh_text_loads_or_raises_kmm_errors(seed, bvh_text, tmp_path):
    assert np.isfinite(parse_bvh(bvh_text).frames).all()
    path = tmp_path / "fuzzed.bvh"

    def load(case: tuple[str, str]):
        how, text = case
        if how == "text":
            return parse_bvh(text, "fuzzed.bvh")
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        return read_bvh(path)

    def make(rng: random.Random):
        text = _mutate_text(bvh_text, rng)
        if rng.random() < 0.2:  # a frame count or frame time far beyond the data
            text = text.replace("Frames: 12", f"Frames: {rng.choice(['999999999', '-3', '0', '1e9', '12.5'])}")
            text = text.replace("Frame Time:", f"Frame Time: {rng.choice(['0', '-1', 'nan', '1e-300', ''])} ")
        return ("text" if rng.random() < 0.7 else "file"), text

    outcome = _run_cases(make, load, seed)
    assert outcome["refused"] > 30 and outcome["loaded"] > 0, outcome


# ---- bundle configs -------------------------------------------------------------------------------------------------
CONFIG_CLASSES = {"tokenizer": TokenizerConfig, "generator": GeneratorConfig, "aligner": AlignerConfig,
                  "evaluator": AlignerConfig}


def test_fuzzed_bundle_configs_load_or_raise_kmm_errors(tmp_path):
    shipped = default_bundle_path()
    sources = {name: json.loads((shipped / f"{name}.json").read_text(encoding="utf-8")) for name in CONFIG_CLASSES}
    decoding = json.loads((shipped / "bundle.json").read_text(encoding="utf-8")).get("decoding") or {"steps": 10}

    def load(case: tuple[str, str, Any]):
        how, name, data = case
        if how == "decoding":
            return DecodingConfig.from_dict(data, "decoding")
        if how == "dict":
            return CONFIG_CLASSES[name].from_dict(data, name)
        (tmp_path / f"{name}.json").write_text(data, encoding="utf-8", errors="surrogatepass")
        return read_component_configs(tmp_path, [name])

    def make(rng: random.Random):
        name = rng.choice(sorted(CONFIG_CLASSES))
        roll = rng.random()
        if roll < 0.15:
            return "decoding", name, _mutate_json(decoding, rng)
        if roll < 0.5:
            return "dict", name, _mutate_json(sources[name], rng)
        if roll < 0.85:
            return "file", name, _text(_mutate_json(sources[name], rng))
        return "file", name, _mutate_text(json.dumps(sources[name], indent=1), rng)

    outcome = _run_cases(make, load, 5)
    assert outcome["refused"] > 50, outcome


# ---- BVH hierarchies ------------------------------------------------------------------------------------------------
HIERARCHY_SIZES = (1, 2, 22, 300, 1_200)  # joints of a fan or a random tree
CHAIN_DEPTHS = (1, 2, 50, 999, 1_000, 1_001, 1_500)  # around MAX_BVH_DEPTH (1,000)
HOSTILE_NUMBERS = ("nan", "inf", "-1e308", "1e308", "10000001", "5e-324", "-0", "1e7")
CHANNEL_NAMES = ("Xposition", "Yposition", "Zposition", "Xrotation", "Yrotation", "Zrotation")


def _random_hierarchy(rng: random.Random) -> tuple[str, bool]:
    """BVH text of a random shape (a chain, a fan or a random tree; deep, broad, with or without End Sites), random
    channel sets and orders, all-zero or random OFFSETs, and in some cases one damage (a hostile OFFSET or frame value,
    a duplicate name, a frame time out of range); and whether its first 22 joints carry the canonical names (so a
    joint map applies)."""
    shape = rng.choice(["chain", "fan", "tree"])
    count = rng.choice(CHAIN_DEPTHS) if shape == "chain" else rng.choice(HIERARCHY_SIZES)
    parents = [-1] + [index - 1 if shape == "chain" else 0 if shape == "fan" else rng.randrange(index)
                      for index in range(1, count)]
    canonical = count >= NUM_JOINTS and rng.random() < 0.5
    zero_offsets = rng.random() < 0.3
    damage = rng.choice(["none"] * 6 + ["offset", "value", "duplicate", "frame time"])
    damaged_joint = rng.randrange(count)
    children: list[list[int]] = [[] for _ in range(count)]
    for joint, parent in enumerate(parents[1:], 1):
        children[parent].append(joint)

    def offset(joint: int) -> str:
        numbers = ["0" if zero_offsets else f"{rng.uniform(-20, 20):.3f}" for _ in range(3)]
        if damage == "offset" and joint == damaged_joint:
            numbers[rng.randrange(3)] = rng.choice(HOSTILE_NUMBERS)
        return "OFFSET " + " ".join(numbers)

    lines, channel_count = ["HIERARCHY"], 0
    stack: list[tuple[int, bool]] = [(0, False)]  # (joint, closing) - written without recursion, like the reader
    while stack:
        joint, closing = stack.pop()
        if closing:
            if not children[joint] and rng.random() < 0.7:
                lines += ["End Site", "{", offset(-1), "}"]
            lines.append("}")
            continue
        name = JOINT_NAMES[joint] if canonical and joint < NUM_JOINTS else f"j{joint}"
        if damage == "duplicate" and joint == damaged_joint and joint:
            name = JOINT_NAMES[0] if canonical else "j0"
        channels = list(CHANNEL_NAMES if joint == 0 else CHANNEL_NAMES[3:])
        rng.shuffle(channels)
        channels = channels[: rng.choice([0, 3, 3, 3, len(channels)])] if joint else channels
        channel_count += len(channels)
        lines += [("ROOT " if joint == 0 else "JOINT ") + name, "{", offset(joint),
                  f"CHANNELS {len(channels)} {' '.join(channels)}".rstrip()]
        stack.append((joint, True))
        stack.extend((child, False) for child in reversed(children[joint]))
    frames = rng.choice([0, 1, 3])
    frame_time = rng.choice(["1e-300", "1e300", "0.0001", "2"]) if damage == "frame time" else "0.0333333"
    lines += ["MOTION", f"Frames: {frames}", f"Frame Time: {frame_time}"]
    rows = [[f"{rng.uniform(-90, 90):.2f}" for _ in range(channel_count)] for _ in range(frames)]
    if damage == "value" and rows and channel_count:
        rows[rng.randrange(frames)][rng.randrange(channel_count)] = rng.choice(HOSTILE_NUMBERS)
    lines += [" ".join(row) for row in rows]
    return "\n".join(lines) + "\n", canonical


@pytest.mark.parametrize("seed", [8])
def test_fuzzed_bvh_hierarchies_load_or_raise_kmm_errors(seed, tmp_path):
    """Random hierarchies (depth around the limit, breadth, zero OFFSETs, channel subsets): each is read, posed,
    made a retarget target and, when it has the canonical names, mapped as a source - all finite - or refused with a
    KMMError (a RecursionError, an SVD failure or NaN is a finding)."""
    from kmm_core.bvh import bvh_to_canonical_joints, joint_map_from_dict
    from kmm_core.retarget.target_skeleton import bvh_target_skeleton

    joint_map = joint_map_from_dict({"up": "+Y", "forward": "+Z", "scale_to_metres": 0.01,
                                     "joints": {name: name for name in JOINT_NAMES}}, "identity.json")
    path = tmp_path / "fuzzed.bvh"

    def load(case: tuple[str, bool]):
        text, canonical = case
        path.write_text(text, encoding="utf-8")
        motion = read_bvh(path)
        positions = motion.world_positions()
        joints = bvh_to_canonical_joints(motion, joint_map, None) if canonical else None
        skeleton = bvh_target_skeleton(motion)
        return motion, positions, joints, skeleton.rest_heads_metres()

    outcome = _run_cases(_random_hierarchy, load, seed)
    assert outcome["refused"] > 30 and outcome["loaded"] > 30, outcome
