# SPDX-License-Identifier: GPL-3.0-or-later
"""Which decoding a prompt gets follows what the recorded clips nearest to it do (kmm_core/humanml3d/motion_kind.py,
kmm_core/generation/prompt_kinds.py), never a list of English words: real Bandai-Namco clips measured as walks,
turning walks and standing waves; the shipped model's prompts phrased without "walk" decoded as walks."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from kmm_core.bundle.vocabulary import read_vocabulary, vocabulary_from_dict
from kmm_core.common.errors import InputFileError
from kmm_core.generation.prompt_kinds import prompt_kinds
from kmm_core.humanml3d.motion_kind import MotionKind, clip_motion_kind, mean_kind

# Prompts an animator types for a walk, none with the word "walk" (issue 67: these were read as standing).
WALK_PARAPHRASES = ("a man makes his way across the room", "someone wanders ahead slowly",
                    "a woman heads straight ahead on foot", "a person ambles forward", "a man strolls along")


def _bundle_without_motion(tiny_bundle, folder):
    """A copy of the tiny bundle whose vocabulary.json has no per-action motion (as before it was measured)."""
    bundle = folder / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    document = json.loads((bundle / "vocabulary.json").read_text())
    for action in document["actions"]:
        action.pop("motion")
    (bundle / "vocabulary.json").write_text(json.dumps(document))
    return bundle, document


def _clips_of(prepared_dataset, content: str) -> list[np.ndarray]:
    import csv

    rows = list(csv.DictReader((prepared_dataset / "index.csv").open()))
    return [np.load(prepared_dataset / "new_joint_vecs" / f"{row['name']}.npy") for row in rows
            if row["dataset"] == "bandai-namco-2" and row["content"] == content and row["mirrored"] == "0"]


@pytest.mark.parametrize(("content", "expected"), [
    ("walk", MotionKind(walking=1.0, steady=1.0)), ("run", MotionKind(walking=1.0, steady=1.0)),
    ("walk-turn-left", MotionKind(walking=1.0)), ("wave-right-hand", MotionKind(standing=1.0)),
    ("raise-up-both-hands", MotionKind(standing=1.0))])
def test_real_clips_are_measured_by_their_motion(prepared_dataset, content, expected):
    """Real Bandai-Namco takes (kmm-train prepare's features of its second dataset): walks and runs walk steadily, a walk with a 90-degree
    turn walks but not on a steady heading, waves and raised hands stand."""
    clips = _clips_of(prepared_dataset, content)
    assert len(clips) >= 2
    kinds = [clip_motion_kind(clip) for clip in clips]
    assert mean_kind(kinds) == expected, (content, kinds)


def test_a_squat_is_not_standing_and_a_held_pose_does_not_walk(prepared_dataset):
    """The same real walk, its pelvis lowered to a squat for the whole clip, no longer stands nor walks upright; the
    walk's first frame held still stands."""
    from kmm_core.humanml3d.features import ROOT_HEIGHT, ROOT_XZ_VELOCITY, ROOT_YAW_VELOCITY

    walk = _clips_of(prepared_dataset, "walk")[0].copy()
    still = np.repeat(walk[:1], len(walk), axis=0)
    still[:, ROOT_XZ_VELOCITY] = 0.0
    still[:, ROOT_YAW_VELOCITY] = 0.0
    assert clip_motion_kind(still) == MotionKind(standing=1.0)
    squat = still.copy()
    squat[:, ROOT_HEIGHT] *= 0.4
    assert clip_motion_kind(squat) == MotionKind()


def test_the_vocabulary_stores_each_actions_motion(prepared_dataset, tiny_bundle, tmp_path):
    """`kmm-train vocabulary` measures each action's clips; `--motion-only` measures them again without touching the
    captions or their embeddings, and refuses a folder with no training clip of the model's actions without writing;
    a share outside [0, 1] is refused naming the action."""
    from kmm_core.training.bundle_vocabulary import add_action_motion
    from kmm_core.training.cli import main as train_main

    vocabulary = read_vocabulary(tiny_bundle)
    motion = vocabulary.action_motion()
    assert motion["bandai-namco-2/walk"].walking == 1.0 and motion["bandai-namco-2/wave-left-hand"].standing == 1.0
    bundle, document = _bundle_without_motion(tiny_bundle, tmp_path)
    assert read_vocabulary(bundle).action_motion() == {}
    assert train_main(["vocabulary", "--dataset", str(prepared_dataset), "--bundle", str(bundle),
                       "--motion-only"]) == 0
    again = read_vocabulary(bundle)
    assert again.action_motion() == motion and again.train_captions == vocabulary.train_captions
    from kmm_core.bundle.model_bundle import ModelBundle
    from kmm_core.bundle.weight_checksums import verify_vocabulary_files

    assert verify_vocabulary_files(bundle, ModelBundle.load(bundle, device="cpu").config) >= 1  # checksums rewritten
    elsewhere = tmp_path / "val-only"  # a prepared folder with no training clip of the model's actions
    (elsewhere / "new_joint_vecs").mkdir(parents=True)
    index = (prepared_dataset / "index.csv").read_text().splitlines()
    (elsewhere / "index.csv").write_text("\n".join([index[0], *(line for line in index[1:] if ",val," in line)]))
    before = (bundle / "vocabulary.json").read_bytes()
    with pytest.raises(InputFileError, match=r"val-only/index.csv.*no training clip"):
        add_action_motion(bundle, elsewhere)
    assert (bundle / "vocabulary.json").read_bytes() == before  # nothing written
    document["actions"][0]["motion"] = {"walking": 1.5, "steady": 0.0, "standing": 0.0}
    with pytest.raises(InputFileError, match=r"actions\[0\].*from 0 to 1"):
        vocabulary_from_dict(document, "vocabulary.json")


def test_walks_phrased_without_walk_are_decoded_as_walks(shipped_bundle):
    """The shipped model: every paraphrase of a walk gets the walking share "a person walks forward" gets (the
    walking decoder, a walk's guidance and gait-cycle pull), a wave stands, a walk that turns is not steady, a kick
    and a squat are neither."""
    reference, *paraphrases = prompt_kinds(shipped_bundle, ["a person walks forward", *WALK_PARAPHRASES])
    assert reference.walking > 0.95 and reference.standing == 0.0
    for prompt, kind in zip(WALK_PARAPHRASES, paraphrases, strict=True):
        assert kind.walking > 0.95 and kind.standing == 0.0, (prompt, kind)
    wave, turn, kick, squat = prompt_kinds(shipped_bundle, [
        "a man waves both hands above his head", "a person walks forward and turns left",
        "a person kicks with the right leg", "a person squats down"])
    assert wave.standing > 0.95 and wave.walking == 0.0
    assert turn.walking > 0.95 and turn.steady < 0.05
    assert max(kick.walking, kick.standing, squat.walking, squat.standing) < 0.1


def test_a_bundle_without_action_motion_decodes_every_prompt_alike(tiny_bundle, tmp_path):
    """A bundle whose vocabulary predates the measure: no prompt gets a walking or standing treatment."""
    from kmm_core.bundle.model_bundle import ModelBundle
    from kmm_core.training.bundle_writer import record_checksums

    bundle, _document = _bundle_without_motion(tiny_bundle, tmp_path)
    record_checksums(bundle)
    kinds = prompt_kinds(ModelBundle.load(bundle, device="cpu"), ["a person walks forward", "a person waves"])
    assert kinds == [MotionKind(), MotionKind()]
