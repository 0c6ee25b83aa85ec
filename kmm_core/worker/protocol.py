# SPDX-License-Identifier: GPL-3.0-or-later
"""The worker protocol (version 2): JSON objects, one per line, over the worker's stdin (requests) and stdout (events).

Every message has a "type".  Requests that expect an answer (hello, load, generate, edit, check_prompts) carry an
"id" chosen by the client, and the worker ends each of them with exactly one *terminal* event carrying the same id:
`ready` for hello, `result` or `error` for the others.  `progress` and `log` events may come before it.  `cancel` names the id of
the request to stop (which then ends with an `error` of kind "cancelled"); `shutdown` asks the worker to exit.

Messages are dataclasses below; `encode` turns one (or an equivalent dict) into a single line, `decode` turns a line
back into a validated dict with every optional field filled in.  Torch-free: the Blender add-on uses this module.
Full description with examples: docs/worker_protocol.md.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..common.bounded_read import nesting_depth
from ..common.errors import KMMError, digit_count
from ..common.limits import (
    EDIT_MODES,
    MAX_GUIDANCE,
    MAX_NESTING_DEPTH,
    MAX_PATH_CHARS,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    MAX_STEPS,
    MAX_TOTAL_SECONDS,
    MAX_VARIATIONS,
    MIN_GUIDANCE,
)
from ..common.prompt_text import prompt_problem
from ..generation.timeline import Timeline, TimelineError

PROTOCOL_VERSION = 5
"""5: `check_prompts` asks, before any generation, what a result would say of some prompts (its warnings and
`info.conditions`). 4: each `result.warnings` entry carries `predicted_pass_rate`. 3: `generate.timeline` may carry `constraints`.
2: `result` events carry `warnings` (prompts far from the model's training vocabulary) and `generate` takes
`foot_lock`. 1: the first version."""
MAX_CHECKED_PROMPTS = 1000
"""Most prompts one `check_prompts` request may ask about (a timeline's distinct prompts)."""
MAX_LINE_BYTES = 1 << 20
"""Longest line either side may send (UTF-8 bytes, without the newline)."""
MAX_TEXT_CHARS = 64 * 1024
"""Longest free text (messages, traces); use `clip_text` before sending long tracebacks."""

ERROR_KINDS = ("bad_request", "out_of_memory", "model_missing", "backend", "write_failed", "cancelled", "internal")
LOG_LEVELS = ("debug", "info", "warning", "error")
# EDIT_MODES, MAX_VARIATIONS, MAX_STEPS, MAX_SEED, ... are defined once in limits.py (imported above, re-exported here).
_DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


class ProtocolError(KMMError, ValueError):
    """A line or message breaks the protocol. Names the message type and field; `message_id` is the offending
    message's id when it could be read, so the worker can answer that request with a bad_request error."""

    def __init__(self, reason: str, *, message_type: str | None = None, field: str | None = None,
                 message_id: str | None = None):
        self.reason = reason
        self.message_type = message_type
        self.field = field
        self.message_id = message_id
        where = f"{message_type or 'message'}" + (f".{field}" if field else "")
        super().__init__(f"{where}: {reason}")


# ---- field checks: each returns None when the value is fine, else the reason ---------------------------------------
Check = Callable[[Any], "str | None"]


def _describe(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


def _text(max_chars: int = MAX_TEXT_CHARS, nonempty: bool = False) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, str):
            return f"must be a string, got {_describe(value)}"
        if nonempty and not value.strip():
            return "must not be empty"
        if len(value) > max_chars:
            return f"is {len(value)} characters long; the limit is {max_chars}"
        if not _is_unicode(value):
            return "is not valid Unicode text (it holds an unpaired surrogate)"
        return None
    return check


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _prompt_text(value: Any) -> str | None:
    """An edit's prompt: a non-empty string by the one prompt rule (common/prompt_text.py: length, no control
    characters), checked before any model work."""
    reason = _text(MAX_PROMPT_CHARS, nonempty=True)(value)
    return reason if reason is not None else prompt_problem(value)


def _path_text(value: Any) -> str | None:
    reason = _text(MAX_PATH_CHARS, nonempty=True)(value)
    if reason is None and "\x00" in value:
        return "must not contain a NUL character"
    return reason


class _LongInteger(int):
    """An integer of a line too long to convert to decimal and back (more than `_LONG_DIGITS` digits): out of the
    range of every field, it keeps its sign and how many digits it had, for the error message."""

    digits: int


_LONG_DIGITS = 1000


def _parse_int(text: str) -> int:
    """json's parse_int: Python's int() of more than 4300 digits raises with advice on sys.set_int_max_str_digits,
    which is no answer to a request; such a number is kept as a `_LongInteger` that every range check refuses."""
    digits = len(text.lstrip("-"))
    if digits <= _LONG_DIGITS:
        return int(text)
    value = _LongInteger(-(10**_LONG_DIGITS) if text.startswith("-") else 10**_LONG_DIGITS)
    value.digits = digits
    return value


def _shown_number(value: int | float) -> str:
    """A number of a request as its sender wrote it (100.0001 stays 100.0001), a long integer by its length."""
    if isinstance(value, int) and abs(value) >= 10**20:
        return f"a {digit_count(value)}-digit number"  # a _LongInteger gives its own count
    return repr(value)


def _integer(low: int, high: int) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, int) or isinstance(value, bool):
            return f"must be an integer, got {_describe(value)}"
        if not low <= value <= high:
            return f"must be between {low} and {high}, got {_shown_number(value)}"
        return None
    return check


def _number(low: float, high: float) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return f"must be a finite number, got {_describe(value)}"
        if not low <= value <= high:  # exact for any int (no float conversion that could overflow); NaN fails here
            return f"must be a finite number between {low:g} and {high:g}, got {_shown_number(value)}"
        return None
    return check


def _optional(check: Check) -> Check:
    return lambda value: None if value is None else check(value)


def _choice(options: tuple[str, ...]) -> Check:
    def check(value: Any) -> str | None:
        return None if value in options else f"must be one of {', '.join(options)}, got {value!r}"
    return check


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, got {_describe(value)}"


def _object(value: Any) -> str | None:
    return None if isinstance(value, dict) else f"must be an object, got {_describe(value)}"


def _device(value: Any) -> str | None:
    if isinstance(value, str) and _DEVICE_PATTERN.fullmatch(value):
        return None
    return f"must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {value!r}"


def _paths(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        return "must be a list of file paths"
    return None


def _frame_range(value: Any) -> str | None:
    ok = (isinstance(value, list) and len(value) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) for v in value) and 0 <= value[0] < value[1])
    return None if ok else f"must be [start, end) with 0 <= start < end, got {value!r}"


