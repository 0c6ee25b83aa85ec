# SPDX-License-Identifier: GPL-3.0-or-later
"""Move canonical 22-joint motion onto a target rig (NumPy, frame-vectorised).

Everything is computed in HumanML3D axes and metres; a bone's pose is its *world delta* D_b (the rotation taking its
rest orientation to its posed one, so posed axes = D_b M'_b with M'_b the rest axes) and its head position.

1. Rest alignment.  The bone map says which bone each canonical joint drives and where each canonical joint sits on
   the rig (a bone head, or a point between two heads).  A point is *carried* by the bone whose rotation moves it
   (the effective parent of the bone whose head it is).  For every driven bone, the rotation R_j taking the canonical
   rest vectors (joint -> carried points; T-pose, `source.rest_positions`) onto the rig's rest vectors is found:
   Kabsch when the bone carries two or more points, else the shortest swing relative to the parent's alignment
   (leaves use the bone's own direction).  This is what makes A-pose vs T-pose, bone rolls and bone axes irrelevant.
2. Per frame, in hierarchy order: a driven bone starts from D = G_j R_j^T (the source joint's global rotation carried
   over, which sets the twist), then is turned so that its carried points land on the source points scaled by
   s = target leg length / source leg length: Kabsch over two or more points, a swing for one.  A bone that also
   carries its joint's own point or points above it (Rigify's chest: spine2 and spine3) turns as its joint turns the
   points below it, and those points are aimed at from where the bone puts its joint (`joint_turned_bones`): the
   arms and neck move with the chest they hang from.  The bone the pelvis drives is placed by a rigid fit of its
   points (root translation scaled by s, so feet do not slide).  Bones the map does not drive (twist, finger, helper
   bones) keep their rest pose relative to their parent.
3. Leg IK: each leg's thigh and shin are turned (analytic two-bone IK, bone lengths kept, the knee staying in the
   plane the transferred knee bends in, forward when straight or behind the leg) so that the ankle reaches the
   scaled source ankle; the foot keeps its world orientation.  Planted source feet therefore stay planted, and knees cannot flip.
4. Feet on the ground (`foot_ground.py`): the body moves up or down so that planted feet stand on the rig's rest
   floor (`RetargetedMotion.vertical_offset`), each foot chain (ankle, toes, toe tip, skinned foot corners) is as far
   above that floor as the source foot is above its own standing position while the source foot is down, and never
   below it; a rig whose rest foot stands flat keeps its sole on the floor while the source foot is flat.

Exact when source and rig agree up to scale: a Bandai-Namco clip sent onto the KMM skeleton and back reproduces its
joints (tests/test_retarget_core.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..common.errors import KMMError
from ..common.smoothstep import smoothstep
from ..motion.kinematics import fit_rest_offsets, forward_kinematics, inverse_kinematics
from ..motion.rotations import matrix_to_quat, qbetween, quat_to_matrix
from ..motion.skeleton import JOINT_INDEX, JOINT_NAMES, NUM_JOINTS, PARENTS, rest_positions
from .bone_map import BoneMap
from .foot_ground import ground_feet
from .target_skeleton import TargetSkeleton

_EPS = 1e-9
_MIN_VECTOR = 1e-4  # metres: carried points closer than this to the bone head give no direction


class RetargetError(KMMError, ValueError):
    """The motion cannot be put on the rig (names the bone or joint)."""


# ---- the source -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceMotion:
    """Canonical motion: world joint positions (T, 22, 3) and global rotations (T, 22, 3, 3) relative to the rest
    skeleton `rest_positions` (22, 3) (pelvis at the origin), HumanML3D axes, metres."""

    positions: np.ndarray
    global_rotations: np.ndarray
    rest_positions: np.ndarray
    fps: float


def global_rotations(local_rotations: np.ndarray, parents=PARENTS) -> np.ndarray:
    """(T, J, 3, 3) world rotations from local quaternions (T, J, 4) composed down the tree."""
    local = quat_to_matrix(np.asarray(local_rotations, dtype=np.float64))
    world = np.empty_like(local)
    for joint, parent in enumerate(parents):
        world[:, joint] = local[:, joint] if parent < 0 else world[:, parent] @ local[:, joint]
    return world


def source_from_rotations(root_translation: np.ndarray, local_rotations: np.ndarray, rest_offsets: np.ndarray,
                          fps: float) -> SourceMotion:
    """A source from root + local rotations (a MotionResult's `root_translation`, `local_rotations`,
    `rest_offsets`)."""
    offsets = np.asarray(rest_offsets, dtype=np.float64)
    positions = forward_kinematics(root_translation, local_rotations, offsets)
    return SourceMotion(positions=positions, global_rotations=global_rotations(local_rotations),
                        rest_positions=rest_positions(offsets), fps=float(fps))


def source_from_positions(positions: np.ndarray, fps: float) -> SourceMotion:
    """A source from joint positions alone (mocap mapped to the canonical joints): rotations by analytic IK on a
    rest skeleton with the clip's own bone lengths; the positions are kept exactly."""
    positions = np.asarray(positions, dtype=np.float64)
    offsets = fit_rest_offsets(positions)
    _, local = inverse_kinematics(positions, offsets)
    return SourceMotion(positions=positions, global_rotations=global_rotations(local),
                        rest_positions=rest_positions(offsets), fps=float(fps))


