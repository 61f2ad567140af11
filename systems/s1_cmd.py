"""``humanoid collect``, ``train s1``, ``eval s1``, ``train s2``, ``eval stack`` and ``eval teacher``."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from infra.tracking import Tracker


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:<32} {json.dumps(value) if isinstance(value, (dict, list)) else value}")


def tracked(cfg, command: str, **tags: str) -> contextlib.AbstractContextManager[Tracker | None]:
    """An MLflow run for ``cfg.tracking`` (None when tracking is off); the command's name and ``tags`` as tags."""
    if not cfg.tracking.enabled:
        return contextlib.nullcontext(None)
    return Tracker(cfg.tracking.experiment, tracking_uri=cfg.tracking.uri or None, config=cfg,
                   tags={"command": command, **tags})


def collect_cmd(cfg, as_json: bool) -> int:
    from systems.collect import collect

    with tracked(cfg, "collect") as tracker:
        result = collect(cfg, progress=not as_json, tracker=tracker)
        if tracker is not None:
            tracker.log_metrics({"collect/frames": result["frames"], "collect/wall_s": result["wall_s"]})
    _print(result, as_json)
    return 0


def train_s1_cmd(cfg, as_json: bool) -> int:
    from s1_policy.train import train_s1

    with tracked(cfg, "train s1", head=cfg.model.head) as tracker:
        result = train_s1(cfg, progress=not as_json, tracker=tracker)
        if cfg.eval_episodes > 0:
            result |= _closed_loop_after_training(cfg, as_json, tracker)
        if tracker is not None:
            for name in ("policy.safetensors", "policy.json"):
                tracker.log_artifact(f"{cfg.out}/{name}", artifact_path="checkpoint")
    _print(result, as_json)
    return 0


def _closed_loop_after_training(cfg, as_json: bool, tracker) -> dict:
    """Held-out closed-loop episodes with the fresh checkpoint; the first one is written as a video."""
    import torch

    from infra.config.s1 import EvalS1Config
    from s1_policy.policy import S1Policy
    from systems.eval_s1 import closed_loop
    from systems.lockstep import LockstepRunner

    torch.set_num_threads(1)
    ecfg = EvalS1Config(stack=cfg.stack, episodes=cfg.eval_episodes, seed=cfg.seed)
    runner = LockstepRunner(cfg.stack)
    video = Path(cfg.out) / f"closed_loop_{cfg.model.head}.mp4"
    try:
        policy = S1Policy.for_stack(Path(cfg.out) / "policy.safetensors", cfg.stack)
        out = closed_loop(runner, policy, ecfg, not as_json, video)
    finally:
        runner.close()
    if tracker is not None:
        tracker.log_metrics({"eval/success_rate": out["success_rate"], "eval/fell_rate": out["fell_rate"]})
        if video.exists():
            tracker.log_artifact(video)
    return {f"eval/{k}": v for k, v in out.items()}


def eval_s1_cmd(cfg, as_json: bool) -> int:
    from systems.eval_s1 import evaluate_s1

    with tracked(cfg, "eval s1") as tracker:
        result = evaluate_s1(cfg, progress=not as_json, tracker=tracker)
    _print(result, as_json)
    return 0


def train_s2_cmd(cfg, as_json: bool) -> int:
    """``humanoid train s2``: z targets from the frozen S1 goal encoder, then :func:`s2_vlm.train.train_s2`."""
    from s1_policy.policy import S1Policy
    from s2_vlm.train import concat_data, train_s2
    from systems.s2_layer import s2_data

    s1 = S1Policy(cfg.s1_checkpoint)
    data = concat_data([s2_data(root, s1) for root in [cfg.data, *cfg.more_data]])
    held = s2_data(cfg.eval_data, s1) if cfg.eval_data else None
    meta = {"s1_checkpoint": cfg.s1_checkpoint, "s1_sha256": s1.sha256,
            "instructions": data.vocabulary(cfg.paraphrase_prob)}
    with tracked(cfg, "train s2") as tracker:
        result = train_s2(cfg, data, held, meta, progress=not as_json, tracker=tracker)
        if tracker is not None:
            for name in ("policy.safetensors", "policy.json"):
                tracker.log_artifact(f"{cfg.out}/{name}", artifact_path="checkpoint")
    _print(result, as_json)
    return 0


def eval_stack_cmd(cfg, as_json: bool) -> int:
    from systems.eval_stack import evaluate_stack

    with tracked(cfg, "eval stack") as tracker:
        result = evaluate_stack(cfg, progress=not as_json, tracker=tracker)
    _print(result, as_json)
    return 0


def eval_teacher_cmd(cfg, as_json: bool) -> int:
    from systems.eval_teacher import evaluate_teacher

    with tracked(cfg, "eval teacher") as tracker:
        result = evaluate_teacher(cfg, progress=not as_json, tracker=tracker)
    _print(result, as_json)
    return 0