_WARNING_FIELDS = {"segment": (int, type(None)), "prompt": (str,), "similarity": (int, float),
                   "threshold": (int, float), "message": (str,), "suggestions": (list,),
                   "predicted_pass_rate": (int, float, type(None))}


def _warnings(value: Any) -> str | None:
    """result.warnings: a list of {segment, prompt, similarity, threshold, message, suggestions,
    predicted_pass_rate}."""
    if not isinstance(value, list):
        return f"must be a list, got {_describe(value)}"
    for index, item in enumerate(value):
        if not isinstance(item, dict) or set(item) != set(_WARNING_FIELDS):
            return f"[{index}] must be an object with exactly {', '.join(_WARNING_FIELDS)}"
        for key, types in _WARNING_FIELDS.items():
            if not isinstance(item[key], types) or isinstance(item[key], bool):
                return f"[{index}].{key} must be {' or '.join(t.__name__ for t in types)}, got {_describe(item[key])}"
        if not all(isinstance(s, str) for s in item["suggestions"]):
            return f"[{index}].suggestions must be a list of strings"
    return None


def _prompt_list(value: Any) -> str | None:
    """check_prompts.prompts: 1 to `MAX_CHECKED_PROMPTS` prompts, each by the one prompt rule."""
    if not isinstance(value, list):
        return f"must be a list of prompts, got {_describe(value)}"
    if not 1 <= len(value) <= MAX_CHECKED_PROMPTS:
        return f"must hold 1 to {MAX_CHECKED_PROMPTS} prompts, got {len(value)}"
    for index, prompt in enumerate(value):
        if (reason := _prompt_text(prompt)) is not None:
            return f"[{index}] {reason}"
    return None


def _timeline(value: Any) -> str | None:
    try:
        Timeline.from_dict(value)
    except TimelineError as exc:
        return str(exc)
    return None


