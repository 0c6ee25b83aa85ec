# SPDX-License-Identifier: GPL-3.0-or-later
"""The generators of several fine-tunes of one start, averaged weight by weight (``kmm-train average-generators``).

Fine-tunes of one generator with one recipe and only the seed changed perform some actions in one seed and not in
another (training/runs/kmm-small-all-v13: getting up in 4, 7 and 0 of 8 generation seeds over three training
seeds).  Their weights lie close together (about 0.1-0.2% apart, relative), so their mean is itself a generator
("model soups", Wortsman et al. 2022) that keeps what the runs share and loses less of what one seed got wrong.

The result is a run folder like the runs averaged (their configs, tokenizer, aligner, Mean/Std and data summary,
and the mean ``generator.safetensors``) with ``averaged_from.json`` naming the runs and each one's SHA-256, so
``kmm-train fine-tuned-generator`` puts it into the bundle they started from as it would put one of them.
Refused, naming the file, unless the runs share everything but their training: the start
(``[train.generator] init_weights``, and the SHA-256 of its file when training began where the generators' headers
record it, ``FINE_TUNED_FROM``), the generator configuration, the aligner the generator learned (its
SHA-256 in each header) and its configuration, the tokenizer, Mean/Std and the prepared data.

With a start weight w > 0 (``--start-weight``) the result is w x the start + (1 - w) x the runs' mean: the fine-tune
moved part of the way from the weights it began with ("WiSE-FT", Wortsman et al. 2022), which keeps more of what the
start did well (training/runs/kmm-small-open/COMMAND.md, sixth round: at 0.5 the open model fine-tuned with ACCAD's
takes got its box pick-up back and kept half its calmer standing body).  One run is enough then.  The start is the
runs' ``init_weights`` file or a copy of it (``--start``); its SHA-256 must be the one the runs' headers recorded
when training began (``FINE_TUNED_FROM``), so a path that holds other weights by now (a bundle's generator replaced
since) is refused instead of mixed in.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..bundle.weight_checksums import file_sha256
from ..common.atomic_write import atomic_directory
from ..common.bounded_read import read_json
from ..common.checked_path import resolved
from ..common.errors import KMMError
from ..model.weights import read_header, read_tensors
from .checkpoint import FINE_TUNED_FROM, TRAINED_ON_ALIGNER

AVERAGED_FROM = "averaged_from.json"
SHARED_FILES = ("generator.json", "tokenizer.json", "tokenizer.safetensors", "aligner.json", "aligner.safetensors",
                "Mean.npy", "Std.npy")
"""Files every averaged run must hold byte for byte the same (besides its start, data and aligner header)."""
COPIED_FILES = (*SHARED_FILES, "evaluator.json", "evaluator.safetensors", "config.json", "dataset.json")
"""What the averaged run folder takes from the first run (the evaluator only where the runs have one)."""


class AverageError(KMMError):
    """Runs that cannot be averaged: the message names the file and what differs."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path


def _start(run: Path) -> str:
    """The weights a run fine-tuned (``[train.generator] init_weights`` of its config.json)."""
    config = read_json(run / "config.json", "run config", error_class=AverageError, allow_non_finite=True)
    start = ((config.get("train") or {}).get("generator") or {}).get("init_weights") if isinstance(config, dict) else None
    if not start:
        raise AverageError(run / "config.json", "[train.generator] init_weights is empty: this run trained a "
                                                "generator from scratch, and only fine-tunes of one start average")
    return str(start)


def _data_summary(run: Path) -> dict:
    """The run's data summary (dataset.json) without the folder it was read from: what goes into the bundle."""
    dataset = read_json(run / "dataset.json", "dataset summary", error_class=AverageError, allow_non_finite=True)
    return {key: value for key, value in dataset.items() if key != "root"} if isinstance(dataset, dict) else {}


