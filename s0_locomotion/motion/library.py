"""The procedural motion library: named clips for the built-in body, generated on demand.

``CLIPS`` maps a name to a builder; ``build_library(body)`` makes them all and ``humanoid motion list``
shows them. Left-handed variants of one-handed motions are mirrors of the right-handed ones.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from s0_locomotion.body import Body
from s0_locomotion.motion.clip import Kinematics, MotionClip
from s0_locomotion.motion.ops import mirror
from s0_locomotion.motion.procedural import FPS, Gait, _standing_clip, keyposes, locomotion, min_jerk

Builder = Callable[[Body, Kinematics, bool], MotionClip]  # (body, kinematics, balanced gait) -> clip

FINGERS = ("index", "middle", "ring", "little")


def hand_pose(side: str, kind: str) -> dict[str, float]:
    """Finger angles for open, close (fist), point (index straight) and grasp (cylinder) hands."""
    curl = {"open": (0.0, 0.0), "close": (1.45, 1.7), "point": (1.45, 1.7), "grasp": (0.8, 1.0)}[kind]
    out: dict[str, float] = {}
    for finger in FINGERS:
        mcp, pip = (0.0, 0.0) if kind == "point" and finger == "index" else curl
        out |= {f"{side}_{finger}_mcp_flexion": mcp, f"{side}_{finger}_pip_flexion": pip,
                f"{side}_{finger}_mcp_abduction": 0.0}
    thumb = {"open": (0.9, 0.0, 0.0, 0.0, 0.0), "close": (0.3, 0.9, 0.6, 0.7, 0.8),
             "point": (0.3, 0.9, 0.6, 0.7, 0.8), "grasp": (0.6, 0.6, 0.9, 0.3, 0.3)}[kind]
    for joint, value in zip(("cmc_abduction", "cmc_flexion", "cmc_opposition", "mcp_flexion", "ip_flexion"), thumb):
        out[f"{side}_thumb_{joint}"] = value
    return out


def _both_hands(kind: str) -> dict[str, float]:
    return hand_pose("left", kind) | hand_pose("right", kind)


def _walk(name: str, **gait) -> tuple[str, Builder]:
    return name, lambda body, kin, balance: locomotion(body, name, Gait(balance=balance, **gait), kin)


def _keys(name: str, keys: list[tuple[float, dict[str, float]]], pelvis=None) -> tuple[str, Builder]:
    return name, lambda body, kin, balance: _standing_clip(body, name, keyposes(body, keys), kin, pelvis)


def _wave_keys() -> list[tuple[float, dict[str, float]]]:
    up = {"right_shoulder_roll": -1.4, "right_shoulder_pitch": -1.2, "right_elbow": -1.6, **hand_pose("right", "open")}
    keys: list[tuple[float, dict[str, float]]] = [(0.0, {}), (0.8, up)]
    for i in range(4):  # four waves of the forearm, about 1.5 Hz
        keys.append((1.15 + 0.7 * i, up | {"right_shoulder_yaw": 0.45}))
        keys.append((1.5 + 0.7 * i, up | {"right_shoulder_yaw": -0.35}))
    keys.append((keys[-1][0] + 0.8, {}))
    return keys


def _squat_pelvis(t: np.ndarray, standing: float) -> tuple[np.ndarray, np.ndarray]:
    """Pelvis height and backward shift of a squat: down in 1.2 s, hold 0.8 s, up in 1.2 s."""
    depth = min_jerk((t - 0.5) / 1.2) - min_jerk((t - 2.5) / 1.2)
    return standing - 0.26 * depth, -0.10 * depth


SQUAT_KEYS = [(0.0, {}), (0.5, {}), (1.7, {"waist_pitch": 0.55, "left_shoulder_pitch": -1.2,
                                             "right_shoulder_pitch": -1.2, "left_elbow": -0.2, "right_elbow": -0.2}),
              (2.5, {"waist_pitch": 0.55, "left_shoulder_pitch": -1.2, "right_shoulder_pitch": -1.2,
                     "left_elbow": -0.2, "right_elbow": -0.2}), (3.7, {})]

CLIPS: dict[str, Builder] = dict([
    _keys("stand", [(0.0, {}), (3.0, {})]),
    _walk("walk_slow", vx=0.3, cycle=1.2, pelvis_height=0.92),
    _walk("walk", vx=0.6, cycle=1.0, pelvis_height=0.895),
    _walk("walk_fast", vx=0.9, cycle=0.85, pelvis_height=0.89, ramp=1.5),
    _walk("walk_backward", vx=-0.35, cycle=1.1, pelvis_height=0.91),
    _walk("side_step_left", vy=0.25, cycle=1.1, pelvis_height=0.91, arm_swing=0.0),
    _walk("side_step_right", vy=-0.25, cycle=1.1, pelvis_height=0.91, arm_swing=0.0),
    _walk("turn_left", yaw_rate=0.6, cycle=1.0, pelvis_height=0.92, arm_swing=0.0, steady=3.0),
    _walk("turn_right", yaw_rate=-0.6, cycle=1.0, pelvis_height=0.92, arm_swing=0.0, steady=3.0),
    _walk("walk_arc_left", vx=0.5, yaw_rate=0.35, cycle=1.0, pelvis_height=0.91),
    _walk("walk_arc_right", vx=0.5, yaw_rate=-0.35, cycle=1.0, pelvis_height=0.91),
    _keys("squat", SQUAT_KEYS, pelvis=_squat_pelvis),
    _keys("wave_right", _wave_keys()),
    _keys("reach_forward_right", [(0.0, {}), (1.0, {"right_shoulder_pitch": -1.5, "right_elbow": -0.1,
                                                    "waist_pitch": 0.15, **hand_pose("right", "open")}),
                                  (2.0, {"right_shoulder_pitch": -1.5, "right_elbow": -0.1, "waist_pitch": 0.15,
                                         **hand_pose("right", "open")}), (3.0, {})]),
    _keys("reach_side_right", [(0.0, {}), (1.0, {"right_shoulder_roll": -1.5, "right_elbow": -0.1,
                                                 "waist_roll": -0.1, **hand_pose("right", "open")}),
                               (2.0, {"right_shoulder_roll": -1.5, "right_elbow": -0.1, "waist_roll": -0.1,
                                      **hand_pose("right", "open")}), (3.0, {})]),
    _keys("arms_up", [(0.0, {}), (1.2, {"left_shoulder_pitch": -2.9, "right_shoulder_pitch": -2.9,
                                        "left_elbow": -0.1, "right_elbow": -0.1}),
                      (2.2, {"left_shoulder_pitch": -2.9, "right_shoulder_pitch": -2.9, "left_elbow": -0.1,
                             "right_elbow": -0.1}), (3.4, {})]),
    *[_keys(f"hands_{kind}", [(0.0, {}), (0.8, _both_hands(kind)), (2.0, _both_hands(kind)), (2.8, {})])
      for kind in ("open", "close", "point", "grasp")],
])
MIRRORED = {"wave_left": "wave_right", "reach_forward_left": "reach_forward_right",
            "reach_side_left": "reach_side_right"}


def clip_names() -> list[str]:
    return [*CLIPS, *MIRRORED]


def build_clip(body: Body, name: str, kin: Kinematics | None = None, balance: bool = False) -> MotionClip:
    """One library clip by name (``humanoid motion list`` shows the names). ``balance``: walks with the
    pelvis placed so the centre of mass follows the ZMP plan (``procedural.Gait.balance``)."""
    kin = kin or Kinematics(body)
    if name in MIRRORED:
        return mirror(body, build_clip(body, MIRRORED[name], kin, balance), name=name, kinematics=kin)
    if name not in CLIPS:
        raise KeyError(f"unknown motion {name!r}; known: {', '.join(clip_names())}")
    return CLIPS[name](body, kin, balance)


def build_library(body: Body, names: list[str] | None = None, balance: bool = False) -> list[MotionClip]:
    kin = Kinematics(body)
    return [build_clip(body, n, kin, balance) for n in (names or clip_names())]


__all__ = ["CLIPS", "FPS", "build_clip", "build_library", "clip_names", "hand_pose"]