def source_from_motion_result(motion) -> SourceMotion:
    return source_from_rotations(motion.root_translation, motion.local_rotations, motion.rest_offsets, motion.fps)


# ---- helpers ----------------------------------------------------------------------------------------------------
def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), _EPS)


def _swing(from_vectors: np.ndarray, to_vectors: np.ndarray) -> np.ndarray:
    return quat_to_matrix(qbetween(from_vectors, to_vectors))


SWING_FULL = np.radians(60.0)   # aiming corrections up to this angle are applied fully ...
SWING_NONE = np.radians(150.0)  # ... fading to none at this angle (the point lies behind the bone)


REACH_FULL = 0.4  # aiming is applied fully when the goal point is at least this fraction of the bone's own ...
REACH_NONE = 0.1  # ... carried distance away from the bone's head, and not at all below this fraction


def _limited_swing(from_vectors: np.ndarray, to_vectors: np.ndarray) -> np.ndarray:
    """The swing taking `from` onto `to`, applied fully up to SWING_FULL and fading out towards SWING_NONE, and
    fading out as well when `to` is much shorter than `from` (REACH_FULL .. REACH_NONE).

    A carried point far off the transferred direction means the rig's proportions put the bone's head past the
    point (a neck whose head sits above the source's head): aiming there would turn the bone over, and the
    direction of that turn jumps from frame to frame.  A goal point almost at the bone's head (a rig neck longer
    than the source's whole neck, so the source's head lies next to the rig's neck base) gives no direction either:
    millimetres of source motion would swing the bone by tens of degrees per frame.  The rotation transfer alone is
    the better answer then."""
    cosine = np.sum(_unit(from_vectors) * _unit(to_vectors), axis=-1)
    angle = np.arccos(np.clip(cosine, -1.0, 1.0))
    reach = np.linalg.norm(to_vectors, axis=-1) / np.maximum(np.linalg.norm(from_vectors, axis=-1), _EPS)
    weight = (smoothstep((SWING_NONE - angle) / (SWING_NONE - SWING_FULL))
              * smoothstep((reach - REACH_NONE) / (REACH_FULL - REACH_NONE)))
    full = qbetween(from_vectors, to_vectors)
    half_angle = np.arccos(np.clip(full[..., 0], -1.0, 1.0)) * weight
    axis = _unit(full[..., 1:])
    limited = np.concatenate([np.cos(half_angle)[..., None], np.sin(half_angle)[..., None] * axis], axis=-1)
    return quat_to_matrix(limited)


def _kabsch(rest: np.ndarray, posed: np.ndarray) -> np.ndarray:
    """(T, 3, 3) rotations R minimising sum_k |R rest_k - posed_k|^2; rest (K, 3) or (T, K, 3), posed (T, K, 3)."""
    covariance = np.einsum("tki,tkj->tij", posed, np.broadcast_to(rest, posed.shape))
    u, _, vt = np.linalg.svd(covariance)
    d = np.sign(np.linalg.det(u @ vt))
    u[..., :, 2] *= d[..., None]
    return u @ vt


def _spans_plane(vectors: np.ndarray) -> bool:
    if len(vectors) < 2:
        return False
    singular = np.linalg.svd(_unit(vectors), compute_uv=False)
    return bool(singular[1] > 0.1)


def effective_parents(skeleton: TargetSkeleton, bone_map: BoneMap) -> tuple[list[int], list[int]]:
    """Each bone's parent with the map's `parents` overrides applied, and an order visiting parents first."""
    index = skeleton.index
    parents = list(skeleton.parents)
    for child, parent in bone_map.parents.items():
        parents[index[child]] = index[parent]
    order: list[int] = []
    state = [0] * len(parents)  # 0 new, 1 visiting, 2 done

    def visit(bone: int) -> None:
        stack = []
        while bone >= 0 and state[bone] == 0:
            state[bone] = 1
            stack.append(bone)
            bone = parents[bone]
        if bone >= 0 and state[bone] == 1:
            raise RetargetError(f"bone map {bone_map.name!r}: 'parents' make a cycle through bone "
                                f"{skeleton.bone_names[bone]!r}")
        for item in reversed(stack):
            state[item] = 2
            order.append(item)

    for bone in range(len(parents)):
        visit(bone)
    return parents, order


LIMB_CHAINS = tuple((f"{side} {limb}", tuple(f"{side}_{joint}" for joint in joints))
                    for side in ("left", "right")
                    for limb, joints in (("leg", ("hip", "knee", "ankle", "foot")),
                                         ("arm", ("collar", "shoulder", "elbow", "wrist"))))


