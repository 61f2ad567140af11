"""One body interface for every humanoid: the built-in 65-DoF model or any MJCF humanoid by path.

:class:`Body` takes a kinematic tree (built in code or loaded from MJCF), maps its joints onto groups,
and instruments it the same way for every humanoid:

* one position actuator per joint doing PD at physics rate:
  ``tau = clip(kp * (q_target - q) - kd * qdot, -torque_limit, torque_limit)``,
  with ``ctrlrange`` equal to the joint range;
* an IMU site ``root_imu`` on the root body with sensors ``imu_gyro`` (rad/s, body frame), ``imu_acc``
  (m/s², body frame, includes gravity), ``imu_quat`` (world orientation, wxyz) and ``imu_vel``
  (m/s, body frame);
* ``com_pos`` / ``com_vel``: whole-body centre of mass (m) and its velocity (m/s), world frame;
* ``pos_<body>``: world position (m) of every tracked body (all but finger segments, see
  :meth:`Body.tracked_bodies`), for tracking rewards and errors without FK;
* touch sensors ``left_foot_touch`` / ``right_foot_touch`` (N, normal force summed over the sole),
  on box sites fitted around each foot's collision geometry (and ``*_hand_touch`` when hands are known);
* a head camera ``head_cam`` (RGB, for S1/S2) and a third-person camera ``track_cam`` that follows the
  centre of mass (for videos).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

from infra.config.schemas import BodyConfig, Gains
from s0_locomotion.body.humanoid65 import BuiltBody, build_humanoid65

HEAD_CAMERA = "head_cam"
TRACK_CAMERA = "track_cam"
IMU_SITE = "root_imu"
SENSOR_NAMES = ("imu_gyro", "imu_acc", "imu_quat", "imu_vel")
FREE = mujoco.mjtJoint.mjJNT_FREE


class BodyError(ValueError):
    """A body that cannot be built or loaded; the message names the file, joint or field."""


@dataclass(frozen=True)
class JointInfo:
    """One actuated joint. Units: rad, N·m/rad, N·m·s/rad, N·m."""

    name: str
    group: str
    range: tuple[float, float]
    kp: float
    kd: float
    torque_limit: float
    armature: float
    damping: float


@dataclass(frozen=True)
class QposLayout:
    """Where the body's floating base and joints sit in a compiled model's qpos and qvel (a scene adds
    objects after them). Free joint: qpos = position (3, world) + quaternion (4, wxyz); qvel = linear
    velocity (3, world) + angular velocity (3, body frame)."""

    root_q: int
    root_v: int
    joint_q: np.ndarray  # (n_dof,) qpos addresses in joint order
    joint_v: np.ndarray  # (n_dof,) qvel addresses in joint order

    def write_pose(self, qpos: np.ndarray, root_pos, root_quat, joint_pos) -> None:
        """Write root position (..., 3), quaternion (..., 4) and joints (..., n_dof) into qpos (..., nq)."""
        qpos[..., self.root_q:self.root_q + 3] = root_pos
        qpos[..., self.root_q + 3:self.root_q + 7] = root_quat
        qpos[..., self.joint_q] = joint_pos


def resolve_mjcf_path(mjcf: str) -> Path:
    """Resolve ``body.mjcf``: a file path, or ``menagerie:<robot>/<file>.xml`` under $MENAGERIE_ROOT."""
    if mjcf.startswith("menagerie:"):
        root = os.environ.get("MENAGERIE_ROOT", "")
        if not root:
            raise BodyError(
                f"body.mjcf={mjcf!r} needs MENAGERIE_ROOT set to a mujoco_menagerie checkout. The "
                "`mujoco-menagerie` wheel downloads its robots at first use, which fails offline; "
                "clone https://github.com/google-deepmind/mujoco_menagerie and point MENAGERIE_ROOT at it."
            )
        path = Path(root) / mjcf.removeprefix("menagerie:")
    else:
        path = Path(mjcf)
    if not path.is_file():
        raise BodyError(f"body.mjcf: MJCF file {str(path)!r} does not exist")
    return path


def _gains_for(cfg: BodyConfig, joint: str, group: str) -> Gains:
    for pattern, gains in cfg.joint_gains.items():
        if re.fullmatch(pattern, joint):
            return gains
    kind = re.sub(r"^(left|right)_", "", group)
    for key in (group, kind):
        if key in cfg.gains:
            return cfg.gains[key]
    raise BodyError(f"body.gains: no gains for joint {joint!r} of group {group!r}; add body.gains.{kind}")


def _load_mjcf(cfg: BodyConfig) -> BuiltBody:
    path = resolve_mjcf_path(cfg.mjcf)
    try:
        spec = mujoco.MjSpec.from_file(str(path))
    except Exception as exc:  # noqa: BLE001 - MuJoCo raises a bare ValueError/Exception with its parse log
        raise BodyError(f"body.mjcf: cannot parse MJCF file {str(path)!r}: {exc}") from exc
    for name in cfg.exclude_bodies:
        body = spec.body(name)
        if body is None:
            raise BodyError(f"body.exclude_bodies: no body {name!r} in {path}")
        spec.delete(body)
    # Our own actuators, sensors and keyframes replace the file's (they may name excluded joints).
    for element in [*spec.actuators, *spec.sensors, *spec.keys]:
        spec.delete(element)
    joints = [j.name for j in spec.joints if j.type != FREE]
    groups: dict[str, list[str]] = {g: [] for g in cfg.groups}
    for joint in joints:
        hits = [g for g, patterns in cfg.groups.items() if any(re.fullmatch(p, joint) for p in patterns)]
        if len(hits) != 1:
            what = "matches no group" if not hits else f"matches several groups {hits}"
            raise BodyError(f"body.groups: joint {joint!r} of {path} {what}; groups: {list(cfg.groups)}")
        groups[hits[0]].append(joint)
    if not cfg.feet or not cfg.head_body:
        raise BodyError(f"body.feet and body.head_body must name bodies of {path}")
    for name in [*cfg.feet, *cfg.hands, cfg.head_body]:
        if spec.body(name) is None:
            raise BodyError(f"body: no body named {name!r} in {path}")
    return BuiltBody(spec=spec, groups=groups, default_pose={}, feet=tuple(cfg.feet),
                     hands=tuple(cfg.hands) if cfg.hands else (), head=cfg.head_body)


def _look_at_quat(eye: np.ndarray, target: np.ndarray) -> list[float]:
    """Quaternion (wxyz) of a MuJoCo camera at ``eye`` looking at ``target`` with world z up."""
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    mat = np.stack([right, up, -forward], axis=1)  # camera x, y, z axes as columns; it looks along -z
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, mat.flatten())
    return quat.tolist()


class Body:
    """A humanoid ready to simulate: an instrumented ``MjSpec`` plus joint metadata.

    Attributes:
        name: model name.
        joints: the ``n_dof`` actuated joints in tree order (the order of every joint vector).
        groups: group name -> joint indices into ``joints``.
        default_pose: (n_dof,) standing joint positions, rad.
        root_height: height of the root body above the floor at the default pose, m.
        feet, hands: (left, right) body names; hands may be empty.
    """

    def __init__(self, cfg: BodyConfig | None = None) -> None:
        self.cfg = cfg or BodyConfig()
        built = _load_mjcf(self.cfg) if self.cfg.mjcf else build_humanoid65()
        self._spec = built.spec
        self.name = self._spec.modelname or Path(self.cfg.mjcf).stem
        self.feet, self.hands, self.head = built.feet, built.hands, built.head
        self.joints = self._configure_joints(built)
        self.groups = {g: [i for i, j in enumerate(self.joints) if j.group == g] for g in built.groups}
        self.default_pose = self._default_pose(built)
        try:
            self._instrument(builtin=not self.cfg.mjcf)
            self.root_height = self._standing_root_height()
        except ValueError as exc:  # MuJoCo's compile errors (repeated names, bad sizes) are ValueErrors
            if isinstance(exc, BodyError):
                raise
            raise BodyError(f"body {self.cfg.mjcf or 'humanoid65'!r}: cannot instrument the model: {exc}") from exc

    # -- construction ----------------------------------------------------------------------------

    def _configure_joints(self, built: BuiltBody) -> tuple[JointInfo, ...]:
        infos = []
        for group, names in built.groups.items():
            for name in names:
                joint = self._spec.joint(name)
                gains = _gains_for(self.cfg, name, group)
                if gains.armature is not None:
                    joint.armature = gains.armature
                if gains.damping is not None:
                    joint.damping = [gains.damping, 0.0, 0.0]  # MuJoCo 4: polynomial damping
        model = self._spec.compile()  # ranges in radians whatever the file's compiler.angle says
        for group, names in built.groups.items():
            for name in names:
                gains = _gains_for(self.cfg, name, group)
                jid = model.joint(name).id
                lo, hi = (float(v) for v in model.jnt_range[jid])
                if not (model.jnt_limited[jid] and lo < hi):
                    raise BodyError(f"body: joint {name!r} has no valid range ({lo}, {hi}); position "
                                    "actuators need a limited joint")
                infos.append(JointInfo(name, group, (lo, hi), gains.kp, gains.kd, gains.torque_limit,
                                       float(model.dof_armature[model.jnt_dofadr[jid]]),
                                       float(model.dof_damping[model.jnt_dofadr[jid]])))
        order = {j.name: i for i, j in enumerate(self._spec.joints)}  # tree order
        return tuple(sorted(infos, key=lambda j: order[j.name]))

    def _default_pose(self, built: BuiltBody) -> np.ndarray:
        pose = np.array([built.default_pose.get(j.name, 0.0) for j in self.joints], dtype=np.float32)
        for pattern, value in self.cfg.default_pose.items():
            hits = [i for i, j in enumerate(self.joints) if re.fullmatch(pattern, j.name)]
            if not hits:
                raise BodyError(f"body.default_pose: pattern {pattern!r} matches no joint")
            pose[hits] = value
        lo, hi = self.ranges.T
        if np.any(pose < lo) or np.any(pose > hi):
            bad = [self.joints[i].name for i in np.flatnonzero((pose < lo) | (pose > hi))]
            raise BodyError(f"body.default_pose: outside the joint range for {bad}")
        return pose

    def _instrument(self, builtin: bool) -> None:
        spec = self._spec
        if builtin:  # no self-collision; collide with the floor and objects (contype 1 & conaffinity 1)
            for geom in spec.geoms:
                geom.contype, geom.conaffinity = 1, 0
        for info in self.joints:
            act = spec.add_actuator(name=info.name, target=info.name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
            act.set_to_position(kp=info.kp, kv=info.kd)
            act.ctrlrange = list(info.range)
            act.forcerange = [-info.torque_limit, info.torque_limit]
            act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        root = self.root_body
        root.add_site(name=IMU_SITE, pos=[0, 0, 0], size=[0.01, 0, 0])
        for kind, sensor_type in zip(SENSOR_NAMES, ("GYRO", "ACCELEROMETER", "FRAMEQUAT", "VELOCIMETER")):
            spec.add_sensor(name=kind, type=getattr(mujoco.mjtSensor, f"mjSENS_{sensor_type}"),
                            objtype=mujoco.mjtObj.mjOBJ_SITE, objname=IMU_SITE)
        spec.add_sensor(name="com_pos", type=mujoco.mjtSensor.mjSENS_SUBTREECOM, objtype=mujoco.mjtObj.mjOBJ_BODY,
                        objname=root.name)
        spec.add_sensor(name="com_vel", type=mujoco.mjtSensor.mjSENS_SUBTREELINVEL,
                        objtype=mujoco.mjtObj.mjOBJ_BODY, objname=root.name)
        for name in self.tracked_bodies():
            spec.add_sensor(name=f"pos_{name}", type=mujoco.mjtSensor.mjSENS_FRAMEPOS,  # XBODY: body frame,
                            objtype=mujoco.mjtObj.mjOBJ_XBODY, objname=name)  # BODY would be its CoM
        model = self._spec.compile()  # geometry for fitting the touch sites (sites do not change it)
        for side, body in zip(("left", "right"), self.feet):
            self._add_touch(model, body, f"{side}_foot_touch")
        for side, body in zip(("left", "right"), self.hands):
            self._add_touch(model, body, f"{side}_hand_touch")
        self._add_cameras()

    def tracked_bodies(self) -> list[str]:
        """Bodies whose positions are sensed and scored (MPJPE, end effectors): every body except finger
        segments (bodies moved only by hand-group joints), i.e. the skeleton's major joints, hands included.
        Finger segments would triple the sensor count and cost batched throughput; finger tracking is scored
        by joint angle (``hand_joint_error_rad``)."""
        hand_joints = {j.name for j in self.joints if j.group.endswith("hand")}
        out = []
        for body in self._spec.bodies:
            if not body.name or body is self._spec.worldbody:
                continue
            joints = [j.name for j in body.joints]
            if joints and all(j in hand_joints for j in joints) and body.name not in self.hands:
                continue
            out.append(body.name)
        return out

    def _add_touch(self, model: mujoco.MjModel, body_name: str, sensor: str) -> None:
        """A box site around the body's collision geoms (from their compiled AABBs) + a touch sensor."""
        body_id = model.body(body_name).id
        lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
        for gid in np.flatnonzero(model.geom_bodyid == body_id):
            if model.geom_contype[gid] == 0 and model.geom_conaffinity[gid] == 0:
                continue
            center, half = model.geom_aabb[gid, :3], model.geom_aabb[gid, 3:]
            rot = model.geom_quat[gid]
            mat = np.zeros(9)
            mujoco.mju_quat2Mat(mat, rot)
            mat = mat.reshape(3, 3)
            c = model.geom_pos[gid] + mat @ center
            h = np.abs(mat) @ half
            lo, hi = np.minimum(lo, c - h), np.maximum(hi, c + h)
        if not np.all(np.isfinite(lo)):
            raise BodyError(f"body: {body_name!r} has no collision geometry for its contact sensor")
        margin = 0.005
        site = self._spec.body(body_name).add_site(
            name=sensor.replace("_touch", "_sole"), type=mujoco.mjtGeom.mjGEOM_BOX,
            pos=((lo + hi) / 2).tolist(), size=((hi - lo) / 2 + margin).tolist(), group=4,
            rgba=[0.9, 0.2, 0.2, 0.3])
        self._spec.add_sensor(name=sensor, type=mujoco.mjtSensor.mjSENS_TOUCH,
                              objtype=mujoco.mjtObj.mjOBJ_SITE, objname=site.name)

    def _add_cameras(self) -> None:
        pitch = np.deg2rad(self.cfg.head_camera_pitch_deg)
        eye = np.array(self.cfg.head_camera_pos, dtype=float)
        look = eye + np.array([np.cos(pitch), 0.0, -np.sin(pitch)])
        self._spec.body(self.head).add_camera(name=HEAD_CAMERA, pos=eye.tolist(),
                                              quat=_look_at_quat(eye, look), fovy=self.cfg.head_camera_fovy)
        eye = np.array([1.6, -2.6, 0.55])
        self.root_body.add_camera(name=TRACK_CAMERA, pos=eye.tolist(), mode=mujoco.mjtCamLight.mjCAMLIGHT_TRACKCOM,
                                  quat=_look_at_quat(eye, np.array([0.0, 0.0, -0.1])), fovy=50.0)

    def _standing_root_height(self) -> float:
        """Root height at which the lowest foot collision geom touches z = 0 at the default pose."""
        model = self._spec.compile()
        data = mujoco.MjData(model)
        data.qpos[:] = self.qpos0(model, root_height=0.0)
        mujoco.mj_kinematics(model, data)
        lowest = np.inf
        for body in self.feet:
            for gid in np.flatnonzero(model.geom_bodyid == model.body(body).id):
                if model.geom_contype[gid] == 0 and model.geom_conaffinity[gid] == 0:
                    continue  # visual only
                mat = data.geom_xmat[gid].reshape(3, 3)
                if model.geom_type[gid] == mujoco.mjtGeom.mjGEOM_MESH:  # exact: the lowest vertex
                    mesh = model.geom_dataid[gid]
                    adr, num = model.mesh_vertadr[mesh], model.mesh_vertnum[mesh]
                    z = data.geom_xpos[gid, 2] + (model.mesh_vert[adr:adr + num] @ mat[2]).min()
                else:  # exact for boxes, conservative for round shapes
                    center, half = model.geom_aabb[gid, :3], model.geom_aabb[gid, 3:]
                    z = data.geom_xpos[gid, 2] + mat[2] @ center - np.abs(mat[2]) @ half
                lowest = min(lowest, z)
        return float(-lowest)

    # -- queries ---------------------------------------------------------------------------------

    @property
    def root_body(self):
        for joint in self._spec.joints:
            if joint.type == FREE:
                return joint.parent
        raise BodyError(f"body {self.name!r} has no floating base (free joint)")

    @property
    def n_dof(self) -> int:
        return len(self.joints)

    @property
    def joint_names(self) -> list[str]:
        return [j.name for j in self.joints]

    @property
    def ranges(self) -> np.ndarray:
        """(n_dof, 2) joint limits, rad."""
        return np.array([j.range for j in self.joints], dtype=np.float32)

    @property
    def kp(self) -> np.ndarray:
        return np.array([j.kp for j in self.joints], dtype=np.float32)

    @property
    def kd(self) -> np.ndarray:
        return np.array([j.kd for j in self.joints], dtype=np.float32)

    @property
    def torque_limit(self) -> np.ndarray:
        return np.array([j.torque_limit for j in self.joints], dtype=np.float32)

    def spec(self) -> mujoco.MjSpec:
        """A fresh copy of the instrumented spec, to add a scene to and compile."""
        return self._spec.copy()

    def layout(self, model: mujoco.MjModel) -> QposLayout:
        """The body's qpos/qvel addresses in ``model`` (the body alone or a scene built on it)."""
        root = model.body_jntadr[self.root_body_id(model)]
        ids = [model.joint(name).id for name in self.joint_names]
        return QposLayout(int(model.jnt_qposadr[root]), int(model.jnt_dofadr[root]),
                          model.jnt_qposadr[ids].copy(), model.jnt_dofadr[ids].copy())

    def qpos0(self, model: mujoco.MjModel, root_height: float | None = None) -> np.ndarray:
        """(nq,) qpos of ``model`` with the body standing at its default pose at the origin."""
        qpos = model.qpos0.copy()
        height = self.root_height if root_height is None else root_height
        self.layout(model).write_pose(qpos, [0.0, 0.0, height], [1.0, 0.0, 0.0, 0.0], self.default_pose)
        return qpos

    def info(self) -> dict:
        """JSON-ready description (``humanoid body info --json``)."""
        model = self._spec.compile()
        return {
            "name": self.name,
            "n_dof": self.n_dof,
            "groups": {g: len(idx) for g, idx in self.groups.items()},
            "mass_kg": round(float(model.body_subtreemass[self.root_body_id(model)]), 3),
            "height_m": round(self._height(model), 3),
            "root_height_m": round(self.root_height, 4),
            "cameras": [HEAD_CAMERA, TRACK_CAMERA],
            "sensors": [model.sensor(i).name for i in range(model.nsensor)],
            "joints": [
                {"name": j.name, "group": j.group, "range": [round(v, 4) for v in j.range], "kp": j.kp,
                 "kd": j.kd, "torque_limit": j.torque_limit, "armature": j.armature, "damping": j.damping,
                 "default": round(float(q), 4)}
                for j, q in zip(self.joints, self.default_pose)
            ],
        }

    def root_body_id(self, model: mujoco.MjModel) -> int:
        return model.body(self.root_body.name).id

    def _height(self, model: mujoco.MjModel) -> float:
        """Standing height: highest geom point at the zero pose with the feet on the floor."""
        data = mujoco.MjData(model)
        data.qpos[:] = self.qpos0(model)
        mujoco.mj_kinematics(model, data)
        tops = [data.geom_xpos[g, 2] + np.abs(data.geom_xmat[g].reshape(3, 3)[2]) @ model.geom_aabb[g, 3:]
                for g in range(model.ngeom)]
        return float(max(tops))
