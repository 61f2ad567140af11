"""The simulation backend contract (DESIGN §5): N worlds stepped as one batch, tensors in and out.

Isaac Gym's shape, behind one small interface, so that the MuJoCo CPU backend and a MuJoCo Warp GPU
backend are interchangeable for the tracking environment and the runners.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np
import torch


class SimError(ValueError):
    """Bad input to the simulation: wrong shape, non-finite values, unknown world ids."""


@dataclass
class SimObs:
    """Observations of all worlds after a control step. Shapes: (num_envs, ...), float32 tensors.

    Frames and units: world frame z up, SI units, quaternions wxyz. Sensor-derived fields (imu, contacts,
    body_pos, com) are computed inside the last physics step, i.e. one ``sim_dt`` before the state.
    """

    time: torch.Tensor  # (N,) simulated time, s
    root_pos: torch.Tensor  # (N, 3) root position, world, m
    root_quat: torch.Tensor  # (N, 4) root orientation, world, wxyz
    root_lin_vel: torch.Tensor  # (N, 3) root linear velocity, world frame, m/s
    root_ang_vel: torch.Tensor  # (N, 3) root angular velocity, body frame, rad/s
    joint_pos: torch.Tensor  # (N, n_dof) rad
    joint_vel: torch.Tensor  # (N, n_dof) rad/s
    imu_gyro: torch.Tensor  # (N, 3) rad/s, IMU (root) frame
    imu_acc: torch.Tensor  # (N, 3) m/s², IMU frame, includes gravity (+9.81 z when at rest)
    foot_contact: torch.Tensor  # (N, 2) left, right normal force on the soles, N
    hand_contact: torch.Tensor  # (N, 2) left, right normal force on the palms, N (zeros without hands)
    body_pos: torch.Tensor  # (N, B, 3) world position of every robot body (backend.body_names order), m
    com_pos: torch.Tensor  # (N, 3) whole-body centre of mass, world, m
    com_vel: torch.Tensor  # (N, 3) centre-of-mass velocity, world, m/s


class SimBackend(abc.ABC):
    """N worlds of one scene, stepped together at the control rate.

    ``step`` holds each world's action (joint PD targets, rad, shape (num_envs, n_dof)) for
    ``decimation`` physics steps of ``sim_dt``; the position actuators do PD at physics rate.
    World state is the full physics state (time, qpos, qvel, actuator state, mocap), one row per world,
    so any world can be saved and restored exactly (reference-state initialisation, resets).
    """

    num_envs: int
    """number of worlds N"""
    n_dof: int
    """actuated joints per world"""
    sim_dt: float
    """physics step, s"""
    decimation: int
    """physics steps per control step"""
    device: torch.device
    """where observation and action tensors live"""

    @property
    def ctrl_dt(self) -> float:
        """control period, s"""
        return self.sim_dt * self.decimation

    @abc.abstractmethod
    def step(self, actions: torch.Tensor) -> SimObs:
        """Apply joint targets (num_envs, n_dof) for one control step and return the observations."""

    @abc.abstractmethod
    def observe(self) -> SimObs:
        """Observations of the current state, without stepping."""

    @abc.abstractmethod
    def get_state(self, env_ids: np.ndarray | None = None) -> np.ndarray:
        """Full physics state rows, (len(env_ids), nstate) float64 (all worlds when None)."""

    @abc.abstractmethod
    def set_state(self, state: np.ndarray, env_ids: np.ndarray | None = None) -> None:
        """Overwrite the state of the given worlds (all when None) with rows of ``state``."""

    @abc.abstractmethod
    def reset(self, env_ids: np.ndarray | None = None, layout: np.ndarray | None = None) -> SimObs:
        """Put worlds back to the standing pose with new (or given) object layouts."""

    @abc.abstractmethod
    def contacts(self, env_id: int) -> list[dict]:
        """Active contacts of one world: geom and body names, position (m) and normal force (N)."""

    @abc.abstractmethod
    def render(self, env_ids: np.ndarray, camera: str, height: int, width: int,
               fast: bool | None = None) -> np.ndarray:
        """RGB images (len(env_ids), height, width, 3) uint8 from a named camera; ``fast`` drops shadows,
        reflections and sky (default from the render config)."""

    def close(self) -> None:
        """Release threads and rendering contexts."""


def check_actions(actions: torch.Tensor | np.ndarray, num_envs: int, n_dof: int) -> np.ndarray:
    """Validate actions and return them as a float64 numpy array (num_envs, n_dof) for MuJoCo.

    Raises SimError naming the expected shape, or the worlds and joints holding NaN/inf: a non-finite
    target is never clamped silently.
    """
    if isinstance(actions, torch.Tensor):
        actions = actions.detach().cpu().numpy()
    actions = np.asarray(actions)
    if actions.shape != (num_envs, n_dof):
        raise SimError(f"actions: expected shape (num_envs, n_dof) = ({num_envs}, {n_dof}), got {actions.shape}")
    if not np.issubdtype(actions.dtype, np.floating):
        raise SimError(f"actions: expected a float tensor, got dtype {actions.dtype}")
    finite = np.isfinite(actions)
    if not finite.all():
        envs, joints = np.nonzero(~finite)
        raise SimError(f"actions: NaN/inf in worlds {sorted(set(envs.tolist()))[:10]} at joints "
                       f"{sorted(set(joints.tolist()))[:10]}")
    return actions.astype(np.float64, copy=False)
