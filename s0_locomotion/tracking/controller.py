"""The S0 layer of the stack: the trained tracking policy following a stream of MotionChunks.

The policy was trained on clips (``env.py``); here its reference comes from chunks instead. A chunk's
root trajectory is relative to a heading frame at the chunk's start (``infra.chunks``). The controller
anchors frame 0 at :meth:`anchor`: the pose its *current reference* has at that instant, not the measured
root. The reference is then one continuous world-frame path, as a clip was in training, and the policy
keeps seeing (and correcting) its drift from it; anchoring every chunk on the measured root would hide
the drift and the body wanders (measured: 0.25 m and 50 deg in 4 s of standing). When the robot is more
than ``re_anchor_m`` or ``re_anchor_rad`` off its reference (a push, a fall), the anchor moves to the
measured root. Every control step the controller reads the frames ``future_frames`` ahead of *now*,
builds the training observation and adds the policy's residual to the next reference frame.

Past the chunk's last frame it holds that frame (a stale stream ends in a standing hold, not a jump).
Rate: S0's control period ``ctrl_dt``. One world (observations of batch 1).
"""

from __future__ import annotations

import numpy as np
import torch

from infra.chunks import chunk_to_world
from infra.config import to_dict
from infra.config.s0 import BalanceConfig, TrackingEnvConfig
from infra.messages import MotionChunk
from s0_locomotion.body import Body
from s0_locomotion.sim.backend import SimObs
from s0_locomotion.tracking.balance import BalanceFeedback, feedback_config
from s0_locomotion.tracking.env import policy_observation
from s0_locomotion.tracking.policy import S0Policy, observation_config
from s0_locomotion.tracking.rotations import yaw_of


def yaw_quat(yaw: np.ndarray) -> np.ndarray:
    """(H,) yaw, rad -> (H, 4) wxyz rotations about world z."""
    return np.stack([np.cos(yaw / 2), np.zeros_like(yaw), np.zeros_like(yaw), np.sin(yaw / 2)], axis=-1)


