"""The goal encoder: privileged goal parameters -> latent goal z, trained jointly with S1.

While S1 trains, z comes from this encoder applied to the task's privileged goal parameters (family
one-hot, target bearing and distance in the robot's heading frame). S2 later learns to produce the same
z from the head-camera image and the instruction (distillation), so z is bounded (tanh) to give S2 a
well-scaled regression target. Saved inside the S1 checkpoint under ``goal/``.

Trained by the behaviour-cloning loss alone, the encoder put the gesture families' z almost parallel
(cosine 0.85 wave_right/squat, 0.91 face/arms_up), S1 mixed them up, and S2's small regression error was
enough to flip a family. :func:`family_separation_loss` keeps the families apart while the encoder trains.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class GoalEncoder(nn.Module):
    """(B, goal_dim) float32 -> z (B, z_dim) in (-1, 1). Rate: S2's (the goal changes slowly)."""

    def __init__(self, goal_dim: int, z_dim: int = 128, width: int = 128) -> None:
        super().__init__()
        self.goal_dim, self.z_dim = goal_dim, z_dim
        self.net = nn.Sequential(nn.Linear(goal_dim, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                                 nn.Linear(width, z_dim))

    def forward(self, goal: Tensor) -> Tensor:
        if goal.shape[-1] != self.goal_dim:
            raise ValueError(f"goal encoder: expected goal parameters of size {self.goal_dim}, got {goal.shape[-1]}")
        return torch.tanh(self.net(goal))


def family_separation_loss(z: Tensor, family: Tensor, margin: float) -> Tensor:
    """Squared hinge on the cosine similarity of latent goals from different task families.

    z (B, z_dim); family (B,) int labels. Pairs of samples from two families whose z have cosine above
    ``margin`` are pushed apart; pairs within a family (a walk_to at another bearing) are left alone. Zero
    when no pair crosses the margin or the batch holds one family.
    """
    zn = F.normalize(z, dim=-1)
    other = family[:, None] != family[None, :]
    if not bool(other.any()):
        return z.new_zeros(())
    return F.relu((zn @ zn.T)[other] - margin).pow(2).mean()
