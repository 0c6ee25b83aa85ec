# SPDX-License-Identifier: GPL-3.0-or-later
"""SMPL export: fitting the real HumanML3D fixture motion to a synthetic SMPL model file (real models cannot be
shipped), SMPL forward kinematics (NumPy and, when installed, smplx) reproducing our joints, the mesh, bad model
files, and `kmm generate --smpl-model`."""

from __future__ import annotations

import numpy as np
import pytest
from smpl_synthetic_model import NUM_SMPL_JOINTS, synthetic_rest_joints, write_synthetic_smpl_model

from kmm_core.cli import EXIT_BAD_ARGUMENTS, main
from kmm_core.common.errors import KMMError
from kmm_core.motion.motion_result import MotionResult
from kmm_core.motion.rotations import axis_angle_to_matrix
from kmm_core.motion_formats.smpl_export import (
    Y_UP_TO_Z_UP,
    SMPLModelError,
    SMPLUnavailableError,
    export_smpl,
    fit_smpl_motion,
    load_smpl_model,
    smpl_joints,
    smpl_mesh,
    smplx_available,
)

needs_smplx = pytest.mark.skipif(not smplx_available(), reason="smplx is not installed (pip install smplx)")
UP_TURN = {"y": np.eye(3), "z": Y_UP_TO_Z_UP}


@pytest.fixture(scope="module")
def fixture_motion(humanml3d_fixture_dir) -> MotionResult:
    """The real HumanML3D clip 012314 (170 frames at 20 fps) as a MotionResult."""
    return MotionResult.from_joints(np.load(humanml3d_fixture_dir / "new_joints" / "012314.npy"), 20.0)


@pytest.fixture(scope="module", params=["tpose", "apose"])
def model_file(request, tmp_path_factory):
    return write_synthetic_smpl_model(tmp_path_factory.mktemp("smpl") / f"SMPL_{request.param}.npz", request.param)


def test_model_file_loads_with_smpl_layout(model_file):
    model = load_smpl_model(model_file)
    assert model.num_joints == NUM_SMPL_JOINTS and model.model_type == "smpl"
    assert model.parents[0] == -1 and model.parents[22:] == (20, 21)
    rest_pose = "apose" if "apose" in model_file.name else "tpose"
    np.testing.assert_allclose(model.rest_joints(), synthetic_rest_joints(rest_pose), atol=1e-12)
    assert not np.allclose(model.rest_joints(np.full(10, 0.5)), model.rest_joints())  # betas reshape the rest pose


@pytest.mark.parametrize("up_axis", ["z", "y"])
def test_fitted_pose_reproduces_joints_by_smpl_forward_kinematics(fixture_motion, model_file, up_axis):
    model = load_smpl_model(model_file)
    fitted = fit_smpl_motion(fixture_motion, model, up_axis=up_axis)
    assert fitted.poses.shape == (170, 72) and fitted.trans.shape == (170, 3) and fitted.betas.shape == (10,)
    np.testing.assert_array_equal(fitted.poses[:, 66:], 0.0)  # the hands stay at rest
    posed = smpl_joints(model, fitted.poses, fitted.trans, fitted.betas)
    expected = fixture_motion.joints.astype(np.float64) @ UP_TURN[up_axis].T
    error = np.linalg.norm(posed[:, :22] - expected, axis=-1)
    assert error.max() < 1e-3, f"largest joint error {error.max() * 1000:.3f} mm"  # bone lengths equal: < 1 mm
    if up_axis == "z":  # Z up: the height of HumanML3D's y (feet near the floor at z = 0, head above)
        assert posed[:, 15, 2].mean() > 1.3 and abs(posed[:, [10, 11], 2].min()) < 0.1


