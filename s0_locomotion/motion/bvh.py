"""BVH motion capture: parser, source forward kinematics, and retargeting onto the 65-DoF humanoid.

A BVH file has a HIERARCHY (joints with an OFFSET from their parent, in the file's units, and CHANNELS
in any order) and a MOTION section (``Frames``, ``Frame Time`` in seconds, one row of channel values per
frame). Rotations are Euler angles in degrees composed intrinsically in the order the channels list
them, ``R = R_c1 · R_c2 · R_c3``; a joint's position channels replace its OFFSET (the root's world
position). Source FK: ``G_j = G_parent · R_j``, ``p_j = p_parent + G_parent · t_j``.

Retargeting (:func:`load_bvh`), frames: the source's axes become ours (x forward, y left, z up) by
``C``, a proper rotation built from the mapping's ``up_axis`` and ``forward_axis``. Each mapped joint's
world frame is re-based so that identity means "bone as at our zero pose":

    F_j = C · G_j · Cᵀ · Q_j,     Q_j: rest rotation taking our zero-pose bone direction to the
                                  source's rest bone direction (from the OFFSETs, e.g. T-pose arms)

and each of our hinge chains is fitted (:func:`decompose`) to ``F_parentᵀ · F_j``, the parent being the
nearest mapped role above it in our tree. Source joints mapped to nothing fold into the chain of the
mapped joint below them; several joints mapped to one role (Spine, Spine1 -> chest) fold into it.
Then a damped-least-squares IK on each leg's 6 hinges puts our ankle (foot body origin) where the
scaled source foot joint is, with the sole levelled while the source foot is on the ground, and the
root is lowered so that the lowest foot point over the clip is at z = 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import mujoco
import numpy as np

from s0_locomotion.body import Body
from s0_locomotion.motion.clip import ClipError, Kinematics, MotionClip, make_clip
from s0_locomotion.motion.retarget import HUMANOID65_CHAINS, decompose, rotation_log

MAP_DIR = Path(__file__).parent / "bvh_maps"
CHANNELS = ("Xposition", "Yposition", "Zposition", "Xrotation", "Yrotation", "Zrotation")
ROLES = ("root", *HUMANOID65_CHAINS)
REQUIRED_ROLES = ("root", *(f"{s}_{j}" for s in ("left", "right") for j in ("hip", "knee", "ankle")))
# Role -> the role whose frame it is measured from (our kinematic tree).
ROLE_PARENT = {"chest": "root", "neck": "chest", **{
    f"{s}_{j}": p if p in ("root", "chest") else f"{s}_{p}" for s in ("left", "right")
    for j, p in (("hip", "root"), ("knee", "hip"), ("ankle", "knee"), ("shoulder", "chest"),
                 ("elbow", "shoulder"), ("wrist", "elbow"))}}
# Bone direction out of each role's joint at our zero pose (our frame): spine up, limbs down, feet forward.
ZERO_BONE = {"chest": (0, 0, 1), "neck": (0, 0, 1), "ankle": (1, 0, 0)}  # every other role: (0, 0, -1)
# The next joint along each bone, for the rest bone direction.
ROLE_CHILD = {"chest": "neck", "hip": "knee", "knee": "ankle", "shoulder": "elbow", "elbow": "wrist"}


@dataclass
class BvhMapping:
    """How a BVH skeleton maps onto the body. Presets live in ``bvh_maps/<name>.yaml``."""

    joints: dict[str, str] = field(default_factory=dict)
    """BVH joint name -> role: ``root`` or a key of ``HUMANOID65_CHAINS`` (``chest``, ``left_knee``, ...).
    Several joints on one chain may share a role (Spine and Spine1 -> chest): the deepest one gives the
    role's frame. Unmapped joints fold into the chain of the mapped joint below them."""
    optional_joints: list[str] = field(default_factory=list)
    """Mapped joints that some files of this family lack (e.g. CMU's LowerBack); others must exist."""
    up_axis: str = "y"
    """The source's up axis: ``x``, ``y`` or ``z`` with an optional ``-`` (BVH is usually y up)."""
    forward_axis: str = "z"
    """The axis the source character faces at its rest pose (CMU: ``z``); must be perpendicular to up."""
    units_scale: float | str = "auto"
    """Source length units -> our metres, e.g. 0.01 for centimetres; ``auto``: our leg length over the
    source's (hip to foot joint), which also fits the source's size to ours."""
    feet: list[str] = field(default_factory=lambda: ["LeftFoot", "RightFoot"])
    """Source (left, right) foot joints, at the ankle: our foot body origins are put at their positions."""
    contact_height: float = 0.03
    """m (after scaling): a source foot this close to its lowest height over the clip is on the ground,
    and our sole is levelled (yaw kept) for that frame."""
    ik_iterations: int = 30
    """Damped-least-squares iterations per frame for the leg IK (0 switches the IK off)."""

    def __post_init__(self) -> None:
        bad = sorted({r for r in self.joints.values() if r not in ROLES})
        if bad:
            raise ValueError(f"bvh mapping: unknown roles {bad}; roles are {list(ROLES)}")
        missing = [r for r in REQUIRED_ROLES if r not in self.joints.values()]
        if missing:
            raise ValueError(f"bvh mapping: no joint mapped to the required roles {missing}")
        for name in ("up_axis", "forward_axis"):
            if not re.fullmatch(r"-?[xyz]", getattr(self, name)):
                raise ValueError(f"bvh mapping: {name}={getattr(self, name)!r}, expected x, y or z with optional -")
        if self.up_axis[-1] == self.forward_axis[-1]:
            raise ValueError(f"bvh mapping: up_axis {self.up_axis!r} and forward_axis {self.forward_axis!r} "
                             "must be perpendicular")
        if self.units_scale != "auto" and not (isinstance(self.units_scale, float | int) and self.units_scale > 0):
            raise ValueError(f"bvh mapping: units_scale={self.units_scale!r}, expected a number > 0 or 'auto'")
        if len(self.feet) != 2:
            raise ValueError(f"bvh mapping: feet must name (left, right) source joints, got {self.feet}")


