# SPDX-License-Identifier: GPL-3.0-or-later
"""Foot-contact cleanup: planted feet stay planted, on one floor height, with unchanged bone lengths (NumPy).

Generated joints slide: a stance foot drifts, wobbles up and down and dips below its own stance level.  This
module fixes that after decoding, in three steps:

1. **Contacts** (`detect_contacts`): per frame and per foot joint (left ankle, left toe, right ankle, right toe,
   the order of HumanML3D's four contact channels), a joint is in contact when the model's contact channel says so
   (> 0.5; without channels, e.g. for real motion, this test is skipped) *and* the geometry agrees: the joint is
   within `height_tolerance` of its ground level (a low percentile of its height over the motion, frames where a foot
   sinks through the floor left out: `ground_levels`) and moves
   horizontally slower than `speed_limit` (with channels, also when slower than `relative_speed_limit` times the
   pelvis' speed: a stance foot the model lets slide along with the body; without channels, e.g. real motion, only
   the fixed limit counts).  Contacts shorter than `min_contact_seconds` are dropped, gaps shorter than that are
   closed.
2. **Locks**: each contact interval of a joint gets one lock position: its mean horizontal position during the
   interval, at the joint's *pinned ground height* (the median height of that joint over all of its contacts, so
   every stance of that joint lands on the same floor).  A held joint is planted, not frozen: it keeps its own
   path's detail around the lock (`stance_detail`: the path minus its straight-line slide, within
   `stance_detail_limit`, 4 mm), the millimetres a real foot settles and rolls by; held exactly still, 60% of
   generated foot frames stood motionless and popped on release.  A toe interval that overlaps an ankle interval of the same
   foot is placed at the foot's length from the ankle lock, along the foot's mean heading in the overlap, so the
   foot keeps its heading and length while fully planted.  Locks blend in and out over `blend_seconds` (smoothstep).
3. **Solve** (`lock_feet`): the motion is first made rigid on the rest skeleton `offsets` (inverse then forward
   kinematics, so every bone has its rest length on every frame and the result is what the rig shows), with its
   feet put back over the floor where `joints` has them (`feet_from_joints`: generated bone lengths vary by 1-2 cm
   from frame to frame, and forward kinematics alone moves the toes by up to 4 cm; at their height under their own
   hip, so a rest leg whose hip sits lower is not folded to reach them); with
   `hold_standing` (generation turns it on, except on root paths) a figure standing on both feet stops gliding:
   the whole body moves back by its planted feet's wander (`hold_standing`); between
   two contacts a foot whose toe would shuffle along the floor is raised to a real step's arc, and any free toe
   that moves fast is lifted off the floor (`swing_clearance.py`); each ankle
   is moved to its lock (a toe-only contact moves the whole foot so the toe lands on its lock, the heel rolling
   about it), the knee and ankle are placed by analytic two-bone IK (`two_bone_ik.py`, knee bending the way it
   bent before, its bend plane averaged over `pole_smoothing_seconds`: read frame by frame off a generated leg it
   swung enough to raise the knees' jerk by 12% on six generated walks of the previous decoder, 2% with the
   shipped one: tests/test_swing_clearance.py), and the
   toe is turned towards its lock at the foot's length.  Where a lock is out of the leg's
   reach, the pelvis (with the whole upper body) is lowered just enough, but never more than `max_pelvis_drop` (5 cm:
   at 10 cm generated walks crouched visibly, by 6 cm on average), and from `drop_seconds` (0.5 s) before to as
   long after the need, so it sinks and rises over about half a stride (within the lock's blend, 0.2 s, an upright
   walker's leg that could not reach its held foot at the end of each stance lowered the hips once a stride: a
   limp, "someone walks" at two rises a stride in 0.65 of its windows instead of 0.93, `benchmarks/results/gait.md`;
   over 1 s a real dance was carried lower for longer than its clip, 3.2 cm from it on average); and a
   contact whose joint wanders more than `max_lock_drift` (15 cm) from where it
   began ends there and starts again (`split_drifting_contacts`), so a body the model glides over the floor with
   its feet "down" re-plants them instead of sinking into a crouch it never made.  A held joint still out of reach
   with the pelvis lowered that far is let go of on those frames (the stretched leg reaches towards it: a trailing
   stance foot the model holds too long lifts its heel), so every frame `contacts` reports held is held.  Real stance feet (the shipped
   tests' walks, runs, kicks and a dance) keep their whole contacts.

The result is positions only; `MotionResult.from_joints` (or `foot_locked_motion`) recomputes the bone rotations
from them, so BVH and Blender get exactly the cleaned motion.  Axes: HumanML3D (metres, Y up).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..common.boolean_runs import true_runs
from ..common.errors import KMMError
from ..common.smoothstep import smoothstep
from .kinematics import forward_kinematics, inverse_kinematics, reaim_joints
from .skeleton import JOINT_INDEX, NUM_JOINTS, tpose_offsets
from .swing_clearance import swing_lift, widen_and_smooth
from .time_filters import gaussian_smooth
from .two_bone_ik import bend_pole, solve_two_bone

CONTACT_JOINTS: tuple[int, ...] = (JOINT_INDEX["left_ankle"], JOINT_INDEX["left_foot"],
                                   JOINT_INDEX["right_ankle"], JOINT_INDEX["right_foot"])
"""Joints of the four contact columns, in HumanML3D's channel order (features 259:263)."""
CONTACT_NAMES: tuple[str, ...] = ("left_ankle", "left_foot", "right_ankle", "right_foot")
# (hip, knee, ankle, toe) and the contact columns of (ankle, toe) for each leg.
LEGS: tuple[tuple[tuple[int, int, int, int], tuple[int, int]], ...] = (
    ((JOINT_INDEX["left_hip"], JOINT_INDEX["left_knee"], JOINT_INDEX["left_ankle"], JOINT_INDEX["left_foot"]), (0, 1)),
    ((JOINT_INDEX["right_hip"], JOINT_INDEX["right_knee"], JOINT_INDEX["right_ankle"], JOINT_INDEX["right_foot"]),
     (2, 3)),
)


