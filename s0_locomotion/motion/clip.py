"""The motion clip: one ``.npz`` per clip, whole-body reference motion for one body.

Frames: world, z up, SI units, quaternions (w, x, y, z). Arrays (T = frames, n = n_dof, B = bodies):

    fps            ()          frames per second
    joint_names    (n,)        the body's joint order (a clip only plays on a body with the same joints)
    root_pos       (T, 3)      root (pelvis) position, world, m
    root_quat      (T, 4)      root orientation, world, wxyz, unit norm
    joint_pos      (T, n)      rad, inside the joint limits
    joint_vel      (T, n)      rad/s, central finite differences smoothed over 5 frames
    root_lin_vel   (T, 3)      m/s, world frame
    root_ang_vel   (T, 3)      rad/s, root body frame (as a gyro reads it)
    body_names     (B,)        every body of the humanoid, tree order
    body_pos       (T, B, 3)   world positions by forward kinematics through the body model, m

Velocities and body positions are derived: :func:`make_clip` computes them from the first four, so
every loader and generator only produces root trajectory and joint angles.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import mujoco
import numpy as np

from infra.files import save_npz
from s0_locomotion.body import Body

FORMAT_VERSION = 1
_ARRAYS = ("root_pos", "root_quat", "joint_pos", "joint_vel", "root_lin_vel", "root_ang_vel", "body_pos")


class ClipError(ValueError):
    """A clip that cannot be built, loaded or used; the message names the file or clip and the field."""


@dataclass(frozen=True, eq=False)
class MotionClip:
    """Whole-body reference motion for one body. See the module docstring for shapes and frames."""

    name: str
    fps: float
    joint_names: tuple[str, ...]
    root_pos: np.ndarray
    root_quat: np.ndarray
    joint_pos: np.ndarray
    joint_vel: np.ndarray
    root_lin_vel: np.ndarray
    root_ang_vel: np.ndarray
    body_names: tuple[str, ...]
    body_pos: np.ndarray
    source: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return self.root_pos.shape[0]

    @property
    def dt(self) -> float:
        return 1.0 / self.fps

    @property
    def duration(self) -> float:
        """Seconds from the first to the last frame."""
        return (self.num_frames - 1) / self.fps

    def body_index(self, name: str) -> int:
        return self.body_names.index(name)

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (.npz) atomically: a temporary file renamed into place."""
        return save_npz(
            path, format_version=FORMAT_VERSION, name=self.name, fps=self.fps, source=self.source,
            joint_names=np.array(self.joint_names), body_names=np.array(self.body_names),
            **{k: getattr(self, k).astype(np.float32) for k in _ARRAYS},
        )


def load_clip(path: str | Path, body: Body | None = None) -> MotionClip:
    """Read a clip ``.npz``; with ``body``, check that it was made for that body's joints."""
    path = Path(path)
    if not path.is_file():
        raise ClipError(f"{path}: no such clip file")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ClipError(f"{path}: not a readable clip .npz ({exc})") from exc
    missing = {"format_version", "fps", "joint_names", "body_names", *_ARRAYS} - set(data)
    if missing:
        raise ClipError(f"{path}: missing fields {sorted(missing)}")
    if int(data["format_version"]) != FORMAT_VERSION:
        raise ClipError(f"{path}: format_version {int(data['format_version'])}, expected {FORMAT_VERSION}")
    clip = MotionClip(
        name=str(data.get("name", path.stem)), fps=float(data["fps"]), source=str(data.get("source", "")),
        joint_names=tuple(str(n) for n in data["joint_names"]), body_names=tuple(str(n) for n in data["body_names"]),
        **{k: data[k].astype(np.float64) for k in _ARRAYS},
    )
    _validate(clip, where=str(path))
    if body is not None and clip.joint_names != tuple(body.joint_names):
        raise ClipError(f"{path}: made for a body with joints {clip.joint_names[:3]}... ({len(clip.joint_names)}), "
                        f"not {body.name!r} ({body.n_dof} joints)")
    return clip


def _validate(clip: MotionClip, where: str) -> None:
    t, n, b = clip.num_frames, len(clip.joint_names), len(clip.body_names)
    shapes = {"root_pos": (t, 3), "root_quat": (t, 4), "joint_pos": (t, n), "joint_vel": (t, n),
              "root_lin_vel": (t, 3), "root_ang_vel": (t, 3), "body_pos": (t, b, 3)}
    for key, shape in shapes.items():
        value = getattr(clip, key)
        if value.shape != shape:
            raise ClipError(f"{where}: {key} has shape {value.shape}, expected {shape}")
        if not np.isfinite(value).all():
            frame = int(np.argwhere(~np.isfinite(value))[0, 0])
            raise ClipError(f"{where}: {key} contains NaN/inf (first at frame {frame})")
    if t < 2:
        raise ClipError(f"{where}: a clip needs at least 2 frames, got {t}")
    if not clip.fps > 0:
        raise ClipError(f"{where}: fps must be > 0, got {clip.fps}")


