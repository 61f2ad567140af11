"""S1's task clock: the clipped time and its sinusoidal octaves, and how checkpoints carry them."""

from __future__ import annotations

import numpy as np
import pytest

from infra.config.s1 import TrainS1Config
from s1_policy.features import TaskClock


def test_clock_features_values():
    clock = TaskClock(8.0, 2)
    assert clock.dim == 5 and TaskClock(8.0).dim == 1 and TaskClock(0.0, 3).dim == 0
    f = clock.features(np.array([0.0, 2.0, 12.0]))
    assert f.shape == (3, 5) and f.dtype == np.float32
    np.testing.assert_allclose(f[0], [0, 0, 1, 0, 1], atol=1e-7)
    np.testing.assert_allclose(f[1], [0.25, 1, 0, 0, -1], atol=1e-6)  # a quarter of the 8 s period, half of 4 s
    assert f[2, 0] == 1.0  # the clipped clock saturates, the octaves go on turning
    np.testing.assert_allclose(f[2, 1:], [np.sin(3 * np.pi), np.cos(3 * np.pi), np.sin(6 * np.pi), np.cos(6 * np.pi)],
                               atol=1e-6)
    assert clock.features(3.0).shape == (1, 5)


def test_clock_of_a_stored_config():
    assert TaskClock.of({}) == TaskClock(0.0, 0)
    assert TaskClock.of({"task_clock_s": 8.0}) == TaskClock(8.0, 0)  # checkpoints from before the octaves
    assert TaskClock.of({"task_clock_s": 8.0, "task_clock_octaves": 4}) == TaskClock(8.0, 4)


def test_octaves_need_a_clock():
    with pytest.raises(ValueError, match="task_clock_octaves=2"):
        TrainS1Config(task_clock_s=0.0, task_clock_octaves=2)
    with pytest.raises(ValueError, match="task_clock_octaves=-1"):
        TrainS1Config(task_clock_octaves=-1)
