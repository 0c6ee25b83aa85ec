# SPDX-License-Identifier: GPL-3.0-or-later
"""Warm generation time of multi-prompt timelines with the shipped model, per transition mode, side by side.

Timelines: 1 minute of 5 prompts (12 s each) and 10 minutes of 50 prompts, 30 fps (the scene rate the add-on
writes), one variation, seed 0, the bundle's decoding settings. Variants, interleaved per repeat:

- ``inpaint``: the default mode as shipped (``generation/transition_inpainting.py``: all segments in one batched
  decode, then all boundary windows in another);
- ``inpaint_sequential``: the same mode as it was before (each segment decoded alone, then the whole timeline
  decoded again with only the transition tokens free), re-implemented here for the comparison;
- ``per_token``: one decode of the whole timeline with per-token conditions.

Each checkout's code runs in its own worker process (this script with ``--serve``, ``PYTHONPATH`` = the checkout),
which loads the model and warms it up first (a 4-second prompt), then times the runs it is asked for. Wall-clock and
CPU medians; on a loaded machine the CPU time is the better estimate of what an idle machine's wall time would be.

``--baseline DIR`` (another checkout, e.g. ``git archive main | tar -x -C DIR``) runs that code's worker too,
interleaved run by run with this checkout's (the order alternating per repeat), so before and after are measured
under the same load; it adds their CPU ratio and checks that both produce the same tokens, seed 0, for the README's
``examples/timeline.json`` and the 1-minute timeline (and how far apart their final joints are).
``--baseline-bundle B`` makes the baseline worker load bundle B instead of ``--bundle``: two models timed under the
same load (``--baseline .`` for the same code), the token check then left out.

``--scans S ...`` runs this checkout's worker once per CPU scan instead, interleaved the same way: ``compiled``,
``numba``, ``pure`` (forced by ``KMM_SELECTIVE_SCAN``) and ``no-compiler`` (the default rule in a process whose PATH
holds no C++ compiler and whose cache folder is empty: what a Windows or macOS user gets); the token check compares
every scan's tokens with the first one's.

Against the machine's limit (``machine_limit.py``): each (timeline, variant) is run once more, untimed, under a work
counter (torch's FlopCounterMode plus the Mamba loops' work from their shapes); the machine's float32 matmul
throughput is measured at the start and at the end of the run (the higher is used); each row gives its median CPU time
as a multiple of the matmul-bound time (counted work / matmul throughput).

Run: ``python benchmarks/bench_timeline_speed.py [--bundle kmm_core/checkpoints/kmm-small] [--repeats 3]
[--threads 1] [--timelines 1x5 10x50] [--baseline DIR [--baseline-bundle B] | --scans compiled numba no-compiler]
[--out benchmarks/results/timeline_speed.md]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
README_TIMELINE = REPO_ROOT / "examples" / "timeline.json"
PROMPTS = ["a person walks forward", "a person waves with the right hand", "a person jumps in place",
           "a person turns around", "a person sits down", "a person runs forward", "a person raises the left hand"]
REPLY = "BENCH "  # prefix of the worker's protocol lines on stdout (anything else it prints is ignored)


# ---- the worker: one checkout's code, imported from PYTHONPATH -----------------------------------------------------
def timeline_of(minutes: float, prompts: int):
    from kmm_core.generation.timeline import Timeline

    return Timeline.from_dict({"fps": 30, "segments": [{"prompt": PROMPTS[i % len(PROMPTS)],
                                                        "seconds": minutes * 60 / prompts} for i in range(prompts)]})


def sequential_inpaint(bundle, timeline, seed: int) -> None:
    """The default mode before batching: every segment alone, then the whole timeline with the transitions free."""
    import torch

    from kmm_core.generation import decoding_engine as engine
    from kmm_core.generation import timeline_generator as tg
    from kmm_core.model.masked_generator import token_condition_from_segments
    from kmm_core.model.motion_tokenizer import num_tokens_for_frames
    from kmm_core.motion.model_timing import FRAMES_PER_TOKEN, MODEL_FPS

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


def run_variant(bundle, name: str, timeline) -> None:
    from kmm_core.generation import decoding_engine as engine
    from kmm_core.generation import timeline_generator as tg

    if name == "inpaint_sequential":
        sequential_inpaint(bundle, timeline, seed=0)
    else:
        tg.generate_timeline(bundle, timeline, seed=0, options=engine.GenerationOptions(transitions=name))


def write_tokens(bundle, path: str) -> None:
    """Seed-0 tokens (default mode) and final joints of the README's timeline and the 1-minute one, to `path`."""
    import numpy as np

    from kmm_core.generation import decoding_engine as engine
    from kmm_core.generation import timeline_generator as tg
    from kmm_core.generation.timeline import Timeline

    arrays = {}
    for name, timeline in (("readme", Timeline.from_dict(json.loads(README_TIMELINE.read_text()))),
                           ("1x5", timeline_of(1, 5))):
        options = engine.GenerationOptions()
        codes, _ = tg.generate_codes(bundle, timeline, 0, options, engine.StepCounter(1, None, None),
                                     options.decoding_config(bundle))
        arrays[f"{name}_codes"] = codes.numpy()
        arrays[f"{name}_joints"] = tg.generate_timeline(bundle, timeline, seed=0)[0].joints
    np.savez(path, **arrays)


