# SPDX-License-Identifier: GPL-3.0-or-later
"""Captions for the real Bandai-Namco labels and CMU descriptions: natural, varied, deterministic, sides kept."""

from __future__ import annotations

import json
import re

import pytest

from kmm_core.data.captions import (
    captions_for_description,
    captions_for_label,
    description_content,
    third_person,
)
from kmm_core.data.sources import bandai_namco_specs, cmu_specs
from kmm_core.motion.skeleton import mirror_text

SIDE = re.compile(r"\b(left|right)\b")


@pytest.fixture(scope="module")
def bandai_labels(bandai_namco_dir) -> dict[str, tuple[list[str], list[str]]]:
    """Content and style label names of each real dataset's cfg files."""
    labels = {}
    for cfg in sorted(bandai_namco_dir.glob("Bandai-Namco-Research-Motiondataset-*/cfg")):
        read = [re.sub(r"^dataset-\d+_", "", line.strip())
                for line in (cfg / "content_label.txt").read_text().splitlines() if line.strip()]
        styles = [re.sub(r"^dataset-\d+_", "", line.strip())
                  for line in (cfg / "style_label.txt").read_text().splitlines() if line.strip()]
        labels[cfg.parent.name] = (read, styles)
    assert len(labels) == 2
    return labels


def test_every_real_label_pair_gets_distinct_natural_captions(bandai_labels):
    for contents, styles in bandai_labels.values():
        for content in contents:
            for style in styles:
                captions = captions_for_label(content, style, seed=f"{content}|{style}", count=3)
                assert len(set(captions)) == 3
                for caption in captions:
                    assert caption == caption.strip() and "  " not in caption and "_" not in caption
                    assert caption.split()[0] in ("a", "an", "someone", "the"), caption
                    assert "-" not in caption.replace("full-", ""), caption  # no raw label strings
                    sides = SIDE.findall(caption)
                    expected = [w for w in ("left", "right") if w in content.split("-")]
                    assert sorted(set(sides)) == expected, (content, caption)


def test_label_captions_are_deterministic_and_varied():
    first = captions_for_label("wave-left-hand", "happy", seed="take-1", count=4)
    assert first == captions_for_label("wave-left-hand", "happy", seed="take-1", count=4)
    others = {tuple(captions_for_label("wave-left-hand", "happy", seed=f"take-{i}", count=4)) for i in range(10)}
    assert len(others) >= 8
    mirrored = [mirror_text(c) for c in first]
    assert all("right" in c and "left" not in c for c in mirrored)
    with pytest.raises(KeyError, match="juggle"):
        captions_for_label("juggle", None, seed=0)


def test_specs_of_the_real_archives_caption_every_clip(bandai_namco_dir, cmu_archive, cmu_descriptions):
    scan = bandai_namco_specs(bandai_namco_dir, seed=0)
    assert len(scan.specs) == 2854 and not scan.skipped
    for spec in scan.specs:
        # The label JSON and the file name agree on the content, and the captions keep its side.
        assert f"_{spec.content}_{spec.style}_" in spec.clip_id
        expected = [w for w in ("left", "right") if w in spec.content.split("-")]
        assert all(sorted(set(SIDE.findall(c))) == expected for c in spec.captions), spec.captions
    cmu = cmu_specs(cmu_archive, cmu_descriptions, seed=0)
    assert len(cmu.specs) == 58 and not cmu.skipped
    assert {s.content for s in cmu.specs} == {"walk", "run", "jump"}
    assert all(s.drop_first_frame for s in cmu.specs)


def test_cmu_descriptions_read_as_captions(cmu_descriptions):
    descriptions = {k: v["desc"] for k, v in json.loads(cmu_descriptions.read_text()).items()}
    walk = captions_for_description("walk", seed=1, count=4)
    assert set(walk) == {"a person walks", "someone walks", "the person walks", "a figure walks"}
    assert all(c.endswith(("runs", "jogs")) for c in captions_for_description("run/jog", seed=0, count=4))
    assert "walks slowly" in captions_for_description("slow walk", seed=0)[0]
    assert captions_for_description("jump, balance", seed=0)[0].endswith("jumps and balances")
    assert captions_for_description("walk, exaggerated stride", seed=0)[0].endswith(
        "walks with an exaggerated stride")
    assert captions_for_description("jump up to grab, reach for, tiptoe", seed=0)[0].endswith(
        "jumps up to grab something, reaches for something and tiptoes")
    assert captions_for_description("playground - forward jumps, turn around", 0)[0].endswith(
        "jumps forward and turns around")
    assert captions_for_description("shaking hands (human subject)", 0)[0].endswith("is shaking hands")
    # Over the whole database: every description yields subject-led captions (side words are checked inside).
    for trial, description in descriptions.items():
        captions = captions_for_description(description, seed=trial, count=2)
        assert captions and all(c.split()[0] in ("a", "someone", "the") for c in captions)
    assert captions_for_description("walk with left arm raised", seed=0)[0].endswith(
        "walks with left arm raised")
    assert description_content("slow walk/stride") == "walk"
    assert description_content("forward jumps") == "jump"


@pytest.mark.parametrize(("verb", "expected"), [("walk", "walks"), ("reach", "reaches"), ("carry", "carries"),
                                                ("play", "plays"), ("go", "goes"), ("toss", "tosses"),
                                                ("jumps", "jumps"), ("wash", "washes")])
def test_third_person(verb, expected):
    assert third_person(verb) == expected
