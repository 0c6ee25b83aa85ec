# SPDX-License-Identifier: GPL-3.0-or-later
"""KMM: Key Frame Mask Mamba for extended text-to-motion generation.

This package must stay importable without torch: the Blender add-on bundles it and uses
the torch-free parts (skeleton, timeline, worker protocol and client).
"""

__version__ = "0.1.0"