TOE_COLUMNS = (1, 3)
# Metres a held joint may be left from its lock before the frame is let go of (out of the leg's reach).
HELD_MISS_TOLERANCE = 0.002
STANDING_PATH_SIGMA = 4.0
"""Frames (Gaussian sigma) over which the feet's path is smoothed before `hold_standing` takes it back: their wander,
not their frame-to-frame noise (which would otherwise move onto the whole body)."""
TOE_GROUND_HEIGHT = 0.003
"""Metres above y = 0 where a held toe joint stands: the median toe height during contact of real Bandai-Namco
walks and runs after HumanML3D preprocessing is 0.002-0.006 m (their floor is the clip's lowest joint)."""


class FootContactError(KMMError, ValueError):
    """Bad input to the foot-contact cleanup (names the argument)."""


@dataclass(frozen=True)
class FootLockSettings:
    """Thresholds of the contact decision and the lock blending (see the module docstring)."""

    channel_threshold: float = 0.5     # a contact channel above this says "in contact"
    height_tolerance: float = 0.04     # metres above the joint's ground level that still count as on the ground
    ground_percentile: float = 10.0    # the joint's ground level: this percentile of its height over the motion
    speed_limit: float = 0.5           # m/s horizontal: faster is a step, whatever the channel says
    relative_speed_limit: float = 0.8  # with channels: or slower than this fraction of the pelvis' horizontal speed
    min_contact_seconds: float = 0.1   # shorter contacts are dropped, shorter gaps closed
    blend_seconds: float = 0.2         # locks fade in before and out after each contact over this long
    reach_slack: float = 0.002         # metres the stretched leg keeps from full extension when lowering the pelvis
    pin_floor: bool = True             # move the motion so held toes stand at TOE_GROUND_HEIGHT, none below the floor
    floor_height: float = 0.0          # metres: the floor no toe goes below when pin_floor is on
    keep_foot_positions: bool = True   # feet start where `joints` has them (legs re-solved), not where FK puts them
    swing_clearance: bool = True       # between two contacts, raise a shuffling foot to a real step's arc
    max_lock_drift: float = 0.15       # metres a held joint's own path may wander from where its contact began;
    #                                    further, the contact ends and a new one starts (a gliding body re-plants)
    max_pelvis_drop: float = 0.05      # metres the pelvis may be lowered so held feet stay in reach, never more
    drop_seconds: float = 0.5          # ... lowered this long before and raised this long after it is needed
    pole_smoothing_seconds: float = 0.075  # the knees' bend plane averaged over this (Gaussian sigma) before IK
    stance_detail_limit: float = 0.004  # metres of its own settling and rolling a held joint keeps (0: held still)
    hold_standing: bool = False        # standing (both feet held) keeps the body from drifting: `hold_standing`
    standing_seconds: float = 0.5      # both feet held at least this long counts as standing
    standing_drift_limit: float = 0.25  # m/s: a standing stretch drifting faster is travel, left as it is

    def __post_init__(self) -> None:
        for name in ("height_tolerance", "speed_limit", "min_contact_seconds", "blend_seconds", "reach_slack",
                     "max_lock_drift", "max_pelvis_drop", "drop_seconds", "pole_smoothing_seconds", "stance_detail_limit",
                     "standing_seconds", "standing_drift_limit"):
            if not np.isfinite(getattr(self, name)) or getattr(self, name) < 0:
                raise FootContactError(f"{name}: must be a number >= 0, got {getattr(self, name)!r}")
        if not 0 <= self.ground_percentile <= 100:
            raise FootContactError(f"ground_percentile: must be in 0..100, got {self.ground_percentile!r}")


