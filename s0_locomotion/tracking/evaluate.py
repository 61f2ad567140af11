"""Evaluation of S0 tracking: play every clip from its first frame to its end, with or without randomisation.

Metrics (PHC's definitions): an episode succeeds when it is not terminated (mean body-position error
above ``terminate_error_m``) and its mean body-position error stays under 0.5 m. ``mpjpe_mm`` is the
global mean per-body position error; joint errors are mean absolute hinge-angle errors; ``root_drift_m``
is the horizontal root position error at the end of the episode (or at termination); ``survived_s`` is
the simulated time until termination, or the clip's length when the episode is not terminated (how far a
walk gets before the body falls, which the success rate alone hides).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from infra.config.s0 import EvalS0Config
from s0_locomotion.body import Body
from s0_locomotion.motion.library import clip_names
from s0_locomotion.motion.sources import load_motions
from s0_locomotion.tracking.balance import feedback_config
from s0_locomotion.tracking.env import TrackingEnv
from s0_locomotion.tracking.policy import S0Policy

FIELDS = ("success_rate", "mpjpe_mm", "joint_error_rad", "hand_joint_error_rad", "root_drift_m", "survived_s")


def evaluate_s0(cfg: EvalS0Config, policy: S0Policy | None) -> dict:
    """Run ``episodes`` per clip (all worlds in parallel); ``policy=None`` tracks with zero residual (PD only)."""
    torch.set_num_threads(1)
    body = Body(cfg.env.body)
    balanced = eval_balanced_gait(cfg, policy)
    clips = load_motions(cfg.env.clips or clip_names(), body, balanced)
    episodes = max(1, cfg.episodes)
    jobs = [(c, e) for c in range(len(clips)) for e in range(episodes)]
    env_cfg = dataclasses.replace(cfg.env, randomize=dataclasses.replace(cfg.env.randomize, enabled=cfg.randomize),
                                  sim=dataclasses.replace(cfg.env.sim, num_envs=min(len(jobs), cfg.env.sim.num_envs)))
    if policy is not None:  # the observation, action and target feedback the policy was trained with
        trained = policy.observation_config
        balance = feedback_config(cfg.env.balance, trained["balance"])
        env_cfg = dataclasses.replace(env_cfg, **(trained | {"balance": balance}))
    env = TrackingEnv(env_cfg, clips, body)
    env.auto_reset = False
    hands = [i for g, idx in body.groups.items() if g.endswith("hand") for i in idx]
    rows: list[dict] = []
    try:
        for first in range(0, len(jobs), env.num_envs):
            batch = jobs[first:first + env.num_envs]
            batch = batch + [batch[-1]] * (env.num_envs - len(batch))  # pad with repeats, dropped below
            rows += _run_batch(env, policy, [c for c, _ in batch], hands)[: len(jobs) - first]
    finally:
        env.close()
    return _summarize(rows, [c.name for c in clips], [c for c, _ in jobs], episodes) | {"balanced_gait": balanced}


def eval_balanced_gait(cfg: EvalS0Config, policy: S0Policy | None) -> bool:
    """Whether the library's walks are the balanced ones: ``cfg.balanced_gait`` when set, else the walks the
    policy was trained on, else ``cfg.env.balanced_gait``."""
    if cfg.balanced_gait is not None:
        return cfg.balanced_gait
    return policy.balanced_gait if policy is not None else cfg.env.balanced_gait


def _run_batch(env: TrackingEnv, policy: S0Policy | None, clip_ids: list[int], hands: list[int]) -> list[dict]:
    clip = torch.tensor(clip_ids)
    obs = env.start(clip, torch.zeros(len(clip_ids), dtype=torch.long))
    steps = int(env.lib.lengths[clip].max()) - 1
    n = env.num_envs
    alive = torch.ones(n, dtype=torch.bool)
    active = torch.ones(n, dtype=torch.bool)
    err_sum, joint_sum, hand_sum, count = (torch.zeros(n) for _ in range(4))
    drift = torch.zeros(n)
    for _ in range(steps):
        action = policy.act(obs["policy"]) if policy is not None else torch.zeros(n, env.num_actions)
        obs, _, _, extras = env.step(action)
        ref = env.lib.frame(env.clip, env.t)
        live = active & alive
        q_err = (env.obs.joint_pos - ref["joint_pos"]).abs()
        err_sum += torch.where(live, extras["body_error"], 0.0)
        joint_sum += torch.where(live, q_err.mean(-1), 0.0)
        hand_sum += torch.where(live, q_err[:, hands].mean(-1), 0.0)
        count += live.float()
        drift = torch.where(live, torch.linalg.norm((env.obs.root_pos - ref["root_pos"])[:, :2], dim=-1), drift)
        alive &= ~extras["fell"]
        active &= env.t < env.lib.lengths[env.clip] - 1
    mean_err = err_sum / count.clamp(min=1)
    return [{"success": bool(alive[i] and mean_err[i] < 0.5), "mpjpe_mm": float(mean_err[i] * 1000),
             "joint_error_rad": float(joint_sum[i] / count[i].clamp(min=1)),
             "hand_joint_error_rad": float(hand_sum[i] / count[i].clamp(min=1)), "root_drift_m": float(drift[i]),
             "survived_s": float(count[i]) * env.backend.ctrl_dt}
            for i in range(n)]


def _summarize(rows: list[dict], names: list[str], clip_of_row: list[int], episodes: int) -> dict:
    def agg(subset: list[dict]) -> dict:
        out = {"success_rate": float(np.mean([r["success"] for r in subset]))}
        out |= {k: float(np.mean([r[k] for r in subset])) for k in FIELDS[1:]}
        return {k: round(v, 4) for k, v in out.items()} | {"episodes": len(subset)}

    per_clip = {name: agg([r for r, c in zip(rows, clip_of_row) if c == i]) for i, name in enumerate(names)}
    return agg(rows) | {"per_clip": per_clip, "episodes_per_clip": episodes}
