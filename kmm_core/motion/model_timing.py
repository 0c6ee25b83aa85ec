# SPDX-License-Identifier: GPL-3.0-or-later
"""The model's units of time, defined once: the frame rate it generates at and the frames one token covers.

Torch-free: the timeline, the data preparation, the BVH retargeting, the tokenizer and the Blender add-on share them.
"""

from __future__ import annotations

MODEL_FPS = 20.0
"""Frame rate the model generates at (HumanML3D features are 20 frames per second)."""
FRAMES_PER_TOKEN = 4
"""The motion tokenizer downsamples time by 4: one token covers 4 frames at 20 fps."""
