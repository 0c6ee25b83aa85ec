# SPDX-License-Identifier: GPL-3.0-or-later
"""One-click backend in real Blender (bpy, headless): the built extension zip is installed into a temporary user
folder, Install Backend makes a real environment there with pip (PyTorch and everything from the package index and
pip's cache that CI reaches), Check Backend passes and a generation runs on it with the worker started from the
unpacked zip (so nothing the zip leaves out is needed).  A cancelled and a failing install leave it working.

Takes about 4 minutes on the shared 2-core machine (most of it pip unpacking torch); see the pytest durations.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from blender_scripts.runner import RESULT_PREFIX, SCRIPTS

pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory) -> Path:
    from kmm_blender import build_extension

    return build_extension.build(tmp_path_factory.mktemp("dist"))


BLENDER_52_PYTHON = Path(__file__).resolve().parents[1] / ".venv-bpy52" / "bin" / "python"  # made by .ci/run


def _install_session(blender_python: str, built_zip: Path, tiny_bundle: Path, empty_wheels: Path,
                     *extra: str) -> dict:
    # No PYTHONPATH: the worker must find kmm_core only in the installed extension, the packages only in the backend.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    completed = subprocess.run([blender_python, str(SCRIPTS / "backend_install.py"), str(built_zip),
                                str(tiny_bundle), str(empty_wheels), *extra], capture_output=True, text=True,
                               timeout=1800, check=False, env=env)
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if completed.returncode != 0 or not lines:
        raise AssertionError(f"backend_install.py failed (exit {completed.returncode})\n--- stdout ---\n"
                             f"{completed.stdout[-4000:]}\n--- stderr ---\n{completed.stderr[-4000:]}")
    result = json.loads(lines[-1][len(RESULT_PREFIX):])
    print(f"backend install test, seconds per part: {result['seconds']}")  # shown with -s / in CI logs on failure
    return result


@pytest.fixture(scope="module")
def session(built_zip, tiny_bundle, tmp_path_factory) -> dict:
    return _install_session(sys.executable, built_zip, tiny_bundle, tmp_path_factory.mktemp("wheels_missing_everything"))


@pytest.fixture(scope="module")
def session_52(built_zip, tiny_bundle, tmp_path_factory) -> dict:
    """Blender 5.2, whose Python is 3.13: Install Backend makes the environment with it, so PyTorch, numpy and the
    rest come for Python 3.13 (PyPI's torch 2.13.0 build on Linux), as a Blender 5.1+ user gets them."""
    if not BLENDER_52_PYTHON.is_file():
        pytest.skip(f"no Blender 5.2 at {BLENDER_52_PYTHON} (.ci/run makes it)")
    return _install_session(str(BLENDER_52_PYTHON), built_zip, tiny_bundle,
                            tmp_path_factory.mktemp("wheels_unused"), "install-only")


def test_blender_52_installs_a_python_313_backend_that_checks_generates_and_is_removed(session_52):
    assert session_52["install"] == "FINISHED", session_52["install_state"]
    assert session_52["python_inside_backend"]
    check = session_52["check_installed"]
    assert check["error"] == "" and all(ok for ok, _ in check["items"].values()), check["items"]
    assert "Python 3.13" in check["items"]["python"][1] and "torch 2.13.0" in check["items"]["torch"][1]
    generated = session_52["generate_installed"]
    assert generated["outcome"] == "FINISHED", generated["error"]
    assert generated["new_actions"] == ["KMM walk forward seed 3"]
    assert generated["worker_python"] == session_52["current"]["python"]
    assert generated["worker_info"]["python_version"].startswith("3.13")
    assert session_52["remove"] == "FINISHED" and session_52["after_remove"]["current"] is None


def test_without_a_backend_check_and_generate_say_to_install_it(session):
    assert "no backend is installed: press Install Backend" in session["check_before"]["error"]
    before = session["generate_before"]
    assert before["new_actions"] == [] and "no backend is installed" in before["error"]


def test_install_backend_makes_an_environment_that_passes_the_check(session):
    assert session["install"] == "FINISHED", session["install_state"]
    assert session["install_state"][0] == "done" and session["install_state"][2] == 1.0
    current = session["current"]
    assert current["variant"] == "cpu" and session["python_inside_backend"]
    assert Path(current["python"]).is_relative_to(session["backend_folder"])
    assert session["backend_folder"].startswith(session["extension_dir"].rsplit("/extensions/", 1)[0])
    check = session["check_installed"]
    assert check["outcome"] == "FINISHED" and check["error"] == ""
    assert {"python", "torch", "checkpoint", "text_encoder"} <= set(check["items"])
    assert all(ok for ok, _ in check["items"].values()), check["items"]
    assert "torch 2.13.0" in check["items"]["torch"][1]


def test_generate_runs_on_the_installed_backend_and_the_bundled_kmm_core(session):
    generated = session["generate_installed"]
    assert generated["outcome"] == "FINISHED", generated["error"]
    assert generated["new_actions"] == ["KMM walk forward seed 3"]
    assert generated["worker_python"] == session["current"]["python"]
    assert generated["worker_info"]["package_version"]


def test_a_cancelled_repair_leaves_the_backend_as_it_was(session):
    cancel = session["cancel"]
    assert session["cancel_operator"] == "FINISHED"
    assert cancel["state"] == "cancelled" and "previous backend is unchanged" in cancel["message"]
    assert not cancel["new_folder_left"] and cancel["pointer_same"] and cancel["envs_same"]


def test_a_failing_install_leaves_the_backend_and_keeps_its_log(session):
    assert session["failing"].startswith("error:") and "KMM backend install failed" in session["failing"]
    state, error = session["failing_state"]
    assert state == "failed" and "No matching distribution found" in error
    assert session["failing_unchanged"] == {"pointer_same": True, "envs_same": True}
    assert session["view_log"] == "FINISHED" and session["log_has_pip_error"]


def test_after_the_cancel_and_the_failure_the_backend_still_generates(session):
    check = session["check_after_failures"]
    assert check["error"] == "" and all(ok for ok, _ in check["items"].values())
    generated = session["generate_after_failures"]
    assert generated["outcome"] == "FINISHED" and generated["new_actions"] == ["KMM turn left seed 3"]


def test_a_backend_python_that_is_not_a_python_says_so(session):
    assert session["check_false"]["error"].startswith("/usr/bin/false is not a Python executable")
    generated = session["generate_false"]
    assert generated["new_actions"] == [] and "/usr/bin/false is not a Python executable" in generated["error"]


def test_remove_deletes_the_environment_and_check_says_so(session):
    assert session["remove"] == "FINISHED"
    assert session["after_remove"]["current"] is None and not session["after_remove"]["envs_exist"]
    assert session["after_remove"]["logs_kept"] >= 3  # install, cancelled repair, failed install
    assert "no backend is installed" in session["check_after_remove"]["error"]
