# SPDX-License-Identifier: GPL-3.0-or-later
"""The CUDA check: one prepared run for a lent GPU machine, every step guarded, one results file.

Each step timed against `--budget` (no step starts once the budget is spent; a failed step is recorded with its
error and the next one runs; the report is written after every step, so a run cut short keeps what it measured).
The cheap steps run first:

0. **The machine**: the card, torch, Triton, and which CUDA scan the product picks there
   (`selective_scan.cuda_scan_choice`: mamba-ssm's kernel when it imports, else our Triton kernels for training and
   the pure scan for generation).
1. **The add-on's path** (1a): the real worker subprocess (`python -m kmm_core.worker --device DEVICE`, JSON lines
   as the add-on speaks them) loads the shipped model and generates the README's timeline twice (cold: start to
   first result, model load included; warm: the second request) and a 1-minute timeline; (1b) in this process, the
   same timelines on DEVICE and on the CPU at seed 0: peak GPU memory, and whether the joints agree (the largest
   joint difference, and the first frame where they differ by more than 1 mm, with the prompt being played there);
   (1c) the worker again with the pure scan; (4) torch.profiler's view of a warm README timeline on DEVICE.
5. **kmm-train** (with `--prepared FOLDER`): `kmm-train all` on the tiny config, every stage in float32 and then
   with bf16 autocast, each bundle then generating a walk on DEVICE.
6. **Each scan on generation**: warm README, 1-minute and 10-minute timelines on DEVICE with training's CUDA scan
   made to generate and with generation's own, and on the CPU.
7. **The animator's own words** (`--phrasings N`: the first N only): the everyday phrasing suite
   (`measure_everyday_phrasings.py`) at seed 0 on DEVICE and on the CPU: the same tokens, the same verdicts of
   their geometric checks, how far the joints part.
2. **Training**: one generator training step (`benchmarks/bench_training_step.py`'s model and batches: the shipped
   size, batch 32 x 50 tokens) on DEVICE with the pure scan and with the chosen one, fp32 and bf16 autocast, beside
   the same step on the CPU.
3. **The scan kernels**: our pure scan, our Triton kernels (`kmm_core/model/triton_selective_scan.py`) and
   mamba-ssm's fused `selective_scan_fn` when it imports, on the same inputs, forward and forward+backward, fp32 and
   bf16, at the shipped block's size and 4x longer: the time of each and its largest difference from the pure scan
   in the output and every gradient.

    python benchmarks/cuda_check.py --device cuda --budget 420 --out benchmarks/results/cuda_check_h200.md
    python benchmarks/cuda_check.py --device cpu --budget 300 --out /tmp/cuda_check_dry_run.md   # the dry run

On a GPU machine with PyTorch but without our other dependencies, `benchmarks/gpu_payload.py` packs what it needs.
On a machine without CUDA, `--device cpu` runs every step that does not need CUDA (the dry run that proves the
script before a GPU machine is lent); the GPU-only measures are written as "not run (no CUDA)".
"""

from __future__ import annotations

import argparse
import contextlib
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


def _timed(function, repeats: int, device: str) -> float:
    """Median seconds of ``function()`` after two untimed calls (the first warms caches and compiles any Triton
    kernel)."""
    times = []
    for index in range(repeats + 2):
        _sync(device)
        begun = time.perf_counter()
        function()
        _sync(device)
        if index >= 2:
            times.append(time.perf_counter() - begun)
    return float(np.median(times))


