# SPDX-License-Identifier: GPL-3.0-or-later
"""HumanML3D folder layout (read the public fixture, write and read back) and the feature normaliser."""

from __future__ import annotations

import numpy as np
import pytest

from kmm_core.common.errors import InputFileError, KMMError
from kmm_core.humanml3d.dataset_folder import (
    Caption,
    HumanML3DFolder,
    tokenize_caption,
    write_clip,
    write_mean_std,
    write_split,
)
from kmm_core.humanml3d.features import features_to_joints, mirror_features
from kmm_core.humanml3d.normalizer import Normalizer, NormalizerError

SAMPLE = "012314"


@pytest.fixture(scope="module")
def fixture_folder(humanml3d_fixture_dir) -> HumanML3DFolder:
    return HumanML3DFolder(humanml3d_fixture_dir)


# --- reading the public release -----------------------------------------------------------------------------------

def test_reads_the_public_fixture(fixture_folder, humanml3d_fixture_dir):
    features = fixture_folder.load_features(SAMPLE)
    joints = fixture_folder.load_joints(SAMPLE)
    assert features.shape == (len(joints), 263) and joints.shape[1:] == (22, 3)
    assert np.array_equal(features, np.load(humanml3d_fixture_dir / "new_joint_vecs" / f"{SAMPLE}.npy"))
    listed = [line.strip() for line in (humanml3d_fixture_dir / "test.txt").read_text().splitlines() if line.strip()]
    assert fixture_folder.split_names("test") == listed
    assert fixture_folder.clip_names() == [SAMPLE]
    mean, std = fixture_folder.mean_std()
    assert mean.shape == std.shape == (263,)
    assert np.array_equal(std, np.load(humanml3d_fixture_dir / "Std.npy"))


def test_captions_of_a_folder_without_texts_fail_only_when_asked(fixture_folder):
    assert not fixture_folder.has_captions(SAMPLE)
    with pytest.raises(InputFileError, match=rf"texts[/\\]{SAMPLE}\.txt"):
        fixture_folder.load_captions(SAMPLE)


def test_missing_clip_and_split_name_the_file(fixture_folder):
    with pytest.raises(InputFileError, match=r"new_joint_vecs[/\\]999999\.npy.*not found"):
        fixture_folder.load_features("999999")
    with pytest.raises(InputFileError, match=r"nosuchsplit\.txt"):
        fixture_folder.split_names("nosuchsplit")
    with pytest.raises(KMMError, match="clip name"):
        fixture_folder.load_joints("../escape")


# --- writing and reading back -------------------------------------------------------------------------------------

def test_write_read_round_trip(tmp_path, fixture_folder):
    features = fixture_folder.load_features(SAMPLE)
    mirrored = mirror_features(features)
    captions = [
        Caption("a person kicks with the left leg.", start=0.0, end=0.0),
        Caption("Then turns around, waving", tokens=("turn/VERB", "around/ADV"), start=1.5, end=4.25),
        "someone walks forward",
    ]
    write_clip(tmp_path, SAMPLE, fixture_folder.load_joints(SAMPLE), features, captions)
    write_clip(tmp_path, "M" + SAMPLE, None, mirrored, [Caption("a person kicks with the right leg.")])
    write_split(tmp_path, "train", [SAMPLE, "M" + SAMPLE])
    write_split(tmp_path, "val", [])
    write_mean_std(tmp_path, *fixture_folder.mean_std())

    folder = HumanML3DFolder(tmp_path)
    assert folder.split_names("train") == [SAMPLE, "M" + SAMPLE]
    assert folder.split_names("val") == []
    assert np.array_equal(folder.load_features(SAMPLE), features)
    assert np.array_equal(folder.load_joints(SAMPLE), fixture_folder.load_joints(SAMPLE))
    # Without joints the writer stores the recovery, as HumanML3D's new_joints.
    assert np.allclose(folder.load_joints("M" + SAMPLE), features_to_joints(mirrored), atol=1e-6)
    read = folder.load_captions(SAMPLE)
    assert [c.text for c in read] == [c.text if isinstance(c, Caption) else c for c in captions]
    assert read[0].tokens == tokenize_caption(captions[0].text)
    assert read[0].tokens[:2] == ("a/OTHER", "person/OTHER") and read[0].whole_clip
    assert read[1].tokens == ("turn/VERB", "around/ADV") and (read[1].start, read[1].end) == (1.5, 4.25)
    assert read[2].whole_clip
    for got, expected in zip(folder.mean_std(), fixture_folder.mean_std(), strict=True):
        assert np.array_equal(got, expected)


