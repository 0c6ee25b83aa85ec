# SPDX-License-Identifier: GPL-3.0-or-later
"""The extension package: Blender's own tool validates and builds it; real Blender installs, enables, disables and
uninstalls it without leaving anything registered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from blender_scripts.runner import run_blender_script

pytestmark = pytest.mark.blender
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory) -> Path:
    from kmm_blender import build_extension

    return build_extension.build(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def installed(built_zip):
    return run_blender_script("install_extension.py", str(built_zip))


def test_manifest_fields_follow_the_extension_rules():
    manifest = tomllib.loads((REPO_ROOT / "blender_manifest.toml").read_text())
    assert manifest["schema_version"] == "1.0.0" and manifest["id"] == "kmm_motion"
    # Code GPL; the bundled weights inherit the training data's non-commercial licence, and say so.
    assert manifest["type"] == "add-on" and manifest["license"] == ["SPDX:GPL-3.0-or-later", "SPDX:CC-BY-NC-4.0"]
    assert "network" in manifest["permissions"] and "clipboard" not in manifest["permissions"]
    assert manifest["blender_version_min"] == "4.2.0"
    for text in (manifest["tagline"], *manifest["permissions"].values()):
        assert len(text) <= 64 and text[-1] not in ".!?,;:"


def test_blender_ext_validate_accepts_the_repository():
    from kmm_blender import build_extension

    assert "Success" in build_extension.validate()


def test_validate_rejects_a_bad_manifest(tmp_path):
    from kmm_blender import build_extension

    text = (REPO_ROOT / "blender_manifest.toml").read_text()
    (tmp_path / "blender_manifest.toml").write_text(text.replace('tagline = "', 'tagline = "Ends with a dot.'))
    (tmp_path / "__init__.py").write_text("def register(): pass\ndef unregister(): pass\n")
    with pytest.raises(build_extension.ExtensionBuildError, match="tagline"):
        build_extension.validate(tmp_path)


def test_zip_holds_the_add_on_and_kmm_core_but_no_development_files(built_zip):
    names = zipfile.ZipFile(built_zip).namelist()
    assert {"blender_manifest.toml", "__init__.py", "kmm_blender/__init__.py", "kmm_blender/takes/keyframe_writer.py",
            "kmm_core/motion/skeleton.py", "kmm_core/worker/client.py"} <= set(names)
    for excluded in ("tests/", "training/", "benchmarks/", "docs/", ".ci/", "pyproject.toml"):
        assert not any(name.startswith(excluded) for name in names), excluded
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)
    # kmm_core is bundled for the worker (it runs this very copy: kmm_core/worker/client.py, PYTHONPATH), without
    # what it never imports: training and evaluation code, data preparation, the evaluator's weights.
    assert {"kmm_core/model/weights.py", "kmm_core/worker/server.py", "kmm_core/checkpoints/kmm-small/generator.safetensors",
            "kmm_blender/backend/requirements.txt", "kmm_blender/backend/requirements_cuda.txt"} <= set(names)
    for unused in ("kmm_core/training/", "kmm_core/evaluation/",
                   "kmm_core/data/", "kmm_core/checkpoints/kmm-small/evaluator."):
        assert not any(name.startswith(unused) for name in names), unused
    # #13's speed path: the CPU scan's C++ source (compiled at first use), MiniLM in plain PyTorch, batched inpainting.
    assert {"kmm_core/model/compiled_selective_scan.py", "kmm_core/model/selective_scan_kernel.cpp",
            "kmm_core/model/numba_selective_scan.py", "kmm_core/model/numba_scan_kernels.py",
            "kmm_core/model/minilm_bert.py", "kmm_core/generation/transition_inpainting.py"} <= set(names)
    # The worker's prompt check: its modules and the shipped model's vocabulary and word-check files.
    assert {"kmm_core/bundle/vocabulary.py", "kmm_core/generation/prompt_vocabulary.py", "kmm_core/vocab_command.py",
            "kmm_core/bundle/word_strength.py", "kmm_core/checkpoints/kmm-small/vocabulary.json",
            "kmm_core/checkpoints/kmm-small/vocabulary.safetensors",
            "kmm_core/checkpoints/kmm-small/word_checks.json"} <= set(names)
    manifest = json.loads(zipfile.ZipFile(built_zip).read("kmm_core/checkpoints/kmm-small/bundle.json"))
    assert manifest["components"] == ["tokenizer", "generator", "aligner", "standing_decoder", "walking_decoder",
                                      "gesture_decoder"]
    assert {"kmm_core/checkpoints/kmm-small/standing_decoder.safetensors",  # standing prompts' decoder
            "kmm_core/checkpoints/kmm-small/standing_decoder.json",
            "kmm_core/checkpoints/kmm-small/walking_decoder.safetensors",  # plain walks' decoder
            "kmm_core/checkpoints/kmm-small/walking_decoder.json",
            "kmm_core/checkpoints/kmm-small/gesture_decoder.safetensors",  # standing prompts' arms
            "kmm_core/checkpoints/kmm-small/gesture_decoder.json"} <= set(names)
    assert "CC BY-NC 4.0" in manifest["licence"]


UNPACKED_CHECK = """
import json, sys
import kmm_core
assert kmm_core.__file__.startswith(sys.argv[1]), kmm_core.__file__
import kmm_core.worker.server
from kmm_core.generation.prompt_vocabulary import prompt_warnings
from kmm_core.bundle.model_bundle import ModelBundle
from kmm_core.vocab_command import vocabulary_summary
from kmm_core.bundle.vocabulary import read_vocabulary
bundle = ModelBundle.load(device="cpu")
warnings = prompt_warnings(bundle, [(0, "a person walks forward"), (1, "a person juggles three balls"),
                                   (2, "a person kicks")])
