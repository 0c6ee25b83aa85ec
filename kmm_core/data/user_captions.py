# SPDX-License-Identifier: GPL-3.0-or-later
"""Read a user's captions file: which BVH files of a folder to use, their captions and optional frame ranges.

Two formats, chosen by the file's extension.

CSV (``.csv``), a header row then one row per clip (or per caption)::

    file,caption,start_frame,end_frame,content
    walk01.bvh,a person walks forward | someone strolls ahead,,,walk
    session2/wave.bvh,a person waves the left hand,120,300,wave

- ``file`` (required): path of the BVH file relative to the BVH folder.
- ``caption`` or ``captions`` (required): one or more captions separated by ``|``.  Rows with the same file and
  frame range add captions to the same clip.
- ``start_frame`` / ``end_frame`` (optional, may be empty): frames of the BVH file at its own frame rate, start
  inclusive, end exclusive; empty means the start / end of the file.  Several ranges of one file become several clips
  of the same take (they always land in the same split).
- ``content`` (optional): a label used only to stratify the train/val/test split (default ``"user"``).
Blank lines and lines starting with ``#`` are ignored.

JSON (``.json``): a list of entries, or an object mapping a file to its entry or captions::

    [{"file": "walk01.bvh", "captions": ["a person walks forward"], "start_frame": 0, "end_frame": 200,
      "content": "walk"}]
    {"walk01.bvh": ["a person walks forward", "someone strolls"], "wave.bvh": "a person waves"}

Every error names the captions file and the CSV line or JSON entry.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from dataclasses import dataclass
from pathlib import Path

from ..common.bounded_read import parse_json, read_text
from ..common.checked_path import PathEscapeError, check_relative_name
from ..common.errors import InputFileError

DEFAULT_CONTENT = "user"
CAPTION_SEPARATOR = "|"
_CSV_COLUMNS = {"file", "caption", "captions", "start_frame", "end_frame", "content"}
_JSON_KEYS = {"file", "caption", "captions", "start_frame", "end_frame", "content"}


@dataclass(frozen=True)
class UserClipEntry:
    """One clip the user asked for: a BVH file, an optional frame range and its captions."""

    file: str                       # relative to the BVH folder, '/' separated
    captions: tuple[str, ...]
    start_frame: int | None         # source frames, start inclusive (None: from the first frame)
    end_frame: int | None           # end exclusive (None: to the last frame)
    content: str
    source: str                     # the captions file
    line: int | None = None         # its CSV line
    entry: str | None = None        # or its JSON entry ("entry 2 ('walk.bvh')")

    @property
    def origin(self) -> str:
        """'captions.csv, line 4' / "captions.json, entry 2 ('walk.bvh')": where this clip was declared."""
        return f"{self.source}, line {self.line}" if self.line is not None else f"{self.source}, {self.entry}"

    def error(self, message: str) -> InputFileError:
        """An error about this clip that names the captions file and the line or entry."""
        return InputFileError(self.source, message if self.entry is None else f"{self.entry}: {message}", self.line)


def _check_caption(text: str, fail) -> str:
    text = " ".join(text.split())
    if not text:
        raise fail("a caption is empty")
    if "#" in text:
        raise fail(f"caption {text!r} contains '#', the field separator of HumanML3D caption files")
    return text


def _parse_frame(value, label: str, fail) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise fail(f"{label} must be a whole number of frames, got {value!r}")
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise fail(f"{label} must be a whole number of frames, got {value!r}") from None
    if not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise fail(f"{label} must be a whole number of frames, got {value!r}")
    if value < 0:
        raise fail(f"{label} must be >= 0, got {value}")
    return value


def _check_file(value, fail) -> str:
    if not isinstance(value, str) or not value.strip():
        raise fail("'file' must name a BVH file")
    file = value.strip().replace("\\", "/")
    try:  # the name rule of checked_path (the join itself is checked in sources.user_specs)
        return check_relative_name(file, "file")
    except PathEscapeError:
        raise fail(f"'file' {file!r} must be a path inside the BVH folder") from None


def _make_entry(file, captions: list[str], start, end, content, fail, source: Path, line: int | None = None,
                entry: str | None = None) -> UserClipEntry:
    file = _check_file(file, fail)
    if not captions:
        raise fail(f"no caption for {file!r}")
    start_frame = _parse_frame(start, "start_frame", fail)
    end_frame = _parse_frame(end, "end_frame", fail)
    if start_frame is not None and end_frame is not None and end_frame <= start_frame:
        raise fail(f"end_frame {end_frame} must be after start_frame {start_frame}")
    if content is None or (isinstance(content, str) and not content.strip()):
        content = DEFAULT_CONTENT
    if not isinstance(content, str):
        raise fail(f"'content' must be text, got {content!r}")
    return UserClipEntry(file, tuple(_check_caption(c, fail) for c in captions), start_frame, end_frame,
                         content.strip(), str(source), line, entry)


def _merge(entries: list[UserClipEntry]) -> list[UserClipEntry]:
    """Entries with the same file and frame range become one clip with all their captions (first origin kept)."""
    merged: dict[tuple, UserClipEntry] = {}
    for entry in entries:
        key = (entry.file, entry.start_frame, entry.end_frame)
        if key in merged:
            first = merged[key]
            captions = first.captions + tuple(c for c in entry.captions if c not in first.captions)
            merged[key] = dataclasses.replace(first, captions=captions)
        else:
            merged[key] = entry
    return list(merged.values())


def _read_csv(path: Path, text: str) -> list[UserClipEntry]:
    rows = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    entries = []
    for row in rows:
        line = rows.line_num
        if not row or not any(cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
            continue

        def fail(message: str, line: int = line) -> InputFileError:
            return InputFileError(path, message, line)

        if header is None:
            header = [cell.strip().lower() for cell in row]
            unknown = [name for name in header if name not in _CSV_COLUMNS]
            if unknown:
                raise fail(f"unknown column {unknown[0]!r}; the columns are file, caption (or captions), "
                           "start_frame, end_frame, content")
            if "file" not in header or not ({"caption", "captions"} & set(header)):
                raise fail("the header row needs the columns 'file' and 'caption'")
            if len(set(header)) != len(header):
                raise fail("a column is named twice in the header row")
            continue
        if len(row) > len(header):
            raise fail(f"{len(row)} fields but the header has {len(header)} columns")
        values = dict(zip(header, [cell.strip() for cell in row] + [""] * (len(header) - len(row)), strict=True))
        caption_cell = values.get("caption") or values.get("captions") or ""
        captions = [c for c in (part.strip() for part in caption_cell.split(CAPTION_SEPARATOR)) if c]
        entries.append(_make_entry(values["file"], captions, values.get("start_frame"), values.get("end_frame"),
                                   values.get("content"), fail, path, line=line))
    if header is None:
        raise InputFileError(path, "the captions file is empty (expected a header row: file,caption,...)")
    return entries


def _json_captions(value, fail) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(c, str) for c in value):
        return list(value)
    raise fail(f"captions must be a string or a list of strings, got {value!r}")


def _read_json(path: Path, text: str) -> list[UserClipEntry]:
    data = parse_json(text, path, "captions file")
    if isinstance(data, dict):
        items = []
        for file, value in data.items():
            items.append({"file": file, **value} if isinstance(value, dict) else {"file": file, "captions": value})
    elif isinstance(data, list):
        items = data
    else:
        raise InputFileError(path, "the top level must be a list of entries or an object mapping files to captions")
    entries = []
    for number, item in enumerate(items, start=1):
        label = f"entry {number}"
        if isinstance(item, dict) and isinstance(item.get("file"), str):
            label += f" ({item['file']!r})"

        def fail(message: str, label: str = label) -> InputFileError:
            return InputFileError(path, f"{label}: {message}")

        if not isinstance(item, dict):
            raise fail("must be an object with 'file' and 'captions'")
        unknown = sorted(set(item) - _JSON_KEYS)
        if unknown:
            raise fail(f"unknown key {unknown[0]!r}; the keys are {', '.join(sorted(_JSON_KEYS))}")
        if "caption" in item and "captions" in item:
            raise fail("give either 'caption' or 'captions', not both")
        if "caption" not in item and "captions" not in item:
            raise fail("no 'captions'")
        captions = _json_captions(item.get("captions", item.get("caption")), fail)
        entries.append(_make_entry(item.get("file"), captions, item.get("start_frame"), item.get("end_frame"),
                                   item.get("content"), fail, path, entry=label))
    return entries


def read_captions_file(path: str | Path) -> list[UserClipEntry]:
    """Clips listed in a captions file (.csv or .json), in file order, rows of the same clip merged."""
    path = Path(path)
    text = read_text(path, "captions file", encoding="utf-8-sig")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        entries = _read_csv(path, text)
    elif suffix == ".json":
        entries = _read_json(path, text)
    else:
        raise InputFileError(path, f"unknown captions file type {suffix!r}: use .csv or .json")
    if not entries:
        raise InputFileError(path, "the captions file lists no clips")
    return _merge(entries)