def _subprocess_env() -> dict[str, str]:
    """The environment of the commands this check starts: this checkout first on the path, nothing downloaded."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
            "HF_HUB_OFFLINE": "1"}


# ---- 1. the add-on's path ----------------------------------------------------------------------------------------
def worker_run(device: str, timelines: list[tuple[str, dict]], output_dir: Path, scan: str | None = None
               ) -> list[str]:
    """The real worker, driven as the add-on drives it: hello, load, then each timeline; the seconds each took.
    ``scan``: a KMM_SELECTIVE_SCAN value for the worker (None: its own choice)."""
    env = _subprocess_env()
    if scan is not None:
        env["KMM_SELECTIVE_SCAN"] = scan
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


def _tokens(bundle, timeline, seed: int = 0):
    """The token codes generation decodes for ``timeline`` and the 20 fps frames they cover (``generate_codes``, as
    ``generate_timeline`` calls it)."""
    from kmm_core.generation.decoding_engine import GenerationOptions, StepCounter
    from kmm_core.generation.timeline_generator import generate_codes, planned_steps

    options = GenerationOptions()
    config = options.decoding_config(bundle)
    counter = StepCounter(planned_steps(bundle, timeline, options, config), None, None)
    return generate_codes(bundle, timeline, seed, options, counter, config)  # (codes on the bundle's device, frames)


def agreement(device: str, repeats: int = 3) -> list[str]:
    """The README timeline and the 1-minute timeline at seed 0 on DEVICE and on the CPU: warm time on each, peak
    memory, whether the tokens and the joints agree (and where they first part)."""
    from kmm_core.bundle.model_bundle import ModelBundle, default_bundle_path
    from kmm_core.generation.timeline import Timeline
    from kmm_core.generation.timeline_generator import generate_timeline
    from kmm_core.motion.model_timing import FRAMES_PER_TOKEN, MODEL_FPS

    lines = []
    cpu = ModelBundle.load(default_bundle_path(), device="cpu")
    other = ModelBundle.load(default_bundle_path(), device=device) if device != "cpu" else cpu
    for name, data in (("README timeline", json.loads(README_TIMELINE.read_text())), ("1-minute timeline",
                                                                                        MINUTE_TIMELINE)):
        timeline = Timeline.from_dict(data)
        taken = {}
        for where, bundle in (("cpu", cpu), (device, other)):
            if where.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            taken[where] = _timed(lambda bundle=bundle, timeline=timeline: generate_timeline(bundle, timeline, seed=0),
                                  repeats, where)
        memory = (f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
                  if device.startswith("cuda") else "")
        on_device = generate_timeline(other, timeline, seed=0)[0]
        on_cpu = generate_timeline(cpu, timeline, seed=0)[0]
        gap = np.linalg.norm(np.asarray(on_device.joints) - np.asarray(on_cpu.joints), axis=-1).max(axis=-1)
        differ = np.flatnonzero(gap > 1e-3)

        def prompt_at(frame: int, motion=on_cpu) -> str:
            return next((p for (start, end), p in zip(motion.segment_frames, motion.segment_prompts, strict=True)
                         if start <= frame < end), "?")

        where = "never" if not differ.size else f"from frame {int(differ[0])} ({prompt_at(int(differ[0]))!r})"
        tokens_of = [_tokens(bundle, timeline) for bundle in (cpu, other)]
        same = (tokens_of[0][0].cpu() == tokens_of[1][0].cpu()).all(dim=-1)
        parted = torch.nonzero(~same).flatten()
        if parted.numel():
            token = int(parted[0])
            frame = round(token * FRAMES_PER_TOKEN * timeline.fps / MODEL_FPS)
            tokens = (f"{int(same.sum())} of {same.numel()} tokens equal, the first different at token {token} "
                      f"(frame {frame}, {prompt_at(frame)!r}); the sampling draws from the same CPU generator on both, "
                      "so it is the logits' float rounding on the two devices that tipped a draw there")
        else:
            tokens = f"all {same.numel()} tokens equal"
        lines.append(f"{name}: warm {taken[device]:.2f} s on {device}, {taken['cpu']:.2f} s on the CPU (medians of "
                     f"{repeats}){memory}; {tokens}; joints vs the CPU: largest difference {gap.max() * 1000:.3f} mm, "
                     f"more than 1 mm {where}")
        lines.append(f"{name}, the same tokens decoded: "
                     f"{decoded_agreement((cpu, other), tokens_of, timeline)}")
    return lines


def decoded_agreement(bundles, tokens_of, timeline) -> str:
    """Where the devices part after equal tokens: each bundle's own tokens (``_tokens``) decoded without the foot
    clean-up, and the contact channels whose decision (above 0.5 = in contact) the foot clean-up follows."""
    from kmm_core.generation.decoding_engine import GenerationOptions
    from kmm_core.generation.timeline_generator import _decoded_motion

    raw = GenerationOptions(foot_lock=False)
    decoded = [_decoded_motion(bundle, codes, frames, timeline, raw, 0)  # seed 0, as the tokens were drawn
               for bundle, (codes, frames) in zip(bundles, tokens_of, strict=True)]
    joints = [np.asarray(motion.joints) for motion, _ in decoded]
    raw_gap = np.linalg.norm(joints[0] - joints[1], axis=-1).max()
    channels = [np.asarray(contact) for _, contact in decoded]
    flips = np.argwhere((channels[0] > 0.5) != (channels[1] > 0.5))
    flipped = ("no contact decision differs" if not len(flips) else
               f"{len(flips)} contact decisions differ, the first at frame {int(flips[0][0])} (channels "
               f"{channels[0][tuple(flips[0])]:.4f} on the CPU, {channels[1][tuple(flips[0])]:.4f} on the device)")
    return (f"without the foot clean-up the joints differ by at most {raw_gap * 1000:.3f} mm; largest contact channel "
            f"difference {np.abs(channels[0] - channels[1]).max():.2e}, {flipped}")


def profile(device: str) -> list[str]:
    """Where a warm README timeline's time goes on DEVICE: torch.profiler's top operators by their own CPU time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from kmm_core.bundle.model_bundle import ModelBundle, default_bundle_path
    from kmm_core.generation.timeline import Timeline
    from kmm_core.generation.timeline_generator import generate_timeline

    bundle = ModelBundle.load(default_bundle_path(), device=device)
    timeline = Timeline.from_dict(json.loads(README_TIMELINE.read_text()))
    generate_timeline(bundle, timeline, seed=0)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with torch_profile(activities=activities) as profiler:
        generate_timeline(bundle, timeline, seed=0)
        _sync(device)
    events = profiler.key_averages()
    total_cpu = sum(event.self_cpu_time_total for event in events)
    launches = sum(event.count for event in events if event.key.startswith("cuda") and "Launch" in event.key)
    lines = [f"operators' own CPU time {total_cpu / 1e6:.2f} s; kernel launches {launches}"]
    for event in sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:12]:
        device_time = getattr(event, "self_device_time_total", 0)
        lines.append(f"{event.key}: {event.count} calls, own CPU {event.self_cpu_time_total / 1e3:.1f} ms, "
                     f"own device {device_time / 1e3:.1f} ms")
    return lines


