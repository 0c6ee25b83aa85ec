# SPDX-License-Identifier: GPL-3.0-or-later
"""Where the time of a warm 1-minute, 5-prompt timeline (default transitions, seed 0) goes, stage by stage.

The stages are the functions of the generation route, each wrapped in a wall-clock timer (no profiler running, so
nothing is inflated): decoding (the batched segments, the batched transition windows, the generator and residual
predictor forwards, the bidirectional Mamba backbone inside them, the sampling), the text encoder, the tokenizer's
decoder, the feature-to-joints recovery, the inverse kinematics, the resampling to 30 fps, paths, the constraint
solver and the foot clean-up (its contact lock, `hold_standing`, `stance_detail`, the legs' re-aim).  Nested stages
are indented; their time is part of the stage above.  Then two single measurements: one base-layer forward of the
segments' batch with and without classifier-free guidance (guidance doubles the batch), and torch.profiler's
operators of the decoding by self CPU time.  Same thread count as ``bench_timeline_speed.py``.

Run: ``python benchmarks/profile_timeline.py [--runs 5] [--threads 1] [--out benchmarks/results/timeline_profile.md]``
"""

from __future__ import annotations

import argparse
import functools
import inspect
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.bench_timeline_speed import timeline_of  # noqa: E402
from benchmarks.report_file import save_report  # noqa: E402
from kmm_core.bundle.model_bundle import ModelBundle  # noqa: E402
from kmm_core.generation import decoding_engine as engine  # noqa: E402
from kmm_core.generation import timeline_generator as tg  # noqa: E402
from kmm_core.model import decoding  # noqa: E402
from kmm_core.model.mamba import BidirectionalMamba  # noqa: E402
from kmm_core.model.masked_generator import MaskedGenerator, ResidualPredictor, guided_logits  # noqa: E402
from kmm_core.motion import foot_contact, take_cleanup  # noqa: E402
from kmm_core.motion.motion_result import MotionResult  # noqa: E402

TOTALS: dict[str, float] = defaultdict(float)
CALLS: dict[str, int] = defaultdict(int)
# (owner, attribute, label, depth): the owner is where the caller looks the name up.
STAGES = [
    (tg, "generate_codes", "decoding, all (`generate_codes`)", 0),
    (tg, "decode_segments_together", "segments, one batched decode", 1),
    (tg, "inpaint_transitions", "transition windows (inpainting), one batched decode", 1),
    (MaskedGenerator, "forward", "generator forward, base layer (guided: batch doubled)", 1),
    (ResidualPredictor, "forward", "residual predictor forward, 3 layers (guided)", 1),
    (BidirectionalMamba, "forward", "the bidirectional Mamba backbone inside those two", 2),
    (decoding, "_sample", "sampling (Gumbel-max, confidence)", 1),
    (ModelBundle, "prompt_embeddings", "text encoder (MiniLM + aligner), all prompts", 0),
    (ModelBundle, "codes_to_features", "tokenizer decode (`codes_to_features`)", 0),
    (tg, "smooth_decoded_features", "decoded-feature smoothing", 0),
    (tg, "features_to_joints", "features -> joints", 0),
    (MotionResult, "from_joints", "inverse kinematics (`MotionResult.from_joints`)", 0),
    (MotionResult, "resample", "resampling 20 -> 30 fps", 0),
    (tg.paths, "motion_on_paths", "paths (none here)", 0),
    (tg, "meet_constraints", "constraint solver (none here)", 0),
    (take_cleanup, "foot_locked_motion", "foot clean-up (`foot_locked_motion`)", 0),
    (foot_contact, "forward_kinematics", "forward kinematics", 1),
    (foot_contact, "clean_foot_contacts", "contact detection + `lock_feet`", 1),
    (foot_contact, "hold_standing", "`hold_standing`", 2),
    (foot_contact, "stance_detail", "`stance_detail`", 2),
    (foot_contact, "reaim_joints", "legs' rotations re-aimed (`reaim_joints`)", 1),
    (take_cleanup, "hands_planted_motion", "hands put down on all fours (`hands_planted_motion`)", 0),
]


