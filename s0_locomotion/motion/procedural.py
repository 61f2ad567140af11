"""Procedural motion generator: the project's own library, no downloads.

Locomotion comes from a footstep plan: the pelvis follows a commanded planar velocity (forward, sideways,
yaw rate) that ramps up from standing and back down; each foot is planted where the pelvis will be at the
middle of that foot's next stance, swings on a minimum-jerk arc, and stays exactly where it landed while
in stance. Leg angles come from closed-form inverse kinematics that keeps the soles flat, so stance feet
neither slide nor sink (tests check both through forward kinematics). By default the pelvis follows the
commanded path. With ``Gait.balance`` its horizontal position is set instead so that the whole-body centre of
mass follows a linear inverted pendulum over a zero-moment-point plan on the footsteps (Kajita et al. 2003:
the ZMP on the stance foot's centre in single support, moving across in double support), so the reference
is dynamically consistent: its centre of mass sways over each stance foot instead of staying midway between
the feet with nothing under it when a foot lifts. Upper-body motions (wave, reach,
arms up, hand poses, squat) are minimum-jerk blends between key poses on top of the standing legs.

All clips run at 50 Hz (S0's control rate) and start and end in the standing pose, so they concatenate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from s0_locomotion.body import Body
from s0_locomotion.body.humanoid65 import FOOT_CENTER, FOOT_HALF, HIP_OFFSET, SHANK, THIGH
from s0_locomotion.motion.clip import Kinematics, MotionClip, make_clip

FPS = 50.0
GRAVITY = 9.81  # m/s^2
ZMP_ROLL = 0.07  # m the single-support ZMP may move either side of the sole's centre, along the foot
ANKLE_HEIGHT = -(FOOT_CENTER[2] - FOOT_HALF[2])  # ankle axis above the sole, m (0.08)
STANCE_WIDTH = HIP_OFFSET[1]  # feet under the hips, m


class ProceduralError(ValueError):
    """A motion the body cannot perform (a foot out of reach)."""


# --------------------------------------------------------------------------------------------------
# Pure helpers


def min_jerk(s: np.ndarray) -> np.ndarray:
    """Minimum-jerk blend 0 -> 1 for s in [0, 1] (zero velocity and acceleration at both ends)."""
    s = np.clip(s, 0.0, 1.0)
    return s**3 * (10 - 15 * s + 6 * s**2)


def yaw_quat(yaw: np.ndarray) -> np.ndarray:
    """(T,) yaw angles -> (T, 4) wxyz quaternions about world z."""
    return np.stack([np.cos(yaw / 2), np.zeros_like(yaw), np.zeros_like(yaw), np.sin(yaw / 2)], axis=-1)


def rot2d(yaw: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate planar vectors v (T, 2) by yaw (T,)."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.stack([c * v[:, 0] - s * v[:, 1], s * v[:, 0] + c * v[:, 1]], axis=-1)


def leg_ik(hip: np.ndarray, ankle: np.ndarray, pelvis_yaw: np.ndarray, foot_yaw: np.ndarray,
           side: float) -> np.ndarray:
    """Closed-form leg IK with an upright pelvis and a flat foot.

    Args:
        hip: (T, 3) hip joint centre, world; ankle: (T, 3) ankle (foot body origin) target, world.
        pelvis_yaw, foot_yaw: (T,) rad; side: +1 left, -1 right (for the error message).
    Returns:
        (T, 6) hip yaw, hip roll, hip pitch, knee, ankle pitch, ankle roll, rad. The chain is
        Rz(yaw)·Rx(roll)·Ry(pitch) at the hip, Ry(knee), then Ry(ankle pitch)·Rx(ankle roll), which makes
        the foot's orientation exactly Rz(foot_yaw - pelvis_yaw) relative to the pelvis (sole flat).
    """
    rel_yaw = foot_yaw - pelvis_yaw
    d = ankle - hip
    d_xy = rot2d(-foot_yaw, d[:, :2])  # into the hip-yaw frame (pelvis yaw + hip yaw = foot yaw)
    dx, dy, dz = d_xy[:, 0], d_xy[:, 1], d[:, 2]
    roll = np.arctan2(dy, -dz)  # positive roll moves the foot to +y
    vz = -np.sqrt(dy**2 + dz**2)  # leg-plane vertical component (negative: down)
    length = np.sqrt(dx**2 + vz**2)
    if np.any(length > THIGH + SHANK - 1e-4):
        frame = int(np.argmax(length))
        raise ProceduralError(f"{'left' if side > 0 else 'right'} foot out of reach at frame {frame}: "
                              f"{length[frame]:.3f} m > {THIGH + SHANK:.3f} m")
    knee = np.pi - np.arccos(np.clip((THIGH**2 + SHANK**2 - length**2) / (2 * THIGH * SHANK), -1, 1))
    beta = np.arctan2(-dx, -vz)  # direction of hip->ankle from straight down, towards -x positive
    pitch = beta - np.arctan2(SHANK * np.sin(knee), THIGH + SHANK * np.cos(knee))
    return np.stack([rel_yaw, roll, pitch, knee, -(pitch + knee), -roll], axis=-1)


# --------------------------------------------------------------------------------------------------
# Locomotion


@dataclass(frozen=True)
class Gait:
    """Walking rhythm and the commanded pelvis velocity (heading frame) during the steady phase."""

    vx: float = 0.0  # m/s forward
    vy: float = 0.0  # m/s left
    yaw_rate: float = 0.0  # rad/s
    cycle: float = 1.0  # s per stride (two steps)
    swing: float = 0.4  # fraction of the cycle each foot swings
    lift: float = 0.06  # swing foot clearance, m
    pelvis_height: float = 0.90  # m above the floor while walking
    steady: float = 4.0  # s at full speed
    ramp: float = 1.0  # s to accelerate and to decelerate
    arm_swing: float = 0.35  # shoulder pitch amplitude, rad
    balance: bool = False  # pelvis placed so the centre of mass follows the ZMP plan (False: the commanded path)
    zmp_shift: float = 0.3  # s over which the ZMP moves onto the first stance foot before the first lift-off


def _command_profile(g: Gait, t: np.ndarray) -> np.ndarray:
    """(T,) speed scale in [0, 1]: stand 0.5 s, ramp, steady, ramp, then steps settle."""
    t0 = 0.5
    up = min_jerk((t - t0) / g.ramp)
    down = 1 - min_jerk((t - t0 - g.ramp - g.steady) / g.ramp)
    return up * down


def _integrate_pelvis(g: Gait, t: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Planar pelvis position (T, 2) and yaw (T,) from the commanded velocity profile."""
    scale = _command_profile(g, t)
    yaw = np.concatenate([[0.0], np.cumsum(scale[:-1] * g.yaw_rate * dt)])
    vel = rot2d(yaw, np.stack([scale * g.vx, scale * g.vy], axis=-1))
    pos = np.concatenate([np.zeros((1, 2)), np.cumsum(vel[:-1] * dt, axis=0)])
    return pos, yaw


