# SPDX-License-Identifier: GPL-3.0-or-later
"""How reliably a model performs each action word it lists: ``BUNDLE/word_checks.json``, torch-free.

Written by ``kmm-train check-words`` (``evaluation/word_checks.py``: every action word of the bundle's vocabulary,
generated from two phrasings over ten seeds and measured by its geometric check), read by ``kmm vocab`` (each word's
pass rate) and by the prompt check of ``kmm generate``, the worker and the Blender panel
(``generation/prompt_vocabulary.py``): a prompt that uses a WEAK word (pass rate below the file's ``strong_rate``)
is warned about, naming the word, its rate and a strong word to try instead (``kmm-train check-words``
chooses it: the same check, else the same kind of action, a plain word before a dataset label)::

    {"format_version": 1, "model": "kmm-small", "strong_rate": 0.6, "command": "...", "settings": {...},
     "words": [{"word": "kick", "check": "kick", "phrasings": ["someone kicks", ...], "generations": 20,
                "passed": 3, "rate": 0.15, "strong": false, "alternative": "spinkick",
                "alternative_prompt": "a figure spins and kicks"}, ...]}

Which word a prompt uses: each listed word has a cue, the first word of its label ('kickLFront1Reps' -> kick,
'walk-turn-left' -> walk, 'getup_faceup' -> getup), found in the prompt with any ending ('kicks', 'kicking'); among
the words whose cue the prompt uses, the one with the most further label words in the prompt counts ('walks
backwards' -> walk-back, 'walks' -> walk), ties to a strong word, then to the shorter label; a label in -ing
matches every form of its verb ('jumping' -> 'jumps').  A prompt is warned about when that word is weak, or, when
it names no side, when a weak one-sided word with the same cue is exactly as specific ("a person waves hello" names
no hand: wave-right-hand is as near as wave-both-hands, and the model may wave the right hand, which it rarely
does well).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..common.atomic_write import write_text_atomic
from ..common.bounded_read import read_json
from ..common.errors import InputFileError

WORD_CHECKS_FILE = "word_checks.json"
WORD_CHECKS_FORMAT_VERSION = 1
STRONG_RATE = 0.6

# Cues whose verb forms do not start with the label's spelling.
_SPECIAL_CUES = {
    "getup": r"\bget(?:s|ting)? up\b|\bgetup\b",
    "lie": r"\b(?:lie|lies|lying|lay|lays)\b",
    "run": r"\b(?:run|runs|running|ran)\b",
    "bye": r"\b(?:good)?bye\b",
    "byebye": r"\bbye[- ]?bye\b",
    "sit": r"\b(?:sit|sits|sitting|sat)\b",
    "stealthy": r"\bstealth\w*",
}
_FILLER = {"a", "b", "l", "r", "reps", "start", "lelbow", "like", "short", "floor", "hops", "steps"}
_SIDE_WORDS = {"left", "right"}


def label_tokens(label: str) -> list[str]:
    """Lower-case words of a label: 'kickLFront1Reps' -> ['kick', 'l', 'front', 'reps'], 'walk-back' -> ['walk',
    'back'] (the same split as evaluation/action_checks.action_words, kept here torch- and evaluation-free)."""
    return [word.lower() for word in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])", label)]


def _stem(token: str) -> str:
    """'jumping' -> 'jump', 'running' -> 'run', 'walking' -> 'walk': a label in -ing matches every verb form."""
    if token.endswith("ing") and len(token) > 5:
        token = token[:-3]
        if len(token) > 2 and token[-1] == token[-2]:
            token = token[:-1]
    return token


def _cue(token: str) -> re.Pattern[str]:
    stem = _stem(token)
    return re.compile(_SPECIAL_CUES.get(stem, r"\b" + re.escape(stem) + r"\w*"))


@dataclass(frozen=True)
class WordStrength:
    """One action word's measured result."""

    word: str
    check: str
    rate: float
    generations: int
    strong: bool
    alternative: str = ""
    alternative_prompt: str = ""

    def warning(self) -> str:
        """What the user reads: the word names an action of the training data (often a dataset's own label, such
        as "pick-up-box" or "jogLeftCircle4StepsRstart", which the user did not type), so it is said as one."""
        better = (f' Try "{self.alternative_prompt}" instead (the strong word "{self.alternative}", an action it '
                  "performs)." if self.alternative else "")
        return (f'it reads as "{self.word}", a weak word for this model (an action of its training data that its '
                f"{self.check} check passed in {self.rate:.0%} of {self.generations} generations), so the motion "
                "may be a different action." + better)


