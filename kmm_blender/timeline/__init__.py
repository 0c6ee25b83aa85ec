# SPDX-License-Identifier: GPL-3.0-or-later
"""The scene's timeline: the add-on's scene properties, the segment table's rules, the path, the rows' warnings."""
