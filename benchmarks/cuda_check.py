# SPDX-License-Identifier: GPL-3.0-or-later
"""The CUDA check: one prepared run for a lent GPU machine, every step guarded, one results file.

In order of value, each step timed against `--budget` (no step starts once the budget is spent; a failed step is
recorded with its error and the next one runs):

1. **The add-on's path**: the real worker subprocess (`python -m kmm_core.worker --device DEVICE`, JSON lines as the
   add-on speaks them) loads the shipped model and generates the README's timeline twice (cold: start to first
   result, model load included; warm: the second request) and a 1-minute timeline; then, in this process, the same
   timelines on DEVICE and on the CPU at seed 0: peak GPU memory, and whether the joints agree (the largest joint
   difference, and the first frame where they differ by more than 1 mm, with the prompt being played there).
2. **Training**: one generator training step (`benchmarks/bench_training_step.py`'s model and batches: the shipped
   size, batch 32 x 50 tokens) on DEVICE, fp32 and bf16 autocast, the pure-PyTorch scan (CUDA tensors take it unless
   mamba-ssm imports), beside the same step on the CPU.
3. **The scan**: our pure scan (`selective_scan_pure`) against mamba-ssm's fused `selective_scan_fn` when it imports
   (`pip install mamba-ssm causal-conv1d` with `TORCH_CUDA_ARCH_LIST=9.0` on the machine), forward and backward,
   fp32 and bf16, at the shipped size and 4x longer: the largest difference and the time of each.

    python benchmarks/cuda_check.py --device cuda --budget 420 --out benchmarks/results/cuda_check_h100.md
    python benchmarks/cuda_check.py --device cpu --budget 300 --out /tmp/cuda_check_dry_run.md   # the dry run

On a machine without CUDA, `--device cpu` runs every step that does not need CUDA (the dry run that proves the
script before a GPU machine is lent); the GPU-only measures are written as "not run (no CUDA)".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from benchmarks.report_file import save_report  # noqa: E402

README_TIMELINE = REPO_ROOT / "examples" / "timeline.json"
MINUTE_TIMELINE = {"fps": 30, "segments": [{"prompt": prompt, "seconds": 12.0} for prompt in (
    "a person walks forward", "a person raises the left hand", "a person walks and turns right",
    "a person waves with both hands", "a person runs forward")]}


class Budget:
    def __init__(self, seconds: float):
        self.started, self.seconds = time.monotonic(), seconds

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.started)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ---- 1. the add-on's path ----------------------------------------------------------------------------------------
def worker_run(device: str, timelines: list[tuple[str, dict]], output_dir: Path) -> list[str]:
    """The real worker, driven as the add-on drives it: hello, load, then each timeline; the seconds each took."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"}
    started = time.monotonic()
    worker = subprocess.Popen([sys.executable, "-m", "kmm_core.worker", "--device", device], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []

    def ask(request: dict, timeout: float = 600.0) -> dict:
        worker.stdin.write(json.dumps(request) + "\n")
        worker.stdin.flush()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = worker.stdout.readline()
            if not line:
                raise RuntimeError(f"the worker ended: {worker.stderr.read()[-2000:]}")
            event = json.loads(line)
            if event.get("id") == request["id"] and event["type"] in ("ready", "result", "error"):
                if event["type"] == "error":
                    raise RuntimeError(f"{request['type']}: {event['kind']}: {event['message']}")
                return event
        raise TimeoutError(f"{request['type']}: no answer in {timeout:.0f} s")

    try:
        ready = ask({"type": "hello", "id": "hello", "client_version": "cuda_check"})
        lines.append(f"worker ready on {ready.get('device')} (torch {ready.get('torch_version')}, CUDA available: "
                     f"{ready.get('cuda_available')})")
        ask({"type": "load", "id": "load", "checkpoint": None, "device": device})
        for number, (name, timeline) in enumerate(timelines):
            begun = time.monotonic()
            ask({"type": "generate", "id": f"generate-{number}", "timeline": timeline,
                 "output_dir": str(output_dir), "seed": 0})
            took = time.monotonic() - begun
            since_start = f" ({time.monotonic() - started:.1f} s from the worker's start)" if number == 0 else ""
            lines.append(f"{name}: {took:.2f} s{since_start}")
    finally:
        try:
            worker.stdin.write(json.dumps({"type": "shutdown"}) + "\n")
            worker.stdin.close()
            worker.wait(60)
        except Exception:  # noqa: BLE001 - the worker may already be gone
            worker.kill()
    return lines


def agreement(device: str) -> list[str]:
    """The README timeline and the 1-minute timeline at seed 0 on DEVICE and on the CPU: peak memory, agreement."""
    from kmm_core.bundle.model_bundle import ModelBundle, default_bundle_path
    from kmm_core.generation.timeline import Timeline
    from kmm_core.generation.timeline_generator import generate_timeline

    lines = []
    cpu = ModelBundle.load(default_bundle_path(), device="cpu")
    other = ModelBundle.load(default_bundle_path(), device=device) if device != "cpu" else cpu
    for name, data in (("README timeline", json.loads(README_TIMELINE.read_text())), ("1-minute timeline",
                                                                                        MINUTE_TIMELINE)):
        timeline = Timeline.from_dict(data)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        begun = time.monotonic()
        on_device = generate_timeline(other, timeline, seed=0)[0]
        _sync(device)
        took = time.monotonic() - begun
        memory = (f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
                  if device.startswith("cuda") else "")
        on_cpu = generate_timeline(cpu, timeline, seed=0)[0]
        gap = np.linalg.norm(np.asarray(on_device.joints) - np.asarray(on_cpu.joints), axis=-1).max(axis=-1)
        differ = np.flatnonzero(gap > 1e-3)
        where = "never"
        if differ.size:
            frame = int(differ[0])
            prompt = next((p for (start, end), p in zip(on_cpu.segment_frames, on_cpu.segment_prompts, strict=True)
                           if start <= frame < end), "?")
            where = f"from frame {frame} ({prompt!r})"
        lines.append(f"{name} on {device}: {took:.2f} s in this process{memory}; joints vs the CPU: largest "
                     f"difference {gap.max() * 1000:.3f} mm, more than 1 mm {where}")
    return lines


# ---- 2. training ---------------------------------------------------------------------------------------------------
def training_step(device: str, repeats: int = 5) -> list[str]:
    from benchmarks.bench_training_step import Variant, make_inputs, small_generator_config

    lines = []
    config = small_generator_config("mamba")
    for where in dict.fromkeys(["cpu", device]):
        for precision in (("fp32", "bf16") if where != "cpu" else ("fp32",)):
            variant = Variant(f"mamba {where} {precision}", "mamba", None)
            variant.model.to(where)
            inputs = make_inputs(config, 32, 50, seed=0)
            inputs = {k: (v.to(where) if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}
            if where != "cpu":
                inputs["rng"] = torch.Generator(device=where).manual_seed(0)
            times = []
            for index in range(repeats + 2):
                begun = time.perf_counter()
                with torch.autocast(device_type=where.split(":")[0], dtype=torch.bfloat16,
                                    enabled=precision == "bf16"):
                    variant.step(inputs)
                _sync(where)
                if index >= 2:
                    times.append(time.perf_counter() - begun)
            lines.append(f"generator step, batch 32 x 50, {where}, {precision}: {1000 * np.median(times):.1f} ms "
                         f"(median of {repeats})")
    return lines


# ---- 3. the scan ---------------------------------------------------------------------------------------------------
def scan_comparison(device: str) -> list[str]:
    from kmm_core.model.selective_scan import selective_scan_pure

    if not device.startswith("cuda"):
        return ["fused scan: not run (no CUDA); the pure scan's equality with a float64 reference is in the tests"]
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception as error:  # noqa: BLE001 - not installed, or built for another architecture
        return [f"fused scan: mamba-ssm not importable ({type(error).__name__}: {error})"]
    lines = []
    for length in (50, 200):
        for dtype in (torch.float32, torch.bfloat16):
            generator = torch.Generator(device=device).manual_seed(0)
            batch, channels, state = 32, 512, 16

            def tensor(*shape, scale=1.0, source=generator):
                return (torch.randn(*shape, generator=source, device=device) * scale).requires_grad_()

            u, delta = tensor(batch, channels, length), tensor(batch, channels, length, scale=0.5)
            a = (-torch.rand(channels, state, generator=generator, device=device) - 0.5).requires_grad_()
            b, c = tensor(batch, state, length), tensor(batch, state, length)
            d, z = tensor(channels), tensor(batch, channels, length)
            outputs, times = {}, {}
            for name, function in (("pure", selective_scan_pure), ("fused", selective_scan_fn)):
                with torch.autocast("cuda", dtype=dtype, enabled=dtype == torch.bfloat16):
                    _sync(device)
                    begun = time.perf_counter()
                    out = function(u, delta, a, b, c, d, z=z, delta_softplus=True)
                    out.float().square().mean().backward()
                    _sync(device)
                times[name] = time.perf_counter() - begun
                outputs[name] = (out.detach().float(), u.grad.detach().float().clone())
                for t in (u, delta, a, b, c, d, z):
                    t.grad = None
            forward = (outputs["pure"][0] - outputs["fused"][0]).abs().max().item()
            backward = (outputs["pure"][1] - outputs["fused"][1]).abs().max().item()
            lines.append(f"scan {batch}x{channels}x{length}, {str(dtype).split('.')[-1]}: largest difference forward "
                         f"{forward:.2e}, du {backward:.2e}; forward+backward pure {1000 * times['pure']:.1f} ms, "
                         f"fused {1000 * times['fused']:.1f} ms")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds; no step starts after them")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "cuda_check.md")
    args = parser.parse_args(argv)
    budget = Budget(args.budget)
    card = (torch.cuda.get_device_name(0) if args.device.startswith("cuda") and torch.cuda.is_available()
            else platform.processor() or platform.machine())
    lines = ["# The CUDA check", "", f"Command: `python benchmarks/cuda_check.py --device {args.device} --budget "
             f"{args.budget:g}`; device: {card}; torch {torch.__version__}; Python {platform.python_version()}.", ""]
    with tempfile.TemporaryDirectory() as folder:
        readme = json.loads(README_TIMELINE.read_text())
        steps = (
            ("1a. the worker, as the add-on runs it", lambda: worker_run(args.device, [
                ("README timeline, cold", readme), ("README timeline, warm", readme),
                ("1-minute timeline, warm", MINUTE_TIMELINE)], Path(folder))),
            ("1b. agreement with the CPU, peak memory", lambda: agreement(args.device)),
            ("2. a training step", lambda: training_step(args.device)),
            ("3. the pure scan against the fused kernel", lambda: scan_comparison(args.device)),
        )
        for title, step in steps:
            lines += [f"## {title}", ""]
            if budget.left() <= 0:
                lines += [f"not run: the budget of {args.budget:g} s was spent", ""]
                continue
            begun = time.monotonic()
            try:
                lines += [f"- {line}" for line in step()]
            except Exception as error:  # noqa: BLE001 - recorded, and the next step still runs
                lines += [f"- FAILED: {type(error).__name__}: {error}", "", "```",
                          traceback.format_exc()[-3000:], "```"]
            lines += ["", f"({time.monotonic() - begun:.1f} s)", ""]
    save_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