def _check_runs(runs: Sequence[Path], fewest: int = 2) -> tuple[dict[str, str], str]:
    """Refuse runs that do not share a start (see the module docstring); the first run's generator header and start,
    each file read once."""
    if len(runs) < fewest:
        raise KMMError(f"--runs: name {'two runs or more' if fewest == 2 else 'a run'} (got {len(runs)})")
    if len({resolved(run, "--runs") for run in runs}) != len(runs):
        raise KMMError("--runs: a run is named twice")
    for run in runs:
        for name in (*SHARED_FILES, "generator.safetensors", "config.json", "dataset.json"):
            if not (run / name).is_file():
                raise AverageError(run / name, "not found: each run averaged must be a finished `kmm-train "
                                               "generator` fine-tune folder")
    first = runs[0]
    digests = {name: file_sha256(first / name) for name in SHARED_FILES}
    first_header, first_start, first_data = read_header(first / "generator.safetensors"), _start(first), _data_summary(first)
    for run in runs[1:]:
        for name in SHARED_FILES:
            if file_sha256(run / name) != digests[name]:
                raise AverageError(run / name, f"differs from {first / name}: only fine-tunes of one start, on one "
                                               "tokenizer and aligner, average")
        header = read_header(run / "generator.safetensors")
        starts = header.get(FINE_TUNED_FROM), first_header.get(FINE_TUNED_FROM)
        if None not in starts and starts[0] != starts[1]:  # the start's SHA-256, where both headers have it
            raise AverageError(run / "generator.safetensors", f"fine-tuned weights with SHA-256 {starts[0][:12]}..., "
                                                              f"{first} {starts[1][:12]}... (their headers' "
                                                              f"{FINE_TUNED_FROM}): only fine-tunes of one start "
                                                              "average")
        if (start := _start(run)) != first_start:
            raise AverageError(run / "config.json", f"fine-tuned {start}, {first} fine-tuned {first_start}: "
                                                    "only fine-tunes of one start average")
        if _data_summary(run) != first_data:
            raise AverageError(run / "dataset.json", f"differs from {first / 'dataset.json'}: the runs trained on "
                                                     "other data, and the bundle's data summary would be one run's")
        if header.get(TRAINED_ON_ALIGNER) != first_header.get(TRAINED_ON_ALIGNER):
            raise AverageError(run / "generator.safetensors", f"learned another aligner than "
                                                              f"{first / 'generator.safetensors'} (their headers' "
                                                              f"{TRAINED_ON_ALIGNER} differ)")
    return first_header, first_start


def _same_tensors(path: Path, tensors: dict[str, torch.Tensor], first_path: Path,
                  first: dict[str, torch.Tensor]) -> None:
    """Refuse (naming ``path``) tensors whose names or shapes differ from ``first``'s."""
    if set(tensors) != set(first):
        missing, extra = sorted(set(first) - set(tensors)), sorted(set(tensors) - set(first))
        raise AverageError(path, f"holds other tensors than {first_path} (missing {missing[:3]}, extra {extra[:3]})")
    for key, value in tensors.items():
        if value.shape != first[key].shape:
            raise AverageError(path, f"{key} has shape {tuple(value.shape)}, {first_path} {tuple(first[key].shape)}")


def start_tensors(start: Path, header: dict[str, str], run: Path) -> dict[str, torch.Tensor]:
    """The weights the runs fine-tuned, read from ``start`` once its SHA-256 is the one ``run``'s generator header
    recorded when training began (``FINE_TUNED_FROM``); refused, naming the file, otherwise."""
    recorded = header.get(FINE_TUNED_FROM)
    if recorded is None:
        raise AverageError(run / "generator.safetensors", f"records no {FINE_TUNED_FROM} (trained before the start's "
                                                          "SHA-256 was recorded): there is no telling which weights "
                                                          "it began from, so --start-weight cannot mix them in")
    if not start.is_file():
        raise AverageError(start, "not found: the start mixed in by --start-weight (the runs' init_weights, or "
                                  "a copy of it named with --start)")
    if (digest := file_sha256(start)) != recorded:
        raise AverageError(start, f"holds weights with SHA-256 {digest[:12]}..., the runs fine-tuned "
                                  f"{recorded[:12]}... ({run / 'generator.safetensors'}'s {FINE_TUNED_FROM}): the "
                                  "file holds other weights by now; name a copy of the start with --start")
    return read_tensors(start)


