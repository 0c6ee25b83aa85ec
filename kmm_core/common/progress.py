# SPDX-License-Identifier: GPL-3.0-or-later
"""Progress reporting and cancellation: the one callback type and the one exception every long task uses
(token decoding, timeline generation, editing, evaluation) and the worker turns into protocol events.

Torch-free, so the worker's error classification and the CLI can name them without loading a model.
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import KMMError

ProgressCallback = Callable[[int, int, str], None]
"""on_progress(step, total, message): called after every decoding step."""
CancelCheck = Callable[[], bool]
"""should_cancel(): True stops the task at the next decoding step with GenerationCancelled."""


class GenerationCancelled(KMMError):
    """should_cancel() asked to stop; no result was produced."""


def command_log(command: str, quiet: bool) -> Callable[[str], None]:
    """A research command's progress lines on stderr, prefixed "[command]"; nothing when `quiet`."""
    import sys

    if quiet:
        return lambda _message: None
    return lambda message: print(f"[{command}] {message}", file=sys.stderr, flush=True)
