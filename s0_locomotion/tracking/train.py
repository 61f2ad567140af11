"""PPO training of the S0 tracking controller with rsl-rl-lib's PPO and MLP models.

The loop is rsl_rl's OnPolicyRunner.learn in one pass (act -> step -> store -> returns -> update -> log ->
save), written out here so that checkpoints are safetensors + JSON (not torch.save pickles), metrics go
to MLflow, and a resumed run continues with the same state (weights, optimiser, normaliser, RNGs and
the worlds themselves).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rsl_rl.algorithms import PPO
from tqdm import tqdm

from infra.checkpoint import (
    CheckpointError,
    check_config_matches,
    flatten_state,
    load_checkpoint,
    optimizer_state,
    optimizer_tensors,
    save_checkpoint,
    unflatten_state,
)
from infra.config import to_dict
from infra.config.s0 import PPOConfig, TrainS0Config
from s0_locomotion.body import Body
from s0_locomotion.motion.library import clip_names
from s0_locomotion.motion.sources import load_motions
from s0_locomotion.sim.backend import SimError
from s0_locomotion.tracking.env import TrackingEnv
from s0_locomotion.tracking.policy import observation_config

TRAIN_KIND, POLICY_KIND = "s0-train", "s0-policy"


def rsl_config(ppo: PPOConfig) -> dict:
    """rsl-rl's train_cfg dict for PPO with MLP actor and critic and observation normalisation."""
    return {
        "algorithm": {"class_name": "PPO", "num_learning_epochs": ppo.epochs, "num_mini_batches": ppo.mini_batches,
                      "clip_param": ppo.clip, "gamma": ppo.gamma, "lam": ppo.lam, "value_loss_coef": 1.0,
                      "entropy_coef": ppo.entropy, "learning_rate": ppo.learning_rate, "max_grad_norm": 1.0,
                      "use_clipped_value_loss": True, "schedule": ppo.schedule, "desired_kl": ppo.desired_kl},
        "actor": {"class_name": "MLPModel", "hidden_dims": list(ppo.actor_hidden), "activation": "elu",
                  "obs_normalization": True,
                  "distribution_cfg": {"class_name": "GaussianDistribution", "init_std": ppo.init_noise_std}},
        "critic": {"class_name": "MLPModel", "hidden_dims": list(ppo.critic_hidden), "activation": "elu",
                   "obs_normalization": True},
        "obs_groups": {"actor": ["policy"], "critic": ["policy", "critic"]},
        "num_steps_per_env": ppo.steps_per_env,
        "multi_gpu": None,
    }


def build_ppo(env: TrackingEnv, ppo: PPOConfig) -> PPO:
    """rsl-rl's PPO with our models; its construction printout goes to stderr, keeping stdout for JSON."""
    with contextlib.redirect_stdout(sys.stderr):
        return PPO.construct_algorithm(env.get_observations(), env, rsl_config(ppo), "cpu")


def make_env(cfg: TrainS0Config) -> TrackingEnv:
    body = Body(cfg.env.body)
    return TrackingEnv(cfg.env, load_motions(cfg.env.clips or clip_names(), body, cfg.env.balanced_gait), body)


def _param_groups(opt: torch.optim.Optimizer) -> dict:
    """The optimiser's param groups (plain numbers) for the sidecar; its tensors go through optimizer_tensors."""
    groups = opt.state_dict()["param_groups"]
    return {"param_groups": [{k: v for k, v in g.items() if k != "params"} for g in groups],
            "params": [g["params"] for g in groups]}


def _env_tensors(env: TrackingEnv) -> dict[str, torch.Tensor]:
    sim = {f"env/sim/{k}": torch.from_numpy(v) for k, v in env.backend.snapshot().items()}
    return {**sim, "env/clip": env.clip, "env/t": env.t,
            "env/episode_length": env.episode_length_buf, "env/last_action": env.last_action,
            "env/prev_targets": env.prev_targets, "env/latency": env.latency.to(torch.uint8),
            "env/next_push": env.next_push, "env/variant": torch.from_numpy(env._variant),
            "env/clip_fail": env.clip_fail}


def save_training(path: Path, alg: PPO, env: TrackingEnv, cfg: TrainS0Config, iteration: int) -> Path:
    optim, optim_meta = optimizer_tensors(alg.optimizer), _param_groups(alg.optimizer)
    tensors = {**flatten_state("actor", alg.actor.state_dict()), **flatten_state("critic", alg.critic.state_dict()),
               **optim, **_env_tensors(env), "rng/torch": torch.get_rng_state()}
    meta = {"config": to_dict(cfg), "iteration": iteration, "optimizer": optim_meta,
            "learning_rate": alg.learning_rate, "env_rng": env.rng.bit_generator.state,
            "body": {"name": env.body.name, "n_dof": env.body.n_dof, "joint_names": env.body.joint_names},
            "clips": env.lib.names}
    return save_checkpoint(path, tensors, meta, kind=TRAIN_KIND)