def load_mapping(name: str = "cmu", overrides: tuple[str, ...] | list[str] = ()) -> BvhMapping:
    """A mapping preset by name (``cmu`` -> ``bvh_maps/cmu.yaml``) or .yaml path, plus dotlist overrides.

    Unknown keys raise :class:`infra.config.ConfigError` naming the key and the valid ones.
    """
    from infra.config import load_config

    preset = name if name.endswith((".yaml", ".yml")) else str(MAP_DIR / f"{name}.yaml")
    return load_config(BvhMapping, overrides=overrides, preset=preset)


# -- parsing ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BvhJoint:
    """One BVH joint. ``offset``: (3,) from the parent joint in the parent's frame, source units."""

    name: str
    parent: int  # index into Bvh.joints, -1 for the root
    offset: np.ndarray
    channels: tuple[str, ...]
    end_sites: tuple[np.ndarray, ...] = ()  # (3,) offsets of End Site children


@dataclass(frozen=True)
class Bvh:
    """A parsed BVH file. ``values``: (T, C) channel values in file order (degrees, source units)."""

    path: str
    joints: tuple[BvhJoint, ...]
    frame_time: float
    values: np.ndarray

    @property
    def names(self) -> list[str]:
        return [j.name for j in self.joints]

    def index(self, name: str) -> int:
        return self.names.index(name)

    def channel_slices(self) -> list[slice]:
        """Per joint, its columns of ``values``."""
        out, start = [], 0
        for joint in self.joints:
            out.append(slice(start, start + len(joint.channels)))
            start += len(joint.channels)
        return out


class _Tokens:
    def __init__(self, text: str, where: str) -> None:
        self.items, self.i, self.where = re.findall(r"[{}]|[^\s{}]+", text), 0, where

    def next(self) -> str:
        if self.i >= len(self.items):
            raise ClipError(f"{self.where}: HIERARCHY ends early (unbalanced braces or missing MOTION)")
        self.i += 1
        return self.items[self.i - 1]

    def expect(self, word: str) -> None:
        got = self.next()
        if got != word:
            raise ClipError(f"{self.where}: HIERARCHY: expected {word!r}, got {got!r}")

    def floats(self, n: int, what: str) -> np.ndarray:
        words = [self.next() for _ in range(n)]
        try:
            return np.array([float(w) for w in words])
        except ValueError:
            raise ClipError(f"{self.where}: HIERARCHY: {what} has non-numeric values {words}") from None