class Kinematics:
    """Forward kinematics of a body (no scene): world positions of every body for given poses."""

    def __init__(self, body: Body) -> None:
        self.body = body
        self.model = body.spec().compile()
        self.data = mujoco.MjData(self.model)
        self.layout = body.layout(self.model)
        self.body_names = tuple(self.model.body(i).name for i in range(1, self.model.nbody))

    def poses(self, root_pos: np.ndarray, root_quat: np.ndarray, joint_pos: np.ndarray) -> Iterator[mujoco.MjData]:
        """For each frame, the data with that pose and ``mj_kinematics`` done (the same object every time)."""
        qpos = self.model.qpos0.copy()
        for i in range(len(root_pos)):
            self.layout.write_pose(qpos, root_pos[i], root_quat[i], joint_pos[i])
            self.data.qpos[:] = qpos
            mujoco.mj_kinematics(self.model, self.data)
            yield self.data

    def body_positions(self, root_pos: np.ndarray, root_quat: np.ndarray, joint_pos: np.ndarray) -> np.ndarray:
        """(T, 3), (T, 4), (T, n_dof) -> (T, B, 3) world body positions (B = all bodies but the world)."""
        return np.stack([d.xpos[1:].copy() for d in self.poses(root_pos, root_quat, joint_pos)])

    def com_positions(self, root_pos: np.ndarray, root_quat: np.ndarray, joint_pos: np.ndarray) -> np.ndarray:
        """(T, 3) whole-body centre of mass, world, m."""
        root = self.body.root_body_id(self.model)
        out = []
        for d in self.poses(root_pos, root_quat, joint_pos):
            mujoco.mj_comPos(self.model, d)
            out.append(d.subtree_com[root].copy())
        return np.stack(out)

    def geom_lowest_z(self, root_pos: np.ndarray, root_quat: np.ndarray, joint_pos: np.ndarray,
                      bodies: tuple[str, ...]) -> np.ndarray:
        """(T,) lowest point of the collision geoms of ``bodies`` (boxes exact, round shapes by AABB), m."""
        ids = [self.model.body(b).id for b in bodies]
        geoms = [g for g in range(self.model.ngeom) if self.model.geom_bodyid[g] in ids]
        out = np.empty(len(root_pos))
        for i, d in enumerate(self.poses(root_pos, root_quat, joint_pos)):
            rows = d.geom_xmat[geoms].reshape(-1, 3, 3)[:, 2]  # (G, 3) world z of each geom axis
            aabb = self.model.geom_aabb[geoms]
            low = d.geom_xpos[geoms, 2] + np.sum(rows * aabb[:, :3], 1) - np.sum(np.abs(rows) * aabb[:, 3:], 1)
            out[i] = low.min()
        return out


def smooth(x: np.ndarray, width: int = 5) -> np.ndarray:
    """Centred moving average along axis 0 with edge padding (keeps the length). x: (T, ...)."""
    if len(x) < width:
        return x.copy()
    pad = width // 2
    padded = np.concatenate([np.repeat(x[:1], pad, 0), x, np.repeat(x[-1:], pad, 0)])
    kernel = np.ones(width) / width
    return np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="valid"), 0, padded)


def quat_to_body_ang_vel(quat: np.ndarray, dt: float) -> np.ndarray:
    """(T, 4) wxyz -> (T, 3) angular velocity in the body frame, rad/s, by central differences."""
    t = len(quat)
    out = np.zeros((t, 3))
    for i in range(t):
        a, b = max(i - 1, 0), min(i + 1, t - 1)
        rel = np.zeros(4)
        conj = quat[a] * np.array([1, -1, -1, -1])
        mujoco.mju_mulQuat(rel, conj, quat[b])  # rotation from frame a to frame b, in frame a
        vel = np.zeros(3)
        mujoco.mju_quat2Vel(vel, rel, (b - a) * dt)
        out[i] = vel
    return out


def make_clip(body: Body, name: str, fps: float, root_pos: np.ndarray, root_quat: np.ndarray,
              joint_pos: np.ndarray, source: str = "", kinematics: Kinematics | None = None,
              meta: dict | None = None) -> MotionClip:
    """Build a clip from root trajectory and joint angles; derive velocities and FK body positions.

    Raises ClipError for wrong shapes, NaN, non-unit quaternions or joints outside their limits.
    """
    root_pos, root_quat, joint_pos = (np.asarray(a, dtype=np.float64) for a in (root_pos, root_quat, joint_pos))
    t = len(root_pos)
    for key, value, shape in (("root_pos", root_pos, (t, 3)), ("root_quat", root_quat, (t, 4)),
                              ("joint_pos", joint_pos, (t, body.n_dof))):
        if value.shape != shape:
            raise ClipError(f"clip {name!r}: {key} has shape {value.shape}, expected {shape}")
        if not np.isfinite(value).all():
            raise ClipError(f"clip {name!r}: {key} contains NaN/inf")
    norms = np.linalg.norm(root_quat, axis=1)
    if np.any(np.abs(norms - 1) > 1e-3):
        raise ClipError(f"clip {name!r}: root_quat is not unit norm (frame {int(np.argmax(np.abs(norms - 1)))})")
    root_quat = root_quat / norms[:, None]
    root_quat = root_quat * np.where(root_quat[:, :1] < 0, -1.0, 1.0)  # w >= 0 (one cover of SO(3))
    lo, hi = body.ranges.T.astype(np.float64)
    bad = np.flatnonzero(((joint_pos < lo - 1e-4) | (joint_pos > hi + 1e-4)).any(axis=0))
    if bad.size:
        raise ClipError(f"clip {name!r}: joints outside their limits: {[body.joint_names[i] for i in bad[:8]]}")
    kin = kinematics or Kinematics(body)
    dt = 1.0 / fps
    return MotionClip(
        name=name, fps=float(fps), joint_names=tuple(body.joint_names), root_pos=root_pos, root_quat=root_quat,
        joint_pos=joint_pos, joint_vel=smooth(np.gradient(joint_pos, dt, axis=0)),
        root_lin_vel=smooth(np.gradient(root_pos, dt, axis=0)),
        root_ang_vel=smooth(quat_to_body_ang_vel(root_quat, dt)),
        body_names=kin.body_names, body_pos=kin.body_positions(root_pos, root_quat, joint_pos), source=source,
        meta=dict(meta or {}),
    )