_ID = _text(128, nonempty=True)


def readable_id(value: Any) -> str | None:
    """`value` when it is a valid request id (so an error about its line can carry it), else None."""
    return value if _ID(value) is None else None


def _field(check: Check, shallow: Check | None = None, **kwargs: Any) -> Any:
    """A message field checked by `check`; `shallow` is the quick check used instead when validation is asked to
    leave expensive checks to later (the worker's reader: see `decode`)."""
    return field(metadata={"check": check, "shallow": shallow or check}, **kwargs)


# ---- requests (client -> worker) ------------------------------------------------------------------------------------
# An empty id means "let the client pick one" (WorkerClient.send fills it in); on the wire it must be set.

@dataclass
class Hello:
    """First request: the client's versions. Answered by `ready` (or `error`)."""
    TYPE: ClassVar[str] = "hello"
    client_version: str = _field(_text(64, nonempty=True))
    protocol_version: int = _field(_integer(0, 10**6), default=PROTOCOL_VERSION)
    id: str = _field(_ID, default="")


@dataclass
class Load:
    """Load a generator checkpoint (None: the default shipped with the package) onto a device."""
    TYPE: ClassVar[str] = "load"
    checkpoint: str | None = _field(_optional(_path_text), default=None)
    device: str = _field(_device, default="auto")
    id: str = _field(_ID, default="")


@dataclass
class Generate:
    """Generate motion for a timeline (our format or FlowMDM's, as a dict); writes MotionResult .npz files."""
    TYPE: ClassVar[str] = "generate"
    timeline: dict = _field(_timeline, shallow=_object)
    output_dir: str = _field(_path_text)
    seed: int | None = _field(_optional(_integer(0, MAX_SEED)), default=None)
    variations: int = _field(_integer(1, MAX_VARIATIONS), default=1)
    guidance: float | None = _field(_optional(_number(MIN_GUIDANCE, MAX_GUIDANCE)), default=None)
    steps: int | None = _field(_optional(_integer(1, MAX_STEPS)), default=None)
    foot_lock: bool = _field(_boolean, default=True)
    id: str = _field(_ID, default="")


@dataclass
class Edit:
    """Change an existing MotionResult (`source`), writing new files:

    * regenerate: remake one `segment` (index) or a `frame_range` [start, end) of source frames, with a new `prompt`
      (None: keep the segment's prompt) and/or seed, keeping the motion on both sides;
    * continue: append `seconds` of motion for `prompt` after the end of source;
    * inbetween: make `seconds` of motion leading from the end of `source` to the start of `target`, guided by
      `prompt` (None: an unconditioned transition).
    """
    TYPE: ClassVar[str] = "edit"
    mode: str = _field(_choice(EDIT_MODES))
    source: str = _field(_path_text)
    output_dir: str = _field(_path_text)
    prompt: str | None = _field(_optional(_prompt_text), default=None)
    segment: int | None = _field(_optional(_integer(0, 10**6)), default=None)
    frame_range: list[int] | None = _field(_optional(_frame_range), default=None)
    seconds: float | None = _field(_optional(_number(1e-3, MAX_TOTAL_SECONDS)), default=None)
    target: str | None = _field(_optional(_path_text), default=None)
    seed: int | None = _field(_optional(_integer(0, MAX_SEED)), default=None)
    variations: int = _field(_integer(1, MAX_VARIATIONS), default=1)
    guidance: float | None = _field(_optional(_number(MIN_GUIDANCE, MAX_GUIDANCE)), default=None)
    steps: int | None = _field(_optional(_integer(1, MAX_STEPS)), default=None)
    id: str = _field(_ID, default="")


@dataclass
class CheckPrompts:
    """Before generating: what a result would say of `prompts` (a timeline's, each by its index as the segment),
    answered by a `result` without paths whose `warnings` and `info.conditions` are the ones a generation of them
    would carry.  Loads the model when none is loaded."""
    TYPE: ClassVar[str] = "check_prompts"
    prompts: list[str] = _field(_prompt_list)
    id: str = _field(_ID, default="")


@dataclass
class Cancel:
    """Stop the request with this id; it ends with an `error` of kind "cancelled" (no answer of its own)."""
    TYPE: ClassVar[str] = "cancel"
    id: str = _field(_ID)