@dataclass(frozen=True)
class FootLockResult:
    """Cleaned joints (T, 22, 3), the contacts used (T, 4) bool, the pinned ground height of each contact joint
    (4,) (NaN for a joint that never touches the ground), how far the pelvis was lowered per frame (T,) and how
    far the whole motion was moved up to stand on the floor (metres, negative = down)."""

    joints: np.ndarray
    contacts: np.ndarray
    ground_heights: np.ndarray
    pelvis_drop: np.ndarray
    floor_shift: float = 0.0


# ---- checks -----------------------------------------------------------------------------------------------------
def _check_joints(joints: np.ndarray) -> np.ndarray:
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (NUM_JOINTS, 3) or joints.shape[0] < 1:
        raise FootContactError(f"joints: expected shape (T, {NUM_JOINTS}, 3) with T >= 1, got {joints.shape}")
    if not np.all(np.isfinite(joints)):
        raise FootContactError("joints: contain NaN or infinite values")
    return joints


def _check_fps(fps: float) -> float:
    if not isinstance(fps, int | float | np.integer | np.floating) or not np.isfinite(fps) or fps <= 0:
        raise FootContactError(f"fps: must be a positive number, got {fps!r}")
    return float(fps)


def _check_contacts(contacts: np.ndarray, frames: int, name: str = "contacts") -> np.ndarray:
    contacts = np.asarray(contacts)
    if contacts.shape != (frames, len(CONTACT_JOINTS)):
        raise FootContactError(f"{name}: expected shape ({frames}, {len(CONTACT_JOINTS)}) (one column per "
                               f"{', '.join(CONTACT_NAMES)}), got {contacts.shape}")
    if contacts.dtype.kind not in "biuf" or not np.all(np.isfinite(contacts)):
        raise FootContactError(f"{name}: must hold finite numbers or booleans")
    return contacts


# ---- step 1: contacts ------------------------------------------------------------------------------------------
def horizontal_speed(joints: np.ndarray, fps: float) -> np.ndarray:
    """(T, J) horizontal (xz) speed of every joint in m/s, central differences (one-sided at the ends)."""
    xz = np.asarray(joints, dtype=np.float64)[..., [0, 2]]
    if xz.shape[0] < 2:
        return np.zeros(xz.shape[:2])
    return np.linalg.norm(np.gradient(xz, axis=0), axis=-1) * fps


def clean_runs(mask: np.ndarray, min_frames: int) -> np.ndarray:
    """Close gaps shorter than `min_frames` between runs, then drop runs shorter than `min_frames`."""
    mask = mask.astype(bool).copy()
    runs = true_runs(mask)
    for (_, end), (start, _) in zip(runs[:-1], runs[1:], strict=True):
        if start - end < min_frames:
            mask[end:start] = True
    for start, end in true_runs(mask):
        if end - start < min_frames:
            mask[start:end] = False
    return mask


def ground_levels(heights: np.ndarray, settings: FootLockSettings = FootLockSettings()) -> np.ndarray:
    """(4,) each foot joint's ground level from its heights (T, 4): their `ground_percentile` over the frames where no
    foot joint is sunk more than `height_tolerance` below `floor_height` (over every frame when those are under
    half of them).  A generated stance foot driven through the floor for a second (a deep kick's, its toe 7-11 cm
    under it) would otherwise drag that joint's ground level down with it, and the same foot walking before it would
    be held nowhere (tests/test_foot_contact.py)."""
    sound = heights.min(axis=1) >= settings.floor_height - settings.height_tolerance
    return np.percentile(heights[sound] if 2 * int(sound.sum()) >= len(heights) else heights,
                         settings.ground_percentile, axis=0)


def detect_contacts(joints: np.ndarray, fps: float, channels: np.ndarray | None = None,
                    settings: FootLockSettings = FootLockSettings()) -> np.ndarray:
    """(T, 4) bool contacts of the left ankle, left toe, right ankle, right toe (see the module docstring).

    `channels` (T, 4) are the model's contact channels (denormalised HumanML3D features 259:263) at the same
    frames; None decides by geometry alone.
    """
    joints = _check_joints(joints)
    fps = _check_fps(fps)
    frames = joints.shape[0]
    heights = joints[:, CONTACT_JOINTS, 1]
    ground = ground_levels(heights, settings)
    contact = heights < ground[None] + settings.height_tolerance
    speed = horizontal_speed(joints, fps)
    limit = np.full(frames, settings.speed_limit)
    if channels is not None:
        contact &= _check_contacts(channels, frames, "channels") > settings.channel_threshold
        # The model says contact and the foot is on the ground, slower than the body: a stance foot that slides.
        limit = np.maximum(limit, settings.relative_speed_limit * speed[:, 0])
    contact &= speed[:, CONTACT_JOINTS] < limit[:, None]
    min_frames = max(1, int(round(settings.min_contact_seconds * fps)))
    return np.stack([clean_runs(contact[:, k], min_frames) for k in range(len(CONTACT_JOINTS))], axis=1)


