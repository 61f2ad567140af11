"""The chunk broker: the reference S0 follows stays continuous across chunk boundaries."""

from __future__ import annotations

import numpy as np

from infra.messages import MotionChunk
from s0_locomotion.tracking.controller import S0Controller
from s1_policy.chunking import ChunkBroker, min_jerk_weights

DT, H, EVERY, N = 0.02, 16, 2, 3  # S0 at 50 Hz, chunks of 16 frames every 2 frames, 3 joints


def _chunk(k0: int, offset: np.ndarray) -> MotionChunk:
    """Frames k0..k0+H of a smooth motion plus a per-chunk offset (S1's chunk-to-chunk disagreement)."""
    t = (k0 + np.arange(H)) * DT
    joints = np.stack([np.sin(2 * t + j) for j in range(N)], axis=1) + offset
    return MotionChunk(stamp=k0 * DT, seq=k0, joint_pos=joints.astype(np.float32),
                       root_height=np.full(H, 0.9, np.float32), root_heading=np.zeros(H, np.float32),
                       root_planar_vel=np.tile([0.5, 0.0], (H, 1)).astype(np.float32), start_time=k0 * DT,
                       frame_dt=DT)


def _executed(blend: int, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """The joint reference S0 executes (frames 0..EVERY-1 of each output) and the boundary indices."""
    rng = np.random.default_rng(seed)
    broker = ChunkBroker(blend_frames=blend)
    out, boundaries = [], []
    for k0 in range(0, 60, EVERY):
        chunk = _chunk(k0, rng.normal(scale=0.05, size=N))
        blended = broker.add(chunk, np.array([0.5 * k0 * DT, 0.0]), 0.0)
        boundaries.append(len(out))
        out += list(blended.joint_pos[:EVERY])
    return np.array(out), boundaries[1:]


def test_weights_start_at_zero_and_reach_one():
    w = min_jerk_weights(16, 6)
    assert w[0] == 0.0 and np.all(w[6:] == 1.0) and np.all(np.diff(w) >= 0)


def test_reference_is_continuous_across_chunk_boundaries():
    naive, bounds = _executed(blend=0)
    blended, _ = _executed(blend=6)
    vel_naive = np.diff(naive, axis=0) / DT
    vel_blend = np.diff(blended, axis=0) / DT
    # The joint-velocity jump at each boundary: the velocity into the boundary frame vs the one before.
    jump_naive = np.abs(vel_naive[np.array(bounds) - 1] - vel_naive[np.array(bounds) - 2]).max()
    jump_blend = np.abs(vel_blend[np.array(bounds) - 1] - vel_blend[np.array(bounds) - 2]).max()
    assert jump_naive > 1.0  # 0.05 rad offsets switched within 20 ms: several rad/s
    assert jump_blend < 0.25 * jump_naive


def test_first_frame_of_a_new_chunk_is_the_reference_in_flight():
    broker = ChunkBroker(blend_frames=6)
    first = broker.add(_chunk(0, np.zeros(N)), np.zeros(2), 0.0)
    second = broker.add(_chunk(2, np.full(N, 0.3)), np.zeros(2), 0.0)
    np.testing.assert_allclose(second.joint_pos[0], first.joint_pos[2], atol=1e-6)
    np.testing.assert_allclose(second.joint_pos[8:], _chunk(2, np.full(N, 0.3)).joint_pos[8:], atol=1e-6)


def _root_chunk(k0: int, speed: float, n_dof: int) -> MotionChunk:
    return MotionChunk(stamp=k0 * DT, seq=k0, joint_pos=np.zeros((H, n_dof), np.float32),
                       root_height=np.full(H, 0.9, np.float32), root_heading=np.zeros(H, np.float32),
                       root_planar_vel=np.tile([speed, 0.0], (H, 1)).astype(np.float32), start_time=k0 * DT,
                       frame_dt=DT)


def test_a_re_anchored_reference_stays_where_s0_put_it(body):
    """S0 puts each chunk's frame 0 at its anchor: the reference's pose now, or the measured root's after a
    re-anchoring. The broker's world track must move with it; otherwise the re-anchoring step is faded into every
    later chunk, and the reference of a robot told to stand walks away (1.3 m in 1 s after a 0.1 m step)."""
    for speed in (0.0, 0.5):
        s0, broker = S0Controller(None, body, DT), ChunkBroker(blend_frames=6)
        anchor = np.zeros(2)
        for tick in range(26):
            k0 = tick * EVERY
            if tick == 1:
                anchor = s0.root_pos[EVERY, :2].numpy().astype(float) + [0.0, 0.1]  # the measured root, 0.1 m left
            elif tick > 1:
                anchor = s0.root_pos[EVERY, :2].numpy().astype(float)  # the reference now
            s0.set_chunk(broker.add(_root_chunk(k0, speed, body.n_dof), anchor, 0.0), anchor, 0.0)
        # 25 ticks (1 s) after the step, the reference has moved as the chunks say, and no further
        np.testing.assert_allclose(s0.root_pos[0, :2].numpy(), [speed * 25 * EVERY * DT, 0.1],
                                   atol=2e-3)
