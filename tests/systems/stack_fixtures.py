"""Shared sizes and configs of the stack tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

from infra.config.s1 import S1ModelConfig, TrainS1Config
from infra.config.stack import StackConfig

STACK = StackConfig(image_size=32)
TINY = S1ModelConfig(image_size=32, width=32, heads=2, layers=1, cnn_channels=[8, 16], keypoints=4, visual_grid=2)


def tiny_s1_config(root, out, steps, **kw) -> TrainS1Config:
    return TrainS1Config(model=TINY, data=str(root), eval_data="", steps=steps, batch_size=8, log_every=1,
                         save_every=2, out=str(out), threads=1, eval_episodes=0, warmup=1, **kw)
