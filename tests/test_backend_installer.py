# SPDX-License-Identifier: GPL-3.0-or-later
"""The backend installer without Blender: the requirements it installs are pyproject's, a path that is not a Python
says so, and a failed or cancelled install leaves the current backend exactly as it was (real venv, real pip).

The complete install (torch and all) and a generation on it run in real Blender: tests/test_blender_backend_install.py.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _import_as_extension():
    """kmm_blender.backend.installer imported the way Blender imports it: inside the extension package."""
    folder = Path(tempfile.mkdtemp(prefix="kmm_installer_package_"))
    (folder / "kmm_motion").symlink_to(REPO_ROOT, target_is_directory=True)
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module("kmm_motion.kmm_blender.backend.installer")
    finally:
        sys.path.remove(str(folder))


backend_installer = _import_as_extension()
CANCELLED, CPU, CUDA, FAILED, OFFLINE = (backend_installer.CANCELLED, backend_installer.CPU, backend_installer.CUDA,
                                         backend_installer.FAILED, backend_installer.OFFLINE)
BackendFolder, BackendInstall = backend_installer.BackendFolder, backend_installer.BackendInstall
InstallError, InstallOptions = backend_installer.InstallError, backend_installer.InstallOptions


def _requirement_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def test_the_shipped_requirements_are_pyprojects_dependencies():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert _requirement_lines(backend_installer.REQUIREMENTS) == project["dependencies"]
    assert _requirement_lines(backend_installer.CUDA_REQUIREMENTS) == project["optional-dependencies"]["cuda"]
    assert "torch==2.13.0" in project["dependencies"]  # pinned: the installed backend is the tested one


def test_requires_python_and_the_supported_pythons_agree():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11,<3.14"
    assert backend_installer.SUPPORTED_PYTHONS == ((3, 11), (3, 12), (3, 13))


def test_probe_knows_a_python_and_names_what_is_not_one(tmp_path):
    info = backend_installer.probe_python(sys.executable)
    assert info.version[:2] == sys.version_info[:2] and info.supported
    with pytest.raises(InstallError, match=r"/usr/bin/false is not a Python executable: asked for its version it "
                                           r"exited with code 1 and said nothing"):
        backend_installer.probe_python("/usr/bin/false")
    with pytest.raises(InstallError, match="is a folder, not a Python executable"):
        backend_installer.probe_python(str(tmp_path))
    with pytest.raises(InstallError, match="does not exist"):
        backend_installer.probe_python(str(tmp_path / "python9"))
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(InstallError, match="cannot be run .*not a Python executable"):
        backend_installer.probe_python(str(text))  # not executable
    with pytest.raises(InstallError, match="no Python is set"):
        backend_installer.probe_python("")


def test_pip_arguments_for_each_choice(tmp_path):
    base = ["install", "--progress-bar", "off", "--disable-pip-version-check", "--no-compile", "-r",
            str(backend_installer.REQUIREMENTS)]
    assert backend_installer.default_torch_index(CPU, "linux") == backend_installer.PYTORCH_CPU_INDEX
    assert backend_installer.default_torch_index(CPU, "win32") == backend_installer.PYTORCH_CPU_INDEX
    assert backend_installer.default_torch_index(CPU, "darwin") is None
    assert backend_installer.default_torch_index(CUDA, "linux") is None  # PyPI's Linux torch is the CUDA build
    assert backend_installer.default_torch_index(CUDA, "win32") == backend_installer.PYTORCH_CUDA_INDEX_WINDOWS
    assert InstallOptions("python", CPU, torch_index="").pip_install_arguments() == base
    assert InstallOptions("python", CPU, torch_index="https://example.invalid/i").pip_install_arguments() == \
        [*base, "--extra-index-url", "https://example.invalid/i"]
    assert InstallOptions("python", OFFLINE, wheel_folder=str(tmp_path)).pip_install_arguments() == \
        [*base, "--no-index", "--find-links", str(tmp_path.resolve())]
    with pytest.raises(InstallError, match="offline install needs a folder of wheels: none is set"):
        InstallOptions("python", OFFLINE).check()
    with pytest.raises(InstallError, match="unknown install choice 'gpu'"):
        InstallOptions("python", "gpu").check()


def test_disk_space_is_checked_first(tmp_path):
    backend_installer.check_disk_space(tmp_path, 1)
    with pytest.raises(InstallError, match=r"not enough disk space: the backend needs about .* GiB in .*, only "):
        backend_installer.check_disk_space(tmp_path, 10**18)


# ---- real installs that must not replace the working backend -------------------------------------------------------
@pytest.fixture(scope="module")
def working_backend(tmp_path_factory) -> BackendFolder:
    """A backend folder whose current environment is a real venv (no torch: enough to see it stays untouched)."""
    folder = BackendFolder(tmp_path_factory.mktemp("backend"))
    env = folder.new_environment("cpu")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    folder.activate(env, {"variant": "cpu", "installed": "earlier"})
    return folder


def _pointer(folder: BackendFolder) -> str:
    return (folder.root / BackendFolder.POINTER).read_text()


def test_a_failing_offline_install_leaves_the_working_backend(working_backend, tmp_path):
    before, envs_before = _pointer(working_backend), sorted(working_backend.envs.iterdir())
    wheels = tmp_path / "wheels"
    wheels.mkdir()  # a folder of wheels missing every wheel
    install = BackendInstall(working_backend, InstallOptions(sys.executable, OFFLINE, wheel_folder=str(wheels)))
    progress = install.wait(600)
    assert progress.state == FAILED
    # (pip's own configuration still applies: a find-links folder set there may provide some of the wheels)
    assert "pip could not install the backend (exit code 1)" in progress.error
    assert "No matching distribution found for" in progress.error
    assert _pointer(working_backend) == before and sorted(working_backend.envs.iterdir()) == envs_before
    assert Path(working_backend.current_python()).is_file()
    log = install.log_path.read_text()
    assert "--no-index --find-links" in log and "No matching distribution found for" in log
    assert f"removed the unfinished {install.env_dir}" in log and log.rstrip().endswith(progress.error)
    assert working_backend.latest_log() == install.log_path


def test_a_cancelled_install_leaves_the_working_backend(working_backend):
    before, envs_before = _pointer(working_backend), sorted(working_backend.envs.iterdir())
    install = BackendInstall(working_backend, InstallOptions(sys.executable, CPU, torch_index=""))
    deadline = time.monotonic() + 300
    while not install.progress.message.startswith("Installing packages") and time.monotonic() < deadline:
        assert not install.finished, install.progress.error
        time.sleep(0.05)
    assert install.env_dir is not None and install.env_dir.exists()  # pip is running in the new folder
    install.cancel()
    progress = install.wait(120)
    assert progress.state == CANCELLED and "previous backend is unchanged" in progress.message
    assert not install.env_dir.exists()
    assert _pointer(working_backend) == before and sorted(working_backend.envs.iterdir()) == envs_before


def test_an_install_with_a_python_that_is_not_one_says_so(working_backend):
    before = _pointer(working_backend)
    install = BackendInstall(working_backend, InstallOptions("/usr/bin/false", CPU))
    progress = install.wait(60)
    assert progress.state == FAILED and progress.error.startswith("/usr/bin/false is not a Python executable")
    assert install.env_dir is None and _pointer(working_backend) == before


def test_an_unsupported_python_is_refused_before_anything_is_made(working_backend):
    old = sorted(Path(sys.base_prefix).parent.glob("3.10*/bin/python3.10"))
    if not old:
        pytest.fail("this test needs a Python 3.10 beside the base Python (pyenv versions)")
    install = BackendInstall(working_backend, InstallOptions(str(old[0]), CPU))
    progress = install.wait(60)
    assert progress.state == FAILED and "is Python 3.10; the backend needs Python 3.11, 3.12, 3.13" in progress.error
    assert install.env_dir is None


def test_remove_takes_the_pointer_first_and_every_environment(tmp_path):
    folder = BackendFolder(tmp_path / "backend")
    env = folder.new_environment("cpu")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    folder.activate(env, {"variant": "cpu"})
    stale = folder.new_environment("cpu")
    stale.mkdir()
    assert json.loads((folder.root / "current.json").read_text())["env"] == str(env)
    assert folder.remove_stale() == [stale] and env.is_dir()
    leftover = folder.root / "removing-earlier"  # a delete cut short by quitting Blender
    (leftover / "bin").mkdir(parents=True)
    deleting = folder.remove()
    assert folder.current() is None and folder.current_python() == "" and not folder.envs.exists()
    deleting.join(60)
    assert list(folder.root.iterdir()) == [] and not leftover.exists()
    assert folder.remove() is None  # nothing left to delete


def test_a_worker_python_that_is_not_a_python_fails_the_job_saying_so():
    session_module = importlib.import_module("kmm_motion.kmm_blender.backend.session")
    session = session_module.BackendSession(session_module.BackendConfig(python="/usr/bin/false"))
    job = session.submit(session_module.Generate(
        timeline={"fps": 20, "segments": [{"prompt": "walk", "start": 0, "end": 40}]}, output_dir="/tmp", seed=1,
        variations=1))
    session.run_to_completion(60)
    assert job.state == "failed"
    assert job.error == ("/usr/bin/false is not a Python executable: asked for its version it exited with code 1 "
                         "and said nothing")
    assert "Own Backend Python" in job.advice
