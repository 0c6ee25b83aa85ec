# SPDX-License-Identifier: GPL-3.0-or-later
"""A full disk never destroys a good file: every writer (npz, bvh, gif, weights, checkpoints, prepared datasets,
the `kmm` command) fails with one line naming the file and the system's reason, and leaves the old file and no
temporary debris.  The disk is really full (a filled tmpfs; see full_disk.py for the fallback)."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from full_disk import full_disk

from kmm_core.bvh.writer import write_bvh
from kmm_core.generation.preview import write_preview
from kmm_core.generation.timeline import Timeline
from kmm_core.motion.motion_result import MotionResult

WRITERS_SCRIPT = """
import json, sys
from pathlib import Path
import torch
from kmm_core.common.atomic_write import OutputWriteError
from kmm_core.bvh.writer import write_bvh
from kmm_core.generation.preview import write_preview
from kmm_core.motion.motion_result import MotionResult
from kmm_core.training.checkpoint import export_weights, save_checkpoint

disk, motion = Path(sys.argv[1]), MotionResult.load(sys.argv[2])
torch.manual_seed(1)
module = torch.nn.Linear(32, 32)
writers = {
    "take.npz": lambda path: motion.save(path),
    "take.bvh": lambda path: write_bvh(path, motion.root_translation, motion.local_rotations, motion.rest_offsets,
                                       motion.fps),
    "take.gif": lambda path: write_preview(motion, path),
    "weights.safetensors": lambda path: export_weights(module, path),
    "checkpoints": lambda path: save_checkpoint(path, 2, module),
}
outcome = {}
for name, write in writers.items():
    try:
        write(disk / name)
        outcome[name] = "written"
    except OutputWriteError as error:
        outcome[name] = str(error)
print(json.dumps(outcome))
"""


def _digests(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "filler"}


@pytest.fixture(scope="module")
def motion(humanml3d_fixture_dir) -> MotionResult:
    joints = np.load(humanml3d_fixture_dir / "new_joints" / "012314.npy")[:30]  # real motion, 1.5 s at 20 fps
    return MotionResult.from_joints(joints, 20.0, timeline=Timeline.single("a person walks", 1.5))


def test_every_writer_keeps_the_old_file_when_the_disk_is_full(motion, tmp_path):
    import torch

    from kmm_core.training.checkpoint import export_weights, save_checkpoint

    source = motion.save(tmp_path / "motion.npz")
    with full_disk(tmp_path) as disk:
        if disk.mounted:  # the good files, written while there is room
            motion.save(disk.folder / "take.npz")
            write_bvh(disk.folder / "take.bvh", motion.root_translation, motion.local_rotations,
                      motion.rest_offsets, motion.fps)
            write_preview(motion, disk.folder / "take.gif")
            torch.manual_seed(0)
            module = torch.nn.Linear(32, 32)
            export_weights(module, disk.folder / "weights.safetensors")
            save_checkpoint(disk.folder / "checkpoints", 1, module)
        before, entries = _digests(disk.folder), disk.entries()
        disk.fill()
        result = disk.run(["-c", WRITERS_SCRIPT, str(disk.folder), str(source)])
        assert result.returncode == 0, result.stderr[-3000:]
        outcome = json.loads(result.stdout.strip().splitlines()[-1])
        for name, message in outcome.items():
            assert disk.reason in message and name in message and "\n" not in message, (name, message)
        assert "the existing file is unchanged" in outcome["take.bvh"] or not disk.mounted
        assert "older checkpoints are unchanged" in outcome["checkpoints"]
        assert _digests(disk.folder) == before  # every good file byte for byte
        assert disk.entries() == entries  # and no temporary file or folder left behind


def test_kmm_generate_on_a_full_disk_exits_4_with_one_line_and_keeps_the_old_take(motion, tmp_path):
    with full_disk(tmp_path) as disk:
        take, preview = disk.folder / "take.bvh", disk.folder / "take.gif"
        if disk.mounted:
            write_bvh(take, motion.root_translation, motion.local_rotations, motion.rest_offsets, motion.fps)
            write_preview(motion, preview)
        before = _digests(disk.folder)
        disk.fill()
        # 4 s: larger files than the 1.5 s good ones, so writing in place would truncate them and then fail.
        result = disk.run(["-m", "kmm_core.cli", "generate", "a person walks forward", "--seconds", "4",
                           "--steps", "1", "--seed", "0", "--device", "cpu", "--quiet", "-o", str(take),
                           "--preview", str(preview)])
        lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("Loading")]
        assert result.returncode == 4, result.stderr[-3000:]
        assert "Traceback" not in result.stderr
        assert lines == [f"kmm: error: {take}: cannot write: {disk.reason}"
                         + (" (the existing file is unchanged)" if disk.mounted else "")], lines
        assert _digests(disk.folder) == before


def test_prepare_on_a_full_disk_keeps_the_previous_dataset(bandai_namco_dir, tmp_path):
    from kmm_core.data.prepare import OUTPUT_FILES

    bvh = tmp_path / "bvh"
    bvh.mkdir()
    for stem in ("dataset-2_raise-up-left-hand_normal_001", "dataset-1_bow_normal_001"):
        shutil.copy(next(bandai_namco_dir.rglob(f"{stem}.bvh")), bvh / f"{stem}.bvh")
    (bvh / "captions.csv").write_text("file,caption\ndataset-2_raise-up-left-hand_normal_001.bvh,a person raises the "
                                      "left hand\ndataset-1_bow_normal_001.bvh,a person bows\n")
    arguments = ["-m", "kmm_core.training.prepare_command", "--bvh-folder", str(bvh), "--captions", str(bvh / "captions.csv"),
                 "--joint-map", "bandai_namco", "--workers", "1", "--quiet"]
    with full_disk(tmp_path) as disk:
        out = disk.folder / "dataset"
        if disk.mounted:
            first = disk.run([*arguments, "--out", str(out)])
            assert first.returncode == 0, first.stderr
            assert set(OUTPUT_FILES) <= {p.name for p in out.iterdir()}
        before, entries = _digests(disk.folder), disk.entries()
        disk.fill()
        # A larger dataset this time (one more take), which cannot fit where the old one was.
        shutil.copy(next(bandai_namco_dir.rglob("dataset-2_walk_normal_001.bvh")), bvh / "walk.bvh")
        with (bvh / "captions.csv").open("a") as captions:
            captions.write("walk.bvh,a person walks forward\n")
        result = disk.run([*arguments, "--out", str(out), "--overwrite"])
        assert result.returncode == 4, result.stderr[-3000:]
        assert "Traceback" not in result.stderr and disk.reason in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert _digests(disk.folder) == before and disk.entries() == entries  # no half dataset, no partial folder
