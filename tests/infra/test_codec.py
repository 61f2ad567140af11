"""msgpack codec: exact round trips, and every kind of bad input rejected with a clear CodecError."""

from __future__ import annotations

import ast
import inspect

import msgpack
import numpy as np
import pytest

from infra import codec
from infra.codec import CodecError, decode, encode
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


def sample(cls: type, seed: int = 0):
    """A valid ``cls`` instance with random, non-round values (so equality checks are meaningful)."""
    rng = np.random.default_rng(seed)

    def f32(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    header = {"stamp": 1234.567891, "seq": 42}
    if cls is RobotState:
        quat = f32(4)
        return RobotState(
            **header, joint_pos=f32(N_DOF), joint_vel=f32(N_DOF), root_quat=quat / np.linalg.norm(quat),
            root_ang_vel=f32(3), root_lin_vel=f32(3), root_pos=f32(3), foot_contact=np.abs(f32(2)),
        )  # fmt: skip
    if cls is CameraFrame:
        image = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
        return CameraFrame(**header, image=image, camera="head")
    if cls is LatentGoal:
        return LatentGoal(
            **header, z=f32(128), instruction="put the red cube ➜ in the bin", image_stamp=1234.5
        )
    if cls is MotionChunk:
        return MotionChunk(
            **header, joint_pos=f32(H, N_DOF), root_height=f32(H), root_heading=f32(H),
            root_planar_vel=f32(H, 2), start_time=1234.6, frame_dt=0.02,
        )  # fmt: skip
    if cls is JointCommand:
        return JointCommand(
            **header, q_target=f32(N_DOF), kp=np.abs(f32(N_DOF)), kd=np.abs(f32(N_DOF)), tau_ff=f32(N_DOF),
            mode=CommandMode.DAMP,
        )  # fmt: skip
    if cls is Instruction:
        return Instruction(**header, text="walk to the red box ➜ slowly")
    raise AssertionError(f"no sample for {cls.__name__}")


def assert_same_message(a, b) -> None:
    assert type(a) is type(b)
    for name in a.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, np.ndarray):
            assert isinstance(y, np.ndarray) and x.dtype == y.dtype and x.shape == y.shape, name
            assert np.array_equal(x, y), name
        else:
            assert type(x) is type(y) and x == y, name


def envelope(msg) -> dict:
    """The decoded-but-unvalidated wire map of ``msg``, for tampering."""
    return msgpack.unpackb(encode(msg), raw=False)