def serve(bundle_path: Path, threads: int) -> None:
    """The worker: load and warm up, then answer one JSON request per stdin line until stdin closes."""
    import torch

    import kmm_core
    from kmm_core.bundle.model_bundle import ModelBundle
    from kmm_core.generation import timeline_generator as tg

    torch.set_num_threads(threads)
    sys.path.append(str(REPO_ROOT))  # benchmarks.machine_limit for the work count (kmm_core: the checkout's)
    bundle = ModelBundle.load(bundle_path, device="cpu")
    tg.generate_timeline(bundle, timeline_of(4 / 60, 1), seed=0)  # warm-up: first-call allocations, kernel load
    try:
        from kmm_core.model.selective_scan import cpu_scan_choice
    except ImportError:  # a checkout from before the rule existed (--baseline)
        scan = ["compiled or pure", "the checkout's own rule, from before cpu_scan_choice"]
    else:
        scan = cpu_scan_choice()
    print(REPLY + json.dumps({"ready": kmm_core.__file__, "scan": scan}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if "tokens" in request:
            write_tokens(bundle, request["tokens"])
            print(REPLY + json.dumps({"written": request["tokens"]}), flush=True)
            continue
        if "count" in request:
            from benchmarks.machine_limit import WorkCounter

            variant, minutes, prompts = request["count"]
            with WorkCounter(bundle.generator, backward=False) as counter:
                run_variant(bundle, variant, timeline_of(minutes, prompts))
            print(REPLY + json.dumps({"flops": counter.total, "loop_flops": counter.loop_flops}), flush=True)
            continue
        variant, minutes, prompts = request["time"]
        timeline = timeline_of(minutes, prompts)
        wall, cpu = time.perf_counter(), time.process_time()
        run_variant(bundle, variant, timeline)
        print(REPLY + json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}), flush=True)


