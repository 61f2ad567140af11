"""Message types exchanged between the layers (DESIGN §3).

Conventions shared by every message:

* arrays are numpy ``float32`` (images ``uint8``), SI units (m, rad, s, N, N·m);
* the world frame is right-handed with z up; quaternions are ordered (w, x, y, z);
* every message carries ``stamp`` (monotonic seconds, ``time.monotonic()`` clock) and ``seq``
  (a per-producer counter, >= 0) so that a consumer can measure staleness and detect drops.

Messages are frozen dataclasses with keyword-only fields. ``__post_init__`` validates dtype, shape and
finiteness and raises :class:`MessageError` naming the message type and field. It never coerces silently:
the only conversions are python lists/tuples -> ``float32`` arrays, numeric scalars -> python
``float``/``int`` and ints -> :class:`CommandMode`. Arrays are kept by reference (not copied, not made
read-only). Messages compare by identity (``eq=False``) because elementwise array equality is ambiguous.
"""

from __future__ import annotations

import enum
import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "MESSAGE_TYPES",
    "CameraFrame",
    "CommandMode",
    "Instruction",
    "JointCommand",
    "LatentGoal",
    "Message",
    "MessageError",
    "MotionChunk",
    "RobotState",
]

QUAT_NORM_TOL = 1e-3
"""Allowed deviation of a quaternion's norm from 1."""

_MAX_REPORTED_INDICES = 8

# A shape spec is a tuple of fixed sizes (int) and symbolic dimensions (str, each >= 1). Within one
# message, every occurrence of a symbolic dimension must have the same size.
ShapeSpec = tuple[int | str, ...]
# Symbolic dimension name -> (bound size, field that bound it).
Dims = dict[str, tuple[int, str]]


class MessageError(ValueError):
    """A message field has the wrong type, dtype, shape or value."""


class CommandMode(enum.IntEnum):
    """Low-level command mode, as on a real humanoid's joint controller.

    RUN: PD tracking ``tau = kp (q_target - q) - kd qdot + tau_ff``. HOLD: keep the last commanded
    position. DAMP: zero stiffness, damping only (safe sag). ESTOP: motors off.
    """

    RUN = 0
    HOLD = 1
    DAMP = 2
    ESTOP = 3


# --------------------------------------------------------------------------- validation helpers


def _format_indices(mask: np.ndarray) -> str:
    """Format the positions where ``mask`` is True: ``[3, 7]`` for 1-D, ``[(0, 3), ...]`` otherwise."""
    hits = np.argwhere(mask)
    items = [int(h[0]) if mask.ndim == 1 else tuple(int(i) for i in h) for h in hits[:_MAX_REPORTED_INDICES]]
    text = ", ".join(str(i) for i in items)
    return f"[{text}, ...]" if len(hits) > _MAX_REPORTED_INDICES else f"[{text}]"


def _real(where: str, value: Any, *, positive: bool = False) -> float:
    """A finite real scalar as python float (``positive``: also > 0). Bools are rejected."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise MessageError(f"{where}: expected a real number, got {type(value).__name__}")
    out = float(value)
    if not math.isfinite(out):
        raise MessageError(f"{where}: expected a finite number, got {out}")
    if positive and not out > 0.0:
        raise MessageError(f"{where}: expected a number > 0, got {out}")
    return out


def _count(where: str, value: Any) -> int:
    """A non-negative integer as python int. Bools and floats are rejected."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise MessageError(f"{where}: expected an int >= 0, got {type(value).__name__}")
    if value < 0:
        raise MessageError(f"{where}: expected an int >= 0, got {value}")
    return int(value)


