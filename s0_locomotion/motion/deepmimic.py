"""DeepMimic humanoid clips (``humanoid3d_*.txt``) read and retargeted onto a body.

DeepMimic's files (xbpeng/DeepMimic, MIT licence):

* the character file (``character_humanoid3d.txt``, JSON): ``Skeleton.Joints`` lists each joint's
  ``Name``, ``Parent`` (index, -1 for the root), ``Type`` (``none`` for the root, ``spherical``,
  ``revolute``, ``fixed``) and ``AttachX/Y/Z``, the joint's position in its parent's frame (m);
* a clip (JSON): ``{"Loop": "wrap"|"none", "Frames": [[...], ...]}``, one row per frame: duration of
  the frame (s; 0 on the last), root position (3, m), root quaternion (w, x, y, z, world), then per
  non-root joint in skeleton order its rotation relative to the parent: a quaternion (4) for a
  spherical joint, an angle (1, rad, about the joint's local z axis) for a revolute one, nothing for a
  fixed one. humanoid3d has 44 numbers per frame.

Conventions, checked on the data (see tests/s0_locomotion/test_deepmimic.py):

* DeepMimic's frame is x forward, y up, z right (the right hip sits at AttachZ = +0.085). Ours is
  x forward, y left, z up, so ``v_ours = C @ v_dm`` with ``C`` below (a proper rotation), and a rotation
  ``R_dm`` becomes ``C R_dm C^T``: for a quaternion, ``(w, v) -> (w, C v)``.
* DeepMimic's zero pose is ours: legs straight down, arms hanging, feet flat (no AttachTheta, the foot
  box is axis-aligned), so local rotations need no offset. Both skeletons' segments are axis-aligned
  at the zero pose, so a local rotation in our world axes is also the rotation in the child's frame.
* Knee and elbow turn about DeepMimic's z (= our -y): knee flexion is negative there (ours positive),
  elbow flexion positive there (ours negative). Mapping the rotation matrix through ``C`` and then
  decomposing onto our chain handles both signs without special cases.
* DeepMimic's root joint sits at the hip centre; our pelvis origin sits above it, so the root position
  is placed to make the hip centres coincide (after scaling).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

from s0_locomotion.body import Body
from s0_locomotion.motion.clip import ClipError, Kinematics, MotionClip, make_clip
from s0_locomotion.motion.retarget import HUMANOID65_CHAINS, chain_matrix, decompose, rotation_log

# v_ours = C @ v_dm: x forward stays, our y (left) = -z_dm (right), our z (up) = y_dm (up).
C = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
CHARACTER_FILE = "character_humanoid3d.txt"
# Source joint roles this loader retargets (names as in DeepMimic and in HUMANOID65_CHAINS), with type.
ROLES: dict[str, str] = {
    "chest": "spherical", "neck": "spherical",
    **{f"{s}_{j}": t for s in ("right", "left") for j, t in
       (("hip", "spherical"), ("knee", "revolute"), ("ankle", "spherical"), ("shoulder", "spherical"),
        ("elbow", "revolute"))},
}
_VALUES_PER_TYPE = {"spherical": 4, "revolute": 1, "fixed": 0}


@dataclass(frozen=True)
class DeepMimicJoint:
    """One skeleton joint. offset: (3,) position in the parent's frame, DeepMimic axes (y up), m."""

    name: str
    parent: int  # index into the skeleton's joints, -1 for the root
    offset: np.ndarray
    type: str  # "none" (root), "spherical", "revolute" (about local z) or "fixed"


