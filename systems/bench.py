"""Benchmarks that report ratios measured in one run (never asserted as wall-clock limits in tests)."""

from __future__ import annotations

import time

import mujoco
import numpy as np
import torch

from infra.config.schemas import BenchSimConfig
from s0_locomotion.body import Body
from s0_locomotion.sim.mujoco_backend import MujocoBackend


def raw_steps_per_s(backend: MujocoBackend, steps: int) -> float:
    """A plain single-threaded ``mj_step`` loop on one world of the same scene, ctrl = default pose."""
    model = backend.model
    data = mujoco.MjData(model)
    mujoco.mj_setState(model, data, backend.get_state(np.array([0]))[0], mujoco.mjtState.mjSTATE_FULLPHYSICS)
    data.ctrl[:] = backend.body.default_pose
    start = time.perf_counter()
    for _ in range(steps):
        mujoco.mj_step(model, data)
    return steps / (time.perf_counter() - start)


def batched_rate(backend: MujocoBackend, steps: int) -> float:
    """Control steps of all worlds through the backend (tensors in, observations out) per second."""
    actions = torch.from_numpy(backend.body.default_pose).expand(backend.num_envs, -1).contiguous()
    backend.step(actions)  # warm the thread pool
    start = time.perf_counter()
    for _ in range(steps):
        backend.step(actions)
    return steps * backend.num_envs / (time.perf_counter() - start)


def bench_sim(cfg: BenchSimConfig) -> dict:
    """``humanoid bench sim``: raw single-thread physics vs the batched backend, best of ``repeats``."""
    body = Body(cfg.body)
    backend = MujocoBackend(body, cfg.sim, cfg.scene)
    try:
        raw, env = 0.0, 0.0
        for _ in range(cfg.repeats):  # interleaved so that both see the same machine state
            backend.reset()
            raw = max(raw, raw_steps_per_s(backend, cfg.raw_steps))
            backend.reset()
            env = max(env, batched_rate(backend, cfg.batched_steps))
        batched = env * backend.decimation
        return {
            "raw_single_thread_steps_per_s": round(raw, 1),
            "batched_steps_per_s": round(batched, 1),
            "env_steps_per_s": round(env, 1),
            "ratio": round(batched / raw, 3),
            "n_worlds": backend.num_envs,
            "threads": backend.threads,
            "n_dof": body.n_dof,
            "decimation": backend.decimation,
            "sim_dt": backend.sim_dt,
            "objects": len(backend.scene.object_names),
        }
    finally:
        backend.close()
