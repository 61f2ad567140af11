"""Balance feedback on S0's joint targets: SIMBICON's pelvis and swing-leg feedback (Yin et al. 2007).

The tracking policy adds a learned residual to the reference; what it has not learned in an hour of two
cores is to catch the sideways fall of every single-support phase (README, *Why the walks fall*).
SIMBICON made PD-tracked gaits robust with two feedback laws, which this module adds to the targets in
joint space, with the reference as the nominal gait:

* **Pelvis orientation through the stance hip.** The pelvis is the root: with the stance foot planted,
  the stance hip's roll and pitch set its tilt. When the pelvis rolls by ``e`` more than the reference,
  the stance hip's target moves by ``k_pelvis * e`` so its PD turns the pelvis back (this is the
  position-controlled form of SIMBICON's torso torque on the stance hip). The swing hip's target moves
  by ``-e`` so the swing leg keeps its reference orientation in the world instead of swinging with the
  pelvis.
* **Foot placement.** The swing hip's target moves by ``c_v`` times the error of the root's horizontal
  velocity against the reference's, in the heading frame: a body drifting left places its swing foot
  further left, which turns the drift around at the next step (SIMBICON's ``c_v``, Raibert's foot
  placement). The stance ankle's roll pushes against a sideways velocity error (``k_ankle``).

Which leg is the stance leg is read from the measured sole forces (a continuous weight, so double
support blends both laws and nothing jumps at touch-down). Every input exists on a robot: the IMU's
orientation, a state estimator's root velocity, the feet's contact switches.

Pure functions of tensors, batched over worlds (N, ...), so the training environment and the stack's S0
controller apply the same law.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from infra.config.s0 import BalanceConfig
from s0_locomotion.body import Body
from s0_locomotion.tracking.rotations import quat_rotate_inverse, rotate_z, yaw_of


@dataclass(frozen=True)
class LegJoints:
    """Indices into the body's joints of one leg's hip roll and pitch and ankle roll."""

    hip_roll: int
    hip_pitch: int
    ankle_roll: int


def leg_joints(body: Body) -> tuple[LegJoints, LegJoints]:
    """(left, right) leg joint indices; raises ValueError naming the missing joint."""
    names = body.joint_names
    legs = []
    for side in ("left", "right"):
        idx = []
        for joint in (f"{side}_hip_roll", f"{side}_hip_pitch", f"{side}_ankle_roll"):
            if joint not in names:
                raise ValueError(f"balance feedback: body has no joint {joint!r} (needs hip roll/pitch and "
                                 f"ankle roll per leg; set env.balance.enabled=false for this body)")
            idx.append(names.index(joint))
        legs.append(LegJoints(*idx))
    return legs[0], legs[1]


def tilt(quat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Roll and pitch (rad) of wxyz orientations (N, 4), from gravity in the body frame: (N,), (N,)."""
    down = quat.new_tensor([0.0, 0.0, -1.0]).expand(len(quat), 3)
    g = quat_rotate_inverse(quat, down)
    return torch.asin((-g[:, 1]).clamp(-1, 1)), torch.asin(g[:, 0].clamp(-1, 1))


def stance_weight(foot_contact: torch.Tensor, min_force: float = 20.0) -> torch.Tensor:
    """(N, 2) sole normal forces (left, right), N -> (N, 2) share of the weight on each foot; 0.5 each
    when neither foot carries ``min_force`` (flight or a fall: no stance law dominates)."""
    f = foot_contact.clamp(min=0.0)
    total = f.sum(-1, keepdim=True)
    return torch.where(total > min_force, f / total.clamp(min=1e-6), torch.full_like(f, 0.5))


def feedback_config(asked: BalanceConfig | None, trained: BalanceConfig) -> BalanceConfig:
    """The feedback a policy runs with: ``asked`` when enabled (a command line or stack config asks for it),
    else the one it was trained with (its ``env.balance``, disabled for checkpoints from before it existed)."""
    return asked if asked is not None and asked.enabled else trained


class BalanceFeedback:
    """Joint-target corrections (N, n_dof), rad, from the measured state and the reference frame."""

    def __init__(self, cfg: BalanceConfig, body: Body) -> None:
        self.cfg = cfg
        self.n_dof = body.n_dof
        self.legs = leg_joints(body)

    def __call__(self, root_quat: torch.Tensor, root_lin_vel: torch.Tensor, foot_contact: torch.Tensor,
                 ref_root_quat: torch.Tensor, ref_root_lin_vel: torch.Tensor) -> torch.Tensor:
        """Corrections to add to the joint targets.

        root_quat (N, 4) and root_lin_vel (N, 3): the measured root, world frame; foot_contact (N, 2) sole
        forces (left, right); ref_root_quat (N, 4) and ref_root_lin_vel (N, 3): the reference root.
        """
        c = self.cfg
        n = len(root_quat)
        out = root_quat.new_zeros(n, self.n_dof)
        roll, pitch = tilt(root_quat)
        ref_roll, ref_pitch = tilt(ref_root_quat)
        e_roll = (roll - ref_roll).clamp(-c.max_tilt_rad, c.max_tilt_rad)
        e_pitch = (pitch - ref_pitch).clamp(-c.max_tilt_rad, c.max_tilt_rad)
        yaw = yaw_of(root_quat)
        v_err = rotate_z(root_lin_vel - ref_root_lin_vel, -yaw)  # heading frame: x forward, y left
        place_y = c.c_v_lateral * v_err[:, 1]
        place_x = c.c_v_sagittal * v_err[:, 0]
        w = stance_weight(foot_contact)
        for i, leg in enumerate(self.legs):
            stance, swing = w[:, i], 1.0 - w[:, i]
            # positive hip roll moves either foot towards +y (left); positive hip pitch moves it backwards
            roll_fix = stance * c.k_pelvis * e_roll + swing * (place_y - e_roll)
            pitch_fix = stance * c.k_pelvis * e_pitch + swing * (-place_x - e_pitch)
            out[:, leg.hip_roll] = roll_fix.clamp(-c.max_correction_rad, c.max_correction_rad)
            out[:, leg.hip_pitch] = pitch_fix.clamp(-c.max_correction_rad, c.max_correction_rad)
            out[:, leg.ankle_roll] = (stance * c.k_ankle * v_err[:, 1]).clamp(-c.max_correction_rad,
                                                                               c.max_correction_rad)
        return out
