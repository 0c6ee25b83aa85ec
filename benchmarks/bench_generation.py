# SPDX-License-Identifier: GPL-3.0-or-later
"""Generation speed and transition smoothness.

    python benchmarks/bench_generation.py --bundle runs/tiny/bundle [--bundle other] [--steps 10] [--json out.json]

For every bundle (plus the default shipped bundle when it exists):
* warm worker latency: a real `python -m kmm_core.worker`, model loaded once, then the wall time of repeated
  1-second generate requests (request sent -> result received);
* in-process generation time of 10 s, 1 min and 10 min single-prompt-per-10-s timelines (the 10 min one is 3000
  tokens, decoded in windows);
* boundary jerk of the two transition modes (per_token, inpaint) on a 6-prompt timeline over several seeds: the
  mean jerk (m/s^3, motion_quality.jerk_curve) within +-0.5 s of every boundary.  The lower mode is the default.

Without --bundle, a tiny bundle is trained first exactly as tests/conftest.py does (needs ../shared/data).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from kmm_core.evaluation.motion_quality import jerk_curve  # noqa: E402
from kmm_core.generation.decoding_engine import GenerationOptions  # noqa: E402
from kmm_core.generation.timeline import TRANSITION_MODES, Timeline  # noqa: E402
from kmm_core.generation.timeline_generator import generate_timeline  # noqa: E402

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
PROMPTS = ["a person walks forward", "a person waves with the right hand", "a person jumps in place",
           "a person turns around", "a person sits down", "a person runs forward"]


def timeline_of(seconds: float, segment_seconds: float = 10.0) -> Timeline:
    count = max(1, round(seconds / segment_seconds))
    return Timeline.from_dict({"fps": 20, "segments": [{"prompt": PROMPTS[i % len(PROMPTS)],
                                                        "seconds": seconds / count} for i in range(count)]})


def boundary_jerk(joints: np.ndarray, fps: float, boundaries: list[int], half_window: float = 0.5) -> float:
    """Mean jerk within +-half_window seconds of every boundary."""
    curve = jerk_curve(joints, fps)
    reach = round(half_window * fps)
    values = [curve[max(0, b - reach):min(len(curve), b + reach)] for b in boundaries]
    return float(np.concatenate(values).mean())


def measure_transitions(bundle, steps: int | None, seeds: int) -> dict:
    timeline = Timeline.from_dict({"fps": 20, "segments": [{"prompt": p, "seconds": 3.0} for p in PROMPTS]})
    boundaries = [start for start, _ in timeline.segment_ranges()[1:]]
    report = {}
    for mode in TRANSITION_MODES:
        jerks, overall = [], []
        started = time.perf_counter()
        for seed in range(seeds):
            (motion,) = generate_timeline(bundle, timeline, seed=seed,
                                          options=GenerationOptions(steps=steps, transitions=mode))
            jerks.append(boundary_jerk(motion.joints, motion.fps, boundaries))
            overall.append(float(jerk_curve(motion.joints, motion.fps).mean()))
        report[mode] = {"boundary_jerk": float(np.mean(jerks)), "boundary_jerk_std": float(np.std(jerks)),
                        "mean_jerk_everywhere": float(np.mean(overall)),
                        "seconds_per_motion": (time.perf_counter() - started) / seeds}
    return report


def measure_lengths(bundle, steps: int | None) -> dict:
    report = {}
    for label, seconds in (("10s", 10.0), ("1min", 60.0), ("10min", 600.0)):
        timeline = timeline_of(seconds)
        started = time.perf_counter()
        (motion,) = generate_timeline(bundle, timeline, seed=0, options=GenerationOptions(steps=steps))
        elapsed = time.perf_counter() - started
        assert motion.num_frames == timeline.total_frames
        report[label] = {"seconds": round(elapsed, 2), "frames": motion.num_frames,
                         "realtime_factor": round(seconds / elapsed, 2)}
        print(f"  {label}: {elapsed:.1f} s", file=sys.stderr, flush=True)
    return report


def measure_worker(bundle_path: Path, steps: int | None, repeats: int = 3) -> dict:
    from kmm_core.worker.client import WorkerClient
    from kmm_core.worker.protocol import Generate, Load

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        client = WorkerClient(sys.executable, worker_args=("-m", "kmm_core.worker", "--device", "cpu"))
        try:
            client.handshake(timeout=300)
            handshake = time.perf_counter() - started
            started = time.perf_counter()
            answer = client.wait_for(client.send(Load(checkpoint=str(bundle_path), device="cpu")), timeout=300)
            assert answer["type"] == "result", answer
            load = time.perf_counter() - started
            timeline = timeline_of(1.0).to_dict()
            latencies = []
            for index in range(repeats + 1):  # the first request warms caches (text encoder, allocator)
                started = time.perf_counter()
                answer = client.wait_for(client.send(Generate(timeline=timeline, output_dir=folder, seed=index,
                                                              steps=steps)), timeout=300)
                assert answer["type"] == "result", answer
                latencies.append(time.perf_counter() - started)
        finally:
            client.shutdown(30)
    return {"handshake_seconds": round(handshake, 2), "load_seconds": round(load, 2),
            "first_request_seconds": round(latencies[0], 3),
            "warm_request_seconds": round(float(np.median(latencies[1:])), 3)}


def train_tiny_bundle(folder: Path) -> Path:
    from kmm_core.training.cli import main as train
    from kmm_core.training.prepare_command import main as prepare

    archives = folder / "archives"
    archives.mkdir(parents=True)
    for archive in (SHARED_DATA / "bandai-namco" / "bandai-namco-bvh.tar.xz", SHARED_DATA / "cmu" / "cmu-bvh.tar.xz"):
        with tarfile.open(archive, "r:xz") as tar:
            tar.extractall(archives, filter="data")
    dataset = folder / "dataset"
    if prepare(["--bandai-namco", str(archives), "--cmu", str(SHARED_DATA / "cmu" / "cmu-bvh.tar.xz"),
                "--cmu-descriptions", str(SHARED_DATA / "cmu" / "cmu-descriptions.json"), "--limit-per-content", "3",
                "--seed", "0", "--workers", "1", "--quiet", "--out", str(dataset)]) != 0:
        raise SystemExit("kmm-train prepare failed")
    if train(["all", "--config", str(REPO_ROOT / "training" / "configs" / "tiny.toml"), "--out", str(folder / "run"),
              "--set", f"data.root={dataset}", "--device", "cpu", "--no-progress"]) != 0:
        raise SystemExit("kmm-train all failed")
    return folder / "run" / "bundle"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", action="append", default=[], help="model bundle folder (repeatable)")
    parser.add_argument("--steps", type=int, default=None, help="decoding steps (default: the bundle's)")
    parser.add_argument("--seeds", type=int, default=4, help="seeds per transition mode")
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args(argv)

    import torch

    from kmm_core.bundle.model_bundle import ModelBundle, default_bundle_path

    bundles = [Path(b) for b in args.bundle]
    scratch = None
    if not bundles:
        scratch = tempfile.TemporaryDirectory()
        print("training a tiny bundle first ...", file=sys.stderr, flush=True)
        bundles.append(train_tiny_bundle(Path(scratch.name)))
    if (default_bundle_path() / "bundle.json").is_file():
        bundles.append(default_bundle_path())
    report = {"machine": {"python": platform.python_version(), "torch": torch.__version__,
                          "cpu_threads": torch.get_num_threads(), "processor": platform.processor()},
              "bundles": {}}
    for path in bundles:
        print(f"bundle {path}", file=sys.stderr, flush=True)
        bundle = ModelBundle.load(path, device="cpu")
        entry = {"generator_parameters": sum(p.numel() for p in bundle.generator.parameters()),
                 "worker": measure_worker(path, args.steps),
                 "generation": measure_lengths(bundle, args.steps),
                 "transitions": measure_transitions(bundle, args.steps, args.seeds)}
        report["bundles"][str(path)] = entry
        print(json.dumps(entry, indent=2), file=sys.stderr, flush=True)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    if scratch is not None:
        scratch.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