def check_limb_chains(skeleton: TargetSkeleton, bone_map: BoneMap) -> None:
    """Raise RetargetError when a limb's bones do not hang one below the other in the rig in the map's order (hip,
    knee, ankle, foot; collar, shoulder, elbow, wrist), following the map's `parents`: a map with the knee and the
    ankle swapped (or a bone of the other leg) would key the leg inside out."""
    bone_map.check(skeleton.bone_names, skeleton.name)
    index = skeleton.index
    parents, _ = effective_parents(skeleton, bone_map)
    for limb, joints in LIMB_CHAINS:
        mapped = [(joint, bone_map.bones.get(joint)) for joint in joints if bone_map.bones.get(joint)]
        for (upper_joint, upper), (lower_joint, lower) in zip(mapped, mapped[1:], strict=False):
            if not _is_effective_ancestor(parents, index[upper], index[lower]):
                raise RetargetError(
                    f"bone map {bone_map.name!r} on rig {skeleton.name!r}: {lower_joint}'s bone {lower!r} does not "
                    f"hang below {upper_joint}'s bone {upper!r} (the {limb} runs {' -> '.join(j for j, _ in mapped)}"
                    "): the map swaps or misplaces them; fix those rows (Target Rig panel) or the map file")


# ---- the plan: everything that does not depend on the frame ---------------------------------------------------------
@dataclass
class RetargetPlan:
    skeleton: TargetSkeleton
    bone_map: BoneMap
    parents: list[int]                  # effective parents
    order: list[int]                    # parents first
    rest_heads: np.ndarray              # (B, 3) metres, HumanML3D axes
    driver: dict[int, int]              # bone -> canonical joint driving it
    bone_of: dict[int, int]             # canonical joint -> driven bone
    point_specs: dict[int, tuple[int, int, float]]   # canonical joint -> (first bone, second bone, t)
    carried: dict[int, list[int]]       # bone -> canonical joints whose points it carries
    alignment: dict[int, np.ndarray]    # bone -> (3, 3) canonical rest -> rig rest rotation of its driver
    pelvis_bone: int
    scale: float                        # target leg length / source leg length
    placed: list[int] = field(default_factory=list)  # bones keyed by their place (the map's `placed`)
    tips: list[int] = field(default_factory=list)    # end bones made at one-bone limbs' tails (`with_tip_bones`)
    # bone -> (its driver joint, the carried joints below that joint): a bone that also carries its joint's own point
    # or points of joints above it (Rigify's chest carries spine2 and spine3) is turned as its joint turns the
    # points below it, seen from the joint's point (`joint_turned_bones`)
    joint_turned: dict[int, tuple[int, list[int]]] = field(default_factory=dict)

    def rest_points(self) -> dict[int, np.ndarray]:
        return {j: (1 - t) * self.rest_heads[a] + t * self.rest_heads[b] for j, (a, b, t) in self.point_specs.items()}


def _leg_length(points: dict[int, np.ndarray]) -> float:
    lengths = []
    for hip, knee, ankle in (("left_hip", "left_knee", "left_ankle"), ("right_hip", "right_knee", "right_ankle")):
        h, a = points[JOINT_INDEX[hip]], points[JOINT_INDEX[ankle]]
        k = points.get(JOINT_INDEX[knee])
        lengths.append(np.linalg.norm(a - h) if k is None else np.linalg.norm(k - h) + np.linalg.norm(a - k))
    return float(np.mean(lengths))


TIP_SUFFIX = " (tail)"  # the name of the point a one-bone limb's tail is made into (never keyed)


def with_tip_bones(skeleton: TargetSkeleton, bone_map: BoneMap) -> tuple[TargetSkeleton, dict[str, int]]:
    """`skeleton` with one undriven end bone at the tail of each bone the map's `tips` name (a one-bone limb's hand
    or foot: it follows its bone rigidly, so the limb carries it and is aimed at it), and {joint: that bone}."""
    if not bone_map.tips:
        return skeleton, {}
    if skeleton.rest_tails is None:
        raise RetargetError(f"bone map {bone_map.name!r}: 'tips' need the bones' tails, which rig "
                            f"{skeleton.name!r} does not give (a BVH file): map every joint to a bone")
    index = skeleton.index
    names, parents = list(skeleton.bone_names), list(skeleton.parents)
    heads, rotations = [skeleton.rest_heads], [skeleton.rest_rotations]
    directions, tails = [skeleton.tail_directions], [skeleton.rest_tails]
    foot_points, added = dict(skeleton.foot_points), {}
    for joint, bone in bone_map.tips.items():
        owner = index[bone]
        added[joint] = len(names)
        names.append(bone + TIP_SUFFIX)
        parents.append(owner)
        heads.append(skeleton.rest_tails[owner][None])
        rotations.append(skeleton.rest_rotations[owner][None])
        directions.append(skeleton.tail_directions[owner][None])
        tails.append(skeleton.rest_tails[owner][None])
        if bone in skeleton.foot_points:  # the foot mesh moves with the limb's one bone
            foot_points[bone + TIP_SUFFIX] = skeleton.foot_points[bone]
    return TargetSkeleton(name=skeleton.name, bone_names=tuple(names), parents=tuple(parents),
                          rest_heads=np.concatenate(heads), rest_rotations=np.concatenate(rotations),
                          tail_directions=np.concatenate(directions), to_humanml3d=skeleton.to_humanml3d,
                          scale_to_metres=skeleton.scale_to_metres, rest_tails=np.concatenate(tails),
                          foot_points=foot_points), added


