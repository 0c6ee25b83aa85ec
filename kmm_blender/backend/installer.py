# SPDX-License-Identifier: GPL-3.0-or-later
"""Install the model's backend: a Python virtual environment holding the pinned requirements, made without blocking.

The add-on's Install Backend button (ui/backend_buttons.py) is a thin layer over this module, which has no bpy and is
tested on its own.  An install runs its steps on a background thread, each step a child process whose output goes
line by line into a log file kept in the backend folder:

1. ask the chosen Python who it is (a path that is not a Python says so here, in words);
2. check the free disk space;
3. `python -m venv envs/<new>` (a fresh folder: the working backend is never touched);
4. `pip install -r requirements.txt` (CPU, CUDA or offline from a folder of wheels);
5. CUDA only: the fused Mamba kernels, best effort (a failure is a warning: the PyTorch scan works everywhere);
6. `kmm doctor --json` in the new environment with the add-on's bundled kmm_core, as the worker will run;
7. switch: `current.json` is replaced atomically to name the new environment, then the old one is deleted.

A failure or a cancel at any step deletes the new folder and leaves `current.json`, hence the working backend,
as it was.  The layout of the backend folder:

    <backend>/current.json        {"python": ".../envs/<name>/bin/python", "variant": ..., "installed": ...}
    <backend>/envs/<name>/        one virtual environment per install
    <backend>/logs/install-*.log  the pip log of every install (the newest one is shown by View Log)
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ...kmm_core.common.errors import KMMError
from ...kmm_core.worker.client import worker_environment

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
CUDA_REQUIREMENTS = HERE / "requirements_cuda.txt"
PYTORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PYTORCH_CUDA_INDEX_WINDOWS = "https://download.pytorch.org/whl/cu128"  # PyPI's Windows torch is CPU-only
SUPPORTED_PYTHONS = ((3, 11), (3, 12), (3, 13))

CPU, CUDA, OFFLINE = "cpu", "cuda", "offline"
VARIANTS = (CPU, CUDA, OFFLINE)
GIB = 2**30
# Free space an install needs in the backend folder (the environment plus pip's unpacking), measured on Linux:
# the CPU environment takes 1.6 GiB (torch CPU 1.1 GiB); PyPI's CUDA torch brings about 5 GiB of NVIDIA libraries.
NEEDED_BYTES = {CPU: 3 * GIB, CUDA: 10 * GIB}
EXPECTED_PACKAGES = 55  # distributions pip collects for the CPU list on Linux (progress estimate only)

# Install states
RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"

_PROBE = ("import json, sys; print('KMM_PROBE ' + json.dumps({'version': list(sys.version_info[:3]), "
          "'executable': sys.executable, 'prefix': sys.prefix}))")
_CLEAN_VARIABLES = ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "PYTHONNOUSERSITE",
                    "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")


class InstallError(KMMError):
    """The backend cannot be installed (the message says why in words)."""


@dataclass(frozen=True)
class PythonInfo:
    executable: str
    version: tuple[int, int, int]

    @property
    def supported(self) -> bool:
        return self.version[:2] in SUPPORTED_PYTHONS


def probe_python(python: str, timeout: float = 60.0) -> PythonInfo:
    """Run `python` and ask its version; InstallError in words when it is missing or not a Python at all."""
    if not python:
        raise InstallError("no Python is set")
    path = Path(python)
    if not path.exists():
        raise InstallError(f"{python} does not exist")
    if path.is_dir():
        raise InstallError(f"{python} is a folder, not a Python executable (pick the python file inside its bin/ "
                           "or Scripts\\ folder)")
    try:
        completed = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=timeout,
                                   env=clean_environment(), errors="replace", check=False)
    except OSError as error:
        raise InstallError(f"{python} cannot be run ({error.strerror or error}): it is not a Python executable") \
            from None
    except subprocess.TimeoutExpired:
        raise InstallError(f"{python} did not answer within {timeout:g} s when asked for its version: "
                           "it is not a Python executable, or it hangs") from None
    lines = [line for line in completed.stdout.splitlines() if line.startswith("KMM_PROBE ")]
    if completed.returncode != 0 or not lines:
        said = (completed.stderr or completed.stdout).strip().splitlines()
        raise InstallError(f"{python} is not a Python executable: asked for its version it exited with code "
                           f"{completed.returncode} and " + (f"said {said[-1].strip()!r}" if said else "said nothing"))
    data = json.loads(lines[-1][len("KMM_PROBE "):])
    major, minor, micro = (int(part) for part in data["version"][:3])
    return PythonInfo(executable=str(data["executable"] or python), version=(major, minor, micro))


def clean_environment() -> dict[str, str]:
    """Our environment without the variables that configure a particular Python (Blender's, a venv's)."""
    env = dict(os.environ)
    for name in _CLEAN_VARIABLES:
        env.pop(name, None)
    env["PYTHONIOENCODING"] = "utf-8"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def environment_python(env_dir: Path) -> Path:
    """The interpreter of the virtual environment `env_dir`."""
    return env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def default_torch_index(variant: str, platform: str = sys.platform) -> str | None:
    """The extra index PyTorch's wheels come from by default: PyPI's Linux torch is the CUDA build (several GiB),
    PyPI's Windows torch is CPU-only, macOS's is the only build."""
    if variant == CPU and (platform.startswith("linux") or platform == "win32"):
        return PYTORCH_CPU_INDEX
    if variant == CUDA and platform == "win32":
        return PYTORCH_CUDA_INDEX_WINDOWS
    return None


@dataclass(frozen=True)
class InstallOptions:
    """What to install. `torch_index`: None = default_torch_index(), "" = only pip's own configuration."""

    python: str  # the interpreter the environment is made from (Blender's own by default)
    variant: str = CPU
    wheel_folder: str = ""  # OFFLINE: the folder of wheels (pip --no-index --find-links)
    torch_index: str | None = None

    def check(self) -> None:
        if self.variant not in VARIANTS:
            raise InstallError(f"unknown install choice {self.variant!r} (expected one of {', '.join(VARIANTS)})")
        if self.variant == OFFLINE:
            folder = Path(self.wheel_folder) if self.wheel_folder else None
            if folder is None or not folder.is_dir():
                raise InstallError("the offline install needs a folder of wheels: "
                                   + (f"{self.wheel_folder} is not a folder" if self.wheel_folder else "none is set"))

    def pip_install_arguments(self, requirements: Path = REQUIREMENTS) -> list[str]:
        """Arguments after `python -m pip`."""
        # --no-compile: no .pyc for torch's thousands of files now (a third of the install time); Python writes
        # them on first import.
        arguments = ["install", "--progress-bar", "off", "--disable-pip-version-check", "--no-compile",
                     "-r", str(requirements)]
        if self.variant == OFFLINE:
            return [*arguments, "--no-index", "--find-links", str(Path(self.wheel_folder).resolve())]
        index = default_torch_index(self.variant) if self.torch_index is None else self.torch_index
        return [*arguments, "--extra-index-url", index] if index else arguments

    def needed_bytes(self) -> int:
        if self.variant == OFFLINE:
            wheels = sum(p.stat().st_size for p in Path(self.wheel_folder).glob("*") if p.is_file())
            return 3 * wheels + GIB // 2  # unpacked wheels take about three times their size
        return NEEDED_BYTES[self.variant]


