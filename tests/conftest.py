# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared fixtures: where the real data lives, and caches built once per test session."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("KMM_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
BACKEND_PYTHON313 = Path(os.environ.get("KMM_BACKEND_PYTHON313") or REPO_ROOT / ".venv-backend313" / "bin" / "python")
"""The backend on Python 3.13, as Blender 5.1+'s add-on makes it (.ci/run makes it; tests/test_backend_python313.py)."""


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set KMM_SHARED_DATA to the shared/data folder)")
    return path


@pytest.fixture(scope="session")
def humanml3d_fixture_dir() -> Path:
    return _require(SHARED_DATA / "humanml3d-fixture")


@pytest.fixture(scope="session")
def normalised_fixture_clip(humanml3d_fixture_dir):
    """The HumanML3D fixture clip 012314, normalised with the fixture's Mean/Std: a float32 torch tensor (170, 263),
    shared by the whole session, so slice or copy it, never change it in place."""
    from model_test_data import load_normalised_fixture_clip

    return load_normalised_fixture_clip(humanml3d_fixture_dir)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module (use with `pytest.mark.usefixtures`): tiny models run several times faster
    on one thread than on two contended ones, and leave the other core to other processes."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def bandai_namco_archive() -> Path:
    return _require(SHARED_DATA / "bandai-namco" / "bandai-namco-bvh.tar.xz")


@pytest.fixture(scope="session")
def cmu_archive() -> Path:
    return _require(SHARED_DATA / "cmu" / "cmu-bvh.tar.xz")


@pytest.fixture(scope="session")
def cmu_descriptions() -> Path:
    return _require(SHARED_DATA / "cmu" / "cmu-descriptions.json")


@pytest.fixture(scope="session")
def extracted_archives(tmp_path_factory, bandai_namco_archive, cmu_archive) -> Path:
    """Both BVH archives extracted once per session: <dir>/Bandai-Namco-Research-Motiondataset-{1,2}, <dir>/data (CMU)."""
    target = tmp_path_factory.mktemp("archives")
    for archive in (bandai_namco_archive, cmu_archive):
        with tarfile.open(archive, "r:xz") as tar:
            tar.extractall(target, filter="data")
    return target


@pytest.fixture(scope="session")
def bandai_namco_dir(extracted_archives) -> Path:
    return extracted_archives


@pytest.fixture(scope="session")
def cmu_bvh_dir(extracted_archives) -> Path:
    return extracted_archives / "data"


@pytest.fixture(scope="session")
def bandai_walk_source(bandai_namco_dir):
    """The real Bandai-Namco walk `dataset-1_walk_normal_001.bvh` as a retargeting source (`SourceMotion`: canonical
    joints, rotations by IK, 30 fps)."""
    from kmm_core.bvh import builtin_joint_map, bvh_to_canonical_joints, read_bvh
    from kmm_core.retarget.bvh_output import resample_source
    from kmm_core.retarget.transfer import source_from_positions

    clip = read_bvh(bandai_namco_dir / "Bandai-Namco-Research-Motiondataset-1" / "data" / "dataset-1_walk_normal_001.bvh")
    joints = bvh_to_canonical_joints(clip, builtin_joint_map("bandai_namco"), None)
    return resample_source(source_from_positions(joints, clip.fps), 30.0)


@pytest.fixture(scope="session")
def prepared_dataset_args(bandai_namco_dir, cmu_archive, cmu_descriptions) -> list[str]:
    """`kmm-train prepare` arguments (without --out) of the tiny `prepared_dataset`: 3 takes per dataset/content of
    Bandai-Namco (extracted folder) and CMU (read straight from its archive), mirrored, seed 0."""
    return ["--bandai-namco", str(bandai_namco_dir), "--cmu", str(cmu_archive), "--cmu-descriptions",
            str(cmu_descriptions), "--limit-per-content", "3", "--seed", "0", "--workers", "1", "--quiet"]


