"""Fixtures of the stack tests: one recorded teacher episode and a tiny S1 trained on it."""

from __future__ import annotations

import pytest
from stack_fixtures import STACK, tiny_s1_config

from infra.config.stack import CollectConfig


@pytest.fixture(scope="session")
def demos(tmp_path_factory):
    """A one-episode dataset (wave_right, 6 s, 32x32 head camera) and the collection statistics."""
    from systems.collect import collect

    root = tmp_path_factory.mktemp("demos") / "ds"
    stats = collect(CollectConfig(stack=STACK, episodes=1, out=str(root), families=["wave_right"]), progress=False)
    return root, stats


@pytest.fixture(scope="session")
def tiny_s1(demos, tmp_path_factory):
    """Path of a tiny S1 policy checkpoint trained 2 steps on ``demos``."""
    from s1_policy.train import train_s1

    out = tmp_path_factory.mktemp("s1")
    train_s1(tiny_s1_config(demos[0], out, 2), progress=False)
    return out / "policy.safetensors"