def plan_retarget(skeleton: TargetSkeleton, bone_map: BoneMap, source_rest: np.ndarray) -> RetargetPlan:
    """Check the map against the rig and compute the rest alignment (see the module docstring)."""
    check_limb_chains(skeleton, bone_map)
    skeleton, tips = with_tip_bones(skeleton, bone_map)
    index = skeleton.index
    parents, order = effective_parents(skeleton, bone_map)
    heads = skeleton.rest_heads_metres()
    driver = {index[bone]: JOINT_INDEX[joint] for joint, bone in bone_map.driven_bones().items()}
    bone_of = {joint: bone for bone, joint in driver.items()}
    specs: dict[int, tuple[int, int, float]] = {}
    for joint in JOINT_NAMES:
        point = bone_map.point_of(joint)
        if point is not None:
            specs[JOINT_INDEX[joint]] = (index[point.first], index[point.second], point.t)
    for joint, bone in tips.items():  # undriven: the limb's bone carries it
        specs[JOINT_INDEX[joint]] = (bone, bone, 0.0)
        bone_of[JOINT_INDEX[joint]] = bone
    carried: dict[int, list[int]] = {}
    for joint, (first, second, t) in specs.items():
        owner = second if t > 0 and first != second else first
        carrier = parents[owner]
        while carrier >= 0 and carrier not in driver:  # undriven bones in between follow rigidly
            carrier = parents[carrier]
        carried.setdefault(carrier if carrier >= 0 else owner, []).append(joint)
    pelvis = bone_of[JOINT_INDEX["pelvis"]]
    plan = RetargetPlan(skeleton=skeleton, bone_map=bone_map, parents=parents, order=order, rest_heads=heads,
                        driver=driver, bone_of=bone_of, point_specs=specs, carried=carried, alignment={},
                        pelvis_bone=pelvis, scale=1.0, placed=[index[name] for name in bone_map.placed],
                        tips=sorted(tips.values()))
    rest_points = plan.rest_points()
    source_rest = np.asarray(source_rest, dtype=np.float64)
    source_leg = _leg_length({j: source_rest[j] for j in range(NUM_JOINTS)})
    plan.scale = _leg_length(rest_points) / max(source_leg, _EPS)
    # Points on the pelvis bone itself (its head) move with its translation: fit them with the rigid root too.
    own = [j for j, (a, b, t) in specs.items() if a == b == pelvis]
    for joint in own:
        if joint not in carried.get(pelvis, []):
            carried.setdefault(pelvis, []).append(joint)
    plan.joint_turned = joint_turned_bones(plan, rest_points, source_rest)

    tails = skeleton.tail_directions_humanml3d()
    for bone in order:
        if bone not in driver:
            continue
        joint = driver[bone]
        base = _ancestor_alignment(plan, bone)
        joints = [k for k in carried.get(bone, []) if np.linalg.norm(rest_points[k] - heads[bone]) > _MIN_VECTOR]
        rig_vectors = np.array([rest_points[k] - heads[bone] for k in joints]).reshape(-1, 3)
        canonical = np.array([source_rest[k] - source_rest[joint] for k in joints]).reshape(-1, 3)
        keep = np.linalg.norm(canonical, axis=-1) > _MIN_VECTOR
        rig_vectors, canonical = rig_vectors[keep], canonical[keep]
        if _spans_plane(rig_vectors) and _spans_plane(canonical):
            plan.alignment[bone] = _kabsch(_unit(canonical), _unit(rig_vectors)[None])[0]
            continue
        if len(rig_vectors):
            rig_direction, canonical_direction = rig_vectors.mean(axis=0), canonical.mean(axis=0)
        else:
            rig_direction = tails[bone]
            children = [c for c, p in enumerate(PARENTS) if p == joint]
            canonical_direction = (source_rest[children].mean(axis=0) - source_rest[joint] if children
                                   else source_rest[joint] - source_rest[max(PARENTS[joint], 0)])
        plan.alignment[bone] = _swing(base @ canonical_direction, rig_direction) @ base
    return plan


def _below(joint: int, ancestor: int) -> bool:
    """Whether canonical `joint` hangs (strictly) below `ancestor`."""
    joint = PARENTS[joint]
    while joint >= 0:
        if joint == ancestor:
            return True
        joint = PARENTS[joint]
    return False


