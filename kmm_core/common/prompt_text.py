# SPDX-License-Identifier: GPL-3.0-or-later
"""The one rule for a prompt's text, wherever it comes from (the command line, a timeline file, a stored MotionResult,
a worker request, the add-on's table): at most ``limits.MAX_PROMPT_CHARS`` characters, valid Unicode, and no
control character (Unicode category Cc: NUL, BEL, ESC, tab, newline, DEL, ...).  A control character is refused,
never stripped or echoed: written to a terminal an ESC sequence recolours or rewrites it, and a NUL cuts the text
short in some files.  Messages show the character by its code point (U+001B), never raw.

Torch-free and NumPy-free: the add-on may use it too.
"""

from __future__ import annotations

import unicodedata

from .limits import MAX_PROMPT_CHARS


def first_control_character(text: str) -> tuple[int, str] | None:
    """(index, character) of the first control character of `text`, or None."""
    for index, character in enumerate(text):
        if unicodedata.category(character) == "Cc":
            return index, character
    return None


def prompt_problem(text: str) -> str | None:
    """Why `text` cannot be a prompt (one sentence, nothing of the text echoed raw), or None when it can.  An empty
    prompt is the caller's to judge (a regenerated segment may keep its old one)."""
    if len(text) > MAX_PROMPT_CHARS:  # first: a 10-million-character prompt is not scanned
        return f"the prompt is {len(text)} characters long; the limit is {MAX_PROMPT_CHARS}"
    found = first_control_character(text)
    if found is not None:
        index, character = found
        return (f"the prompt holds the control character U+{ord(character):04X} at character {index}; prompts may "
                "not hold control characters (NUL, ESC, BEL, tab, newline)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"not valid Unicode text (an unpaired surrogate at character {exc.start})"
    return None


def segment_prompt_problem(text: str) -> str | None:
    """Why `text` cannot be a segment's prompt: empty (or only spaces), or `prompt_problem`; None when it can."""
    return "the prompt is empty" if not text.strip() else prompt_problem(text)