def export_policy(path: Path, alg: PPO, env: TrackingEnv, cfg: TrainS0Config, iteration: int, stats: dict) -> Path:
    """The deployable actor: weights with its observation normaliser, and what the observations mean."""
    meta = {"config": to_dict(cfg.env), "ppo": to_dict(cfg.ppo), "iteration": iteration,
            "obs_dim": int(env.get_observations()["policy"].shape[1]), "n_dof": env.body.n_dof,
            "body": {"name": env.body.name, "joint_names": env.body.joint_names}, "clips": env.lib.names,
            "train_stats": stats}
    return save_checkpoint(path, flatten_state("actor", alg.actor.state_dict()), meta, kind=POLICY_KIND)


def restore_training(path: str, alg: PPO, env: TrackingEnv, cfg: TrainS0Config) -> int:
    ckpt = load_checkpoint(path, kind=TRAIN_KIND)
    keys = ["env.future_frames", "env.action_scale", "env.actor_root_vel", "env.sim.num_envs", "env.sim.sim_dt",
            "env.sim.ctrl_dt", "env.clips", "ppo.actor_hidden", "ppo.critic_hidden", "ppo.steps_per_env"]
    saved = ckpt.meta["config"]
    saved["env"]["actor_root_vel"] = observation_config(saved["env"])["actor_root_vel"]  # older runs: without
    check_config_matches(saved, to_dict(cfg), keys)  # names every mismatching key
    alg.actor.load_state_dict(unflatten_state("actor", ckpt.tensors))
    alg.critic.load_state_dict(unflatten_state("critic", ckpt.tensors))
    om = ckpt.meta["optimizer"]
    groups = [g | {"params": p} for g, p in zip(om["param_groups"], om["params"])]
    alg.optimizer.load_state_dict({"state": optimizer_state(ckpt.tensors), "param_groups": groups})
    alg.learning_rate = ckpt.meta["learning_rate"]
    t = ckpt.tensors
    snapshot = {k.removeprefix("env/sim/"): v.numpy() for k, v in t.items() if k.startswith("env/sim/")}
    try:
        env.backend.restore(snapshot)
    except SimError as exc:  # the body's instrumentation changed since: policy and optimiser still resume
        print(f"resume: worlds restart from reference states, the saved simulation state does not fit ({exc})",
              file=sys.stderr)
        torch.set_rng_state(t["rng/torch"])
        return int(ckpt.meta["iteration"])
    env.clip, env.t, env.episode_length_buf = t["env/clip"], t["env/t"], t["env/episode_length"]
    env.last_action, env.prev_targets = t["env/last_action"], t["env/prev_targets"]
    env.latency, env.next_push = t["env/latency"].bool(), t["env/next_push"]
    env._variant = t["env/variant"].numpy().copy()
    if "env/clip_fail" in t:  # checkpoints from before failure sampling start from the prior
        env.clip_fail = t["env/clip_fail"].clone()
    env.backend.set_world_models(np.arange(env.num_envs), [env._variants[v] for v in env._variant])
    env.rng.bit_generator.state = ckpt.meta["env_rng"]
    torch.set_rng_state(t["rng/torch"])
    env._obs_dict = env._observe(env.backend.observe())
    return int(ckpt.meta["iteration"])


def init_weights(path: str, alg: PPO, env: TrackingEnv, cfg: TrainS0Config) -> None:
    """Start from another run's actor and critic (fine-tuning): architecture and observations must match.

    ``path`` is a training checkpoint (actor and critic) or a deployable policy (``policy.safetensors``, the
    actor alone: the critic starts fresh, so give ``critic_warmup`` iterations in which only it learns).
    """
    ckpt = load_checkpoint(path)
    kind = ckpt.sidecar.get("kind")
    if kind == TRAIN_KIND:
        saved = ckpt.meta["config"]
    elif kind == POLICY_KIND:
        saved = {"env": ckpt.meta["config"], "ppo": ckpt.meta["ppo"]}
    else:
        raise CheckpointError(f"{path}: expected an S0 training ({TRAIN_KIND}) or policy ({POLICY_KIND}) "
                              f"checkpoint, got kind {kind!r}")
    keys = ["env.future_frames", "env.action_scale", "ppo.actor_hidden"]
    check_config_matches(saved, to_dict(cfg), keys + (["ppo.critic_hidden"] if kind == TRAIN_KIND else []))
    if ckpt.meta["body"]["joint_names"] != env.body.joint_names:
        raise CheckpointError(f"{path}: trained for another body ({ckpt.meta['body']['name']})")
    actor = unflatten_state("actor", ckpt.tensors)
    critic = unflatten_state("critic", ckpt.tensors) if kind == TRAIN_KIND else None
    had_vel = observation_config(saved["env"])["actor_root_vel"]
    if cfg.env.actor_root_vel and not had_vel:  # add the velocity inputs, the function stays the same
        obs = env.get_observations()["policy"]
        at = actor["mlp.0.weight"].shape[1]  # the velocity is the actor's last input, before the critic group
        vel = obs[:, at:]
        for state in (actor, critic) if critic is not None else (actor,):
            _insert_inputs(state, at, vel.mean(0), vel.var(0).clamp(min=1e-2))
    elif had_vel != cfg.env.actor_root_vel:
        raise CheckpointError(f"{path}: trained with env.actor_root_vel={had_vel}; this run has "
                              f"{cfg.env.actor_root_vel} (inputs can be added to a policy, not removed)")
    alg.actor.load_state_dict(actor)
    if critic is not None:
        alg.critic.load_state_dict(critic)


