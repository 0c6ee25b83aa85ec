# SPDX-License-Identifier: GPL-3.0-or-later
"""SMPL-family export: pose parameters (AMASS-style .npz) fitted to a MotionResult, and the body mesh via `smplx`.

The SMPL, SMPL-H and SMPL-X model files are licensed by their owners and never shipped: the user passes their own
`.npz` model file.  Only `.npz` model files are read, with `allow_pickle=False` (the original SMPL `.pkl` files need
pickle and chumpy; see docs/smpl.md for a one-time conversion).

Fitting needs NumPy only.  SMPL body joints 0-21 are our canonical 22 joints in the same order, and the model's
rest pose lives in the same axes as HumanML3D (Y up, facing +Z, left +X).  Our joint positions are re-expressed as
rotations relative to the model's own rest pose by running our inverse kinematics with the model's rest bone
offsets (J_regressor @ shaped template); the joints after 21 (SMPL's hands, SMPL-H fingers, SMPL-X jaw/eyes/fingers)
keep their rest orientation (zero axis-angle).  With the model's bone lengths equal to the motion's, SMPL forward
kinematics reproduces the motion's joints; otherwise the pose is the same but the limbs have the model's lengths.

The mesh (vertices per frame) is the `smplx` package's linear blend skinning run on the same parameters: it needs
the optional `smpl` extra (`pip install -e '.[smpl]'` in a checkout, or `pip install smplx`, which brings torch-based `smplx`), imported lazily so that
this module stays torch-free.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..common.atomic_write import write_npz_atomic
from ..common.errors import KMMError, open_npz_archive
from ..motion.kinematics import inverse_kinematics
from ..motion.rotations import axis_angle_to_matrix, matrix_to_axis_angle, quat_to_axis_angle, quat_to_matrix
from ..motion.skeleton import NUM_JOINTS, PARENTS

# Arrays an SMPL-family .npz model file must hold (the layout of the official files).
MODEL_KEYS = ("v_template", "f", "J_regressor", "weights", "kintree_table", "shapedirs", "posedirs")
# Model type by number of joints: SMPL 24 (body + 2 hands), SMPL-H 52 (body + 2 x 15 fingers), SMPL-X 55 (+ jaw, eyes).
MODEL_TYPES = {24: "smpl", 52: "smplh", 55: "smplx"}
DEFAULT_NUM_BETAS = {"smpl": 10, "smplh": 16, "smplx": 16}
GENDERS = ("neutral", "male", "female")

# Export axes.  "y": the model's native frame, which is HumanML3D's (Y up, facing +Z).  "z": Z up as AMASS and
# Blender use, with the same turn the project uses for Blender everywhere: (x, y, z) -> (x, -z, y) (+90 degrees
# about X), so the character faces -Y.
UP_AXES = ("z", "y")
Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


class SMPLModelError(KMMError, ValueError):
    """An SMPL-family model file is missing, unreadable or malformed: names the file and, where known, the key."""

    def __init__(self, reason: str, *, path: object, key: str | None = None):
        self.reason = reason
        self.path = str(path)
        self.key = key
        super().__init__(": ".join(part for part in (self.path, key, reason) if part is not None))


class SMPLUnavailableError(KMMError, RuntimeError):
    """The optional `smplx` package (extra `smpl`) is needed for the mesh but is not installed."""


@dataclass(eq=False)
class SMPLModel:
    """The arrays of one SMPL-family model file that fitting and skinning use (float64, as read)."""

    path: Path
    v_template: np.ndarray     # (V, 3) rest vertices, metres, Y up
    faces: np.ndarray          # (F, 3) vertex indices
    J_regressor: np.ndarray    # (J, V) joint locations as weighted sums of vertices
    weights: np.ndarray        # (V, J) skinning weights
    parents: tuple[int, ...]   # (J,) parent of each joint, -1 for the root
    shapedirs: np.ndarray      # (V, 3, B) shape blend shapes (B >= number of betas used)
    posedirs: np.ndarray       # (V, 3, 9 * (J - 1)) pose blend shapes

    @property
    def num_joints(self) -> int:
        return len(self.parents)

    @property
    def model_type(self) -> str:
        return MODEL_TYPES.get(self.num_joints, f"smpl-family ({self.num_joints} joints)")

    def check_betas(self, betas: np.ndarray | None) -> np.ndarray:
        """Betas as a 1-D float64 array: zeros of the type's usual length by default; at most shapedirs' length."""
        available = self.shapedirs.shape[-1]
        if betas is None:
            return np.zeros(min(available, DEFAULT_NUM_BETAS.get(self.model_type, 10)))
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or not 1 <= betas.shape[0] <= available or not np.all(np.isfinite(betas)):
            raise KMMError(f"betas must be 1 to {available} finite numbers for {self.path}, got shape {betas.shape}")
        return betas

    def rest_joints(self, betas: np.ndarray | None = None) -> np.ndarray:
        """(J, 3) joint locations of the shaped rest pose: J_regressor @ (v_template + shapedirs . betas)."""
        betas = self.check_betas(betas)
        shaped = self.v_template + self.shapedirs[:, :, : betas.shape[0]] @ betas
        return self.J_regressor @ shaped

    def rest_offsets(self, betas: np.ndarray | None = None) -> np.ndarray:
        """(J, 3) rest vectors from each joint's parent to the joint (the root's is zero)."""
        joints = self.rest_joints(betas)
        offsets = np.zeros_like(joints)
        for joint, parent in enumerate(self.parents):
            if parent >= 0:
                offsets[joint] = joints[joint] - joints[parent]
        return offsets


def load_smpl_model(path: str | Path) -> SMPLModel:
    """Read and check an SMPL / SMPL-H / SMPL-X `.npz` model file (no pickle).  Raises SMPLModelError naming the
    file and the offending key."""
    path = Path(path)
    if not path.is_file():
        raise SMPLModelError("model file not found", path=path)
    if path.suffix.lower() == ".pkl":
        raise SMPLModelError("SMPL .pkl model files need pickle (and chumpy) and are not read; convert the model "
                             "once to .npz (docs/smpl.md) or use the .npz files SMPL-H / SMPL-X ship", path=path)
    archive = open_npz_archive(path, "model file", SMPLModelError)
    arrays: dict[str, np.ndarray] = {}
    with archive:
        missing = [key for key in MODEL_KEYS if key not in archive.files]
        if missing:
            raise SMPLModelError(f"missing key(s) {', '.join(missing)}; an SMPL-family model file holds "
                                 f"{', '.join(MODEL_KEYS)}", path=path, key=missing[0])
        for key in MODEL_KEYS:
            try:
                arrays[key] = archive[key]
            except ValueError as exc:  # object arrays (e.g. a scipy sparse matrix) need pickle, which we refuse
                raise SMPLModelError(f"cannot be read without pickle ({exc}); store it as a dense array",
                                     path=path, key=key) from None
            except (OSError, zipfile.BadZipFile, EOFError) as exc:
                raise SMPLModelError(f"damaged entry ({exc})", path=path, key=key) from None
            if arrays[key].dtype.kind not in "fiu":
                raise SMPLModelError(f"must hold numbers, got dtype {arrays[key].dtype}", path=path, key=key)
    return _check_model(path, arrays)


def _check_model(path: Path, arrays: dict[str, np.ndarray]) -> SMPLModel:
    def fail(key: str, reason: str) -> SMPLModelError:
        return SMPLModelError(reason, path=path, key=key)

    template = arrays["v_template"].astype(np.float64)
    if template.ndim != 2 or template.shape[1] != 3 or template.shape[0] < 1:
        raise fail("v_template", f"expected shape (V, 3), got {template.shape}")
    num_vertices = template.shape[0]
    kintree = arrays["kintree_table"]
    if kintree.ndim != 2 or kintree.shape[0] != 2 or kintree.shape[1] < NUM_JOINTS:
        raise fail("kintree_table", f"expected shape (2, J) with J >= {NUM_JOINTS}, got {kintree.shape}")
    num_joints = kintree.shape[1]
    parents = [-1] + [int(p) for p in kintree[0, 1:]]  # the root's entry is -1 or 2**32 - 1 depending on the file
    for joint, parent in enumerate(parents[1:], start=1):
        if not 0 <= parent < joint:
            raise fail("kintree_table", f"joint {joint} has parent {parent}; parents must come before children")
    if tuple(parents[:NUM_JOINTS]) != PARENTS:
        raise fail("kintree_table", f"the first {NUM_JOINTS} parents {parents[:NUM_JOINTS]} are not SMPL's body "
                                    f"tree {list(PARENTS)}: not an SMPL-family model")
    expected = {"f": (None, 3), "J_regressor": (num_joints, num_vertices), "weights": (num_vertices, num_joints),
                "shapedirs": (num_vertices, 3, None), "posedirs": (num_vertices, 3, 9 * (num_joints - 1))}
    for key, shape in expected.items():
        value = arrays[key]
        if value.ndim != len(shape) or any(n is not None and n != m for n, m in zip(shape, value.shape, strict=True)):
            wanted = "(" + ", ".join("any" if n is None else str(n) for n in shape) + ")"
            raise fail(key, f"expected shape {wanted} for {num_vertices} vertices and {num_joints} joints, "
                            f"got {value.shape}")
    faces = arrays["f"].astype(np.int64)
    if faces.size and (faces.min() < 0 or faces.max() >= num_vertices):
        raise fail("f", f"face indices must lie in [0, {num_vertices}), got [{faces.min()}, {faces.max()}]")
    if arrays["shapedirs"].shape[2] < 1:
        raise fail("shapedirs", "has no shape components")
    for key in ("v_template", "J_regressor", "weights", "shapedirs", "posedirs"):
        if not np.all(np.isfinite(arrays[key])):
            raise fail(key, "contains NaN or infinite values")
    return SMPLModel(path=path, v_template=template, faces=faces,
                     J_regressor=arrays["J_regressor"].astype(np.float64),
                     weights=arrays["weights"].astype(np.float64), parents=tuple(parents),
                     shapedirs=arrays["shapedirs"].astype(np.float64), posedirs=arrays["posedirs"].astype(np.float64))


@dataclass(eq=False)
class SMPLMotion:
    """SMPL-family pose parameters of a motion, in AMASS's layout (see `to_arrays`)."""

    poses: np.ndarray          # (T, 3 J) axis-angle per joint, joint 0 = global orientation
    trans: np.ndarray          # (T, 3) translation added to every joint and vertex
    betas: np.ndarray          # (B,) shape coefficients the pose was fitted for
    fps: float
    gender: str = "neutral"
    up_axis: str = "z"
    model_type: str = "smpl"
    vertices: np.ndarray | None = None   # (T, V, 3) float32 mesh, when computed
    faces: np.ndarray | None = None      # (F, 3) of the mesh

    @property
    def num_frames(self) -> int:
        return int(self.poses.shape[0])

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The .npz arrays: AMASS's `poses`, `trans`, `betas`, `gender`, `mocap_framerate` (plus SMPL-X AMASS's
        `mocap_frame_rate`, `root_orient`, `pose_body`, `surface_model_type`), and `up_axis`; `vertices` and `faces`
        when the mesh was computed."""
        arrays = {
            "poses": self.poses.astype(np.float64),
            "trans": self.trans.astype(np.float64),
            "betas": self.betas.astype(np.float64),
            "gender": np.array(self.gender),
            "mocap_framerate": np.array(self.fps, dtype=np.float64),
            "mocap_frame_rate": np.array(self.fps, dtype=np.float64),
            "root_orient": self.poses[:, :3].astype(np.float64),
            "pose_body": self.poses[:, 3:3 * NUM_JOINTS].astype(np.float64),
            "surface_model_type": np.array(self.model_type),
            "up_axis": np.array(self.up_axis),
        }
        if self.vertices is not None:
            arrays["vertices"] = self.vertices.astype(np.float32)
            arrays["faces"] = np.asarray(self.faces, dtype=np.int64)
        return arrays

    def save(self, path: str | Path) -> Path:
        """Write atomically (`atomic_write`: temporary file, then rename), the name used exactly as given."""
        path = Path(path)
        if not path.parent.is_dir():
            raise KMMError(f"{path}: cannot save, the folder does not exist")
        return write_npz_atomic(path, self.to_arrays())  # checked finite again: the arrays may have changed


def _up_axis_matrix(up_axis: str) -> np.ndarray:
    if up_axis not in UP_AXES:
        raise KMMError(f"up_axis must be one of {', '.join(UP_AXES)}, got {up_axis!r}")
    return Y_UP_TO_Z_UP if up_axis == "z" else np.eye(3)


def fit_smpl_pose(joints: np.ndarray, model: SMPLModel, betas: np.ndarray | None = None,
                  up_axis: str = "z") -> tuple[np.ndarray, np.ndarray]:
    """Poses (T, 3 J) and trans (T, 3) that pose `model` (shaped by `betas`) like `joints` (T, 22, 3, HumanML3D
    axes).  Body joints come from our inverse kinematics on the model's rest offsets; later joints stay at rest."""
    joints = np.asarray(joints, dtype=np.float64)
    betas = model.check_betas(betas)
    rest = model.rest_joints(betas)
    offsets = model.rest_offsets(betas)[:NUM_JOINTS]
    pelvis, local = inverse_kinematics(joints, offsets=offsets)
    axis_angles = np.zeros((joints.shape[0], model.num_joints, 3))
    axis_angles[:, :NUM_JOINTS] = quat_to_axis_angle(local)
    # The whole posed body turns into the export axes: the root's orientation and the pelvis position turn with it.
    turn = _up_axis_matrix(up_axis)
    root = turn @ quat_to_matrix(local[:, 0])
    axis_angles[:, 0] = matrix_to_axis_angle(root)
    # SMPL rotates the body about the rest pelvis joint, then adds trans: pelvis_world = rest_pelvis + trans.
    trans = pelvis @ turn.T - rest[0]
    return axis_angles.reshape(joints.shape[0], -1), trans


