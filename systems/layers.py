"""The trained S1 and its goal encoder as lockstep layers (the real-time runner reuses these objects)."""

from __future__ import annotations

import numpy as np

from infra.messages import MotionChunk
from s1_policy.features import array_to_chunk, shift_chunk
from s1_policy.policy import S1Policy
from systems.lockstep import ChunkLayer, GoalLayer, Privileged
from systems.tasks import Task, goal_params


class S1Layer(ChunkLayer):
    """S1 in the stack: image + proprio + z -> MotionChunk at S1's rate (no privileged input)."""

    def __init__(self, policy: S1Policy, n_dof: int, frame_dt: float) -> None:
        self.policy, self.n_dof, self.frame_dt = policy, n_dof, frame_dt
        self.seq = 0
        self.last: tuple[float, np.ndarray] | None = None  # (time, chunk array) of S1's previous chunk

    def reset(self, task: Task, privileged: Privileged) -> None:
        self.seq, self.last = 0, None
        self.start(privileged.time)

    def start(self, t0: float) -> None:
        """A new instruction began at ``t0`` (the clock of ``now``): restart S1's task clock."""
        self.policy.reset()
        self.t0 = t0

    def chunk(self, now: float, image: np.ndarray, proprio: np.ndarray, z: np.ndarray,
              privileged: Privileged) -> MotionChunk:
        prefix = None
        if self.policy.keeps_prefix and self.last is not None:
            prefix = shift_chunk(self.last[1], max(0.0, now - self.last[0]) / self.frame_dt, self.n_dof)
        a = self.policy.infer(image, proprio, z, now - self.t0, prefix)
        out = array_to_chunk(a, self.n_dof, now, self.frame_dt, self.seq)
        self.seq, self.last = self.seq + 1, (now, a)
        return out


class GoalEncoderLayer(GoalLayer):
    """S2's place while S1 is evaluated on its own: z from the privileged goal parameters (S1's goal encoder)."""

    def __init__(self, policy: S1Policy) -> None:
        self.policy = policy

    def goal(self, now: float, image: np.ndarray, instruction: str, privileged: Privileged) -> np.ndarray:
        task = privileged.task
        obj = privileged.objects.get(task.target) if task.target else None
        return self.policy.encode_goal(goal_params(task, obj, privileged.root_xy, privileged.root_yaw))