# ---- step 2: locks -----------------------------------------------------------------------------------------------
def stance_detail(path: np.ndarray, limit: float) -> np.ndarray:
    """(T, 3) what a held joint keeps of its own `path` (T, 3) during one contact: the path minus its straight-line
    fit over the contact (the slide the lock removes), never farther than `limit` metres from that line (so the
    joint stays within 2 x `limit` of where its contact began).

    A real planted foot is never exactly still: it settles and rolls by millimetres (heel strike, foot flat, heel
    off).  Holding it on one point for the whole contact froze it (60% of generated foot frames stood exactly
    still, real feet almost never do) and made it pop on release; keeping this detail plants it without freezing it,
    and a foot the model slides keeps none of the slide (a linear drift is removed whole)."""
    path = np.asarray(path, dtype=np.float64)
    if limit <= 0 or path.shape[0] < 3:
        return np.zeros_like(path)
    # Least squares on the centred frame number: its two columns (t - mean, 1) are orthogonal, so the slope and the
    # mean are fitted apart, in closed form.
    centred = np.arange(path.shape[0], dtype=np.float64)
    centred -= centred.mean()
    slope = centred @ path / (centred @ centred)
    detail = path - path.mean(axis=0) - centred[:, None] * slope
    size = np.linalg.norm(detail, axis=-1, keepdims=True)
    return detail * np.minimum(1.0, limit / np.maximum(size, 1e-12))


def lock_track(runs: list[tuple[int, int]], locks: list[np.ndarray], positions: np.ndarray, blend: int,
                detail_limit: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame lock weight (T,) and correction (T, 3) of one joint whose unlocked path is `positions` (T, 3).

    Inside a run the correction moves the joint onto the run's lock (weight 1) plus its `stance_detail` (none when
    `detail_limit` is 0).  For `blend` frames before and after (never past the middle of the gap to the neighbouring
    run) the joint keeps its own motion, offset by the correction it needs at the run's first or last frame, fading
    with a smoothstep weight: a foot lands and lifts off with its own velocity instead of being dragged towards the
    lock while it still swings.
    """
    frames = positions.shape[0]
    weight = np.zeros(frames)
    correction = np.zeros((frames, 3))
    for index, ((start, end), lock) in enumerate(zip(runs, locks, strict=True)):
        weight[start:end] = 1.0
        correction[start:end] = lock + stance_detail(positions[start:end], detail_limit) - positions[start:end]
        before = blend if index == 0 else min(blend, (start - runs[index - 1][1]) // 2)
        after = blend if index == len(runs) - 1 else min(blend, (runs[index + 1][0] - end) // 2)
        for frames_out, edge, step in ((before, start, -1), (after, end - 1, 1)):
            distance = np.arange(1, frames_out + 1)
            frame = edge + step * distance
            inside = (frame >= 0) & (frame < frames)
            frame, distance = frame[inside], distance[inside]
            fade = smoothstep(1.0 - distance / (frames_out + 1))
            stronger = fade > weight[frame]
            weight[frame[stronger]] = fade[stronger]
            correction[frame[stronger]] = correction[edge]
    return weight, correction


def _ground_heights(joints: np.ndarray, contacts: np.ndarray) -> np.ndarray:
    heights = np.full(len(CONTACT_JOINTS), np.nan)
    for column, joint in enumerate(CONTACT_JOINTS):
        if contacts[:, column].any():
            heights[column] = float(np.median(joints[contacts[:, column], joint, 1]))
    return heights


def _foot_locks(joints: np.ndarray, contacts: np.ndarray, ground: np.ndarray, leg: tuple[int, int, int, int],
                columns: tuple[int, int], foot_length: float) -> dict[str, tuple[list, list]]:
    """Lock runs and positions of one foot's ankle and toe (the toe placed from the ankle where both touch)."""
    _, _, ankle, toe = leg
    ankle_runs = true_runs(contacts[:, columns[0]])
    ankle_locks = []
    for start, end in ankle_runs:
        xz = joints[start:end, ankle, [0, 2]].mean(axis=0)
        ankle_locks.append(np.array([xz[0], ground[columns[0]], xz[1]]))
    toe_runs = true_runs(contacts[:, columns[1]])
    toe_locks = []
    for start, end in toe_runs:
        xz = joints[start:end, toe, [0, 2]].mean(axis=0)
        lock = np.array([xz[0], ground[columns[1]], xz[1]])
        overlaps = [min(end, b) - max(start, a) for a, b in ankle_runs]
        if overlaps and max(overlaps) > 0:
            which = int(np.argmax(overlaps))
            a, b = ankle_runs[which]
            shared = slice(max(start, a), min(end, b))
            heading = (joints[shared, toe] - joints[shared, ankle])[:, [0, 2]].mean(axis=0)
            rise = lock[1] - ankle_locks[which][1]
            flat = np.sqrt(max(foot_length ** 2 - rise ** 2, 0.0))
            if np.linalg.norm(heading) > 1e-6:
                heading = heading / np.linalg.norm(heading)
                base = ankle_locks[which]
                lock = np.array([base[0] + flat * heading[0], base[1] + rise, base[2] + flat * heading[1]])
        toe_locks.append(lock)
        # Other ankle runs inside this toe contact (the heel lifting and landing again while the ball of the foot
        # pivots): their locks move onto the circle the ankle can reach around the held toe, at their own height.
        for other, (a, b) in enumerate(ankle_runs):
            if min(end, b) - max(start, a) > 0 and (not overlaps or other != int(np.argmax(overlaps))):
                base = ankle_locks[other]
                rise = lock[1] - base[1]
                flat = np.sqrt(max(foot_length ** 2 - rise ** 2, 0.0))
                away = (base - lock)[[0, 2]]
                if np.linalg.norm(away) > 1e-6:
                    away = away / np.linalg.norm(away)
                    ankle_locks[other] = np.array([lock[0] + flat * away[0], base[1], lock[2] + flat * away[1]])
    return {"ankle": (ankle_runs, ankle_locks), "toe": (toe_runs, toe_locks)}