def test_reads_real_humanml3d_caption_lines(tmp_path):
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "000001.txt").write_text(
        "a man kicks something or someone with his left leg.#a/DET man/NOUN kick/VERB something/PRON or/CCONJ "
        "someone/PRON with/ADP his/DET left/ADJ leg/NOUN#0.0#0.0\n"
        "the person does a jump#the/DET person/NOUN do/AUX a/DET jump/NOUN#2.5#nan\n"
    )
    (tmp_path / "texts" / "000002.txt").write_text("a # inside the caption#a/DET#0.0#0.0\n")
    captions = HumanML3DFolder(tmp_path).load_captions("000001")
    assert HumanML3DFolder(tmp_path).load_captions("000002")[0].text == "a # inside the caption"
    assert captions[0].tokens[2] == "kick/VERB" and captions[0].whole_clip
    assert (captions[1].start, captions[1].end) == (2.5, 0.0)


@pytest.mark.parametrize(
    "bad_line, reason",
    [("no separators at all", "caption#tokens#start#end"), ("walks#walk/VERB#zero#1.0", "start"),
     ("walks#walk#0.0#0.0", "word/TAG"), ("#walk/VERB#0.0#0.0", "empty caption"),
     ("walks#walk/VERB#3.0#1.0", "before start")],
)
def test_malformed_caption_line_names_file_and_line(tmp_path, bad_line, reason):
    (tmp_path / "texts").mkdir()
    path = tmp_path / "texts" / "clip.txt"
    path.write_text(f"a person walks#a/DET person/NOUN walk/VERB#0.0#0.0\n{bad_line}\n")
    with pytest.raises(InputFileError) as info:
        HumanML3DFolder(tmp_path).load_captions("clip")
    assert info.value.path == str(path) and info.value.line == 2
    assert f"{path}, line 2" in str(info.value) and reason in str(info.value)


def test_writer_rejects_what_the_layout_cannot_hold(tmp_path, fixture_folder):
    features = fixture_folder.load_features(SAMPLE)
    with pytest.raises(KMMError, match="one frame per feature row"):
        write_clip(tmp_path, "x", np.zeros((len(features) + 1, 22, 3)), features)
    with pytest.raises(KMMError, match="line break"):
        write_clip(tmp_path, "x", None, features, ["two\nlines"])
    with pytest.raises(KMMError, match="contains '#'"):
        write_clip(tmp_path, "x", None, features, ["walks # fast"])
    with pytest.raises(KMMError, match="263"):
        write_clip(tmp_path, "x", None, features[:, :200])
    with pytest.raises(KMMError, match="clip name"):
        write_split(tmp_path, "train", ["a/b"])
    assert not (tmp_path / "new_joint_vecs").exists()


# --- normaliser -----------------------------------------------------------------------------------------------------

def test_normalizer_round_trip_with_fixture_statistics(humanml3d_fixture_dir, fixture_folder, tmp_path):
    normalizer = Normalizer.from_folder(humanml3d_fixture_dir)
    features = fixture_folder.load_features(SAMPLE)
    normalized = normalizer.normalize(features)
    assert normalized.dtype == np.float32
    assert np.allclose(normalized, (features - np.load(humanml3d_fixture_dir / "Mean.npy"))
                       / np.load(humanml3d_fixture_dir / "Std.npy"), atol=1e-5)
    assert np.abs(normalizer.denormalize(normalized) - features).max() < 1e-5

    torch = pytest.importorskip("torch")
    tensor = torch.tensor(features, dtype=torch.float64)[None]
    normalized_t = normalizer.normalize(tensor)
    assert isinstance(normalized_t, torch.Tensor) and normalized_t.dtype == torch.float64
    assert np.allclose(normalized_t[0].numpy(), normalized, atol=1e-5)
    assert torch.allclose(normalizer.denormalize(normalized_t), tensor, atol=1e-10)

    normalizer.save(tmp_path)
    again = Normalizer.from_folder(tmp_path)
    assert np.array_equal(again.mean.astype(np.float32), normalizer.mean.astype(np.float32))


def test_normalizer_guards_zero_std_and_bad_statistics(tmp_path):
    normalizer = Normalizer(np.array([1.0, 2.0]), np.array([0.0, 2.0]))
    assert np.allclose(normalizer.normalize(np.array([[1.0, 4.0]])), [[0.0, 1.0]])
    with pytest.raises(NormalizerError, match="negative"):
        Normalizer(np.zeros(2), np.array([1.0, -1.0]))
    with pytest.raises(NormalizerError, match="channels"):
        normalizer.normalize(np.zeros((3, 5)))
    with pytest.raises(InputFileError, match="Mean.npy"):
        Normalizer.from_folder(tmp_path)


def test_fit_groups_std_like_humanml3d(fixture_folder):
    features = fixture_folder.load_features(SAMPLE)
    fitted = Normalizer.fit([features, mirror_features(features)])
    stacked = np.concatenate([features, mirror_features(features)]).astype(np.float64)
    assert np.allclose(fitted.mean, stacked.mean(axis=0))
    ric_std = stacked[:, 4:67].std(axis=0).mean()
    assert np.allclose(fitted.raw_std[4:67], ric_std)
    assert len(np.unique(fitted.raw_std[67:193])) == 1
