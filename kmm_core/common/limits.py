# SPDX-License-Identifier: GPL-3.0-or-later
"""The limits every entry point enforces, defined once: the timeline (`generation/timeline.py`), the `kmm` command
line (`cli.py`), the worker protocol (`worker/protocol.py`) and the Blender add-on's settings all import them from
here.

Each limit keeps one bad value from turning into minutes of work, gigabytes of memory or a crash deep inside the
model: a value outside them is refused up front with an error naming the field.  Torch-free (the add-on imports it).
"""

from __future__ import annotations

import os

MAX_FPS = 240.0
"""Highest frame rate of a timeline or an output (Blender's presets end at 240).  Above it a 10-minute timeline
would need arrays of millions of frames (200,000 fps asked for 3.9 GiB)."""

MIN_FPS = 0.1
"""Lowest frame rate of a timeline or a MotionResult: one frame every 10 seconds.  Below it every segment rounds to
no frames (a result at 1e-300 fps was refused as "a segment too short" instead of for its frame rate)."""

MAX_TOTAL_SECONDS = 600.0
"""Longest timeline (and longest `continue` / `inbetween` edit): 10 minutes."""

MAX_PROMPT_CHARS = 1000
"""Longest prompt.  The text encoder reads at most 256 word pieces (roughly 1,000 characters of English); a longer
prompt only costs time and file size (a 10 MB prompt ran for 30 s and wrote an 83 MB file)."""

MAX_VARIATIONS = 64
"""Most motions one request may generate."""

MAX_STEPS = 1000
"""Most decoding steps a request may ask for."""

MIN_GUIDANCE, MAX_GUIDANCE = 0.0, 100.0
"""Range of the classifier-free guidance scale."""

MAX_SEED = 2**32 - 1
"""Largest random seed (seeds are 0..2**32-1; NumPy's seeds are 32-bit)."""

MAX_PATH_CHARS = 4096
"""Longest file or folder path in a request (Linux's PATH_MAX)."""

EDIT_MODES = ("regenerate", "continue", "inbetween")
"""The edits a request may name (``kmm_core.generation.editing.run_edit``)."""

MAX_TEXT_FILE_BYTES = 64 * 2**20
"""Largest JSON / TOML / text input file (timelines, bundle configs, bone maps, captions, vocabulary files): 64 MiB,
thousands of times any real one.  Read by `bounded_read.py` only, which refuses anything but regular files (a FIFO
or /dev/zero would otherwise be read forever)."""

MAX_MOTION_TEXT_BYTES = 512 * 2**20
"""Largest motion text file (BVH, ASF/AMC, CMU exp-map, DeepMimic clips): 512 MiB (hours of 120 fps mocap)."""

MAX_BVH_JOINTS = 10_000
"""Most joints one BVH hierarchy may declare (End Sites not counted): ten times a face-rigged game character.  The
reader refuses the file at the joint that passes it, before reading further."""

MAX_BVH_DEPTH = 1_000
"""Deepest nesting of joints in a BVH hierarchy (a root alone is depth 1): a humanoid is about 10 deep, a tail or a
rope rig under 100.  The reader needs no recursion, but every walk from a bone to its root costs the depth."""

MAX_BVH_VALUE = 1e7
"""Largest size of a number in a BVH OFFSET or MOTION row: 10 km in millimetres, 27,000 turns in degrees.  Larger
values overflow the forward kinematics or leave no precision (1e308 ended in "SVD did not converge")."""

MIN_BVH_FRAME_TIME, MAX_BVH_FRAME_TIME = 0.0005, 1.0
"""Range of a BVH's ``Frame Time`` in seconds: 2,000 frames per second down to 1.  Outside it a clip's duration is
nonsense (``Frame Time: 1e-300`` made a 195-frame clip last no time at all) and resampling it to another frame rate
would make no frames or billions."""

MAX_MOTION_RESULT_BYTES = 256 * 2**20
"""Largest MotionResult ``.npz`` once inflated (all its arrays together): 10 minutes at 240 fps in float64 need 190
MB.  Entries are inflated only after their declared sizes passed this, and never beyond them (a 407 kB zlib bomb
declared 400 MiB)."""


MAX_NESTING_DEPTH = 64
"""Deepest nesting of lists/tables in a JSON or TOML input file; every format of the project needs fewer than 8."""

MAX_PATH_COORDINATE = 100_000.0
"""Largest |x| or |z| (metres) of a timeline path point: 100 km, far beyond 10 minutes of running; beyond it
the path's arithmetic (lengths, headings) would overflow."""

MAX_CONSTRAINTS = 10_000
"""Most constraints (key poses, end-effector targets, facings) one timeline may carry: a key every frame of 8
minutes at 20 fps.  Checking them costs O(n log n) and meeting them grows linearly with the frames they cover
(``benchmarks/bench_constraint_checks.py``)."""

MAX_CONSTRAINED_FRAMES = 200_000
"""Most frames all of a timeline's constraints cover together, a target held over frames 10 to 19 counting 10 and
a pose or a facing 1: both hands, both ankles, both feet and the head held over a whole 10-minute timeline at 30
fps are 126,000.  Checking and meeting constraints costs work per covered frame, so this bounds it (10,000 targets
each held over a 10-minute timeline would be 120 million)."""

MAX_EFFECTOR_ROOT_SHIFT = 1.0
"""Metres: the farthest an end-effector target may pull the pelvis from where the motion has it at that frame (a
lean or a step towards the target, spread over half a second each side).  A target farther away is refused: the
body would slide there (a wrist target 70 m away once slid the body 13 m per frame and was reported met)."""

MAX_ROOT_SPEED = 12.0
"""Metres per second: the fastest the pelvis may be asked to travel between two constraints that place it (key
poses holding the pelvis, root targets), above a sprinter's top speed.  Faster pairs are refused: the body would
slide between them."""