def _parse_joint(tok: _Tokens, name: str, parent: int, joints: list[BvhJoint]) -> None:
    """Parse ``{ OFFSET .. CHANNELS .. children }`` of joint ``name``; appends joints in file order."""
    tok.expect("{")
    index, offset, channels, ends = len(joints), np.zeros(3), (), []
    joints.append(BvhJoint(name, parent, offset, channels))
    while (word := tok.next()) != "}":
        if word == "OFFSET":
            offset = tok.floats(3, f"OFFSET of {name!r}")
        elif word == "CHANNELS":
            count = tok.next()
            if not count.isdigit():
                raise ClipError(f"{tok.where}: HIERARCHY: CHANNELS of {name!r} needs a count, got {count!r}")
            channels = tuple(tok.next() for _ in range(int(count)))
            unknown = [c for c in channels if c not in CHANNELS]
            if unknown:
                raise ClipError(f"{tok.where}: joint {name!r}: unknown channel name {unknown[0]!r}; "
                                f"known: {', '.join(CHANNELS)}")
        elif word == "JOINT":
            _parse_joint(tok, tok.next(), index, joints)
        elif word == "End":
            tok.expect("Site")
            tok.expect("{")
            tok.expect("OFFSET")
            ends.append(tok.floats(3, f"End Site of {name!r}"))
            tok.expect("}")
        else:
            raise ClipError(f"{tok.where}: HIERARCHY: unexpected {word!r} in joint {name!r}")
    joints[index] = BvhJoint(name, parent, offset, channels, tuple(ends))


def _parse_motion(lines: list[str], start: int, n_channels: int, where: str) -> tuple[float, np.ndarray]:
    """Lines after ``MOTION`` (``start``: 0-based index of the first) -> (frame_time s, (T, C) values)."""
    rows = [(i + 1, line) for i, line in enumerate(lines) if i >= start and line.strip()]
    header = {}
    for key in ("Frames", "Frame Time"):
        if not rows or not rows[0][1].strip().startswith(f"{key}:"):
            raise ClipError(f"{where}: MOTION: expected a '{key}:' line")
        try:
            header[key] = float(rows.pop(0)[1].split(":", 1)[1])
        except ValueError:
            raise ClipError(f"{where}: MOTION: '{key}:' is not a number") from None
    frames, frame_time = int(header["Frames"]), header["Frame Time"]
    if not frame_time > 0 or frames < 1:
        raise ClipError(f"{where}: MOTION: need Frames >= 1 and Frame Time > 0, got {frames}, {frame_time}")
    if len(rows) < frames:
        raise ClipError(f"{where}: MOTION is truncated: Frames: {frames} but only {len(rows)} rows")
    if len(rows) > frames:
        raise ClipError(f"{where}: MOTION has {len(rows)} rows but Frames: {frames}")
    values = np.empty((frames, n_channels))
    for f, (lineno, line) in enumerate(rows):
        words = line.split()
        if len(words) != n_channels:
            raise ClipError(f"{where}: frame {f} (line {lineno}) has {len(words)} values, expected {n_channels}")
        try:
            values[f] = [float(w) for w in words]
        except ValueError:
            raise ClipError(f"{where}: frame {f} (line {lineno}) has a non-numeric value") from None
    return frame_time, values


