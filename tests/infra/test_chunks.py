"""The MotionChunk root-trajectory convention: hand-checked values and exact round trips."""

from __future__ import annotations

import numpy as np

from infra.chunks import chunk_to_world, rotate2d, world_to_chunk, wrap_angle


def test_chunk_to_world_by_hand():
    # 1 m/s along the chunk's x for 3 frames of 0.5 s, anchored at (1, 2) facing +y (yaw = pi/2).
    vel = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    xy, yaw = chunk_to_world(vel, np.array([0.0, 0.1, 0.2]), 0.5, np.array([1.0, 2.0]), np.pi / 2)
    np.testing.assert_allclose(xy, [[1.0, 2.0], [1.0, 2.5], [1.0, 3.0]], atol=1e-12)
    np.testing.assert_allclose(yaw, np.pi / 2 + np.array([0.0, 0.1, 0.2]))


def test_round_trip_keeps_the_path_shape():
    rng = np.random.default_rng(0)
    t = np.arange(16) * 0.02
    xy = np.stack([0.5 * t + 3.0, 0.2 * np.sin(t) - 1.0], axis=1)
    yaw = 0.3 + 0.5 * t
    vel, heading = world_to_chunk(xy, yaw, 0.02, anchor_yaw=0.3)
    anchor = rng.normal(size=2)
    back_xy, back_yaw = chunk_to_world(vel, heading, 0.02, anchor, 0.3)
    np.testing.assert_allclose(back_xy - back_xy[0], xy - xy[0], atol=1e-12)  # same path, moved to the anchor
    np.testing.assert_allclose(back_xy[0], anchor)
    np.testing.assert_allclose(back_yaw, yaw, atol=1e-12)


def test_rotation_and_wrap():
    np.testing.assert_allclose(rotate2d(np.pi / 2, np.array([1.0, 0.0])), [0.0, 1.0], atol=1e-12)
    assert abs(float(wrap_angle(3 * np.pi / 2)) + np.pi / 2) < 1e-12
