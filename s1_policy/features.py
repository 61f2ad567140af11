"""S1's input and output vectors, defined once for data collection, training and inference.

Proprioception (P = 2 n_dof + 7): joint positions (rad), joint velocities (0.1 rad/s units), root angular
velocity in the body frame (0.25 rad/s units), gravity in the body frame (unit vector), root height (m).
No global position or yaw: S1 sees what a robot measures.

A chunk as an array (H, A = n_dof + 4): per frame the joint targets (rad), the root height (m), the root
heading relative to the chunk's start (rad) and the planar velocity (m/s) in the start heading frame —
:class:`infra.messages.MotionChunk`'s fields side by side.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from infra.messages import MotionChunk


@dataclass(frozen=True)
class TaskClock:
    """S1's time-since-instruction input, appended to the normalised proprioception.

    ``seconds`` > 0 gives min(t, seconds) / seconds; ``octaves`` adds sin and cos of 2π·2^k·t / seconds for
    k < octaves (periods seconds, seconds/2, ...), the positional encoding of NeRF (Mildenhall et al. 2020)
    and DeepMimic's phase input (Peng et al. 2018) in one. The teacher's plans are indexed by time, so the phase
    of a gait or a wave is a function of t that a network reads off these features but can hardly build from
    the one clipped scalar."""

    seconds: float = 0.0
    octaves: int = 0

    @classmethod
    def of(cls, config: dict) -> TaskClock:
        """The clock of a training config (``TrainS1Config`` as stored in a checkpoint's metadata)."""
        return cls(float(config.get("task_clock_s", 0.0)), int(config.get("task_clock_octaves", 0)))

    @property
    def dim(self) -> int:
        return 0 if self.seconds <= 0 else 1 + 2 * self.octaves

    def features(self, time: np.ndarray | float) -> np.ndarray:
        """Times (N,) s since the instruction -> (N, dim) float32."""
        t = np.asarray(time, dtype=np.float64).reshape(-1)
        if self.seconds <= 0:
            return np.zeros((len(t), 0), np.float32)
        cols = [np.minimum(t, self.seconds) / self.seconds]
        for k in range(self.octaves):
            w = 2 * np.pi * 2**k / self.seconds
            cols += [np.sin(w * t), np.cos(w * t)]
        return np.stack(cols, axis=1).astype(np.float32)


@dataclass(frozen=True)
class ProprioInput:
    """What S1's proprioception input is, from the normalised body state: the body state (zeroed for a blind S1,
    ``TrainS1Config.proprio_dropout=1``) followed by the task clock's features. Training, held-out evaluation and
    the policy build it with this one piece, so they cannot disagree."""

    clock: TaskClock = field(default_factory=TaskClock)
    blind: bool = False

    @classmethod
    def of(cls, config: dict) -> ProprioInput:
        """The input of a training config (``TrainS1Config`` as a dict, or as stored in a checkpoint's metadata)."""
        return cls(TaskClock.of(config), float(config.get("proprio_dropout", 0.0)) >= 1.0)

    def __call__(self, body: torch.Tensor, time: np.ndarray | float) -> torch.Tensor:
        """Normalised body states (N, 2 n_dof + 7) and their times since the instruction (N,) s -> (N, P)."""
        if self.blind:
            body = torch.zeros_like(body)
        if not self.clock.dim:
            return body
        return torch.cat([body, torch.from_numpy(self.clock.features(time)).to(body.dtype)], dim=1)


@dataclass(frozen=True)
class ChunkCoding:
    """How S1's network sees a chunk array: as it is, or with the root heading as a yaw rate.

    By the chunk convention the heading is relative to frame 0, so it starts at 0 and ramps during a turn
    (0 to 6.7 deg over a 16-frame turn_left chunk). A network that is unsure of the ramp's shape predicts a
    level offset instead (measured on held-out turn_left chunks: +2.7 deg at frame 0, +3.7 at frame 15). With
    S1 replanning every two frames, the broker puts each chunk's frame 0 at S0's reference pose, so that offset
    is added to the reference at every tick, and the reference turns faster than the teacher's (about 60 deg/s
    against 34 in a traced turn_left). The planar motion is already a velocity; ``heading_rate`` codes the
    heading the same way: the network learns the yaw rate (rad/s, frames ``frame_dt`` s apart), and the heading
    is its integral, 0 at frame 0 by construction. Datasets keep the heading (``chunk_to_array``): the coding is
    applied when they are loaded and undone on the network's output. Measured closed loop, the faithful heading
    did worse than the offset, which leads the lagging S0 into a turn (README, *The heading as a yaw rate*), so
    it is off by default."""

    heading_rate: bool = False
    frame_dt: float = 0.02

    @classmethod
    def of(cls, config: dict) -> ChunkCoding:
        """The coding of a training config (``TrainS1Config`` as a dict, or as stored in a checkpoint's metadata;
        one from before ``heading_rate`` has none). The frame spacing matters to the rate only, so the plain
        coding does not depend on it."""
        if not config.get("heading_rate", False):
            return cls()
        return cls(True, float(config["stack"]["sim"]["ctrl_dt"]))

    def encode(self, a: np.ndarray, n_dof: int) -> np.ndarray:
        """Chunk arrays (..., H, n_dof + 4) -> the network's (same shape, float32). The last frame's rate
        repeats the one before it (``world_to_chunk``'s convention for velocities)."""
        a = np.array(a, dtype=np.float32)
        if not self.heading_rate:
            return a
        h = np.unwrap(a[..., n_dof + 1].astype(np.float64), axis=-1)
        rate = np.diff(h, axis=-1) / self.frame_dt
        a[..., n_dof + 1] = np.concatenate([rate, rate[..., -1:]], axis=-1)
        return a

    def decode(self, a: np.ndarray, n_dof: int) -> np.ndarray:
        """The network's arrays (..., H, n_dof + 4) -> chunk arrays: heading_k = dt · Σ_{j<k} rate_j."""
        a = np.array(a, dtype=np.float32)
        if not self.heading_rate:
            return a
        rate = a[..., n_dof + 1].astype(np.float64)
        h = np.concatenate([np.zeros_like(rate[..., :1]), np.cumsum(rate[..., :-1], axis=-1) * self.frame_dt], axis=-1)
        a[..., n_dof + 1] = h
        return a


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


def shift_chunk(a: np.ndarray, shift: float, n_dof: int) -> tuple[np.ndarray, int]:
    """A chunk array (H, n_dof + 4) seen ``shift`` frames later: frame k of the result is frame k + shift of ``a``
    (linearly interpolated; past the end, its last frame held), with the root heading and planar velocities
    re-expressed in the heading frame the robot has then. S1 knows no world pose, so the robot is taken to have
    turned as the chunk planned (``d = heading(shift) − heading(0)``): heading_k = heading(k + shift) − d,
    velocity_k = R(−d)·velocity(k + shift).

    -> (shifted (H, n_dof + 4) float32, how many of its frames lie inside ``a``)."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != action_dim(n_dof) or shift < 0:
        raise ValueError(f"shift_chunk: expected a (H, {action_dim(n_dof)}) chunk and shift >= 0, got "
                         f"{a.shape} and {shift}")
    h = len(a)
    a = a.copy()
    a[:, n_dof + 1] = np.unwrap(a[:, n_dof + 1])
    u = np.arange(h) + shift
    out = np.stack([np.interp(u, np.arange(h), a[:, j]) for j in range(a.shape[1])], axis=1)
    d = np.interp(shift, np.arange(h), a[:, n_dof + 1]) - a[0, n_dof + 1]
    out[:, n_dof + 1] -= d
    c, s = np.cos(-d), np.sin(-d)
    vx, vy = out[:, n_dof + 2].copy(), out[:, n_dof + 3].copy()
    out[:, n_dof + 2], out[:, n_dof + 3] = c * vx - s * vy, s * vx + c * vy
    return out.astype(np.float32), int(np.sum(u <= h - 1 + 1e-9))


def inpaint_weights(horizon: int, frames: int, valid: int) -> np.ndarray:
    """(horizon,) inpainting weights: 1 at frame 0 falling linearly to 0 at frame ``frames``, and 0 from frame
    ``valid`` on (no known value there)."""
    w = np.clip(1.0 - np.arange(horizon) / max(frames, 1), 0.0, 1.0)
    w[valid:] = 0.0
    return w.astype(np.float32)
