# SPDX-License-Identifier: GPL-3.0-or-later
"""Forward and inverse kinematics of the canonical 22-joint skeleton (NumPy).

Convention (the one BVH files and Blender armatures use):
- `local_rotations[t, j]` (w, x, y, z) is joint j's rotation relative to the rest pose, expressed in its parent's
  space; joint 0's is the global root orientation.  Global rotations compose down the tree:
  G_j = G_parent(j) * L_j.
- A joint's rotation moves its children: p_child = p_joint + G_joint * offset_child, where offsets are the
  rest-pose vectors from parent to child (default `skeleton.tpose_offsets()`: a T-pose, metres, HumanML3D axes).
  In the rest pose every rotation is the identity.
- The root (pelvis) sits at `root_translation`; offsets[0] is ignored.

Inverse kinematics is analytic, frame by frame, and leaves no drift:
- Joints with several children (pelvis 0: hips and spine1; spine3 9: neck and collars) take the rotation that
  best maps the rest directions of their children onto the observed ones (Kabsch / orthogonal Procrustes).
- Joints with one child point their rest bone at the child, from where the skeleton posed so far puts the joint
  (not from the joint's observed position: so a joint the rigid bones cannot place exactly does not pass its error
  on down the chain), turning to the observed bone's direction where the two disagree by more than 30-60 degrees
  (a short bone whose joint is displaced).  The twist about the bone, which positions do not
  fix, is chosen to be stable: hips/knees and shoulders/elbows use the plane of the knee/elbow bend (so knees and
  elbows become hinges), fading into the minimal-twist choice as the limb straightens and that plane becomes
  noise; spine1/spine2 spread the twist between pelvis and chest; ankles, neck and collars take the minimal
  twist relative to their parent (the shortest arc from where the parent carries the rest bone).
- Leaf joints (feet 10/11, head 15, wrists 20/21) have no child to aim at: their local rotation is the identity
  (they inherit their parent's orientation).

Positions are reproduced exactly when the rest offsets have the motion's bone lengths and the same fixed angles
between the children of the pelvis and of spine3.  The default `tpose_offsets()` takes those angles from HumanML3D's
reference skeleton, so IK followed by FK reproduces HumanML3D joints to about 0.1 mm.  For motion on another
skeleton, `fit_rest_offsets(positions)` gives a T-pose with the motion's own lengths and branch angles.
"""

from __future__ import annotations

import numpy as np

from ..common.errors import KMMError
from ..common.smoothstep import smoothstep
from .rotations import matrix_to_quat, qbetween, qmul, qnormalize, qrot, quat_to_matrix
from .skeleton import NUM_JOINTS, PARENTS, tpose_offsets

# Children of each canonical joint, and the joints with several children.
CHILDREN: tuple[tuple[int, ...], ...] = tuple(
    tuple(c for c, p in enumerate(PARENTS) if p == j) for j in range(NUM_JOINTS))
BRANCH_JOINTS: tuple[int, ...] = tuple(j for j in range(NUM_JOINTS) if len(CHILDREN[j]) > 1)
LEAF_JOINTS: tuple[int, ...] = tuple(j for j in range(NUM_JOINTS) if not CHILDREN[j])

# Limbs whose bend plane fixes the twist: (upper joint, middle joint, end joint, rest direction the middle bone
# swings towards when the joint flexes).  Knees flex backwards (-Z); elbows of a T-pose with palms down flex
# forwards (+Z), about a vertical axis.
_HINGE_LIMBS: tuple[tuple[int, int, int, tuple[float, float, float]], ...] = (
    (1, 4, 7, (0.0, 0.0, -1.0)),
    (2, 5, 8, (0.0, 0.0, -1.0)),
    (16, 18, 20, (0.0, 0.0, 1.0)),
    (17, 19, 21, (0.0, 0.0, 1.0)),
)
# Spine joints whose twist is a blend of the pelvis and the chest (spine3) lateral axes: joint -> chest weight.
_SPINE_TWIST_SHARE = {3: 1.0 / 3.0, 6: 2.0 / 3.0}

# Below BEND_FADE_START (sine of the bend angle, ~3 degrees) the bend plane is ignored; above BEND_FADE_END
# (~14 degrees) it alone decides the twist; in between the two choices blend smoothly.
BEND_FADE_START = 0.05
BEND_FADE_END = 0.25

