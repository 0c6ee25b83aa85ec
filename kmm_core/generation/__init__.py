# SPDX-License-Identifier: GPL-3.0-or-later
"""Turning a timeline of prompts into motion.

`timeline.py` (validated segments, file formats) is torch-free so that the Blender add-on can check a timeline
before it starts the worker; the torch-based generator lives beside it and is imported only by the worker.
"""