# ---- 2. training ---------------------------------------------------------------------------------------------------
def training_step(device: str, repeats: int = 5) -> list[str]:
    """One generator step, the shipped size, on the CPU (fp32, its own scan) and on DEVICE: each CUDA scan there is
    (the pure scan, and the one ``cuda_scan_choice`` picks), fp32 and bf16 autocast."""
    from benchmarks.bench_training_step import Variant, make_inputs, small_generator_config
    from kmm_core.model.selective_scan import cuda_scan_choice

    lines = []
    config = small_generator_config("mamba")
    runs = [("cpu", None, "fp32", 50)]
    if device.startswith("cuda"):
        chosen = cuda_scan_choice(device)[0]
        runs += [(device, scan, precision, length) for length in (50, 200) for scan in dict.fromkeys(["pure", chosen])
                 for precision in ("fp32", "bf16")]
    for where, scan, precision, length in runs:
        variant = Variant(f"mamba {where} {precision}", "mamba", scan)
        variant.model.to(where)
        inputs = make_inputs(config, 32, length, seed=0)
        # The masks are drawn from a CPU generator on every device, as training does (the same masks anywhere).
        inputs = {k: (v.to(where) if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}

        def step(variant=variant, inputs=inputs, where=where, half=precision == "bf16"):
            with torch.autocast(device_type=where.split(":")[0], dtype=torch.bfloat16, enabled=half):
                variant.step(inputs)

        label = f"{where}, {precision}" + (f", {scan or 'chosen'} scan" if where != "cpu" else ", its CPU scan")
        lines.append(f"generator step, batch 32 x {length}: {label}: {1000 * _timed(step, repeats, where):.1f} ms "
                     f"(median of {repeats})")
    return lines


# ---- 3. the scan ---------------------------------------------------------------------------------------------------
def scan_comparison(device: str, repeats: int = 10) -> list[str]:
    """Our pure scan, our Triton kernels and (when it imports) mamba-ssm's fused kernel on the same inputs: the
    shipped block's size (batch 32, 384 channels, 16 states, 50 tokens) and 4x longer, fp32 and bf16 autocast."""
    from kmm_core.model.selective_scan import _fused_selective_scan_fn, selective_scan_pure

    if not device.startswith("cuda"):
        return ["scan kernels: not run (no CUDA); the pure and Triton scans' equality with a float64 reference is in "
                "the tests (the Triton kernels under TRITON_INTERPRET=1)"]
    from kmm_core.model.selective_scan import selective_scan_triton, triton_availability

    scans = {"pure": selective_scan_pure}
    lines = [f"Triton: {triton_availability(device)[1]}"]
    if triton_availability(device)[0]:
        scans["triton"] = selective_scan_triton
    fused = _fused_selective_scan_fn()
    if fused is not None:
        scans["mamba_ssm"] = fused
    else:
        lines.append("mamba-ssm: not importable (not installed on this machine)")
    names = ("u", "delta", "A", "B", "C", "D", "z")
    for length in (50, 200):
        for dtype in (torch.float32, torch.bfloat16):
            generator = torch.Generator(device=device).manual_seed(0)
            batch, channels, state = 32, 384, 16

            def tensor(*shape, scale=1.0, generator=generator):
                return torch.randn(*shape, generator=generator, device=device) * scale

            inputs = [tensor(batch, channels, length), tensor(batch, channels, length, scale=0.5),
                      -torch.rand(channels, state, generator=generator, device=device) - 0.5,
                      tensor(batch, state, length), tensor(batch, state, length), tensor(channels),
                      tensor(batch, channels, length)]
            weight = tensor(batch, channels, length)
            results, forward_times, both_times = {}, {}, {}
            for name, scan in scans.items():
                leaves = [t.clone().requires_grad_() for t in inputs]

                def forward(scan=scan, leaves=leaves, half=dtype == torch.bfloat16):
                    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=half):
                        return scan(*leaves[:5], D=leaves[5], z=leaves[6], delta_softplus=True)

                def forward_backward(forward=forward, leaves=leaves, weight=weight):
                    (forward().float() * weight).sum().backward()
                    for leaf in leaves:
                        leaf.grad = None

                with torch.no_grad():
                    forward_times[name] = _timed(forward, repeats, device)
                both_times[name] = _timed(forward_backward, repeats, device)
                out = forward()
                (out.float() * weight).sum().backward()
                results[name] = [out.detach().float()] + [leaf.grad.detach().float() for leaf in leaves]
            size = f"{batch}x{channels}x{length}, {str(dtype).split('.')[-1]}"
            for name in scans:
                gaps = "" if name == "pure" else "; largest difference from pure: " + ", ".join(
                    f"{label} {(mine - theirs).abs().max().item():.1e}" for label, mine, theirs in zip(
                        ("y",) + tuple(f"d{n}" for n in names), results[name], results["pure"], strict=True))
                lines.append(f"scan {size}, {name}: forward {1000 * forward_times[name]:.2f} ms, forward+backward "
                             f"{1000 * both_times[name]:.2f} ms (medians of {repeats}){gaps}")
    return lines


