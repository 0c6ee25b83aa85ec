#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# One lent GPU session from start to end, as one command (benchmarks/README.md, "On a GPU machine"):
#   1. restore the carried MiniLM payload (benchmarks/gpu_payload.py) and run the CUDA check's quick steps
#      (benchmarks/cuda_check.py: the worker as the add-on runs it, a training step, the scans, the agreement with
#      the CPU, the pure-scan worker, the profile) -> OUT/cuda_check.md;
#   2. build mamba-ssm's selective-scan extension from its carried sdist for this card's architecture alone
#      (sm_90: the H100 and H200), inside what is left of SECONDS -> OUT/mamba_build.log;
#   3. if it imports, the scans, a training step and the agreement with the CPU again, now with mamba-ssm's fused
#      kernel as the product picks it -> OUT/cuda_check_mamba.md.
# Prepared here (the folder CARRY must be git-ignored and named in the run's carried paths):
#   python benchmarks/gpu_payload.py --out CARRY/payload --check-texts-only
#   pip download --no-deps --no-binary :all: mamba-ssm==2.3.2.post1 -d CARRY/sdist   (or the sdist fetched by hand)
# There:
#   bash benchmarks/cuda_session.sh CARRY "$OUT" 480     (SKIP_QUICK_CHECK=1: the mamba-ssm part alone)
set -u
carry=${1:?the carried folder (payload/ and sdist/)}
out=${2:?the folder for the results}
seconds=${3:-480}
begun=$(date +%s)
left() { echo $((seconds - ($(date +%s) - begun))); }

python3 "$carry/payload/unpack.py" || exit 1
export PYTHONPATH="$PWD/$carry/payload/site:$PWD" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
if [ "${SKIP_QUICK_CHECK:-0}" != 1 ]; then
    python3 benchmarks/cuda_check.py --device cuda --budget 150 --only 0 1a 2 3 1b 1c 4 --out "$out/cuda_check.md"
fi
echo "check done at $(( $(date +%s) - begun )) s"

sdist=$(ls "$carry"/sdist/mamba_ssm-*.tar.gz 2>/dev/null | head -n 1)
if [ -z "$sdist" ]; then echo "no mamba-ssm sdist carried: done"; exit 0; fi
build=/tmp/mamba-build
rm -rf "$build" && mkdir -p "$build" && tar xzf "$sdist" -C "$build"
source_dir=$(ls -d "$build"/mamba_ssm-*/)
# Only this card's architecture (the sdist builds eight, 75 to 121), and only the selective scan: the package's
# other modules (Mamba2/3, the language model) import libraries this project does not use.
python3 - "$source_dir" <<'EOF'
import sys
from pathlib import Path

import torch

source = Path(sys.argv[1])
major, minor = torch.cuda.get_device_capability(0)
setup = source / "setup.py"
text = setup.read_text()
marker = "    if FORCE_CXX11_ABI:"
assert marker in text, "setup.py changed: no FORCE_CXX11_ABI line to put the architecture before"
only = (f'    cc_flag = [f for f in cc_flag if f != "-gencode" and not f.startswith("arch=")]'
        f' + ["-gencode", "arch=compute_{major}{minor},code=sm_{major}{minor}"]\n')
setup.write_text(text.replace(marker, only + marker, 1))
init = source / "mamba_ssm" / "__init__.py"
version = next(line for line in init.read_text().splitlines() if line.startswith("__version__"))
init.write_text(version + "\nfrom mamba_ssm.ops.selective_scan_interface import selective_scan_fn, mamba_inner_fn\n")
print(f"mamba-ssm set to build for sm_{major}{minor} only")
EOF
budget=$(( $(left) - 75 ))
echo "building mamba-ssm with $budget s left for it"
( cd "$source_dir" && MAMBA_FORCE_BUILD=TRUE MAX_JOBS=11 \
    timeout "$budget" python3 setup.py build_ext --inplace ) > "$out/mamba_build.log" 2>&1
status=$?
echo "mamba-ssm build: exit $status after $(( $(date +%s) - begun )) s" | tee -a "$out/mamba_build.log"
export PYTHONPATH="$source_dir:$PYTHONPATH"
python3 -c "from mamba_ssm.ops.selective_scan_interface import selective_scan_fn; print('mamba_ssm imports')" \
    >> "$out/mamba_build.log" 2>&1 || { echo "mamba_ssm does not import"; exit 0; }
python3 benchmarks/cuda_check.py --device cuda --budget 50 --only 0 3 2 1b --out "$out/cuda_check_mamba.md"
echo "all done at $(( $(date +%s) - begun )) s"