@dataclass
class Shutdown:
    """Exit cleanly: unfinished requests end with "cancelled" errors, then the process exits with code 0."""
    TYPE: ClassVar[str] = "shutdown"


# ---- events (worker -> client) --------------------------------------------------------------------------------------
@dataclass
class Ready:
    """Answer to hello: what the worker is and runs on."""
    TYPE: ClassVar[str] = "ready"
    protocol_version: int = _field(_integer(0, 10**6))
    package_version: str = _field(_text(64))
    device: str = _field(_text(64, nonempty=True))
    torch_version: str = _field(_text(64))
    cuda_available: bool = _field(_boolean)
    python_version: str = _field(_text(64), default="")
    id: str | None = _field(_optional(_ID), default=None)


@dataclass
class Progress:
    """`step` of `total` done (0 <= step <= total) for request `id`."""
    TYPE: ClassVar[str] = "progress"
    id: str = _field(_ID)
    step: int = _field(_integer(0, 10**9))
    total: int = _field(_integer(1, 10**9))
    message: str = _field(_text(1024), default="")


@dataclass
class Result:
    """Request `id` finished: the MotionResult .npz files it wrote (empty for load), facts about it, and warnings
    about its prompts (since version 2: prompts far from what the model was trained on, with suggestions)."""
    TYPE: ClassVar[str] = "result"
    id: str = _field(_ID)
    paths: list[str] = _field(_paths, default_factory=list)
    info: dict = _field(_object, default_factory=dict)
    warnings: list[dict] = _field(_warnings, default_factory=list)


@dataclass
class Error:
    """Request `id` (None: no particular request) failed. `advice` says what the user can do; `trace` is for bug
    reports (a traceback or the worker's last stderr lines)."""
    TYPE: ClassVar[str] = "error"
    kind: str = _field(_choice(ERROR_KINDS))
    message: str = _field(_text())
    id: str | None = _field(_optional(_ID), default=None)
    advice: str = _field(_text(), default="")
    trace: str = _field(_text(), default="")


@dataclass
class Log:
    """A line for the worker's log (shown in Blender's console / the CLI)."""
    TYPE: ClassVar[str] = "log"
    level: str = _field(_choice(LOG_LEVELS))
    message: str = _field(_text())
    id: str | None = _field(_optional(_ID), default=None)


REQUESTS: dict[str, type] = {cls.TYPE: cls for cls in (Hello, Load, Generate, Edit, CheckPrompts, Cancel,
                                                         Shutdown)}
EVENTS: dict[str, type] = {cls.TYPE: cls for cls in (Ready, Progress, Result, Error, Log)}
MESSAGES: dict[str, type] = {**REQUESTS, **EVENTS}
REQUEST_TYPES = tuple(REQUESTS)
EVENT_TYPES = tuple(EVENTS)
ANSWERED_REQUESTS = ("hello", "load", "generate", "edit", "check_prompts")
"""Requests that end with exactly one terminal event carrying their id."""
TERMINAL_EVENTS = ("ready", "result", "error")


MAX_FULL_WARNINGS = 20
"""A result lists at most this many prompt warnings in full; the others are one summary entry (segment null) that
counts them, so an answer always fits MAX_LINE_BYTES (900 segments of 1000-character unfamiliar prompts made an
answer of several MiB that could not be sent)."""