def test_rest_pose_is_re_expressed(fixture_motion, tmp_path):
    """The same motion on a T-pose and an A-pose model: different shoulder rotations, the same joints."""
    tpose = load_smpl_model(write_synthetic_smpl_model(tmp_path / "t.npz", "tpose"))
    apose = load_smpl_model(write_synthetic_smpl_model(tmp_path / "a.npz", "apose"))
    on_t, on_a = fit_smpl_motion(fixture_motion, tpose), fit_smpl_motion(fixture_motion, apose)
    shoulders = [3 * 16 + k for k in range(6)]  # left and right shoulder axis-angles
    difference = np.linalg.norm(on_t.poses[:, shoulders] - on_a.poses[:, shoulders], axis=-1)
    assert difference.min() > 0.3  # about 45 degrees of rest-pose difference, every frame
    np.testing.assert_allclose(smpl_joints(tpose, on_t.poses, on_t.trans)[:, :22],
                               smpl_joints(apose, on_a.poses, on_a.trans)[:, :22], atol=1e-3)


def test_fit_with_betas_lands_on_the_shaped_skeleton(fixture_motion, model_file):
    """With betas the bone lengths differ from the motion's: the pose still follows (pelvis exact, joints close)."""
    model = load_smpl_model(model_file)
    betas = np.linspace(-1.0, 1.0, 10)
    fitted = fit_smpl_motion(fixture_motion, model, betas=betas, up_axis="y")
    posed = smpl_joints(model, fitted.poses, fitted.trans, betas)
    np.testing.assert_allclose(posed[:, 0], fixture_motion.joints[:, 0], atol=1e-6)
    assert np.linalg.norm(posed[:, :22] - fixture_motion.joints, axis=-1).max() < 0.1


def test_smplh_model_gets_156_pose_values_with_flat_hands(fixture_motion, tmp_path):
    model = load_smpl_model(write_synthetic_smpl_model(tmp_path / "smplh.npz", "apose", num_betas=16,
                                                       model_type="smplh"))
    assert model.model_type == "smplh" and model.num_joints == 52
    fitted = fit_smpl_motion(fixture_motion, model)
    assert fitted.poses.shape == (170, 156) and fitted.betas.shape == (16,) and fitted.model_type == "smplh"
    np.testing.assert_array_equal(fitted.poses[:, 66:], 0.0)
    posed = smpl_joints(model, fitted.poses, fitted.trans)
    assert np.linalg.norm(posed[:, :22] - fixture_motion.joints @ Y_UP_TO_Z_UP.T, axis=-1).max() < 1e-3
    # Fingers at rest follow their wrist rigidly: the knuckle stays 3 cm from the left wrist in every frame.
    assert np.allclose(np.linalg.norm(posed[:, 22] - posed[:, 20], axis=-1), 0.03)
    if smplx_available():
        _, joints = smpl_mesh(model, fitted.poses, fitted.trans)
        assert np.abs(joints - posed).max() < 1e-4


def test_saved_file_has_amass_layout(fixture_motion, model_file, tmp_path):
    path = tmp_path / "clip.smpl.npz"
    fitted = export_smpl(fixture_motion, model_file, path, gender="female", mesh=False)
    with np.load(path, allow_pickle=False) as saved:
        assert saved["poses"].shape == (170, 72) and saved["trans"].shape == (170, 3)
        np.testing.assert_array_equal(saved["poses"], fitted.poses)
        assert str(saved["gender"]) == "female" and float(saved["mocap_framerate"]) == 20.0
        assert str(saved["up_axis"]) == "z" and str(saved["surface_model_type"]) == "smpl"
        np.testing.assert_array_equal(saved["root_orient"], fitted.poses[:, :3])
        assert saved["pose_body"].shape == (170, 63) and "vertices" not in saved.files


