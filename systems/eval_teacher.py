"""``humanoid eval teacher``: how well an S0 executes the scripted teacher's plans.

The teacher (``systems.teacher``) plans each task from privileged state and S0 tracks the plan in the lockstep
runner, exactly as during ``humanoid collect``. That is the data S1 is trained on and the ceiling of what S1 on
this S0 can reach, so it is the measure of an S0 for the stack (``humanoid eval s0`` measures clips from their
first frame). Episodes run to the task's time limit, not stopped at success: a fall after the goal counts.

The lockstep runner is deterministic and the teacher reads no image, so families without a target object
(walk_forward, turn_left, wave_right, ...) replay the same plan from the same state in every episode: their
episodes repeat one outcome. Families with a target get a new layout, so a new plan, every episode.
``push_mps`` > 0 starts every episode with a small push in a direction drawn from its seed, so that every
episode is a different trajectory. ``instruction=`` runs one task, the main job's (``humanoid run``'s layout and
length), in every episode instead of the families.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from infra.config.s1 import EvalTeacherConfig
from systems.lockstep import LockstepRunner
from systems.tasks import (
    FAMILY_NAMES,
    OUT_OF_SCOPE,
    check_families,
    family_in_turn,
    run_layout,
    sample_task,
    success_interval,
    task_for,
    task_rng,
    task_scene,
)
from systems.teacher import GoalParamsLayer, TeacherLayer


def evaluate_teacher(cfg: EvalTeacherConfig, progress: bool = True, tracker=None) -> dict:
    """-> ``success_rate``, ``fell_rate``, ``per_family`` (success, fell, ``fall_s`` mean time of the falls or None,
    ``plan_s`` mean plan length), ``episodes``, ``balanced_gait`` and the S0 checkpoint."""
    check_families(cfg.families)
    fixed = None
    if cfg.instruction:
        fixed = task_for(cfg.instruction, run_layout(cfg.layout_seed, cfg.stack.scene), cfg.seconds)
        if fixed.family == OUT_OF_SCOPE:
            raise ValueError(f"eval teacher: instruction {cfg.instruction!r} names no task family the teacher knows; "
                             f"families: {list(FAMILY_NAMES)}")
    runner = LockstepRunner(cfg.stack)
    teacher = TeacherLayer(runner.body, cfg.stack.rates.horizon, runner.backend.ctrl_dt, runner.balanced_gait)
    rows: dict[str, list[tuple[bool, bool, float, float]]] = {}
    try:
        for i in tqdm(range(cfg.episodes), desc="eval teacher", disable=not progress):
            rng = task_rng(cfg.seed + i, "eval")
            task = fixed if fixed is not None else sample_task(rng, task_scene(cfg.stack.scene), "eval",
                                                               [family_in_turn(i, cfg.families)])
            heading = rng.uniform(-np.pi, np.pi)
            push = cfg.push_mps * np.array([np.cos(heading), np.sin(heading)]) if cfg.push_mps > 0 else None
            result = runner.run(task, teacher, GoalParamsLayer(), push=push)
            rows.setdefault(task.family, []).append((result.success, result.fell, result.duration_s,
                                                teacher.teacher.duration_s))
    finally:
        runner.close()
    per_family = {}
    for family, r in rows.items():
        falls = [t for _, fell, t, _ in r if fell]
        per_family[family] = {"success": round(float(np.mean([s for s, *_ in r])), 3),
                              "fell": round(len(falls) / len(r), 3),
                              "fall_s": round(float(np.mean(falls)), 2) if falls else None,
                              "plan_s": round(float(np.mean([p for *_, p in r])), 2), "episodes": len(r)}
    flat = [row for r in rows.values() for row in r]
    successes = [s for s, *_ in flat]
    result = {"success_rate": round(float(np.mean(successes)), 4), "success_ci95": success_interval(successes),
              "fell_rate": round(float(np.mean([f for _, f, *_ in flat])), 4), "per_family": per_family,
              "episodes": len(flat), "balanced_gait": runner.balanced_gait, "s0_checkpoint": cfg.stack.s0_checkpoint,
              "push_mps": cfg.push_mps} | ({"instruction": cfg.instruction, "layout_seed": cfg.layout_seed}
                                           if fixed is not None else {})
    if tracker is not None:
        tracker.log_metrics({"teacher/success_rate": result["success_rate"], "teacher/fell_rate": result["fell_rate"]}
                            | {f"teacher/success/{f}": v["success"] for f, v in per_family.items()})
    return result