def _text(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise MessageError(f"{where}: expected str, got {type(value).__name__}")
    return value


def _describe_spec(spec: ShapeSpec, dims: Dims) -> str:
    """E.g. ``(H, n_dof) with H == 16 (from joint_pos)``."""
    shape = "(" + ", ".join(str(d) for d in spec) + (",)" if len(spec) == 1 else ")")
    bound = [f"{d} == {dims[d][0]} (from {dims[d][1]})" for d in dict.fromkeys(spec) if d in dims]
    return shape + (" with " + ", ".join(bound) if bound else "")


def _shape_matches(shape: tuple[int, ...], spec: ShapeSpec, dims: Dims) -> bool:
    if len(shape) != len(spec):
        return False
    local: dict[str, int] = {}  # symbolic dims first bound within this array
    for size, want in zip(shape, spec):
        if want.__class__ is int:
            if size != want:
                return False
            continue
        bound = dims.get(want)
        if size < 1 or (bound[0] if bound is not None else local.setdefault(want, size)) != size:
            return False
    return True


def _array(where: str, value: Any, dtype: type, spec: ShapeSpec, dims: Dims) -> np.ndarray:
    """Check dtype, shape against ``spec`` (binding new symbolic dims into ``dims``) and finiteness."""
    if isinstance(value, (list, tuple)) and dtype is np.float32:
        try:
            value = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError) as err:
            raise MessageError(f"{where}: cannot convert {type(value).__name__} to float32 ({err})") from None

    def expected() -> str:  # built only for an error: messages are validated at every hop of the data path
        return f"expected {np.dtype(dtype).name} array of shape {_describe_spec(spec, dims)}"

    if not isinstance(value, np.ndarray):
        raise MessageError(f"{where}: {expected()}, got {type(value).__name__}")
    if value.dtype != dtype:
        raise MessageError(f"{where}: {expected()}, got {value.dtype} array of shape {value.shape}")
    if not _shape_matches(value.shape, spec, dims):
        raise MessageError(f"{where}: {expected()}, got {value.shape}")
    field = where.rsplit(".", 1)[-1]
    for size, want in zip(value.shape, spec, strict=True):
        if isinstance(want, str):
            dims.setdefault(want, (size, field))
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        raise MessageError(f"{where}: contains NaN/inf at indices {_format_indices(~np.isfinite(value))}")
    return value


def _nonnegative(where: str, value: np.ndarray) -> None:
    if (value < 0).any():
        raise MessageError(f"{where}: expected values >= 0, negative at indices {_format_indices(value < 0)}")


def _unit_quaternion(where: str, q: np.ndarray) -> None:
    norm = float(np.linalg.norm(q.astype(np.float64)))
    if abs(norm - 1.0) > QUAT_NORM_TOL:
        raise MessageError(
            f"{where}: expected unit quaternion (w, x, y, z) with |norm - 1| <= {QUAT_NORM_TOL}, "
            f"got norm {norm:.6g}"
        )


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True, eq=False, kw_only=True)
class Message:
    """Base of all messages: a timestamp and a sequence number, validated on construction."""

    stamp: float
    """Monotonic time (s) at which the content was measured or computed."""
    seq: int
    """Per-producer sequence number, >= 0, incremented by one per message."""

    def __post_init__(self) -> None:
        self._set("stamp", _real(self._where("stamp"), self.stamp))
        self._set("seq", _count(self._where("seq"), self.seq))
        self._validate({})

    def _validate(self, dims: Dims) -> None:
        """Validate the subclass's own fields; ``dims`` collects symbolic dimension sizes."""

    def _where(self, field: str) -> str:
        return f"{type(self).__name__}.{field}"

    def _set(self, field: str, value: Any) -> None:
        object.__setattr__(self, field, value)  # frozen dataclass: normalization only

    def _set_array(self, field: str, spec: ShapeSpec, dims: Dims, dtype: type = np.float32) -> np.ndarray:
        arr = _array(self._where(field), getattr(self, field), dtype, spec, dims)
        self._set(field, arr)
        return arr


@dataclass(frozen=True, eq=False, kw_only=True)
class RobotState(Message):
    """Proprioceptive state of the robot; flows from the robot/simulator at S0 rate (50–1000 Hz).

    Root velocities and position are estimated on a robot and exact in simulation.
    """

    joint_pos: np.ndarray
    """(n_dof,) float32, joint positions, rad."""
    joint_vel: np.ndarray
    """(n_dof,) float32, joint velocities, rad/s."""
    root_quat: np.ndarray
    """(4,) float32, root orientation in the world frame, (w, x, y, z), unit norm."""
    root_ang_vel: np.ndarray
    """(3,) float32, root angular velocity in the root (body) frame, rad/s."""
    root_lin_vel: np.ndarray
    """(3,) float32, root linear velocity in the world frame, m/s."""
    root_pos: np.ndarray
    """(3,) float32, root position in the world frame, m."""
    foot_contact: np.ndarray
    """(2,) float32, (left, right) foot contact normal force, N, >= 0."""

    def _validate(self, dims: Dims) -> None:
        self._set_array("joint_pos", ("n_dof",), dims)
        self._set_array("joint_vel", ("n_dof",), dims)
        _unit_quaternion(self._where("root_quat"), self._set_array("root_quat", (4,), dims))
        for field in ("root_ang_vel", "root_lin_vel", "root_pos"):
            self._set_array(field, (3,), dims)
        _nonnegative(self._where("foot_contact"), self._set_array("foot_contact", (2,), dims))


