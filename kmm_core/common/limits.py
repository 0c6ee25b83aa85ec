# SPDX-License-Identifier: GPL-3.0-or-later
"""The limits every entry point enforces, defined once: the timeline (`generation/timeline.py`), the `kmm` command
line (`cli.py`), the worker protocol (`worker/protocol.py`) and the Blender add-on's settings all import them from
here.

Each limit keeps one bad value from turning into minutes of work, gigabytes of memory or a crash deep inside the
model: a value outside them is refused up front with an error naming the field.  Torch-free (the add-on imports it).
"""

from __future__ import annotations

MAX_FPS = 240.0
"""Highest frame rate of a timeline or an output (Blender's presets end at 240).  Above it a 10-minute timeline
would need arrays of millions of frames (200,000 fps asked for 3.9 GiB)."""

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