def training_run(device: str, prepared: Path | None, folder: Path) -> list[str]:
    """``kmm-train all`` as a researcher runs it, on the tiny config and a prepared folder: every stage in float32,
    then every stage with bf16 autocast (``train.<stage>.amp``), each bundle loaded and generating on DEVICE."""
    if prepared is None:
        return ["not run: no --prepared folder (a `kmm-train prepare` output) was given"]
    tiny = REPO_ROOT / "training" / "configs" / "tiny.toml"
    env = _subprocess_env()
    lines = []
    for precision in ("fp32", "bf16"):
        run = folder / f"tiny-{precision}"
        amp = [] if precision == "fp32" else [item for stage in ("tokenizer", "aligner", "evaluator", "generator",
                                                                 "decoder")
                                              for item in ("--set", f"train.{stage}.amp=bf16")]
        commands = (
            ("kmm-train all", [sys.executable, "-m", "kmm_core.training.cli", "all", "--config", str(tiny), "--out",
                               str(run), "--device", device, "--no-progress", "--set", f"data.root={prepared}", *amp]),
            ("kmm generate with its bundle", [sys.executable, "-m", "kmm_core.cli", "generate", "a person walks forward",
                                              "--seconds", "4", "--checkpoint", str(run / "bundle"), "--device",
                                              device.split(":")[0], "-o", str(run / "walk.bvh"), "--quiet"]),
        )
        for name, command in commands:
            begun = time.monotonic()
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
            took = time.monotonic() - begun
            outcome = "ok" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr.strip()[-1500:]}"
            lines.append(f"{precision}: {name}: {outcome} ({took:.1f} s)")
    return lines


