"""The lockstep runner: one world, simulated time, every layer ticked on its own period (DESIGN §4).

Order within a control step that is also an S1 (S2) tick: render the head camera -> S2 -> S1 -> broker ->
S0 -> physics. Periods are whole multiples of S0's period, so tick counts are exact integers and a run
is deterministic for a seed. The same layer objects (and :class:`World`) run in the real-time runner
(``systems.runtime``).

Layers plug in through two small interfaces:

* :class:`GoalLayer` (S2's place): ``goal(now, image, instruction, privileged) -> z`` every S2 period.
* :class:`ChunkLayer` (S1's place): ``chunk(now, image, proprio, z, privileged) -> MotionChunk`` every S1
  period. The scripted teacher and the trained S1 are both chunk layers.

``privileged`` is the simulator's truth (root pose, object positions, the task): teachers, goal encoders
and success checks read it; a deployed S1/S2 must not.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from infra.config.stack import StackConfig
from infra.messages import MotionChunk
from s0_locomotion.body import HEAD_CAMERA, TRACK_CAMERA, Body
from s0_locomotion.sim.backend import SimObs
from s0_locomotion.sim.mujoco_backend import MujocoBackend
from s0_locomotion.tracking.controller import S0Controller
from s0_locomotion.tracking.policy import S0Policy
from s0_locomotion.tracking.rotations import quat_rotate_inverse, yaw_of
from s1_policy.chunking import ChunkBroker
from s1_policy.features import proprio_vector
from systems.tasks import BodyState, SuccessCheck, Task, task_scene


@dataclass
class Privileged:
    """Simulator truth at one instant (world frame)."""

    time: float
    root_xy: np.ndarray  # (2,) m
    root_yaw: float  # rad
    objects: dict[str, np.ndarray]  # name -> (2,) m
    task: Task


class GoalLayer(abc.ABC):
    """S2's place in the stack: the latent goal z (D,) float32 at S2's rate."""

    def reset(self, task: Task) -> None:
        """A new episode (and instruction)."""

    @abc.abstractmethod
    def goal(self, now: float, image: np.ndarray, instruction: str, privileged: Privileged) -> np.ndarray: ...


class ChunkLayer(abc.ABC):
    """S1's place in the stack: a MotionChunk at S1's rate."""

    def reset(self, task: Task, privileged: Privileged) -> None:
        """A new episode."""

    @abc.abstractmethod
    def chunk(self, now: float, image: np.ndarray, proprio: np.ndarray, z: np.ndarray,
              privileged: Privileged) -> MotionChunk: ...


@dataclass
class Tick:
    """What one S1 tick saw and produced (the recorder's input)."""

    time: float
    image: np.ndarray  # (S, S, 3) uint8, head camera
    proprio: np.ndarray  # (P,) float32
    z: np.ndarray  # (D,) float32, the goal layer's latest output
    chunk: MotionChunk  # what the chunk layer produced (before blending)
    privileged: Privileged


@dataclass
class EpisodeResult:
    task: Task
    success: bool
    fell: bool
    duration_s: float
    ticks: dict[str, int] = field(default_factory=dict)  # layer -> ticks
    frames: list[np.ndarray] = field(default_factory=list)  # third-person video frames, if asked


def proprio_of(obs: SimObs) -> np.ndarray:
    """S1's proprioception (P,) float32 from world 0 of an observation (no global position)."""
    gravity = quat_rotate_inverse(obs.root_quat[:1], torch.tensor([[0.0, 0.0, -1.0]]))[0].numpy()
    return proprio_vector(obs.joint_pos[0].numpy(), obs.joint_vel[0].numpy(), obs.root_ang_vel[0].numpy(),
                          gravity, float(obs.root_pos[0, 2]))


class World:
    """The simulated scene of the stack (one world): the backend plus what the layers and the success checks
    read from it. Both runners use it: in the real-time runner it lives in the body's actor."""

    def __init__(self, cfg: StackConfig, body: Body | None = None) -> None:
        self.cfg = cfg
        self.body = body or Body(cfg.body)
        self.backend = MujocoBackend(self.body, cfg.sim, task_scene(cfg.scene))
        self.adr = self.backend.scene.object_qpos_adr
        self.names = self.backend.scene.object_names
        self.tracked = {n: i for i, n in enumerate(self.backend.body_names)}

    def privileged(self, obs: SimObs, task: Task) -> Privileged:
        qpos = self.backend.qpos()[0]
        objects = {n: qpos[a:a + 2].copy() for n, a in zip(self.names, self.adr)}
        return Privileged(float(obs.time[0]), obs.root_pos[0, :2].numpy().astype(float),
                          float(yaw_of(obs.root_quat)[0]), objects, task)

    def body_state(self, p: Privileged, obs: SimObs) -> BodyState:
        bodies = {n: obs.body_pos[0, i].numpy() for n, i in self.tracked.items()}
        return BodyState(p.time, p.root_xy, float(obs.root_pos[0, 2]), p.root_yaw, bodies, p.objects,
                         self.body.root_height)

    def fallen(self, obs: SimObs) -> bool:
        """The root below 60% of its standing height."""
        return float(obs.root_pos[0, 2]) < 0.6 * self.body.root_height

    def camera(self, size: int | None = None) -> np.ndarray:
        s = size or self.cfg.image_size
        return self.backend.render(np.array([0]), HEAD_CAMERA, s, s, fast=True)[0]

    def view(self, height: int = 240, width: int = 320) -> np.ndarray:
        """The third-person tracking camera."""
        return self.backend.render(np.array([0]), TRACK_CAMERA, height, width, fast=True)[0]

    def close(self) -> None:
        self.backend.close()


class LockstepRunner:
    """Runs episodes of the stack in simulated time. One world; reuses its simulation across episodes."""

    def __init__(self, cfg: StackConfig, body: Body | None = None) -> None:
        self.cfg = cfg
        self.world = World(cfg, body)
        self.body, self.backend = self.world.body, self.world.backend
        dt = self.backend.ctrl_dt
        self.s1_every = int(round(cfg.rates.s1_period_s / dt))
        self.s2_every = int(round(cfg.rates.s2_period_s / dt))
        policy = None if cfg.s0_checkpoint == "none" else S0Policy(cfg.s0_checkpoint)
        self.s0 = S0Controller(policy, self.body, dt, cfg.s0_re_anchor_m, cfg.s0_re_anchor_rad, cfg.s0_balance)
        self.broker = ChunkBroker(cfg.rates.blend_frames)

    @property
    def balanced_gait(self) -> bool:
        """Whether its S0 was trained on balanced walks (``env.balanced_gait``): the teacher then walks so."""
        return self.s0.policy is not None and self.s0.policy.balanced_gait

    def run(self, task: Task, s1: ChunkLayer, s2: GoalLayer, record: Callable[[Tick], None] | None = None,
            video_every: int = 0, max_seconds: float | None = None, push: np.ndarray | None = None) -> EpisodeResult:
        """One episode: reset the world to ``task.layout``, tick the layers until success, a fall or the
        time limit. ``video_every`` > 0 keeps a third-person frame every that many control steps. ``push``:
        a planar velocity (2,) m/s given to the standing body at the start (episodes that would otherwise
        replay one another)."""
        self.backend.reset(layout=task.layout[None])
        if push is not None:
            self.backend.push(np.array([0]), np.array([[*np.asarray(push, dtype=float).reshape(2), 0.0]]))
        obs = self.backend.observe()
        priv = self.world.privileged(obs, task)
        self.s0.reset(obs)
        self.broker.reset()
        s1.reset(task, priv)
        s2.reset(task)
        check = SuccessCheck(task)
        ticks = {"s0": 0, "s1": 0, "s2": 0, "camera": 0}
        steps = int(round((max_seconds or task.time_limit_s) / self.backend.ctrl_dt))
        frames: list[np.ndarray] = []
        z = np.zeros(0, dtype=np.float32)
        image = None
        fell = False
        for i in range(steps):
            priv = self.world.privileged(obs, task)
            if i % self.s1_every == 0:
                image = self.world.camera()
                ticks["camera"] += 1
            if i % self.s2_every == 0:
                z = s2.goal(priv.time, image, task.instruction, priv)
                ticks["s2"] += 1
            if i % self.s1_every == 0:
                proprio = proprio_of(obs)
                chunk = s1.chunk(priv.time, image, proprio, z, priv)
                xy, yaw = self.s0.anchor(obs)
                self.s0.set_chunk(self.broker.add(chunk, xy, yaw), xy, yaw)
                ticks["s1"] += 1
                if record is not None:
                    record(Tick(priv.time, image, proprio, z, chunk, priv))
            if video_every and i % video_every == 0:
                frames.append(self.world.view())
            obs = self.backend.step(self.s0.act(obs))
            ticks["s0"] += 1
            state = self.world.body_state(self.world.privileged(obs, task), obs)
            done = check.update(state)
            fell = self.world.fallen(obs)
            if fell or (done and self.cfg.stop_on_success and record is None):
                break
        return EpisodeResult(task, check.success, fell, float(obs.time[0]), ticks, frames)

    def close(self) -> None:
        self.world.close()
