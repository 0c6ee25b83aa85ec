# SPDX-License-Identifier: GPL-3.0-or-later
"""`kmm-train prepare --reversed-takes` on real HDM05 takes: lying down played backwards is kept as a get-up (checked
by the getup action check on the reversed joints), in the train split only, with the val/test splits and every other
clip exactly those of the data without it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from kmm_core.data.extra_sources import hdm05_specs
from kmm_core.data.prepare import read_index
from kmm_core.data.reversed_takes import (
    LYING_LEAD_IN_SECONDS,
    REVERSED_SUFFIX,
    RISE_METRES,
    played_backwards,
    reversed_takes,
)
from kmm_core.evaluation.action_checks import run_check
from kmm_core.evaluation.take_checks import check_scan, clip_joints
from kmm_core.motion.model_timing import MODEL_FPS
from kmm_core.motion.skeleton import JOINT_INDEX
from kmm_core.training.prepare_command import main

# Five takes of lying down (one actor each, two of bk) and a squat, which has no reverse of its own.
LIE_DOWN = ("HDM_bd_lieDownFloor_001_120.amc", "HDM_bk_lieDownFloor_005_120.amc", "HDM_bk_lieDownFloor_006_120.amc",
            "HDM_dg_lieDownFloor_011_120.amc", "HDM_mm_lieDownFloor_015_120.amc", "HDM_tr_lieDownFloor_019_120.amc")
OTHER = ("HDM_bd_squat1Reps_001_120.amc",)


@pytest.fixture(scope="module")
def hdm05_lying(hdm05_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hdm05_lying")
    for actor in ("bd", "bk", "dg", "mm", "tr"):
        (root / "asf").mkdir(exist_ok=True)
        shutil.copyfile(hdm05_dir / "asf" / f"HDM_{actor}.asf", root / "asf" / f"HDM_{actor}.asf")
    for name in LIE_DOWN + OTHER:
        (found,) = hdm05_dir.rglob(name)
        target = root / found.relative_to(hdm05_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(found, target)
    return root


def test_a_reversed_lie_down_gets_up_and_is_captioned_so(hdm05_lying):
    scan = hdm05_specs(hdm05_lying)
    copies = reversed_takes(scan.specs)
    assert len(copies.specs) == len(LIE_DOWN)  # the squat has no reversed copy
    spec = copies.specs[0]
    assert spec.reverse and spec.clip_id.endswith(REVERSED_SUFFIX) and spec.content == "standUpLieFloor"
    original = next(s for s in scan.specs if s.clip_id + REVERSED_SUFFIX == spec.clip_id)
    assert spec.take == original.take  # the copy follows its original's split
    assert all(("gets up" in c or "stands up" in c or "rises" in c) and "lies down" not in c for c in spec.captions)
    forward, backward = clip_joints(original), clip_joints(spec)
    assert run_check("lie", forward).passed and not run_check("getup", forward).passed
    assert run_check("getup", backward).passed
    # The same poses in the opposite order (each put on the floor and facing +Z at its own first frame), the long
    # still lying at the end of the lie-down cut to a second before the head rises.
    assert abs(forward[0, 0, 1] - backward[-1, 0, 1]) < 0.02 and abs(forward[-1, 0, 1] - backward[0, 0, 1]) < 0.02
    head = backward[:, JOINT_INDEX["head"], 1]
    rise = int(np.flatnonzero(head > np.median(head[:10]) + RISE_METRES)[0])
    assert abs(rise - LYING_LEAD_IN_SECONDS * MODEL_FPS) <= 3, rise
    assert len(backward) < len(forward) - 10


def test_played_backwards_keeps_a_second_of_lying_before_the_rise():
    """A body that lies still 4 s, then rises (head from 0.1 m to 1.6 m over 2 s), played forwards in reverse: the
    copy starts 1 s before the head rises 0.15 m; a reverse that never rises is kept whole."""
    lying, rising = np.full(80, 0.1), np.linspace(0.1, 1.6, 40)
    head = np.concatenate([lying, rising])[::-1]  # the lie-down take: stands, goes down, lies still
    joints = np.zeros((len(head), 22, 3))
    joints[:, JOINT_INDEX["head"], 1] = head
    backwards = played_backwards(joints)
    rise = int(np.flatnonzero(backwards[:, JOINT_INDEX["head"], 1] > 0.1 + RISE_METRES)[0])
    assert rise == round(LYING_LEAD_IN_SECONDS * MODEL_FPS)
    assert np.array_equal(backwards, joints[::-1][84 - rise:])  # the head passes 0.25 m 4 frames into its rise
    still = np.zeros((50, 22, 3))
    assert np.array_equal(played_backwards(still), still)


def test_prepare_adds_reversed_get_ups_to_train_only(hdm05_lying, tmp_path):
    plain, with_copies = tmp_path / "plain", tmp_path / "reversed"
    common = ["--hdm05", str(hdm05_lying), "--workers", "1", "--quiet", "--min-source-frames", "10"]
    assert main(["--out", str(plain), *common]) == 0
    assert main(["--out", str(with_copies), *common, "--reversed-takes"]) == 0
    rows = {row["name"]: row for row in read_index(with_copies)}
    plain_rows = {row["name"]: row for row in read_index(plain)}
    copies = {name: row for name, row in rows.items() if REVERSED_SUFFIX in name}
    assert copies and all(row["split"] == "train" and row["content"] == "standUpLieFloor" for row in copies.values())
    # Every original clip keeps its split and its numbers; val and test are the plain data's, file for file.
    assert {name: row["split"] for name, row in rows.items() if name not in copies} == \
        {name: row["split"] for name, row in plain_rows.items()}
    for split in ("val", "test"):
        assert (with_copies / f"{split}.txt").read_text() == (plain / f"{split}.txt").read_text()
    held_out = [row for row in plain_rows.values() if row["split"] != "train" and row["content"] == "lieDownFloor"]
    assert held_out, "the fixture needs a lying-down take in val or test"
    written = {path.stem for path in (with_copies / "new_joint_vecs").iterdir()}
    assert written == set(rows)  # no file of a left-out copy stays behind
    for name in plain_rows:
        np.testing.assert_array_equal(np.load(with_copies / "new_joint_vecs" / f"{name}.npy"),
                                      np.load(plain / "new_joint_vecs" / f"{name}.npy"))
    name = next(iter(copies))
    captions = (with_copies / "texts" / f"{name}.txt").read_text()
    assert "lies down" not in captions and ("gets up" in captions or "stands up" in captions)


def test_a_reversed_copy_that_does_not_get_up_is_left_out(hdm05_lying):
    """The getup check decides: a reversed squat (stands, crouches, stands) is no get-up and is skipped, naming the
    file and the check."""
    scan = hdm05_specs(hdm05_lying)
    squat = next(s for s in scan.specs if s.content == "squat1Reps")
    import dataclasses

    forced = reversed_takes([dataclasses.replace(squat, content="lieDownFloor")])
    kept = check_scan(forced)[0]
    assert not kept.specs
    assert "squat1Reps" in kept.skipped[0][0] and "action check getup failed" in kept.skipped[0][1]