def feet_from_joints(rigid: np.ndarray, joints: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """`rigid` with each foot put back where `joints` has it, as far below the rigid hip as it is below its own hip
    in `joints`: the ankle over the floor where `joints` has it, at `joints`' ankle height less its hip's plus the
    rigid hip's height, the toe at the rest foot length along `joints`' ankle->toe direction (the knees are
    re-solved by `lock_feet`).  The rest skeleton's hips sit 2 cm lower under the pelvis than the prepared data's,
    from which the model learnt; feet kept at the rigid leg's height (or at their generated height) folded the rest
    leg to reach them: the default's standing knees came out at 144-148 degrees where the decoded joints stand at
    151-160 (real standing 159, `benchmarks/measure_gait.py`).  Hung from the hip with the reach scaled to the rest
    leg's length as well, a crouched crawl stood 8 cm taller and the knees gained less.  The floor itself is found
    again by the locks and `pin_floor`."""
    out = rigid.copy()
    lengths = np.linalg.norm(offsets, axis=-1)
    for (hip, _, ankle, toe), _ in LEGS:
        out[:, ankle] = joints[:, ankle]
        out[:, ankle, 1] += rigid[:, hip, 1] - joints[:, hip, 1]
        direction = joints[:, toe] - joints[:, ankle]
        direction /= np.maximum(np.linalg.norm(direction, axis=-1, keepdims=True), 1e-9)
        out[:, toe] = out[:, ankle] + lengths[toe] * direction
    return out


# ---- step 3: solve -------------------------------------------------------------------------------------------------
def hold_standing(joints: np.ndarray, contacts: np.ndarray, fps: float, settings: FootLockSettings) -> np.ndarray:
    """`joints` (T, 22, 3) with the body's horizontal glide removed wherever it stands: in every stretch of at least
    `standing_seconds` with all four foot joints in contact, the whole body moves back by its feet's (smoothed) path
    (planted feet do not travel: a real figure's feet stay put while its hips shift weight, and that shift is kept),
    and the frames after it follow on from where it ends (the whole body shifted, so later steps and their timing
    are unchanged).  A figure the model lets glide and wander while it stands (0.06-0.1 m/s, 2-3x real) then stays
    where it stands; feet moving faster than `standing_drift_limit` on average are travel and are left alone."""
    frames = joints.shape[0]
    min_frames = max(2, int(round(settings.standing_seconds * fps)))
    drift = np.zeros((frames, 2))
    for start, end in true_runs(np.asarray(contacts, dtype=bool).all(axis=1)):
        if end - start < min_frames:
            continue
        path = joints[start:end][:, list(CONTACT_JOINTS)][..., [0, 2]].mean(axis=1)
        steps = np.diff(gaussian_smooth(path, STANDING_PATH_SIGMA, truncate=2.0), axis=0)  # metres per frame
        if np.linalg.norm(steps, axis=-1).mean() * fps <= settings.standing_drift_limit:
            drift[start:end - 1] = steps
    if not drift.any():
        return joints
    # The removed displacement, accumulated frame by frame; its rate eased in and out over a few frames.
    rate = gaussian_smooth(drift, 1.5, truncate=2.0)
    removed = np.concatenate([np.zeros((1, 2)), np.cumsum(rate, axis=0)[:-1]])
    held = joints.copy()
    held[..., 0] -= removed[:, None, 0]
    held[..., 2] -= removed[:, None, 1]
    return held


def split_drifting_contacts(joints: np.ndarray, contacts: np.ndarray, max_drift: float, gap: int) -> np.ndarray:
    """Contacts (T, 4) whose runs end where the joint's own path has moved more than `max_drift` metres
    (horizontally) from where the run began; a new run starts `gap` frames later.  A body the model lets glide
    over the floor with its feet "in contact" then re-plants its feet every `max_drift` instead of being held on one
    spot and dragged down to reach it (real stance feet move a few centimetres at most, so their runs stay whole)."""
    contacts = np.array(contacts, dtype=bool, copy=True)
    for column, joint in enumerate(CONTACT_JOINTS):
        path = joints[:, joint][:, [0, 2]]
        for start, end in true_runs(contacts[:, column]):
            anchor = start
            while anchor < end:  # one vectorised search per re-plant, not a Python step per frame
                beyond = np.flatnonzero(np.linalg.norm(path[anchor:end] - path[anchor], axis=-1) > max_drift)
                if not beyond.size:
                    break
                released = anchor + int(beyond[0])
                anchor = min(end, released + max(1, gap))
                contacts[released:anchor, column] = False
    return contacts


def _pelvis_drop(hips: list[np.ndarray], ankles: list[np.ndarray], weights: list[np.ndarray], reach: list[float],
                 frames_around: int) -> np.ndarray:
    """(T,) metres to lower the pelvis so every weighted ankle target is within its leg's reach, held
    `frames_around` frames before and after each need and smoothed."""
    frames = hips[0].shape[0]
    drop = np.zeros(frames)
    for hip, ankle, weight, length in zip(hips, ankles, weights, reach, strict=True):
        horizontal = np.linalg.norm((ankle - hip)[:, [0, 2]], axis=-1)
        vertical = hip[:, 1] - ankle[:, 1]
        room = np.sqrt(np.maximum(length ** 2 - horizontal ** 2, 0.0))
        needed = np.where(weight > 0, np.maximum(vertical - room, 0.0), 0.0)
        drop = np.maximum(drop, needed)
    # Each dip widened on both sides by `frames_around` (`drop_seconds`) and smoothed, so the body sinks and rises
    # over about half a second, never less deep than needed.
    return widen_and_smooth(drop, frames_around)


def lock_feet(joints: np.ndarray, fps: float, contacts: np.ndarray, offsets: np.ndarray | None = None,
              settings: FootLockSettings = FootLockSettings(), rigid: np.ndarray | None = None) -> FootLockResult:
    """Joints (T, 22, 3) on the rest skeleton `offsets` (default the T-pose) with every contact of `contacts`
    (T, 4) held in place; see the module docstring.  `rigid` (T, 22, 3): the motion already posed on `offsets`
    (forward kinematics of its rotations), which saves the inverse kinematics that would make it."""
    joints = _check_joints(joints)
    fps = _check_fps(fps)
    contacts = _check_contacts(contacts, joints.shape[0]).astype(bool)
    offsets = tpose_offsets() if offsets is None else np.asarray(offsets, dtype=np.float64)
    if offsets.shape != (NUM_JOINTS, 3):
        raise FootContactError(f"offsets: expected shape ({NUM_JOINTS}, 3), got {offsets.shape}")
    if rigid is None:
        rigid = forward_kinematics(*inverse_kinematics(joints, offsets), offsets)
    else:
        rigid = _check_joints(rigid).copy()
        if rigid.shape != joints.shape:
            raise FootContactError(f"rigid: expected shape {joints.shape}, got {rigid.shape}")
    if settings.keep_foot_positions:
        rigid = feet_from_joints(rigid, joints, offsets)
    if settings.hold_standing:
        rigid = hold_standing(rigid, contacts, fps, settings)
    blend = max(0, int(round(settings.blend_seconds * fps)))
    contacts = split_drifting_contacts(rigid, contacts, settings.max_lock_drift, blend)
    ground = _ground_heights(rigid, contacts)
    floor_shift = 0.0
    toes = ground[list(TOE_COLUMNS)]
    if settings.pin_floor and np.isfinite(toes).any():
        # One floor: both toes stand at TOE_GROUND_HEIGHT, the whole motion moved up or down to match.
        floor_shift = TOE_GROUND_HEIGHT - float(np.nanmin(toes))
        rigid[..., 1] += floor_shift
        ground = ground + floor_shift
        ground[list(TOE_COLUMNS)] = np.where(np.isfinite(toes), TOE_GROUND_HEIGHT, np.nan)
    lengths = np.linalg.norm(offsets, axis=-1)
    cleaned, drop, missed = _solve_legs(rigid, contacts, ground, lengths, fps, blend, settings)
    # A held joint the leg cannot reach even with the pelvis lowered as far as allowed is let go of on those frames:
    # the stretched leg reaches towards its lock (a trailing stance foot the model holds too long lifts its heel),
    # and `contacts` reports only the frames that are held.
    contacts = contacts & ~missed
    return FootLockResult(joints=cleaned, contacts=contacts, ground_heights=ground, pelvis_drop=drop,
                          floor_shift=floor_shift)


def _solve_legs(rigid: np.ndarray, contacts: np.ndarray, ground: np.ndarray, lengths: np.ndarray, fps: float,
                blend: int, settings: FootLockSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The legs of `rigid` moved onto the locks of `contacts` (the solve step of `lock_feet`): cleaned joints
    (T, 22, 3), the pelvis drop (T,) and (T, 4) bool: held frames whose joint is left more than
    `HELD_MISS_TOLERANCE` from its lock (out of the leg's reach, or moved off it to keep the foot's length)."""
    frames = rigid.shape[0]
    plans = []
    # Where each foot joint is on the floor by geometry alone, as REAL_SWING_PROFILE's swings were cut: a toe still
    # rolling off the floor after its contact ends (the model's contact channel ends first) is not yet swinging.
    on_floor = detect_contacts(rigid, fps, None, settings) if settings.swing_clearance else contacts
    for leg, columns in LEGS:
        hip, knee, ankle, toe = leg
        locks = _foot_locks(rigid, contacts, ground, leg, columns, lengths[toe])
        ankle_weight, ankle_correction = lock_track(*locks["ankle"], rigid[:, ankle], blend,
                                                     settings.stance_detail_limit)
        toe_weight, toe_correction = lock_track(*locks["toe"], rigid[:, toe], blend, settings.stance_detail_limit)
        # The ankle takes its own correction, or (toe-only contact) the toe's, so the whole foot moves with the toe
        # and the heel rolls about it.
        shift = (ankle_weight[:, None] * ankle_correction
                 + ((1.0 - ankle_weight) * toe_weight)[:, None] * toe_correction)
        toe_aim = rigid[:, toe] + (1.0 - toe_weight)[:, None] * shift + toe_weight[:, None] * toe_correction
        if settings.swing_clearance and np.isfinite(ground[columns[1]]):
            # Between two contacts the whole foot is raised where its toe would shuffle along the floor.
            held = contacts[:, columns[0]] | contacts[:, columns[1]] | on_floor[:, columns[0]] | on_floor[:, columns[1]]
            raise_by = swing_lift(toe_aim, held, fps, float(ground[columns[1]]))
            toe_aim[:, 1] += raise_by
            shift[:, 1] += raise_by
        # Never below the floor: a toe that would dip under it is lifted, with the whole foot when the ankle is
        # free, by turning the foot about a held ankle otherwise.
        lift = np.maximum(0.0, settings.floor_height - toe_aim[:, 1]) if settings.pin_floor else np.zeros(frames)
        toe_aim[:, 1] += lift
        shift[:, 1] += lift * (1.0 - ankle_weight)
        # A free ankle stays at the foot's length from a held toe, so the toe lands exactly on its lock (a held
        # ankle has its own lock, placed consistently with the toe's in _foot_locks).
        ankle_target = rigid[:, ankle] + shift
        from_toe = ankle_target - toe_aim
        on_sphere = toe_aim + lengths[toe] * from_toe / np.maximum(
            np.linalg.norm(from_toe, axis=-1, keepdims=True), 1e-9)
        pull = np.where(toe_weight >= 1.0, 1.0, toe_weight * (1.0 - ankle_weight))
        ankle_target += pull[:, None] * (on_sphere - ankle_target)
        plans.append((leg, ankle_target, toe_aim, np.maximum(ankle_weight, toe_weight),
                      rigid[:, ankle] + ankle_correction, rigid[:, toe] + toe_correction))  # the locks

    reach = [lengths[leg[1]] + lengths[leg[2]] - settings.reach_slack for leg, *_ in plans]
    drop = _pelvis_drop([rigid[:, leg[0]] for leg, *_ in plans], [plan[1] for plan in plans],
                        [plan[3] for plan in plans], reach, int(round(settings.drop_seconds * fps)))
    # Never a crouch the model did not make: past this, a held foot the leg cannot reach is let go of as far as
    # needed (the leg stretches towards it) rather than the body sinking to it.
    drop = np.minimum(drop, settings.max_pelvis_drop)
    cleaned = rigid.copy()
    cleaned[..., 1] -= drop[:, None]
    for (hip, knee, ankle, toe), ankle_target, toe_aim, *_ in plans:
        pole = bend_pole(rigid[:, hip], rigid[:, knee], rigid[:, ankle], rigid[:, toe] - rigid[:, ankle])
        if settings.pole_smoothing_seconds > 0:  # the bend plane read off a noisy leg swings from frame to frame
            pole = gaussian_smooth(pole, settings.pole_smoothing_seconds * fps, truncate=2.0)
        new_knee, new_ankle = solve_two_bone(cleaned[:, hip], ankle_target, pole, lengths[knee], lengths[ankle])
        direction = toe_aim - new_ankle
        direction /= np.maximum(np.linalg.norm(direction, axis=-1, keepdims=True), 1e-9)
        cleaned[:, knee] = new_knee
        cleaned[:, ankle] = new_ankle
        new_toe = new_ankle + lengths[toe] * direction
        if settings.pin_floor:  # a toe still under the floor turns up about the ankle, keeping its heading
            under = new_toe[:, 1] < settings.floor_height
            drop_to_floor = np.clip(new_ankle[:, 1] - settings.floor_height, 0.0, lengths[toe])
            flat = np.sqrt(lengths[toe] ** 2 - drop_to_floor ** 2)
            heading = direction[:, [0, 2]] / np.maximum(np.linalg.norm(direction[:, [0, 2]], axis=-1,
                                                                       keepdims=True), 1e-9)
            raised = np.stack([new_ankle[:, 0] + flat * heading[:, 0], new_ankle[:, 1] - drop_to_floor,
                               new_ankle[:, 2] + flat * heading[:, 1]], axis=-1)
            new_toe = np.where(under[:, None], raised, new_toe)
        cleaned[:, toe] = new_toe
    missed = np.zeros(contacts.shape, dtype=bool)
    for (leg, columns), (*_, ankle_lock, toe_lock) in zip(LEGS, plans, strict=True):
        for column, joint, lock in ((columns[0], leg[2], ankle_lock), (columns[1], leg[3], toe_lock)):
            missed[:, column] = contacts[:, column] & (
                np.linalg.norm(cleaned[:, joint] - lock, axis=-1) > HELD_MISS_TOLERANCE)
    return cleaned, drop, missed


def clean_foot_contacts(joints: np.ndarray, fps: float, channels: np.ndarray | None = None,
                        offsets: np.ndarray | None = None, settings: FootLockSettings = FootLockSettings(),
                        rigid: np.ndarray | None = None) -> FootLockResult:
    """`detect_contacts` then `lock_feet`: the whole cleanup of a motion (T, 22, 3) at `fps`."""
    contacts = detect_contacts(joints, fps, channels, settings)
    return lock_feet(joints, fps, contacts, offsets, settings, rigid)


# ---- on a MotionResult ------------------------------------------------------------------------------------------------
def channels_at_fps(channels: np.ndarray, channels_fps: float, num_frames: int, fps: float) -> np.ndarray:
    """Contact channels (T', 4) sampled at `channels_fps` picked for the `num_frames` frames of a motion at `fps`
    (nearest frame in time: frame i stands for time i / fps)."""
    channels = np.asarray(channels, dtype=np.float64)
    if channels.ndim != 2 or channels.shape[1] != len(CONTACT_JOINTS) or channels.shape[0] < 1:
        raise FootContactError(f"channels: expected shape (T, {len(CONTACT_JOINTS)}), got {channels.shape}")
    source = np.rint(np.arange(num_frames) * _check_fps(channels_fps) / _check_fps(fps)).astype(np.int64)
    return channels[np.minimum(source, channels.shape[0] - 1)]


def foot_locked_motion(motion, channels: np.ndarray | None = None,
                       settings: FootLockSettings = FootLockSettings()):
    """The MotionResult `motion` with its feet held on their contacts: joints cleaned at the motion's own fps and
    rest skeleton, bone rotations recomputed from them (so BVH and Blender show the cleaned motion), `foot_lock`
    set and the contacts recorded in `foot_contacts`.  `channels` (T, 4) are contact channels at the motion's
    frames (see `channels_at_fps`), None for geometry alone."""
    from .motion_result import MotionResult  # the motion-basics layer: no torch

    offsets = np.asarray(motion.rest_offsets, dtype=np.float64)
    posed = forward_kinematics(motion.root_translation, motion.local_rotations, offsets)  # what the rig shows now
    cleaned = clean_foot_contacts(motion.joints, motion.fps, channels, offsets, settings, rigid=posed)
    # Only the legs changed (the rest of the body at most moved up or down): re-solve their rotations alone.
    leg_joints = [joint for leg, _ in LEGS for joint in leg]
    root, rotations = reaim_joints(cleaned.joints, motion.local_rotations, leg_joints, offsets)
    joints = forward_kinematics(root, rotations, offsets)
    return MotionResult(fps=motion.fps, joints=joints, root_translation=root, local_rotations=rotations,
                        rest_offsets=offsets, joint_names=motion.joint_names, segment_frames=motion.segment_frames,
                        segment_prompts=motion.segment_prompts, timeline_json=motion.timeline_json, foot_lock=True,
                        foot_contacts=cleaned.contacts.astype(np.uint8), loop_offset=motion.loop_offset)
