"""S0 controllers that need no training. The trained tracking controller joins them in a later issue."""

from __future__ import annotations

import torch

from s0_locomotion.body import Body
from s0_locomotion.sim.backend import SimObs


class StandController:
    """Holds the body's default standing pose: joint PD targets = default pose, every control step.

    Balance comes from the PD gains alone (position actuators at physics rate); see ``infra.config.schemas``
    for why the leg gains are as stiff as they are. Rate: S0's control rate.
    """

    def __init__(self, body: Body, num_envs: int) -> None:
        self._targets = torch.from_numpy(body.default_pose).expand(num_envs, -1).contiguous()  # (N, n_dof)

    def reset(self) -> None:
        """Stateless; present for the layer-policy contract."""

    def act(self, obs: SimObs) -> torch.Tensor:
        """obs -> (N, n_dof) joint targets, rad."""
        return self._targets