@dataclass(frozen=True)
class DeepMimicSkeleton:
    """A DeepMimic character's kinematic tree, joints in file order (parents before children)."""

    path: str
    joints: tuple[DeepMimicJoint, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(j.name for j in self.joints)

    @property
    def frame_size(self) -> int:
        """Numbers per clip frame: duration, root position (3) and quaternion (4), then the joints."""
        return 8 + sum(_VALUES_PER_TYPE[j.type] for j in self.joints[1:])

    @property
    def leg_length(self) -> float:
        """Hip to ankle at the zero pose, mean of both legs, m."""
        return float(np.mean([
            sum(np.linalg.norm(self.joints[self.names.index(f"{s}_{j}")].offset) for j in ("knee", "ankle"))
            for s in ("left", "right")]))


def _read_json(path: Path, what: str) -> object:
    if not path.is_file():
        raise ClipError(f"{path}: no such DeepMimic {what} file")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ClipError(f"{path}: not valid JSON, truncated or corrupt DeepMimic {what} file ({exc})") from exc


def load_deepmimic_skeleton(path: str | Path) -> DeepMimicSkeleton:
    """Read a DeepMimic character file's ``Skeleton``; raise ClipError when a retargeted joint is missing."""
    path = Path(path)
    data = _read_json(path, "character")
    try:
        rows = data["Skeleton"]["Joints"]
        joints = tuple(DeepMimicJoint(str(r["Name"]), int(r["Parent"]), np.array(
            [float(r["AttachX"]), float(r["AttachY"]), float(r["AttachZ"])]), str(r["Type"])) for r in rows)
    except (KeyError, TypeError, ValueError) as exc:
        raise ClipError(f"{path}: not a DeepMimic character file (Skeleton.Joints: {exc!r})") from exc
    names = [j.name for j in joints]
    for name, kind in ROLES.items():
        if name not in names:
            raise ClipError(f"{path}: character file lacks the required joint {name!r}")
        if joints[names.index(name)].type != kind:
            raise ClipError(f"{path}: joint {name!r} is {joints[names.index(name)].type!r}, expected {kind!r}")
    if joints[0].parent != -1:
        raise ClipError(f"{path}: the first skeleton joint must be the root (Parent -1)")
    for i, joint in enumerate(joints[1:], start=1):
        if not 0 <= joint.parent < i:
            raise ClipError(f"{path}: joint {joint.name!r} has parent {joint.parent}, expected an earlier joint")
        if joint.type not in _VALUES_PER_TYPE:
            raise ClipError(f"{path}: joint {joint.name!r} has unknown type {joint.type!r}")
    return DeepMimicSkeleton(str(path), joints)


def read_deepmimic_frames(path: str | Path, skeleton: DeepMimicSkeleton) -> tuple[np.ndarray, str]:
    """Read a clip's raw frames: (T, skeleton.frame_size) array in DeepMimic's layout, and its ``Loop``."""
    path = Path(path)
    data = _read_json(path, "clip")
    if not isinstance(data, dict) or not isinstance(data.get("Frames"), list):
        raise ClipError(f"{path}: missing \"Frames\" list (not a DeepMimic clip)")
    rows, n = data["Frames"], skeleton.frame_size
    if len(rows) < 2:
        raise ClipError(f"{path}: a clip needs at least 2 frames, got {len(rows)}")
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != n:
            got = len(row) if isinstance(row, list) else type(row).__name__
            raise ClipError(f"{path}: frame {i} has {got} values, expected {n} for skeleton {skeleton.path}")
    try:
        frames = np.array(rows, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ClipError(f"{path}: non-numeric values in \"Frames\" ({exc})") from exc
    bad = np.argwhere(~np.isfinite(frames))
    if bad.size:
        i, j = bad[0]
        raise ClipError(f"{path}: NaN/inf value {frames[i, j]} in frame {i} (column {j}); {len(bad)} non-finite")
    return frames, str(data.get("Loop", "none"))


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """(T, 4) wxyz (any norm > 0) -> (T, 3, 3) rotation matrices (active: v_parent = R v_child)."""
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def _to_ours(q: np.ndarray) -> np.ndarray:
    """DeepMimic quaternion (T, 4) wxyz -> the same rotation in our axes: (w, v) -> (w, C v)."""
    return np.concatenate([q[:, :1], q[:, 1:] @ C.T], axis=1)


def frame_rotations(skeleton: DeepMimicSkeleton, frames: np.ndarray, where: str = "") -> dict[str, np.ndarray]:
    """Per joint, (T, 3, 3) rotation in our axes: world orientation for the root, else relative to the parent.

    frames: (T, frame_size) raw DeepMimic rows. Fixed joints get the identity.
    """
    t = len(frames)
    out = {skeleton.joints[0].name: _checked_quat(frames[:, 4:8], where, "root")}
    col = 8
    for joint in skeleton.joints[1:]:
        if joint.type == "spherical":
            q = frames[:, col:col + 4]
            out[joint.name] = _checked_quat(q, where, joint.name)
        elif joint.type == "revolute":  # angle about the joint's local z: quaternion (cos a/2, 0, 0, sin a/2)
            half, zero = frames[:, col] / 2, np.zeros(t)
            out[joint.name] = quat_to_matrix(_to_ours(np.stack([np.cos(half), zero, zero, np.sin(half)], 1)))
        else:
            out[joint.name] = np.broadcast_to(np.eye(3), (t, 3, 3)).copy()
        col += _VALUES_PER_TYPE[joint.type]
    return out


def _checked_quat(q: np.ndarray, where: str, name: str) -> np.ndarray:
    norms = np.linalg.norm(q, axis=1)
    if np.any(norms < 1e-6):
        raise ClipError(f"{where}: zero quaternion for joint {name!r} in frame {int(np.argmin(norms))}")
    return quat_to_matrix(_to_ours(q))


def deepmimic_fk(skeleton: DeepMimicSkeleton, frames: np.ndarray) -> dict[str, np.ndarray]:
    """World positions of every skeleton joint: name -> (T, 3), our axes (z up), source scale, m.

    frames: (T, frame_size) raw DeepMimic rows (as from :func:`read_deepmimic_frames`).
    """
    rot = frame_rotations(skeleton, frames, where=skeleton.path)
    world_rot: list[np.ndarray] = []
    pos: dict[str, np.ndarray] = {}
    for joint in skeleton.joints:
        if joint.parent < 0:
            pos[joint.name] = frames[:, 1:4] @ C.T
            world_rot.append(rot[joint.name])
            continue
        parent = skeleton.joints[joint.parent]
        # x_child = x_parent + R_parent · offset;  R_child = R_parent · R_local
        pos[joint.name] = pos[parent.name] + world_rot[joint.parent] @ (C @ joint.offset)
        world_rot.append(world_rot[joint.parent] @ rot[joint.name])
    return pos


def retarget_rotations(model: mujoco.MjModel, body: Body, rotations: dict[str, np.ndarray],
                       chains: dict[str, tuple[str, ...]] = HUMANOID65_CHAINS) -> np.ndarray:
    """Joint angles (T, n_dof), rad, unclamped: each role's local rotation decomposed onto its chain.

    rotations: role -> (T, 3, 3) rotation relative to the parent, our axes, from the common zero pose.
    Joints in no chain keep ``body.default_pose``; the rotation is expressed in the chain body's frame
    at the zero pose (identity for humanoid65, whose bodies are axis-aligned).
    """
    t = len(next(iter(rotations.values())))
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)  # qpos0: every hinge at 0, root at identity
    names = list(body.joint_names)
    joint_pos = np.repeat(np.asarray(body.default_pose, dtype=np.float64)[None], t, axis=0)
    for role, target in rotations.items():
        chain = chains[role]
        body_id = model.jnt_bodyid[model.joint(chain[0]).id]
        frame = data.xmat[body_id].reshape(3, 3)  # the chain body's orientation at the zero pose
        local = frame.T @ target @ frame  # (T, 3, 3) in the chain body's frame
        axes = np.array([model.jnt_axis[model.joint(j).id] for j in chain])  # (k, 3)
        idx = [names.index(j) for j in chain]
        angles = decompose(local, axes)
        joint_pos[:, idx] = _best_branch(local, angles, axes, body.ranges[idx].astype(np.float64),
                                         _bone(model, body_id))
    return joint_pos


def _bone(model: mujoco.MjModel, body_id: int) -> np.ndarray:
    """(3,) unit direction from a body's origin to the mean of its children's origins (body frame)."""
    children = np.flatnonzero(model.body_parentid == body_id)
    children = children[children != body_id]
    d = model.body_pos[children].mean(axis=0) if children.size else np.array([0.0, 0.0, -1.0])
    return d / max(np.linalg.norm(d), 1e-9)


def _best_branch(target: np.ndarray, angles: np.ndarray, axes: np.ndarray, ranges: np.ndarray,
                 bone: np.ndarray) -> np.ndarray:
    """Per frame, of the two equivalent solutions of a 3-hinge orthogonal chain, the one that after
    clamping to the limits keeps the segment nearest the target: bone direction error + 0.25 x twist.

    For orthogonal axes ``R1(a) R2(b) R3(c) = R1(a + pi) R2(pi - b) R3(c + pi)`` (R1(pi) R3(pi) is a half
    turn about axis 2). target: (T, 3, 3); angles: (T, 3); ranges: (3, 2); bone: (3,) -> (T, 3), rad.
    """
    unit = axes / np.linalg.norm(axes, axis=1, keepdims=True)
    if len(axes) != 3 or np.abs(np.abs(unit @ unit.T) - np.eye(3)).max() > 1e-6:
        return angles
    alt = (angles * np.array([1.0, -1.0, 1.0]) + np.pi) % (2 * np.pi) - np.pi  # a + pi, pi - b, c + pi

    def error(q: np.ndarray) -> np.ndarray:  # (T,) rad
        r = chain_matrix(axes, np.clip(q, ranges[:, 0], ranges[:, 1]))
        direction = np.arccos(np.clip(np.einsum("tij,j,tik,k->t", r, bone, target, bone), -1.0, 1.0))
        return direction + 0.25 * np.linalg.norm(rotation_log(np.swapaxes(target, 1, 2) @ r), axis=1)

    return np.where((error(alt) < error(angles) - 1e-9)[:, None], alt, angles)


def clamp_to_limits(body: Body, joint_pos: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """Clip (T, n_dof) angles into ``body.ranges``; also return joint -> frames clamped (non-zero only)."""
    lo, hi = body.ranges.T.astype(np.float64)
    out = np.clip(joint_pos, lo, hi)
    counts = (np.abs(out - joint_pos) > 1e-6).sum(axis=0)  # round-off at a limit is no clamp
    return out, {body.joint_names[i]: int(c) for i, c in enumerate(counts) if c}


def _hip_centre(kin: Kinematics, body: Body, chains: dict[str, tuple[str, ...]]) -> tuple[np.ndarray, float]:
    """At the zero pose with the root at the origin: hip centre in the root frame (3,), and leg length, m."""
    model = kin.model
    pos = kin.body_positions(np.zeros((1, 3)), np.array([[1.0, 0, 0, 0]]), np.zeros((1, body.n_dof)))[0]

    def at(joint: str) -> np.ndarray:
        return pos[kin.body_names.index(model.body(model.jnt_bodyid[model.joint(joint).id]).name)]

    hips = [at(chains[f"{s}_hip"][0]) for s in ("left", "right")]
    legs = [np.linalg.norm(at(chains[f"{s}_ankle"][0]) - at(chains[f"{s}_hip"][0])) for s in ("left", "right")]
    return np.mean(hips, axis=0), float(np.mean(legs))


def _root_trajectory(skeleton: DeepMimicSkeleton, frames: np.ndarray, root_rot: np.ndarray,
                     hip_centre: np.ndarray, scale: float) -> np.ndarray:
    """(T, 3) our root position, world, before the floor shift: hip centres coincide after scaling, m.

    root_rot: (T, 3, 3) root orientation, our axes; hip_centre: (3,) our hip centre in the root frame.
    """
    names = skeleton.names
    dm_hips = np.mean([C @ skeleton.joints[names.index(f"{s}_hip")].offset for s in ("left", "right")], axis=0)
    hips_world = scale * (frames[:, 1:4] @ C.T + root_rot @ dm_hips)  # (T, 3)
    return hips_world - root_rot @ hip_centre


def _matrix_to_quat(r: np.ndarray) -> np.ndarray:
    """(T, 3, 3) -> (T, 4) wxyz."""
    out = np.empty((len(r), 4))
    for i, m in enumerate(r):
        mujoco.mju_mat2Quat(out[i], m.reshape(9))
    return out


def load_deepmimic(path: str | Path, body: Body, character: str | Path | None = None,
                   name: str | None = None) -> MotionClip:
    """Load a DeepMimic clip and retarget it onto ``body`` (world z up, root on the floor).

    Args:
        path: ``humanoid3d_*.txt`` clip.
        body: the target body (its joints must include ``HUMANOID65_CHAINS``).
        character: the character file; default ``character_humanoid3d.txt`` next to the clip.
        name: clip name; default the file stem.
    Returns:
        A clip at the source frame rate. Root position is scaled by (our leg length / source leg length)
        and shifted in z so the lowest foot collision point over the whole clip is at z = 0. Wrists 0,
        fingers at ``body.default_pose``; joints clamped to their limits (``meta["clamped"]``).
    """
    path = Path(path)
    skeleton = load_deepmimic_skeleton(Path(character) if character else path.parent / CHARACTER_FILE)
    frames, loop = read_deepmimic_frames(path, skeleton)
    durations = frames[:-1, 0]
    if np.any(durations <= 0) or np.ptp(durations) > 1e-3 * durations.mean():
        raise ClipError(f"{path}: frame durations must be equal and > 0, got {np.unique(durations)[:4]}")
    rot = frame_rotations(skeleton, frames, where=str(path))
    kin = Kinematics(body)
    joint_pos = retarget_rotations(kin.model, body, {role: rot[role] for role in ROLES})
    for side in ("left", "right"):  # the source has no wrist rotation
        joint_pos[:, [body.joint_names.index(j) for j in HUMANOID65_CHAINS[f"{side}_wrist"]]] = 0.0
    joint_pos, clamped = clamp_to_limits(body, joint_pos)
    hip_centre, leg = _hip_centre(kin, body, HUMANOID65_CHAINS)
    scale = leg / skeleton.leg_length
    root_rot = rot[skeleton.joints[0].name]
    root_pos = _root_trajectory(skeleton, frames, root_rot, hip_centre, scale)
    root_quat = _matrix_to_quat(root_rot)
    lowest = kin.geom_lowest_z(root_pos, root_quat, joint_pos, tuple(body.feet))
    root_pos[:, 2] -= lowest.min()
    meta = {"loop": loop, "scale": scale, "character": skeleton.path, "clamped": clamped,
            "floor_shift": float(-lowest.min())}
    return make_clip(body, name or path.stem, 1.0 / float(durations.mean()), root_pos, root_quat, joint_pos,
                     source=f"deepmimic:{path}", kinematics=kin, meta=meta)


__all__ = ["C", "CHARACTER_FILE", "DeepMimicJoint", "DeepMimicSkeleton", "ROLES", "clamp_to_limits",
           "deepmimic_fk", "frame_rotations", "load_deepmimic", "load_deepmimic_skeleton",
           "quat_to_matrix", "read_deepmimic_frames", "retarget_rotations"]