def summarise_warnings(warnings: list[dict[str, Any]], keep: int = MAX_FULL_WARNINGS) -> list[dict[str, Any]]:
    """The first `keep` warnings in full, then (when there are more) one entry with ``segment`` null, an empty
    ``prompt`` and no suggestions whose message counts the rest and names their segments."""
    if len(warnings) <= keep:
        return list(warnings)
    rest = warnings[keep:]
    segments = sorted({w["segment"] for w in rest if isinstance(w.get("segment"), int)})
    where = f" (segments {_ranges(segments)})" if segments else ""
    if len(where) > 1000:
        where = where[:990] + " ...)"
    message = (f"{len(rest)} more prompt{'s' if len(rest) != 1 else ''}{where} {'are' if len(rest) != 1 else 'is'} "
               f"far from everything this model was trained on, or ask for what it rarely performs; the motion may "
               f"not match them")
    rates = [w["predicted_pass_rate"] for w in rest if w.get("predicted_pass_rate") is not None]
    return [*warnings[:keep], {"segment": None, "prompt": "", "similarity": min(w["similarity"] for w in rest),
                               "threshold": rest[0]["threshold"], "message": message,
                               "suggestions": [], "predicted_pass_rate": min(rates) if rates else None}]


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 7] -> "1-3, 7"."""
    parts: list[str] = []
    start = previous = numbers[0]
    for number in [*numbers[1:], None]:
        if number is not None and number == previous + 1:
            previous = number
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        if number is not None:
            start = previous = number
    return ", ".join(parts)


def clip_text(text: str, max_chars: int = MAX_TEXT_CHARS) -> str:
    """Keep the end of a long text (the end of a traceback is what matters), marking the cut; an unpaired surrogate
    (a message quoting client text) is written as its escape, so the text is valid Unicode."""
    if not _is_unicode(text):
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) <= max_chars:
        return text
    marker = "[...]\n"
    return marker + text[len(text) - (max_chars - len(marker)):]


def to_dict(message: object) -> dict[str, Any]:
    """A message dataclass or dict as a plain dict with "type" first (not yet validated)."""
    if dataclasses.is_dataclass(message) and not isinstance(message, type):
        kind = getattr(type(message), "TYPE", None)
        if kind is None:
            raise ProtocolError(f"{type(message).__name__} is not a protocol message")
        return {"type": kind, **dataclasses.asdict(message)}
    if isinstance(message, Mapping):
        return {"type": message.get("type"), **{k: v for k, v in message.items() if k != "type"}}
    raise ProtocolError(f"a message must be a protocol dataclass or a dict, got {type(message).__name__}")


def validate(data: Mapping[str, Any], allowed: tuple[str, ...] | None = None, *, deep: bool = True) -> dict[str, Any]:
    """Check a message dict: known type, no unknown fields, every field valid, cross-field rules.
    Returns a new dict with "type" and "id" first, then every field (defaults filled in).  With ``deep=False`` a
    field whose check can take long (`generate.timeline`: thousands of constraints) only gets its quick type check;
    whoever uses the message then checks it fully (the worker's job thread, `Timeline.from_dict`)."""
    message_id = readable_id(data.get("id"))
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in MESSAGES:
        raise ProtocolError(f"unknown message type {kind!r} (known: {', '.join(MESSAGES)})", field="type",
                            message_id=message_id)
    if allowed is not None and kind not in allowed:
        raise ProtocolError(f"not expected here (expected one of {', '.join(allowed)})", message_type=kind,
                            field="type", message_id=message_id)
    fields = {f.name: f for f in dataclasses.fields(MESSAGES[kind])}
    for key in data:
        if key != "type" and key not in fields:
            raise ProtocolError(f"unknown field (allowed: {', '.join(fields) or 'none'})", message_type=kind,
                                field=str(key), message_id=message_id)
    result: dict[str, Any] = {"type": kind}
    if "id" in fields:
        result["id"] = None  # placeholder so that "id" comes right after "type" on the wire
    for name, spec in fields.items():
        if name in data:
            value = data[name]
        elif spec.default is not dataclasses.MISSING:
            value = spec.default
        elif spec.default_factory is not dataclasses.MISSING:
            value = spec.default_factory()
        else:
            raise ProtocolError("missing", message_type=kind, field=name, message_id=message_id)
        reason = spec.metadata["check" if deep else "shallow"](value)
        if reason is not None:
            raise ProtocolError(reason, message_type=kind, field=name, message_id=message_id)
        result[name] = value
    _check_rules(result, message_id)
    return result


def _check_rules(message: dict[str, Any], message_id: str | None) -> None:
    """Rules that involve more than one field."""
    def fail(reason: str, field_name: str) -> None:
        raise ProtocolError(reason, message_type=message["type"], field=field_name, message_id=message_id)

    if message["type"] == "progress" and message["step"] > message["total"]:
        fail(f"step {message['step']} is beyond total {message['total']}", "step")
    if message["type"] != "edit":
        return
    mode = message["mode"]
    if mode == "regenerate":
        if (message["segment"] is None) == (message["frame_range"] is None):
            fail("regenerate needs exactly one of 'segment' or 'frame_range'", "segment")
        for name in ("seconds", "target"):
            if message[name] is not None:
                fail("not used by regenerate", name)
        return
    for name in ("segment", "frame_range"):
        if message[name] is not None:
            fail(f"not used by {mode}", name)
    if message["seconds"] is None:
        fail(f"{mode} needs 'seconds' (how long the new motion lasts)", "seconds")
    if mode == "continue":
        if message["prompt"] is None:
            fail("continue needs a 'prompt'", "prompt")
        if message["target"] is not None:
            fail("not used by continue", "target")
    elif message["target"] is None:
        fail("inbetween needs a 'target' motion to lead into", "target")


def encode(message: object) -> str:
    """One validated message as one line of JSON (no trailing newline)."""
    data = validate(to_dict(message))
    try:
        line = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        if not _is_unicode(line):  # an unpaired surrogate in free text: escape it (\udXXX is valid JSON)
            line = json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"cannot be written as JSON ({exc})", message_type=data["type"],
                            message_id=data.get("id")) from None
    size = len(line.encode("utf-8"))
    if size > MAX_LINE_BYTES:
        raise ProtocolError(f"encodes to {size} bytes; the limit is {MAX_LINE_BYTES}", message_type=data["type"],
                            message_id=data.get("id"))
    return line


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity, which are not JSON; other readers would choke on them.
    raise ValueError(f"{name} is not valid JSON")