# A bone aims from where the rigid skeleton has put its joint while that direction is within FOLLOW_FADE_START
# degrees of the observed bone's; beyond FOLLOW_FADE_END it takes the observed bone's direction.
FOLLOW_FADE_START = 30.0
FOLLOW_FADE_END = 60.0

_EPS = 1e-9


def _check_offsets(offsets: np.ndarray | None) -> np.ndarray:
    offsets = tpose_offsets() if offsets is None else np.asarray(offsets, dtype=np.float64)
    if offsets.shape != (NUM_JOINTS, 3):
        raise KMMError(f"rest offsets must have shape ({NUM_JOINTS}, 3), got {offsets.shape}")
    return offsets


def forward_kinematics(root_translation: np.ndarray, local_rotations: np.ndarray, offsets: np.ndarray | None = None,
                       parents: tuple[int, ...] | list[int] = PARENTS) -> np.ndarray:
    """World joint positions (T, J, 3) from root positions (T, 3) and local rotations (T, J, 4) (w, x, y, z)."""
    local_rotations = qnormalize(np.asarray(local_rotations, dtype=np.float64))
    root_translation = np.asarray(root_translation, dtype=np.float64)
    num_joints = len(parents)
    offsets = tpose_offsets() if offsets is None else np.asarray(offsets, dtype=np.float64)
    if local_rotations.shape[-2:] != (num_joints, 4) or offsets.shape != (num_joints, 3):
        raise KMMError(f"expected local rotations (T, {num_joints}, 4) and offsets ({num_joints}, 3), got "
                       f"{local_rotations.shape} and {offsets.shape}")
    if root_translation.shape != local_rotations.shape[:-2] + (3,):
        raise KMMError(f"root translation shape {root_translation.shape} does not match rotations "
                       f"{local_rotations.shape}")
    positions = np.empty(local_rotations.shape[:-1] + (3,))
    global_rotations = np.empty_like(local_rotations)
    for joint, parent in enumerate(parents):
        if parent < 0:
            positions[..., joint, :] = root_translation
            global_rotations[..., joint, :] = local_rotations[..., joint, :]
            continue
        if parent >= joint:
            raise KMMError(f"parents must come before their children (joint {joint} has parent {parent})")
        parent_rotation = global_rotations[..., parent, :]
        positions[..., joint, :] = positions[..., parent, :] + qrot(parent_rotation, np.broadcast_to(
            offsets[joint], parent_rotation.shape[:-1] + (3,)))
        global_rotations[..., joint, :] = qmul(parent_rotation, local_rotations[..., joint, :])
    return positions


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), _EPS)


def _best_rotation(rest_directions: np.ndarray, world_directions: np.ndarray) -> np.ndarray:
    """(T, 3, 3) rotations R minimising sum_k |R rest_k - world_k|^2 (Kabsch), rest (K, 3), world (T, K, 3)."""
    covariance = np.einsum("tki,kj->tij", world_directions, rest_directions)
    u, _, vt = np.linalg.svd(covariance)
    reflection = np.sign(np.linalg.det(u @ vt))
    u[..., :, 2] *= reflection[..., None]  # keep a proper rotation (det +1)
    return u @ vt


