# SPDX-License-Identifier: GPL-3.0-or-later
"""Is the shipped v14 generator the mean of the three runs made again?  Run from the repository root after section
1 of COMMAND.md (runs/ft-gZ, runs/ft-gZ1, runs/ft-gZ2) with the v14 bundle copied to runs/prev-default."""

import torch
from safetensors.torch import load_file

runs = [load_file(f"runs/ft-{name}/generator.safetensors") for name in ("gZ", "gZ1", "gZ2")]
shipped = load_file("runs/prev-default/generator.safetensors")
worst, identical = 0.0, 0
for key, value in shipped.items():
    mean = (sum(run[key].double() for run in runs) / len(runs)).to(value.dtype)
    identical += int(torch.equal(mean, value))
    worst = max(worst, (mean.double() - value.double()).abs().max().item())
print(f"{identical} of {len(shipped)} tensors identical in the bundle's dtype; largest difference {worst:.3g}")
