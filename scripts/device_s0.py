"""S0 training on a machine without MLflow: ``humanoid train s0``'s loop with its metrics in a JSON-lines file.

For a borrowed accelerator machine whose image has torch but none of the tracking stack (see README, "S0 on
16 cores"): ``python scripts/device_s0.py METRICS.jsonl key=value ...`` takes the same overrides as
``humanoid train s0`` and writes one JSON object per iteration. Everything else (checkpoints, resume) is the
training command's own.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from infra.config import load_config
from infra.config.s0 import TrainS0Config
from s0_locomotion.tracking.train import train_s0


class JsonLines:
    """The part of the tracker's interface that ``train_s0`` uses, appending to a file."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("a")
        self.t0 = time.monotonic()

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        row = {"step": step, "wall_s": round(time.monotonic() - self.t0, 2)} | metrics
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit("usage: python scripts/device_s0.py METRICS.jsonl key=value ...")
    cfg = load_config(TrainS0Config, argv[1:])
    train_s0(cfg, progress=False, tracker=JsonLines(Path(argv[0])))


if __name__ == "__main__":
    main(sys.argv[1:])
