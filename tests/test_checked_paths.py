# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 31, paths: a name read from data (index.csv rows, split files, captions files, clips.csv, bundle.json's
file list) never names a path outside its folder - every such join goes through `checked_path.checked_join`.
A dataset row named ``../../../../some/where`` once made `kmm-train vocabulary` copy an outside file's lines into
the bundle's vocabulary.json."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kmm_core.bundle.model_bundle import default_bundle_path, read_manifest
from kmm_core.bundle.vocabulary import vocabulary_from_dataset
from kmm_core.bundle.weight_checksums import FILES_KEY, verify_bundle_files
from kmm_core.common.checked_path import PathEscapeError, checked_join
from kmm_core.common.errors import KMMError
from kmm_core.humanml3d.dataset_folder import HumanML3DFolder

REPO_ROOT = Path(__file__).resolve().parents[1]
SECRET = "the secret line nobody should copy"
COLUMNS = ["name", "take", "dataset", "content", "style", "split", "mirrored"]


def _prepared_folder(root: Path, names: list[str]) -> Path:
    """A folder laid out as `kmm-train prepare` writes it (index.csv + texts/), with a secret file beside it."""
    dataset = root / "data" / "prepared"
    (dataset / "texts").mkdir(parents=True)
    (root / "secret.txt").write_text(SECRET + "\n", encoding="utf-8")
    with open(dataset / "index.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for number, name in enumerate(names):
            writer.writerow([name, f"take{number}", "cmu", "walk", "", "train", "0"])
    (dataset / "texts" / "clip_0.txt").write_text("a person walks forward#a/DET\n", encoding="utf-8")
    return dataset


@pytest.mark.parametrize("name", ["../../secret", "../../../../../../" + "x" * 3 + "/../secret", "/etc/hostname",
                                  "sub/../../../secret", "", "a\\..\\..\\secret"])
def test_a_row_naming_a_file_outside_the_dataset_is_refused(name, tmp_path):
    dataset = _prepared_folder(tmp_path, ["clip_0", name])
    with pytest.raises(PathEscapeError, match=r"index\.csv, line 3, name: ") as caught:
        vocabulary_from_dataset(dataset, "m")
    assert isinstance(caught.value, KMMError)


def test_a_symlink_out_of_the_texts_folder_is_refused(tmp_path):
    dataset = _prepared_folder(tmp_path, ["clip_0", "linked"])
    (dataset / "texts" / "linked.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(PathEscapeError, match=r"'linked' leads outside .*texts"):
        vocabulary_from_dataset(dataset, "m")
    assert vocabulary_from_dataset(_prepared_folder(tmp_path / "ok", ["clip_0"]), "m").train_captions == \
        ("a person walks forward",)


def test_kmm_train_vocabulary_copies_nothing_from_outside_the_dataset(tmp_path):
    dataset = _prepared_folder(tmp_path, ["clip_0", "../../../secret"])
    bundle = Path(shutil.copytree(default_bundle_path(), tmp_path / "bundle"))
    before = (bundle / "vocabulary.json").read_bytes()
    completed = subprocess.run([sys.executable, "-m", "kmm_core.training.cli", "vocabulary", "--dataset",
                                str(dataset), "--bundle", str(bundle)], capture_output=True, text=True, timeout=300,
                               cwd=REPO_ROOT)
    assert completed.returncode != 0 and "Traceback" not in completed.stderr
    assert "index.csv, line 3, name: '../../../secret'" in completed.stderr
    assert (bundle / "vocabulary.json").read_bytes() == before and SECRET not in before.decode()


def test_dataset_folder_names_and_splits_stay_inside(tmp_path):
    folder = HumanML3DFolder(_prepared_folder(tmp_path, ["clip_0"]))
    (folder.root / "train.txt").write_text("clip_0\n", encoding="utf-8")
    assert folder.split_names("train") == ["clip_0"]
    for bad in ("../../secret", "..", "a/b"):
        with pytest.raises(KMMError):
            folder.text_path(bad)
    (folder.root / "texts" / "escape.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(PathEscapeError, match="clip name: 'escape' leads outside"):
        folder.load_captions("escape")


def test_a_captions_file_cannot_list_a_bvh_outside_its_folder(tmp_path):
    from kmm_core.data.sources import user_specs

    bvh_folder = tmp_path / "bvh"
    bvh_folder.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "outside.bvh").write_text("HIERARCHY\n", encoding="utf-8")
    captions = tmp_path / "captions.csv"
    captions.write_text("file,caption\n../elsewhere/outside.bvh,a person walks\n", encoding="utf-8")
    with pytest.raises(KMMError, match=r"captions\.csv, line 2: 'file' '\.\./elsewhere/outside\.bvh' must be a "
                                       r"path inside the BVH folder"):
        user_specs(bvh_folder, captions, "cmu_31")
    # A name that looks inside but leads out through a symbolic link.
    (bvh_folder / "linked").symlink_to(tmp_path / "elsewhere")
    captions.write_text("file,caption\nlinked/outside.bvh,a person walks\n", encoding="utf-8")
    with pytest.raises(PathEscapeError, match=r"captions\.csv, line 2: 'linked/outside\.bvh' leads outside"):
        user_specs(bvh_folder, captions, "cmu_31")


def test_bundle_json_file_names_stay_in_the_bundle(tmp_path):
    bundle = Path(shutil.copytree(default_bundle_path(), tmp_path / "bundle"))
    manifest = read_manifest(bundle)
    (tmp_path / "outside.json").write_text("{}", encoding="utf-8")
    (bundle / "escape.json").symlink_to(tmp_path / "outside.json")
    manifest[FILES_KEY]["escape.json"] = {"sha256": "0" * 64, "bytes": 2}
    with pytest.raises(KMMError, match=r"'escape\.json' leads outside"):
        verify_bundle_files(bundle, manifest)


def test_checked_join_accepts_nested_relative_names(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert checked_join(tmp_path, "a/b/c.bvh", where="x") == tmp_path / "a" / "b" / "c.bvh"
    with pytest.raises(PathEscapeError, match="x: 'a/b' must be a single file name"):
        checked_join(tmp_path, "a/b", where="x", single=True)
    with pytest.raises(PathEscapeError, match="is not a file name"):
        checked_join(tmp_path, None, where="x")
    assert json.dumps(str(checked_join(tmp_path, "clip", where="x", suffix=".txt"))).endswith('clip.txt"')
