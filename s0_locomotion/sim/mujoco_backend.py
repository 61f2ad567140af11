"""MuJoCo CPU backend: N worlds stepped as one batch by ``mujoco.rollout`` in C threads.

The batch state is one (N, nstate) float64 array of full physics states, split into one contiguous
shard of worlds per thread. A control step hands each shard's states and (n, decimation, nu) controls
to ``mujoco.rollout`` on its own Python thread; rollout releases the GIL while it steps, so the shards
run in parallel in C. Observations are sliced from the returned states and sensor data with
vectorised numpy: there is no per-world Python loop on the hot path. (Measured on 2 cores: this
scales better than rollout's own thread pool, 30k vs 25-29k physics steps/s for 32 worlds.)

Determinism: the constraint solver's warm start is not part of the physics state, so every control
step starts from a zero warm start (``initial_warmstart``); a world's trajectory then depends only on
its state and actions, not on which thread stepped it before. Sensor values are those computed inside
the last physics step (MuJoCo evaluates sensors before integrating), i.e. one ``sim_dt`` old.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import mujoco
import numpy as np
import torch
from mujoco import rollout

from infra.config.schemas import RenderConfig, SceneConfig, SimConfig
from s0_locomotion.body import Body
from s0_locomotion.sim.backend import SimBackend, SimError, SimObs, check_actions
from s0_locomotion.sim.render import CameraRenderer
from s0_locomotion.sim.scene import Scene, sample_layout, set_layout

FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS


def state_offset(model: mujoco.MjModel, component: mujoco.mjtState) -> int:
    """Offset of one component (e.g. mjSTATE_QPOS) inside a full-physics state vector.

    Components are laid out in the order of their bits, so the offset is the size of all lower bits.
    """
    lower = int(FULL) & (int(component) - 1)
    return mujoco.mj_stateSize(model, lower)


class MujocoBackend(SimBackend):
    """Batched MuJoCo simulation of one scene on the CPU. See :class:`SimBackend` for the contract."""

    def __init__(self, body: Body, sim: SimConfig, scene: SceneConfig | None = None,
                 render: RenderConfig | None = None, offscreen: tuple[int, int] = (640, 480)) -> None:
        self.body, self.cfg = body, sim
        self.scene = Scene.build(body, scene or SceneConfig(objects=[]), sim, offscreen)
        self.model = model = self.scene.model
        self.num_envs, self.n_dof = sim.num_envs, body.n_dof
        self.sim_dt, self.decimation = sim.sim_dt, sim.decimation
        self.device = torch.device("cpu")
        self.threads = sim.threads or len(os.sched_getaffinity(0))  # the cores this process may run on
        self.rng = np.random.default_rng(sim.seed)
        self._scratch = mujoco.MjData(model)
        self._renderer = CameraRenderer(model, fast=(render or RenderConfig()).fast)
        n, nstate = self.num_envs, mujoco.mj_stateSize(model, FULL)
        self._state = np.zeros((n, nstate))
        self._sensordata = np.zeros((n, model.nsensordata))
        self._ctrl = np.zeros((n, self.decimation, model.nu))
        self._out_state = np.zeros((n, self.decimation, nstate))
        self._out_sensor = np.zeros((n, self.decimation, model.nsensordata))
        self._warmstart = np.zeros((n, model.nv))
        self._shards = [_Shard(model, ids, self) for ids in np.array_split(np.arange(n), self.threads) if ids.size]
        self._executor = ThreadPoolExecutor(len(self._shards), thread_name_prefix="mujoco-batch")
        self._index_layout()
        self.reset()

    # -- layout of state and sensors ---------------------------------------------------------------

    def _index_layout(self) -> None:
        m, body = self.model, self.body
        self._time = state_offset(m, mujoco.mjtState.mjSTATE_TIME)
        qpos0, qvel0 = state_offset(m, mujoco.mjtState.mjSTATE_QPOS), state_offset(m, mujoco.mjtState.mjSTATE_QVEL)
        self.layout = layout = body.layout(m)
        self._root_q, self._root_v = qpos0 + layout.root_q, qvel0 + layout.root_v  # offsets in the state rows
        self._joint_q, self._joint_v = qpos0 + layout.joint_q, qvel0 + layout.joint_v
        self._qpos, self._qvel = slice(qpos0, qpos0 + m.nq), slice(qvel0, qvel0 + m.nv)
        joint_ids = [m.joint(name).id for name in body.joint_names]
        actuated = [m.actuator(name).trnid[0] for name in body.joint_names]
        if actuated != joint_ids or m.nu != self.n_dof:
            raise SimError("scene actuators must be exactly the body's joints, in joint order")

        def sensor(name: str, dim: int) -> slice | None:
            try:
                adr = m.sensor(name).adr[0]
            except KeyError:
                return None
            return slice(adr, adr + dim)

        self._gyro, self._acc = sensor("imu_gyro", 3), sensor("imu_acc", 3)
        self._com, self._com_vel = sensor("com_pos", 3), sensor("com_vel", 3)
        self.body_names = tuple(m.sensor(i).name[4:] for i in range(m.nsensor) if m.sensor(i).name.startswith("pos_"))
        self._body_pos = np.concatenate([np.arange(3) + m.sensor(f"pos_{b}").adr[0] for b in self.body_names]) \
            if self.body_names else np.zeros(0, dtype=int)
        self._touch = {k: sensor(k, 1) for k in ("left_foot_touch", "right_foot_touch",
                                                 "left_hand_touch", "right_hand_touch")}

    # -- stepping --------------------------------------------------------------------------------

    def step(self, actions: torch.Tensor) -> SimObs:
        targets = check_actions(actions, self.num_envs, self.n_dof)
        lo, hi = self.model.actuator_ctrlrange.T
        self._ctrl[:] = np.clip(targets, lo, hi)[:, None, :]  # held for `decimation` physics steps
        self._warmstart[:] = 0.0
        if len(self._shards) == 1:  # one thread's worth (the stack's single world): no hand-off, 0.3 ms a step
            self._shards[0].step(self.decimation)
        else:
            for future in [self._executor.submit(shard.step, self.decimation) for shard in self._shards]:
                future.result()
        self._state[:] = self._out_state[:, -1]
        self._sensordata[:] = self._out_sensor[:, -1]
        if not np.isfinite(self._state).all():
            bad = np.flatnonzero(~np.isfinite(self._state).all(axis=1))
            raise SimError(f"simulation diverged (NaN/inf state) in worlds {bad[:10].tolist()}")
        return self.observe()

    def observe(self) -> SimObs:
        s, sens = self._state, self._sensordata

        def t(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

        def touch(left: str, right: str) -> np.ndarray:
            cols = [self._touch[left], self._touch[right]]
            if None in cols:
                return np.zeros((self.num_envs, 2))
            return np.concatenate([sens[:, c] for c in cols], axis=1)

        def imu(part: slice | None) -> np.ndarray:
            return sens[:, part] if part is not None else np.zeros((self.num_envs, 3))

        rq, rv = self._root_q, self._root_v
        return SimObs(
            time=t(s[:, self._time]), root_pos=t(s[:, rq:rq + 3]), root_quat=t(s[:, rq + 3:rq + 7]),
            root_lin_vel=t(s[:, rv:rv + 3]), root_ang_vel=t(s[:, rv + 3:rv + 6]),
            joint_pos=t(s[:, self._joint_q]), joint_vel=t(s[:, self._joint_v]),
            imu_gyro=t(imu(self._gyro)), imu_acc=t(imu(self._acc)),
            foot_contact=t(touch("left_foot_touch", "right_foot_touch")),
            hand_contact=t(touch("left_hand_touch", "right_hand_touch")),
            body_pos=t(sens[:, self._body_pos].reshape(self.num_envs, -1, 3)),
            com_pos=t(imu(self._com)), com_vel=t(imu(self._com_vel)),
        )

    # -- state -----------------------------------------------------------------------------------

    def _ids(self, env_ids: np.ndarray | None) -> np.ndarray:
        if env_ids is None:
            return np.arange(self.num_envs)
        ids = np.asarray(env_ids, dtype=int).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_envs):
            raise SimError(f"env_ids must lie in [0, {self.num_envs}), got {ids.tolist()[:10]}")
        return ids

    def get_state(self, env_ids: np.ndarray | None = None) -> np.ndarray:
        return self._state[self._ids(env_ids)].copy()

    def set_state(self, state: np.ndarray, env_ids: np.ndarray | None = None) -> None:
        ids = self._ids(env_ids)
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (len(ids), self._state.shape[1]):
            raise SimError(f"state: expected shape ({len(ids)}, {self._state.shape[1]}), got {state.shape}")
        if not np.isfinite(state).all():
            raise SimError("state: contains NaN/inf")
        self._state[ids] = state
        self._refresh_sensors(ids)

    def _refresh_sensors(self, ids: np.ndarray) -> None:
        """Recompute sensors of freshly set worlds (reset path, not the hot path)."""
        for i in ids:
            self._sensordata[i] = self._forward(i).sensordata

    def _forward(self, i: int) -> mujoco.MjData:
        """World i's state and last controls in the scratch data, with mj_forward run (off the hot path).

        Controls are not part of the physics state, but forces depend on them (PD actuators)."""
        d = self._scratch
        mujoco.mj_setState(self.model, d, self._state[i], FULL)
        d.ctrl[:] = self._ctrl[i, -1]
        mujoco.mj_forward(self.model, d)
        return d

    def reset(self, env_ids: np.ndarray | None = None, layout: np.ndarray | None = None) -> SimObs:
        """Standing pose at the origin, zero velocity, time 0; objects at ``layout`` (n, n_obj, 3) or a
        fresh draw (``scene.randomize_layout``) or the seed's fixed layout."""
        ids = self._ids(env_ids)
        qpos = np.tile(self.body.qpos0(self.model), (len(ids), 1))
        n_obj = len(self.scene.object_names)
        if n_obj:
            if layout is None:
                rng = self.rng if self.scene.cfg.randomize_layout else np.random.default_rng(self.cfg.seed)
                layout = sample_layout(rng, self.scene.cfg, 1 if not self.scene.cfg.randomize_layout else len(ids))
                layout = np.broadcast_to(layout, (len(ids), n_obj, 3))
            set_layout(qpos, self.scene.object_qpos_adr, np.asarray(layout))
        d = self._scratch
        rows = np.empty((len(ids), self._state.shape[1]))
        for k, q in enumerate(qpos):
            mujoco.mj_resetData(self.model, d)
            d.qpos[:] = q
            mujoco.mj_getState(self.model, d, rows[k], FULL)
        self._ctrl[ids] = self.body.default_pose  # hold the standing pose until the next step
        self.set_state(rows, ids)
        return self.observe()

    def snapshot(self) -> dict[str, np.ndarray]:
        """Everything that determines the next step: states, last sensor values and controls."""
        return {"state": self._state.copy(), "sensordata": self._sensordata.copy(), "ctrl": self._ctrl.copy()}

    def restore(self, snapshot: dict[str, np.ndarray]) -> None:
        """Undo to a :meth:`snapshot` exactly (sensors are not recomputed, so observations match too)."""
        for key, target in (("state", self._state), ("sensordata", self._sensordata), ("ctrl", self._ctrl)):
            value = np.asarray(snapshot[key])
            if value.shape != target.shape:
                raise SimError(f"restore: {key} has shape {value.shape}, expected {target.shape}")
            target[:] = value

    def set_qpos_qvel(self, env_ids: np.ndarray, qpos: np.ndarray, qvel: np.ndarray) -> None:
        """Reset worlds to given generalized positions (n, nq) and velocities (n, nv) at time 0."""
        ids = self._ids(env_ids)
        rows = self._state[ids].copy()
        rows[:, self._time] = 0.0
        rows[:, self._qpos], rows[:, self._qvel] = qpos, qvel
        self.set_state(rows, ids)

    def set_world_models(self, env_ids: np.ndarray, models: list[mujoco.MjModel]) -> None:
        """Give worlds their own (e.g. randomised) copies of the model; same sizes as the scene model."""
        ids = self._ids(env_ids)
        for i, model in zip(ids, models, strict=True):
            if model.nq != self.model.nq or model.nu != self.model.nu:
                raise SimError("set_world_models: a model variant must have the scene model's sizes")
            for shard in self._shards:
                if shard.first <= i < shard.first + len(shard.models):
                    shard.models[i - shard.first] = model

    def push(self, env_ids: np.ndarray, delta_vel: np.ndarray) -> None:
        """Add a velocity impulse (len(env_ids), 3) m/s, world frame, to the roots of some worlds."""
        ids = self._ids(env_ids)
        delta_vel = np.asarray(delta_vel, dtype=np.float64).reshape(len(ids), 3)
        self._state[ids, self._root_v:self._root_v + 3] += delta_vel

    def qpos(self) -> np.ndarray:
        """(N, nq) generalized positions of all worlds (a copy)."""
        return self._state[:, self._qpos].copy()

    # -- queries ---------------------------------------------------------------------------------

    def contacts(self, env_id: int) -> list[dict]:
        (i,) = self._ids(np.array([env_id]))
        m, d = self.model, self._forward(i)
        force = np.zeros(6)
        out = []
        for c in range(d.ncon):
            con = d.contact[c]
            mujoco.mj_contactForce(m, d, c, force)
            g1, g2 = int(con.geom1), int(con.geom2)
            out.append({
                "geom1": m.geom(g1).name, "geom2": m.geom(g2).name,
                "body1": m.body(m.geom_bodyid[g1]).name, "body2": m.body(m.geom_bodyid[g2]).name,
                "pos": con.pos.copy(), "normal_force": float(force[0]),
            })
        return out

    def render(self, env_ids: np.ndarray, camera: str, height: int, width: int,
               fast: bool | None = None) -> np.ndarray:
        return self._renderer.render(self._state[self._ids(env_ids)], camera, height, width, fast)

    def render_qpos(self, qpos: np.ndarray, camera: str, height: int, width: int,
                    fast: bool | None = None) -> np.ndarray:
        """Kinematic render of given configurations (n, nq) with the renderer's own MjData (the worlds' state
        is not touched): a camera process that only receives the robot's state."""
        return self._renderer.render_qpos(qpos, camera, height, width, fast)

    def close_renderer(self) -> None:
        """Free the GL contexts (from the thread that rendered: a context belongs to its thread)."""
        self._renderer.close()

    def close(self) -> None:
        self._renderer.close()
        self._executor.shutdown(wait=True)
        for shard in self._shards:
            shard.pool.close()
        self._shards = []


class _Shard:
    """A contiguous block of worlds stepped by one thread: views into the backend's batch arrays."""

    def __init__(self, model: mujoco.MjModel, ids: np.ndarray, b: MujocoBackend) -> None:
        rows = slice(int(ids[0]), int(ids[-1]) + 1)
        self.first = int(ids[0])
        self.pool = rollout.Rollout(nthread=0)  # runs on the calling thread, GIL released
        self.models = [model] * len(ids)  # one per world: room for per-world randomised models
        self.data = [mujoco.MjData(model)]
        self.state, self.ctrl, self.warmstart = b._state[rows], b._ctrl[rows], b._warmstart[rows]
        self.out_state, self.out_sensor = b._out_state[rows], b._out_sensor[rows]

    def step(self, nstep: int) -> None:
        self.pool.rollout(self.models, self.data, initial_state=self.state, control=self.ctrl,
                          control_spec=int(mujoco.mjtState.mjSTATE_CTRL), skip_checks=True, nstep=nstep,
                          initial_warmstart=self.warmstart, state=self.out_state, sensordata=self.out_sensor)
