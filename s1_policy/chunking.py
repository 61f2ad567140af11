"""Chunk execution: a broker between S1's inference rate and S0's rate.

S1 emits a chunk of H frames every S1 period (25 Hz: every 2 frames of S0's 50 Hz), so chunks overlap by
H - 2 frames, and two consecutive chunks never agree exactly (a new image, a new noise draw). Switching
to each new chunk outright puts a step into the reference at every boundary, which S0 turns into a
joint-velocity spike. The broker instead **cross-fades**: the reference it hands S0 is the previous
blended reference for the frames already in flight, faded into the new chunk over ``blend_frames`` with
a minimum-jerk weight that is 0 at the new chunk's first frame and 1 from frame ``blend_frames`` on.

Why this and not real-time-chunking inpainting: RTC makes the *model* respect the committed prefix by
guiding the flow integration, which needs gradients through the network at every step (several times
S1's latency budget on this CPU) and couples the broker to one action head. Cross-fading is head-agnostic,
costs microseconds, and is continuous by construction (frame 0 of every output equals the reference S0
was already following). It is ACT's temporal ensembling with the weight on the newest chunk rising to 1
instead of staying exponential, so the reference does not lag behind a new instruction.

Frames are compared in the world frame: each chunk is anchored at the robot's pose when it arrives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infra.chunks import chunk_to_world, world_to_chunk
from infra.messages import MotionChunk


def min_jerk_weights(n: int, blend_frames: int, first: float = 0.0) -> np.ndarray:
    """(n,) weights of the new chunk: 0 up to frame ``first``, 10s^3 - 15s^4 + 6s^5 with
    s = (k - first) / blend_frames, 1 after."""
    if blend_frames <= 0:
        return np.ones(n)
    s = np.clip((np.arange(n) - first) / blend_frames, 0.0, 1.0)
    return s**3 * (10 - 15 * s + 6 * s**2)


@dataclass
class _Track:
    """A reference in the world frame: frame k at ``start + k * dt``."""

    start: float
    dt: float
    joints: np.ndarray  # (H, n) rad
    xy: np.ndarray  # (H, 2) m, world
    yaw: np.ndarray  # (H,) rad, world (unwrapped)
    height: np.ndarray  # (H,) m

    def at(self, times: np.ndarray) -> tuple[np.ndarray, ...]:
        """Frames at ``times`` (clamped to the track), linearly interpolated."""
        u = np.clip((times - self.start) / self.dt, 0, len(self.joints) - 1)
        i0 = np.floor(u).astype(int)
        i1 = np.minimum(i0 + 1, len(self.joints) - 1)
        w = (u - i0)[:, None]

        def lerp(a: np.ndarray) -> np.ndarray:
            a2 = a if a.ndim > 1 else a[:, None]
            out = a2[i0] * (1 - w) + a2[i1] * w
            return out if a.ndim > 1 else out[:, 0]

        return lerp(self.joints), lerp(self.xy), lerp(self.yaw), lerp(self.height)


class ChunkBroker:
    """S1 chunks in, blended chunks for S0 out. ``add`` returns what S0 should follow from now on."""

    def __init__(self, blend_frames: int = 6) -> None:
        self.blend_frames = blend_frames
        self.track: _Track | None = None
        self.count = 0

    def reset(self) -> None:
        self.track, self.count = None, 0

    def add(self, chunk: MotionChunk, anchor_xy: np.ndarray, anchor_yaw: float,
            now: float | None = None) -> MotionChunk:
        """Blend ``chunk`` (anchored at the robot's planar pose ``anchor_xy``, ``anchor_yaw``) into the reference.

        ``now``: when the chunk is applied, if later than its ``start_time`` (in real time a chunk arrives
        after the instant it was computed for): the cross-fade starts at ``now``, so the frames S0 has
        already followed keep the old reference and the fade is as gentle as in lockstep."""
        xy, yaw = chunk_to_world(chunk.root_planar_vel.astype(float), chunk.root_heading.astype(float),
                                 chunk.frame_dt, anchor_xy, anchor_yaw)
        joints, height = chunk.joint_pos.astype(float), chunk.root_height.astype(float)
        if self.track is not None:
            times = chunk.start_time + np.arange(len(joints)) * chunk.frame_dt
            old_j, old_xy, old_yaw, old_h = self.track.at(times)
            # S0 puts every chunk's frame 0 at the anchor (the chunk carries only its path's shape), so the old
            # track is moved to start there too. When S0 re-anchors on the measured root, the old track is
            # off by the re-anchoring step; faded into every later chunk, that step would move the reference
            # again at each tick (a 0.1 m step drifts a standing reference away at 1.3 m/s).
            old_xy = old_xy + (np.asarray(anchor_xy, dtype=float) - old_xy[0])
            late = 0.0 if now is None else max(0.0, (now - chunk.start_time) / chunk.frame_dt)
            w = min_jerk_weights(len(joints), self.blend_frames, late)
            # Beyond the old track's end the old values are its held last frame; fade to the new anyway.
            old_yaw = yaw + np.angle(np.exp(1j * (old_yaw - yaw)))  # same branch as the new chunk
            joints = old_j + w[:, None] * (joints - old_j)
            xy = old_xy + w[:, None] * (xy - old_xy)
            yaw = old_yaw + w * (yaw - old_yaw)
            height = old_h + w * (height - old_h)
        self.track = _Track(chunk.start_time, chunk.frame_dt, joints, xy, yaw, height)
        self.count += 1
        vel, heading = world_to_chunk(xy, yaw, chunk.frame_dt, anchor_yaw)
        return MotionChunk(stamp=chunk.stamp, seq=self.count - 1, joint_pos=joints.astype(np.float32),
                           root_height=height.astype(np.float32), root_heading=heading.astype(np.float32),
                           root_planar_vel=vel.astype(np.float32), start_time=chunk.start_time,
                           frame_dt=chunk.frame_dt)
