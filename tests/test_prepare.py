# SPDX-License-Identifier: GPL-3.0-or-later
"""`kmm-train prepare` on real BVH clips: layout, lengths, splits, mirroring, determinism, user folders, errors."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from kmm_core.common.errors import InputFileError
from kmm_core.data.prepare import PrepareError, PrepareOptions, plan_windows, prepare_dataset, read_index
from kmm_core.data.sources import user_specs
from kmm_core.data.splits import assign_splits, split_counts
from kmm_core.humanml3d import HumanML3DFolder, Normalizer, features_to_joints
from kmm_core.motion.skeleton import JOINT_INDEX, mirror_text
from kmm_core.training.prepare_command import main

REPO_ROOT = Path(__file__).resolve().parents[1]
SIDE = re.compile(r"\b(left|right)\b")


def _bandai_file(bandai_dir: Path, stem: str) -> Path:
    return next(bandai_dir.glob(f"Bandai-Namco-Research-Motiondataset-*/data/{stem}.bvh"))


# ---------------------------------------------------------------------------------------------------------------
# Pure logic: windows and splits
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("frames", [20, 25, 41, 120, 197, 198, 400, 1268, 2000])
def test_windows_cover_the_clip_within_humanml3d_lengths(frames):
    windows = plan_windows(frames)
    feature_lengths = [w.frames + w.padding - 1 for w in windows]
    assert all(40 <= n <= 196 for n in feature_lengths)
    assert windows[0].start == 0 and windows[-1].start + windows[-1].frames == frames  # nothing cut off the end
    assert max(feature_lengths) - min(feature_lengths) == 0  # balanced
    for before, after in zip(windows, windows[1:], strict=False):
        assert after.start <= before.start + before.frames  # no gap between neighbouring windows
        assert before.start + before.frames - after.start <= len(windows)  # overlap of at most a few frames
    assert sum(w.padding > 0 for w in windows) == (1 if frames < 41 else 0)


def test_too_short_clips_are_dropped():
    assert plan_windows(19) == []
    assert plan_windows(19, min_source_frames=10)[0].padding == 41 - 19


def test_splits_keep_strata_in_test_and_are_deterministic():
    strata = {f"take{i:03d}": f"content{i % 4}" for i in range(83)} | {"lonely": "rare", "p1": "pair", "p2": "pair"}
    first = assign_splits(strata, seed=3)
    assert first == assign_splits(dict(reversed(list(strata.items()))), seed=3)
    assert first != assign_splits(strata, seed=4)
    assert first["lonely"] == "train"
    assert sorted(first[t] for t in ("p1", "p2")) == ["test", "train"]
    for content in range(4):
        splits = [first[t] for t, s in strata.items() if s == f"content{content}"]
        assert {"train", "val", "test"} <= set(splits)
        assert splits.count("train") >= 0.75 * len(splits)
    # Adding takes of one content moves no take of another content.
    more = strata | {f"extra{i}": "content0" for i in range(10)}
    again = assign_splits(more, seed=3)
    assert all(again[t] == first[t] for t, s in strata.items() if s != "content0")
    assert split_counts(10, 0.1, 0.1) == (8, 1, 1) and split_counts(3, 0.1, 0.1) == (1, 1, 1)


# ---------------------------------------------------------------------------------------------------------------
# The prepared subset (conftest: 3 takes per dataset/content of Bandai-Namco and CMU)
# ---------------------------------------------------------------------------------------------------------------

def test_layout_is_readable_as_humanml3d(prepared_dataset):
    folder = HumanML3DFolder(prepared_dataset)
    names = {split: folder.split_names(split) for split in ("train", "val", "test")}
    everything = [n for split in names.values() for n in split]
    assert len(everything) == len(set(everything)) == len(folder.clip_names())
    assert sorted(everything) == folder.clip_names() == folder.split_names("all")
    assert all(len(names[s]) > 0 for s in names)
    for name in everything:
        features = folder.load_features(name)
        joints = folder.load_joints(name)
        assert 40 <= len(features) <= 196, name
        assert joints.shape == (len(features), 22, 3)
        captions = folder.load_captions(name)
        assert len(captions) >= 1 and all(c.whole_clip and c.tokens for c in captions)
    # new_joints are the joints recovered from the features, as in HumanML3D.
    np.testing.assert_allclose(folder.load_joints(everything[0]), features_to_joints(folder.load_features(everything[0])),
                               atol=1e-5)
    mean, std = folder.mean_std()
    assert mean.shape == std.shape == (263,) and np.all(std > 0)


def test_report_counts_match_the_folder(prepared_dataset):
    report = json.loads((prepared_dataset / "report.json").read_text())
    index = read_index(prepared_dataset)
    assert report["totals"]["clips"] == len(index)
    assert report["totals"]["mirrored_clips"] == sum(r["mirrored"] == "1" for r in index) == len(index) // 2
    assert sum(row["clips"] for row in report["per_split"].values()) == len(index)
    for stratum in ("bandai-namco-2/raise-up-left-hand", "bandai-namco-1/walk-left", "cmu/walk", "cmu/run"):
        assert report["per_content"][stratum]["takes"] == 3
        assert report["per_content"][stratum]["test_takes"] == 1
    minutes = sum(int(r["frames"]) for r in index) / 20 / 60
    assert abs(report["totals"]["minutes"] - minutes) < 0.01
    assert (prepared_dataset / "report.md").read_text().startswith("# Prepared dataset")
    # Long takes were cut (dance-short: a minute of dancing) and short ones padded (raise-up clips of ~1.5 s).
    assert report["totals"]["cut_takes"] >= 1 and report["totals"]["padded_clips"] >= 1


def test_splits_are_disjoint_by_take_and_stratified(prepared_dataset):
    index = read_index(prepared_dataset)
    split_of_take = defaultdict(set)
    takes_by_stratum = defaultdict(set)
    for row in index:
        split_of_take[row["take"]].add(row["split"])
        takes_by_stratum[f"{row['dataset']}/{row['content']}"].add(row["take"])
    assert all(len(splits) == 1 for splits in split_of_take.values())
    folder = HumanML3DFolder(prepared_dataset)
    split_of_name = {n: s for s in ("train", "val", "test") for n in folder.split_names(s)}
    for row in index:
        assert split_of_name[row["name"]] == row["split"]
        if row["mirrored"] == "1":
            assert split_of_name[row["name"]] == split_of_name[row["name"][1:]]
    for stratum, takes in takes_by_stratum.items():
        splits = {next(iter(split_of_take[t])) for t in takes}
        if len(takes) >= 3:
            assert splits == {"train", "val", "test"}, stratum


def test_mean_std_are_humanml3d_grouped_statistics_of_train(prepared_dataset):
    folder = HumanML3DFolder(prepared_dataset)
    expected = Normalizer.fit([folder.load_features(n) for n in folder.split_names("train")], group_std=True)
    mean, std = folder.mean_std()
    np.testing.assert_allclose(mean, expected.mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std, expected.raw_std, rtol=1e-5, atol=1e-6)


def test_mirrored_clips_name_the_side_that_moves(prepared_dataset):
    """The wrist a caption names is the one raised, in the original and in the mirrored clip."""
    folder = HumanML3DFolder(prepared_dataset)
    wrists = {"left": JOINT_INDEX["left_wrist"], "right": JOINT_INDEX["right_wrist"]}
    checked = 0
    for row in read_index(prepared_dataset):
        if row["mirrored"] != "0" or row["content"] not in ("raise-up-left-hand", "raise-up-right-hand",
                                                            "wave-left-hand", "wave-right-hand"):
            continue
        original, mirrored = row["name"], "M" + row["name"]
        original_captions = [c.text for c in folder.load_captions(original)]
        mirrored_captions = [c.text for c in folder.load_captions(mirrored)]
        assert mirrored_captions == [mirror_text(c) for c in original_captions]
        for name, captions in ((original, original_captions), (mirrored, mirrored_captions)):
            sides = {side for caption in captions for side in SIDE.findall(caption)}
            assert len(sides) == 1, captions
            named = sides.pop()
            other = "right" if named == "left" else "left"
            joints = folder.load_joints(name)
            height = joints[:, :, 1] - joints[:, [0], 1]  # above the pelvis
            assert height[:, wrists[named]].max() > height[:, wrists[other]].max() + 0.2, (name, captions)
            # The raised wrist is on the named side of the body: HumanML3D's left is +x when facing +z.
            frame = int(np.argmax(height[:, wrists[named]]))
            across = joints[frame, JOINT_INDEX["left_shoulder"]] - joints[frame, JOINT_INDEX["right_shoulder"]]
            offset = joints[frame, wrists[named]] - joints[frame, JOINT_INDEX["neck"]]
            assert np.sign(offset @ across) == (1 if named == "left" else -1), name
            checked += 1
    assert checked >= 12


def test_padded_clips_hold_their_last_pose(prepared_dataset):
    folder = HumanML3DFolder(prepared_dataset)
    padded = [row for row in read_index(prepared_dataset) if int(row["padded_frames"]) > 0]
    assert padded
    for row in padded:
        joints = folder.load_joints(row["name"])
        assert len(joints) == 40
        if int(row["padded_frames"]) < 3:
            continue
        tail = joints[-(int(row["padded_frames"]) - 1):]
        assert np.abs(tail - tail[-1]).max() < 1e-3, row["name"]


def test_same_inputs_give_identical_files_with_two_workers(prepared_dataset, prepared_dataset_args, tmp_path):
    args = list(prepared_dataset_args)
    args[args.index("--workers") + 1] = "2"
    assert main([*args, "--out", str(tmp_path / "again")]) == 0

    def digests(root: Path) -> dict[str, str]:
        return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith("report.")}

    first, second = digests(prepared_dataset), digests(tmp_path / "again")
    assert len(first) > 500 and first == second
    reports = [json.loads((root / "report.json").read_text()) for root in (prepared_dataset, tmp_path / "again")]
    for report in reports:
        report.pop("elapsed_seconds")
        report["settings"].pop("workers")
    assert reports[0] == reports[1]


# ---------------------------------------------------------------------------------------------------------------
# A user's BVH folder with a captions file
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def user_folder(tmp_path_factory, bandai_namco_dir) -> Path:
    """Four real BVH files (one listed twice with frame ranges), one with a bad number, one truncated."""
    folder = tmp_path_factory.mktemp("user") / "bvh"
    (folder / "session").mkdir(parents=True)
    for stem, target in (("dataset-2_raise-up-left-hand_normal_001", "left.bvh"),
                         ("dataset-2_walk_normal_001", "session/walk.bvh"),
                         ("dataset-1_bow_normal_001", "bow.bvh"),
                         ("dataset-2_run_normal_001", "run.bvh")):
        shutil.copy(_bandai_file(bandai_namco_dir, stem), folder / target)
    lines = (folder / "run.bvh").read_text().splitlines()
    motion = next(i for i, line in enumerate(lines) if line.startswith("MOTION"))
    bad = lines.copy()
    bad[motion + 5] = "12.5abc " + bad[motion + 5].split(None, 1)[1]
    (folder / "bad_value.bvh").write_text("\n".join(bad) + "\n")
    (folder / "truncated.bvh").write_text("\n".join(lines[:-3]) + "\n")
    (folder / "captions.csv").write_text(
        "file,caption,start_frame,end_frame,content\n"
        "left.bvh,a person raises the left hand | someone lifts the left arm,,,raise\n"
        "session/walk.bvh,a person walks forward,0,150,walk\n"
        "session/walk.bvh,someone strolls ahead,0,150,walk\n"
        "session/walk.bvh,a person keeps walking,150,,walk\n"
        "bow.bvh,a person bows,,,bow\n"
        "bad_value.bvh,a person runs,,,run\n"
        "truncated.bvh,a person runs,,,run\n", encoding="utf-8")
    return folder


def test_user_folder_is_prepared_and_bad_files_are_reported(user_folder, tmp_path):
    out = tmp_path / "mine"
    joint_map = REPO_ROOT / "kmm_core" / "bvh" / "joint_maps" / "bandai_namco.json"  # a joint map given as a path
    code = main(["--bvh-folder", str(user_folder), "--captions", str(user_folder / "captions.csv"),
                 "--joint-map", str(joint_map), "--out", str(out), "--workers", "1", "--quiet"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    skipped = {Path(s["file"]).name: s for s in report["skipped"]}
    lines = (user_folder / "bad_value.bvh").read_text().splitlines()
    bad_line = next(i for i, line in enumerate(lines, start=1) if line.startswith("12.5abc"))
    assert skipped["bad_value.bvh"]["line"] == bad_line and "12.5abc" in skipped["bad_value.bvh"]["reason"]
    assert skipped["truncated.bvh"]["line"] is not None and "truncated" in skipped["truncated.bvh"]["reason"]
    assert "not listed" in skipped["run.bvh"]["reason"]  # in the folder, not in the captions file

    index = read_index(out)
    clips = {row["name"]: row for row in index}
    assert {"user_left_w0", "Muser_left_w0", "user_bow_w0", "user_session_walk_f0-150_w0",
            "user_session_walk_f150-end_w0"} <= set(clips)
    folder = HumanML3DFolder(out)
    assert [c.text for c in folder.load_captions("user_session_walk_f0-150_w0")] == [
        "a person walks forward", "someone strolls ahead"]
    assert [c.text for c in folder.load_captions("Muser_left_w0")] == [
        "a person raises the right hand", "someone lifts the right arm"]
    # 150 frames at 30 fps -> 100 frames at 20 fps -> 99 feature frames; both ranges are one take, one split.
    assert len(folder.load_features("user_session_walk_f0-150_w0")) == 99
    assert clips["user_session_walk_f0-150_w0"]["split"] == clips["user_session_walk_f150-end_w0"]["split"]
    assert clips["user_session_walk_f0-150_w0"]["take"] == clips["user_session_walk_f150-end_w0"]["take"]


def test_user_captions_errors_name_the_file_and_line(user_folder, tmp_path, capsys):
    captions = tmp_path / "captions.csv"
    captions.write_text("file,caption\nleft.bvh,a person raises the left hand\nmissing.bvh,a person waits\n")
    with pytest.raises(InputFileError) as error:
        user_specs(user_folder, captions, "bandai_namco")
    assert error.value.path == str(captions) and error.value.line == 3 and "missing.bvh" in str(error.value)
    code = main(["--bvh-folder", str(user_folder), "--captions", str(captions), "--joint-map", "bandai_namco",
                 "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 2
    assert f"{captions}, line 3" in capsys.readouterr().err

    ranged = tmp_path / "ranged.json"
    ranged.write_text(json.dumps([{"file": "left.bvh", "captions": ["a person raises the left hand"]},
                                  {"file": "bow.bvh", "caption": "a person bows", "start_frame": 9000}]))
    scan = user_specs(user_folder, ranged, "bandai_namco")
    report = prepare_dataset(scan.specs, tmp_path / "ranged", PrepareOptions(progress=False))
    beyond = next(s for s in report["skipped"] if s.get("clip", "").startswith("user_bow"))
    assert f"{ranged}, entry 2 ('bow.bvh')" in beyond["reason"] and "9000" in beyond["reason"]

    scan = user_specs(user_folder, ranged, "cmu_daz")
    with pytest.raises(PrepareError, match=r"joint map .*CMU.*'hip'"):  # the wrong map names itself and the joint
        prepare_dataset(scan.specs, tmp_path / "wrong-map", PrepareOptions(progress=False))


def test_output_folder_is_protected(user_folder, tmp_path):
    captions = tmp_path / "one.csv"
    captions.write_text("file,caption\nbow.bvh,a person bows\n")
    scan = user_specs(user_folder, captions, "bandai_namco")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(PrepareError, match="not empty"):
        prepare_dataset(scan.specs, out, PrepareOptions(progress=False))
    prepare_dataset(scan.specs, out, PrepareOptions(progress=False, overwrite=True))
    stale = out / "new_joint_vecs" / "stale.npy"
    stale.write_bytes(b"x")
    prepare_dataset(scan.specs, out, PrepareOptions(progress=False, overwrite=True))
    assert not stale.exists() and (out / "notes.txt").read_text() == "mine"  # only prepare's own files replaced
    assert HumanML3DFolder(out).split_names("all") == ["Muser_bow_w0", "user_bow_w0"]


def test_command_line_entry_points(tmp_path):
    result = subprocess.run([sys.executable, "-m", "kmm_core.training.prepare_command", "--out", str(tmp_path / "x")],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "at least one source" in result.stderr
    result = subprocess.run([sys.executable, "-m", "kmm_core.training.prepare_command", "--help"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--limit-per-content" in result.stdout
