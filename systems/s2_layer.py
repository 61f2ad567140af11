"""S2 in the stack, and the bridge from demonstrations to S2's training data."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch

from infra.config.stack import StackConfig
from s1_policy.dataset import DemoDataset
from s1_policy.policy import S1Policy
from s2_vlm.policy import S2Policy
from s2_vlm.train import S2Data
from systems.collect import IMAGE_KEY
from systems.lockstep import GoalLayer, Privileged
from systems.tasks import (
    FAMILIES,
    FAMILY_NAMES,
    OUT_OF_SCOPE,
    Task,
    goal_params,
    instructions,
    object_phrase,
    pack_goal,
    task_for,
)

log = logging.getLogger("humanoid.s2")


def stop_z(s1: S1Policy) -> np.ndarray:
    """The latent goal of "stop" (stand where you are): what S1 gets for an instruction S2 refuses."""
    return s1.encode_goal(goal_params(Task("stop", "stop"), None, np.zeros(2), 0.0))


class InstructionFamily:
    """The task family an instruction names, read from the instruction alone: a kernel density classifier over
    S2's training instructions (``S2Policy.known``, each labelled by :func:`systems.tasks.task_for`) in the frozen
    MiniLM's sentence space, the space the refusal of unknown instructions already uses. A family's score is the
    mean of exp(cosine / ``temperature``) over its training instructions (a uniform prior over families, however
    many sentences each has); the scores are normalised to probabilities.

    Why not S2's family head: in this suite the family is a property of the words alone, and the head, which also
    sees the image, changes its mind from frame to frame on held-out paraphrases ("pivot to the right" read as
    face in some ticks of an episode and turn_right in others). The temperature, 0.05, minimises the negative
    log-likelihood of leaving each training template out (a template's sentences scored against the others')."""

    def __init__(self, policy: S2Policy, temperature: float = 0.05) -> None:
        if temperature <= 0:
            raise ValueError(f"instruction family: temperature must be > 0, got {temperature}")
        families = [task_for(text, None, 0.0).family for text in policy.known]
        self.rows = np.array([i for i, f in enumerate(families) if f in FAMILIES], dtype=np.int64)
        if len(self.rows) == 0:
            raise ValueError(f"{policy.path}: none of the checkpoint's {len(policy.known)} training instructions "
                             f"names a task family, so the family cannot be read from the instruction; use "
                             f"stack.s2_family=head")
        self.labels = np.array([FAMILY_NAMES.index(families[i]) for i in self.rows])
        self.policy, self.temperature = policy, temperature

    def __call__(self, instruction: str) -> np.ndarray:
        """(F,) float32 probabilities over ``FAMILY_NAMES``."""
        score = self.policy.similarities(instruction)[self.rows].astype(np.float64) / self.temperature
        kernel = np.exp(score - score.max())
        per_family = np.bincount(self.labels, weights=kernel, minlength=len(FAMILY_NAMES))
        per_family /= np.maximum(np.bincount(self.labels, minlength=len(FAMILY_NAMES)), 1)
        return (per_family / per_family.sum()).astype(np.float32)


class S2Layer(GoalLayer):
    """S2 at its rate: z from the image and the instruction. An instruction outside the task families
    (MiniLM similarity to every training instruction below ``min_similarity``) gets the stop goal and one log
    line, never a guess.

    With ``encode_goal`` (S1's frozen goal encoder, ``StackConfig.s2_z="params"``) z is not S2's z head but
    the goal encoder applied to S2's family and target heads (:func:`s2_goal_params`). With ``family`` too
    (``StackConfig.s2_family="text"``) the family is :class:`InstructionFamily`'s, read once per instruction;
    ``last["family"]`` is then that one and ``last["family_head"]`` the head's."""

    def __init__(self, policy: S2Policy, z_stop: np.ndarray, min_similarity: float = 0.5,
                 encode_goal: Callable[[np.ndarray], np.ndarray] | None = None,
                 family: InstructionFamily | None = None) -> None:
        self.policy, self.z_stop, self.min_similarity = policy, z_stop, min_similarity
        self.encode_goal, self.family = encode_goal, family
        self._checked: str | None = None
        self.in_scope = True
        self.text_family: np.ndarray | None = None
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
            self.text_family = self.family(instruction) if self.family is not None and self.in_scope else None
        return self.in_scope

    def goal(self, now: float, image: np.ndarray, instruction: str, privileged: Privileged) -> np.ndarray:
        if not self.check(instruction):
            self.last = {"z": self.z_stop}
            return self.z_stop
        self.last = self.policy.infer(image, instruction)
        if self.encode_goal is not None:
            self.last["z_head"] = self.last["z"]
            if self.text_family is not None:
                self.last["family_head"], self.last["family"] = self.last["family"], self.text_family
            self.last["z"] = self.encode_goal(s2_goal_params(self.last, from_family=self.text_family is not None))
        return self.last["z"]


def s2_goal_params(out: dict[str, np.ndarray], from_family: bool = False) -> np.ndarray:
    """S2's auxiliary heads as privileged goal parameters (:func:`pack_goal`): the most likely family, and,
    when S2 says there is a target, its bearing (cos, sin, renormalised), distance and the has-target flag.
    ``from_family``: whether there is a target is the family's (an object family has one), not the has-target
    head's, so that a family read from the instruction always comes with the target it needs."""
    family = int(np.argmax(out["family"]))
    has_target = FAMILIES[FAMILY_NAMES[family]][0] if from_family else float(out["has_target"]) > 0.5
    target = None
    if has_target:
        b = np.asarray(out["bearing"], np.float64)
        b = b / max(float(np.linalg.norm(b)), 1e-6)
        target = (b[0], b[1], max(float(out["distance"]), 0.0))
    return pack_goal(family, target)


def layer_for_stack(policy: S2Policy, s1: S1Policy, stack: StackConfig, min_similarity: float = 0.5) -> S2Layer:
    """The S2 layer the stack config asks for (``s2_z``, ``s2_family``), with S1's stop goal for refused
    instructions."""
    params = stack.s2_z == "params"
    family = InstructionFamily(policy, stack.s2_family_temperature) if params and stack.s2_family == "text" else None
    return S2Layer(policy, stop_z(s1), min_similarity, s1.encode_goal if params else None, family)


def training_paraphrases(texts: list[str]) -> dict[str, list[str]]:
    """For each instruction of the suite, the training templates of its family with its object filled in
    (:func:`systems.tasks.task_for` reads both); instructions outside the suite get no entry."""
    out = {}
    for text in set(texts):
        task = task_for(text, None, 0.0)
        if task.family != OUT_OF_SCOPE:
            out[text] = [t.format(obj=object_phrase(task.target)) if task.target else t
                         for t in instructions(task.family, "train")]
    return out


def s2_data(root: str, s1: S1Policy) -> S2Data:
    """A demonstration dataset as S2 training data: z targets from S1's frozen goal encoder, and each
    instruction's training paraphrases."""
    ds = DemoDataset(root)
    goal = ds.column("observation.goal")
    images = np.concatenate([ds.video_frames(IMAGE_KEY, e["episode_index"]) for e in ds.episodes])
    episode = ds.column("episode_index").reshape(-1)
    frame = ds.column("frame_index").reshape(-1)
    with torch.inference_mode():
        z = s1.goal(torch.from_numpy(goal)).numpy()
    n_fam = len(FAMILY_NAMES)
    texts = [ds.task_of(i) for i in range(len(ds))]
    return S2Data(images=images, texts=texts, z=z.astype(np.float32),
                  bearing=goal[:, n_fam:n_fam + 2].copy(), distance=goal[:, n_fam + 2].copy(),
                  has_target=goal[:, n_fam + 3].copy(), family=goal[:, :n_fam].argmax(1).astype(np.int64),
                  episode=episode, frame=frame, paraphrases=training_paraphrases(texts))