# ---- the driver: workers per checkout, interleaved ---------------------------------------------------------------
class Worker:
    """One checkout's worker process (``--serve``), spoken to in JSON lines."""

    def __init__(self, root: Path, bundle: Path, threads: int, scan: str | None = None):
        env = {**os.environ, "PYTHONPATH": str(root)}
        if scan == "no-compiler":  # the default rule with no C++ compiler to find and no library built before
            self.folder = tempfile.TemporaryDirectory()
            env = {key: value for key, value in env.items() if key not in ("CXX", "KMM_SELECTIVE_SCAN")}
            env |= {"PATH": self.folder.name, "KMM_CACHE_DIR": self.folder.name}
        elif scan is not None:
            env["KMM_SELECTIVE_SCAN"] = scan
        self.process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve", "--bundle",
                                         str(bundle), "--threads", str(threads)], cwd=root, env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = self.ask(None)
        self.code, self.scan = ready["ready"], ready["scan"]

    def ask(self, request: dict | None) -> dict:
        if request is not None:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        for line in self.process.stdout:
            if line.startswith(REPLY):
                return json.loads(line[len(REPLY):])
        raise RuntimeError(f"benchmark worker exited (code {self.process.wait()}) without answering {request}")

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def token_check(workers: dict[str, Worker]) -> list[str]:
    """Lines saying whether every worker made the tokens (and how close the joints) of the first one."""
    import numpy as np

    with tempfile.TemporaryDirectory() as folder:
        arrays = {}
        for label, worker in workers.items():
            path = str(Path(folder) / f"{len(arrays)}.npz")
            worker.ask({"tokens": path})
            with np.load(path) as stored:
                arrays[label] = dict(stored)
    (first, reference), *others = arrays.items()
    lines = []
    for label, result in others:
        for name in ("readme", "1x5"):
            same = np.array_equal(reference[f"{name}_codes"], result[f"{name}_codes"])
            gap = float(np.abs(reference[f"{name}_joints"] - result[f"{name}_joints"]).max())
            what = "`examples/timeline.json`" if name == "readme" else "the 1-minute 5-prompt timeline"
            lines.append(f"- {what}, seed 0: tokens of {label} and {first} "
                         f"{'identical' if same else 'DIFFERENT'} ({reference[f'{name}_codes'].shape[0]} tokens); "
                         f"final joints at most {gap:.2e} m apart.")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=REPO_ROOT / "kmm_core" / "checkpoints" / "kmm-small")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=["inpaint", "inpaint_sequential", "per_token"])
    parser.add_argument("--timelines", nargs="+", default=["1x5", "10x50"], help="MINUTESxPROMPTS")
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout to time interleaved")
    parser.add_argument("--baseline-bundle", type=Path, default=None,
                        help="the bundle the baseline worker loads (default: --bundle)")
    parser.add_argument("--scans", nargs="*", default=[], choices=["compiled", "numba", "pure", "no-compiler"],
                        help="this checkout's worker once per CPU scan, interleaved (instead of --baseline)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the worker (internal)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "timeline_speed.md")
    args = parser.parse_args()
    if args.serve:
        serve(args.bundle.resolve(), args.threads)
        return
    if args.baseline is not None and not (args.baseline / "kmm_core" / "__init__.py").is_file():
        parser.error(f"--baseline {args.baseline}: no checkout of the code there (no kmm_core/__init__.py); make one "
                     "with `git archive main | tar -x -C DIR`")
    if args.scans and args.baseline is not None:
        parser.error("--scans: times this checkout's scans against each other; leave out --baseline")
    if args.baseline_bundle is not None and args.baseline is None:
        parser.error("--baseline-bundle: needs --baseline (the checkout whose worker loads it; `.` for this one)")
    sys.path.insert(0, str(REPO_ROOT))
    import torch

    from benchmarks.machine_limit import measure_matmul_throughput
    from benchmarks.report_file import save_report

    torch.set_num_threads(args.threads)
    throughput_start = measure_matmul_throughput()
    timelines = [tuple(int(n) for n in text.split("x")) for text in args.timelines]
    load = os.getloadavg()
    if args.scans:
        specs = {f"scan {scan}": (REPO_ROOT, args.bundle.resolve(), scan) for scan in args.scans}
    else:
        specs = {"this checkout": (REPO_ROOT, args.bundle.resolve(), None)}
        if args.baseline is not None:
            specs["baseline"] = (args.baseline.resolve(), (args.baseline_bundle or args.bundle).resolve(), None)
    workers = {label: Worker(root, bundle, args.threads, scan) for label, (root, bundle, scan) in specs.items()}
    first = next(iter(workers))
    timings = {(label, timeline, variant): ([], []) for label in workers for timeline in timelines
               for variant in args.variants}
    for timeline in timelines:
        for repeat in range(args.repeats):
            for variant in args.variants:
                for label in (list(workers) if repeat % 2 == 0 else list(workers)[::-1]):
                    answer = workers[label].ask({"time": [variant, *timeline]})
                    timings[label, timeline, variant][0].append(answer["wall"])
                    timings[label, timeline, variant][1].append(answer["cpu"])
    same_model = len({bundle for _, bundle, _ in specs.values()}) == 1
    counted_by = [first] if same_model else list(workers)  # two models do different work: each counts its own
    work = {(label, timeline, variant): workers[label].ask({"count": [variant, *timeline]}) for label in counted_by
            for timeline in timelines for variant in args.variants}
    checks = token_check(workers) if len(workers) > 1 and same_model else []
    for worker in workers.values():
        worker.close()
    throughput = max(throughput_start, measure_matmul_throughput())
    end_load = os.getloadavg()
    command = " ".join(["python", "benchmarks/" + Path(sys.argv[0]).name, *sys.argv[1:]])
    lines = ["# Timeline generation speed per transition mode", "",
             f"Command: `{command}` (see the script's docstring).", "",
             f"Bundle {args.bundle.name}{'' if same_model else f' (baseline: {args.baseline_bundle})'}, "
             f"{args.threads} thread(s), {args.repeats} interleaved repeats per variant after a warm-up, one variation, "
             "seed 0; each checkout (or scan) in its own worker process.",
             *(f"- {label}: `{worker.code}`, CPU scan {worker.scan[0]} ({worker.scan[1]})"
               for label, worker in workers.items()),
             f"Load average at the start: {load[0]:.1f} (1 min) on {os.cpu_count()} cores"
             + (" — shared machine: wall times are upper bounds; CPU times estimate an idle machine's wall time."
                if load[0] > 1 else "."),
             f"Matmul throughput (float32 1024x1024 torch.mm, {args.threads} thread(s), CPU time): "
             f"{throughput_start / 1e9:.1f} "
             f"GFLOP/s at the start, {throughput / 1e9:.1f} GFLOP/s the higher of start and end (used below). Counted "
             "work of one run (one count for every worker when they load the same model, each worker's own when "
             "they load different ones), of it the Mamba loops' share; "
             "x of matmul-bound = median CPU s / (counted work / matmul throughput).", ""]
    medians = {key: (statistics.median(walls), statistics.median(cpus)) for key, (walls, cpus) in timings.items()}

    def bound(timeline, variant, cpu, label=first):
        counted = work[label if label in counted_by else first, timeline, variant]
        return (f"{counted['flops'] / 1e9:.2f} ({counted['loop_flops'] / 1e9:.2f}) | "
                f"{cpu / (counted['flops'] / throughput):.1f}")

    if len(workers) == 1:
        lines += ["| timeline | variant | median wall s | median CPU s | counted GFLOP (loops) | x of matmul-bound |",
                  "| --- | --- | ---: | ---: | ---: | ---: |"]
        lines += [f"| {m} min, {p} prompts | {variant} | {medians[first, (m, p), variant][0]:.3f} | "
                  f"{medians[first, (m, p), variant][1]:.3f} | {bound((m, p), variant, medians[first, (m, p), variant][1])} |"
                  for m, p in timelines for variant in args.variants]
    else:
        lines += [f"| timeline | variant | worker | median wall s | median CPU s | CPU ratio of the medians (to {first}) "
                  f"| median CPU ratio of the repeats' pairs | counted GFLOP (loops) | x of matmul-bound |",
                  "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for m, p in timelines:
            for variant in args.variants:
                reference = medians[first, (m, p), variant]
                for label in workers:
                    wall, cpu = medians[label, (m, p), variant]
                    # Each repeat ran the workers back to back: its ratio sees the same load on all of them.
                    pairs = statistics.median(this / base for this, base in zip(
                        timings[label, (m, p), variant][1], timings[first, (m, p), variant][1], strict=True))
                    lines.append(f"| {m} min, {p} prompts | {variant} | {label} | {wall:.3f} | {cpu:.3f} | "
                                 f"{cpu / reference[1]:.2f} | {pairs:.2f} | {bound((m, p), variant, cpu, label)} |")
        lines += ["", "Same output (seed 0, default mode):", *checks] if same_model else []
    lines += ["", f"Load average at the end: {end_load[0]:.1f} (1 min)."]
    save_report(args.out, lines)


if __name__ == "__main__":
    main()