def _insert_inputs(state: dict[str, torch.Tensor], at: int, mean: torch.Tensor, var: torch.Tensor) -> None:
    """Widen an MLP model's input at column ``at`` by len(mean) inputs with zero weights (its outputs do not
    change) and normaliser statistics ``mean`` / ``var`` for them."""
    w = state["mlp.0.weight"]
    state["mlp.0.weight"] = torch.cat([w[:, :at], w.new_zeros(w.shape[0], len(mean)), w[:, at:]], dim=1)
    for key, value in (("_mean", mean), ("_var", var), ("_std", var.sqrt())):
        x = state[f"obs_normalizer.{key}"]
        state[f"obs_normalizer.{key}"] = torch.cat([x[:, :at], value[None], x[:, at:]], dim=1)


def train_s0(cfg: TrainS0Config, progress: bool = True, tracker=None) -> dict:
    """Run PPO for ``cfg.iterations``; checkpoints in ``cfg.out``. Returns the final statistics."""
    torch.set_num_threads(1)  # the simulation's C threads use the cores; torch's OpenMP spin would steal them
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    env = make_env(cfg)
    alg = build_ppo(env, cfg.ppo)
    if cfg.init and cfg.resume:
        raise ValueError("train s0: give init= (fine-tune) or resume= (continue), not both")
    if cfg.init:
        init_weights(cfg.init, alg, env, cfg)
    start = restore_training(cfg.resume, alg, env, cfg) if cfg.resume else 0
    stats: dict = {}
    with contextlib.ExitStack() as stack:
        stack.callback(env.close)
        bar = tqdm(range(start, start + cfg.iterations), desc="train s0", disable=not progress)
        for it in bar:
            warming = it - start < cfg.critic_warmup
            alg.actor.requires_grad_(not warming)  # warm-up: PPO's update trains the critic alone
            stats = _iteration(alg, env, cfg.ppo.steps_per_env) | {"policy/actor_frozen": float(warming)}
            if tracker is not None:
                tracker.log_metrics(stats, step=it + 1)
            bar.set_postfix(reward=f"{stats['episode/reward_per_step']:.3f}",
                            err=f"{stats['episode/body_error_m']:.3f}")
            if (it + 1) % cfg.save_every == 0 or it + 1 == start + cfg.iterations:
                save_training(out / "train.safetensors", alg, env, cfg, it + 1)
                export_policy(out / "policy.safetensors", alg, env, cfg, it + 1, stats)
    return stats | {"iteration": start + cfg.iterations}


def _iteration(alg: PPO, env: TrackingEnv, steps: int) -> dict[str, float]:
    """One PPO iteration: collect ``steps`` per world, compute returns, update. Returns metrics."""
    t0 = time.perf_counter()
    logs: dict[str, list[float]] = {}
    rewards, dones = [], []
    obs = env.get_observations()
    alg.train_mode()
    with torch.inference_mode():
        for _ in range(steps):
            actions = alg.act(obs)
            obs, reward, done, extras = env.step(actions)
            alg.process_env_step(obs, reward, done, extras)
            rewards.append(reward.mean().item())
            dones.append(done.float().mean().item())
            for key, value in extras["log"].items():
                logs.setdefault(key.strip("/"), []).append(float(value))
        collect = time.perf_counter() - t0
        alg.compute_returns(obs)
    torch.set_num_threads(len(os.sched_getaffinity(0)))  # the simulation is idle during the update
    losses = alg.update()
    torch.set_num_threads(1)
    total = time.perf_counter() - t0
    out = {k: float(np.mean(v)) for k, v in logs.items()}
    out |= {f"loss/{k}": float(v) for k, v in losses.items()}
    out |= {"episode/reward_per_step": float(np.mean(rewards)), "episode/done_rate": float(np.mean(dones)),
            "perf/env_steps_per_s": steps * env.num_envs / total, "perf/collect_s": collect,
            "perf/update_s": total - collect, "policy/learning_rate": float(alg.learning_rate),
            "policy/noise_std": float(alg.get_policy().output_std.detach().mean())}
    return out
