"""S2 in the stack, and the bridge from demonstrations to S2's training data."""

from __future__ import annotations

import logging

import numpy as np
import torch

from s1_policy.dataset import DemoDataset
from s1_policy.policy import S1Policy
from s2_vlm.policy import S2Policy
from s2_vlm.train import S2Data
from systems.collect import IMAGE_KEY
from systems.lockstep import GoalLayer, Privileged
from systems.tasks import FAMILY_NAMES, Task, goal_params

log = logging.getLogger("humanoid.s2")


def stop_z(s1: S1Policy) -> np.ndarray:
    """The latent goal of "stop" (stand where you are): what S1 gets for an instruction S2 refuses."""
    return s1.encode_goal(goal_params(Task("stop", "stop"), None, np.zeros(2), 0.0))


class S2Layer(GoalLayer):
    """S2 at its rate: z from the image and the instruction. An instruction outside the task families
    (MiniLM similarity to every training instruction below ``min_similarity``) gets the stop goal and one log
    line, never a guess."""

    def __init__(self, policy: S2Policy, z_stop: np.ndarray, min_similarity: float = 0.5) -> None:
        self.policy, self.z_stop, self.min_similarity = policy, z_stop, min_similarity
        self._checked: str | None = None
        self.in_scope = True
        self.last: dict[str, np.ndarray] = {}

    def reset(self, task: Task) -> None:
        self._checked, self.last = None, {}

    def check(self, instruction: str) -> bool:
        if instruction != self._checked:
            self._checked = instruction
            sim = self.policy.known_similarity(instruction)
            self.in_scope = sim >= self.min_similarity
            if not self.in_scope:
                log.warning("S2: %r is outside the task families (similarity %.2f < %.2f): stop and stand",
                            instruction, sim, self.min_similarity)
        return self.in_scope

    def goal(self, now: float, image: np.ndarray, instruction: str, privileged: Privileged) -> np.ndarray:
        if not self.check(instruction):
            self.last = {"z": self.z_stop}
            return self.z_stop
        self.last = self.policy.infer(image, instruction)
        return self.last["z"]


def s2_data(root: str, s1: S1Policy) -> S2Data:
    """A demonstration dataset as S2 training data: z targets from S1's frozen goal encoder."""
    ds = DemoDataset(root)
    goal = ds.column("observation.goal")
    images = np.concatenate([ds.video_frames(IMAGE_KEY, e["episode_index"]) for e in ds.episodes])
    episode = ds.column("episode_index").reshape(-1)
    frame = ds.column("frame_index").reshape(-1)
    with torch.inference_mode():
        z = s1.goal(torch.from_numpy(goal)).numpy()
    n_fam = len(FAMILY_NAMES)
    return S2Data(images=images, texts=[ds.task_of(i) for i in range(len(ds))], z=z.astype(np.float32),
                  bearing=goal[:, n_fam:n_fam + 2].copy(), distance=goal[:, n_fam + 2].copy(),
                  has_target=goal[:, n_fam + 3].copy(), family=goal[:, :n_fam].argmax(1).astype(np.int64),
                  episode=episode, frame=frame)