def parse_bvh(path: str | Path) -> Bvh:
    """Read a BVH file. Raises :class:`ClipError` naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise ClipError(f"{path}: no such BVH file")
    lines = path.read_text(errors="replace").splitlines()
    motion = next((i for i, line in enumerate(lines) if line.strip() == "MOTION"), None)
    if motion is None:
        raise ClipError(f"{path}: no MOTION section")
    tok = _Tokens("\n".join(lines[:motion]), str(path))
    tok.expect("HIERARCHY")
    tok.expect("ROOT")
    joints: list[BvhJoint] = []
    _parse_joint(tok, tok.next(), -1, joints)
    if tok.i != len(tok.items):
        raise ClipError(f"{path}: HIERARCHY: unexpected {tok.items[tok.i]!r} after the root (one ROOT only)")
    frame_time, values = _parse_motion(lines, motion + 1, sum(len(j.channels) for j in joints), str(path))
    bad = np.argwhere(~np.isfinite(values))
    if bad.size:
        owner = [j.name for j in joints for _ in j.channels]  # channel column -> joint name
        raise ClipError(f"{path}: NaN/inf in frame {bad[0, 0]}, channel {bad[0, 1]} ({owner[bad[0, 1]]})")
    return Bvh(str(path), tuple(joints), frame_time, values)


# -- source kinematics ---------------------------------------------------------------------------------


def euler_matrix(axis: str, degrees: np.ndarray) -> np.ndarray:
    """Rotation about the source's ``axis`` (x, y or z) by (T,) angles in degrees -> (T, 3, 3)."""
    a = np.deg2rad(degrees)
    c, s, one, zero = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    rows = {"x": ((one, zero, zero), (zero, c, -s), (zero, s, c)),
            "y": ((c, zero, s), (zero, one, zero), (-s, zero, c)),
            "z": ((c, -s, zero), (s, c, zero), (zero, zero, one))}[axis]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def forward_kinematics(bvh: Bvh) -> tuple[np.ndarray, np.ndarray]:
    """World joint positions (T, J, 3), source units, and rotations (T, J, 3, 3), source axes."""
    t, n = len(bvh.values), len(bvh.joints)
    pos, rot = np.zeros((t, n, 3)), np.zeros((t, n, 3, 3))
    for j, (joint, cols) in enumerate(zip(bvh.joints, bvh.channel_slices())):
        local_t = np.broadcast_to(joint.offset, (t, 3)).copy()
        local_r = np.broadcast_to(np.eye(3), (t, 3, 3)).copy()
        for name, column in zip(joint.channels, bvh.values[:, cols].T):
            axis = "xyz".index(name[0].lower())
            if name.endswith("position"):
                local_t[:, axis] = column  # position channels replace the OFFSET
            else:
                local_r = local_r @ euler_matrix(name[0].lower(), column)  # intrinsic, listed order
        if joint.parent < 0:
            pos[:, j], rot[:, j] = local_t, local_r
        else:
            p_rot = rot[:, joint.parent]
            pos[:, j] = pos[:, joint.parent] + np.einsum("tij,tj->ti", p_rot, local_t)
            rot[:, j] = p_rot @ local_r
    return pos, rot


def rest_positions(bvh: Bvh) -> np.ndarray:
    """(J, 3) joint positions at the rest pose: offsets summed from the root, source units."""
    out = np.zeros((len(bvh.joints), 3))
    for j, joint in enumerate(bvh.joints):
        out[j] = joint.offset + (out[joint.parent] if joint.parent >= 0 else 0.0)
    return out


def axes_matrix(up_axis: str, forward_axis: str) -> np.ndarray:
    """(3, 3) C with ``v_ours = C @ v_source``: rows are the source's forward, left (= up × forward), up."""
    def unit(spec: str) -> np.ndarray:
        v = np.zeros(3)
        v["xyz".index(spec[-1])] = -1.0 if spec.startswith("-") else 1.0
        return v

    up, forward = unit(up_axis), unit(forward_axis)
    return np.stack([forward, np.cross(up, forward), up])


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(3, 3) smallest rotation taking direction ``a`` to direction ``b`` (3,)."""
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    v, c = np.cross(a, b), float(a @ b)
    if c < -1 + 1e-9:  # opposite: half a turn about any axis perpendicular to a
        perp = np.cross(a, [1.0, 0, 0] if abs(a[0]) < 0.9 else [0, 1.0, 0])
        perp /= np.linalg.norm(perp)
        return 2 * np.outer(perp, perp) - np.eye(3)
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + k + k @ k / (1 + c)


# -- retargeting ---------------------------------------------------------------------------------------


def _role_joints(bvh: Bvh, mapping: BvhMapping) -> dict[str, int]:
    """Role -> the deepest source joint mapped to it; checks the mapping against the hierarchy."""
    names = bvh.names
    missing = [n for n in [*mapping.joints, *mapping.feet] if n not in names and n not in mapping.optional_joints]
    if missing:
        raise ClipError(f"{bvh.path}: mapped joints missing from the hierarchy: {missing}")
    out: dict[str, int] = {}
    for role in ROLES:
        chain = [names.index(n) for n, r in mapping.joints.items() if r == role and n in names]
        if not chain:
            continue
        chain.sort()  # file order: an ancestor comes before its descendants
        for upper, lower in zip(chain, chain[1:]):
            j = lower
            while j >= 0 and j != upper:
                j = bvh.joints[j].parent
            if j != upper:
                raise ClipError(f"{bvh.path}: joints {[names[i] for i in chain]} all map to {role!r} "
                                "but are not on one chain")
        out[role] = chain[-1]
    return out


def _descendant_direction(bvh: Bvh, joint: int) -> np.ndarray:
    """(3,) mean offset of the joint's children and End Sites; a zero-offset child (CMU's FingerBase,
    LeftShoulder, Neck) stands in with its own descendants' direction. Source axes, unnormalised."""
    vecs = list(bvh.joints[joint].end_sites)
    for child in (i for i, j in enumerate(bvh.joints) if j.parent == joint):
        offset = bvh.joints[child].offset
        vecs.append(offset if np.linalg.norm(offset) > 1e-9 else _descendant_direction(bvh, child))
    return np.mean(vecs, axis=0) if vecs else np.zeros(3)