def _id_despite(text: str) -> str | None:
    """The id of a line that is JSON only by Python's lenient reading (NaN, Infinity), so its error can name it."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return readable_id(data.get("id")) if isinstance(data, dict) else None


_HEAD_ID = re.compile(rb'^\s*\{\s*(?:"type"\s*:\s*"[^"\\]{0,64}"\s*,\s*)?"id"\s*:\s*"([^"\\]{1,128})"\s*(?:[,}]|$)')


def head_id(raw: bytes) -> str | None:
    """The id at the head of a line that cannot be parsed as a whole (cut off, a non-UTF-8 byte further on), when
    it stands where the protocol puts it: ``{"type": "...", "id": "..."`` or ``{"id": "..."``, followed by ``,``,
    ``}`` or the end of the line; None otherwise."""
    match = _HEAD_ID.match(raw)
    if match is None:
        return None
    try:
        return readable_id(match.group(1).decode("utf-8"))
    except UnicodeDecodeError:
        return None


def decode(line: str | bytes, allowed: tuple[str, ...] | None = None, *, deep: bool = True) -> dict[str, Any]:
    """Parse and validate one line. `allowed` restricts the message types (REQUEST_TYPES on the worker side,
    EVENT_TYPES on the client side); ``deep=False`` leaves expensive field checks to the user of the message (see
    `validate`).  A line that cannot be parsed names its id when the id can be read at its head (`head_id`)."""
    raw = line if isinstance(line, bytes) else line.encode("utf-8", errors="surrogatepass")
    raw = raw.rstrip(b"\r\n")
    if len(raw) > MAX_LINE_BYTES:
        raise ProtocolError(f"the line is {len(raw)} bytes long; the limit is {MAX_LINE_BYTES}")
    try:
        text = raw.decode("utf-8")
        data = json.loads(text, parse_constant=_reject_constant, parse_int=_parse_int)
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"the line is not UTF-8 ({exc.reason} at byte {exc.start})",
                            message_id=head_id(raw)) from None
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"the line is not JSON: {exc.msg} at column {exc.colno}", message_id=head_id(raw)) from None
    except ValueError as exc:  # NaN/Infinity, or an integer of more than 4300 digits
        raise ProtocolError(f"the line is not JSON: {exc}", message_id=_id_despite(text)) from None
    except RecursionError:
        raise ProtocolError("the line is nested too deeply", message_id=head_id(raw)) from None
    if nesting_depth(data) > MAX_NESTING_DEPTH:  # as for input files (bounded_read.py)
        raise ProtocolError(f"the line nests lists/objects more than {MAX_NESTING_DEPTH} deep",
                            message_id=readable_id(data.get("id")) if isinstance(data, dict) else None)
    if not isinstance(data, dict):
        raise ProtocolError(f"the line must hold a JSON object, got {_describe(data)}")
    return validate(data, allowed, deep=deep)