def _foot_track(g: Gait, t: np.ndarray, pos: np.ndarray, yaw: np.ndarray, side: float,
                phase0: float, moving: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ankle positions (T, 3) and foot yaw (T,) of one foot.

    The foot swings during [phase0, phase0 + swing) of each cycle while the gait is active and lands at
    the pelvis pose of the middle of its next stance, offset sideways by the stance width.
    """
    n = len(t)
    phase = ((t - 0.5) / g.cycle - phase0) % 1.0
    cycle_idx = np.floor((t - 0.5) / g.cycle - phase0)

    def target(i: int) -> tuple[np.ndarray, float]:
        j = min(max(i, 0), n - 1)
        xy = pos[j] + rot2d(np.array([yaw[j]]), np.array([[0.0, side * STANCE_WIDTH]]))[0]
        return xy, yaw[j]

    stance_mid = int(round((g.swing + (1 - g.swing) / 2) * g.cycle * FPS))  # from swing start
    ankle = np.zeros((n, 3))
    foot_yaw = np.zeros(n)
    current_xy, current_yaw = target(0)
    i = 0
    while i < n:
        starts_swing = moving[i] and phase[i] < g.swing and (i == 0 or cycle_idx[i] != cycle_idx[i - 1]
                                                             or phase[i - 1] >= g.swing)
        if not starts_swing:
            ankle[i] = [*current_xy, ANKLE_HEIGHT]
            foot_yaw[i] = current_yaw
            i += 1
            continue
        length = int(round(g.swing * g.cycle * FPS))
        land_xy, land_yaw = target(i + stance_mid)
        s = np.arange(length) / length
        blend = min_jerk(s)[:, None]
        k = min(length, n - i)
        ankle[i:i + k, :2] = (current_xy + blend * (land_xy - current_xy))[:k]
        ankle[i:i + k, 2] = ANKLE_HEIGHT + g.lift * np.sin(np.pi * s)[:k]
        foot_yaw[i:i + k] = (current_yaw + blend[:, 0] * (land_yaw - current_yaw))[:k]
        current_xy, current_yaw = land_xy, land_yaw
        i += k
    return ankle, foot_yaw


def zmp_reference(t: np.ndarray, feet: list[tuple[np.ndarray, np.ndarray]], path: np.ndarray, shift: float,
                  roll: float = ZMP_ROLL) -> np.ndarray:
    """(T, 2) zero-moment-point plan from the two feet's tracks [(ankle (T, 3), yaw (T,)), left, right].

    Single support: on the stance sole's centre line, where the commanded pelvis ``path`` (T, 2) passes
    along the sole, clamped to ``roll`` m either side of the centre (the ZMP rolls from heel to toe, so the
    sagittal motion stays close to the commanded speed while the sideways one sways over the foot).
    Double support: a straight line from the last stance foot to the next. Standing more than ``shift``
    seconds from any swing: midway between the feet, blending onto the first stance foot before the first
    lift-off and back after the last touch-down.
    """
    points, swing = [], []
    for ankle, yaw in feet:
        fwd = np.stack([np.cos(yaw), np.sin(yaw)], axis=-1)
        centre = ankle[:, :2] + rot2d(yaw, np.tile(FOOT_CENTER[:2], (len(t), 1)))
        along = np.clip(np.sum((path - centre) * fwd, axis=-1), -roll, roll)
        points.append(centre + along[:, None] * fwd)
        swing.append(ankle[:, 2] > ANKLE_HEIGHT + 1e-9)
    weight = np.full(len(t), np.nan)  # weight of the left foot
    weight[swing[1] & ~swing[0]] = 1.0
    weight[swing[0] & ~swing[1]] = 0.0
    moving = np.nonzero(swing[0] | swing[1])[0]
    if moving.size == 0:
        return 0.5 * (points[0] + points[1])
    gap = int(round(shift * FPS))
    frames = np.arange(len(t))
    weight[(frames < moving[0] - gap) | (frames > moving[-1] + gap)] = 0.5
    known = ~np.isnan(weight)
    weight = np.interp(frames, frames[known], weight[known])[:, None]
    return weight * points[0] + (1 - weight) * points[1]


BALANCE_REST_S = 0.4  # s a balanced walk stands after the ZMP is back between the feet


def lipm_com(zmp: np.ndarray, dt: float, height: float) -> np.ndarray:
    """(T, 2) centre-of-mass path whose linear-inverted-pendulum ZMP, c - c''·h/g, is ``zmp`` (T, 2).

    Solved as the boundary-value problem c'' = (g/h)(c - p) with c = p at both ends (the clip stands
    still there), by central differences: the pattern anticipates each step, as a preview controller does.
    """
    n = len(zmp)
    w2 = GRAVITY / height * dt**2
    a = np.zeros((n, n))
    rhs = -w2 * zmp.astype(np.float64)
    idx = np.arange(1, n - 1)
    a[idx, idx - 1] = a[idx, idx + 1] = 1.0
    a[idx, idx] = -2.0 - w2
    a[[0, n - 1], [0, n - 1]] = 1.0
    rhs[[0, n - 1]] = zmp[[0, n - 1]]
    return np.linalg.solve(a, rhs)


def locomotion(body: Body, name: str, g: Gait, kin: Kinematics | None = None, settle: float = 1.5) -> MotionClip:
    """A walking clip: stand, accelerate, walk at (vx, vy, yaw_rate), decelerate, settle and stand.

    The steps go on for one stride after the commanded motion stops. A balanced clip is made longer than
    ``settle`` asks when its last step would land less than ``zmp_shift + BALANCE_REST_S`` before the end
    (the centre of mass must be back between the feet by the last frame)."""
    duration = 0.5 + 2 * g.ramp + g.steady + settle
    t = np.arange(int(round(duration * FPS)) + 1) / FPS
    pos, yaw = _integrate_pelvis(g, t, 1 / FPS)
    # Step while moving and for one more stride after, so the feet catch up with the stopped pelvis.
    moving = np.maximum(_command_profile(g, t), _command_profile(g, t - g.cycle)) > 1e-3
    names = body.joint_names
    stand_h = standing_pelvis_height(body)
    activity = np.clip(_command_profile(g, t) * 4, 0, 1)
    height = stand_h + (g.pelvis_height - stand_h) * min_jerk(activity)
    root = np.concatenate([pos, height[:, None]], axis=1)
    sides = ((1.0, "left", 0.0), (-1.0, "right", 0.5))
    feet = [_foot_track(g, t, pos, yaw, side, phase0, moving) for side, _, phase0 in sides]
    if g.balance:  # the ZMP must be back between the feet, and the CoM over it, before the clip ends
        last_swing = max(np.flatnonzero(ankle[:, 2] > ANKLE_HEIGHT + 1e-9).max(initial=0) for ankle, _ in feet)
        end = last_swing / FPS + g.zmp_shift + BALANCE_REST_S
        if end > t[-1] + 1e-9:
            return locomotion(body, name, g, kin, settle + end - t[-1])

    def pose_for(root: np.ndarray) -> np.ndarray:
        pose = np.tile(body.default_pose.astype(np.float64), (len(t), 1))
        for (side, label, phase0), (ankle, foot_yaw) in zip(sides, feet):
            hip = root + np.concatenate([rot2d(yaw, np.tile([HIP_OFFSET[0], side * HIP_OFFSET[1]], (len(t), 1))),
                                         np.full((len(t), 1), HIP_OFFSET[2])], axis=1)
            cols = [names.index(f"{label}_{j}") for j in ("hip_yaw", "hip_roll", "hip_pitch", "knee",
                                                           "ankle_pitch", "ankle_roll")]
            pose[:, cols] = leg_ik(hip, ankle, yaw, foot_yaw, side)
            # Arms swing against the legs: the left arm forward (negative pitch) as the right leg swings.
            phase = 2 * np.pi * ((t - 0.5) / g.cycle - phase0)
            arm = names.index(f"{label}_shoulder_pitch")
            pose[:, arm] = body.default_pose[arm] + g.arm_swing * activity * np.sin(phase) * np.sign(g.vx or 1.0)
        return pose

    pose = pose_for(root)
    quat = yaw_quat(yaw)
    if g.balance:
        kin = kin or Kinematics(body)
        com = kin.com_positions(root, quat, pose)
        target = lipm_com(zmp_reference(t, feet, pos, g.zmp_shift), 1 / FPS, float(com[:, 2].mean()))
        for _ in range(4):  # the legs move less than the pelvis, so the CoM follows it by a fixed point
            root[:, :2] += target - com[:, :2]
            pose = pose_for(root)
            com = kin.com_positions(root, quat, pose)
    return make_clip(body, name, FPS, root, quat, _clamp(body, pose), source="procedural:locomotion",
                     kinematics=kin, meta={"gait": g.__dict__})


def standing_pelvis_height(body: Body) -> float:
    """Pelvis height of the default pose with the soles on the floor, m."""
    return body.root_height


# --------------------------------------------------------------------------------------------------
# Upper-body and whole-body key-pose clips


def keyposes(body: Body, keys: list[tuple[float, dict[str, float]]], hold: float = 0.5) -> np.ndarray:
    """Joint trajectory (T, n_dof) through key poses, each given as regex-free joint -> angle overrides
    on the default pose; minimum-jerk between consecutive keys. keys: [(time_s, overrides), ...]."""
    names = body.joint_names
    poses = []
    for _, overrides in keys:
        pose = body.default_pose.astype(np.float64).copy()
        for joint, value in overrides.items():
            pose[names.index(joint)] = value
        poses.append(pose)
    t = np.arange(int(round((keys[-1][0] + hold) * FPS)) + 1) / FPS
    out = np.tile(poses[0], (len(t), 1))
    for (t0, _), (t1, _), p0, p1 in zip(keys[:-1], keys[1:], poses[:-1], poses[1:]):
        s = min_jerk((t - t0) / (t1 - t0))[:, None]
        active = t >= t0
        out[active] = (p0 + s * (p1 - p0))[active]
    return out


def _standing_clip(body: Body, name: str, joints: np.ndarray, kin: Kinematics | None,
                   pelvis: Callable[[np.ndarray, float], tuple[np.ndarray, np.ndarray]] | None = None) -> MotionClip:
    """Feet planted at the default stance; legs by IK for the pelvis trajectory ``pelvis(t, standing_height)
    -> (height (T,), forward shift (T,))`` (default: standing still)."""
    n = len(joints)
    t = np.arange(n) / FPS
    h = standing_pelvis_height(body)
    height, back = pelvis(t, h) if pelvis else (np.full(n, h), np.zeros(n))
    root = np.stack([back, np.zeros(n), height], axis=1)
    zeros = np.zeros(n)
    pose = joints.copy()
    names = body.joint_names
    stance_x = _stance_ankle_x(body)
    for side, label in ((1.0, "left"), (-1.0, "right")):
        hip = root + np.array([HIP_OFFSET[0], side * HIP_OFFSET[1], HIP_OFFSET[2]])
        ankle = np.tile([stance_x, side * STANCE_WIDTH, ANKLE_HEIGHT], (n, 1))
        cols = [names.index(f"{label}_{j}") for j in ("hip_yaw", "hip_roll", "hip_pitch", "knee",
                                                       "ankle_pitch", "ankle_roll")]
        pose[:, cols] = leg_ik(hip, ankle, zeros, zeros, side)
    return make_clip(body, name, FPS, root, yaw_quat(zeros), _clamp(body, pose), source="procedural:keyposes",
                     kinematics=kin)


def _stance_ankle_x(body: Body) -> float:
    """Forward offset of the ankle under the hip in the default pose (zero for symmetric bends)."""
    names = body.joint_names
    p, k = body.default_pose[names.index("left_hip_pitch")], body.default_pose[names.index("left_knee")]
    return float(-THIGH * np.sin(p) - SHANK * np.sin(p + k))


def _clamp(body: Body, pose: np.ndarray) -> np.ndarray:
    lo, hi = body.ranges.T
    over = (pose < lo - 1e-6) | (pose > hi + 1e-6)
    if over.any():
        bad = sorted({body.joint_names[j] for j in np.nonzero(over)[1]})
        raise ProceduralError(f"procedural pose outside joint limits: {bad}")
    return pose