class S0Controller:
    """MotionChunk stream + robot observation -> joint position targets (1, n_dof), rad.

    ``policy=None`` tracks with zero residual (plain PD on the reference), for baselines and tests.
    ``balance`` adds the SIMBICON feedback of ``balance.py`` to the targets when enabled; otherwise the
    feedback the policy was trained with (its ``env.balance``), if any, applies.
    """

    def __init__(self, policy: S0Policy | None, body: Body, ctrl_dt: float, re_anchor_m: float = 0.4,
                 re_anchor_rad: float = 0.5, balance: BalanceConfig | None = None) -> None:
        self.policy, self.body, self.ctrl_dt = policy, body, ctrl_dt
        self.re_anchor_m, self.re_anchor_rad = re_anchor_m, re_anchor_rad
        trained = policy.observation_config if policy is not None else observation_config(to_dict(TrackingEnvConfig()))
        self.future, self.action_scale = trained["future_frames"], trained["action_scale"]
        self.root_vel = trained["actor_root_vel"]
        self.default_pose = torch.from_numpy(body.default_pose.astype(np.float32))
        balance = feedback_config(balance, trained["balance"])
        self.balance = BalanceFeedback(balance, body) if balance.enabled else None
        self.chunks_received = self.stale_steps = self.re_anchors = 0

    def reset(self, obs: SimObs) -> None:
        """Reference = the default standing pose where the robot stands now."""
        yaw = float(yaw_of(obs.root_quat)[0])
        self._set_frames(start=float(obs.time[0]), joints=self.body.default_pose[None].astype(np.float32),
                         xy=obs.root_pos[0, :2].numpy()[None].astype(float), yaw=np.array([yaw]),
                         height=np.array([self.body.root_height]))
        self.last_action = torch.zeros(1, self.body.n_dof)
        self.chunks_received = self.stale_steps = self.re_anchors = 0

    def anchor(self, obs: SimObs, at: float | None = None) -> tuple[np.ndarray, float]:
        """Planar pose (xy (2,), yaw) where frame 0 of a chunk starting at ``at`` (default: now) belongs: the
        reference's pose then, or the measured root's when the robot is too far off its reference."""
        t = float(obs.time[0]) if at is None else at
        k = min(max(int(round((t - self.start) / self.ctrl_dt)), 0), len(self.joints) - 1)
        ref_xy, ref_yaw = self.root_pos[k, :2].numpy().astype(float), float(self.yaw[k])
        xy, yaw = obs.root_pos[0, :2].numpy().astype(float), float(yaw_of(obs.root_quat)[0])
        dyaw = abs((ref_yaw - yaw + np.pi) % (2 * np.pi) - np.pi)
        if np.linalg.norm(ref_xy - xy) > self.re_anchor_m or dyaw > self.re_anchor_rad:
            self.re_anchors += 1
            return xy, yaw
        return ref_xy, ref_yaw

    def set_chunk(self, chunk: MotionChunk, anchor_xy: np.ndarray, anchor_yaw: float) -> None:
        """Place a chunk's frame 0 at the planar pose ``anchor`` (see :meth:`anchor`); it replaces the
        previous reference."""
        if abs(chunk.frame_dt - self.ctrl_dt) > 1e-6:
            raise ValueError(f"S0: MotionChunk.frame_dt {chunk.frame_dt} s != S0 period {self.ctrl_dt} s")
        if chunk.joint_pos.shape[1] != self.body.n_dof:
            raise ValueError(f"S0: MotionChunk.joint_pos has {chunk.joint_pos.shape[1]} joints, body has "
                             f"{self.body.n_dof}")
        xy, heading = chunk_to_world(chunk.root_planar_vel.astype(float), chunk.root_heading, chunk.frame_dt,
                                     np.asarray(anchor_xy, dtype=float), float(anchor_yaw))
        self._set_frames(chunk.start_time, chunk.joint_pos, xy, heading, chunk.root_height.astype(float))
        self.chunks_received += 1

    def _set_frames(self, start: float, joints: np.ndarray, xy: np.ndarray, yaw: np.ndarray,
                    height: np.ndarray) -> None:
        self.start = start
        self.joints = torch.from_numpy(np.ascontiguousarray(joints, dtype=np.float32))  # (H, n)
        root = np.concatenate([xy, height[:, None]], axis=1)
        self.root_pos = torch.from_numpy(root.astype(np.float32))  # (H, 3) world
        self.root_quat = torch.from_numpy(yaw_quat(yaw).astype(np.float32))  # (H, 4) world
        self.yaw = np.asarray(yaw, dtype=float)  # (H,) world

    def frame(self, k: int) -> dict[str, torch.Tensor]:
        """Reference frame k of the current chunk (clamped to its last frame), batch 1."""
        k = min(max(k, 0), len(self.joints) - 1)
        return {"joint_pos": self.joints[k:k + 1], "root_pos": self.root_pos[k:k + 1],
                "root_quat": self.root_quat[k:k + 1]}

    @torch.inference_mode()
    def act(self, obs: SimObs) -> torch.Tensor:
        """Targets for the next control period: q_ref(now + ctrl_dt) + action_scale * policy residual."""
        now = int(round((float(obs.time[0]) - self.start) / self.ctrl_dt))
        if now + 1 > len(self.joints) - 1:
            self.stale_steps += 1
        ref = self.frame(now + 1)
        nxt = ref["joint_pos"]
        if self.balance is not None:
            k = min(max(now + 1, 1), len(self.joints) - 1)
            ref_vel = (self.root_pos[k:k + 1] - self.root_pos[k - 1:k]) / self.ctrl_dt if len(self.joints) > 1 \
                else torch.zeros(1, 3)
            nxt = nxt + self.balance(obs.root_quat, obs.root_lin_vel, obs.foot_contact, ref["root_quat"], ref_vel)
        if self.policy is None:
            return nxt.clone()
        x = policy_observation(obs, [self.frame(now + k) for k in self.future], self.default_pose, self.last_action,
                               root_vel=self.root_vel)
        action = self.policy.act(x).clamp(-5.0, 5.0)
        if not torch.isfinite(action).all():  # never forward NaN to the actuators: track the reference
            action = torch.zeros_like(action)
        self.last_action = action
        return nxt + self.action_scale * action
