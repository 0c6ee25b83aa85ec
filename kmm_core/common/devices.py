# SPDX-License-Identifier: GPL-3.0-or-later
"""Which torch device a device setting means: the one rule shared by model loading, the CLI and the worker.

torch is imported only when the setting is ``"auto"``, so the module itself is torch-free.
"""

from __future__ import annotations


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a CUDA device, else ``"cpu"``; any other name is returned unchanged."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
