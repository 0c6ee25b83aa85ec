# SPDX-License-Identifier: GPL-3.0-or-later
"""Keeping Blender's UI current while background work runs: the one place that redraws areas and registers the
polling timer (the job controller uses both for jobs and for the backend check)."""

from __future__ import annotations

from collections.abc import Callable

import bpy


def redraw(area_type: str | None = "VIEW_3D") -> None:
    """Tag every area of `area_type` (None: every area, e.g. the preferences window) for redrawing."""
    wm = bpy.context.window_manager
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area_type is None or area.type == area_type:
                area.tag_redraw()


def ensure_timer(function: Callable[[], float | None], first_interval: float = 0.05) -> None:
    """Register `function` as a persistent `bpy.app.timers` timer unless it already is (one timer, never two)."""
    if not bpy.app.timers.is_registered(function):
        bpy.app.timers.register(function, first_interval=first_interval, persistent=True)


def stop_timer(function: Callable[[], float | None]) -> None:
    if bpy.app.timers.is_registered(function):
        bpy.app.timers.unregister(function)
