# SPDX-License-Identifier: GPL-3.0-or-later
"""`kmm-train prepare` with the extra sources (HDM05 ASF/AMC, CMU iClone export, CMU exp-map, DeepMimic) on small
real subsets: one run with all four, the per-source report, captions with exact sides, take-disjoint splits,
mirrors; and the errors of each source."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kmm_core.common.errors import InputFileError
from kmm_core.data.extra_sources import cmu_expmap_specs, cmu_iclone_specs, deepmimic_specs, hdm05_specs
from kmm_core.data.prepare import read_index
from kmm_core.data.sources import cmu_specs
from kmm_core.training.prepare_command import main

HDM05_CLIPS = ("HDM_mm_kickLFront1Reps_019_120.amc", "HDM_bd_grabHighR_001_120.amc", "HDM_bd_squat1Reps_001_120.amc",
               "HDM_mm_lieDownFloor_015_120.amc")
ICLONE_TRIALS = ("02_01", "05_02")
EXPMAP_FILES = ("train/walking/walking_1.txt", "test/running/running_1.txt")
DEEPMIMIC_FILES = ("humanoid3d_jump.txt", "humanoid3d_crawl.txt", "long/humanoid3d_long_walk1_mirror.txt")


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


@pytest.fixture(scope="module")
def subsets(extra_mocap_dir, tmp_path_factory) -> dict[str, Path]:
    """Small copies of the four extra sources, laid out like the originals."""
    root = tmp_path_factory.mktemp("extra_subsets")
    hdm05 = extra_mocap_dir / "hdm05-subset-jointlearning"
    for actor in ("bd", "mm"):
        _copy(hdm05 / "asf" / f"HDM_{actor}.asf", root / "hdm05" / "asf" / f"HDM_{actor}.asf")
    for name in HDM05_CLIPS:
        (found,) = hdm05.rglob(name)
        _copy(found, root / "hdm05" / found.relative_to(hdm05))
    iclone = extra_mocap_dir / "cmu-iclone-dragonforged"
    with (iclone / "clips.csv").open(encoding="utf-8", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["trial"] in ICLONE_TRIALS]
    assert len(rows) == len(ICLONE_TRIALS)
    (root / "iclone").mkdir()
    with (root / "iclone" / "clips.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        _copy(iclone / row["file"], root / "iclone" / row["file"])
    for name in EXPMAP_FILES:
        _copy(extra_mocap_dir / "cmu-8action-expmap" / "cmu_mocap" / name, root / "expmap" / "cmu_mocap" / name)
    deepmimic = extra_mocap_dir / "deepmimic-humanoid3d"
    _copy(deepmimic / "characters" / "humanoid3d.txt", root / "deepmimic" / "characters" / "humanoid3d.txt")
    for name in DEEPMIMIC_FILES:
        _copy(deepmimic / "motions" / name, root / "deepmimic" / "motions" / name)
    return {"hdm05": root / "hdm05", "iclone": root / "iclone", "expmap": root / "expmap",
            "deepmimic": root / "deepmimic", "skeleton": root / "hdm05" / "asf" / "HDM_bd.asf"}


@pytest.fixture(scope="module")
def prepared(subsets, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared_extra") / "dataset"
    argv = ["--out", str(out), "--hdm05", str(subsets["hdm05"]), "--cmu-iclone", str(subsets["iclone"]),
            "--cmu-expmap", str(subsets["expmap"]), "--cmu-expmap-skeleton", str(subsets["skeleton"]),
            "--deepmimic", str(subsets["deepmimic"]), "--workers", "1", "--quiet", "--seed", "0"]
    assert main(argv) == 0
    return out


def _texts(out: Path, name: str) -> list[str]:
    return [line.split("#")[0] for line in (out / "texts" / f"{name}.txt").read_text(encoding="utf-8").splitlines()]


def test_prepare_with_every_extra_source(prepared):
    report = json.loads((prepared / "report.json").read_text(encoding="utf-8"))
    per_dataset = report["per_dataset"]
    assert set(per_dataset) == {"hdm05", "cmu-iclone", "cmu-expmap", "deepmimic"}
    assert per_dataset["hdm05"]["takes"] == 4 and per_dataset["hdm05"]["contents"] == 4
    assert per_dataset["cmu-iclone"]["takes"] == 2 and per_dataset["cmu-expmap"]["takes"] == 2
    assert per_dataset["deepmimic"]["takes"] == 2
    assert {"hdm05/kickLFront1Reps", "hdm05/lieDownFloor", "cmu-expmap/walking", "deepmimic/crawl",
            "cmu-iclone/walk"} <= set(report["per_content"])
    (mirror_skip,) = [s for s in report["skipped"] if "mirror" in s["file"]]
    assert "prepare adds mirrors itself" in mirror_skip["reason"]
    markdown = (prepared / "report.md").read_text(encoding="utf-8")
    assert "## Sources" in markdown and "| hdm05 | 4 | 4 |" in markdown
    rows = read_index(prepared)
    for row in rows:
        features = np.load(prepared / "new_joint_vecs" / f"{row['name']}.npy")
        assert features.shape[1] == 263 and 40 <= len(features) <= 196 and np.all(np.isfinite(features))


def test_captions_keep_sides_and_mirrors_swap_them(prepared):
    rows = read_index(prepared)
    kick = [r["name"] for r in rows if r["content"] == "kickLFront1Reps"]
    original = next(n for n in kick if not n.startswith("M"))
    for caption in _texts(prepared, original):
        assert " left " in f" {caption} " and "right" not in caption
    for caption in _texts(prepared, "M" + original):
        assert " right " in f" {caption} " and "left" not in caption
    assert len(set(_texts(prepared, original))) == 3          # varied templates
    lie = next(r["name"] for r in rows if r["content"] == "lieDownFloor" and r["mirrored"] == "0")
    assert all("lies" in c or "lie" in c for c in _texts(prepared, lie))


def test_splits_are_take_disjoint(prepared):
    rows = read_index(prepared)
    split_of_take: dict[str, set[str]] = {}
    for row in rows:
        split_of_take.setdefault(row["take"], set()).add(row["split"])
    assert all(len(splits) == 1 for splits in split_of_take.values())
    assert "cmu_02_01" in split_of_take      # the iClone 02_01 shares its take with the CMU collection's 02_01
    for split in ("train", "val", "test"):
        names = set((prepared / f"{split}.txt").read_text(encoding="utf-8").split())
        assert names == {r["name"] for r in rows if r["split"] == split}


def test_iclone_and_cmu_collection_share_trial_takes(subsets, cmu_archive, cmu_descriptions):
    iclone = {spec.take for spec in cmu_iclone_specs(subsets["iclone"]).specs}
    collection = {spec.take for spec in cmu_specs(cmu_archive, cmu_descriptions).specs}
    assert iclone & collection == {"cmu_02_01"}


def test_source_errors(subsets, tmp_path):
    with pytest.raises(InputFileError, match="give the extracted folder, not the archive"):
        hdm05_specs(Path(__file__).resolve().parents[2] / "shared" / "data" / "extra" / "extra-mocap.tar.xz")
    with pytest.raises(InputFileError, match="clips.csv not found"):
        cmu_iclone_specs(subsets["hdm05"])
    with pytest.raises(InputFileError, match="no .amc files found"):
        hdm05_specs(subsets["iclone"])
    with pytest.raises(InputFileError, match="character file"):
        deepmimic_specs(subsets["hdm05"])
    with pytest.raises(InputFileError, match="cannot read the ASF file"):
        cmu_expmap_specs(subsets["expmap"], tmp_path / "missing.asf")
    # An actor whose skeleton is broken: its clips are skipped with the reason, the others prepared.
    broken = tmp_path / "hdm05"
    shutil.copytree(subsets["hdm05"], broken)
    asf = broken / "asf" / "HDM_mm.asf"
    asf.write_text(asf.read_text(encoding="utf-8", errors="replace").replace("length 0.45", "length -1"),
                   encoding="utf-8")
    scan = hdm05_specs(broken)
    assert {spec.clip_id.split("_")[1] for spec in scan.specs} == {"bd"}
    assert sorted(Path(file).name for file, _ in scan.skipped) == sorted(n for n in HDM05_CLIPS if "_mm_" in n)
    for _, reason in scan.skipped:
        assert "HDM_mm.asf, line 7: length unit must be positive" in reason


def test_cli_requires_the_expmap_skeleton(subsets, tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--out", str(tmp_path / "x"), "--cmu-expmap", str(subsets["expmap"])])
    assert caught.value.code == 2
    assert "--cmu-expmap and --cmu-expmap-skeleton go together" in capsys.readouterr().err
