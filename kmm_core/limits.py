# SPDX-License-Identifier: GPL-3.0-or-later
"""What a generate or edit request may ask for, defined once: the ``kmm`` CLI, the worker protocol and the Blender
add-on's settings all check against these.  Torch-free (the add-on imports it).
"""

from __future__ import annotations

MAX_VARIATIONS = 64
"""Most motions one request may generate."""
MAX_STEPS = 1000
"""Most decoding steps a request may ask for."""
MAX_SEED = 2**32 - 1
"""Largest seed (seeds are 0..2**32-1)."""
MIN_GUIDANCE, MAX_GUIDANCE = 0.0, 100.0
"""Range of the classifier-free guidance scale."""
EDIT_MODES = ("regenerate", "continue", "inbetween")
"""The edits a request may name (``kmm_core.generation.editing.run_edit``)."""