def rest_alignment(bvh: Bvh, roles: dict[str, int], role: str, c: np.ndarray) -> np.ndarray:
    """(3, 3) Q, our frame: takes our zero-pose bone direction of ``role`` to the source's rest bone.

    The source's rest bone runs to the next mapped joint of our chain (hip -> knee, chest -> neck, ...);
    a wrist continues its forearm (rest poses have straight wrists); a neck or ankle points at the mean
    of its descendants, and feet are assumed flat at the rest pose (only the foot bone's heading counts).
    """
    joint, kind = roles[role], role.removeprefix("left_").removeprefix("right_")
    child = roles.get(role.replace(kind, ROLE_CHILD[kind])) if kind in ROLE_CHILD else None
    if role == "root":
        return np.eye(3)
    if child is not None:
        rest = rest_positions(bvh)
        bone = rest[child] - rest[joint]
    elif kind == "wrist":
        bone = bvh.joints[joint].offset
    else:
        bone = _descendant_direction(bvh, joint)
    bone = c @ bone
    if kind == "ankle":
        bone[2] = 0.0
    if np.linalg.norm(bone) < 1e-9:
        return np.eye(3)
    return rotation_between(np.array(ZERO_BONE.get(kind, (0, 0, -1)), dtype=float), bone)


def units_scale(bvh: Bvh, mapping: BvhMapping, role_joints: dict[str, int], body_leg: float) -> float:
    """Source units -> metres: the mapping's number, or (auto) our leg length / the source's mean leg."""
    if mapping.units_scale != "auto":
        return float(mapping.units_scale)
    lengths = []
    for side, foot in zip(("left", "right"), mapping.feet):
        j, hip, length = bvh.index(foot), role_joints[f"{side}_hip"], 0.0
        while j not in (hip, -1):
            length += float(np.linalg.norm(bvh.joints[j].offset))
            j = bvh.joints[j].parent
        if j != hip:
            raise ClipError(f"{bvh.path}: foot joint {foot!r} is not below the {side}_hip joint")
        lengths.append(length)
    if min(lengths) <= 0:
        raise ClipError(f"{bvh.path}: zero leg length, cannot scale units automatically")
    return body_leg / float(np.mean(lengths))


@dataclass
class Retarget:
    """Angle retargeting of a BVH onto the body, before IK. T frames, n = n_dof; our world frame, m, rad."""

    root_pos: np.ndarray  # (T, 3) pelvis origin
    root_quat: np.ndarray  # (T, 4) wxyz
    joint_pos: np.ndarray  # (T, n) clamped to the joint limits
    foot_pos: np.ndarray  # (T, 2, 3) scaled source foot joints (left, right): targets for our ankles
    foot_rot: np.ndarray  # (T, 2, 3, 3) source foot frames F (ours at zero pose = identity)
    scale: float  # source units -> m
    clamped: dict[str, int] = field(default_factory=dict)  # joint -> frames clamped to its limits


def _leg_geometry(model: mujoco.MjModel, foot_body: str) -> tuple[float, np.ndarray]:
    """(hip-to-ankle length m, hip joint position in the pelvis frame (3,)) of one leg at the zero pose."""
    side = foot_body.split("_")[0]
    hip_body = model.jnt_bodyid[model.joint(HUMANOID65_CHAINS[f"{side}_hip"][0]).id]
    b, length = model.body(foot_body).id, 0.0
    while b != hip_body:
        length += float(np.linalg.norm(model.body_pos[b]))
        b = model.body_parentid[b]
    return length, model.body_pos[hip_body].copy()


