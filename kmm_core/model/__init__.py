# SPDX-License-Identifier: GPL-3.0-or-later
"""Neural modules of KMM: tokenizer, masker, Mamba, generator, aligner, text encoder (all import torch but configs.py)."""