def mean_weights(runs: Sequence[Path], start: tuple[Path, dict[str, torch.Tensor]] | None = None,
                 start_weight: float = 0.0) -> dict[str, torch.Tensor]:
    """The runs' generator tensors averaged in float64 (and, with ``start`` = (its file, its tensors), w x start +
    (1 - w) x that mean for ``start_weight`` w), stored in the first run's dtypes; refused (naming the file) when the
    tensors' names or shapes differ or a value is not finite."""
    first_path = runs[0] / "generator.safetensors"
    first = read_tensors(first_path)
    sums = {key: value.double() for key, value in first.items()}
    for run in runs[1:]:
        path = run / "generator.safetensors"
        tensors = read_tensors(path)
        _same_tensors(path, tensors, first_path, first)
        for key, value in tensors.items():
            sums[key] += value.double()
    mixed = {key: total / len(runs) for key, total in sums.items()}
    if start is not None:
        start_path, start_values = start
        _same_tensors(start_path, start_values, first_path, first)
        mixed = {key: start_weight * start_values[key].double() + (1.0 - start_weight) * value
                 for key, value in mixed.items()}
    mean = {key: value.to(first[key].dtype).contiguous() for key, value in mixed.items()}
    for key, value in mean.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise AverageError(_non_finite_source(runs, start, key), f"{key}: holds values that are not finite, so "
                                                                     "the mean would too")
    return mean


def _non_finite_source(runs: Sequence[Path], start: tuple[Path, dict[str, torch.Tensor]] | None,
                       key: str) -> Path:
    """The file whose tensor ``key`` is not finite (the first such run, else the start): the one to blame."""
    for run in runs:
        value = read_tensors(run / "generator.safetensors")[key]
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return run / "generator.safetensors"
    return start[0] if start is not None else runs[0] / "generator.safetensors"


def average_generators(runs: Sequence[str | Path], out_dir: str | Path, start_weight: float = 0.0,
                       start: str | Path | None = None) -> Path:
    """Write ``out_dir``, a run folder holding the mean of the ``runs``' generators, moved ``start_weight`` of the
    way back to their start (``start``: a copy of it; default the runs' ``init_weights``; see the module docstring);
    nothing is written when a check fails, and an existing ``out_dir`` is refused."""
    if not 0.0 <= start_weight < 1.0:
        raise KMMError(f"--start-weight: a share from 0 (the runs' mean) to under 1 (the start alone), got "
                       f"{start_weight}")
    runs = [Path(run) for run in runs]
    out_dir = Path(out_dir)
    header, init_weights = _check_runs(runs, fewest=1 if start_weight > 0.0 else 2)
    start_path = Path(start if start is not None else init_weights)
    mixed_start = (start_path, start_tensors(start_path, header, runs[0])) if start_weight > 0.0 else None
    mean = mean_weights(runs, mixed_start, start_weight)
    record = {"runs": [{"run": str(run), "generator_sha256": file_sha256(run / "generator.safetensors")}
                       for run in runs],
              "init_weights": init_weights}
    if start_weight > 0.0:
        record.update(start_weight=start_weight, start=str(start_path), start_sha256=header[FINE_TUNED_FROM])
    with atomic_directory(out_dir) as folder:
        for name in COPIED_FILES:
            if (runs[0] / name).is_file():
                shutil.copy2(runs[0] / name, folder / name)
        save_file(mean, str(folder / "generator.safetensors"), metadata=header)
        (folder / AVERAGED_FROM).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return out_dir


def averaged_runs(run_dir: str | Path) -> tuple[list[str], float]:
    """The runs a run folder's generator is the mean of and the share of their start mixed back in
    (``averaged_from.json``), or ([], 0.0) for a trained run."""
    path = Path(run_dir) / AVERAGED_FROM
    if not path.is_file():
        return [], 0.0
    record = read_json(path, "averaged runs", error_class=AverageError)
    if not isinstance(record, dict):
        return [], 0.0
    return [str(entry.get("run")) for entry in record.get("runs", [])], float(record.get("start_weight", 0.0))
