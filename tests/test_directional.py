# SPDX-License-Identifier: GPL-3.0-or-later
"""Directional accuracy on real labelled motion capture (Bandai-Namco), its mirror image, and prompt parsing."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from kmm_core.bvh.joint_map import builtin_joint_map
from kmm_core.bvh.reader import read_bvh
from kmm_core.bvh.retarget import bvh_to_canonical_joints
from kmm_core.common.errors import InputTensorError, KMMError
from kmm_core.data.captions import CONTENT_PHRASES, STYLE_MANNERS, captions_for_label
from kmm_core.evaluation.directional import (
    INTENT_KINDS,
    DirectionalIntent,
    decide,
    directional_accuracy,
    heading_degrees,
    parse_directional_intent,
)
from kmm_core.evaluation.paraphrases import DIRECTIONAL_PARAPHRASES, paraphrase_prompts
from kmm_core.humanml3d.preprocess import preprocess_joints
from kmm_core.motion.skeleton import mirror_positions, mirror_text

FPS = 20.0
DIRECTIONAL_CONTENTS = ("raise-up-left-hand", "raise-up-right-hand", "wave-left-hand", "wave-right-hand",
                        "walk-turn-left", "walk-turn-right", "walk-left", "walk-right")
_CLIP_NAME = re.compile(r"dataset-(\d)_(.+)_([^_]+)_(\d+)\.bvh$")
CLIPS_PER_STYLE = 2


def _canonical(path: Path) -> np.ndarray:
    return preprocess_joints(bvh_to_canonical_joints(read_bvh(path), builtin_joint_map("bandai_namco")))


def _clips_by_content(root: Path) -> dict[str, list[Path]]:
    by_content_style: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for path in sorted(root.glob("Bandai-Namco-Research-Motiondataset-*/data/*.bvh")):
        match = _CLIP_NAME.search(path.name)
        if match:
            by_content_style[(match.group(2), match.group(3))].append(path)
    clips: dict[str, list[Path]] = defaultdict(list)
    for (content, _style), paths in sorted(by_content_style.items()):
        clips[content].extend(paths[:CLIPS_PER_STYLE])
    return clips


@pytest.fixture(scope="session")
def directional_clips(bandai_namco_dir) -> dict[str, list[tuple[str, np.ndarray]]]:
    """(file name, canonical joints) of the first clips of every style of each directional content."""
    clips = _clips_by_content(bandai_namco_dir)
    missing = [c for c in DIRECTIONAL_CONTENTS if not clips.get(c)]
    assert not missing, f"no clips found for {missing} under {bandai_namco_dir}"
    return {content: [(path.name, _canonical(path)) for path in clips[content]] for content in DIRECTIONAL_CONTENTS}


@pytest.fixture(scope="session")
def straight_walks(bandai_namco_dir) -> list[np.ndarray]:
    paths = sorted(bandai_namco_dir.glob("Bandai-Namco-Research-Motiondataset-2/data/dataset-2_walk_normal_*.bvh"))
    assert paths, "no dataset-2 straight walk clips found"
    return [_canonical(p) for p in paths[:5]]


def _prompts_for(content: str, count: int) -> list[str]:
    prompts = DIRECTIONAL_PARAPHRASES[content]
    return [prompts[i % len(prompts)] for i in range(count)]


# ---------------------------------------------------------------------------------------------------------------
# real clips: ground-truth ceiling
# ---------------------------------------------------------------------------------------------------------------

def test_real_labelled_clips_show_their_side(directional_clips):
    prompts, motions, names = [], [], []
    for content, clips in directional_clips.items():
        prompts += _prompts_for(content, len(clips))
        motions += [joints for _, joints in clips]
        names += [name for name, _ in clips]
    report = directional_accuracy(prompts, motions, fps=FPS)
    misses = [(name, d.intent.content, round(d.score, 3))
              for name, d in zip(names, report.decisions, strict=True) if not d.correct]
    print("\n" + report.summary() + f"\nmisses: {misses}")
    assert not report.skipped_prompts
    assert len(report.decisions) == len(motions)
    assert set(report.accuracy_by_content) == set(DIRECTIONAL_CONTENTS)
    for content in DIRECTIONAL_CONTENTS:
        minimum = 14 if content.startswith(("raise", "wave", "walk-turn")) else 10  # dataset-1 has one per style
        assert report.count_by_content[content] >= minimum, content
        assert report.accuracy_by_content[content] >= 0.9, (content, misses)
    assert report.overall_accuracy >= 0.97, misses


def test_mirrored_clips_show_the_opposite_side(directional_clips):
    opposite = {"left": "right", "right": "left", None: None}
    for content, clips in directional_clips.items():
        for (name, joints), prompt in zip(clips, _prompts_for(content, len(clips)), strict=True):
            intent = parse_directional_intent(prompt)
            original = decide(prompt, intent, joints, FPS)
            mirrored_prompt = mirror_text(prompt)
            mirrored_intent = parse_directional_intent(mirrored_prompt)
            assert mirrored_intent == DirectionalIntent(intent.kind, opposite[intent.side])
            mirrored = decide(mirrored_prompt, mirrored_intent, mirror_positions(joints), FPS)
            assert mirrored.measured_side == opposite[original.measured_side], name
            assert mirrored.correct == original.correct, name
            assert mirrored.score == pytest.approx(-original.score, abs=1e-6), name


def test_turn_sign_agrees_with_the_path(directional_clips):
    """Independent of the heading formula: a canonical clip faces +Z with its left at +X, so after a left turn
    it walks toward +X."""
    for content in ("walk-turn-left", "walk-turn-right"):
        agree = []
        for _name, joints in directional_clips[content]:
            turn = decide("turn left", DirectionalIntent("turn", "left"), joints, FPS).score
            agree.append(np.sign(turn) == np.sign(joints[-1, 0, 0]))
        assert np.mean(agree) >= 0.9, content


def test_heading_of_a_known_rotation():
    """A pose spun counter-clockwise seen from above (positive angle about +Y) turns +Z toward +X: a left turn."""
    from kmm_core.motion.skeleton import rest_positions

    pose = rest_positions()
    angles = np.radians(np.linspace(0.0, 120.0, 40))
    rotations = np.stack([[[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]] for a in angles])
    joints = np.einsum("tij,kj->tki", rotations, pose)
    assert np.allclose(rotations[-1] @ [0, 0, 1.0], [np.sin(angles[-1]), 0, np.cos(angles[-1])])
    heading = heading_degrees(joints)
    assert heading[-1] - heading[0] == pytest.approx(120.0, abs=1e-6)
    assert decide("turn left", DirectionalIntent("turn", "left"), joints, FPS).correct
    assert decide("turn right", DirectionalIntent("turn", "right"), mirror_positions(joints), FPS).correct


def test_straight_walks_name_no_side(straight_walks):
    for joints in straight_walks:
        for kind in INTENT_KINDS:
            decision = decide("x", DirectionalIntent(kind, "left"), joints, FPS)
            assert decision.measured_side is None, (kind, decision.score, decision.measures)
            assert not decision.correct


# ---------------------------------------------------------------------------------------------------------------
# prompts
# ---------------------------------------------------------------------------------------------------------------

def _all_training_captions() -> dict[str, set[str]]:
    captions: dict[str, set[str]] = defaultdict(set)
    for content in CONTENT_PHRASES:
        for style in (None, *STYLE_MANNERS):
            captions[content].update(captions_for_label(content, style, seed=0, count=10**6))
    return captions


def test_training_captions_parse_to_their_content():
    for content, captions in _all_training_captions().items():
        expected = content if content in DIRECTIONAL_CONTENTS else None
        for caption in captions:
            intent = parse_directional_intent(caption)
            assert (intent.content if intent else None) == expected, (content, caption)


def test_paraphrases_are_held_out_and_parse_to_their_intent():
    captions = [caption for group in _all_training_captions().values() for caption in group]
    template_phrases = [phrase for phrases in CONTENT_PHRASES.values() for phrase in phrases]
    assert set(DIRECTIONAL_PARAPHRASES) == set(DIRECTIONAL_CONTENTS)
    prompts = paraphrase_prompts()
    assert len({p for _, p in prompts}) == len(prompts)
    for content, prompt in prompts:
        lowered = prompt.lower()
        assert not any(lowered in caption.lower() for caption in captions), prompt
        assert not any(phrase in lowered for phrase in template_phrases), prompt
        intent = parse_directional_intent(prompt)
        assert intent is not None and intent.content == content, (prompt, intent)
        mirrored = parse_directional_intent(mirror_text(prompt))
        assert mirrored is not None and mirrored.kind == intent.kind and mirrored.side != intent.side, prompt


@pytest.mark.parametrize("prompt", [
    "a person raises both hands", "someone walks forward", "a man turns left and waves with the right hand",
    "a person waves goodbye", "a person kicks", "",
])
def test_prompts_without_a_single_side_are_skipped(prompt):
    assert parse_directional_intent(prompt) is None


def test_negated_actions_are_not_cues():
    assert parse_directional_intent("she side-steps to the left without turning") == DirectionalIntent("sideways",
                                                                                                    "left")
    assert parse_directional_intent("he does not turn and raises his right arm") == DirectionalIntent("raise",
                                                                                                   "right")


def test_report_skips_and_validates(straight_walks):
    joints = straight_walks[0]
    report = directional_accuracy(["someone walks forward", "lift your left arm above your head"],
                                  [joints, joints], fps=FPS)
    assert report.skipped_prompts == ("someone walks forward",)
    assert len(report.decisions) == 1 and report.decisions[0].intent.content == "raise-up-left-hand"
    assert report.overall_accuracy == 0.0  # a straight walk raises no hand
    with pytest.raises(InputTensorError, match="motions"):
        directional_accuracy(["a"], [joints, joints])
    with pytest.raises(KMMError, match=r"motions\[0\].*shape"):
        directional_accuracy(["lift your left arm above your head"], [joints[:, :21]])
    empty = directional_accuracy([], [])
    assert np.isnan(empty.overall_accuracy) and not empty.decisions
