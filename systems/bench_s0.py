"""``humanoid bench s0``: PPO training throughput vs the physics ceiling (same worlds, same run), and the
latency of one S0 policy call on one CPU thread."""

from __future__ import annotations

import time
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import torch

from infra.config.s0 import BenchS0Config
from s0_locomotion.tracking.policy import S0Policy
from s0_locomotion.tracking.train import _iteration, build_ppo, export_policy, make_env


def bench_s0(cfg: BenchS0Config) -> dict:
    torch.set_num_threads(1)
    env = make_env(cfg.train)
    try:
        alg = build_ppo(env, cfg.train.ppo)
        _iteration(alg, env, cfg.train.ppo.steps_per_env)  # warm-up
        steps = cfg.train.ppo.steps_per_env * env.num_envs
        start = time.perf_counter()
        for _ in range(cfg.iterations):
            _iteration(alg, env, cfg.train.ppo.steps_per_env)
        train_rate = cfg.iterations * steps / (time.perf_counter() - start)
        ceiling = _physics_rate(env, cfg.iterations * cfg.train.ppo.steps_per_env)
        with TemporaryDirectory() as tmp:
            path = export_policy(Path(tmp) / "p.safetensors", alg, env, cfg.train, 0, {})
            p50, p99 = _latency(S0Policy(path), env.get_observations()["policy"][:1], cfg.latency_calls)
    finally:
        env.close()
    return {"train_env_steps_per_s": round(train_rate, 1), "physics_env_steps_per_s": round(ceiling, 1),
            "ratio": float(f"{train_rate / ceiling:.4g}"), "policy_latency_ms_p50": round(p50, 4),
            "policy_latency_ms_p99": round(p99, 4), "num_envs": env.num_envs, "decimation": env.backend.decimation,
            "obs_dim": int(env.get_observations()["policy"].shape[1]), "n_dof": env.num_actions}


def _physics_rate(env, steps: int) -> float:
    """Control steps/s of the bare backend (targets = default pose), no policy, no rewards."""
    targets = torch.from_numpy(env.body.default_pose).expand(env.num_envs, -1).contiguous()
    start = time.perf_counter()
    for _ in range(steps):
        env.backend.step(targets)
    return steps * env.num_envs / (time.perf_counter() - start)


def _latency(policy: S0Policy, obs: torch.Tensor, calls: int) -> tuple[float, float]:
    times = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        policy.act(obs)
        times[i] = time.perf_counter() - t0
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)