@needs_smplx
def test_smplx_body_model_gives_the_same_joints(fixture_motion, model_file):
    """smplx's own SMPL class, built from the model file's arrays, poses the joints where our FK and the motion do."""
    import smplx
    import torch
    from smplx.utils import Struct

    model = load_smpl_model(model_file)
    betas = np.linspace(-0.5, 0.5, 10)
    fitted = fit_smpl_motion(fixture_motion, model, betas=betas)
    with np.load(model_file, allow_pickle=False) as arrays:
        data = Struct(**{key: arrays[key] for key in arrays.files})
    face_vertices = {name: 0 for name in ("nose", "reye", "leye", "rear", "lear")}  # toy mesh: no face landmarks
    body = smplx.SMPL(str(model_file), data_struct=data, vertex_ids=face_vertices, use_hands=False,
                      use_feet_keypoints=False, num_betas=10, batch_size=fitted.num_frames)
    poses = torch.as_tensor(fitted.poses, dtype=torch.float32)
    with torch.no_grad():
        output = body(global_orient=poses[:, :3], body_pose=poses[:, 3:],
                      betas=torch.as_tensor(betas, dtype=torch.float32)[None].expand(fitted.num_frames, -1),
                      transl=torch.as_tensor(fitted.trans, dtype=torch.float32))
    joints = output.joints[:, :NUM_SMPL_JOINTS].numpy()
    ours = smpl_joints(model, fitted.poses, fitted.trans, betas)
    assert np.abs(joints - ours).max() < 1e-4
    vertices, _ = smpl_mesh(model, fitted.poses, fitted.trans, betas)
    assert np.abs(output.vertices.numpy() - vertices).max() < 1e-4
    without_betas = fit_smpl_motion(fixture_motion, model)
    posed = smpl_joints(model, without_betas.poses, without_betas.trans)
    assert np.linalg.norm(posed[:, :22] - fixture_motion.joints @ Y_UP_TO_Z_UP.T, axis=-1).max() < 1e-3


@needs_smplx
def test_mesh_follows_the_motion(fixture_motion, model_file, tmp_path):
    """Each tetrahedron of the toy mesh is skinned rigidly to its joint, and its pose blend shapes sum to zero: its
    centroid must sit on the motion's joint."""
    path = tmp_path / "mesh.smpl.npz"
    fitted = export_smpl(fixture_motion, model_file, path)
    with np.load(path, allow_pickle=False) as saved:
        vertices, faces = saved["vertices"], saved["faces"]
    assert vertices.shape == (170, 4 * NUM_SMPL_JOINTS, 3) and vertices.dtype == np.float32
    assert faces.shape == (4 * NUM_SMPL_JOINTS, 3)
    centroids = vertices.reshape(170, NUM_SMPL_JOINTS, 4, 3).mean(axis=2)
    expected = fixture_motion.joints @ Y_UP_TO_Z_UP.T
    assert np.linalg.norm(centroids[:, :22] - expected, axis=-1).max() < 1e-3
    # Tetrahedra turn with their joints: the left elbow's is the rest one under the elbow's global rotation.
    model = load_smpl_model(model_file)
    rotations = axis_angle_to_matrix(fitted.poses.reshape(170, NUM_SMPL_JOINTS, 3))
    elbow = rotations[:, 0]
    for joint in (3, 6, 9, 13, 16, 18):  # the chain pelvis -> left elbow
        elbow = elbow @ rotations[:, joint]
    rest_shape = model.v_template[72:76] - model.v_template[72:76].mean(axis=0)
    posed_shape = vertices[:, 72:76] - centroids[:, 18:19]
    pose_blend_room = 0.008  # pose blend shapes move each vertex by a few millimetres; a wrong rotation by ~3 cm
    assert np.abs(posed_shape - np.einsum("tij,vj->tvi", elbow, rest_shape)).max() < pose_blend_room


def test_mesh_without_smplx_says_how_to_install(model_file, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "smplx", None)  # makes `import smplx` fail as when it is not installed
    monkeypatch.setitem(sys.modules, "smplx.lbs", None)
    model = load_smpl_model(model_file)
    with pytest.raises(SMPLUnavailableError, match=r"pip install smplx"):
        smpl_mesh(model, np.zeros((1, 72)), np.zeros((1, 3)))


