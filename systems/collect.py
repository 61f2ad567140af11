"""``humanoid collect``: scripted-teacher demonstrations, executed by the trained S0, in the LeRobot v3 layout.

Each episode draws a task (family, paraphrase, layout) from the training (or held-out) range, runs the
teacher in S1's place in the lockstep runner and records one row per S1 tick: the head-camera frame, the
proprioception, the privileged goal parameters, the robot's planar pose and the teacher's chunk. Episodes
in which the body falls keep only what came before the last ``FALL_MARGIN_S`` before the fall (the teacher's
reference was right; S0 failed to track it, and the seconds before a fall teach S1 nothing it should do);
what is left is dropped when shorter than ``MIN_EPISODE_S``.

With ``policy=`` an S1 checkpoint drives instead and the teacher labels the states it visits (DAgger,
:class:`systems.teacher.DaggerLayer`); ``humanoid train s1 more_data=[...]`` trains on both datasets.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from infra.config.stack import CollectConfig
from s1_policy.dataset import DatasetWriter, Feature
from s1_policy.features import action_dim, chunk_to_array, proprio_dim
from systems.lockstep import LockstepRunner, Tick
from systems.tasks import FAMILY_NAMES, GOAL_DIM, check_families, family_in_turn, sample_task, task_rng, task_scene
from systems.teacher import DaggerLayer, GoalParamsLayer, TeacherLayer

IMAGE_KEY = "observation.images.head"
FALL_MARGIN_S = 1.5
MIN_EPISODE_S = 2.0
GOAL_TARGET_NAMES = ["target.bearing_cos", "target.bearing_sin", "target.distance", "target.present"]


def demo_features(n_dof: int, horizon: int, image_size: int) -> dict[str, Feature]:
    """The per-frame features of a demonstration dataset (one frame per S1 tick)."""
    return {
        IMAGE_KEY: Feature("video", (image_size, image_size, 3), ["height", "width", "channels"]),
        "observation.state": Feature("float32", (proprio_dim(n_dof),)),
        "observation.goal": Feature("float32", (GOAL_DIM,), [f"family.{f}" for f in FAMILY_NAMES] + GOAL_TARGET_NAMES),
        "observation.root_pose": Feature("float32", (3,), ["x", "y", "yaw"]),
        "action": Feature("float32", (horizon * action_dim(n_dof),)),
    }


def episode_families(cfg: CollectConfig, i: int) -> list[str] | None:
    """The families episode i draws from: one in turn (``families_in_turn``), else all of ``families`` (None: all)."""
    return [family_in_turn(i, cfg.families)] if cfg.families_in_turn else (cfg.families or None)


def collect(cfg: CollectConfig, progress: bool = True, tracker=None) -> dict:
    """Record ``cfg.episodes`` successful-or-not (but upright) teacher episodes into ``cfg.out``."""
    check_families(cfg.families)  # before the dataset folder is created
    runner = LockstepRunner(cfg.stack)
    body = runner.body
    balance = runner.balanced_gait  # the teacher walks the way its S0 was trained to
    teacher = TeacherLayer(body, cfg.stack.rates.horizon, runner.backend.ctrl_dt, balance)
    goal = GoalParamsLayer()
    driver = teacher
    if cfg.policy:
        from s1_policy.policy import S1Policy
        from systems.layers import S1Layer

        torch.set_num_threads(1)  # one S1 chunk per tick, batch 1: more threads only contend with the simulation
        policy = S1Policy(cfg.policy)
        driver = DaggerLayer(S1Layer(policy, body.n_dof, runner.backend.ctrl_dt), policy.encode_goal, teacher,
                             cfg.beta, cfg.seed)
    fps = 1.0 / cfg.stack.rates.s1_period_s
    feats = demo_features(body.n_dof, cfg.stack.rates.horizon, cfg.stack.image_size)
    stats = {"episodes": 0, "truncated_fell": 0, "dropped_fell": 0, "frames": 0, "teacher_success": 0}
    per_family: dict[str, list[bool]] = {}
    t0 = time.perf_counter()
    try:
        with DatasetWriter(cfg.out, fps, feats) as writer:
            bar = tqdm(range(cfg.episodes), desc="collect", disable=not progress)
            for i in bar:
                task = sample_task(task_rng(cfg.seed + i, cfg.split), task_scene(cfg.stack.scene), cfg.split,
                                   episode_families(cfg, i))
                ticks: list[Tick] = []
                result = runner.run(task, driver, goal, record=ticks.append)
                rows = ticks if driver is teacher else [dataclasses.replace(t, chunk=c)  # the teacher's label
                                                              for t, c in zip(ticks, driver.labels, strict=True)]
                per_family.setdefault(task.family, []).append(result.success)
                if result.fell:
                    rows = [r for r in rows if r.time < result.duration_s - FALL_MARGIN_S]
                    if not rows or rows[-1].time < MIN_EPISODE_S:
                        stats["dropped_fell"] += 1
                        continue
                    stats["truncated_fell"] += 1
                for tick in rows:
                    p = tick.privileged
                    writer.add_frame({IMAGE_KEY: tick.image, "observation.state": tick.proprio,
                                      "observation.goal": tick.z.astype(np.float32),
                                      "observation.root_pose": np.array([*p.root_xy, p.root_yaw], dtype=np.float32),
                                      "action": chunk_to_array(tick.chunk).reshape(-1)}, task=task.instruction)
                writer.save_episode()
                stats["episodes"] += 1
                stats["frames"] += len(rows)
                stats["teacher_success"] += int(result.success)
                bar.set_postfix(kept=stats["episodes"], fell=stats["truncated_fell"] + stats["dropped_fell"])
                if tracker is not None:
                    tracker.log_metrics({"collect/episodes": stats["episodes"], "collect/fell": stats["dropped_fell"]},
                                        step=i)
            root = writer.finalize()
    finally:
        runner.close()
    stats["wall_s"] = round(time.perf_counter() - t0, 1)
    stats["balanced_gait"] = balance
    stats["driver"] = cfg.policy or "teacher"  # the success counts are the driver's
    stats["teacher_success_by_family"] = {f: round(float(np.mean(v)), 3) for f, v in sorted(per_family.items())}
    stats["out"] = str(Path(root))
    return stats