def joint_turned_bones(plan: RetargetPlan, rest_points: dict[int, np.ndarray], source_rest: np.ndarray
                       ) -> dict[int, tuple[int, list[int]]]:
    """The driven bones (not the pelvis bone) that carry their driver joint's own point or a point of a joint above
    it as well as points below it, spanning a plane: {bone: (driver joint, the carried joints below it)}.

    Such a bone spans two or more of the canonical skeleton's joints (Rigify's chest, driven by spine3, carries the
    spine2 and spine3 points and the neck and collars).  Fitted to all its points, its turn is a compromise between
    the joints' turns (a 15-degree bend at spine3 alone turned it 6.8 degrees), while the arms and the neck hanging
    from it are aimed at the source's points: the arm would not move with the chest it hangs from.  Turned as its
    joint turns the points below it, seen from the joint's point, the bone carries the arms and the neck as the
    source's chest carries them."""
    turned: dict[int, tuple[int, list[int]]] = {}
    for bone, joints in plan.carried.items():
        joint = plan.driver.get(bone)
        if joint is None or bone == plan.pelvis_bone or joint not in rest_points:
            continue
        below = [k for k in joints if _below(k, joint)]
        if len(below) == len(joints):
            continue
        rig_vectors = np.array([rest_points[k] - rest_points[joint] for k in below]).reshape(-1, 3)
        canonical = np.array([source_rest[k] - source_rest[joint] for k in below]).reshape(-1, 3)
        if (np.all(np.linalg.norm(rig_vectors, axis=-1) > _MIN_VECTOR) and _spans_plane(rig_vectors)
                and np.all(np.linalg.norm(canonical, axis=-1) > _MIN_VECTOR) and _spans_plane(canonical)):
            turned[bone] = (joint, below)
    return turned


def _is_effective_ancestor(parents: list[int], ancestor: int, bone: int) -> bool:
    while bone >= 0:
        if bone == ancestor:
            return True
        bone = parents[bone]
    return False


def _ancestor_alignment(plan: RetargetPlan, bone: int) -> np.ndarray:
    parent = plan.parents[bone]
    while parent >= 0:
        if parent in plan.alignment:
            return plan.alignment[parent]
        parent = plan.parents[parent]
    return np.eye(3)


# ---- the motion -------------------------------------------------------------------------------------------------
@dataclass
class RetargetedMotion:
    """The rig's pose per frame: world deltas (T, B, 3, 3) and heads (T, B, 3), HumanML3D axes, metres."""

    plan: RetargetPlan
    deltas: np.ndarray
    heads: np.ndarray
    fps: float
    vertical_offset: float = 0.0  # metres the whole body stands above the scaled source (feet on ground)

    @property
    def skeleton(self) -> TargetSkeleton:
        return self.plan.skeleton

    def joint_points(self) -> np.ndarray:
        """(T, 22, 3) the canonical joints as placed on the rig (NaN for joints the map leaves out)."""
        points = np.full((len(self.heads), NUM_JOINTS, 3), np.nan)
        for joint, (a, b, t) in self.plan.point_specs.items():
            points[:, joint] = (1 - t) * self.heads[:, a] + t * self.heads[:, b]
        return points

    def driven_bones(self) -> list[int]:
        return sorted(self.plan.driver)

    def _keyed_parents(self) -> list[int]:
        """The parent each bone's keys are relative to: its effective parent, a placed bone's own parent in the rig."""
        parents = list(self.plan.parents)
        for bone in self.plan.placed:
            parents[bone] = self.skeleton.parents[bone]
        return parents

    def local_rotations(self) -> np.ndarray:
        """(T, B, 3, 3) each bone's rotation relative to its rest, in its own rest axes, relative to its effective
        parent (a placed bone: its parent in the rig) (Blender's pose-bone rotation): M'_b^T D_p^T D_b M'_b."""
        rest = self.skeleton.rest_rotations_humanml3d()
        parents = self._keyed_parents()
        parent_deltas = np.where(np.array(parents)[None, :, None, None] >= 0,
                                 self.deltas[:, np.maximum(parents, 0)], np.eye(3))
        relative = np.swapaxes(parent_deltas, -1, -2) @ self.deltas
        return np.swapaxes(rest, -1, -2) @ relative @ rest

    def local_quaternions(self) -> np.ndarray:
        """(T, B, 4) `local_rotations` as quaternions, sign-continuous along time."""
        quaternions = matrix_to_quat(self.local_rotations())
        flips = np.sum(quaternions[1:] * quaternions[:-1], axis=-1) < 0.0
        signs = np.where(np.cumsum(np.concatenate([np.zeros((1,) + flips.shape[1:], bool), flips]), axis=0) % 2,
                         -1.0, 1.0)
        return quaternions * signs[..., None]

    def placed_locations(self) -> np.ndarray:
        """(T, P, 3) the pose locations (rig units, each bone's rest axes, Blender's pose-bone location) that put the
        map's placed bones (`plan.placed`, in that order) where the motion puts them, from their parents in the rig:
        M'_b^T D_p^T (x_b - x_p - D_p (h_b - h_p)) / s (x posed heads, h rest heads, s the rig's metres per unit)."""
        rest_axes = self.skeleton.rest_rotations_humanml3d()
        rest = self.plan.rest_heads
        located = np.zeros((len(self.heads), len(self.plan.placed), 3))
        for k, bone in enumerate(self.plan.placed):
            parent = self.skeleton.parents[bone]
            if parent < 0:
                offset = self.heads[:, bone] - rest[bone]
            else:
                parent_delta = self.deltas[:, parent]
                offset = np.einsum("tji,tj->ti", parent_delta, self.heads[:, bone] - self.heads[:, parent]) - (
                    rest[bone] - rest[parent])
            located[:, k] = offset @ rest_axes[bone] / self.skeleton.scale_to_metres
        return located

    def pelvis_offset_rig(self) -> np.ndarray:
        """(T, 3) how far the pelvis bone's head moved from its rest head, in rig axes and units."""
        bone = self.plan.pelvis_bone
        moved = self.heads[:, bone] - self.plan.rest_heads[bone]
        return moved @ self.skeleton.to_humanml3d / self.skeleton.scale_to_metres


