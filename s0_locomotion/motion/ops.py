"""Clip operations: mirror (left <-> right), time-scale and concatenate with smooth transitions.

Each returns a new clip built with :func:`make_clip`, so velocities and FK positions are recomputed.
"""

from __future__ import annotations

import mujoco
import numpy as np

from s0_locomotion.body import Body
from s0_locomotion.motion.clip import ClipError, Kinematics, MotionClip, make_clip

_MIRROR = np.diag([1.0, -1.0, 1.0])  # reflection through the sagittal (x-z) plane


def _partner(name: str) -> str:
    for a, b in (("left_", "right_"), ("right_", "left_")):
        if name.startswith(a):
            return b + name[len(a):]
    return name


def mirror_map(body: Body, kin: Kinematics) -> tuple[np.ndarray, np.ndarray]:
    """Joint permutation (n,) and signs (n,) so that mirrored[:, i] = sign[i] * q[:, perm[i]].

    A rotation about axis a mirrors to a rotation about -M·a (axes are pseudo-vectors), so the partner
    joint's angle is the source angle times the dot product of -M·a with the partner's axis (world axes
    at the zero pose). Works for any body whose left and right joints are named ``left_*``/``right_*``.
    """
    model, data = kin.model, kin.data
    data.qpos[:] = model.qpos0
    mujoco.mj_kinematics(model, data)
    names = body.joint_names
    axis = {n: data.xaxis[model.joint(n).id] for n in names}
    perm, sign = np.zeros(len(names), dtype=int), np.zeros(len(names))
    for i, name in enumerate(names):
        src = _partner(name)
        if src not in axis:
            raise ClipError(f"mirror: joint {name!r} has no partner {src!r}")
        dot = float(-(_MIRROR @ axis[src]) @ axis[name])
        if abs(abs(dot) - 1) > 1e-6:
            raise ClipError(f"mirror: axes of {name!r} and {src!r} are not mirror images")
        perm[i], sign[i] = names.index(src), np.sign(dot)
    return perm, sign


def mirror(body: Body, clip: MotionClip, name: str | None = None, kinematics: Kinematics | None = None) -> MotionClip:
    """Left-right mirror image of a clip (y -> -y)."""
    kin = kinematics or Kinematics(body)
    perm, sign = mirror_map(body, kin)
    q = clip.root_quat * np.array([1.0, -1.0, 1.0, -1.0])
    lo, hi = body.ranges.T
    joints = np.clip(clip.joint_pos[:, perm] * sign, lo, hi)  # asymmetric limits: clamp the rare excess
    return make_clip(body, name or f"{clip.name}_mirrored", clip.fps, clip.root_pos @ _MIRROR, q, joints,
                     source=f"mirror({clip.source})", kinematics=kin)


