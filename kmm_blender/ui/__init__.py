# SPDX-License-Identifier: GPL-3.0-or-later
"""The user interface: panel, operators, preferences, the backend's buttons, the Target Rig panel, suggestions."""