def needed_bones(skeleton: TargetSkeleton, bone_map: BoneMap) -> TargetSkeleton:
    """`skeleton` cut down to the bones the map names and their ancestors (a Rigify rig has hundreds of face,
    finger and mechanism bones that follow their parents and need no computing), and every bone below an ankle:
    a toe tip the map does not name (Mixamo's `Toe_End`) is still part of the foot that must stay above the floor."""
    bone_map.check(skeleton.bone_names, skeleton.name)
    index = skeleton.index
    keep: set[int] = set()
    named = [index[name] for name in bone_map.referenced_bones()]
    children = skeleton.children()
    for side in ("left", "right"):
        ankle = bone_map.bones.get(f"{side}_ankle")
        stack = [index[ankle]] if ankle else []
        while stack:
            bone = stack.pop()
            named.append(bone)
            stack.extend(children[bone])
    for bone in named:
        while bone >= 0 and bone not in keep:
            keep.add(bone)
            bone = skeleton.parents[bone]
    order = sorted(keep)
    new_index = {old: new for new, old in enumerate(order)}
    return TargetSkeleton(
        name=skeleton.name, bone_names=tuple(skeleton.bone_names[b] for b in order),
        parents=tuple(new_index[skeleton.parents[b]] if skeleton.parents[b] >= 0 else -1 for b in order),
        rest_heads=skeleton.rest_heads[order], rest_rotations=skeleton.rest_rotations[order],
        tail_directions=skeleton.tail_directions[order], to_humanml3d=skeleton.to_humanml3d,
        scale_to_metres=skeleton.scale_to_metres,
        rest_tails=None if skeleton.rest_tails is None else skeleton.rest_tails[order],
        foot_points={name: points for name, points in skeleton.foot_points.items() if index[name] in keep})


def retarget(source: SourceMotion, skeleton: TargetSkeleton, bone_map: BoneMap, leg_ik: bool = True,
             only_needed_bones: bool = False, feet_on_ground: bool = False) -> RetargetedMotion:
    """Pose `skeleton` like `source` frame by frame (see the module docstring).  With `only_needed_bones` the
    result covers only `needed_bones(skeleton, bone_map)` (what keying needs; BVH output needs every joint).  With
    `feet_on_ground` (and `leg_ik`) the rig's own feet stand on its rest floor (`foot_ground.py`)."""
    if only_needed_bones:
        skeleton = needed_bones(skeleton, bone_map)
    positions = np.asarray(source.positions, dtype=np.float64)
    if positions.ndim != 3 or positions.shape[1:] != (NUM_JOINTS, 3) or len(positions) < 1:
        raise RetargetError(f"source positions must have shape (T, {NUM_JOINTS}, 3), got {positions.shape}")
    if not (np.all(np.isfinite(positions)) and np.all(np.isfinite(source.global_rotations))):
        raise RetargetError("source motion contains NaN or infinite values")
    plan = plan_retarget(skeleton, bone_map, source.rest_positions)
    skeleton = plan.skeleton  # with the end bones made at one-bone limbs' tails
    goal = positions * plan.scale
    aim = goal.copy()  # the points the bones are aimed at (`joint_turned_bones` moves those below such a bone)
    rest_points = plan.rest_points()
    heads, rest = plan.rest_heads, plan.rest_heads
    frames, bones = len(positions), len(skeleton.bone_names)
    deltas = np.empty((frames, bones, 3, 3))
    posed = np.empty((frames, bones, 3))
    identity = np.broadcast_to(np.eye(3), (frames, 3, 3))
    for bone in plan.order:
        parent = plan.parents[bone]
        parent_delta = identity if parent < 0 else deltas[:, parent]
        head = (np.broadcast_to(rest[bone], (frames, 3)) if parent < 0
                else posed[:, parent] + parent_delta @ (rest[bone] - rest[parent]))
        if bone not in plan.driver:
            deltas[:, bone], posed[:, bone] = parent_delta, head
            continue
        joint = plan.driver[bone]
        delta = source.global_rotations[:, joint] @ plan.alignment[bone].T
        joints = plan.carried.get(bone, [])
        rig_vectors = np.array([rest_points[k] - heads[bone] for k in joints]).reshape(-1, 3)
        if bone == plan.pelvis_bone:
            if len(joints) >= 2 and _spans_plane(rig_vectors[np.linalg.norm(rig_vectors, axis=-1) > _MIN_VECTOR]):
                targets = goal[:, joints]
                centred_rest = rig_vectors - rig_vectors.mean(axis=0)
                centred_goal = targets - targets.mean(axis=1, keepdims=True)
                delta = _kabsch(centred_rest, centred_goal)
                head = targets.mean(axis=1) - np.einsum("tij,j->ti", delta, rig_vectors.mean(axis=0))
            else:
                pelvis = JOINT_INDEX["pelvis"]
                head = goal[:, pelvis] - np.einsum("tij,j->ti", delta, rest_points[pelvis] - heads[bone])
        else:
            useful = np.linalg.norm(rig_vectors, axis=-1) > _MIN_VECTOR
            joints = [k for k, ok in zip(joints, useful, strict=True) if ok]
            rig_vectors = rig_vectors[useful]
            if bone in plan.joint_turned:
                own, below = plan.joint_turned[bone]
                turned_rest = np.array([rest_points[k] - rest_points[own] for k in below])
                delta = _kabsch(turned_rest, aim[:, below] - aim[:, own, None])
                # The limbs and neck hanging from it are aimed from where it puts its joint's point.
                shift = head + np.einsum("tij,j->ti", delta, rest_points[own] - heads[bone]) - aim[:, own]
                aim[:, [k for k in range(NUM_JOINTS) if _below(k, own)]] += shift[:, None]
            elif joints:
                wanted = aim[:, joints] - head[:, None]
                if _spans_plane(rig_vectors):
                    delta = _kabsch(rig_vectors, wanted)
                else:
                    carried = np.einsum("tij,j->ti", delta, rig_vectors.mean(axis=0))
                    delta = _limited_swing(carried, wanted.mean(axis=1)) @ delta
        deltas[:, bone], posed[:, bone] = delta, head
    motion = RetargetedMotion(plan=plan, deltas=deltas, heads=posed, fps=source.fps)
    if leg_ik:
        _lower_out_of_reach(motion, goal)
        _leg_ik(motion, goal)
    if leg_ik and feet_on_ground:
        motion.vertical_offset = ground_feet(motion, goal, source, _leg_ik)
    return motion


