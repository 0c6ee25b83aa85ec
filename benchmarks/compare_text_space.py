# SPDX-License-Identifier: GPL-3.0-or-later
"""Where aligners put prompts: the text space a generator is conditioned on, compared across aligners.

The generator tells prompts apart only by the aligner's sentence embeddings, so an aligner fine-tune (training/README.md,
"Fine-tuning on new data") is judged first here, before any generator is trained on it:

* pairs of prompts that must stay apart (get up / lie down, sit / crouch, left / right, ...): their cosine similarity
  under each aligner (1.0 = the generator cannot tell them apart);
* how far each aligner moved the data's own captions from the first one given: mean, 90th percentile and largest
  ``1 - cosine`` over up to ``--captions`` distinct captions of the prepared data (what a generator trained on the
  first aligner would have to learn again).

Each of ``MODELS`` is a bundle or a run folder holding ``aligner.safetensors`` + ``aligner.json``.

    python benchmarks/compare_text_space.py --data data/prepared-rev kmm_core/checkpoints/kmm-small runs/ft-align \\
        [--pair "a person waves|a person claps"] [--captions 2000] [--out FILE]
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.report_file import save_report  # noqa: E402
from kmm_core.common.errors import KMMError  # noqa: E402
from kmm_core.humanml3d.dataset_folder import HumanML3DFolder  # noqa: E402
from kmm_core.model.text_encoder import MiniLMTextEncoder  # noqa: E402
from kmm_core.training.stages import load_stage_model  # noqa: E402

PAIRS = (
    ("a person gets up from the floor", "a person lies down on the floor"),
    ("the person gets up from lying on the back", "a person lies down on the floor"),
    ("a person sits down", "a person crouches down"),
    ("a person carries a box", "a person picks up a box"),
    ("a person crawls forward", "a person lies down on the floor"),
    ("a person walks forward", "a person runs forward"),
    ("a person turns left", "a person turns right"),
    ("a person bears left", "a person bears right"),
    ("a person waves the left hand", "a person waves the right hand"),
    ("a person kicks", "a person punches"),
)
"""Prompts an animator keys that the generator must tell apart (the everyday actions', the directions')."""


def data_captions(root: Path, count: int) -> list[str]:
    """Up to ``count`` distinct captions of a prepared folder's clips (a fixed random choice)."""
    folder = HumanML3DFolder(root)
    captions = {caption.text for name in folder.clip_names() if folder.has_captions(name)
                for caption in folder.load_captions(name)}
    chosen = sorted(captions)
    random.Random(0).shuffle(chosen)
    return chosen[:count]


def sentence_embeddings(aligner, texts: list[str]) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([aligner.encode_text(texts[i : i + 256]).sentence for i in range(0, len(texts), 256)])


def compare(models: list[Path], captions: list[str], pairs: list[tuple[str, str]]) -> list[str]:
    encoder = MiniLMTextEncoder()
    firsts, seconds = [a for a, _ in pairs], [b for _, b in pairs]
    rows, base = [], None
    for folder in models:
        aligner = load_stage_model(folder, "aligner", torch.device("cpu"))
        aligner.attach_text_encoder(encoder)
        cosines = (sentence_embeddings(aligner, firsts) * sentence_embeddings(aligner, seconds)).sum(-1)
        embedded = sentence_embeddings(aligner, captions)
        base = embedded if base is None else base
        drift = 1.0 - (embedded * base).sum(-1)
        moved = captions[int(drift.argmax())]
        rows.append(f"| {folder} | " + " | ".join(f"{float(c):.2f}" for c in cosines)
                    + f" | {float(drift.mean()):.3f} | {float(drift.quantile(0.9)):.3f} | {float(drift.max()):.3f}"
                    + f" | {moved if float(drift.max()) > 0 else '-'} |")
    header = ("| aligner | " + " | ".join(f"{a} / {b}" for a, b in pairs)
              + " | drift mean | p90 | max | caption moved most |")
    lines = [
        "# Text space: prompt pairs' cosine similarity, and the data's captions' drift from the first aligner",
        "",
        f"{len(captions)} distinct captions; drift = 1 - cosine to the same caption under `{models[0]}`.",
        "Written by `benchmarks/compare_text_space.py`.",
        "",
        header,
        "| " + " | ".join("---" for _ in range(len(pairs) + 6)) + " |",
        *rows,
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path, help="bundles or run folders with aligner.safetensors")
    parser.add_argument("--data", type=Path, required=True, help="a prepared folder (kmm-train prepare)")
    parser.add_argument("--captions", type=int, default=2000)
    parser.add_argument("--pair", action="append", default=[], metavar="A|B", help="another pair of prompts")
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    pairs = list(PAIRS)
    for pair in args.pair:
        first, bar, second = pair.partition("|")
        if not bar or not first.strip() or not second.strip():
            parser.error(f"--pair {pair!r}: expected 'first prompt|second prompt'")
        pairs.append((first.strip(), second.strip()))
    try:
        captions = data_captions(args.data, args.captions)
        if not captions:
            parser.error(f"--data {args.data}: no clip with captions (a folder written by `kmm-train prepare`)")
        report = compare(args.models, captions, pairs)
    except KMMError as error:
        parser.error(str(error))
    if args.out:
        save_report(args.out, report)
    else:
        print("\n".join(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
