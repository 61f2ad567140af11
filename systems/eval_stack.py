"""``humanoid eval stack``: S2 + S1 + S0 closed loop on held-out layouts and held-out paraphrases.

Prints ``success_rate``, ``per_task`` (success per instruction family), ``z_error`` (mean squared error of
S2's z against S1's goal encoder on the privileged goal, at every S2 tick), ``s2_latency_ms_p50`` /
``s2_latency_ms_p99`` (one image + a new instruction, one CPU thread), ``episodes``, and what the stack did
with an instruction outside the task families (``out_of_scope``).
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from infra.config.s2 import EvalStackConfig
from s1_policy.policy import S1Policy
from s2_vlm.model import measure_latency
from s2_vlm.policy import S2Policy
from systems.layers import GoalEncoderLayer, S1Layer
from systems.lockstep import GoalLayer, LockstepRunner, Privileged
from systems.s2_layer import S2Layer, layer_for_stack
from systems.tasks import Task, family_in_turn, run_layout, sample_task, success_interval, task_rng, task_scene

OUT_OF_SCOPE_INSTRUCTION = "bake me a chocolate cake"


class _ZErrorProbe(GoalLayer):
    """The stack's S2 layer, also recording its z error against S1's goal encoder on the privileged goal."""

    def __init__(self, layer: S2Layer, s1: S1Policy) -> None:
        self.layer, self.reference, self.errors = layer, GoalEncoderLayer(s1), []

    def reset(self, task: Task) -> None:
        self.layer.reset(task)

    def goal(self, now: float, image: np.ndarray, instruction: str, privileged: Privileged) -> np.ndarray:
        z = self.layer.goal(now, image, instruction, privileged)
        ref = self.reference.goal(now, image, instruction, privileged)
        self.errors.append(float(np.mean((z - ref) ** 2)))
        return z


def evaluate_stack(cfg: EvalStackConfig, progress: bool = True, tracker=None) -> dict:
    torch.set_num_threads(1)
    s1, s2 = S1Policy.for_stack(cfg.s1_checkpoint, cfg.stack), S2Policy(cfg.s2_checkpoint)
    runner = LockstepRunner(cfg.stack)
    layer1 = S1Layer(s1, runner.body.n_dof, runner.backend.ctrl_dt)
    layer2 = _ZErrorProbe(layer_for_stack(s2, s1, cfg.stack, cfg.min_similarity), s1)
    per_task: dict[str, list[bool]] = {}
    try:
        for i in tqdm(range(cfg.episodes), desc="eval stack", disable=not progress):
            family = family_in_turn(i)
            task = sample_task(task_rng(cfg.seed + i, "eval"), task_scene(cfg.stack.scene), "eval", [family])
            per_task.setdefault(family, []).append(runner.run(task, layer1, layer2).success)
        unknown = Task("unknown", OUT_OF_SCOPE_INSTRUCTION, time_limit_s=4.0,
                       layout=run_layout(cfg.seed, cfg.stack.scene))
        probe = _ZErrorProbe(layer_for_stack(s2, s1, cfg.stack, cfg.min_similarity), s1)
        path: list[np.ndarray] = []  # root position at each S1 tick
        result = runner.run(unknown, layer1, probe, record=lambda tick: path.append(tick.privileged.root_xy))
        moved = float(np.linalg.norm(runner.backend.observe().root_pos[0, :2].numpy() - path[0]))
    finally:
        runner.close()
    lat = measure_latency(s2.model, n=cfg.latency_calls)
    flat = [s for v in per_task.values() for s in v]
    out = {"success_rate": round(float(np.mean(flat)), 4), "success_ci95": success_interval(flat),
           "per_task": {f: round(float(np.mean(v)), 3) for f, v in per_task.items()},
           "z_error": round(float(np.mean(layer2.errors)), 5),
           "s2_latency_ms_p50": round(lat["uncached_p50_ms"], 2), "s2_latency_ms_p99": round(lat["uncached_p99_ms"], 2),
           "episodes": len(flat),
           "out_of_scope": {"instruction": OUT_OF_SCOPE_INSTRUCTION, "refused": not probe.layer.in_scope,
                            "fell": result.fell, "moved_m": round(moved, 3)}}
    if tracker is not None:
        tracker.log_metrics({"eval/success_rate": out["success_rate"], "eval/z_error": out["z_error"],
                             "eval/s2_latency_ms_p99": out["s2_latency_ms_p99"]})
    return out