def _leg_bones(plan: RetargetPlan, side: str) -> tuple[int, int, int] | None:
    bones = tuple(plan.bone_of.get(JOINT_INDEX[f"{side}_{n}"]) for n in ("hip", "knee", "ankle"))
    if any(b is None for b in bones):
        return None
    thigh, shin, foot = bones
    if not (_is_effective_ancestor(plan.parents, thigh, shin) and _is_effective_ancestor(plan.parents, shin, foot)):
        return None
    return thigh, shin, foot


def _lower_out_of_reach(motion: RetargetedMotion, goal: np.ndarray) -> None:
    """Where a leg cannot reach its ankle goal (the rig's hips sit higher or wider than the source's), lower the
    whole body by the shortfall so that IK can plant the foot."""
    plan = motion.plan
    shortfall = np.zeros(len(goal))
    for side in ("left", "right"):
        bones = _leg_bones(plan, side)
        if bones is None:
            continue
        thigh, shin, foot = bones
        hip = motion.heads[:, thigh]
        reach = (np.linalg.norm(motion.heads[:, shin] - hip, axis=-1)
                 + np.linalg.norm(motion.heads[:, foot] - motion.heads[:, shin], axis=-1)) * (1 - 2e-5)
        target = goal[:, JOINT_INDEX[f"{side}_ankle"]]
        offset = target - hip
        horizontal = np.linalg.norm(offset[:, [0, 2]], axis=-1)
        needed_height = np.sqrt(np.maximum(reach ** 2 - horizontal ** 2, 0.0))
        # Lowering the hips by h makes the vertical gap |dy| - h: feasible when |dy| - h <= needed_height.
        excess = np.maximum(-offset[:, 1] - needed_height, 0.0)
        shortfall = np.maximum(shortfall, excess)
    if np.any(shortfall > 0):  # the pelvis and everything below it; bones above it (a root) stay where keyed
        moved = _descendants(plan, plan.pelvis_bone, -1)
        motion.heads[:, moved, 1] -= shortfall[:, None]


def _forward(motion: RetargetedMotion) -> None:
    """Recompute heads from deltas (the pelvis bone's head and the roots stay); undriven bones follow parents."""
    plan, rest = motion.plan, motion.plan.rest_heads
    for bone in plan.order:
        parent = plan.parents[bone]
        if parent < 0 or bone == plan.pelvis_bone:
            continue
        if bone not in plan.driver:
            motion.deltas[:, bone] = motion.deltas[:, parent]
        motion.heads[:, bone] = motion.heads[:, parent] + motion.deltas[:, parent] @ (rest[bone] - rest[parent])


def _descendants(plan: RetargetPlan, bone: int, stop: int) -> list[int]:
    """Bones below `bone` (inclusive) up to but excluding the subtree of `stop`."""
    children: dict[int, list[int]] = {}
    for child, parent in enumerate(plan.parents):
        children.setdefault(parent, []).append(child)
    result, stack = [], [bone]
    while stack:
        current = stack.pop()
        if current == stop:
            continue
        result.append(current)
        stack.extend(children.get(current, []))
    return result


