"""The root-trajectory convention of :class:`infra.messages.MotionChunk`, as pure functions.

A chunk's root trajectory lives in the heading frame of the root at the chunk's start (origin below the
root, x along its yaw, z up). Positions are the integral of the planar velocities with a left Riemann
sum, so the conversion is exact both ways::

    p_0 = 0,   p_k = sum_{j<k} v_j * frame_dt          (heading frame)
    world_k = anchor_xy + R(anchor_yaw) p_k,   yaw_k = anchor_yaw + root_heading_k

``anchor`` is the pose the consumer puts frame 0 at: the robot's planar position and yaw at the chunk's
start. Shapes: H frames; all float64 numpy for the math, float32 in messages.
"""

from __future__ import annotations

import numpy as np


def rotate2d(yaw: np.ndarray | float, v: np.ndarray) -> np.ndarray:
    """Rotate planar vectors (..., 2) by yaw (broadcast over the leading axes), rad."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1]], axis=-1)


def wrap_angle(a: np.ndarray | float) -> np.ndarray:
    """Angles wrapped to [-pi, pi)."""
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


def chunk_to_world(planar_vel: np.ndarray, heading: np.ndarray, frame_dt: float, anchor_xy: np.ndarray,
                   anchor_yaw: float) -> tuple[np.ndarray, np.ndarray]:
    """(H, 2) heading-frame velocities and (H,) relative yaw -> world planar positions (H, 2), yaw (H,)."""
    rel = np.concatenate([np.zeros((1, 2)), np.cumsum(planar_vel[:-1] * frame_dt, axis=0)])
    return np.asarray(anchor_xy, dtype=float) + rotate2d(anchor_yaw, rel), anchor_yaw + np.asarray(heading, float)


def world_to_chunk(xy: np.ndarray, yaw: np.ndarray, frame_dt: float,
                   anchor_yaw: float) -> tuple[np.ndarray, np.ndarray]:
    """World planar positions (H, 2) and yaw (H,) -> heading-frame velocities (H, 2) and relative yaw (H,).

    Only the path's shape survives: a consumer puts frame 0 at its own anchor, so an offset between the
    robot and ``xy[0]`` is the producer's to correct (with extra velocity). The last velocity repeats the
    one before it (H >= 2).
    """
    step = np.diff(np.asarray(xy, dtype=float), axis=0)  # (H-1, 2)
    step = np.concatenate([step, step[-1:]])
    return rotate2d(-anchor_yaw, step) / frame_dt, wrap_angle(np.asarray(yaw, dtype=float) - anchor_yaw)
