"""The S0 tracking environment on the batched simulation, with rsl-rl's VecEnv contract.

Each world plays one reference clip from a random frame (reference state initialisation). The policy
sees proprioception without global position, in the robot's heading frame, plus the reference at
``future_frames`` steps ahead; the critic also sees privileged state. Actions are joint PD targets
*around the reference*: ``q* = q_ref + action_scale * a``. With the stiff PD of the body, a = 0 already
tracks the joints, so the policy only learns the balance corrections; targets around the default pose
would make it learn the whole motion as well (slower on a CPU budget, and S1 gives references anyway).
Rewards are DeepMimic's terms (``rewards.py``), logged per term as ``reward/<term>``.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from tensordict import TensorDict

from infra.config.s0 import TrackingEnvConfig
from infra.config.schemas import SceneConfig
from s0_locomotion.body import Body
from s0_locomotion.motion.clip import MotionClip
from s0_locomotion.sim.backend import SimObs
from s0_locomotion.sim.mujoco_backend import MujocoBackend
from s0_locomotion.tracking import rewards as R
from s0_locomotion.tracking.balance import BalanceFeedback
from s0_locomotion.tracking.motion_lib import MotionLib
from s0_locomotion.tracking.rotations import (
    quat_conj,
    quat_mul,
    quat_rotate_inverse,
    quat_to_tan_norm,
    rotate_z,
    yaw_of,
)

KEY_BODIES = ("left_foot", "right_foot", "left_hand", "right_hand", "head")


class TrackingEnv:
    """N worlds tracking reference clips. Shapes: (num_envs, ...). Rate: S0's control rate (ctrl_dt)."""

    def __init__(self, cfg: TrackingEnvConfig, clips: list[MotionClip], body: Body | None = None,
                 scene: SceneConfig | None = None, offscreen: tuple[int, int] = (640, 480)) -> None:
        self.cfg = cfg
        self.body = body or Body(cfg.body)
        self.backend = MujocoBackend(self.body, cfg.sim, scene or SceneConfig(objects=[]), offscreen=offscreen)
        self.num_envs, self.num_actions = cfg.sim.num_envs, self.body.n_dof
        self.device = torch.device("cpu")
        self.lib = MotionLib(clips, self.body, self.backend.body_names, self.backend.ctrl_dt)
        self.key_idx = [self.backend.body_names.index(b) for b in KEY_BODIES if b in self.backend.body_names]
        self.max_episode_length = int(round(cfg.episode_s / self.backend.ctrl_dt))
        self.rng = np.random.default_rng(cfg.sim.seed)
        n = self.num_envs
        self.clip = torch.zeros(n, dtype=torch.long)
        self.t = torch.zeros(n, dtype=torch.long)
        self.episode_length_buf = torch.zeros(n, dtype=torch.long)
        self.last_action = torch.zeros(n, self.num_actions)
        self.prev_targets = torch.zeros(n, self.num_actions)
        self.latency = torch.zeros(n, dtype=torch.bool)
        self.next_push = torch.zeros(n)
        self.default_pose = torch.from_numpy(self.body.default_pose)
        self.clip_fail = torch.full((self.lib.num_clips,), 0.5)  # running termination rate per clip
        self._variants = self._make_variants()
        self._variant = np.zeros(n, dtype=int)
        self.balance = BalanceFeedback(cfg.balance, self.body) if cfg.balance.enabled else None
        self.auto_reset = True  # training: done worlds restart at once; evaluation turns this off
        self.obs = self.reset_envs(torch.arange(n))
        self._obs_dict = self._observe(self.obs)

    # -- randomisation ---------------------------------------------------------------------------

    def _make_variants(self) -> list:
        r, base = self.cfg.randomize, self.backend.model
        if not r.enabled:
            return [base]
        variants = []
        floor = base.geom("floor").id
        for _ in range(r.variants):
            m = copy.copy(base)
            m.geom_friction[floor, 0] = self.rng.uniform(*r.friction)
            scale = self.rng.uniform(*r.mass_scale, size=m.nbody)
            scale[0] = 1.0
            m.body_mass[:] = base.body_mass * scale
            m.body_inertia[:] = base.body_inertia * scale[:, None]
            gain = self.rng.uniform(*r.kp_scale, size=m.nu)
            m.actuator_gainprm[:, 0] = base.actuator_gainprm[:, 0] * gain
            m.actuator_biasprm[:, 1:3] = base.actuator_biasprm[:, 1:3] * gain[:, None]
            variants.append(m)
        return variants

    # -- reset -----------------------------------------------------------------------------------

    def reset_envs(self, ids: torch.Tensor, clip: torch.Tensor | None = None,
                   start: torch.Tensor | None = None) -> SimObs:
        """Reference state initialisation: a random clip and frame (or the given ones), the body exactly
        on that frame."""
        if len(ids) == 0:
            return self.backend.observe()
        k = len(ids)
        lengths = self.lib.lengths.numpy()
        if clip is None:
            clip = torch.from_numpy(self.rng.choice(self.lib.num_clips, size=k, p=self.clip_probabilities()))
        if start is None:
            start = torch.from_numpy((self.rng.random(k) * (lengths[clip.numpy()] - 2)).astype(np.int64))
        self.clip[ids], self.t[ids] = clip, start
        self.episode_length_buf[ids] = 0
        ref = self.lib.frame(clip, start)
        self.put_on_reference(ids, ref)
        self.last_action[ids] = 0.0
        self.prev_targets[ids] = ref["joint_pos"]
        r = self.cfg.randomize
        self.latency[ids] = torch.from_numpy(self.rng.integers(0, r.latency_steps + 1, size=k) > 0) \
            if r.enabled else torch.zeros(k, dtype=torch.bool)
        self.next_push[ids] = torch.from_numpy(self.rng.uniform(*r.push_interval_s, size=k)).float()
        if r.enabled:
            variant = self.rng.integers(0, len(self._variants), size=k)
            self._variant[ids.numpy()] = variant
            self.backend.set_world_models(ids.numpy(), [self._variants[v] for v in variant])
        return self.backend.observe()

    def clip_probabilities(self) -> np.ndarray:
        """(C,) probability of drawing each clip at a reset (``cfg.clip_sampling``)."""
        if self.cfg.clip_sampling == "uniform":
            return np.full(self.lib.num_clips, 1.0 / self.lib.num_clips)
        w = self.clip_fail.double().numpy() + self.cfg.sampling_floor
        return w / w.sum()

    def _update_clip_failures(self, ids: torch.Tensor, fell: torch.Tensor, rate: float = 0.05) -> None:
        """Running (exponential, per ended episode) termination rate of the clips of the worlds ``ids``."""
        for c, f in zip(self.clip[ids].tolist(), fell[ids].float().tolist()):
            self.clip_fail[c] += rate * (f - self.clip_fail[c])

    def put_on_reference(self, ids: torch.Tensor, ref: dict[str, torch.Tensor]) -> None:
        """Set worlds exactly to reference frames: root pose and velocity, joint positions and velocities."""
        model = self.backend.model
        qpos = self.backend.qpos()[ids.numpy()]  # keeps the scene's objects where they are
        qvel = np.zeros((len(ids), model.nv))
        layout = self.backend.layout
        layout.write_pose(qpos, ref["root_pos"].numpy(), ref["root_quat"].numpy(), ref["joint_pos"].numpy())
        qvel[:, layout.root_v:layout.root_v + 3] = ref["root_lin_vel"].numpy()
        qvel[:, layout.root_v + 3:layout.root_v + 6] = ref["root_ang_vel"].numpy()  # body frame, as MuJoCo
        qvel[:, layout.joint_v] = ref["joint_vel"].numpy()
        self.backend.set_qpos_qvel(ids.numpy(), qpos, qvel)

    # -- VecEnv ----------------------------------------------------------------------------------

    def get_observations(self) -> TensorDict:
        return self._obs_dict

    def start(self, clip: torch.Tensor, frame: torch.Tensor) -> TensorDict:
        """Put every world on a given clip and frame (evaluation); returns the observations."""
        self.obs = self.reset_envs(torch.arange(self.num_envs), clip, frame)
        self._obs_dict = self._observe(self.obs)
        return self._obs_dict

    def step(self, actions: torch.Tensor) -> tuple[TensorDict, torch.Tensor, torch.Tensor, dict]:
        """actions (N, n_dof) -> observations, rewards (N,), dones (N,), extras (time_outs, log)."""
        actions = actions.detach().clamp(-5.0, 5.0)
        ref_next = self.lib.frame(self.clip, self.t + 1)
        targets = ref_next["joint_pos"] + self.cfg.action_scale * actions
        if self.balance is not None:
            o = self.obs
            targets = targets + self.balance(o.root_quat, o.root_lin_vel, o.foot_contact, ref_next["root_quat"],
                                             ref_next["root_lin_vel"])
        applied = torch.where(self.latency[:, None], self.prev_targets, targets)
        self.prev_targets = targets
        self._push()
        obs = self.backend.step(applied)
        self.t += 1
        self.episode_length_buf += 1
        self.last_action = actions
        ref = self.lib.frame(self.clip, self.t)
        terms = self.reward_terms(obs, ref)
        reward = sum(getattr(self.cfg.reward, f"w_{k}") * v for k, v in terms.items())
        error = body_position_error(obs.body_pos, ref["body_pos"])  # (N,) mean over bodies, m
        fell = error > self.cfg.terminate_error_m
        time_out = (self.t >= self.lib.lengths[self.clip] - 1) | (self.episode_length_buf >= self.max_episode_length)
        done = fell | time_out
        extras = {"time_outs": time_out & ~fell,
                  "log": {f"/reward/{k}": v.mean() for k, v in terms.items()}
                  | {"/episode/body_error_m": error.mean(), "/episode/fell": fell.float().mean()}}
        extras["body_error"], extras["fell"] = error, fell
        ids = torch.nonzero(done).flatten()
        self._update_clip_failures(ids, fell)
        extras["log"]["/sampling/clip_fail_max"] = self.clip_fail.max()
        extras["log"]["/sampling/clip_fail_mean"] = self.clip_fail.mean()
        if len(ids) and self.auto_reset:
            obs = self.reset_envs(ids)
        self.obs = obs
        self._obs_dict = self._observe(obs)
        return self._obs_dict, reward, done, extras

    def _push(self) -> None:
        r = self.cfg.randomize
        if not r.enabled or r.push_velocity <= 0:
            return
        time = self.episode_length_buf.float() * self.backend.ctrl_dt
        due = torch.nonzero(time >= self.next_push).flatten()
        if len(due) == 0:
            return
        angle = self.rng.uniform(-np.pi, np.pi, size=len(due))
        speed = self.rng.uniform(0, r.push_velocity, size=len(due))
        self.backend.push(due.numpy(), np.stack([speed * np.cos(angle), speed * np.sin(angle), 0 * speed], 1))
        self.next_push[due] = time[due] + torch.from_numpy(self.rng.uniform(*r.push_interval_s, size=len(due))).float()

    # -- rewards and observations ----------------------------------------------------------------

    def reward_terms(self, obs: SimObs, ref: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c = self.cfg.reward
        ee = obs.body_pos[:, self.key_idx] - obs.root_pos[:, None]
        ee_ref = ref["body_pos"][:, self.key_idx] - ref["root_pos"][:, None]
        return {
            "pose": R.pose_reward(obs.joint_pos, ref["joint_pos"], c.k_pose),
            "vel": R.velocity_reward(obs.joint_vel, ref["joint_vel"], c.k_vel),
            "ee": R.end_effector_reward(ee, ee_ref, c.k_ee),
            "root": R.root_reward(obs.root_pos, ref["root_pos"], obs.root_quat, ref["root_quat"], c.k_root),
            "com": R.com_reward(obs.com_vel, ref["com_vel"], c.k_com),
            "body": R.body_position_reward(obs.body_pos, ref["body_pos"], c.k_body),
        }

    def _observe(self, obs: SimObs) -> TensorDict:
        """Actor: proprioception + future reference in the heading frame. Critic: + privileged state."""
        refs = [self.lib.frame(self.clip, self.t + k) for k in self.cfg.future_frames]
        actor = policy_observation(obs, refs, self.default_pose, self.last_action, root_vel=self.cfg.actor_root_vel)
        yaw = yaw_of(obs.root_quat)
        ref = self.lib.frame(self.clip, self.t)
        body_err = rotate_z((obs.body_pos[:, self.key_idx] - ref["body_pos"][:, self.key_idx]).transpose(0, 1),
                            -yaw).transpose(0, 1).reshape(len(yaw), -1)
        critic = torch.cat([rotate_z(obs.root_lin_vel, -yaw), obs.root_pos[:, 2:3], body_err,
                            obs.foot_contact / 500.0], dim=-1)
        return TensorDict({"policy": actor, "critic": critic}, batch_size=[self.num_envs])

    def close(self) -> None:
        self.backend.close()


def body_position_error(body_pos: torch.Tensor, ref_body_pos: torch.Tensor) -> torch.Tensor:
    """Mean over bodies of the world-frame position error. (N, B, 3) x2 -> (N,) m."""
    return torch.linalg.norm(body_pos - ref_body_pos, dim=-1).mean(dim=-1)


def policy_observation(obs: SimObs, refs: list[dict[str, torch.Tensor]], default_pose: torch.Tensor,
                       last_action: torch.Tensor, root_vel: bool = False) -> torch.Tensor:
    """The S0 actor's observation: proprioception (no global position) and, for each future reference
    frame, the joint error and the reference root pose relative to the robot in its heading frame; with
    ``root_vel`` the root's linear velocity in the heading frame last (``TrackingEnvConfig.actor_root_vel``).

    refs: one dict per future frame with joint_pos (N, n), root_pos (N, 3), root_quat (N, 4) in the world.
    Returns (N, 3 n + 9 + len(refs) * (n + 9) [+ 3]).
    """
    yaw = yaw_of(obs.root_quat)
    gravity = quat_rotate_inverse(obs.root_quat, obs.root_quat.new_tensor([0.0, 0.0, -1.0]).expand(len(yaw), 3))
    parts = [obs.joint_pos - default_pose, 0.1 * obs.joint_vel, 0.25 * obs.root_ang_vel, gravity, last_action]
    for ref in refs:
        rel_pos = rotate_z(ref["root_pos"] - obs.root_pos, -yaw)
        rel_rot = quat_mul(quat_conj(obs.root_quat), ref["root_quat"])
        parts += [ref["joint_pos"] - obs.joint_pos, rel_pos, quat_to_tan_norm(rel_rot)]
    if root_vel:
        parts.append(rotate_z(obs.root_lin_vel, -yaw))
    return torch.cat(parts, dim=-1)