@pytest.mark.parametrize(("change", "key"), [
    ({"drop": ("J_regressor",)}, "J_regressor"),
    ({"drop": ("kintree_table", "weights")}, "weights"),
    ({"replace": {"weights": np.zeros((96, 23))}}, "weights"),
    ({"replace": {"kintree_table": np.array([[-1, 0, 1], [0, 1, 2]])}}, "kintree_table"),
    ({"replace": {"kintree_table": np.array([[2**32 - 1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16,
                                               17, 18, 19, 21, 20], list(range(24))])}}, None),
    ({"replace": {"v_template": np.full((96, 3), np.nan)}}, "v_template"),
    ({"replace": {"f": np.array([[0, 1, 500]])}}, "f"),
])
def test_malformed_model_file_names_file_and_key(tmp_path, change, key):
    path = write_synthetic_smpl_model(tmp_path / "bad_model.npz", **change)
    if key is None:  # a hand on the other wrist is still a valid tree: loads
        assert load_smpl_model(path).parents[22:] == (21, 20)
        return
    with pytest.raises(SMPLModelError) as caught:
        load_smpl_model(path)
    assert str(path) in str(caught.value) and key in str(caught.value) and caught.value.key == key


def test_missing_unreadable_and_pickle_model_files(tmp_path):
    with pytest.raises(SMPLModelError, match="not found") as caught:
        load_smpl_model(tmp_path / "SMPL_NEUTRAL.npz")
    assert "SMPL_NEUTRAL.npz" in str(caught.value)
    (tmp_path / "SMPL_MALE.pkl").write_bytes(b"\x80\x02}q\x00.")
    with pytest.raises(SMPLModelError, match=r"SMPL_MALE\.pkl.*convert"):
        load_smpl_model(tmp_path / "SMPL_MALE.pkl")
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(SMPLModelError, match=r"broken\.npz.*not a readable"):
        load_smpl_model(tmp_path / "broken.npz")
    np.savez(tmp_path / "objects.npz", **{key: np.array([None], dtype=object) for key in (
        "v_template", "f", "J_regressor", "weights", "kintree_table", "shapedirs", "posedirs")})
    with pytest.raises(SMPLModelError, match=r"objects\.npz: v_template: cannot be read without pickle"):
        load_smpl_model(tmp_path / "objects.npz")


def test_bad_fit_arguments(fixture_motion, model_file):
    model = load_smpl_model(model_file)
    with pytest.raises(KMMError, match="up_axis"):
        fit_smpl_motion(fixture_motion, model, up_axis="x")
    with pytest.raises(KMMError, match="gender"):
        fit_smpl_motion(fixture_motion, model, gender="robot")
    with pytest.raises(KMMError, match="betas"):
        fit_smpl_motion(fixture_motion, model, betas=np.zeros(11))


def test_cli_bad_smpl_model_fails_before_the_model_loads(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "SMPL_NEUTRAL.npz"
    code = main(["generate", "a person walks", "--seconds", "1", "-o", str(tmp_path / "out.bvh"),
                 "--smpl-model", str(missing), "--checkpoint", str(tmp_path / "no_bundle"), "--quiet"])
    assert code == EXIT_BAD_ARGUMENTS
    assert f"{missing}: model file not found" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_generate_writes_smpl_file(tiny_bundle, tmp_path):
    model = write_synthetic_smpl_model(tmp_path / "SMPL_NEUTRAL.npz")
    code = main(["generate", "a person walks forward", "--seconds", "1", "--fps", "20", "-o", str(tmp_path / "w.bvh"),
                 "--smpl-model", str(model), "--checkpoint", str(tiny_bundle), "--steps", "2", "--seed", "0",
                 "--variations", "2", "--device", "cpu", "--quiet"])
    assert code == 0
    for variation in range(2):
        with np.load(tmp_path / f"w_{variation}.smpl.npz", allow_pickle=False) as saved:
            assert saved["poses"].shape == (20, 72) and float(saved["mocap_framerate"]) == 20.0
            assert ("vertices" in saved.files) == smplx_available()