def fit_smpl_motion(motion, model: SMPLModel, betas: np.ndarray | None = None, gender: str = "neutral",
                    up_axis: str = "z") -> SMPLMotion:
    """SMPLMotion for a MotionResult (its joint positions are fitted; its own rotations are not used)."""
    if gender not in GENDERS:
        raise KMMError(f"gender must be one of {', '.join(GENDERS)}, got {gender!r}")
    betas = model.check_betas(betas)
    poses, trans = fit_smpl_pose(motion.joints, model, betas, up_axis)
    return SMPLMotion(poses=poses, trans=trans, betas=betas, fps=float(motion.fps), gender=gender, up_axis=up_axis,
                      model_type=model.model_type)


def smpl_joints(model: SMPLModel, poses: np.ndarray, trans: np.ndarray, betas: np.ndarray | None = None) -> np.ndarray:
    """(T, J, 3) posed joint locations by SMPL's forward kinematics (NumPy): each joint turns its subtree about its
    rest location, G_j = G_parent(j) * R_j, then trans is added."""
    betas = model.check_betas(betas)
    rest = model.rest_joints(betas)
    poses = np.asarray(poses, dtype=np.float64)
    num_frames = poses.shape[0]
    if poses.shape != (num_frames, 3 * model.num_joints):
        raise KMMError(f"poses must have shape (T, {3 * model.num_joints}) for {model.path}, got {poses.shape}")
    trans = np.asarray(trans, dtype=np.float64)
    if trans.shape != (num_frames, 3):
        raise KMMError(f"trans must have shape ({num_frames}, 3) to match poses, got {trans.shape}")
    rotations = axis_angle_to_matrix(poses.reshape(num_frames, model.num_joints, 3))
    global_rotations = np.empty_like(rotations)
    positions = np.empty((num_frames, model.num_joints, 3))
    for joint, parent in enumerate(model.parents):
        if parent < 0:
            global_rotations[:, joint] = rotations[:, joint]
            positions[:, joint] = rest[joint]
            continue
        global_rotations[:, joint] = global_rotations[:, parent] @ rotations[:, joint]
        positions[:, joint] = positions[:, parent] + global_rotations[:, parent] @ (rest[joint] - rest[parent])
    return positions + trans[:, None, :]


