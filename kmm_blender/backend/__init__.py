# SPDX-License-Identifier: GPL-3.0-or-later
"""The backend connection (no UI): the installer (no bpy), where the backend lives, the worker session, the check."""