def _leg_ik(motion: RetargetedMotion, goal: np.ndarray) -> None:
    """Analytic two-bone IK on each leg: the ankle reaches the scaled source ankle (see the module docstring)."""
    plan = motion.plan
    pelvis = plan.pelvis_bone
    for side in ("left", "right"):
        bones = _leg_bones(plan, side)
        if bones is None:
            _aim_one_bone_leg(motion, goal, side)
            continue
        thigh, shin, foot = bones
        hip, knee, ankle = motion.heads[:, thigh], motion.heads[:, shin], motion.heads[:, foot]
        upper = np.linalg.norm(knee - hip, axis=-1)
        lower = np.linalg.norm(ankle - knee, axis=-1)
        target = goal[:, JOINT_INDEX[f"{side}_ankle"]] + (ankle - _point(motion, JOINT_INDEX[f"{side}_ankle"]))
        reach = target - hip
        distance = np.linalg.norm(reach, axis=-1)
        distance = np.clip(distance, np.abs(upper - lower) + 1e-5, (upper + lower) * (1 - 1e-5))
        direction = _unit(reach)
        forward = np.einsum("tij,j->ti", motion.deltas[:, pelvis], plan.alignment.get(pelvis, np.eye(3)) @
                            np.array([0.0, 0.0, 1.0]))
        pole = knee - hip
        pole = pole - np.sum(pole * direction, axis=-1, keepdims=True) * direction
        fallback = forward - np.sum(forward * direction, axis=-1, keepdims=True) * direction
        weak = np.linalg.norm(pole, axis=-1) < 0.05 * upper
        pole = _unit(np.where(weak[:, None], fallback, pole))
        # A knee never bends backwards: a transferred knee a little behind its leg's line (a nearly straight source
        # leg on a rig whose rest knee sits behind it) is mirrored to the front, its sideways lean kept; bent further
        # to reach a nearer ankle it bent backwards by 30-40 degrees on two downloaded characters.
        front = _unit(fallback)
        behind = np.minimum(np.sum(pole * front, axis=-1), 0.0)
        pole = _unit(pole - 2.0 * behind[:, None] * front)
        cosine = np.clip((upper ** 2 + distance ** 2 - lower ** 2) / (2 * upper * distance), -1.0, 1.0)
        new_knee = hip + upper[:, None] * (cosine[:, None] * direction + np.sqrt(1 - cosine ** 2)[:, None] * pole)
        new_ankle = hip + distance[:, None] * direction
        foot_delta = motion.deltas[:, foot].copy()
        turn_thigh = _swing(knee - hip, new_knee - hip)
        for bone in _descendants(plan, thigh, foot):
            motion.deltas[:, bone] = turn_thigh @ motion.deltas[:, bone]
        turned_ankle_direction = np.einsum("tij,tj->ti", turn_thigh, ankle - knee)
        turn_shin = _swing(turned_ankle_direction, new_ankle - new_knee)
        for bone in _descendants(plan, shin, foot):
            motion.deltas[:, bone] = turn_shin @ motion.deltas[:, bone]
        motion.deltas[:, foot] = foot_delta
        _forward(motion)


def one_bone_leg(plan: RetargetPlan, side: str) -> tuple[int, int] | None:
    """(the leg's one bone, the end bone at its tail) when `side`'s leg is one bone (the map's `tips`), else None."""
    hip = plan.bone_of.get(JOINT_INDEX[f"{side}_hip"])
    ankle = plan.bone_of.get(JOINT_INDEX[f"{side}_ankle"])
    if hip is None or ankle not in plan.tips or plan.parents[ankle] != hip:
        return None
    return hip, ankle


def _aim_one_bone_leg(motion: RetargetedMotion, goal: np.ndarray, side: str) -> None:
    """A one-bone leg turned about the hip so that its tail (the foot) is over the ankle goal, where it cannot be on
    it (the leg cannot shorten when the source's knee bends): a planted foot stays where it is planted, and the body
    is lifted where the foot would go under the floor (`foot_ground.py`)."""
    bones = one_bone_leg(motion.plan, side)
    if bones is None:
        return
    leg, foot = bones
    hip = motion.heads[:, leg]
    length = np.linalg.norm(motion.heads[:, foot] - hip, axis=-1)
    across = (goal[:, JOINT_INDEX[f"{side}_ankle"]] - hip) * np.array([1.0, 0.0, 1.0])
    reach = np.linalg.norm(across, axis=-1)
    across *= (np.minimum(reach, 0.999 * length) / np.maximum(reach, _EPS))[:, None]
    wanted = across - np.sqrt(np.maximum(length ** 2 - np.sum(across ** 2, axis=-1), 0.0))[:, None] * np.array(
        [0.0, 1.0, 0.0])
    turn = _swing(motion.heads[:, foot] - hip, wanted)
    for bone in _descendants(motion.plan, leg, -1):
        motion.deltas[:, bone] = turn @ motion.deltas[:, bone]
    _forward(motion)


def _point(motion: RetargetedMotion, joint: int) -> np.ndarray:
    a, b, t = motion.plan.point_specs[joint]
    return (1 - t) * motion.heads[:, a] + t * motion.heads[:, b]
