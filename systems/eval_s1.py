"""``humanoid eval s1``: the action heads side by side.

For each S1 checkpoint (one per head): ``chunk_error`` (mean squared error in normalised units of sampled
chunks against held-out demonstrations), ``success_rate`` (closed loop in the lockstep runner with the
trained S0 and S1's privileged goal encoder in S2's place, on held-out layouts and paraphrases, the task
families in turn), ``latency_ms_p50`` / ``latency_ms_p99`` (image encoding plus one full chunk sample, batch 1,
one CPU thread), and ``goal_cosine_max`` / ``goal_closest_pair`` (how close the goal encoder puts two task
families' latent goals).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from infra.config.s1 import EvalS1Config
from s1_policy.model import measure_latency
from s1_policy.policy import S1Policy
from s1_policy.train import Batcher, chunk_error, coded, load_demos
from systems.layers import GoalEncoderLayer, S1Layer
from systems.lockstep import LockstepRunner
from systems.tasks import (
    FAMILY_NAMES,
    GOAL_DIM,
    family_in_turn,
    sample_task,
    success_interval,
    task_rng,
    task_scene,
)


def closed_loop(runner: LockstepRunner, policy: S1Policy, cfg: EvalS1Config, progress: bool,
                video_path: Path | None = None) -> dict:
    """Run ``cfg.episodes`` held-out episodes; families in turn. Returns success overall and per family."""
    s1 = S1Layer(policy, runner.body.n_dof, runner.backend.ctrl_dt)
    s2 = GoalEncoderLayer(policy)
    per_family: dict[str, list[bool]] = {}
    fell = 0
    for i in tqdm(range(cfg.episodes), desc=f"eval s1 ({policy.config.head})", disable=not progress):
        family = family_in_turn(i)
        task = sample_task(task_rng(cfg.seed + i, "eval"), task_scene(cfg.stack.scene), "eval", [family])
        result = runner.run(task, s1, s2, video_every=2 if (video_path is not None and i == 0) else 0)
        per_family.setdefault(family, []).append(result.success)
        fell += int(result.fell)
        if video_path is not None and result.frames:
            import imageio.v2 as imageio

            imageio.mimwrite(video_path, result.frames, fps=25, macro_block_size=8)
    flat = [s for v in per_family.values() for s in v]
    return {"success_rate": round(float(np.mean(flat)), 4), "success_ci95": success_interval(flat),
            "fell_rate": round(fell / max(1, len(flat)), 4),
            "per_family": {f: round(float(np.mean(v)), 3) for f, v in per_family.items()}}


def goal_separation(policy: S1Policy) -> dict:
    """How far apart the goal encoder puts the task families: the largest cosine similarity between the z of two
    families' goal parameters without a target (their one-hot), and which pair. Near 1, S1 has to tell those
    families apart from small differences in z (an S1 trained without the separation term, cosine 0.85 for
    wave_right/squat, squatted when asked to wave right)."""
    if policy.goal.goal_dim != GOAL_DIM:
        return {}
    z = np.stack([policy.encode_goal(g) for g in np.eye(GOAL_DIM, dtype=np.float32)[:len(FAMILY_NAMES)]])
    z = z / np.linalg.norm(z, axis=1, keepdims=True).clip(min=1e-12)
    sim = z @ z.T
    np.fill_diagonal(sim, -np.inf)
    i, j = np.unravel_index(int(np.argmax(sim)), sim.shape)
    return {"goal_cosine_max": round(float(sim[i, j]), 3), "goal_closest_pair": f"{FAMILY_NAMES[i]}/{FAMILY_NAMES[j]}"}


def evaluate_s1(cfg: EvalS1Config, progress: bool = True, tracker=None) -> dict:
    torch.set_num_threads(1)
    runner = LockstepRunner(cfg.stack)
    heads: dict[str, dict] = {}
    try:
        for path in cfg.checkpoints:
            policy = S1Policy.for_stack(path, cfg.stack)
            name = policy.config.head + ("_clock" if policy.clock.dim else "")
            base, k = name, 2
            while name in heads:  # two checkpoints of one kind (a fine-tune against its base): both are reported
                name, k = f"{base}_{k}", k + 1
            entry: dict = {"checkpoint": path, "sample_steps": policy.model.head.sample_steps,
                           "guidance": policy.model.guidance}
            entry |= goal_separation(policy)
            if cfg.eval_data:
                held = coded(load_demos(cfg.eval_data, policy.config.horizon), policy.coding)
                batcher = Batcher(held, policy.stats, policy.inputs)
                entry["chunk_error"] = round(chunk_error(policy.model, policy.goal, batcher), 4)
            lat = measure_latency(policy.model, n=cfg.latency_calls)
            entry["latency_ms_p50"], entry["latency_ms_p99"] = round(lat["p50_ms"], 2), round(lat["p99_ms"], 2)
            video = Path(cfg.video) / f"s1_{name}.mp4" if cfg.video else None
            if video is not None:
                video.parent.mkdir(parents=True, exist_ok=True)
            entry |= closed_loop(runner, policy, cfg, progress, video)
            heads[name] = entry
            if tracker is not None:
                tracker.log_metrics({f"eval/{name}/{k}": v for k, v in entry.items() if isinstance(v, (int, float))})
                if video is not None and video.exists():
                    tracker.log_artifact(video)
    finally:
        runner.close()
    return {"heads": heads, "episodes": cfg.episodes}
