# SPDX-License-Identifier: GPL-3.0-or-later
"""Time the foot-contact cleanup adds to generation (budget: at most 10% of the generation time).

    python benchmarks/bench_foot_lock.py [--bundle kmm_core/checkpoints/kmm-small] [--seconds 60] [--fps 30]
                                         [--runs 3] [--threads 1] [--out benchmarks/results/foot_lock.md]

A `--seconds` timeline at `--fps` (one prompt per 10 s) is generated with `generate_timeline` with the cleanup on
and off, alternating, `--runs` times each (same seed, so both do identical decoding work); the cleanup alone
(`foot_contact.foot_locked_motion` on the unlocked result, geometry-only contacts) is timed on the same motion.
Reported: median wall seconds of each, the cleanup's share of the locked generation, and the on/off ratio.
Interleaving the two modes keeps a shared machine's load changes out of the ratio as far as possible.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from report_file import save_report  # noqa: E402  (benchmarks/ is the script's own folder)

from kmm_core.generation.timeline import Timeline  # noqa: E402
from kmm_core.generation.timeline_generator import GenerationOptions, generate_timeline  # noqa: E402
from kmm_core.motion.foot_contact import foot_locked_motion  # noqa: E402

PROMPTS = ["a person walks forward", "a person waves with the right hand", "a person jumps in place",
           "a person turns around", "a person runs forward", "a person kicks with the left leg"]


def timeline_of(seconds: float, fps: float) -> Timeline:
    count = max(1, round(seconds / 10.0))
    return Timeline.from_dict({"fps": fps, "segments": [{"prompt": PROMPTS[i % len(PROMPTS)],
                                                         "seconds": seconds / count} for i in range(count)]})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=str(REPO_ROOT / "kmm_core" / "checkpoints" / "kmm-small"))
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "foot_lock.md")
    args = parser.parse_args(argv)

    import torch

    from kmm_core.bundle.model_bundle import ModelBundle

    torch.set_num_threads(args.threads)
    bundle = ModelBundle.load(args.bundle, device="cpu")
    timeline = timeline_of(args.seconds, args.fps)
    generate_timeline(bundle, timeline_of(2.0, args.fps), seed=0)  # warm-up: lazy init, caches
    times: dict[str, list[float]] = {"on": [], "off": [], "cleanup": []}
    raw = None
    for _ in range(args.runs):
        for mode in ("on", "off"):
            started = time.perf_counter()
            (motion,) = generate_timeline(bundle, timeline, seed=1,
                                          options=GenerationOptions(foot_lock=mode == "on"))
            times[mode].append(time.perf_counter() - started)
            if mode == "off":
                raw = motion
        started = time.perf_counter()
        foot_locked_motion(raw)
        times["cleanup"].append(time.perf_counter() - started)
    on, off, cleanup = (statistics.median(times[key]) for key in ("on", "off", "cleanup"))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "# Foot-contact cleanup: time added to generation",
        "",
        f"`python benchmarks/bench_foot_lock.py --seconds {args.seconds:g} --fps {args.fps:g} --runs {args.runs} "
        f"--threads {args.threads}` with `{Path(args.bundle).name}`; {timeline.total_frames} frames "
        f"({len(timeline.segments)} prompts), CPU, torch threads {args.threads}, {platform.processor() or 'cpu'}; "
        f"1-minute load average at the end {load:.1f} on {os.cpu_count()} cores (a shared machine: the ratio of "
        f"interleaved runs is what counts).",
        "",
        "| measurement | median s | runs (s) |",
        "| --- | --- | --- |",
        f"| generate_timeline, foot lock on | {on:.3f} | {', '.join(f'{t:.3f}' for t in times['on'])} |",
        f"| generate_timeline, foot lock off | {off:.3f} | {', '.join(f'{t:.3f}' for t in times['off'])} |",
        f"| foot_locked_motion alone | {cleanup:.3f} | {', '.join(f'{t:.3f}' for t in times['cleanup'])} |",
        "",
        f"Cleanup alone = {100 * cleanup / off:.1f}% of the generation without it (budget 10%); "
        f"on / off = {on / off:.3f}.",
        "",
    ]
    save_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