def pack(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def nd(arr: np.ndarray) -> dict:
    return {"__nd__": True, "dtype": arr.dtype.str, "shape": list(arr.shape), "data": arr.tobytes()}


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("cls", list(MESSAGE_TYPES.values()), ids=list(MESSAGE_TYPES))
def test_round_trip_is_exact(cls):
    msg = sample(cls)
    out = decode(encode(msg), expected=cls)
    assert_same_message(msg, out)


@pytest.mark.parametrize("cls", list(MESSAGE_TYPES.values()), ids=list(MESSAGE_TYPES))
def test_decoded_arrays_are_writable_copies(cls):
    data = encode(sample(cls))
    out = decode(data)
    for name in out.__dataclass_fields__:
        value = getattr(out, name)
        if isinstance(value, np.ndarray):
            assert value.flags.writeable and value.flags.owndata, name
            value[...] = 0  # must not fail, must not touch the input buffer
    assert_same_message(decode(data), sample(cls))


def test_enum_travels_as_int_and_comes_back_as_enum():
    msg = sample(JointCommand)
    assert envelope(msg)["fields"]["mode"] == 2
    assert decode(encode(msg)).mode is CommandMode.DAMP


def test_wire_envelope_layout():
    env = envelope(sample(LatentGoal))
    assert env["type"] == "LatentGoal" and env["v"] == 1
    assert env["fields"]["z"]["__nd__"] is True
    assert env["fields"]["z"]["dtype"] == "<f4" and env["fields"]["z"]["shape"] == [128]


def test_bytearray_and_memoryview_inputs_decode():
    data = encode(sample(RobotState))
    assert_same_message(decode(bytearray(data)), decode(memoryview(data)))


# --------------------------------------------------------------------------- malformed input


def test_truncated_bytes_are_rejected():
    data = encode(sample(MotionChunk))
    with pytest.raises(CodecError, match=r"malformed msgpack"):
        decode(data[: len(data) // 2])


@pytest.mark.parametrize("data", [b"\xc1garbage", b"", encode(sample(LatentGoal)) + b"\x00"])
def test_garbage_bytes_are_rejected(data):
    with pytest.raises(CodecError, match=r"malformed msgpack"):
        decode(data)


@pytest.mark.parametrize("seed", range(20))
def test_random_bytes_never_escape_as_other_errors(seed):
    data = np.random.default_rng(seed).bytes(64)
    with pytest.raises(CodecError):
        decode(data)


def test_non_bytes_input_is_rejected():
    with pytest.raises(CodecError, match=r"decode: expected bytes, got str"):
        decode("not bytes")


def test_oversized_input_is_rejected_before_parsing():
    data = encode(sample(CameraFrame))
    with pytest.raises(CodecError, match=rf"input is {len(data)} bytes, larger than max_bytes=1000"):
        decode(data, max_bytes=1000)
    decode(data, max_bytes=len(data))  # the bound itself is inclusive


@pytest.mark.parametrize(
    "obj",
    [{1: "int key"}, msgpack.ExtType(1, b"x")],
    ids=["non-str-key", "ext-type"],
)
def test_non_plain_msgpack_is_rejected(obj):
    with pytest.raises(CodecError, match=r"malformed msgpack"):
        decode(pack(obj))


def test_envelope_must_be_a_map():
    with pytest.raises(
        CodecError, match=r"envelope: expected a map with keys \['type', 'v', 'fields'\], got list"
    ):
        decode(pack([1, 2, 3]))


def test_unknown_type_is_rejected():
    env = envelope(sample(RobotState)) | {"type": "Teleport"}
    with pytest.raises(CodecError, match=r"unknown message type 'Teleport' \(known: \['CameraFrame'"):
        decode(pack(env))


@pytest.mark.parametrize("version", [2, 0, "1", True])
def test_wrong_version_is_rejected(version):
    env = envelope(sample(RobotState)) | {"v": version}
    with pytest.raises(CodecError, match=r"unsupported wire version"):
        decode(pack(env))


def test_expected_type_mismatch_is_rejected():
    with pytest.raises(CodecError, match=r"expected MotionChunk, got RobotState"):
        decode(encode(sample(RobotState)), expected=MotionChunk)


def test_missing_and_unexpected_fields_are_named():
    env = envelope(sample(MotionChunk))
    del env["fields"]["frame_dt"]
    with pytest.raises(CodecError, match=r"MotionChunk: missing fields \['frame_dt'\]"):
        decode(pack(env))
    env = envelope(sample(MotionChunk))
    env["fields"]["bogus"] = 1.0
    with pytest.raises(CodecError, match=r"MotionChunk: unexpected fields \['bogus'\]"):
        decode(pack(env))


@pytest.mark.parametrize(
    ("field", "value", "pattern"),
    [
        ("joint_pos", "abc", r"RobotState\.joint_pos \(array\): expected a map with keys .*got str"),
        ("stamp", "1.0", r"RobotState\.stamp: expected float, got str"),
        ("seq", 1.5, r"RobotState\.seq: expected int, got float"),
        ("seq", True, r"RobotState\.seq: expected int, got bool"),
        ("stamp", [1.0], r"RobotState\.stamp: expected float, got list"),
    ],
)
def test_wrong_python_type_for_field_is_rejected(field, value, pattern):
    env = envelope(sample(RobotState))
    env["fields"][field] = value
    with pytest.raises(CodecError, match=pattern):
        decode(pack(env))


def test_int_stamp_is_accepted_as_float():
    env = envelope(sample(RobotState))
    env["fields"]["stamp"] = 7
    assert decode(pack(env)).stamp == 7.0


def test_float64_array_is_rejected_by_message_validation():
    env = envelope(sample(RobotState))
    env["fields"]["joint_pos"] = nd(np.zeros(N_DOF, np.float64))
    with pytest.raises(CodecError, match=r"invalid RobotState: RobotState\.joint_pos: .*got float64") as info:
        decode(pack(env))
    assert isinstance(info.value.__cause__, MessageError)


def test_nan_on_the_wire_is_rejected():
    env = envelope(sample(MotionChunk))
    bad = np.zeros((H, 2), np.float32)
    bad[3, 0] = np.nan
    env["fields"]["root_planar_vel"] = nd(bad)
    with pytest.raises(
        CodecError, match=r"MotionChunk\.root_planar_vel: contains NaN/inf at indices \[\(3, 0\)\]"
    ):
        decode(pack(env))


def test_array_byte_count_must_match_shape():
    env = envelope(sample(RobotState))
    env["fields"]["joint_vel"]["data"] = env["fields"]["joint_vel"]["data"][:-4]
    with pytest.raises(
        CodecError, match=r"RobotState\.joint_vel: array data has 256 bytes, shape \[65\] of <f4 needs 260"
    ):
        decode(pack(env))


@pytest.mark.parametrize("dtype", ["|O", ">f4", "<c8", "<M8[s]", 4])
def test_disallowed_dtype_is_rejected(dtype):
    env = envelope(sample(RobotState))
    env["fields"]["joint_pos"]["dtype"] = dtype
    with pytest.raises(CodecError, match=r"RobotState\.joint_pos: dtype .* is not allowed"):
        decode(pack(env))


@pytest.mark.parametrize(
    ("key", "value", "pattern"),
    [
        ("shape", [-65], r"shape must be a list of ints >= 0"),
        ("shape", "65", r"shape must be a list of ints >= 0"),
        ("data", "text", r"array data must be bytes, got str"),
        ("__nd__", False, r"array marker __nd__ must be true"),
    ],
)
def test_malformed_array_map_is_rejected(key, value, pattern):
    env = envelope(sample(RobotState))
    env["fields"]["joint_pos"][key] = value
    with pytest.raises(CodecError, match=rf"RobotState\.joint_pos: {pattern}"):
        decode(pack(env))


def test_invalid_enum_value_is_rejected():
    env = envelope(sample(JointCommand))
    env["fields"]["mode"] = 9
    with pytest.raises(CodecError, match=r"invalid JointCommand: JointCommand\.mode: expected CommandMode"):
        decode(pack(env))


# --------------------------------------------------------------------------- no pickle, no arbitrary objects


def test_codec_never_imports_pickle():
    source = inspect.getsource(codec)
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= {
        "__future__",
        "dataclasses",
        "enum",
        "functools",
        "math",
        "typing",
        "msgpack",
        "numpy",
        "infra",
    }
    assert "import pickle" not in source and "allow_pickle" not in source and "__import__" not in source


class _Opaque:
    pass


@pytest.mark.parametrize("obj", [{1, 2}, _Opaque(), {"type": "RobotState"}, None])
def test_encode_rejects_arbitrary_objects(obj):
    with pytest.raises(CodecError, match=r"cannot encode object of type \w+: not a registered message type"):
        encode(obj)


def test_encode_rejects_smuggled_field_value():
    msg = sample(CameraFrame)
    object.__setattr__(msg, "camera", {"head"})  # bypass the frozen dataclass
    with pytest.raises(CodecError, match=r"CameraFrame\.camera: cannot encode value of type set"):
        encode(msg)


def test_codec_error_is_a_value_error():
    assert issubclass(CodecError, ValueError)
