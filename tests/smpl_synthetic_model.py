# SPDX-License-Identifier: GPL-3.0-or-later
"""A small synthetic SMPL model file for tests (real SMPL models cannot be distributed).

Same .npz layout as the official files (v_template, f, J_regressor, weights, kintree_table, shapedirs, posedirs),
24 joints in SMPL's tree (or SMPL-H's 52 with `model_type="smplh"`), but a toy mesh: a small tetrahedron of 4 vertices around each joint, skinned rigidly to
that joint, and a J_regressor that averages each tetrahedron (so joint = centroid of its 4 vertices).  Shape blend
shapes are random (they move the rest joints); pose blend shapes are random but sum to zero over each tetrahedron,
so they change the mesh without moving any tetrahedron's centroid away from its posed joint.

The body joints sit at our T-pose (`skeleton.tpose_offsets()`, HumanML3D's bone lengths) or, with
`rest_pose="apose"`, with the arms lowered by 45 degrees, a rest pose unlike ours that the fitting must re-express.
The pelvis is placed off the origin, as in real SMPL templates, to exercise the translation convention.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kmm_core.motion.skeleton import PARENTS, rest_positions, tpose_offsets

SMPL_PARENTS = (*PARENTS, 20, 21)   # SMPL's 24 joints: the 22 body joints, then left/right hand on the wrists
NUM_SMPL_JOINTS = len(SMPL_PARENTS)
HAND_LENGTH = 0.08                  # wrist -> hand joint, metres
REST_PELVIS = np.array([0.003, -0.22, 0.028])  # where real SMPL templates roughly put the pelvis
TETRAHEDRON = 0.015 * np.array([[1.0, 1.0, 1.0], [1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]])
TETRAHEDRON_FACES = np.array([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]])


# SMPL-H's 52 joints: the 22 body joints, then 15 finger joints per hand (left hand on joint 20, right on 21), each
# finger a chain of three joints.
SMPLH_PARENTS = (*PARENTS, *[parent for wrist, first in ((20, 22), (21, 37))
                             for finger in range(5)
                             for parent in (wrist, first + 3 * finger, first + 3 * finger + 1)])
FINGER_BONE = 0.03


def model_parents(model_type: str = "smpl") -> tuple[int, ...]:
    if model_type not in ("smpl", "smplh"):
        raise ValueError(f"model_type must be 'smpl' or 'smplh', got {model_type!r}")
    return SMPL_PARENTS if model_type == "smpl" else SMPLH_PARENTS


def synthetic_rest_joints(rest_pose: str = "tpose", model_type: str = "smpl") -> np.ndarray:
    """(J, 3) rest joint locations of the synthetic model (before shape blend shapes): 24 joints for SMPL, 52 for
    SMPL-H (fingers fanned out along the arm)."""
    parents = model_parents(model_type)
    offsets = np.zeros((len(parents), 3))
    offsets[:22] = tpose_offsets()
    if model_type == "smpl":
        offsets[22] = [HAND_LENGTH, 0.0, 0.0]
        offsets[23] = [-HAND_LENGTH, 0.0, 0.0]
    else:
        for first, side in ((22, 1.0), (37, -1.0)):
            for finger in range(5):
                spread = np.radians(-30.0 + 15.0 * finger)
                direction = np.array([side * np.cos(spread), 0.0, np.sin(spread)])
                offsets[first + 3 * finger: first + 3 * finger + 3] = FINGER_BONE * direction
    if rest_pose == "apose":
        angle = np.radians(45.0)
        # The whole arm below the shoulder (upper arm, forearm, hand/fingers) turns: the left arm (+X) down about -Z.
        for elbow, sign in ((18, -1.0), (19, 1.0)):
            c, s = np.cos(sign * angle), np.sin(sign * angle)
            turn = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
            below = [j for j in range(len(parents)) if _descends_from(j, elbow, parents)]
            offsets[below] = offsets[below] @ turn.T
    elif rest_pose != "tpose":
        raise ValueError(f"rest_pose must be 'tpose' or 'apose', got {rest_pose!r}")
    positions = np.zeros((len(parents), 3))
    positions[:22] = rest_positions(offsets[:22])
    for joint in range(22, len(parents)):
        positions[joint] = positions[parents[joint]] + offsets[joint]
    return positions + REST_PELVIS


def _descends_from(joint: int, ancestor: int, parents: tuple[int, ...]) -> bool:
    while joint >= 0:
        if joint == ancestor:
            return True
        joint = parents[joint]
    return False


def synthetic_model_arrays(rest_pose: str = "tpose", num_betas: int = 10, seed: int = 0,
                           model_type: str = "smpl") -> dict[str, np.ndarray]:
    """The arrays of the synthetic model file."""
    rng = np.random.default_rng(seed)
    parents = model_parents(model_type)
    num_joints = len(parents)
    joints = synthetic_rest_joints(rest_pose, model_type)
    num_vertices = 4 * num_joints
    owner = np.repeat(np.arange(num_joints), 4)              # joint of each vertex
    v_template = joints[owner] + np.tile(TETRAHEDRON, (num_joints, 1))
    faces = (TETRAHEDRON_FACES[None] + 4 * np.arange(num_joints)[:, None, None]).reshape(-1, 3)
    regressor = np.zeros((num_joints, num_vertices))
    regressor[owner, np.arange(num_vertices)] = 0.25
    weights = np.zeros((num_vertices, num_joints))
    weights[np.arange(num_vertices), owner] = 1.0
    kintree = np.array([[2**32 - 1, *parents[1:]], list(range(num_joints))], dtype=np.int64)
    shapedirs = 0.01 * rng.standard_normal((num_vertices, 3, num_betas))
    posedirs = 0.0002 * rng.standard_normal((num_vertices, 3, 9 * (num_joints - 1)))
    posedirs = posedirs.reshape(num_joints, 4, 3, -1)
    posedirs = (posedirs - posedirs.mean(axis=1, keepdims=True)).reshape(num_vertices, 3, -1)
    return {"v_template": v_template, "f": faces.astype(np.uint32), "J_regressor": regressor, "weights": weights,
            "kintree_table": kintree, "shapedirs": shapedirs, "posedirs": posedirs}


def write_synthetic_smpl_model(path: str | Path, rest_pose: str = "tpose", num_betas: int = 10, seed: int = 0,
                               model_type: str = "smpl", drop: tuple[str, ...] = (),
                               replace: dict | None = None) -> Path:
    """Write the synthetic model .npz to `path`; `drop` leaves keys out and `replace` swaps arrays (for tests of
    malformed files)."""
    arrays = synthetic_model_arrays(rest_pose, num_betas, seed, model_type)
    arrays.update(replace or {})
    for key in drop:
        arrays.pop(key)
    path = Path(path)
    np.savez(path, **arrays)
    return path
