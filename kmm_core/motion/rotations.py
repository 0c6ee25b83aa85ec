# SPDX-License-Identifier: GPL-3.0-or-later
"""Rotation conversions in NumPy: quaternions (w, x, y, z), matrices, 6D, axis-angle, Euler angles.

Conventions: quaternions are (w, x, y, z) and act on column vectors (v' = q v q*); rotation matrices act on
column vectors (v' = R v); the 6D representation is the first two *columns* of R, flattened as
[R00, R10, R20, R01, R11, R21] (HumanML3D's layout).  Every function takes arrays with any leading shape.
"""

from __future__ import annotations

import numpy as np

NORM_FLOOR = 1e-9  # the smallest length a vector is divided by when normalised


def qnormalize(q: np.ndarray) -> np.ndarray:
    return q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), NORM_FLOOR)


def qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b (apply b first, then a)."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack(
        [aw * bw - ax * bx - ay * by - az * bz,
         aw * bx + ax * bw + ay * bz - az * by,
         aw * by - ax * bz + ay * bw + az * bx,
         aw * bz + ax * by - ay * bx + az * bw],
        axis=-1,
    )


def qinv(q: np.ndarray) -> np.ndarray:
    """Inverse of a unit quaternion (its conjugate)."""
    return q * np.array([1.0, -1.0, -1.0, -1.0], dtype=q.dtype)


def qrot(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vectors v (..., 3) by unit quaternions q (..., 4)."""
    w = q[..., :1]
    xyz = q[..., 1:]
    t = 2.0 * np.cross(xyz, v)
    return v + w * t + np.cross(xyz, t)


def qbetween(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Shortest-arc unit quaternion rotating direction u onto direction v."""
    u = u / np.maximum(np.linalg.norm(u, axis=-1, keepdims=True), NORM_FLOOR)
    v = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), NORM_FLOOR)
    w = 1.0 + np.sum(u * v, axis=-1, keepdims=True)
    xyz = np.cross(u, v)
    # Opposite vectors: rotate by pi about any axis perpendicular to u.
    opposite = w[..., 0] < 1e-7
    if np.any(opposite):
        helper = np.where(np.abs(u[..., :1]) < 0.9, np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))
        axis = np.cross(u, helper)
        xyz = np.where(opposite[..., None], axis, xyz)
        w = np.where(opposite[..., None], 0.0, w)
    return qnormalize(np.concatenate([w, xyz], axis=-1))


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    q = qnormalize(q)
    w, x, y, z = np.moveaxis(q, -1, 0)
    m = np.stack(
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
         2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
         2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        axis=-1,
    )
    return m.reshape(q.shape[:-1] + (3, 3))


def matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) to unit quaternions with w >= 0 (numerically stable branch choice)."""
    m = np.asarray(m, dtype=np.float64)
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    candidates = np.stack(
        [
            np.stack([1 + m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01], -1),
            np.stack([m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20], -1),
            np.stack([m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21], -1),
            np.stack([m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22], -1),
        ],
        axis=-2,
    )  # (..., 4, 4): row k is 4*q*q_k, best conditioned where its diagonal term is largest
    diag = np.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    best = np.argmax(diag, axis=-1)
    q = np.take_along_axis(candidates, best[..., None, None].repeat(4, -1), axis=-2)[..., 0, :]
    q = qnormalize(q)
    return np.where(q[..., :1] < 0, -q, q)


def matrix_to_cont6d(m: np.ndarray) -> np.ndarray:
    return np.concatenate([m[..., :, 0], m[..., :, 1]], axis=-1)


def cont6d_to_matrix(d6: np.ndarray) -> np.ndarray:
    """Gram-Schmidt from the 6D representation (first two columns) back to a rotation matrix."""
    a, b = d6[..., :3], d6[..., 3:6]
    x = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), NORM_FLOOR)
    z = np.cross(x, b)
    z = z / np.maximum(np.linalg.norm(z, axis=-1, keepdims=True), NORM_FLOOR)
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=-1)


def quat_to_cont6d(q: np.ndarray) -> np.ndarray:
    return matrix_to_cont6d(quat_to_matrix(q))


def cont6d_to_quat(d6: np.ndarray) -> np.ndarray:
    return matrix_to_quat(cont6d_to_matrix(d6))


def axis_angle_to_quat(aa: np.ndarray) -> np.ndarray:
    angle = np.linalg.norm(aa, axis=-1, keepdims=True)
    half = 0.5 * angle
    # sin(half)/angle with its limit 0.5 near zero
    scale = np.where(angle > 1e-8, np.sin(half) / np.maximum(angle, 1e-12), 0.5 - angle**2 / 48.0)
    return np.concatenate([np.cos(half), aa * scale], axis=-1)


def quat_to_axis_angle(q: np.ndarray) -> np.ndarray:
    q = qnormalize(q)
    q = np.where(q[..., :1] < 0, -q, q)
    sin_half = np.linalg.norm(q[..., 1:], axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(sin_half, q[..., :1])
    scale = np.where(sin_half > 1e-8, angle / np.maximum(sin_half, 1e-12), 2.0)
    return q[..., 1:] * scale


def axis_angle_to_matrix(aa: np.ndarray) -> np.ndarray:
    return quat_to_matrix(axis_angle_to_quat(aa))


def matrix_to_axis_angle(m: np.ndarray) -> np.ndarray:
    return quat_to_axis_angle(matrix_to_quat(m))


def _axis_matrix(axis: str, angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    one, zero = np.ones_like(angle), np.zeros_like(angle)
    rows = {
        "X": [one, zero, zero, zero, c, -s, zero, s, c],
        "Y": [c, zero, s, zero, one, zero, -s, zero, c],
        "Z": [c, -s, zero, s, c, zero, zero, zero, one],
    }[axis]
    return np.stack(rows, axis=-1).reshape(angle.shape + (3, 3))


def euler_to_matrix(angles: np.ndarray, order: str) -> np.ndarray:
    """Intrinsic Euler angles (radians, ..., 3) in the given axis order, e.g. "ZXY" as in BVH.

    The first axis named is the outermost rotation: R = R_order[0] @ R_order[1] @ R_order[2], which is how BVH
    channel lists are applied.
    """
    order = order.upper()
    if sorted(order) != ["X", "Y", "Z"]:
        raise ValueError(f"rotation order must be a permutation of XYZ, got {order!r}")
    m = _axis_matrix(order[0], angles[..., 0])
    m = m @ _axis_matrix(order[1], angles[..., 1])
    return m @ _axis_matrix(order[2], angles[..., 2])


def matrix_to_euler(m: np.ndarray, order: str) -> np.ndarray:
    """Inverse of euler_to_matrix for the same order (radians, middle angle in [-pi/2, pi/2])."""
    order = order.upper()
    if sorted(order) != ["X", "Y", "Z"]:
        raise ValueError(f"rotation order must be a permutation of XYZ, got {order!r}")
    i, j, k = ("XYZ".index(a) for a in order)
    # R = R_i(a) R_j(b) R_k(c); parity tells the sign pattern of the Tait-Bryan decomposition.
    sign = 1.0 if (j - i) % 3 == 1 else -1.0
    b = np.arcsin(np.clip(sign * m[..., i, k], -1.0, 1.0))
    a = np.arctan2(-sign * m[..., j, k], m[..., k, k])
    c = np.arctan2(-sign * m[..., i, j], m[..., i, i])
    gimbal = np.abs(m[..., i, k]) > 1.0 - 1e-9
    if np.any(gimbal):
        # At gimbal lock put all of the rotation about the first axis.
        a_lock = np.arctan2(sign * m[..., k, j], m[..., j, j])
        a = np.where(gimbal, a_lock, a)
        c = np.where(gimbal, 0.0, c)
    return np.stack([a, b, c], axis=-1)


def slerp(q0: np.ndarray, q1: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    """Spherical linear interpolation between unit quaternions along the short arc."""
    t = np.asarray(t, dtype=np.float64)[..., None] if np.ndim(t) else np.float64(t)
    dot = np.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.abs(dot)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin_theta = np.sin(theta)
    near = sin_theta < 1e-6
    w0 = np.where(near, 1.0 - t, np.sin((1.0 - t) * theta) / np.where(near, 1.0, sin_theta))
    w1 = np.where(near, t, np.sin(t * theta) / np.where(near, 1.0, sin_theta))
    return qnormalize(w0 * q0 + w1 * q1)