@dataclass(frozen=True, eq=False, kw_only=True)
class CameraFrame(Message):
    """An RGB image from a camera; flows at the camera's rate. ``stamp`` is the exposure time."""

    image: np.ndarray
    """(H, W, 3) uint8, RGB, row 0 at the top."""
    camera: str
    """Camera name, e.g. ``"head"``."""

    def _validate(self, dims: Dims) -> None:
        self._set_array("image", ("H", "W", 3), dims, dtype=np.uint8)
        _text(self._where("camera"), self.camera)


@dataclass(frozen=True, eq=False, kw_only=True)
class LatentGoal(Message):
    """S2's goal embedding for S1; flows at S2 rate (5–10 Hz)."""

    z: np.ndarray
    """(D,) float32, goal latent; D is fixed by config (default 128)."""
    instruction: str
    """The language instruction this goal answers."""
    image_stamp: float
    """Monotonic time (s) of the camera frame the goal was computed from."""

    def _validate(self, dims: Dims) -> None:
        self._set_array("z", ("D",), dims)
        _text(self._where("instruction"), self.instruction)
        self._set("image_stamp", _real(self._where("image_stamp"), self.image_stamp))


@dataclass(frozen=True, eq=False, kw_only=True)
class MotionChunk(Message):
    """H frames of whole-body targets from S1 for S0; flows at S1 rate (25–50 Hz).

    Frames are spaced ``frame_dt`` apart (S0's period); frame k applies at ``start_time + k * frame_dt``.
    The root trajectory is expressed in the heading frame of the root at the chunk's start: origin below
    the root, x along its heading (yaw only), z up.
    """

    joint_pos: np.ndarray
    """(H, n_dof) float32, joint position targets, rad."""
    root_height: np.ndarray
    """(H,) float32, root height above the ground, m."""
    root_heading: np.ndarray
    """(H,) float32, root yaw relative to the heading at the chunk's start, rad."""
    root_planar_vel: np.ndarray
    """(H, 2) float32, root (x, y) velocity in the start heading frame, m/s."""
    start_time: float
    """Monotonic time (s) of frame 0."""
    frame_dt: float
    """Time between frames, s, > 0."""

    def _validate(self, dims: Dims) -> None:
        self._set_array("joint_pos", ("H", "n_dof"), dims)
        self._set_array("root_height", ("H",), dims)
        self._set_array("root_heading", ("H",), dims)
        self._set_array("root_planar_vel", ("H", 2), dims)
        self._set("start_time", _real(self._where("start_time"), self.start_time))
        self._set("frame_dt", _real(self._where("frame_dt"), self.frame_dt, positive=True))


@dataclass(frozen=True, eq=False, kw_only=True)
class JointCommand(Message):
    """Per-joint PD command to the robot's low-level controller; flows at S0 rate (50–1000 Hz).

    In RUN mode the motor torque is ``tau = kp * (q_target - q) - kd * qdot + tau_ff``.
    """

    q_target: np.ndarray
    """(n_dof,) float32, target joint positions, rad."""
    kp: np.ndarray
    """(n_dof,) float32, position gains, N·m/rad, >= 0."""
    kd: np.ndarray
    """(n_dof,) float32, velocity gains, N·m·s/rad, >= 0."""
    tau_ff: np.ndarray
    """(n_dof,) float32, feed-forward torques, N·m."""
    mode: CommandMode
    """Controller mode (an int is accepted and converted)."""

    def _validate(self, dims: Dims) -> None:
        self._set_array("q_target", ("n_dof",), dims)
        _nonnegative(self._where("kp"), self._set_array("kp", ("n_dof",), dims))
        _nonnegative(self._where("kd"), self._set_array("kd", ("n_dof",), dims))
        self._set_array("tau_ff", ("n_dof",), dims)
        self._set("mode", _mode(self._where("mode"), self.mode))


def _mode(where: str, value: Any) -> CommandMode:
    valid = ", ".join(f"{m.name}={m.value}" for m in CommandMode)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise MessageError(f"{where}: expected CommandMode ({valid}), got {type(value).__name__}")
    try:
        return CommandMode(int(value))
    except ValueError:
        raise MessageError(f"{where}: expected CommandMode ({valid}), got {value}") from None


@dataclass(frozen=True, eq=False, kw_only=True)
class Instruction(Message):
    """The operator's current instruction for S2; republished at a few Hz (latest-value streams keep only the
    newest message, so a consumer that starts late or restarts still learns it). ``stamp`` is when it was
    issued, not when it was last sent."""

    text: str
    """The instruction, free-form language; empty = none."""

    def _validate(self, dims: Dims) -> None:
        _text(self._where("text"), self.text)


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.__name__: cls for cls in (RobotState, CameraFrame, LatentGoal, MotionChunk, JointCommand, Instruction)
}
"""Registry of message types by class name; the codec looks names up here (open: add your own)."""