def retarget_angles(bvh: Bvh, body: Body, mapping: BvhMapping, model: mujoco.MjModel) -> Retarget:
    """Angle retargeting (see the module docstring); ``model``: the compiled body."""
    roles = _role_joints(bvh, mapping)
    c = axes_matrix(mapping.up_axis, mapping.forward_axis)
    pos, rot = forward_kinematics(bvh)  # (T, J, 3), (T, J, 3, 3)
    frames = {r: c @ rot[:, j] @ c.T @ rest_alignment(bvh, roles, r, c) for r, j in roles.items()}  # F (T, 3, 3)
    legs = [_leg_geometry(model, f) for f in body.feet]
    scale = units_scale(bvh, mapping, roles, float(np.mean([leg[0] for leg in legs])))
    joint_pos = np.broadcast_to(body.default_pose.astype(np.float64), (len(pos), body.n_dof)).copy()
    index = {n: i for i, n in enumerate(body.joint_names)}
    for role, chain in HUMANOID65_CHAINS.items():
        cols = [index[n] for n in chain]
        joint_pos[:, cols] = 0.0  # unmapped roles stay at the zero pose (folded into the next one)
        if role not in frames:
            continue
        parent = ROLE_PARENT[role]
        while parent not in frames:
            parent = ROLE_PARENT[parent]
        axes = np.array([model.jnt_axis[model.joint(n).id] for n in chain])
        joint_pos[:, cols] = decompose(np.swapaxes(frames[parent], 1, 2) @ frames[role], axes)
    hips = (pos[:, roles["left_hip"]] + pos[:, roles["right_hip"]]) / 2 * scale @ c.T  # (T, 3) ours
    hip_offset = (legs[0][1] + legs[1][1]) / 2  # pelvis frame
    root_rot = frames["root"]
    root_pos = hips - np.einsum("tij,j->ti", root_rot, hip_offset)
    root_quat = np.array([_mat_to_quat(m) for m in root_rot])
    feet = [bvh.index(f) for f in mapping.feet]
    foot_rot = np.stack([frames["left_ankle"], frames["right_ankle"]], axis=1)
    lo, hi = body.ranges.T.astype(np.float64)
    over = (joint_pos < lo) | (joint_pos > hi)
    clamped = {body.joint_names[i]: int(over[:, i].sum()) for i in np.flatnonzero(over.any(axis=0))}
    return Retarget(root_pos, root_quat, np.clip(joint_pos, lo, hi), pos[:, feet] * scale @ c.T, foot_rot,
                    scale, clamped)


def _mat_to_quat(mat: np.ndarray) -> np.ndarray:
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(mat).flatten())
    return quat


def level_feet(foot_pos: np.ndarray, foot_rot: np.ndarray, contact_height: float) -> np.ndarray:
    """(T, 2, 3), (T, 2, 3, 3) -> foot_rot with the sole levelled (heading kept) in ground-contact frames.

    A foot is on the ground where its height is within ``contact_height`` (m) of the lowest height either
    source foot reaches over the clip.
    """
    out = foot_rot.copy()
    contact = foot_pos[..., 2] - foot_pos[..., 2].min() < contact_height  # (T, 2)
    heading = np.arctan2(foot_rot[..., 1, 0], foot_rot[..., 0, 0])[contact]  # forward axis in the xy-plane
    c, s, zero, one = np.cos(heading), np.sin(heading), np.zeros_like(heading), np.ones_like(heading)
    out[contact] = np.stack([np.stack([c, -s, zero], -1), np.stack([s, c, zero], -1),
                             np.stack([zero, zero, one], -1)], -2)
    return out


