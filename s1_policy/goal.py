"""The goal encoder: privileged goal parameters -> latent goal z, trained jointly with S1.

While S1 trains, z comes from this encoder applied to the task's privileged goal parameters (family
one-hot, target bearing and distance in the robot's heading frame). S2 later learns to produce the same
z from the head-camera image and the instruction (distillation), so z is bounded (tanh) to give S2 a
well-scaled regression target. Saved inside the S1 checkpoint under ``goal/``.
"""

from __future__ import annotations

import torch
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
