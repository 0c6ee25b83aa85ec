# SPDX-License-Identifier: GPL-3.0-or-later
"""Small utilities every layer uses, importing nothing above them: errors, limits, atomic writes, progress, devices."""
