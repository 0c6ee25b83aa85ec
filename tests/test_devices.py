# SPDX-License-Identifier: GPL-3.0-or-later
"""The device rule (kmm_core/common/devices.py): CUDA asked for on a machine without it is refused with a clear
error, and a bundle loaded onto CUDA turns cuDNN's TF32 rounding off for the process (a seed's take on the GPU as on
the CPU: benchmarks/results/cuda_check_h200_no_tf32.md), while the CPU leaves it as it was."""

from __future__ import annotations

import pytest
import torch

from kmm_core.common.devices import (
    DeviceUnavailableError,
    check_device_available,
    full_precision_convolutions,
    resolve_device,
)


@pytest.fixture
def tf32_restored():
    before = torch.backends.cudnn.allow_tf32
    yield
    torch.backends.cudnn.allow_tf32 = before


def test_cuda_turns_tf32_convolutions_off_and_the_cpu_leaves_them(tf32_restored):
    torch.backends.cudnn.allow_tf32 = True
    full_precision_convolutions("cpu")
    assert torch.backends.cudnn.allow_tf32 is True
    for device in ("cuda", "cuda:1"):
        torch.backends.cudnn.allow_tf32 = True
        full_precision_convolutions(device)
        assert torch.backends.cudnn.allow_tf32 is False


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: nothing to refuse")
def test_cuda_on_a_machine_without_it_is_refused_naming_the_choices():
    assert resolve_device("auto") == "cpu" and check_device_available("cpu") == "cpu"
    with pytest.raises(DeviceUnavailableError, match="CUDA is not available in this backend.*choose the CPU"):
        check_device_available("cuda")
