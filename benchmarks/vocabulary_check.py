# SPDX-License-Identifier: GPL-3.0-or-later
"""Print how prompts compare with a bundle's training vocabulary (the out-of-vocabulary check of `kmm generate`).

    python benchmarks/vocabulary_check.py [--checkpoint BUNDLE] "a person sits down on a chair" ...

One Markdown row per prompt: best similarity to a training caption, the threshold, warned or not, suggestions.
"""

from __future__ import annotations

import argparse

from kmm_core.bundle.model_bundle import ModelBundle
from kmm_core.bundle.model_choice import resolve_model
from kmm_core.generation.prompt_vocabulary import PromptVocabulary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompts", nargs="+")
    parser.add_argument("--checkpoint", default=None, help="model: default, open, a bundle name or folder")
    args = parser.parse_args()
    check = PromptVocabulary.load(ModelBundle.load(resolve_model(args.checkpoint), device="cpu"))
    print(f"| prompt | similarity ({check.space}) | warned (< {check.threshold:.4f}) | closest known prompts |")
    print("| --- | ---: | --- | --- |")
    for result in check.check(args.prompts):
        print(f"| {result.prompt} | {result.similarity:.3f} | {'yes' if not result.known else 'no'} | "
              f"{'; '.join(result.suggestions)} |")


if __name__ == "__main__":
    main()
