# SPDX-License-Identifier: GPL-3.0-or-later
"""ModelBundle, the one typed face of a loaded model: prompt embedding, codes <-> joints, its decoding settings
(bundle.json's optional "decoding" table, checked) and its device, with the tiny trained bundle."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from kmm_core.bundle.model_bundle import BundleError, ModelBundle
from kmm_core.generation.decoding_engine import GenerationOptions
from kmm_core.model.configs import DecodingConfig


def test_the_loaded_bundle_embeds_prompts_and_maps_codes_and_joints(tiny_model):
    bundle = tiny_model
    assert bundle.device == torch.device("cpu") and bundle.decoding == DecodingConfig()
    embeddings = bundle.prompt_embeddings(["a person walks", "a person waves", "a person walks"])
    assert embeddings.shape == (3, bundle.generator.config.cond_dim) and embeddings.device == bundle.device
    assert torch.equal(embeddings[0], embeddings[2]) and not torch.equal(embeddings[0], embeddings[1])
    codes = torch.zeros(10, bundle.generator.config.num_quantizers, dtype=torch.int64)
    joints = bundle.codes_to_joints(codes, 37)
    assert joints.shape == (37, 22, 3) and np.isfinite(joints).all()
    again = bundle.joints_to_codes(joints)
    assert again.shape == (10, bundle.generator.config.num_quantizers) and again.dtype == torch.int64
    assert bool((again >= 0).all())


def _copy_with_decoding(tiny_bundle, folder, table):
    shutil.copytree(tiny_bundle, folder)
    manifest = json.loads((folder / "bundle.json").read_text(encoding="utf-8"))
    manifest["decoding"] = table
    (folder / "bundle.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder


def test_bundle_json_can_ship_decoding_settings_and_bad_ones_name_the_file(tiny_bundle, tmp_path):
    bundle = ModelBundle.load(_copy_with_decoding(tiny_bundle, tmp_path / "good", {"steps": 3, "guidance_scale": 2.5}),
                              device="cpu")
    assert bundle.decoding == DecodingConfig(steps=3, guidance_scale=2.5)
    assert GenerationOptions().decoding_config(bundle).steps == 3
    assert GenerationOptions(steps=5).decoding_config(bundle) == DecodingConfig(steps=5, guidance_scale=2.5)
    for name, table, words in (("zero", {"steps": 0}, "steps"), ("unknown", {"stepz": 3}, "stepz"),
                               ("list", [3], "expected a JSON object")):
        folder = _copy_with_decoding(tiny_bundle, tmp_path / name, table)
        with pytest.raises(BundleError, match=words) as error:
            ModelBundle.load(folder, device="cpu")
        assert str(folder / "bundle.json") in str(error.value)
