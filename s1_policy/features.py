"""S1's input and output vectors, defined once for data collection, training and inference.

Proprioception (P = 2 n_dof + 7): joint positions (rad), joint velocities (0.1 rad/s units), root angular
velocity in the body frame (0.25 rad/s units), gravity in the body frame (unit vector), root height (m).
No global position or yaw: S1 sees what a robot measures.

A chunk as an array (H, A = n_dof + 4): per frame the joint targets (rad), the root height (m), the root
heading relative to the chunk's start (rad) and the planar velocity (m/s) in the start heading frame —
:class:`infra.messages.MotionChunk`'s fields side by side.
"""

from __future__ import annotations

import numpy as np

from infra.messages import MotionChunk


def proprio_dim(n_dof: int) -> int:
    return 2 * n_dof + 7


def action_dim(n_dof: int) -> int:
    return n_dof + 4


def proprio_vector(joint_pos: np.ndarray, joint_vel: np.ndarray, root_ang_vel: np.ndarray, gravity: np.ndarray,
                   root_height: float) -> np.ndarray:
    """One robot state -> (2 n_dof + 7,) float32."""
    return np.concatenate([joint_pos, 0.1 * joint_vel, 0.25 * root_ang_vel, gravity, [root_height]]).astype(np.float32)


def chunk_to_array(chunk: MotionChunk) -> np.ndarray:
    """MotionChunk -> (H, n_dof + 4) float32."""
    return np.concatenate([chunk.joint_pos, chunk.root_height[:, None], chunk.root_heading[:, None],
                           chunk.root_planar_vel], axis=1).astype(np.float32)


def array_to_chunk(a: np.ndarray, n_dof: int, start_time: float, frame_dt: float, seq: int = 0) -> MotionChunk:
    """(H, n_dof + 4) -> MotionChunk (validated: NaN or a wrong shape raise MessageError)."""
    a = np.asarray(a, dtype=np.float32)
    if a.ndim != 2 or a.shape[1] != action_dim(n_dof):
        raise ValueError(f"S1 chunk array: expected (H, {action_dim(n_dof)}), got {a.shape}")
    c = np.ascontiguousarray
    return MotionChunk(stamp=start_time, seq=seq, joint_pos=c(a[:, :n_dof]), root_height=c(a[:, n_dof]),
                       root_heading=c(a[:, n_dof + 1]), root_planar_vel=c(a[:, n_dof + 2:]), start_time=start_time,
                       frame_dt=frame_dt)
