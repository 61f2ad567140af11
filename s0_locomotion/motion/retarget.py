"""Retargeting core: spherical source joints onto the body's hinge chains by rotation decomposition.

A source skeleton (DeepMimic, BVH) gives, per frame, each joint's rotation relative to its parent,
expressed in the body's frame convention (x forward, y left, z up) and measured from a neutral pose that
matches the body's zero pose (legs straight, arms hanging). A *chain* is the body's hinges that stand in
for one source joint, e.g. the hip's ``yaw, roll, pitch``. MuJoCo composes the hinges of a chain
intrinsically (``R = R(a1, q1) · R(a2, q2) · ...``, each axis in the rotated frame), so the chain
angles are found by minimising the rotation error ``|log(R_target^T · R(q))|`` with Gauss-Newton from the
previous frame's solution (which keeps the angles continuous through Euler-angle branch cuts).
"""

from __future__ import annotations

import numpy as np

# Source joint role -> the built-in body's hinge chain (in MuJoCo's order within the body).
HUMANOID65_CHAINS: dict[str, tuple[str, ...]] = {
    "chest": ("waist_yaw", "waist_roll", "waist_pitch"),
    "neck": ("neck_yaw", "neck_pitch"),
    **{f"{s}_hip": (f"{s}_hip_yaw", f"{s}_hip_roll", f"{s}_hip_pitch") for s in ("left", "right")},
    **{f"{s}_knee": (f"{s}_knee",) for s in ("left", "right")},
    **{f"{s}_ankle": (f"{s}_ankle_pitch", f"{s}_ankle_roll") for s in ("left", "right")},
    **{f"{s}_shoulder": (f"{s}_shoulder_pitch", f"{s}_shoulder_roll", f"{s}_shoulder_yaw") for s in ("left", "right")},
    **{f"{s}_elbow": (f"{s}_elbow",) for s in ("left", "right")},
    **{f"{s}_wrist": (f"{s}_wrist_pronation", f"{s}_wrist_flexion", f"{s}_wrist_deviation") for s in ("left", "right")},
}


def axis_angle_matrix(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rodrigues: unit axis (3,), angles (T,) -> rotation matrices (T, 3, 3)."""
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    angle = np.asarray(angle, dtype=np.float64)[..., None, None]
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def chain_matrix(axes: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Intrinsic product of hinge rotations. axes: (k, 3); angles: (T, k) -> (T, 3, 3)."""
    out = np.broadcast_to(np.eye(3), (angles.shape[0], 3, 3)).copy()
    for i, axis in enumerate(axes):
        out = out @ axis_angle_matrix(axis, angles[:, i])
    return out


def rotation_log(r: np.ndarray) -> np.ndarray:
    """(T, 3, 3) rotations -> (T, 3) rotation vectors (axis * angle)."""
    cos = np.clip((np.trace(r, axis1=-2, axis2=-1) - 1) / 2, -1.0, 1.0)
    angle = np.arccos(cos)
    vee = np.stack([r[:, 2, 1] - r[:, 1, 2], r[:, 0, 2] - r[:, 2, 0], r[:, 1, 0] - r[:, 0, 1]], axis=-1)
    sin = np.sin(angle)
    scale = np.where(sin > 1e-9, angle / (2 * np.maximum(sin, 1e-12)), 0.5)
    return vee * scale[:, None]


def decompose(target: np.ndarray, axes: np.ndarray, iterations: int = 20) -> np.ndarray:
    """Hinge angles whose intrinsic chain best reproduces each target rotation.

    Args:
        target: (T, 3, 3) rotation of the chain's child frame relative to its parent frame.
        axes: (k, 3) hinge axes in chain order (body frame at the zero pose), k = 1..3.
    Returns:
        (T, k) angles, rad, continuous along T (each frame starts from the previous solution).
        With k < 3 the part of the rotation the chain cannot express is dropped (least squares).
    """
    axes = np.asarray(axes, dtype=np.float64)
    k = len(axes)
    out = np.zeros((len(target), k))
    q = np.zeros(k)
    eps = 1e-6
    for t, goal in enumerate(target):
        for _ in range(iterations):
            err = rotation_log((goal.T @ chain_matrix(axes, q[None]))[None].reshape(1, 3, 3))[0]
            if np.linalg.norm(err) < 1e-10:
                break
            jac = np.empty((3, k))
            for j in range(k):
                dq = q.copy()
                dq[j] += eps
                jac[:, j] = (rotation_log((goal.T @ chain_matrix(axes, dq[None])).reshape(1, 3, 3))[0] - err) / eps
            step, *_ = np.linalg.lstsq(jac, -err, rcond=None)
            q = q + step
            if np.linalg.norm(step) < 1e-10:
                break
        q = (q + np.pi) % (2 * np.pi) - np.pi  # the same rotation, angles in [-pi, pi)
        out[t] = q
    return out
