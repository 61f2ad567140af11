"""The trained S1 as an inference object: (image, proprio, z) -> one denormalised chunk, plus its goal encoder.

Loads a ``s1-policy`` checkpoint (safetensors + JSON): the model, the goal encoder and the normaliser
statistics it was trained with. Rate: S1's (25 Hz by default); one chunk per call, batch 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from infra.checkpoint import CheckpointError, load_checkpoint, unflatten_state
from infra.config.s1 import S1ModelConfig, check_guidance
from infra.config.stack import StackConfig
from s1_policy.features import ChunkCoding, ProprioInput, TaskClock, inpaint_weights
from s1_policy.goal import GoalEncoder
from s1_policy.heads import Prefix
from s1_policy.model import S1Model

POLICY_KIND = "s1-policy"
KINDS = ("s1-policy", "s1-train")


class S1Policy:
    """``infer(image (S, S, 3) uint8, proprio (P,), z (D,)) -> (H, A) float32`` in physical units."""

    @classmethod
    def for_stack(cls, path: str | Path, stack: StackConfig, seed: int = 0) -> S1Policy:
        """The policy with the stack's run-time sampling settings (``s1_sample_steps``, ``s1_guidance``)."""
        return cls(path, seed, sample_steps=stack.s1_sample_steps, guidance=stack.s1_guidance,
                   inpaint_frames=stack.s1_inpaint_frames, warm_start=stack.s1_warm_start)

    def __init__(self, path: str | Path, seed: int = 0, sample_steps: int = 0, guidance: float = 0.0,
                 inpaint_frames: int = 0, warm_start: float = 0.0) -> None:
        """``sample_steps``: the flow (diffusion) head's integration (denoising) steps at inference; 0 keeps the
        checkpoint's. The flow loss does not depend on it, so it is a speed/quality choice made at run time.
        ``guidance``: the classifier-free guidance weight (``S1ModelConfig.guidance``); 0 keeps the checkpoint's.
        ``inpaint_frames``: how many leading frames of a chunk a ``prefix`` passed to :meth:`infer` pins
        (``StackConfig.s1_inpaint_frames``). ``warm_start``: the τ at which a chunk with a ``prefix`` starts its
        integration (``StackConfig.s1_warm_start``). With both 0, prefixes are ignored."""
        ckpt = load_checkpoint(path)
        if ckpt.sidecar.get("kind") not in KINDS:
            raise CheckpointError(f"{path}: expected an S1 checkpoint ({' or '.join(KINDS)}), "
                                  f"got {ckpt.sidecar.get('kind')}")
        self.path, self.meta, self.sha256 = Path(path), ckpt.meta, ckpt.sidecar["sha256"]
        self.config = S1ModelConfig(**ckpt.meta["model"])
        self.model = S1Model(self.config)
        self.model.load_state_dict(unflatten_state("model", ckpt.tensors))
        self.model.eval()
        if sample_steps:
            self.model.head.set_sample_steps(sample_steps)
        if guidance:
            try:
                check_guidance(guidance, self.config.goal_dropout, self.config.head)
            except ValueError as exc:
                raise CheckpointError(f"{path}: {exc}") from None
            self.model.guidance = guidance
        if (inpaint_frames or warm_start) and self.config.head != "flow":
            raise CheckpointError(f"{path}: s1_inpaint_frames={inpaint_frames}, s1_warm_start={warm_start} need a "
                                  f"flow head, this one is {self.config.head}")
        self.inpaint_frames, self.warm_start = inpaint_frames, warm_start
        self.goal = GoalEncoder(int(ckpt.meta["goal_dim"]), self.config.z_dim)
        self.goal.load_state_dict(unflatten_state("goal", ckpt.tensors))
        self.goal.eval()
        self.stats = {k.removeprefix("stats/"): v for k, v in ckpt.tensors.items() if k.startswith("stats/")}
        self.inputs = ProprioInput.of(ckpt.meta["config"])
        self.coding = ChunkCoding.of(ckpt.meta["config"])
        self.generator = torch.Generator().manual_seed(seed)
        self.seed = seed

    @property
    def clock(self) -> TaskClock:
        return self.inputs.clock

    @property
    def n_dof(self) -> int:
        return self.config.action_dim - 4

    @property
    def blind(self) -> bool:
        """Trained without the body state (``TrainS1Config.proprio_dropout=1``): it is zeroed here too."""
        return self.inputs.blind

    @property
    def keeps_prefix(self) -> bool:
        """Whether :meth:`infer` uses a ``prefix`` (inpainting or warm start)."""
        return self.inpaint_frames > 0 or self.warm_start > 0

    def reset(self) -> None:
        """A new episode: the sampling noise restarts from the seed (deterministic episodes)."""
        self.generator.manual_seed(self.seed)

    @torch.inference_mode()
    def encode_goal(self, goal_params: np.ndarray) -> np.ndarray:
        """Privileged goal parameters (G,) -> z (D,) float32."""
        return self.goal(torch.as_tensor(goal_params, dtype=torch.float32)[None])[0].numpy()

    @torch.inference_mode()
    def infer(self, image: np.ndarray, proprio: np.ndarray, z: np.ndarray, task_time: float = 0.0,
              prefix: tuple[np.ndarray, int] | None = None) -> np.ndarray:
        """``task_time``: s since the current instruction (used when the policy was trained with a task clock).
        ``prefix``: (a chunk (H, A) in physical units, how many of its leading frames are known), as
        ``features.shift_chunk`` returns it: the previous chunk seen from now. With ``inpaint_frames`` > 0 the new
        chunk keeps those frames (weights ``features.inpaint_weights``); with ``warm_start`` > 0 its integration
        starts on their path (``heads.Prefix``)."""
        s = self.stats
        img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
        p = self.inputs((torch.as_tensor(proprio, dtype=torch.float32)[None] - s["proprio_mean"]) / s["proprio_std"],
                        task_time)
        pinned = None
        if prefix is not None and self.keeps_prefix:
            values, valid = prefix
            values = self.coding.encode(values, self.n_dof)
            weights = inpaint_weights(self.config.horizon, self.inpaint_frames, valid if self.inpaint_frames else 0)
            pinned = Prefix((torch.as_tensor(values, dtype=torch.float32)[None] - s["action_mean"]) / s["action_std"],
                            torch.from_numpy(weights), self.warm_start)
        chunk = self.model.sample(img, p, torch.as_tensor(z, dtype=torch.float32)[None], generator=self.generator,
                                  prefix=pinned)
        return self.coding.decode((chunk[0] * s["action_std"] + s["action_mean"]).numpy(), self.n_dof)
