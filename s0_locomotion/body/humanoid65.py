"""The project's own 65-DoF humanoid, built in code with ``mujoco.MjSpec``.

About 1.76 m and 70 kg, with segment masses from de Leva's anthropometric tables. Frames: x forward,
y left, z up; every body is axis-aligned at the zero pose, so each hinge axis below is a body axis.
Signs follow the right-hand rule about the stated axis (as on Unitree's robots): hip flexion is a
negative ``hip_pitch``, knee flexion positive, shoulder forward flexion negative ``shoulder_pitch``,
elbow flexion negative. Fingers are the exception: their axes are mirrored so that positive is
flexion on both hands.

Degrees of freedom (65):
    legs   2 x 6  hip yaw/roll/pitch, knee, ankle pitch/roll
    waist      3  yaw, roll, pitch
    neck       2  yaw, pitch
    arms   2 x 7  shoulder pitch/roll/yaw, elbow, wrist pronation/flexion/deviation
    hands  2 x 17 four fingers x (MCP abduction, MCP flexion, PIP flexion) + thumb x (CMC abduction,
                  CMC flexion, CMC opposition, MCP flexion, IP flexion)

This module builds only the kinematic tree, geometry, inertia and joint limits;
:class:`s0_locomotion.body.Body` adds actuators, sensors and cameras the same way for every humanoid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mujoco
import numpy as np

HINGE = mujoco.mjtJoint.mjJNT_HINGE
CAPSULE = mujoco.mjtGeom.mjGEOM_CAPSULE
BOX = mujoco.mjtGeom.mjGEOM_BOX
SPHERE = mujoco.mjtGeom.mjGEOM_SPHERE

X, Y, Z = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)
SKIN = (0.85, 0.72, 0.62, 1.0)
SUIT = (0.25, 0.3, 0.4, 1.0)

# Segment masses, kg (de Leva 1996, scaled to 70 kg).
MASS = {
    "pelvis": 8.0, "torso": 21.5, "head": 5.7, "upper_arm": 1.95, "forearm": 1.1, "palm": 0.3,
    "finger": 0.025, "thumb": 0.025, "thigh": 10.0, "shank": 3.0, "foot": 1.0,
}
# Lengths, m.
HIP_OFFSET = (0.0, 0.09, -0.06)
THIGH, SHANK = 0.41, 0.41
SHOULDER = (0.0, 0.19, 0.40)
UPPER_ARM, FOREARM = 0.29, 0.25
NECK = (0.0, 0.0, 0.48)
FOOT_HALF = (0.11, 0.045, 0.02)
FOOT_CENTER = (0.045, 0.0, -0.06)  # sole at 0.08 m below the ankle axis


@dataclass
class BuiltBody:
    """What the builder hands to :class:`Body`: the spec and the metadata it cannot infer."""

    spec: mujoco.MjSpec
    groups: dict[str, list[str]] = field(default_factory=dict)  # group -> joint names in tree order
    default_pose: dict[str, float] = field(default_factory=dict)  # joint -> rad
    feet: tuple[str, str] = ("left_foot", "right_foot")
    hands: tuple[str, str] = ("left_hand", "right_hand")
    head: str = "head"


class _Builder:
    def __init__(self) -> None:
        self.spec = mujoco.MjSpec()
        self.spec.modelname = "humanoid65"
        self.spec.compiler.autolimits = True
        self.spec.compiler.degree = False  # all angles below are radians
        self.groups: dict[str, list[str]] = {}
        self.default_pose: dict[str, float] = {}

    def joint(self, body, group: str, name: str, axis, lo: float, hi: float, default: float = 0.0) -> None:
        body.add_joint(name=name, type=HINGE, axis=list(axis), range=[lo, hi])
        self.groups.setdefault(group, []).append(name)
        self.default_pose[name] = default

    @staticmethod
    def capsule(body, a, b, radius: float, mass: float, rgba=SUIT) -> None:
        body.add_geom(type=CAPSULE, fromto=[*a, *b], size=[radius, 0, 0], mass=mass, rgba=list(rgba))

    # -- trunk ---------------------------------------------------------------------------------------

    def build(self) -> BuiltBody:
        pelvis = self.spec.worldbody.add_body(name="pelvis", pos=[0, 0, 1.0])
        pelvis.add_freejoint(name="root")
        self.capsule(pelvis, (0, -0.09, -0.02), (0, 0.09, -0.02), 0.11, MASS["pelvis"])
        torso = pelvis.add_body(name="torso", pos=[0, 0, 0.10])
        self.joint(torso, "waist", "waist_yaw", Z, -1.0, 1.0)
        self.joint(torso, "waist", "waist_roll", X, -0.5, 0.5)
        self.joint(torso, "waist", "waist_pitch", Y, -0.5, 1.2)
        self.capsule(torso, (0, 0, 0.04), (0, 0, 0.22), 0.12, MASS["torso"] * 0.45)
        self.capsule(torso, (0, -0.11, 0.32), (0, 0.11, 0.32), 0.12, MASS["torso"] * 0.55)
        head = torso.add_body(name="head", pos=list(NECK))
        self.joint(head, "neck", "neck_yaw", Z, -1.2, 1.2)
        self.joint(head, "neck", "neck_pitch", Y, -0.6, 0.8)
        self.capsule(head, (0, 0, 0.0), (0, 0, 0.05), 0.05, MASS["head"] * 0.15, SKIN)
        head.add_geom(type=SPHERE, pos=[0.01, 0, 0.13], size=[0.10, 0, 0], mass=MASS["head"] * 0.85,
                      rgba=list(SKIN))
        for side, s in (("left", 1.0), ("right", -1.0)):
            self.leg(pelvis, side, s)
            self.arm(torso, side, s)
        return BuiltBody(self.spec, self.groups, self.default_pose)

    # -- limbs ---------------------------------------------------------------------------------------

    def leg(self, pelvis, side: str, s: float) -> None:
        g = f"{side}_leg"
        thigh = pelvis.add_body(name=f"{side}_thigh", pos=[HIP_OFFSET[0], s * HIP_OFFSET[1], HIP_OFFSET[2]])
        self.joint(thigh, g, f"{side}_hip_yaw", Z, -0.8, 0.8)
        lo, hi = (-0.5, 0.9) if s > 0 else (-0.9, 0.5)  # positive roll abducts the left leg
        self.joint(thigh, g, f"{side}_hip_roll", X, lo, hi)
        self.joint(thigh, g, f"{side}_hip_pitch", Y, -2.2, 0.6, default=-0.1)
        self.capsule(thigh, (0, 0, -0.02), (0, 0, -THIGH + 0.03), 0.065, MASS["thigh"])
        shank = thigh.add_body(name=f"{side}_shank", pos=[0, 0, -THIGH])
        self.joint(shank, g, f"{side}_knee", Y, 0.0, 2.5, default=0.2)
        self.capsule(shank, (0, 0, -0.02), (0, 0, -SHANK + 0.04), 0.05, MASS["shank"])
        foot = shank.add_body(name=f"{side}_foot", pos=[0, 0, -SHANK])
        self.joint(foot, g, f"{side}_ankle_pitch", Y, -0.8, 0.6, default=-0.1)
        self.joint(foot, g, f"{side}_ankle_roll", X, -0.4, 0.4)
        foot.add_geom(name=f"{side}_sole", type=BOX, pos=list(FOOT_CENTER), size=list(FOOT_HALF), mass=MASS["foot"],
                      rgba=[0.15, 0.15, 0.15, 1])

    def arm(self, torso, side: str, s: float) -> None:
        g = f"{side}_arm"
        upper = torso.add_body(name=f"{side}_upper_arm", pos=[SHOULDER[0], s * SHOULDER[1], SHOULDER[2]])
        self.joint(upper, g, f"{side}_shoulder_pitch", Y, -3.0, 1.0)
        lo, hi = (-0.4, 3.0) if s > 0 else (-3.0, 0.4)  # positive roll abducts the left arm
        self.joint(upper, g, f"{side}_shoulder_roll", X, lo, hi, default=0.12 * s)
        self.joint(upper, g, f"{side}_shoulder_yaw", Z, -1.6, 1.6)
        self.capsule(upper, (0, 0, -0.02), (0, 0, -UPPER_ARM + 0.03), 0.045, MASS["upper_arm"])
        fore = upper.add_body(name=f"{side}_forearm", pos=[0, 0, -UPPER_ARM])
        self.joint(fore, g, f"{side}_elbow", Y, -2.6, 0.0, default=-0.3)
        self.capsule(fore, (0, 0, -0.02), (0, 0, -FOREARM + 0.03), 0.038, MASS["forearm"], SKIN)
        hand = fore.add_body(name=f"{side}_hand", pos=[0, 0, -FOREARM])
        self.joint(hand, g, f"{side}_wrist_pronation", Z, -1.5, 1.5)
        self.joint(hand, g, f"{side}_wrist_flexion", (-s, 0, 0), -1.0, 1.2)
        self.joint(hand, g, f"{side}_wrist_deviation", Y, -0.4, 0.4)
        self.hand(hand, side, s)

    def hand(self, hand, side: str, s: float) -> None:
        """Palm facing the body's midline (normal -s·y), fingers pointing down (-z) at the zero pose."""
        g = f"{side}_hand"
        flex = (-s, 0.0, 0.0)  # curls the fingertips towards the palm normal (-s·y)
        hand.add_geom(type=BOX, pos=[0, 0, -0.055], size=[0.042, 0.013, 0.05], mass=MASS["palm"],
                      rgba=list(SKIN))
        fingers = {"index": (0.030, 0.045), "middle": (0.010, 0.050), "ring": (-0.010, 0.046),
                   "little": (-0.029, 0.036)}
        for finger, (x, length) in fingers.items():
            prox = hand.add_body(name=f"{side}_{finger}_proximal", pos=[x, 0, -0.105])
            self.joint(prox, g, f"{side}_{finger}_mcp_abduction", (0, s, 0), -0.3, 0.3)
            self.joint(prox, g, f"{side}_{finger}_mcp_flexion", flex, -0.2, 1.6, default=0.15)
            self.capsule(prox, (0, 0, -0.004), (0, 0, -length), 0.0085, MASS["finger"] * 0.6, SKIN)
            dist = prox.add_body(name=f"{side}_{finger}_distal", pos=[0, 0, -length - 0.006])
            self.joint(dist, g, f"{side}_{finger}_pip_flexion", flex, 0.0, 1.9, default=0.2)
            self.capsule(dist, (0, 0, -0.004), (0, 0, -0.8 * length), 0.008, MASS["finger"] * 0.4, SKIN)
        # Thumb: rooted at the front of the palm near the wrist, pointing forward-down, set off the palm
        # towards its normal so that flexion sweeps it across the palm (opposition).
        meta = hand.add_body(name=f"{side}_thumb_metacarpal", pos=[0.035, -s * 0.012, -0.03])
        self.joint(meta, g, f"{side}_thumb_cmc_abduction", (0, 0, s), -0.3, 1.2, default=0.2)
        self.joint(meta, g, f"{side}_thumb_cmc_flexion", flex, -0.3, 1.2, default=0.2)
        axis = np.array([0.6, 0.0, -0.8])
        self.joint(meta, g, f"{side}_thumb_cmc_opposition", tuple(axis), -0.6, 1.2)
        tip = axis * 0.045
        self.capsule(meta, (0, 0, 0), tuple(tip), 0.011, MASS["thumb"] * 0.4, SKIN)
        prox = meta.add_body(name=f"{side}_thumb_proximal", pos=list(tip * 1.1))
        self.joint(prox, g, f"{side}_thumb_mcp_flexion", flex, 0.0, 1.2, default=0.1)
        self.capsule(prox, (0, 0, 0), tuple(axis * 0.035), 0.0095, MASS["thumb"] * 0.35, SKIN)
        dist = prox.add_body(name=f"{side}_thumb_distal", pos=list(axis * 0.04))
        self.joint(dist, g, f"{side}_thumb_ip_flexion", flex, 0.0, 1.5, default=0.1)
        self.capsule(dist, (0, 0, 0), tuple(axis * 0.028), 0.009, MASS["thumb"] * 0.25, SKIN)


def build_humanoid65() -> BuiltBody:
    """Build the 65-DoF humanoid's kinematic tree (no actuators, sensors or cameras yet)."""
    return _Builder().build()
