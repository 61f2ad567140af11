"""``humanoid train s0``: PPO training of the S0 tracking controller, tracked in MLflow."""

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