def slerp(q0: np.ndarray, q1: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Spherical interpolation of wxyz quaternions. q0, q1: (T, 4); s: (T,) -> (T, 4)."""
    dot = np.sum(q0 * q1, axis=-1)
    q1 = np.where(dot[:, None] < 0, -q1, q1)
    dot = np.abs(dot).clip(-1, 1)
    theta = np.arccos(dot)
    small = theta < 1e-6
    sin = np.where(small, 1.0, np.sin(theta))
    w0 = np.where(small, 1 - s, np.sin((1 - s) * theta) / sin)
    w1 = np.where(small, s, np.sin(s * theta) / sin)
    out = w0[:, None] * q0 + w1[:, None] * q1
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def _sample(clip: MotionClip, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Root position, root quaternion and joints at arbitrary times (s) by interpolation."""
    f = np.clip(times * clip.fps, 0, clip.num_frames - 1)
    i0 = np.floor(f).astype(int)
    i1 = np.minimum(i0 + 1, clip.num_frames - 1)
    s = f - i0
    lerp = lambda a: a[i0] + s[:, None] * (a[i1] - a[i0])  # noqa: E731
    return lerp(clip.root_pos), slerp(clip.root_quat[i0], clip.root_quat[i1], s), lerp(clip.joint_pos)


def time_scale(body: Body, clip: MotionClip, factor: float, name: str | None = None,
               kinematics: Kinematics | None = None) -> MotionClip:
    """Play ``factor`` times slower (factor > 1) or faster (< 1), at the same fps."""
    if factor <= 0:
        raise ClipError(f"time_scale: factor must be > 0, got {factor}")
    frames = int(round(clip.duration * factor * clip.fps)) + 1
    pos, quat, joints = _sample(clip, np.arange(frames) / clip.fps / factor)
    return make_clip(body, name or f"{clip.name}_x{factor:g}", clip.fps, pos, quat, joints,
                     source=f"time_scale({clip.source}, {factor:g})", kinematics=kinematics)


def resample(body: Body, clip: MotionClip, fps: float, kinematics: Kinematics | None = None) -> MotionClip:
    """The same motion at another frame rate (interpolated)."""
    frames = int(np.floor(clip.duration * fps + 1e-9)) + 1
    pos, quat, joints = _sample(clip, np.arange(frames) / fps)
    return make_clip(body, clip.name, fps, pos, quat, joints, source=clip.source, kinematics=kinematics,
                     meta=clip.meta | {"resampled_from_fps": clip.fps})


def _yaw(quat: np.ndarray) -> float:
    w, x, y, z = quat
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


def _align(clip: MotionClip, pos: np.ndarray, yaw: float) -> tuple[np.ndarray, np.ndarray]:
    """Root trajectory of ``clip`` moved so its first frame sits at planar ``pos`` with heading ``yaw``."""
    dyaw = yaw - _yaw(clip.root_quat[0])
    c, s = np.cos(dyaw), np.sin(dyaw)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    root = (clip.root_pos - clip.root_pos[0] * [1, 1, 0]) @ rot.T + [pos[0], pos[1], 0]
    qz = np.array([np.cos(dyaw / 2), 0, 0, np.sin(dyaw / 2)])
    quat = np.empty_like(clip.root_quat)
    for i, q in enumerate(clip.root_quat):
        mujoco.mju_mulQuat(quat[i], qz, q)
    return root, quat


def concat(body: Body, clips: list[MotionClip], blend: float = 0.3, name: str | None = None,
           kinematics: Kinematics | None = None) -> MotionClip:
    """Play clips one after another; each starts where the previous ended (planar position and heading)
    and the two overlap for ``blend`` seconds with a minimum-jerk cross-fade."""
    if not clips:
        raise ClipError("concat: no clips")
    fps = clips[0].fps
    if any(abs(c.fps - fps) > 1e-9 for c in clips):
        raise ClipError(f"concat: clips have different fps {[c.fps for c in clips]}; time-scale them first")
    pos, quat, joints = clips[0].root_pos, clips[0].root_quat, clips[0].joint_pos
    n = int(round(blend * fps))
    for clip in clips[1:]:
        if min(clip.num_frames, len(pos)) <= n:
            raise ClipError(f"concat: clip {clip.name!r} is shorter than the {blend} s blend")
        start = -n if n else -1  # clip's first frame coincides with the first overlapped frame
        p2, q2 = _align(clip, pos[start, :2], _yaw(quat[start]))
        w = (np.arange(n) + 1) / (n + 1)
        w = w * w * w * (10 - 15 * w + 6 * w * w)
        mixed_pos = pos[-n:] * (1 - w[:, None]) + p2[:n] * w[:, None]
        mixed_quat = slerp(quat[-n:], q2[:n], w)
        mixed_joints = joints[-n:] * (1 - w[:, None]) + clip.joint_pos[:n] * w[:, None]
        pos = np.concatenate([pos[:-n] if n else pos, mixed_pos, p2[n:]])
        quat = np.concatenate([quat[:-n] if n else quat, mixed_quat, q2[n:]])
        joints = np.concatenate([joints[:-n] if n else joints, mixed_joints, clip.joint_pos[n:]])
    return make_clip(body, name or "+".join(c.name for c in clips), fps, pos, quat, joints,
                     source="concat(" + ", ".join(c.name for c in clips) + ")", kinematics=kinematics)
