"""The main job, for now: a simulated rollout of the body under the standing controller.

``humanoid run`` steps the body in the scene for ``seconds`` of simulated time, with optional random
pushes, writes a video from the third-person camera, a plot and a metrics JSON, and logs all of it to
MLflow. Later issues put S2 -> S1 -> S0 behind the same command.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from infra.config import to_yaml
from infra.config.s0 import RandomizeConfig, TrackingEnvConfig
from infra.config.schemas import RunConfig
from infra.tracking import Tracker
from s0_locomotion.body import TRACK_CAMERA, Body
from s0_locomotion.controllers import StandController
from s0_locomotion.motion.sources import load_motion
from s0_locomotion.sim.backend import SimObs
from s0_locomotion.sim.mujoco_backend import MujocoBackend
from s0_locomotion.tracking.env import TrackingEnv
from s0_locomotion.tracking.policy import S0Policy

FALL_HEIGHT_FRACTION = 0.6  # fallen when the root is below this fraction of its standing height
FALL_TILT_DEG = 60.0  # ... or the trunk is tilted more than this from vertical


def tilt_deg(quat: torch.Tensor) -> torch.Tensor:
    """Angle between the body z axis and world z, degrees. quat: (N, 4) wxyz -> (N,)."""
    w, x, y, z = quat.unbind(-1)
    cos = 1.0 - 2.0 * (x * x + y * y)  # R[2, 2] of the rotation
    return torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))


@dataclass
class RolloutLog:
    """Per-control-step traces of every world."""

    time: list[float] = field(default_factory=list)
    root_height: list[np.ndarray] = field(default_factory=list)
    tilt: list[np.ndarray] = field(default_factory=list)
    joint_err: list[np.ndarray] = field(default_factory=list)
    contact: list[np.ndarray] = field(default_factory=list)

    def record(self, obs: SimObs, targets: torch.Tensor) -> dict[str, float]:
        self.time.append(float(obs.time[0]))
        self.root_height.append(obs.root_pos[:, 2].numpy().copy())
        self.tilt.append(tilt_deg(obs.root_quat).numpy())
        self.joint_err.append((obs.joint_pos - targets).abs().mean(dim=1).numpy())
        self.contact.append(obs.foot_contact.sum(dim=1).numpy())
        return {"eval/root_height": float(self.root_height[-1][0]), "eval/tilt_deg": float(self.tilt[-1][0]),
                "eval/joint_err_rad": float(self.joint_err[-1][0]), "eval/foot_force_n": float(self.contact[-1][0])}


class Pusher:
    """Random horizontal velocity impulses on the root, at random intervals per world."""

    def __init__(self, cfg, num_envs: int, rng: np.random.Generator) -> None:
        self.cfg, self.rng = cfg, rng
        self.next_time = rng.uniform(*cfg.interval_s, size=num_envs)
        self.count = 0

    def __call__(self, backend: MujocoBackend, now: float) -> None:
        if not self.cfg.enabled:
            return
        due = np.flatnonzero(now >= self.next_time)
        if due.size == 0:
            return
        angle = self.rng.uniform(-np.pi, np.pi, size=due.size)
        speed = self.rng.uniform(0.5, 1.0, size=due.size) * self.cfg.max_velocity
        backend.push(due, np.stack([speed * np.cos(angle), speed * np.sin(angle), np.zeros_like(speed)], 1))
        self.next_time[due] = now + self.rng.uniform(*self.cfg.interval_s, size=due.size)
        self.count += due.size


def summarize(log: RolloutLog, body: Body, cfg: RunConfig, wall_s: float, pushes: int) -> dict:
    height, tilt = np.stack(log.root_height), np.stack(log.tilt)  # (T, N)
    fallen = (height < FALL_HEIGHT_FRACTION * body.root_height) | (tilt > FALL_TILT_DEG)
    fell = fallen.any(axis=0)
    first = np.where(fell, fallen.argmax(axis=0), -1)
    sim_s = log.time[-1]
    return {
        "seconds": round(sim_s, 4),
        "num_envs": cfg.sim.num_envs,
        "n_dof": body.n_dof,
        "success": bool(not fell.any()),
        "fell": fell.tolist(),
        "time_to_fall_s": [round(log.time[i], 3) if i >= 0 else None for i in first],
        "min_root_height_m": round(float(height.min()), 4),
        "max_tilt_deg": round(float(tilt.max()), 3),
        "mean_joint_err_rad": round(float(np.mean(log.joint_err)), 5),
        "pushes": pushes,
        "wall_s": round(wall_s, 3),
        "realtime_factor": round(sim_s * cfg.sim.num_envs / wall_s, 3),
    }


def plot(log: RolloutLog, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    for ax, series, label in zip(axes, (log.root_height, log.tilt, log.contact),
                                 ("root height (m)", "trunk tilt (deg)", "foot force (N)")):
        ax.plot(log.time, np.stack(series))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("simulated time (s)")
    fig.suptitle("humanoid run")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(cfg: RunConfig, progress: bool = True) -> dict:
    """Run the rollout; returns the metrics dict (also written as metrics.json in the run folder)."""
    import imageio.v2 as imageio

    out = Path(cfg.out_dir) / datetime.now().strftime("run-%Y%m%d-%H%M%S-%f")
    out.mkdir(parents=True, exist_ok=False)
    (out / "config.yaml").write_text(to_yaml(cfg))
    body = Body(cfg.body)
    with contextlib.ExitStack() as stack:
        stepper = (TrackStepper if cfg.controller == "s0" else StandStepper)(cfg, body)
        backend = stepper.backend
        stack.callback(backend.close)
        tracker = None
        if cfg.tracking.enabled:
            tracker = stack.enter_context(Tracker(cfg.tracking.experiment, tracking_uri=cfg.tracking.uri or None,
                                                  config=cfg, tags={"command": "run"}))
        frame_every = max(1, int(round(1.0 / (cfg.video.fps * backend.ctrl_dt))))
        writer = None
        if cfg.video.enabled:
            writer = imageio.get_writer(out / "rollout.mp4", fps=1.0 / (frame_every * backend.ctrl_dt),
                                        macro_block_size=8)
            stack.callback(writer.close)
        log, pushes, wall = _loop(cfg, stepper, tracker, writer, frame_every, progress)
        if writer is not None:
            writer.close()
        result = summarize(log, body, cfg, wall, pushes)
        result["out_dir"] = str(out)
        (out / "metrics.json").write_text(json.dumps(result, indent=2))
        plot(log, out / "rollout.png")
        if tracker:
            tracker.log_metrics({"perf/realtime_factor": result["realtime_factor"],
                                 "eval/success": float(result["success"])}, step=len(log.time))
            for path in sorted(out.iterdir()):
                tracker.log_artifact(path)
            result["mlflow_run_id"] = tracker.run_id
        return result


class StandStepper:
    """The standing PD controller on the scene: targets = default pose."""

    def __init__(self, cfg: RunConfig, body: Body) -> None:
        self.backend = MujocoBackend(body, cfg.sim, cfg.scene, offscreen=(cfg.video.width, cfg.video.height))
        self.controller = StandController(body, cfg.sim.num_envs)

    def reset(self) -> SimObs:
        self.controller.reset()
        return self.backend.reset()

    def step(self, obs: SimObs) -> tuple[SimObs, torch.Tensor]:
        targets = self.controller.act(obs)
        return self.backend.step(targets), targets


class TrackStepper:
    """The trained S0 controller tracking ``cfg.motion`` from its first frame (held at its last frame)."""

    def __init__(self, cfg: RunConfig, body: Body) -> None:
        self.policy = S0Policy(cfg.checkpoint)
        env_cfg = TrackingEnvConfig(body=cfg.body, sim=cfg.sim, episode_s=cfg.seconds + 1.0,
                                    randomize=RandomizeConfig(enabled=False), **self.policy.observation_config)
        clip = load_motion(cfg.motion, body)
        self.env = TrackingEnv(env_cfg, [clip], body, scene=cfg.scene, offscreen=(cfg.video.width, cfg.video.height))
        self.env.auto_reset = False
        self.backend = self.env.backend

    def reset(self) -> SimObs:
        n = self.env.num_envs
        self.obs = self.env.start(torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long))
        return self.env.obs

    def step(self, obs: SimObs) -> tuple[SimObs, torch.Tensor]:
        self.obs, *_ = self.env.step(self.policy.act(self.obs["policy"]))
        return self.env.obs, self.env.prev_targets


def _loop(cfg: RunConfig, stepper, tracker: Tracker | None, writer, frame_every: int,
          progress: bool) -> tuple[RolloutLog, int, float]:
    """act -> push -> step -> record -> log -> frame, for ``cfg.seconds`` of simulated time."""
    backend = stepper.backend
    pusher = Pusher(cfg.push, cfg.sim.num_envs, np.random.default_rng(cfg.sim.seed + 1))
    log = RolloutLog()
    obs = stepper.reset()
    steps = int(round(cfg.seconds / backend.ctrl_dt))
    start = time.perf_counter()
    for step in tqdm(range(steps), desc="rollout", unit="step", disable=not progress, mininterval=1.0):
        pusher(backend, float(obs.time[0]))
        obs, targets = stepper.step(obs)
        metrics = log.record(obs, targets)
        if tracker:
            tracker.log_metrics(metrics, step=step)
        if writer is not None and step % frame_every == 0:
            frame = backend.render(np.array([0]), TRACK_CAMERA, cfg.video.height, cfg.video.width,
                                   fast=not cfg.video.quality)
            writer.append_data(frame[0])
    return log, pusher.count, time.perf_counter() - start