def time_calls(owner, name: str, label: str) -> None:
    """Replace `owner.name` (a function, method or classmethod) by the same that adds its wall time to `label`."""
    original = inspect.getattr_static(owner, name)
    is_classmethod = isinstance(original, classmethod)
    function = original.__func__ if is_classmethod else original

    @functools.wraps(function)
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            TOTALS[label] += time.perf_counter() - start
            CALLS[label] += 1

    setattr(owner, name, classmethod(timed) if is_classmethod else timed)


def guidance_cost(bundle, timeline, repeats: int = 5) -> tuple[float, float]:
    """Median ms of one base-layer forward of the segments' batch (all tokens masked), guided and unguided."""
    lengths = [end - start for start, end in timeline.segment_ranges(20)]
    tokens = max(length // 4 for length in lengths)
    codes = torch.full((len(lengths), tokens), bundle.generator.mask_id)
    valid = torch.ones(len(lengths), tokens, dtype=torch.bool)
    condition = bundle.prompt_embeddings(timeline.prompts)[:, None].expand(-1, tokens, -1).contiguous()
    result = []
    for scale in (bundle.decoding.guidance_scale, 1.0):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            with torch.inference_mode():
                guided_logits(bundle.generator, scale, codes, sentence=None, cond_per_token=condition,
                              token_valid=valid)
            times.append(time.perf_counter() - start)
        result.append(1000 * statistics.median(times))
    return result[0], result[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=REPO_ROOT / "kmm_core" / "checkpoints" / "kmm-small")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "timeline_profile.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bundle = ModelBundle.load(args.bundle, device="cpu")
    timeline = timeline_of(1, 5)
    tg.generate_timeline(bundle, timeline_of(4 / 60, 1), seed=0)  # warm-up
    tg.generate_timeline(bundle, timeline, seed=0)
    load = os.getloadavg()
    for owner, name, label, _ in STAGES:
        time_calls(owner, name, label)
    walls, cpus = [], []
    for _ in range(args.runs):
        wall, cpu = time.perf_counter(), time.process_time()
        tg.generate_timeline(bundle, timeline, seed=0)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    total = statistics.median(walls)
    command = " ".join(["python", "benchmarks/" + Path(sys.argv[0]).name, *sys.argv[1:]])
    lines = ["# Where a warm 1-minute, 5-prompt timeline's time goes", "",
             f"Command: `{command}` (see the script's docstring).", "",
             f"Bundle {args.bundle.name}, torch {torch.__version__}, {args.threads} thread(s), {args.runs} runs after "
             f"a warm-up; default transitions (inpaint), seed 0. Load average at the start: {load[0]:.1f} (1 min) on "
             f"{os.cpu_count()} cores.", "",
             f"Whole run: median wall {total:.3f} s, median CPU {statistics.median(cpus):.3f} s "
             "(timers only: stage times are means over the runs).", "",
             "| stage | ms per run | share of the run | calls per run | ms per call |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for _, _, label, depth in STAGES:
        per_run = 1000 * TOTALS[label] / args.runs
        calls = CALLS[label] / args.runs
        lines.append(f"| {'&nbsp;' * 4 * depth}{label} | {per_run:.1f} | {per_run / 10 / total:.0f}% | {calls:g} | "
                     f"{per_run / calls if calls else 0:.2f} |")
    guided, unguided = guidance_cost(bundle, timeline)
    lines += ["", f"One base-layer forward of the 5 segments' batch (60 tokens each, all masked): guided (scale "
              f"{bundle.decoding.guidance_scale:g}, batch 10) {guided:.1f} ms, unguided (batch 5) {unguided:.1f} ms."]
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        for _ in range(3):
            tg.generate_codes(bundle, timeline, 0, engine.GenerationOptions(), engine.StepCounter(1, None, None),
                              engine.GenerationOptions().decoding_config(bundle))
    table = profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
    lines += ["", "torch.profiler, decoding only (`generate_codes`, 3 runs), operators by self CPU time:", "",
              "```", *table.strip().splitlines(), "```"]
    save_report(args.out, lines)


if __name__ == "__main__":
    main()
