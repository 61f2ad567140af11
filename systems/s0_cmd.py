"""``humanoid train s0``, ``eval s0`` and ``bench s0``: the S0 commands."""

from __future__ import annotations

import json

from infra.config.s0 import TrainS0Config
from infra.tracking import Tracker


def train_s0_cmd(cfg: TrainS0Config, as_json: bool) -> int:
    from s0_locomotion.tracking.train import train_s0

    if cfg.tracking.enabled:
        with Tracker(cfg.tracking.experiment, tracking_uri=cfg.tracking.uri or None, config=cfg,
                     tags={"command": "train s0"}) as tracker:
            stats = train_s0(cfg, progress=not as_json, tracker=tracker)
            for name in ("policy.safetensors", "policy.json"):
                tracker.log_artifact(f"{cfg.out}/{name}", artifact_path="checkpoint")
    else:
        stats = train_s0(cfg, progress=not as_json)
    print(json.dumps(stats) if as_json else "\n".join(f"{k:<32} {v:.4g}" for k, v in stats.items()))
    return 0


def eval_s0_cmd(cfg, as_json: bool) -> int:
    """``humanoid eval s0``: success rate and tracking errors of the S0 checkpoint (or ``checkpoint=none``)."""
    from s0_locomotion.tracking.evaluate import evaluate_s0
    from s0_locomotion.tracking.policy import S0Policy

    policy = None if cfg.checkpoint.lower() in ("", "none") else S0Policy(cfg.checkpoint)
    result = evaluate_s0(cfg, policy) | {"checkpoint": cfg.checkpoint or "none", "randomize": cfg.randomize}
    if as_json:
        print(json.dumps(result))
    else:
        print(f"{'clip':<24} {'success':>8} {'mpjpe_mm':>9} {'joint_rad':>9} {'hand_rad':>9} {'drift_m':>8}")
        for name, r in [*result["per_clip"].items(), ("ALL", result)]:
            print(f"{name:<24} {r['success_rate']:>8.3f} {r['mpjpe_mm']:>9.1f} {r['joint_error_rad']:>9.4f} "
                  f"{r['hand_joint_error_rad']:>9.4f} {r['root_drift_m']:>8.3f}")
    return 0


def bench_s0_cmd(cfg, as_json: bool) -> int:
    from systems.bench_s0 import bench_s0

    result = bench_s0(cfg)
    print(json.dumps(result) if as_json else "\n".join(f"{k:<28} {v}" for k, v in result.items()))
    return 0