@pytest.fixture(scope="session")
def prepared_dataset(tmp_path_factory, prepared_dataset_args) -> Path:
    """A tiny HumanML3D-layout dataset written by `kmm-train prepare` from real BVH clips (77 takes,
    180 clips incl. mirrors, 16 minutes, 40..196 frames each; train/val/test.txt, Mean.npy/Std.npy, index.csv,
    report.json; ~10 s after the archive extraction)."""
    from kmm_core.training.prepare_command import main

    out = tmp_path_factory.mktemp("prepared") / "dataset"
    if main([*prepared_dataset_args, "--out", str(out)]) != 0:
        raise RuntimeError("kmm-train prepare failed on the test subset")
    return out


TINY_TRAINING_CONFIG = REPO_ROOT / "training" / "configs" / "tiny.toml"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, prepared_dataset) -> Path:
    """A run folder of `kmm-train all --config training/configs/tiny.toml` on `prepared_dataset` (every stage,
    tiny models; about a minute on 2 cores). Holds <stage>.safetensors/.json, the Trainer folders and `bundle/`."""
    from kmm_core.training.cli import main

    out = tmp_path_factory.mktemp("tiny_run") / "run"
    argv = ["all", "--config", str(TINY_TRAINING_CONFIG), "--out", str(out), "--set", f"data.root={prepared_dataset}",
            "--device", "cpu", "--no-progress", "--threads", "1"]
    if main(argv) != 0:
        raise RuntimeError("kmm-train all failed on the tiny config")
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tiny_run) -> Path:
    """A loadable model bundle folder (float16 weights) trained by `tiny_run`: use `ModelBundle.load(tiny_bundle)`."""
    return tiny_run / "bundle"


@pytest.fixture(scope="session")
def tiny_model(tiny_bundle):
    """`tiny_bundle` loaded once per session on the CPU (a ModelBundle); loading MiniLM takes seconds."""
    from kmm_core.bundle.model_bundle import ModelBundle

    return ModelBundle.load(tiny_bundle, device="cpu")


@pytest.fixture(scope="session")
def shipped_bundle():
    """The shipped default model (`kmm_core/checkpoints`), loaded once per session on the CPU, torch on one thread."""
    import torch

    from kmm_core.bundle.model_bundle import ModelBundle, default_bundle_path

    torch.set_num_threads(1)
    return ModelBundle.load(default_bundle_path(), device="cpu")


@pytest.fixture(scope="session")
def extra_mocap_dir(tmp_path_factory) -> Path:
    """`extra/extra-mocap.tar.xz` extracted once per session (~10 s): hdm05-subset-jointlearning/,
    cmu-iclone-dragonforged/, cmu-8action-expmap/, deepmimic-humanoid3d/ (see extra/README.md)."""
    archive = _require(SHARED_DATA / "extra" / "extra-mocap.tar.xz")
    target = tmp_path_factory.mktemp("extra_mocap")
    with tarfile.open(archive, "r:xz") as tar:
        tar.extractall(target, filter="data")
    return target


@pytest.fixture(scope="session")
def real_action_clips(extra_mocap_dir, tmp_path_factory):
    """dataset/content -> joints of a few real HDM05 and DeepMimic action clips (`tests/real_action_clips.py`),
    prepared once per session."""
    from tests.real_action_clips import prepared_action_clips

    return prepared_action_clips(extra_mocap_dir, tmp_path_factory.mktemp("action_clips"))


@pytest.fixture(scope="session")
def hdm05_dir(extra_mocap_dir) -> Path:
    return extra_mocap_dir / "hdm05-subset-jointlearning"


@pytest.fixture(scope="session")
def character_creator_dir(extra_mocap_dir) -> Path:
    """The Character Creator (CC_Base rig) BVH clips of extra-mocap.tar.xz: <dir>/<subject>/<subject>_<trial>.bvh
    (see ../shared/data/extra/cmu-iclone-dragonforged.README.md)."""
    return extra_mocap_dir / "cmu-iclone-dragonforged" / "bvh" / "All_BVH" / "subjects"