def scan_on_generation(device: str, repeats: int = 2) -> list[str]:
    """Warm generation on DEVICE with each CUDA scan (the one training takes, also made to generate, and the pure
    scan generation takes) and on the CPU: the README timeline, the 1-minute and a 10-minute timeline (50 prompts),
    medians of ``repeats``, the scans interleaved."""
    from unittest import mock

    from kmm_core.bundle.model_bundle import ModelBundle, default_bundle_path
    from kmm_core.generation.timeline import Timeline
    from kmm_core.generation.timeline_generator import generate_timeline
    from kmm_core.model import selective_scan as scan_module

    training_choice = scan_module.cuda_scan_choice

    @contextlib.contextmanager
    def generation_scan(scan: str | None):
        """``"training"``: generation takes the scan training takes; None: the product's own rule."""
        if scan is None:
            yield
            return
        with mock.patch.object(scan_module, "cuda_scan_choice",
                               lambda device="cuda", gradients=True: training_choice(device, True)):
            yield

    ten_minutes = {"fps": 30, "segments": MINUTE_TIMELINE["segments"] * 10}
    cpu = ModelBundle.load(default_bundle_path(), device="cpu")
    other = ModelBundle.load(default_bundle_path(), device=device) if device != "cpu" else cpu
    runs = [("cpu", cpu, None)]
    if device.startswith("cuda"):
        runs = [(f"{device}, {training_choice(device)[0]} scan (training's)", other, "training"),
                (f"{device}, {training_choice(device, gradients=False)[0]} scan (generation's)", other, None), *runs]
    lines = []
    for name, data in (("README timeline", json.loads(README_TIMELINE.read_text())),
                       ("1-minute timeline", MINUTE_TIMELINE), ("10-minute timeline", ten_minutes)):
        timeline = Timeline.from_dict(data)
        times: dict[str, list[float]] = {label: [] for label, _, _ in runs}
        for repeat in range(repeats + 1):
            for label, bundle, scan in runs:
                with generation_scan(scan):
                    where = "cpu" if bundle is cpu else device
                    _sync(where)
                    begun = time.perf_counter()
                    generate_timeline(bundle, timeline, seed=0)
                    _sync(where)
                if repeat:  # the first round warms every path
                    times[label].append(time.perf_counter() - begun)
        lines.append(f"{name}: " + "; ".join(f"{label} {np.median(values):.2f} s" for label, values in times.items())
                     + f" (warm, medians of {repeats})")
    return lines