def check_disk_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise InstallError(f"not enough disk space: the backend needs about {needed / GIB:.1f} GiB in {folder}, "
                           f"only {free / GIB:.1f} GiB are free")


class BackendFolder:
    """The backend folder in the extension's user folder: environments, the pointer to the current one, logs."""

    POINTER = "current.json"
    TRASH_PREFIX = "removing-"

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.envs = self.root / "envs"
        self.logs = self.root / "logs"

    def current(self) -> dict | None:
        """The current install ({"python", "env", "variant", ...}) or None when none is installed (or it is gone)."""
        try:
            data = json.loads((self.root / self.POINTER).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or not Path(str(data.get("python", ""))).is_file():
            return None
        return data

    def current_python(self) -> str:
        current = self.current()
        return str(current["python"]) if current else ""

    def new_environment(self, variant: str) -> Path:
        self.envs.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path, suffix = self.envs / f"{stamp}-{variant}", 0
        while path.exists():
            suffix += 1
            path = self.envs / f"{stamp}-{variant}-{suffix}"
        return path

    def activate(self, env_dir: Path, record: dict) -> None:
        """Make `env_dir` the current backend: one atomic replace of the pointer file."""
        pointer = self.root / self.POINTER
        temporary = pointer.with_suffix(".json.tmp")
        temporary.write_text(json.dumps({**record, "env": str(env_dir),
                                         "python": str(environment_python(env_dir))}, indent=2), encoding="utf-8")
        os.replace(temporary, pointer)

    def remove_stale(self) -> list[Path]:
        """Delete every environment the pointer does not name (old ones, leftovers of a crash); returns them."""
        current = self.current()
        keep = Path(current["env"]).resolve() if current and current.get("env") else None
        removed = []
        for env in sorted(self.envs.glob("*")) if self.envs.is_dir() else []:
            if env.is_dir() and env.resolve() != keep:
                shutil.rmtree(env, ignore_errors=True)
                removed.append(env)
        for trash in sorted(self.root.glob(f"{self.TRASH_PREFIX}*")):  # a Remove cut short by quitting Blender
            shutil.rmtree(trash, ignore_errors=True)
        return removed

    def remove(self) -> threading.Thread | None:
        """Uninstall: the pointer first (so nothing half-removed is ever used), then the environments are renamed
        out of the way at once and deleted on a background thread (thousands of files: deleting them can take a
        minute, which must not freeze Blender).  Returns that thread (None when there was nothing to delete);
        leftovers of a delete cut short are removed by the next remove() or install."""
        (self.root / self.POINTER).unlink(missing_ok=True)
        if self.envs.is_dir():
            self.envs.rename(self.root / f"{self.TRASH_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        trash = sorted(self.root.glob(f"{self.TRASH_PREFIX}*")) if self.root.is_dir() else []
        if not trash:
            return None
        thread = threading.Thread(target=_delete_all, args=(trash,), name="kmm-backend-remove", daemon=True)
        thread.start()
        return thread

    def latest_log(self) -> Path | None:
        logs = sorted(self.logs.glob("install-*.log")) if self.logs.is_dir() else []
        return logs[-1] if logs else None


class _Cancelled(Exception):
    pass


@dataclass
class InstallProgress:
    state: str = RUNNING
    fraction: float = 0.0
    message: str = "Starting"
    error: str = ""
    warnings: list[str] = field(default_factory=list)


class BackendInstall:
    """One install on a background thread. Poll `progress` (the UI's timer does), `cancel()`, or `wait()`."""

    def __init__(self, folder: BackendFolder, options: InstallOptions, *, doctor_args: tuple[str, ...] | None = None):
        self.folder = folder
        self.options = options
        self.progress = InstallProgress()
        self.tail: collections.deque[str] = collections.deque(maxlen=12)  # last log lines, for the UI
        self.env_dir: Path | None = None
        self._doctor_args = doctor_args or ("-m", "kmm_core.cli", "doctor", "--json")
        self._cancel = threading.Event()
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()
        folder.logs.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.log_path = folder.logs / f"install-{stamp}.log"
        suffix = 0
        while self.log_path.exists():
            suffix += 1
            self.log_path = folder.logs / f"install-{stamp}-{suffix}.log"
        self._log = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed when the thread ends
        self._thread = threading.Thread(target=self._run, name="kmm-backend-install", daemon=True)
        self._thread.start()

    # ---- for the caller ------------------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.progress.state != RUNNING

    def cancel(self) -> None:
        self._cancel.set()
        with self._lock:
            process = self._process
        if process is not None and process.poll() is None:
            _stop(process)

    def outcome(self) -> tuple[str, str]:
        """How a finished install ended, for the status bar: (level INFO / WARNING / ERROR, text)."""
        progress = self.progress
        if progress.state == DONE:
            text = "KMM backend installed" + (f" ({'; '.join(progress.warnings)})" if progress.warnings else "")
            return ("WARNING" if progress.warnings else "INFO"), text
        if progress.state == CANCELLED:
            return "WARNING", "KMM backend install cancelled: the previous backend is unchanged"
        return "ERROR", (f"KMM backend install failed: {progress.error} (the previous backend is unchanged; log: "
                         f"{self.log_path})")

    def wait(self, timeout: float | None = None) -> InstallProgress:
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.cancel()
            self._thread.join()
            self.progress.error = f"the install took longer than {timeout:g} s and was cancelled"
        return self.progress

    # ---- the install thread --------------------------------------------------------------------------------------
    def _run(self) -> None:
        progress = self.progress
        try:
            self._steps()
        except _Cancelled:
            self._discard()
            progress.state, progress.message = CANCELLED, "Cancelled: the previous backend is unchanged"
        except InstallError as error:
            self._discard()
            progress.error = str(error)
            progress.state, progress.message = FAILED, f"Failed: {str(error).splitlines()[0]}"
        except Exception as error:  # noqa: BLE001 - an unexpected failure must still end the install cleanly
            self._discard()
            progress.error = f"unexpected error: {type(error).__name__}: {error}"
            progress.state, progress.message = FAILED, f"Failed: {progress.error}"
        finally:
            self._write(f"== {progress.state}: {progress.error or progress.message}")
            self._log.close()

    def _steps(self) -> None:
        options, folder = self.options, self.folder
        self._write(f"== KMM backend install {time.strftime('%Y-%m-%d %H:%M:%S')}: {asdict(options)}")
        options.check()
        self._step(0.01, f"Checking the Python {options.python}")
        info = probe_python(options.python)
        self._write(f"Python {'.'.join(map(str, info.version))} at {info.executable}")
        if not info.supported:
            supported = ", ".join(f"{major}.{minor}" for major, minor in SUPPORTED_PYTHONS)
            raise InstallError(f"{options.python} is Python {info.version[0]}.{info.version[1]}; the backend needs "
                               f"Python {supported}: pick another Python")
        self._step(0.02, "Checking the free disk space")
        folder.root.mkdir(parents=True, exist_ok=True)
        check_disk_space(folder.root, options.needed_bytes())
        self.env_dir = folder.new_environment(options.variant)
        self._step(0.03, "Creating the environment")
        self._command([options.python, "-m", "venv", str(self.env_dir)], "creating the environment failed")
        python = str(environment_python(self.env_dir))
        self._step(0.08, "Installing packages")
        self._command([python, "-m", "pip", *options.pip_install_arguments()], "pip could not install the backend",
                      pip_progress=(0.08, 0.88))
        if options.variant == CUDA:
            self._step(0.88, "Installing the fused Mamba kernels (optional)")
            try:
                self._command([python, "-m", "pip", "install", "--progress-bar", "off", "--no-build-isolation",
                               "-r", str(CUDA_REQUIREMENTS)], "the fused Mamba kernels did not install")
            except InstallError as error:
                self.progress.warnings.append(f"{error.args[0]}: generation uses the PyTorch scan (as fast for "
                                              "generating with these models, slower for training); see the log")
        self._step(0.92, "Checking the new backend")
        self._verify(python)
        if self._cancel.is_set():
            raise _Cancelled
        self._step(0.97, "Switching to the new backend")
        folder.activate(self.env_dir, {"variant": options.variant, "base_python": options.python,
                                       "python_version": ".".join(map(str, info.version)),
                                       "installed": time.strftime("%Y-%m-%d %H:%M:%S"), "log": str(self.log_path)})
        removed = folder.remove_stale()
        self._write("switched; removed " + (", ".join(map(str, removed)) or "nothing"))
        self.progress.fraction, self.progress.message, self.progress.state = 1.0, "Backend installed", DONE

    def _verify(self, python: str) -> None:
        """`kmm doctor --json` in the new environment, run exactly like the worker (bundled kmm_core first)."""
        output = self._command([python, *self._doctor_args], "", check=False, env=worker_environment())
        start = output.find("{")
        try:
            report = json.loads(output[start:]) if start >= 0 else None
        except ValueError:
            report = None
        if not isinstance(report, dict):
            raise InstallError("the new environment cannot run `kmm doctor`: see the log")
        missing = [f"{check['name']} ({check['detail']})" for check in report.get("checks", [])
                   if check.get("required", True) and not check.get("ok")]
        if missing:
            raise InstallError("the new environment is incomplete: " + "; ".join(missing))

    # ---- helpers ---------------------------------------------------------------------------------------------------
    def _step(self, fraction: float, message: str) -> None:
        if self._cancel.is_set():
            raise _Cancelled
        self.progress.fraction, self.progress.message = fraction, message
        self._write(f"== {message}")

    def _write(self, line: str) -> None:
        self._log.write(line + "\n")
        self._log.flush()
        if line.strip():
            self.tail.append(line)

    def _command(self, command: list[str], failure: str, *, pip_progress: tuple[float, float] | None = None,
                 check: bool = True, env: dict[str, str] | None = None) -> str:
        """Run one child process, its output line by line into the log; returns the output."""
        self._write("$ " + " ".join(command))
        creationflags = getattr(subprocess, "CREATE_NO_WINDOW", 0) if os.name == "nt" else 0
        with self._lock:
            if self._cancel.is_set():
                raise _Cancelled
            try:
                process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                           encoding="utf-8", errors="replace", env=env or clean_environment(),
                                           stdin=subprocess.DEVNULL, creationflags=creationflags,
                                           start_new_session=os.name != "nt")
            except OSError as error:
                raise InstallError(f"{failure}: cannot run {command[0]} ({error.strerror or error})") from None
            self._process = process
        lines: list[str] = []
        collected = 0
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.rstrip()
            lines.append(line)
            self._write(line)
            if pip_progress is not None:
                low, high = pip_progress
                if line.startswith(("Collecting ", "Processing ", "Requirement already satisfied")):
                    collected += 1
                    name = line.split()[1] if len(line.split()) > 1 else ""
                    self.progress.message = f"Installing packages: {collected} found ({Path(name).name[:40]})"
                    self.progress.fraction = low + (high - low) * 0.6 * min(collected / EXPECTED_PACKAGES, 1.0)
                elif line.startswith("Installing collected packages"):
                    self.progress.fraction = low + (high - low) * 0.7
                    self.progress.message = "Installing packages: unpacking (the largest step)"
        code = process.wait()
        with self._lock:
            self._process = None
        if self._cancel.is_set():
            raise _Cancelled
        if check and code != 0:
            errors = [line for line in lines if line.startswith("ERROR")] or lines[-3:]
            raise InstallError(f"{failure} (exit code {code}): " + " / ".join(e.strip() for e in errors[-3:]))
        return "\n".join(lines)

    def _discard(self) -> None:
        """Delete the half-made environment (never the current one)."""
        if self.env_dir is not None and self.env_dir.exists():
            shutil.rmtree(self.env_dir, ignore_errors=True)
            self._write(f"removed the unfinished {self.env_dir}")


def _delete_all(folders: list[Path]) -> None:
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def _stop(process: subprocess.Popen) -> None:
    """Stop a child and its own children (pip runs builds in sub-processes)."""
    try:
        if os.name != "nt":
            import signal

            os.killpg(process.pid, signal.SIGTERM)
        else:
            process.terminate()
        process.wait(10)
    except (OSError, subprocess.TimeoutExpired):
        try:
            if os.name != "nt":
                import signal

                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
        except OSError:
            pass
