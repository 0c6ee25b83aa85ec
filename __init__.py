# SPDX-License-Identifier: GPL-3.0-or-later
"""Blender extension entry point (the extension's root package is the repository root).

Blender needs to see only register/unregister here; everything lives in kmm_blender/.
"""

from .kmm_blender import register, unregister  # noqa: F401