def everyday_agreement(device: str, limit: int | None = None, seed: int = 0) -> list[str]:
    """The everyday phrasing suite (``benchmarks/measure_everyday_phrasings.py``: every prompt alone, its seconds,
    judged by its geometric check) at ``seed`` on DEVICE and on the CPU: whether each draws the same tokens, passes
    the same, and how far its joints part; the first ``limit`` phrasings only when given.  Every part of the
    generation path a prompt in the animator's own words takes runs here (the conditions completed by the nearest
    captions, the raised guidance, the walk candidates, the gait cycles, the decoders, the foot clean-up)."""
    from benchmarks.measure_everyday_phrasings import SECONDS, SUITE, judge
    from kmm_core.bundle.model_bundle import ModelBundle, default_bundle_path
    from kmm_core.generation.timeline import Timeline
    from kmm_core.generation.timeline_generator import generate_timeline
    from kmm_core.motion.model_timing import MODEL_FPS

    cpu = ModelBundle.load(default_bundle_path(), device="cpu")
    other = ModelBundle.load(default_bundle_path(), device=device) if device != "cpu" else cpu
    frames = int(round(SECONDS * MODEL_FPS))
    suite = SUITE[:limit] if limit else SUITE
    runs = (("cpu", cpu), ("device", other))  # keyed apart, also in the dry run where DEVICE is the CPU
    same_tokens, passes, parted, gaps, taken = 0, {"cpu": 0, "device": 0}, [], [], {"cpu": 0.0, "device": 0.0}
    for phrasing, label in suite:
        timeline = Timeline.from_dict({"fps": MODEL_FPS, "segments": [{"prompt": phrasing, "start": 1, "end": frames}]})
        joints, verdicts = {}, {}
        for where, bundle in runs:
            _sync(device if where == "device" else "cpu")
            begun = time.perf_counter()
            joints[where] = np.asarray(generate_timeline(bundle, timeline, seed=seed)[0].joints, dtype=np.float64)
            _sync(device if where == "device" else "cpu")
            taken[where] += time.perf_counter() - begun
            verdicts[where] = judge(label, joints[where])
            passes[where] += verdicts[where]
        tokens = [_tokens(bundle, timeline, seed)[0].cpu() for _, bundle in runs]
        same_tokens += bool(torch.equal(tokens[0], tokens[1]))
        travel = float(np.linalg.norm(joints["cpu"][-1, 0, [0, 2]] - joints["cpu"][0, 0, [0, 2]]))
        gaps.append((float(np.linalg.norm(joints["cpu"] - joints["device"], axis=-1).max()), phrasing, travel))
        if verdicts["cpu"] != verdicts["device"]:
            parted.append(f"{phrasing!r} ({'passes' if verdicts['cpu'] else 'fails'} on the CPU)")
    count = len(suite)
    return [f"{count} phrasings, {SECONDS:g} s each, seed {seed}: the same tokens on {device} and the CPU for "
            f"{same_tokens} of {count}; passing its check: {passes['device']} on {device}, {passes['cpu']} on the CPU; "
            f"verdicts that differ: {len(parted)}{': ' + '; '.join(parted) if parted else ''}",
            f"joints vs the CPU, largest difference per phrasing: median {np.median([g[0] for g in gaps]) * 1000:.3f} "
            f"mm, largest {max(gaps)[0] * 1000:.3f} mm ({max(gaps)[1]!r}, whose pelvis ends {max(gaps)[2]:.2f} m from "
            "where it starts)",
            f"generation time, the whole suite (first runs included): {taken['device']:.1f} s on {device}, "
            f"{taken['cpu']:.1f} s on the CPU"]