def _frame(primary: np.ndarray, secondary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal frames (..., 3, 3) with columns [primary, secondary made orthogonal, their cross product],
    and the length of the orthogonalised secondary (small = degenerate)."""
    x = _unit(primary)
    y = secondary - np.sum(secondary * x, axis=-1, keepdims=True) * x
    length = np.linalg.norm(y, axis=-1)
    y = y / np.maximum(length, _EPS)[..., None]
    return np.stack([x, y, np.cross(x, y)], axis=-1), length


def _aim(parent_rotation: np.ndarray, rest_bone: np.ndarray, world_bone: np.ndarray,
         rest_reference: np.ndarray | None = None, world_reference: np.ndarray | None = None,
         reference_weight: np.ndarray | None = None) -> np.ndarray:
    """Global rotation (T, 3, 3) taking the rest bone direction onto the world bone direction.

    The twist is the minimal one relative to the parent unless a reference is given: then the rest reference
    vector is turned towards world_reference (blended with the minimal-twist reference by reference_weight).
    """
    carried_bone = np.einsum("tij,j->ti", parent_rotation, rest_bone)
    swing = quat_to_matrix(qbetween(carried_bone, world_bone))
    minimal = swing @ parent_rotation
    if rest_reference is None:
        return minimal
    rest_frame, rest_length = _frame(rest_bone, rest_reference)
    if rest_length < 1e-6:
        return minimal
    minimal_reference = np.einsum("tij,j->ti", minimal, rest_reference)
    weight = np.ones(len(world_bone)) if reference_weight is None else reference_weight
    reference = weight[:, None] * _unit(world_reference) + (1.0 - weight[:, None]) * minimal_reference
    world_frame, world_length = _frame(world_bone, reference)
    aimed = world_frame @ rest_frame.T
    return np.where((world_length > 1e-4)[:, None, None], aimed, minimal)


def _checked_positions(positions: np.ndarray) -> np.ndarray:
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 3 or positions.shape[1:] != (NUM_JOINTS, 3):
        raise KMMError(f"positions must have shape (T, {NUM_JOINTS}, 3), got {positions.shape}")
    if not np.all(np.isfinite(positions)):
        raise KMMError("positions contain NaN or infinite values")
    return positions


def _hinge_references(positions: np.ndarray, rest_directions: np.ndarray) -> dict[int, tuple]:
    """Upper and middle joint of every hinge limb -> (rest normal, observed bend normal, weight of the bend)."""
    hinge_of = {}
    for upper, middle, end, flex in _HINGE_LIMBS:
        upper_bone = positions[:, middle] - positions[:, upper]
        lower_bone = positions[:, end] - positions[:, middle]
        normal = np.cross(upper_bone, lower_bone)
        sine = np.linalg.norm(normal, axis=-1) / np.maximum(
            np.linalg.norm(upper_bone, axis=-1) * np.linalg.norm(lower_bone, axis=-1), _EPS)
        rest_normal = np.cross(rest_directions[middle], np.array(flex))
        weight = smoothstep(sine, BEND_FADE_START, BEND_FADE_END)
        hinge_of[upper] = hinge_of[middle] = (rest_normal, normal, weight)
    return hinge_of


def _followed_bone(joint: np.ndarray, child: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """(T, 3) unit direction a bone aims along: from `origin` (where the rigid skeleton has put the joint) at the
    observed `child`, turning to the observed bone (`joint` -> `child`) where the two disagree by more than
    FOLLOW_FADE_START (all of it beyond FOLLOW_FADE_END): a short bone whose origin is a few centimetres off (a
    10 cm neck) would otherwise point anywhere."""
    followed, observed = _unit(child - origin), _unit(child - joint)
    agreement = np.sum(followed * observed, axis=-1)
    weight = smoothstep(agreement, np.cos(np.radians(FOLLOW_FADE_END)), np.cos(np.radians(FOLLOW_FADE_START)))
    return _unit(weight[:, None] * followed + (1.0 - weight[:, None]) * observed)


def _solve_global(joint: int, positions: np.ndarray, rest_directions: np.ndarray, global_rotations: np.ndarray,
                  hinge_of: dict[int, tuple], origin: np.ndarray) -> np.ndarray:
    """Global rotation (T, 3, 3) of `joint` by the rules of the module docstring; `global_rotations` must already
    hold its parent's (and, for the spine, the pelvis's and spine3's).  A one-child joint aims its bone from
    `origin` (where the rigid skeleton has put the joint, (T, 3)) at the observed child."""
    children = CHILDREN[joint]
    if joint in BRANCH_JOINTS:
        world = _unit(positions[:, list(children)] - positions[:, [joint]])
        return _best_rotation(rest_directions[list(children)], world)
    parent = PARENTS[joint]
    parent_rotation = (np.broadcast_to(np.eye(3), (positions.shape[0], 3, 3)) if parent < 0
                       else global_rotations[:, parent])
    if not children:
        return parent_rotation
    child = children[0]
    rest_bone, world_bone = rest_directions[child], _followed_bone(positions[:, joint], positions[:, child], origin)
    if joint in hinge_of:
        rest_normal, normal, weight = hinge_of[joint]
        return _aim(parent_rotation, rest_bone, world_bone, rest_normal, normal, weight)
    if joint in _SPINE_TWIST_SHARE:
        share = _SPINE_TWIST_SHARE[joint]
        lateral = (1.0 - share) * global_rotations[:, 0, :, 0] + share * global_rotations[:, 9, :, 0]
        return _aim(parent_rotation, rest_bone, world_bone, np.array([1.0, 0.0, 0.0]), lateral)
    return _aim(parent_rotation, rest_bone, world_bone)


def _continuous_quaternions(quaternions: np.ndarray) -> np.ndarray:
    """(T, J, 4) with each joint's quaternion in the same hemisphere as its previous frame's (q and -q are the same
    rotation), so interpolation and Euler conversion stay smooth: a flip at a frame carries on to every later frame,
    which the running product of the frame-to-frame signs expresses without a loop over frames."""
    if quaternions.shape[0] < 2:
        return quaternions
    opposite = np.sum(quaternions[1:] * quaternions[:-1], axis=-1) < 0.0
    signs = np.cumprod(np.where(opposite, -1.0, 1.0), axis=0)
    quaternions[1:] *= signs[..., None]
    return quaternions


def _global_rotations(positions: np.ndarray, offsets: np.ndarray, solved: set[int],
                      kept_local: np.ndarray | None = None) -> np.ndarray:
    """(T, 22, 3, 3) global rotations: the joints of `solved` solved from `positions`, the others composed from
    their kept local rotation matrices `kept_local` (T, 22, 3, 3).

    The skeleton is posed from the root outwards as it is solved, and each one-child joint aims from where the
    rigid skeleton has put it, not from where `positions` has it: a bone then points at its observed child from the
    actual joint, so each joint lands as near its observed position as the bone length allows and errors do not add
    up along a chain.  (Aimed from the observed joint, generated motion whose bone lengths wobble a little came out
    of IK -> FK with 18-33% more jerk: benchmarks/measure_jerk_sources.py, measure_foot_skating.py.)  Where that
    direction disagrees with the observed bone's (a short bone from a displaced origin) the
    observed one takes over: see `_followed_bone`."""
    rest_directions = _unit(offsets)
    hinge_of = _hinge_references(positions, rest_directions)
    frames = positions.shape[0]
    global_rotations = np.empty((frames, NUM_JOINTS, 3, 3))
    if kept_local is not None:  # the kept pose's globals: the spine's twist reference when spine3 is kept
        for joint, parent in enumerate(PARENTS):
            global_rotations[:, joint] = (kept_local[:, joint] if parent < 0
                                          else global_rotations[:, parent] @ kept_local[:, joint])
    for joint in BRANCH_JOINTS:  # orientation from the observed children; the spine's twist reads them
        if joint in solved:
            global_rotations[:, joint] = _solve_global(joint, positions, rest_directions, global_rotations,
                                                       hinge_of, positions[:, joint])
    # Where the rigid skeleton puts a joint is needed for the one-child joints solved and their ancestors only; a
    # kept joint is composed again only below a solved one (elsewhere the kept pose's global above is its value).
    needs_posed = {ancestor for joint in solved - set(BRANCH_JOINTS) for ancestor in _chain(joint)}
    changed: set[int] = set()
    posed = np.empty_like(positions)
    posed[:, 0] = positions[:, 0]
    for joint, parent in enumerate(PARENTS):
        if parent >= 0 and joint in needs_posed:
            posed[:, joint] = posed[:, parent] + np.einsum("tij,j->ti", global_rotations[:, parent], offsets[joint])
        if joint in solved:
            changed.add(joint)
            if joint not in BRANCH_JOINTS:
                global_rotations[:, joint] = _solve_global(joint, positions, rest_directions, global_rotations,
                                                           hinge_of, posed[:, joint])
        elif parent in changed:
            changed.add(joint)
            global_rotations[:, joint] = (kept_local[:, joint] if parent < 0
                                          else global_rotations[:, parent] @ kept_local[:, joint])
    return global_rotations


def _chain(joint: int) -> list[int]:
    """`joint` and its ancestors up to the root."""
    chain = [joint]
    while PARENTS[chain[-1]] >= 0:
        chain.append(PARENTS[chain[-1]])
    return chain


def _local_matrices(global_rotations: np.ndarray, joints: list[int]) -> np.ndarray:
    """(T, len(joints), 3, 3) local rotations of `joints` from the global ones."""
    parents = [PARENTS[joint] for joint in joints]
    local = np.swapaxes(global_rotations[:, parents], -1, -2) @ global_rotations[:, joints]
    roots = [i for i, parent in enumerate(parents) if parent < 0]  # (their row above used joint -1: replaced)
    local[:, roots] = global_rotations[:, [joints[i] for i in roots]]
    return local


def inverse_kinematics(positions: np.ndarray, offsets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Root translation (T, 3) and local rotations (T, 22, 4) (w, x, y, z) that pose the rest skeleton `offsets`
    (default `skeleton.tpose_offsets()`) like `positions` (T, 22, 3); see the module docstring for the rules."""
    positions = _checked_positions(positions)
    offsets = _check_offsets(offsets)
    global_rotations = _global_rotations(positions, offsets, set(range(NUM_JOINTS)))
    local = _local_matrices(global_rotations, list(range(NUM_JOINTS)))
    return positions[:, 0].copy(), _continuous_quaternions(matrix_to_quat(local))


def reaim_joints(positions: np.ndarray, local_rotations: np.ndarray, joints: tuple[int, ...] | list[int],
                 offsets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`inverse_kinematics(positions, offsets)` when only `joints` changed their rotations: root translation (T, 3)
    and `local_rotations` (T, 22, 4) with the rotations of `joints` solved from `positions` by the same rules and
    every other joint's kept.  For edits that move some bones of a posed motion (the foot clean-up re-solves the
    legs); the kept joints' positions in `positions` must be where `local_rotations` puts them (up to a shift of
    the whole body)."""
    positions = _checked_positions(positions)
    offsets = _check_offsets(offsets)
    local_rotations = np.asarray(local_rotations, dtype=np.float64)
    if local_rotations.shape != positions.shape[:2] + (4,):
        raise KMMError(f"local rotations must have shape {positions.shape[:2] + (4,)}, got {local_rotations.shape}")
    joints = sorted(set(int(j) for j in joints))
    if any(not 0 <= j < NUM_JOINTS for j in joints):
        raise KMMError(f"joints must be in 0..{NUM_JOINTS - 1}, got {joints}")
    global_rotations = _global_rotations(positions, offsets, set(joints), quat_to_matrix(qnormalize(local_rotations)))
    rotations = local_rotations.copy()
    rotations[:, joints] = _continuous_quaternions(matrix_to_quat(_local_matrices(global_rotations, joints)))
    return positions[:, 0].copy(), rotations


def fit_rest_offsets(positions: np.ndarray, template: np.ndarray | None = None) -> np.ndarray:
    """A rest skeleton (22, 3) for `positions` (T, 22, 3): the template's pose (default the T-pose) with the
    motion's mean bone lengths, and, below the branching joints (pelvis, spine3), the motion's own directions of
    the children expressed in the branching joint's best-fitting template frame.  IK with these offsets followed
    by FK reproduces motions whose branches are rigid (as HumanML3D's are) exactly."""
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 3 or positions.shape[1:] != (NUM_JOINTS, 3):
        raise KMMError(f"positions must have shape (T, {NUM_JOINTS}, 3), got {positions.shape}")
    template = _check_offsets(template)
    parents = np.array(PARENTS[1:])
    lengths = np.zeros(NUM_JOINTS)
    lengths[1:] = np.linalg.norm(positions[:, 1:] - positions[:, parents], axis=-1).mean(axis=0)
    directions = _unit(template)
    for joint in BRANCH_JOINTS:
        children = list(CHILDREN[joint])
        world = _unit(positions[:, children] - positions[:, [joint]])
        rotation = _best_rotation(directions[children], world)
        in_rest_frame = np.einsum("tji,tkj->tki", rotation, world)  # R^T applied to each child direction
        directions[children] = _unit(in_rest_frame.mean(axis=0))
    offsets = directions * lengths[:, None]
    offsets[0] = 0.0
    return offsets