MAX_LOG_FILE_BYTES = 2**30
"""Largest training run log (``log.jsonl``) read back: 1 GiB."""

MAX_STANDING_ROOT_SIGMA = 8.0
"""Longest Gaussian (frames at 20 fps) of the standing-root smoothing (a bundle's ``decoding.standing_root_sigma``,
``kmm generate --standing-root-sigma``): past it a standing take's hips lag its gestures by a second."""

MAX_LOCOMOTION_GUIDANCE_FACTOR = 2.0
"""Largest share of the guidance scale a bundle's ``decoding.locomotion_guidance_factor`` may give walk and run
tokens."""

MAX_UNLIKELY_GUIDANCE_FACTOR = 4.0
"""Largest multiple of the guidance scale a bundle's ``decoding.unlikely_guidance_factor`` may give the tokens of
prompts the model rarely performs (guidance 16 from the default 4: past it the motion is a caricature of the text)."""

MAX_LOCOMOTION_PERIOD_BONUS = 100.0
"""Largest ``decoding.locomotion_period_bonus`` (``kmm generate --walk-cycle``): a logit bonus of 100 already makes
every walk token copy the code one cycle away."""

MAX_STEADY_WALK_CANDIDATES = 8
"""Most candidate decodes of a steady walk (a bundle's ``decoding.steady_walk_candidates``, ``kmm generate
--walk-candidates``): each one more costs another decode of the walk's tokens."""

MODEL_CONFIG_RANGES: dict[str, tuple[float, float]] = {
    # Every number of a model / decoding config (``model/configs.py``, a bundle's ``<component>.json`` and the
    # ``decoding`` table of its ``bundle.json``, a training config's model tables), by field name, inclusive.  A
    # value outside is refused when the config is read, before any tensor is allocated (a bundle config with
    # d_model = 10,000,000 asked for 20 GB), and by ``kmm doctor``.  Every shipped or trained model is far inside.
    "num_quantizers": (1, 32), "codebook_size": (2, 16_384), "code_dim": (1, 2048), "ema_decay": (0.0, 1.0),
    "dead_code_steps": (1, 1_000_000_000), "quantizer_dropout": (0.0, 1.0),
    "feature_dim": (1, 4096), "width": (1, 2048), "res_blocks": (0, 8), "dilation_growth": (1, 8),
    "velocity_weight": (0.0, 1e6), "commitment_weight": (0.0, 1e6),
    "max_length": (4, 512), "cache_size": (0, 10_000_000),
    "text_dim": (1, 4096), "embed_dim": (1, 2048), "hidden_dim": (1, 2048), "text_layers": (0, 32),
    "motion_layers": (0, 32), "heads": (1, 128), "dropout": (0.0, 1.0), "motion_input_dim": (1, 4096),
    "temperature_init": (0.0, 10.0), "loss_weight": (0.0, 1e6),
    "cond_dim": (1, 4096), "d_model": (1, 2048), "n_layers": (1, 32), "d_state": (1, 256), "d_conv": (1, 64),
    "expand": (1, 8), "n_heads": (1, 128), "ff_mult": (1, 16), "cond_drop_prob": (0.0, 1.0),
    "random_replace_prob": (0.0, 1.0), "residual_n_layers": (1, 32),
    "steps": (1, MAX_STEPS), "temperature": (0.0, 100.0), "top_k": (1, 16_384),
    "guidance_scale": (MIN_GUIDANCE, MAX_GUIDANCE), "residual_temperature": (0.0, 100.0), "remask_noise": (0.0, 100.0),
    "repeat_penalty": (0.0, 1000.0), "locomotion_repeat_penalty": (0.0, 1000.0),
    "locomotion_period_bonus": (0.0, MAX_LOCOMOTION_PERIOD_BONUS),
    "locomotion_residual_period_bonus": (0.0, MAX_LOCOMOTION_PERIOD_BONUS),
    "steady_walk_period_bonus": (0.0, MAX_LOCOMOTION_PERIOD_BONUS),
    "steady_walk_candidates": (1, MAX_STEADY_WALK_CANDIDATES),
    "standing_root_sigma": (0.0, MAX_STANDING_ROOT_SIGMA),
    "locomotion_guidance_factor": (0.0, MAX_LOCOMOTION_GUIDANCE_FACTOR),
    "unlikely_guidance_factor": (1.0, MAX_UNLIKELY_GUIDANCE_FACTOR),
    "residual_guidance_scale": (MIN_GUIDANCE, MAX_GUIDANCE),
}

MAX_MODEL_PARAMETERS = 500_000_000
"""Most parameters (roughly estimated from the config) one module may have: 2 GB of float32, 50x the shipped
generator; fields each inside MODEL_CONFIG_RANGES can still multiply past it (32 layers of d_model 2048)."""

MAX_THREADS_PER_CPU = 4
"""`--threads` of `kmm-train` (its stages, `ablate`, `eval-actions`, `check-words`) may ask for 1 to this many torch
threads per CPU of the machine (`max_threads`): more only makes torch slower, and 100,000 threads crashed it
(SIGSEGV)."""


def max_threads() -> int:
    """The most torch threads `--threads` may ask for on this machine: MAX_THREADS_PER_CPU per CPU."""
    return MAX_THREADS_PER_CPU * (os.cpu_count() or 1)


def thread_count_problem(threads: int) -> str | None:
    """Why `--threads threads` is refused (one line), or None when it is inside 1..max_threads()."""
    if 1 <= threads <= max_threads():
        return None
    return (f"--threads must be 1 to {max_threads()} ({MAX_THREADS_PER_CPU} per CPU of this machine's "
            f"{os.cpu_count() or 1}), got {threads}")