def environment(device: str) -> list[str]:
    """What the machine has: the card, torch, Triton, and which CUDA scan the product picks there."""
    from kmm_core.model.selective_scan import cuda_scan_choice

    lines = [f"torch {torch.__version__}, CUDA {torch.version.cuda}, Python {platform.python_version()}"]
    try:
        import triton

        lines.append(f"triton {triton.__version__}")
    except Exception as error:  # noqa: BLE001
        lines.append(f"triton not importable ({type(error).__name__})")
    if device.startswith("cuda"):
        properties = torch.cuda.get_device_properties(0)
        lines.append(f"{properties.name}, {properties.total_memory / 2**30:.0f} GiB, {properties.multi_processor_count} "
                     f"multiprocessors, compute capability {properties.major}.{properties.minor}")
        lines.append("the CUDA scan the product picks for training: {} ({})".format(*cuda_scan_choice(device)))
        lines.append("and for generation: {} ({})".format(*cuda_scan_choice(device, gradients=False)))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds; no step starts after them")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "cuda_check.md")
    parser.add_argument("--prepared", type=Path, help="a `kmm-train prepare` folder for step 5 (kmm-train all, tiny)")
    parser.add_argument("--phrasings", type=int, help="step 7: only the first N everyday phrasings")
    parser.add_argument("--only", nargs="+", metavar="STEP", help="run only these steps (e.g. 1b 3), in their order")
    args = parser.parse_args(argv)
    budget = Budget(args.budget)
    card = (torch.cuda.get_device_name(0) if args.device.startswith("cuda") and torch.cuda.is_available()
            else platform.processor() or platform.machine())
    lines = ["# The CUDA check", "", f"Command: `python benchmarks/cuda_check.py --device {args.device} --budget "
             f"{args.budget:g}{' --only ' + ' '.join(args.only) if args.only else ''}"
             f"{f' --phrasings {args.phrasings}' if args.phrasings else ''}`; device: {card}; torch {torch.__version__}; Python {platform.python_version()}.", ""]
    with tempfile.TemporaryDirectory() as folder:
        readme = json.loads(README_TIMELINE.read_text())
        # Cheap steps first, so a run cut short still brings them back (the report is written after every step).
        steps = (
            ("0. the machine", lambda: environment(args.device)),
            ("1a. the worker, as the add-on runs it", lambda: worker_run(args.device, [
                ("README timeline, cold", readme)] + [(f"README timeline, warm {n}", readme) for n in (1, 2, 3)] + [
                ("1-minute timeline, warm", MINUTE_TIMELINE)], Path(folder))),
            ("2. a training step", lambda: training_step(args.device)),
            ("3. the scan kernels side by side", lambda: scan_comparison(args.device)),
            ("1b. agreement with the CPU, peak memory", lambda: agreement(args.device)),
            ("1c. the worker with the pure scan (KMM_SELECTIVE_SCAN=pure)", lambda: worker_run(args.device, [
                ("README timeline, cold", readme)] + [(f"README timeline, warm {n}", readme) for n in (1, 2, 3)] + [
                ("1-minute timeline, warm", MINUTE_TIMELINE)], Path(folder), scan="pure")),
            ("4. where a warm README timeline's time goes", lambda: profile(args.device)),
            ("5. training every stage with kmm-train", lambda: training_run(args.device, args.prepared, Path(folder))),
            ("6. each scan on generation, up to 10 minutes", lambda: scan_on_generation(args.device)),
            ("7. the everyday phrasings on the device and the CPU",
             lambda: everyday_agreement(args.device, args.phrasings)),
        )
        unknown = sorted(set(args.only or ()) - {title.split(".")[0] for title, _ in steps})
        if unknown:
            parser.error(f"--only {' '.join(unknown)}: no such step (the steps: "
                         f"{', '.join(title.split('.')[0] for title, _ in steps)})")
        for title, step in steps:
            if args.only and title.split(".")[0] not in args.only:
                continue
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
