"""DeepMimic's imitation reward terms as pure functions of tracking errors.

Each term is ``exp(-scale * error)`` in (0, 1], equal to 1 for perfect tracking, with its weight and
kernel scale in :class:`infra.config.schemas.RewardConfig`. Shapes: N worlds, n joints, E bodies.
Peng et al. 2018, "DeepMimic", eq. 5-9 (joint rotations here are hinge angles, so the quaternion
difference becomes an angle difference).
"""

from __future__ import annotations

import torch


def kernel(error: torch.Tensor, scale: float) -> torch.Tensor:
    """exp(-scale * error), error >= 0 of shape (N,) -> (N,) in (0, 1]."""
    return torch.exp(-scale * error)


def pose_reward(q: torch.Tensor, q_ref: torch.Tensor, scale: float) -> torch.Tensor:
    """Joint pose: q, q_ref (N, n) rad -> exp(-scale * sum_j (q_j - q_ref_j)^2)."""
    return kernel(torch.sum((q - q_ref) ** 2, dim=-1), scale)


def velocity_reward(qd: torch.Tensor, qd_ref: torch.Tensor, scale: float) -> torch.Tensor:
    """Joint velocity: qd, qd_ref (N, n) rad/s -> exp(-scale * sum_j (qd_j - qd_ref_j)^2)."""
    return kernel(torch.sum((qd - qd_ref) ** 2, dim=-1), scale)


def end_effector_reward(pos: torch.Tensor, pos_ref: torch.Tensor, scale: float) -> torch.Tensor:
    """End effectors (feet, hands, head): pos, pos_ref (N, E, 3) m -> exp(-scale * sum_e |p_e - p_ref_e|^2).

    Positions are taken relative to each character's own root, so the term measures the limb pose and
    not the root drift (which the root term covers).
    """
    return kernel(torch.sum((pos - pos_ref) ** 2, dim=(-1, -2)), scale)


def root_reward(pos: torch.Tensor, pos_ref: torch.Tensor, quat: torch.Tensor, quat_ref: torch.Tensor,
                scale: float) -> torch.Tensor:
    """Root position (N, 3) m and orientation (N, 4) wxyz -> exp(-scale * (|dp|^2 + 0.1 * angle^2))."""
    dot = torch.sum(quat * quat_ref, dim=-1).abs().clamp(max=1.0)
    angle = 2.0 * torch.arccos(dot)  # rotation angle between the two orientations, rad
    return kernel(torch.sum((pos - pos_ref) ** 2, dim=-1) + 0.1 * angle**2, scale)


def com_reward(com_vel: torch.Tensor, com_vel_ref: torch.Tensor, scale: float) -> torch.Tensor:
    """Centre-of-mass velocity (N, 3) m/s -> exp(-scale * |v - v_ref|^2)."""
    return kernel(torch.sum((com_vel - com_vel_ref) ** 2, dim=-1), scale)


def body_position_reward(pos: torch.Tensor, pos_ref: torch.Tensor, scale: float) -> torch.Tensor:
    """Global body positions (N, B, 3) m -> exp(-scale * mean_b |p_b - p_ref_b|^2) (PHC's global term).

    Unlike the end-effector term this one is in the world frame, so it penalises root drift through every
    body: it is what keeps a walking clip on its path rather than beside it.
    """
    return kernel(torch.mean(torch.sum((pos - pos_ref) ** 2, dim=-1), dim=-1), scale)
