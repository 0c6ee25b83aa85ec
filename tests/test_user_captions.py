# SPDX-License-Identifier: GPL-3.0-or-later
"""Reading a user's captions file (CSV / JSON): clips, merged captions, frame ranges, and errors with locations."""

from __future__ import annotations

import json
import re

import pytest

from kmm_core.common.errors import InputFileError
from kmm_core.data.user_captions import read_captions_file


def _write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_rows_merge_captions_per_clip_and_keep_ranges(tmp_path):
    path = _write(tmp_path, "captions.csv",
                  "file,caption,start_frame,end_frame,content\n"
                  "# a comment line\n"
                  "walk.bvh,a person walks | someone strolls,,,walk\n"
                  "\n"
                  "walk.bvh,a person ambles along,,,walk\n"
                  "sub\\wave.bvh,\"a person waves, then stops\",10,90,\n"
                  "sub/wave.bvh,a person waves again,90,,wave\n")
    entries = read_captions_file(path)
    assert [(e.file, e.start_frame, e.end_frame) for e in entries] == [
        ("walk.bvh", None, None), ("sub/wave.bvh", 10, 90), ("sub/wave.bvh", 90, None)]
    assert entries[0].captions == ("a person walks", "someone strolls", "a person ambles along")
    assert entries[0].line == 3 and entries[0].origin == f"{path}, line 3"
    assert entries[1].captions == ("a person waves, then stops",) and entries[1].content == "user"
    assert entries[2].content == "wave"


def test_json_list_and_mapping_forms(tmp_path):
    listed = _write(tmp_path, "list.json", json.dumps([
        {"file": "a.bvh", "captions": ["a person jumps", "someone hops"], "start_frame": 0, "end_frame": 40},
        {"file": "b.bvh", "caption": "a person sits down", "content": "sit"}]))
    entries = read_captions_file(listed)
    assert entries[0].captions == ("a person jumps", "someone hops") and entries[0].end_frame == 40
    assert entries[1].content == "sit" and entries[1].entry == "entry 2 ('b.bvh')"
    mapping = _write(tmp_path, "map.json", json.dumps({"a.bvh": "a person jumps",
                                                       "b.bvh": {"captions": ["x y"], "start_frame": 5}}))
    entries = read_captions_file(mapping)
    assert [(e.file, e.captions, e.start_frame) for e in entries] == [
        ("a.bvh", ("a person jumps",), None), ("b.bvh", ("x y",), 5)]


@pytest.mark.parametrize(("text", "line", "message"), [
    ("file,caption,speed\na.bvh,x,1\n", 1, "unknown column 'speed'"),
    ("file,start_frame\na.bvh,1\n", 1, "'file' and 'caption'"),
    ("file,caption,start_frame\na.bvh,a person walks,0\nb.bvh,a person runs,ten\n", 3, "whole number"),
    ("file,caption,start_frame,end_frame\na.bvh,a person walks,50,20\n", 2, "after start_frame"),
    ("file,caption\na.bvh,a person # walks\n", 2, "'#'"),
    ("file,caption\na.bvh, | \n", 2, "no caption"),
    ("file,caption\n../a.bvh,a person walks\n", 2, "inside the BVH folder"),
    ("file,caption\na.bvh,a person walks,extra\n", 2, "3 fields"),
    ("file,caption,start_frame\na.bvh,a person walks,-4\n", 2, ">= 0"),
])
def test_csv_errors_name_the_line(tmp_path, text, line, message):
    path = _write(tmp_path, "captions.csv", text)
    with pytest.raises(InputFileError, match=message) as error:
        read_captions_file(path)
    assert error.value.path == str(path) and error.value.line == line
    assert f"captions.csv, line {line}:" in str(error.value)


@pytest.mark.parametrize(("data", "message"), [
    ([{"file": "a.bvh", "captions": ["ok"]}, {"file": "b.bvh"}], "entry 2 ('b.bvh'): no 'captions'"),
    ([{"file": "a.bvh", "captions": "ok", "fps": 30}], "entry 1 ('a.bvh'): unknown key 'fps'"),
    ([{"file": "a.bvh", "captions": [1, 2]}], "entry 1 ('a.bvh'): captions must be"),
    ([{"file": "a.bvh", "caption": "x", "captions": ["y"]}], "not both"),
    ([{"file": "a.bvh", "caption": "x", "end_frame": 2.5}], "entry 1 ('a.bvh'): end_frame must be a whole"),
    (["a.bvh"], "entry 1: must be an object"),
    ("a.bvh", "top level"),
    ([], "lists no clips"),
])
def test_json_errors_name_the_entry(tmp_path, data, message):
    path = _write(tmp_path, "captions.json", json.dumps(data))
    with pytest.raises(InputFileError, match=re.escape(message)) as error:
        read_captions_file(path)
    assert error.value.path == str(path)


def test_file_level_errors(tmp_path):
    broken = _write(tmp_path, "captions.json", '[{"file": "a.bvh",\n "captions": ["x"]\n')
    with pytest.raises(InputFileError, match="not valid JSON") as error:
        read_captions_file(broken)
    assert error.value.line == 3
    with pytest.raises(InputFileError, match="use .csv or .json"):
        read_captions_file(_write(tmp_path, "captions.txt", "a.bvh,x\n"))
    with pytest.raises(InputFileError, match="empty"):
        read_captions_file(_write(tmp_path, "empty.csv", "\n\n"))
    with pytest.raises(InputFileError, match="cannot read"):
        read_captions_file(tmp_path / "absent.csv")