def smplx_available() -> bool:
    try:
        import smplx  # noqa: F401
    except ImportError:
        return False
    return True


def smpl_mesh(model: SMPLModel, poses: np.ndarray, trans: np.ndarray, betas: np.ndarray | None = None,
              batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (T, V, 3) float32 and joints (T, J, 3) of the skinned mesh, by `smplx`'s linear blend skinning (with
    pose blend shapes).  Works for any SMPL-family model file; hands/face keep the pose given in `poses`."""
    try:
        import torch
        from smplx.lbs import lbs
    except ImportError as exc:
        raise SMPLUnavailableError(f"the body mesh needs the optional smplx package ({exc}): "
                                   "pip install smplx") from None
    betas = model.check_betas(betas)
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 2 or poses.shape[1] != 3 * model.num_joints:
        raise KMMError(f"poses must have shape (T, {3 * model.num_joints}) for {model.path}, got {poses.shape}")
    trans = np.asarray(trans, dtype=np.float64)
    if trans.shape != (poses.shape[0], 3):
        raise KMMError(f"trans must have shape ({poses.shape[0]}, 3) to match poses, got {trans.shape}")
    dtype = torch.float32
    num_betas = betas.shape[0]
    template = torch.as_tensor(model.v_template, dtype=dtype)
    shapedirs = torch.as_tensor(model.shapedirs[:, :, :num_betas], dtype=dtype)
    posedirs = torch.as_tensor(model.posedirs.reshape(-1, model.posedirs.shape[-1]).T, dtype=dtype)
    regressor = torch.as_tensor(model.J_regressor, dtype=dtype)
    parents = torch.as_tensor(model.parents, dtype=torch.long)
    weights = torch.as_tensor(model.weights, dtype=dtype)
    vertices, joints = [], []
    with torch.no_grad():
        for start in range(0, poses.shape[0], batch_size):
            pose = torch.as_tensor(poses[start:start + batch_size], dtype=dtype)
            shape = torch.as_tensor(betas, dtype=dtype).expand(pose.shape[0], -1)
            verts, joint = lbs(shape, pose, template, shapedirs, posedirs, regressor, parents, weights, pose2rot=True)
            offset = torch.as_tensor(trans[start:start + batch_size], dtype=dtype)[:, None, :]
            vertices.append((verts + offset).numpy())
            joints.append((joint + offset).numpy())
    return np.concatenate(vertices).astype(np.float32), np.concatenate(joints)


def export_smpl(motion, model: SMPLModel | str | Path, path: str | Path, betas: np.ndarray | None = None,
                gender: str = "neutral", up_axis: str = "z", mesh: bool | None = None) -> SMPLMotion:
    """Fit `motion` to the model and write the .npz; with `mesh` (default: when smplx is installed) the vertices
    and faces go into the same file."""
    if not isinstance(model, SMPLModel):
        model = load_smpl_model(model)
    fitted = fit_smpl_motion(motion, model, betas=betas, gender=gender, up_axis=up_axis)
    if mesh is None:
        mesh = smplx_available()
    if mesh:
        fitted.vertices, _ = smpl_mesh(model, fitted.poses, fitted.trans, fitted.betas)
        fitted.faces = model.faces
    fitted.save(path)
    return fitted
