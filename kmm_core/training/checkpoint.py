# SPDX-License-Identifier: GPL-3.0-or-later
"""Checkpoint folders: safetensors + JSON, written atomically, never pickled.

A checkpoint is a folder ``<root>/step_00001000/`` holding

* ``model.safetensors``            the module's ``state_dict`` (weights and persistent buffers),
* ``config.json``                  whatever configuration the caller passes (dataclasses become plain JSON),
* ``training_state.safetensors``   every tensor of the training state: optimizer moments, the torch (and CUDA) RNG
                                   states, the NumPy RNG key,
* ``training_state.json``          the rest: global step, optimizer hyper-parameters, GradScaler state, Python/NumPy
                                   RNG state, the data stream position, caller extras.

The learning-rate schedule is a pure function of the global step (see ``trainer.py``), so the step *is* the scheduler
state. The folder is written under a temporary name in the same directory and renamed into place with ``os.replace``,
so a crash or kill mid-save leaves the previous checkpoints intact and no half-written ``step_*`` folder. After each save
only the newest ``keep`` checkpoints remain.

``torch.save``/``torch.load`` (pickle) are never used: loading a checkpoint cannot execute code.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from ..common.atomic_write import OutputWriteError, atomic_open, atomic_path, current_umask, fsync_directory
from ..common.bounded_read import read_json
from ..model.weights import MODEL_FILE, CheckpointError, load_weights, read_tensors
from .config import config_to_dict

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
STATE_TENSORS_FILE = "training_state.safetensors"
STATE_JSON_FILE = "training_state.json"
CHECKPOINT_FILES = (MODEL_FILE, CONFIG_FILE, STATE_TENSORS_FILE, STATE_JSON_FILE)
_PREFIX = "step_"
_TEMP_PREFIX = ".tmp-"


@dataclass
class ResumeState:
    """What :func:`load_checkpoint` hands back besides the restored module/optimizer/scaler/RNG."""

    step: int
    data_state: dict[str, Any] | None
    extra: dict[str, Any] = field(default_factory=dict)
    folder: Path | None = None


# ---------------------------------------------------------------------------------------------------------------------
# Finding checkpoints


def checkpoint_folder(root: str | Path, step: int) -> Path:
    return Path(root) / f"{_PREFIX}{step:08d}"


def _step_of(folder: Path) -> int | None:
    suffix = folder.name[len(_PREFIX) :]
    return int(suffix) if folder.name.startswith(_PREFIX) and suffix.isdigit() else None


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoint folders under ``root``, oldest step first (temporary folders of interrupted saves ignored)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for folder in root.iterdir():
        step = _step_of(folder)
        if step is not None and folder.is_dir() and all((folder / name).is_file() for name in CHECKPOINT_FILES):
            found.append((step, folder))
    return [folder for _, folder in sorted(found)]


def latest_checkpoint(root: str | Path) -> Path | None:
    checkpoints = list_checkpoints(root)
    return checkpoints[-1] if checkpoints else None


def prune_checkpoints(root: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints, and temporary folders left behind by a killed save."""
    root = Path(root)
    for folder in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(folder, ignore_errors=True)
    for stale in root.glob(f"{_TEMP_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------------
# Saving


def save_checkpoint(
    root: str | Path,
    step: int,
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    config: Any = None,
    scaler: torch.amp.GradScaler | None = None,
    data_state: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    keep: int | None = None,
) -> Path:
    """Write checkpoint ``step`` under ``root`` atomically; with ``keep``, prune to the newest ``keep`` afterwards.

    The current RNG states (Python, NumPy, torch, CUDA) are stored so that a resumed run draws the same numbers.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = checkpoint_folder(root, step)
    temporary = Path(tempfile.mkdtemp(prefix=f"{_TEMP_PREFIX}{final.name}-", dir=root))
    try:
        os.chmod(temporary, 0o777 & ~current_umask())  # mkdtemp makes 0700; the folder gets the umask's mode
        _save_tensors(_state_dict_for_saving(module.state_dict()), temporary / MODEL_FILE, {"format": "pt"})
        _write_json(temporary / CONFIG_FILE, config_to_dict(config) if config is not None else {})

        state_tensors: dict[str, torch.Tensor] = {}
        state_json: dict[str, Any] = {"format_version": FORMAT_VERSION, "step": step}
        if optimizer is not None:
            tensors, state_json["optimizer"] = flatten_optimizer_state(optimizer.state_dict())
            state_tensors.update(tensors)
        if scaler is not None and scaler.is_enabled():
            state_json["scaler"] = scaler.state_dict()
        rng_tensors, state_json["rng"] = capture_rng_state()
        state_tensors.update(rng_tensors)
        state_json["data"] = dict(data_state) if data_state is not None else None
        state_json["extra"] = dict(extra) if extra is not None else {}
        _save_tensors(_state_dict_for_saving(state_tensors), temporary / STATE_TENSORS_FILE, {"format": "pt"})
        _write_json(temporary / STATE_JSON_FILE, state_json)
        fsync_directory(temporary)

        if final.exists():  # re-saving a step (e.g. stopped right after a periodic save): swap, then drop the old one
            replaced = Path(tempfile.mkdtemp(prefix=f"{_TEMP_PREFIX}old-{final.name}-", dir=root))
            os.replace(final, replaced / final.name)
            os.replace(temporary, final)
            shutil.rmtree(replaced, ignore_errors=True)
        else:
            os.replace(temporary, final)
        fsync_directory(root)
    except (OSError, OutputWriteError) as error:  # e.g. the disk filled up: older checkpoints stay, one line says why
        shutil.rmtree(temporary, ignore_errors=True)
        reason = error.reason if isinstance(error, OutputWriteError) else error.strerror or str(error)
        raise OutputWriteError(final, f"{reason} (older checkpoints are unchanged)", error.errno) from None
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    if keep is not None:
        prune_checkpoints(root, keep)
    return final


TRAINED_ON_ALIGNER = "trained_on_aligner_sha256"
"""Header key of a generator's exported weights: the SHA-256 of the ``aligner.safetensors`` whose conditions it learned
(``kmm-train fine-tuned-generator`` puts a run's aligner into a bundle only with the generator trained on it)."""

FINE_TUNED_FROM = "fine_tuned_from_sha256"
"""Header key of a fine-tuned generator's exported weights: the SHA-256 of its ``[train.generator] init_weights`` file
when training began (``kmm-train average-generators`` averages only fine-tunes of one start; a path alone may hold
other weights by then)."""


def export_weights(
    module: torch.nn.Module, path: str | Path, dtype: torch.dtype = torch.float16, config: Any = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write the module's weights for shipping: floating-point tensors cast to ``dtype``, integer buffers unchanged.

    With ``config``, ``path.with_suffix(".json")`` receives it (the project's ``name.safetensors`` + ``name.json`` pair).
    ``metadata`` goes into the safetensors header beside the format and dtype (what the weights were trained on).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        name: tensor.detach().to(dtype) if tensor.is_floating_point() else tensor.detach()
        for name, tensor in module.state_dict().items()
    }
    header = {**(metadata or {}), "format": "pt", "dtype": str(dtype).removeprefix("torch.")}
    _save_tensors(_state_dict_for_saving(tensors), path, header)
    if config is not None:
        _write_json(path.with_suffix(".json"), config_to_dict(config))
    return path


def _state_dict_for_saving(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous, detached tensors; tensors sharing memory (tied weights) are copied, which safetensors requires."""
    seen_storage: set[int] = set()
    result = {}
    for name, tensor in tensors.items():
        tensor = tensor.detach().to("cpu").contiguous()
        pointer = tensor.untyped_storage().data_ptr()
        if tensor.numel() and pointer in seen_storage:
            tensor = tensor.clone()
        seen_storage.add(pointer)
        result[name] = tensor
    return result


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """safetensors file written under a temporary name and renamed (`atomic_write`), so readers never see half a
    file and a full disk leaves an older file of that name intact."""
    with atomic_path(path) as temporary:
        try:
            save_file(tensors, str(temporary), metadata=metadata)
        except SafetensorError as error:  # safetensors reports a failed write as "... (os error 28)"
            match = re.search(r"os error (\d+)", str(error))
            if match is None:
                raise
            raise OSError(int(match.group(1)), os.strerror(int(match.group(1)))) from None


def _write_json(path: Path, data: Any) -> None:
    with atomic_open(path, "w") as handle:
        json.dump(data, handle, indent=1, allow_nan=True)
        handle.write("\n")


# ---------------------------------------------------------------------------------------------------------------------
# Loading


def load_checkpoint(
    folder: str | Path,
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    scaler: torch.amp.GradScaler | None = None,
    restore_rng: bool = True,
) -> ResumeState:
    """Restore ``module`` (and optimizer, scaler, RNG states) from a checkpoint folder written by save_checkpoint."""
    folder = Path(folder)
    for name in CHECKPOINT_FILES:
        if not (folder / name).is_file():
            raise CheckpointError(folder, f"not a complete checkpoint: {name} is missing")
    state_json = _read_json(folder / STATE_JSON_FILE)
    check_training_state(state_json, folder / STATE_JSON_FILE, _step_of(folder))  # before anything is restored
    load_weights(module, folder / MODEL_FILE)
    state_tensors = read_tensors(folder / STATE_TENSORS_FILE)
    for name in ("rng.torch", "rng.numpy_key"):
        if restore_rng and name not in state_tensors:
            raise CheckpointError(folder / STATE_TENSORS_FILE, f"has no tensor {name!r} (the random generators' state)")
    if optimizer is not None:
        if "optimizer" not in state_json:
            raise CheckpointError(folder / STATE_JSON_FILE, "has no optimizer state to resume from")
        optimizer_state = unflatten_optimizer_state(state_tensors, state_json["optimizer"], optimizer)
        try:
            optimizer.load_state_dict(optimizer_state)
        except (ValueError, KeyError, RuntimeError) as error:
            raise CheckpointError(folder, f"optimizer state does not fit this model's parameters: {error}") from None
    if scaler is not None and scaler.is_enabled() and state_json.get("scaler"):
        scaler.load_state_dict(state_json["scaler"])
    if restore_rng:
        restore_rng_state(state_tensors, state_json["rng"])
    return ResumeState(
        step=int(state_json["step"]),
        data_state=state_json.get("data"),
        extra=state_json.get("extra", {}),
        folder=folder,
    )


def check_training_state(state: Any, path: Path, folder_step: int | None = None) -> None:
    """Every field of a ``training_state.json`` as ``save_checkpoint`` writes it, checked before a resume restores
    anything: a missing or wrong field is one CheckpointError naming the file and the field (a state without
    ``rng`` once stopped with a KeyError; a step of -50 resumed and failed later on an infinite gradient norm)."""
    def fail(key: str, reason: str) -> None:
        raise CheckpointError(path, f"field '{key}' {reason}; the checkpoint is damaged: resume from an older one "
                                    "(delete this folder) or start a new run")

    def need(container: Any, key: str, kinds: type | tuple[type, ...], where: str = "") -> Any:
        dotted = f"{where}.{key}" if where else key
        if not isinstance(container, dict) or key not in container:
            fail(dotted, "is missing")
        value = container[key]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in _as_tuple(kinds)):
            fail(dotted, f"must be {_kind_names(kinds)}, got {type(value).__name__}")
        return value

    if not isinstance(state, dict):
        raise CheckpointError(path, f"expected a JSON object, got {type(state).__name__}")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(path, f"format_version {state.get('format_version')!r} is not the supported "
                                    f"{FORMAT_VERSION}")
    step = need(state, "step", int)
    if step < 0 or (folder_step is not None and step != folder_step):
        fail("step", f"is {step}, but the checkpoint folder is step {folder_step}" if folder_step is not None
             else f"must be >= 0, got {step}")
    if "optimizer" in state:
        optimizer = need(state, "optimizer", dict)
        groups = need(optimizer, "param_groups", list, "optimizer")
        for index, group in enumerate(groups):
            if not isinstance(group, dict):
                fail(f"optimizer.param_groups[{index}]", "must be an object")
            for key in ("lr", "weight_decay"):
                value = group.get(key)
                if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                          or not math.isfinite(value) or value < 0):
                    fail(f"optimizer.param_groups[{index}].{key}", f"must be a finite number >= 0, got {value!r}")
        need(optimizer, "values", dict, "optimizer")
    if state.get("scaler") is not None:
        need(state, "scaler", dict)
    rng = need(state, "rng", dict)
    python = need(rng, "python", dict, "rng")
    need(python, "version", int, "rng.python")
    python_state = need(python, "state", list, "rng.python")
    if not python_state or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**32
                                   for v in python_state):
        fail("rng.python.state", "must be a list of 32-bit unsigned integers")
    if python.get("gauss_next") is not None:
        need(python, "gauss_next", (int, float), "rng.python")
    numpy = need(rng, "numpy", dict, "rng")
    need(numpy, "bit_generator", str, "rng.numpy")
    for key, kinds in (("position", int), ("has_gauss", int), ("cached_gaussian", (int, float))):
        need(numpy, key, kinds, "rng.numpy")
    if not 0 <= numpy["position"] <= 624:
        fail("rng.numpy.position", f"must be 0 to 624, got {numpy['position']}")
    if "data" not in state:
        fail("data", "is missing")
    if state["data"] is not None:
        need(state, "data", dict)
    if "extra" in state:
        need(state, "extra", dict)


def _as_tuple(kinds: type | tuple[type, ...]) -> tuple[type, ...]:
    return kinds if isinstance(kinds, tuple) else (kinds,)


def _kind_names(kinds: type | tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return " or ".join(names.get(kind, kind.__name__) for kind in _as_tuple(kinds) if kind is not int or
                       float not in _as_tuple(kinds))


def read_checkpoint_config(folder: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a checkpoint folder, as plain data."""
    return _read_json(Path(folder) / CONFIG_FILE)


def _read_json(path: Path) -> Any:
    if not path.exists() and not path.is_symlink():
        raise CheckpointError(path, "file not found")
    return read_json(path, "checkpoint file", error_class=CheckpointError, allow_non_finite=True)


# ---------------------------------------------------------------------------------------------------------------------
# Optimizer state <-> named tensors + JSON


def flatten_optimizer_state(state_dict: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into named tensors (``optimizer.<param>.<name>``) and JSON-compatible rest."""
    tensors: dict[str, torch.Tensor] = {}
    values: dict[str, dict[str, Any]] = {}
    for param_id, param_state in state_dict["state"].items():
        for name, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{param_id}.{name}"] = value
            else:
                values.setdefault(str(param_id), {})[name] = value
    groups = [
        {key: list(v) if isinstance(v, tuple) else v for key, v in group.items()}
        for group in state_dict["param_groups"]
    ]
    return tensors, {"param_groups": groups, "values": values}


def unflatten_optimizer_state(
    tensors: Mapping[str, torch.Tensor], json_state: Mapping[str, Any], optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer_state`; ``optimizer`` tells which group values were tuples (e.g. betas)."""
    state: dict[int, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        if key.startswith("optimizer."):
            _, param_id, name = key.split(".", 2)
            state.setdefault(int(param_id), {})[name] = tensor
    for param_id, values in json_state.get("values", {}).items():
        state.setdefault(int(param_id), {}).update(values)
    groups = []
    for index, group in enumerate(json_state["param_groups"]):
        live = optimizer.param_groups[index] if index < len(optimizer.param_groups) else {}
        groups.append({k: tuple(v) if isinstance(live.get(k), tuple) else v for k, v in group.items()})
    return {"state": state, "param_groups": groups}


# ---------------------------------------------------------------------------------------------------------------------
# RNG states


def capture_rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The Python, NumPy, torch and CUDA generator states as (named tensors, JSON-compatible values)."""
    version, python_state, gauss_next = random.getstate()
    bit_generator, numpy_key, numpy_position, has_gauss, cached_gaussian = np.random.get_state()
    tensors = {
        "rng.torch": torch.get_rng_state(),
        "rng.numpy_key": torch.from_numpy(np.asarray(numpy_key, dtype=np.int64)),
    }
    if torch.cuda.is_available():
        for device, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{device}"] = cuda_state
    values = {
        "python": {"version": version, "state": list(python_state), "gauss_next": gauss_next},
        "numpy": {
            "bit_generator": bit_generator,
            "position": int(numpy_position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
    }
    return tensors, values


def restore_rng_state(tensors: Mapping[str, torch.Tensor], values: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (CUDA states only for devices present now)."""
    python = values["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss_next"]))
    numpy = values["numpy"]
    np.random.set_state(
        (
            numpy["bit_generator"],
            tensors["rng.numpy_key"].numpy().astype(np.uint32),
            numpy["position"],
            numpy["has_gauss"],
            numpy["cached_gaussian"],
        )
    )
    torch.set_rng_state(tensors["rng.torch"])
    if torch.cuda.is_available():
        for device in range(torch.cuda.device_count()):
            if f"rng.cuda.{device}" in tensors:
                torch.cuda.set_rng_state(tensors[f"rng.cuda.{device}"], device)
