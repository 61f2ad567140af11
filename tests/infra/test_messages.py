"""Validation of the DESIGN §3 message types: valid messages construct, invalid ones name the field."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from infra.messages import (
    MESSAGE_TYPES,
    CameraFrame,
    CommandMode,
    Instruction,
    JointCommand,
    LatentGoal,
    MessageError,
    MotionChunk,
    RobotState,
)

N_DOF = 65
H = 16


def _f32(*shape: int, fill: float = 0.0) -> np.ndarray:
    return np.full(shape, fill, dtype=np.float32)


def valid_kwargs(cls: type) -> dict:
    """Keyword arguments of a valid instance of ``cls`` (fresh arrays on every call)."""
    header = {"stamp": 12.5, "seq": 3}
    if cls is RobotState:
        return header | {
            "joint_pos": _f32(N_DOF, fill=0.1),
            "joint_vel": _f32(N_DOF),
            "root_quat": np.array([1.0, 0.0, 0.0, 0.0], np.float32),
            "root_ang_vel": _f32(3),
            "root_lin_vel": _f32(3),
            "root_pos": np.array([0.0, 0.0, 0.9], np.float32),
            "foot_contact": np.array([300.0, 0.0], np.float32),
        }
    if cls is CameraFrame:
        return header | {"image": np.zeros((4, 6, 3), np.uint8), "camera": "head"}
    if cls is LatentGoal:
        return header | {"z": _f32(128), "instruction": "pick up the red cube", "image_stamp": 12.4}
    if cls is MotionChunk:
        return header | {
            "joint_pos": _f32(H, N_DOF),
            "root_height": _f32(H, fill=0.9),
            "root_heading": _f32(H),
            "root_planar_vel": _f32(H, 2),
            "start_time": 12.52,
            "frame_dt": 0.02,
        }
    if cls is JointCommand:
        return header | {
            "q_target": _f32(N_DOF),
            "kp": _f32(N_DOF, fill=40.0),
            "kd": _f32(N_DOF, fill=2.0),
            "tau_ff": _f32(N_DOF),
            "mode": CommandMode.RUN,
        }
    if cls is Instruction:
        return header | {"text": "walk to the red box"}
    raise AssertionError(f"no valid_kwargs for {cls.__name__}")


def test_registry_holds_the_design_types_and_the_instruction_stream():
    assert MESSAGE_TYPES == {
        "RobotState": RobotState,
        "CameraFrame": CameraFrame,
        "LatentGoal": LatentGoal,
        "MotionChunk": MotionChunk,
        "JointCommand": JointCommand,
        "Instruction": Instruction,
    }


@pytest.mark.parametrize("cls", list(MESSAGE_TYPES.values()), ids=list(MESSAGE_TYPES))
def test_valid_message_constructs_and_keeps_arrays(cls):
    kwargs = valid_kwargs(cls)
    msg = cls(**kwargs)
    for name, value in kwargs.items():
        if isinstance(value, np.ndarray):
            assert getattr(msg, name) is value  # validated, not copied or converted
    assert "Hz" in cls.__doc__ or "rate" in cls.__doc__


@pytest.mark.parametrize("cls", list(MESSAGE_TYPES.values()), ids=list(MESSAGE_TYPES))
def test_messages_are_frozen_and_keyword_only(cls):
    msg = cls(**valid_kwargs(cls))
    with pytest.raises(dataclasses.FrozenInstanceError):
        msg.seq = 4
    with pytest.raises(TypeError):
        cls(*valid_kwargs(cls).values())


def test_lists_and_numpy_scalars_are_normalized():
    kwargs = valid_kwargs(RobotState) | {"root_ang_vel": [0.1, 0.2, 0.3], "stamp": np.float32(2.5), "seq": 7}
    msg = RobotState(**kwargs)
    assert msg.root_ang_vel.dtype == np.float32
    np.testing.assert_array_equal(msg.root_ang_vel, np.array([0.1, 0.2, 0.3], np.float32))
    assert type(msg.stamp) is float and msg.stamp == 2.5


def test_int_mode_becomes_command_mode():
    msg = JointCommand(**valid_kwargs(JointCommand) | {"mode": 3})
    assert msg.mode is CommandMode.ESTOP


def test_nan_in_joint_pos_is_reported_with_indices():
    kwargs = valid_kwargs(RobotState)
    kwargs["joint_pos"][[2, 40]] = np.nan
    with pytest.raises(MessageError, match=r"RobotState\.joint_pos: contains NaN/inf at indices \[2, 40\]"):
        RobotState(**kwargs)


def test_inf_in_2d_array_reports_index_pairs():
    kwargs = valid_kwargs(MotionChunk)
    kwargs["root_planar_vel"][5, 1] = np.inf
    with pytest.raises(
        MessageError, match=r"MotionChunk\.root_planar_vel: contains NaN/inf at indices \[\(5, 1\)\]"
    ):
        MotionChunk(**kwargs)


def test_joint_vel_must_match_joint_pos_length():
    kwargs = valid_kwargs(RobotState) | {"joint_vel": _f32(N_DOF - 1)}
    with pytest.raises(
        MessageError,
        match=r"RobotState\.joint_vel: expected float32 array of shape \(n_dof,\) "
        r"with n_dof == 65 \(from joint_pos\), got \(64,\)",
    ):
        RobotState(**kwargs)


def test_motion_chunk_horizon_must_agree():
    kwargs = valid_kwargs(MotionChunk) | {"root_height": _f32(H - 1)}
    with pytest.raises(
        MessageError, match=r"MotionChunk\.root_height: .*shape \(H,\) with H == 16 .*got \(15,\)"
    ):
        MotionChunk(**kwargs)


def test_wrong_rank_is_rejected():
    kwargs = valid_kwargs(MotionChunk) | {"joint_pos": _f32(H * N_DOF)}
    with pytest.raises(
        MessageError, match=r"MotionChunk\.joint_pos: expected float32 array of shape \(H, n_dof\)"
    ):
        MotionChunk(**kwargs)


def test_float64_array_is_rejected_not_coerced():
    kwargs = valid_kwargs(RobotState) | {"joint_pos": np.zeros(N_DOF, np.float64)}
    with pytest.raises(MessageError, match=r"RobotState\.joint_pos: .*got float64 array of shape \(65,\)"):
        RobotState(**kwargs)


def test_non_array_field_is_rejected():
    with pytest.raises(MessageError, match=r"LatentGoal\.z: expected float32 array of shape \(D,\), got str"):
        LatentGoal(**valid_kwargs(LatentGoal) | {"z": "abc"})


def test_ragged_list_is_rejected():
    with pytest.raises(MessageError, match=r"RobotState\.root_pos: cannot convert list to float32"):
        RobotState(**valid_kwargs(RobotState) | {"root_pos": [0.0, [1.0], 2.0]})


def test_empty_dimension_is_rejected():
    with pytest.raises(MessageError, match=r"LatentGoal\.z: .*got \(0,\)"):
        LatentGoal(**valid_kwargs(LatentGoal) | {"z": _f32(0)})


@pytest.mark.parametrize("quat", [[0.9, 0.0, 0.0, 0.0], [1.0, 0.1, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
def test_non_unit_quaternion_is_rejected(quat):
    kwargs = valid_kwargs(RobotState) | {"root_quat": np.array(quat, np.float32)}
    with pytest.raises(MessageError, match=r"RobotState\.root_quat: expected unit quaternion \(w, x, y, z\)"):
        RobotState(**kwargs)


def test_nearly_unit_quaternion_is_accepted():
    q = np.array([0.5, 0.5, 0.5, 0.5005], np.float32)  # norm ~ 1.00025
    RobotState(**valid_kwargs(RobotState) | {"root_quat": q})


def test_negative_foot_force_and_gains_are_rejected():
    with pytest.raises(
        MessageError, match=r"RobotState\.foot_contact: expected values >= 0, negative at indices \[1\]"
    ):
        RobotState(**valid_kwargs(RobotState) | {"foot_contact": np.array([1.0, -2.0], np.float32)})
    kwargs = valid_kwargs(JointCommand)
    kwargs["kd"][0] = -1.0
    with pytest.raises(MessageError, match=r"JointCommand\.kd: expected values >= 0"):
        JointCommand(**kwargs)


def test_image_must_be_uint8_rgb():
    with pytest.raises(MessageError, match=r"CameraFrame\.image: expected uint8 array of shape \(H, W, 3\)"):
        CameraFrame(**valid_kwargs(CameraFrame) | {"image": np.zeros((4, 6, 4), np.uint8)})
    with pytest.raises(MessageError, match=r"CameraFrame\.image: .*got float32 array"):
        CameraFrame(**valid_kwargs(CameraFrame) | {"image": np.zeros((4, 6, 3), np.float32)})
    with pytest.raises(MessageError, match=r"CameraFrame\.camera: expected str, got int"):
        CameraFrame(**valid_kwargs(CameraFrame) | {"camera": 0})


@pytest.mark.parametrize(
    ("field", "value", "pattern"),
    [
        ("stamp", float("nan"), r"MotionChunk\.stamp: expected a finite number, got nan"),
        ("stamp", "12.5", r"MotionChunk\.stamp: expected a real number, got str"),
        ("seq", -1, r"MotionChunk\.seq: expected an int >= 0, got -1"),
        ("seq", 1.0, r"MotionChunk\.seq: expected an int >= 0, got float"),
        ("seq", True, r"MotionChunk\.seq: expected an int >= 0, got bool"),
        ("frame_dt", 0.0, r"MotionChunk\.frame_dt: expected a number > 0, got 0\.0"),
        ("start_time", float("inf"), r"MotionChunk\.start_time: expected a finite number"),
    ],
)
def test_bad_scalars_are_rejected(field, value, pattern):
    with pytest.raises(MessageError, match=pattern):
        MotionChunk(**valid_kwargs(MotionChunk) | {field: value})


@pytest.mark.parametrize("mode", [7, -1, True, "RUN", 1.0])
def test_bad_mode_is_rejected(mode):
    with pytest.raises(MessageError, match=r"JointCommand\.mode: expected CommandMode \(RUN=0, HOLD=1"):
        JointCommand(**valid_kwargs(JointCommand) | {"mode": mode})


def test_message_error_is_a_value_error():
    assert issubclass(MessageError, ValueError)