@dataclass(frozen=True)
class WordStrengths:
    """Every measured word of one bundle (``word_checks.json``)."""

    model: str
    strong_rate: float
    words: tuple[WordStrength, ...]
    path: str = ""

    def get(self, word: str) -> WordStrength | None:
        return next((entry for entry in self.words if entry.word == word), None)

    def _scored_words(self, prompt: str) -> list[tuple[tuple[int, int, int], WordStrength]]:
        """((label words found, strong, -label words), word) of every listed word whose cue the prompt uses."""
        text = prompt.lower()
        scored = []
        for entry in self.words:
            tokens = label_tokens(entry.word)
            if not tokens or not _cue(tokens[0]).search(text):
                continue
            further = [t for t in tokens[1:] if t not in _FILLER]
            scored.append(((sum(bool(_cue(t).search(text)) for t in further), int(entry.strong), -len(further)),
                           entry))
        return scored

    def word_in(self, prompt: str) -> WordStrength | None:
        """The listed word a prompt uses (module docstring), or None."""
        scored = self._scored_words(prompt)
        # Equally specific words: the strong one counts (the model performs the action under that label).
        return max(scored, key=lambda item: item[0])[1] if scored else None

    def weak_words_in(self, prompt: str) -> list[WordStrength]:
        """[a weak word the prompt may be read as], else []: the word it uses when that word is weak, or, when the
        prompt names no side, a weak one-sided word exactly as specific as it with the same cue ("a person waves
        hello" names no hand: wave-right-hand is as near as wave-both-hands, and this model rarely waves the right
        hand alone)."""
        scored = self._scored_words(prompt)
        if not scored:
            return []
        (found, _, length), entry = max(scored, key=lambda item: item[0])
        if not entry.strong:
            return [entry]
        if _SIDE_WORDS & set(re.findall(r"[a-z]+", prompt.lower())):
            return []
        cue = _stem(label_tokens(entry.word)[0])
        return [rival for (rival_found, _, rival_length), rival in scored
                if (rival_found, rival_length) == (found, length) and not rival.strong
                and _stem(label_tokens(rival.word)[0]) == cue and _SIDE_WORDS & set(label_tokens(rival.word))][:1]


def word_strengths_from_dict(data: Any, path: str = "<dict>") -> WordStrengths:
    def fail(message: str) -> InputFileError:
        return InputFileError(path, f"word checks: {message}")

    if not isinstance(data, dict):
        raise fail("the top level must be a JSON object")
    if data.get("format_version") != WORD_CHECKS_FORMAT_VERSION:
        raise fail(f"format_version {data.get('format_version')!r} is not the supported "
                   f"{WORD_CHECKS_FORMAT_VERSION}")
    words = []
    for index, entry in enumerate(data.get("words") or []):
        try:
            words.append(WordStrength(str(entry["word"]), str(entry["check"]), float(entry["rate"]),
                                      int(entry["generations"]), bool(entry["strong"]),
                                      str(entry.get("alternative") or ""), str(entry.get("alternative_prompt") or "")))
        except (KeyError, TypeError, ValueError) as error:
            raise fail(f"words[{index}]: {error!r}") from None
    try:
        strong_rate = float(data.get("strong_rate", STRONG_RATE))
    except (TypeError, ValueError):
        raise fail(f"strong_rate {data.get('strong_rate')!r} is not a number") from None
    return WordStrengths(str(data.get("model", "")), strong_rate, tuple(words), path)


def read_word_strengths(bundle_dir: str | Path) -> WordStrengths | None:
    """``word_checks.json`` of a bundle folder, or None when the bundle has none (not measured yet); a malformed
    file raises InputFileError naming it."""
    path = Path(bundle_dir) / WORD_CHECKS_FILE
    if not path.is_file():
        return None
    return word_strengths_from_dict(read_json(path, "word checks"), str(path))


def write_word_checks(bundle_dir: str | Path, document: dict[str, Any]) -> Path:
    """Write ``word_checks.json`` atomically after checking it reads back."""
    word_strengths_from_dict(document, WORD_CHECKS_FILE)
    return write_text_atomic(Path(bundle_dir) / WORD_CHECKS_FILE,
                             json.dumps(document, indent=1, ensure_ascii=False, allow_nan=False) + "\n")


def format_word_strengths(strengths: WordStrengths) -> str:
    """`kmm vocab`'s listing of the measured words: strong ones in one line, weak ones with their alternative."""
    strong = [w for w in strengths.words if w.strong]
    weak = [w for w in strengths.words if not w.strong]
    lines = [f"Action words as measured ({WORD_CHECKS_FILE}: each word's geometric check on generated motion; "
             f"strong: >= {strengths.strong_rate:.0%}): {len(strong)} strong, {len(weak)} weak.",
             "Strong: " + ", ".join(f"{w.word} {w.rate:.0%}" for w in strong)]
    if weak:
        lines.append("Weak (the prompt warning names them):")
        lines += [f"  {w.word}: {w.check} {w.rate:.0%}" + (f" -> try {w.alternative}" if w.alternative else "")
                  for w in weak]
    return "\n".join(lines) + "\n"