print(json.dumps({"actions": len(vocabulary_summary(read_vocabulary(bundle.path))["actions"]),
                  "warned": [(w["segment"], w["prompt"], len(w["suggestions"])) for w in warnings]}))
"""


def test_the_unpacked_zip_alone_checks_prompts_against_the_shipped_vocabulary(built_zip, tmp_path):
    """The worker run from the zip (no training/data/evaluation code in it) imports the prompt check, and the
    shipped model's files in the zip warn about an unknown prompt and a weak word ("kick", with one strong word's
    prompt to try), not about a known one."""
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(built_zip).extractall(unpacked)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(PYTHONPATH=str(unpacked), OMP_NUM_THREADS="1")
    completed = subprocess.run([sys.executable, "-c", UNPACKED_CHECK, str(unpacked)], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=600, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    outcome = json.loads(completed.stdout.strip().splitlines()[-1])
    assert outcome["actions"] > 10
    # "a person kicks": its weak word's strong prompt, then (caption_checks.json: like captions the model did not
    # perform) the closest captions it did.
    assert outcome["warned"] == [[1, "a person juggles three balls", 3], [2, "a person kicks", 3]]


def test_only_files_git_tracks_are_packed(tmp_path):
    from kmm_blender import build_extension

    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "kept.py").write_text("x = 1\n")
    (repo / "kmm_core" / "evaluation").mkdir(parents=True)
    (repo / "kmm_core" / "evaluation" / "evaluate.py").write_text("x = 2\n")
    subprocess.run(["git", "-C", str(repo), "add", "kept.py", "kmm_core"], check=True)
    (repo / "demo2.bvh").write_text("stray file of the working tree\n")
    assert build_extension.tracked_files(repo) == ["kept.py", "kmm_core/evaluation/evaluate.py"]
    stage = tmp_path / "stage"
    assert build_extension.stage_sources(repo, stage) == ["kept.py"]
    assert sorted(p.name for p in stage.rglob("*") if p.is_file()) == ["kept.py"]
    with pytest.raises(build_extension.ExtensionBuildError, match="not a git checkout"):
        build_extension.tracked_files(stage)


def test_install_enables_the_add_on_with_its_panel_operators_and_preferences(installed):
    assert installed["install"] == ["FINISHED"] and installed["enabled"] is True
    types = installed["installed"]["types"]
    assert {"KMM_PT_main", "KMM_PT_settings", "KMM_UL_segments", "KMM_OT_generate", "KMM_OT_cancel"} <= set(types)
    assert installed["installed"]["has_scene_kmm"] is True
    assert "kmm" in installed["installed"]["scene_props"] and "kmm_job" in installed["installed"]["wm_props"]
    assert installed["preferences"][1] == "auto"
    assert "kmm_core" in installed["installed_files"] and "kmm_blender" in installed["installed_files"]
    assert installed["ops_segment_add"] == ["FINISHED"] and len(installed["segments"]) == 1


def test_backend_check_reports_what_is_missing_instead_of_failing(installed):
    # The test Python has no `kmm doctor` yet / or has it: either way a report, never an exception.
    check = installed["check_backend"]
    assert check in (["FINISHED"], ["CANCELLED"]) or check.startswith("error: Error: Backend check failed")


def test_disable_and_uninstall_leave_nothing_behind(installed):
    assert installed["disabled"] is True
    assert installed["after_disable"] == installed["before"]
    assert installed["files_after_uninstall"] is False