@pytest.fixture(scope="session")
def generated_take(tmp_path_factory) -> Path:
    """A MotionResult generated once per session by the shipped model kmm-small (`kmm generate`, 6 s, seed 3) from
    "a person walks forward and then waves with the right hand", which it reads with waving captions: the arms move,
    the hips travel a couple of centimetres."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("generated") / "take.npz"
    done = subprocess.run([sys.executable, "-m", "kmm_core.cli", "generate",
                           "a person walks forward and then waves with the right hand", "--seconds", "6", "--seed",
                           "3", "-o", str(out), "--quiet"], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
                               "PYTHONPATH": str(REPO_ROOT)})
    if done.returncode != 0:
        raise RuntimeError(f"kmm generate failed: {done.stderr[-2000:]}")
    return out


@pytest.fixture(scope="session")
def addon_module(tmp_path_factory):
    """Import a module of the add-on the way Blender does, inside the extension package (`kmm_motion.`, the
    repository root), so its relative imports of kmm_core work: `addon_module("kmm_blender.timeline.segment_table")`."""
    import importlib
    import sys

    folder = tmp_path_factory.mktemp("package")
    (folder / "kmm_motion").symlink_to(Path(__file__).resolve().parents[1], target_is_directory=True)
    sys.path.insert(0, str(folder))
    try:
        yield lambda name: importlib.import_module(f"kmm_motion.{name}")
    finally:
        sys.path.remove(str(folder))


# ---- a real model trained only on commercially usable data (#14: model choice, licences) ------------------------------
OPEN_HDM05_CLASSES = ("squat1Reps", "kickLFront1Reps", "grabHighR", "hopBothLegs1hops", "lieDownFloor")
OPEN_RUN_STEPS = 8


@pytest.fixture(scope="session")
def open_prepared_dataset(extra_mocap_dir, cmu_archive, cmu_descriptions, tmp_path_factory) -> Path:
    """`kmm-train prepare` on commercially usable sources only: CMU BVH (3 takes per action) + HDM05 ASF/AMC (3 clips
    of each of 5 classes); 24 takes, train/val/test all non-empty."""
    import shutil

    from kmm_core.training.prepare_command import main

    hdm05 = extra_mocap_dir / "hdm05-subset-jointlearning"
    subset = tmp_path_factory.mktemp("open_hdm05") / "hdm05"
    shutil.copytree(hdm05 / "asf", subset / "asf")
    for label in OPEN_HDM05_CLASSES:
        for found in sorted(hdm05.rglob(f"HDM_*_{label}_*.amc"))[:3]:
            (subset / found.relative_to(hdm05)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(found, subset / found.relative_to(hdm05))
    out = tmp_path_factory.mktemp("open_prepared") / "dataset"
    if main(["--out", str(out), "--cmu", str(cmu_archive), "--cmu-descriptions", str(cmu_descriptions), "--hdm05",
             str(subset), "--limit-per-content", "3", "--min-source-frames", "10", "--workers", "1", "--quiet",
             "--seed", "0"]) != 0:
        raise RuntimeError("kmm-train prepare failed on the open subset")
    return out


@pytest.fixture(scope="session")
def open_run(open_prepared_dataset, tmp_path_factory) -> Path:
    """`kmm-train all --name kmm-small-open` with the tiny config cut to OPEN_RUN_STEPS steps per stage on
    `open_prepared_dataset` (~30 s): its `bundle/` is an open-licence bundle with vocabulary files."""
    from kmm_core.training.cli import main

    run = tmp_path_factory.mktemp("open_run") / "run"
    argv = ["all", "--config", str(TINY_TRAINING_CONFIG), "--out", str(run), "--set",
            f"data.root={open_prepared_dataset}", "--device", "cpu", "--no-progress", "--threads", "1",
            "--name", "kmm-small-open"]
    for stage in ("tokenizer", "aligner", "evaluator", "generator"):
        for key, value in (("steps", OPEN_RUN_STEPS), ("eval_every", 4), ("checkpoint_every", 4), ("log_every", 2)):
            argv += ["--set", f"train.{stage}.{key}={value}"]
    if main(argv) != 0:
        raise RuntimeError("kmm-train all failed on the open subset")
    return run


@pytest.fixture(scope="session")
def model_shelf(open_run, tiny_bundle, tmp_path_factory) -> Path:
    """A checkpoints folder (for KMM_CHECKPOINTS_DIR) holding kmm-small (the tiny default bundle, Bandai-Namco + CMU)
    and kmm-small-open (`open_run`'s bundle, CMU + HDM05)."""
    import shutil

    root = tmp_path_factory.mktemp("model_shelf") / "checkpoints"
    shutil.copytree(tiny_bundle, root / "kmm-small")
    shutil.copytree(open_run / "bundle", root / "kmm-small-open")
    return root