def leg_ik(kin: Kinematics, body: Body, root_pos: np.ndarray, root_quat: np.ndarray, joint_pos: np.ndarray,
           foot_pos: np.ndarray, foot_rot: np.ndarray, iterations: int = 30, rot_weight: float = 0.2,
           damping: float = 0.01, tol: float = 1e-5) -> np.ndarray:
    """Move each leg's 6 hinges so the foot body reaches ``foot_pos`` (T, 2, 3) with ``foot_rot`` (T, 2, 3, 3).

    Damped least squares per frame, ``dq = Jᵀ (J Jᵀ + λ² I)⁻¹ e`` with ``e = [p* - p; w · log(R* Rᵀ)]``
    (world frame, orientation weighted by ``rot_weight`` m/rad), from the given angles, inside the limits.
    Returns (T, n_dof) angles, rad.
    """
    model, data = kin.model, kin.data
    joint_pos = joint_pos.copy()
    lo, hi = body.ranges.T.astype(np.float64)
    index = {n: i for i, n in enumerate(body.joint_names)}
    legs = []
    for side, foot in zip(("left", "right"), body.feet):
        names = [n for role in ("hip", "knee", "ankle") for n in HUMANOID65_CHAINS[f"{side}_{role}"]]
        legs.append((model.body(foot).id, np.array([index[n] for n in names]),
                     np.array([model.jnt_dofadr[model.joint(n).id] for n in names])))
    jacp, jacr = np.zeros((3, model.nv)), np.zeros((3, model.nv))
    qpos = model.qpos0.copy()
    for t in range(len(root_pos)):
        for _ in range(iterations):
            kin.layout.write_pose(qpos, root_pos[t], root_quat[t], joint_pos[t])
            data.qpos[:] = qpos
            mujoco.mj_kinematics(model, data)
            mujoco.mj_comPos(model, data)
            worst = 0.0
            for leg, (bid, cols, dofs) in enumerate(legs):
                err_p = foot_pos[t, leg] - data.xpos[bid]
                err_r = rotation_log((foot_rot[t, leg] @ data.xmat[bid].reshape(3, 3).T)[None])[0]
                mujoco.mj_jacBody(model, data, jacp, jacr, bid)
                jac = np.vstack([jacp[:, dofs], rot_weight * jacr[:, dofs]])  # (6, 6)
                err = np.concatenate([err_p, rot_weight * err_r])
                step = jac.T @ np.linalg.solve(jac @ jac.T + damping**2 * np.eye(6), err)
                joint_pos[t, cols] = np.clip(joint_pos[t, cols] + step, lo[cols], hi[cols])
                worst = max(worst, float(np.linalg.norm(err_p)))
            if worst < tol:
                break
    return joint_pos


def load_bvh(path: str | Path, body: Body, mapping: BvhMapping | None = None, name: str | None = None,
             kinematics: Kinematics | None = None) -> MotionClip:
    """Load a BVH file as a clip for ``body`` (the built-in humanoid65), retargeted and foot-corrected.

    ``mapping`` defaults to the ``cmu`` preset. ``meta`` records the source file, the units scale, the
    frames clamped per joint, the root shift and the foot-placement error (our ankle vs the scaled
    source foot, shifted with the root), m.
    """
    mapping = mapping or load_mapping("cmu")
    bvh = parse_bvh(path)
    missing = sorted({n for chain in HUMANOID65_CHAINS.values() for n in chain} - set(body.joint_names))
    if missing:
        raise ClipError(f"{path}: BVH retargeting needs the built-in humanoid65 body; {body.name!r} lacks "
                        f"joints {missing[:4]}")
    kin = kinematics or Kinematics(body)
    ret = retarget_angles(bvh, body, mapping, kin.model)
    feet = [kin.body_names.index(f) for f in body.feet]
    before = kin.body_positions(ret.root_pos, ret.root_quat, ret.joint_pos)[:, feet]
    foot_rot = level_feet(ret.foot_pos, ret.foot_rot, mapping.contact_height)
    joint_pos = leg_ik(kin, body, ret.root_pos, ret.root_quat, ret.joint_pos, ret.foot_pos, foot_rot,
                       iterations=mapping.ik_iterations)
    root_pos = ret.root_pos.copy()
    shift = -float(kin.geom_lowest_z(root_pos, ret.root_quat, joint_pos, tuple(body.feet)).min())
    root_pos[:, 2] += shift
    after = kin.body_positions(root_pos, ret.root_quat, joint_pos)[:, feet]
    target = ret.foot_pos + np.array([0.0, 0.0, shift])
    err, err_before = np.linalg.norm(after - target, axis=-1), np.linalg.norm(before - ret.foot_pos, axis=-1)
    meta = {"source_file": str(path), "units_scale": ret.scale, "frame_time": bvh.frame_time,
            "clamped": ret.clamped, "root_shift_m": shift, "foot_error_max_m": float(err.max()),
            "foot_error_mean_m": float(err.mean()), "foot_error_max_before_ik_m": float(err_before.max())}
    return make_clip(body, name or Path(path).stem, 1.0 / bvh.frame_time, root_pos, ret.root_quat, joint_pos,
                     source=f"bvh:{path}", kinematics=kin, meta=meta)
