# SPDX-License-Identifier: GPL-3.0-or-later
"""Which torch device a device setting means: the one rule shared by model loading, the CLI and the worker.

torch is imported only when the setting is ``"auto"`` or names CUDA, so the module itself is torch-free.
"""

from __future__ import annotations

from .errors import KMMError


class DeviceUnavailableError(KMMError, ValueError):
    """The device asked for does not exist in this backend (CUDA on a CPU-only torch or machine, cuda:N beyond
    the GPUs): a user's choice to change, not a bug."""


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a CUDA device, else ``"cpu"``; any other name is returned unchanged."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device_available(device: str) -> str:
    """`device` (already resolved) when torch can use it; a CUDA device this backend lacks raises
    DeviceUnavailableError saying so (torch itself fails deep inside loading with "Torch not compiled with CUDA
    enabled")."""
    if not device.startswith("cuda"):
        return device
    import torch

    if not torch.cuda.is_available():
        built = "a CPU-only build of torch" if torch.version.cuda is None else "no usable NVIDIA GPU or driver"
        raise DeviceUnavailableError(f"device {device!r}: CUDA is not available in this backend ({built}, torch "
                                     f"{torch.__version__}); choose the CPU or auto device")
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise DeviceUnavailableError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA "
                                     f"device(s), numbered from 0; choose one of them, the CPU or auto")
    return device


def full_precision_convolutions(device: str) -> None:
    """On CUDA, make cuDNN's float32 convolutions full float32 for this process (PyTorch lets them round through
    TF32 by default).  With TF32 the decoders' convolutions part a GPU's motion from the CPU's for the same tokens:
    on an NVIDIA H200, up to 24.9 mm over the 1-minute timeline and 44 mm on one of the 66 everyday phrasings; without
    it within 0.008 mm and 0.025 mm, at the same speed (these models are small; benchmarks/results/
    cuda_check_h200_no_tf32.md), so a seed's take is the same on the user's GPU and CPU.  Called where a bundle is
    loaded onto a device; nothing on the CPU."""
    if not device.startswith("cuda"):
        return
    import torch

    torch.backends.cudnn.allow_tf32 = False
