# SPDX-License-Identifier: GPL-3.0-or-later
"""Warm generation time of multi-prompt timelines with the shipped model, per transition mode, side by side.

Timelines: 1 minute of 5 prompts (12 s each) and 10 minutes of 50 prompts, 30 fps (the scene rate the add-on
writes), one variation, seed 0, the bundle's decoding settings. Variants, interleaved per repeat:

- ``inpaint``: the default mode as shipped (``generation/transition_inpainting.py``: all segments in one batched
  decode, then all boundary windows in another);
- ``inpaint_sequential``: the same mode as it was before (each segment decoded alone, then the whole timeline
  decoded again with only the transition tokens free), re-implemented here for the comparison;
- ``per_token``: one decode of the whole timeline with per-token conditions.

The model is loaded and warmed up first (a 4-second prompt). Wall-clock and CPU medians; on a loaded machine the CPU
time is the better estimate of what an idle machine's wall time would be.

Run: ``python benchmarks/bench_timeline_speed.py [--bundle kmm_core/checkpoints/kmm-small] [--repeats 3]
[--threads 1] [--out benchmarks/results/timeline_speed.md]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from kmm_core.bundle.model_bundle import ModelBundle  # noqa: E402
from kmm_core.generation import decoding_engine as engine  # noqa: E402
from kmm_core.generation import timeline_generator as tg  # noqa: E402
from kmm_core.generation.timeline import Timeline  # noqa: E402
from kmm_core.model.masked_generator import token_condition_from_segments  # noqa: E402
from kmm_core.model.motion_tokenizer import num_tokens_for_frames  # noqa: E402
from kmm_core.motion.model_timing import FRAMES_PER_TOKEN, MODEL_FPS  # noqa: E402

PROMPTS = ["a person walks forward", "a person waves with the right hand", "a person jumps in place",
           "a person turns around", "a person sits down", "a person runs forward", "a person raises the left hand"]


def timeline_of(minutes: float, prompts: int) -> Timeline:
    return Timeline.from_dict({"fps": 30, "segments": [{"prompt": PROMPTS[i % len(PROMPTS)],
                                                        "seconds": minutes * 60 / prompts} for i in range(prompts)]})


def sequential_inpaint(bundle, timeline: Timeline, seed: int) -> None:
    """The default mode before batching: every segment alone, then the whole timeline with the transitions free."""
    options = engine.GenerationOptions()
    config = options.decoding_config(bundle)
    counter = engine.StepCounter(1, None, None)
    num_frames = tg.model_frames(timeline)
    num_tokens = num_tokens_for_frames(num_frames)
    spans = timeline.segment_ranges(MODEL_FPS)
    embeddings = bundle.prompt_embeddings(timeline.prompts)
    condition = token_condition_from_segments(embeddings, spans, num_tokens)
    rng = torch.Generator().manual_seed(seed)
    bounds = tg.token_boundaries(spans, num_tokens)
    codes = torch.full((num_tokens, bundle.generator.config.num_quantizers), -1, dtype=torch.int64)
    for index in range(len(spans)):
        start, end = bounds[index], bounds[index + 1]
        codes[start:end] = engine.decode_windowed(bundle, (end - start) * FRAMES_PER_TOKEN,
                                                  embeddings[index].expand(end - start, -1), None, config, rng,
                                                  options, counter)
    for boundary in bounds[1:-1]:
        codes[max(0, boundary - options.transition_tokens):min(num_tokens, boundary + options.transition_tokens)] = -1
    codes = engine.decode_windowed(bundle, num_frames, condition, codes, config, rng, options, counter)
    tg.result_from_model_joints(bundle.codes_to_joints(codes, num_frames), timeline)


def run_variant(bundle, name: str, timeline: Timeline) -> None:
    if name == "inpaint_sequential":
        sequential_inpaint(bundle, timeline, seed=0)
    else:
        tg.generate_timeline(bundle, timeline, seed=0, options=engine.GenerationOptions(transitions=name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=REPO_ROOT / "kmm_core" / "checkpoints" / "kmm-small")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=["inpaint", "inpaint_sequential", "per_token"])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "timeline_speed.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bundle = ModelBundle.load(args.bundle, device="cpu")
    tg.generate_timeline(bundle, timeline_of(4 / 60, 1), seed=0)  # warm-up: first-call allocations, kernel load
    load = os.getloadavg()
    lines = [f"Bundle {args.bundle.name}, torch {torch.__version__}, {args.threads} thread(s), {args.repeats} "
             "interleaved repeats per variant after a warm-up, one variation, seed 0.",
             f"Load average at the start: {load[0]:.1f} (1 min) on {os.cpu_count()} cores"
             + (" — shared machine: wall times are upper bounds; CPU times estimate an idle machine's wall time."
                if load[0] > 1 else "."), "",
             "| timeline | variant | median wall s | median CPU s |", "| --- | --- | ---: | ---: |"]
    print("\n".join(lines), flush=True)
    for minutes, prompts in ((1, 5), (10, 50)):
        timeline = timeline_of(minutes, prompts)
        timings = {name: ([], []) for name in args.variants}
        for _ in range(args.repeats):
            for name in args.variants:
                wall, cpu = time.perf_counter(), time.process_time()
                run_variant(bundle, name, timeline)
                timings[name][0].append(time.perf_counter() - wall)
                timings[name][1].append(time.process_time() - cpu)
        for name, (walls, cpus) in timings.items():
            lines.append(f"| {minutes} min, {prompts} prompts | {name} | {statistics.median(walls):.2f} "
                         f"| {statistics.median(cpus):.2f} |")
            print(lines[-1], flush=True)
    load = os.getloadavg()
    lines += ["", f"Load average at the end: {load[0]:.1f} (1 min)."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python", "benchmarks/" + Path(sys.argv[0]).name, *sys.argv[1:]])
    args.out.write_text("# Timeline generation speed per transition mode\n\n"
                        f"Command: `{command}` (see the script's docstring).\n\n" + "\n".join(lines) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
