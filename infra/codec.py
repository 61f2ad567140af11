"""msgpack + numpy wire codec for :mod:`infra.messages` (no pickle, safe on untrusted input).

Wire format (version 1), one msgpack map per message::

    {"type": "MotionChunk", "v": 1, "fields": {"stamp": 12.5, "seq": 3, "joint_pos": <nd>, ...}}
    <nd> = {"__nd__": True, "dtype": "<f4", "shape": [16, 65], "data": <bin, C order, little endian>}

Enums travel as ints, scalars as msgpack floats/ints/strings. Only the dtypes in :data:`WIRE_DTYPES`
are accepted; the message's own validation then decides which of them a field allows (float32 for
every float field, uint8 for images). Decoded arrays are fresh, writable, native-endian copies.

Errors: ``encode`` and ``decode`` raise only :class:`CodecError` (a ``ValueError``). A message that
decodes structurally but fails its own validation is reported as ``CodecError`` chained
(``__cause__``) to the original :class:`~infra.messages.MessageError`.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import typing
from typing import Any

import msgpack
import numpy as np

from infra.messages import MESSAGE_TYPES, Message, MessageError

__all__ = ["DEFAULT_MAX_BYTES", "WIRE_DTYPES", "WIRE_VERSION", "CodecError", "decode", "encode"]

WIRE_VERSION = 1
"""Version written in ``"v"``; ``decode`` rejects any other."""
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
"""Default upper bound on the size of one encoded message (64 MiB)."""
WIRE_DTYPES: frozenset[str] = frozenset({"<f4", "<f8", "|u1", "<i4", "<i8"})
"""Array dtypes allowed on the wire (numpy ``dtype.str``, little endian)."""

_WIRE = {name: np.dtype(name) for name in WIRE_DTYPES}
_NATIVE = {name: dtype.newbyteorder("=") for name, dtype in _WIRE.items()}

# Container limits passed to msgpack so a hostile header cannot make it allocate: a message is one
# map of a few fields, arrays carry at most a handful of dimensions.
_MAX_MAP_LEN = 64
_MAX_ARRAY_LEN = 32
_ENVELOPE_KEYS = ("type", "v", "fields")
_ND_KEYS = ("__nd__", "dtype", "shape", "data")


class CodecError(ValueError):
    """Bytes could not be decoded into a valid message, or an object could not be encoded."""


# --------------------------------------------------------------------------- field kinds


@functools.cache
def _field_types(cls: type[Message]) -> dict[str, Any]:
    """Field name -> resolved annotation (``np.ndarray``, ``float``, ``int``, ``str`` or an IntEnum)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _type_name(value: Any) -> str:
    return type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --------------------------------------------------------------------------- encode


def _encode_array(where: str, arr: np.ndarray) -> dict[str, Any]:
    wire = arr.dtype.newbyteorder("<") if arr.dtype.byteorder != "|" else arr.dtype
    if wire.str not in WIRE_DTYPES:
        raise CodecError(f"{where}: dtype {arr.dtype} is not allowed on the wire ({sorted(WIRE_DTYPES)})")
    data = arr.astype(wire, copy=False).tobytes(order="C")
    return {"__nd__": True, "dtype": wire.str, "shape": list(arr.shape), "data": data}


def _encode_value(where: str, value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return _encode_array(where, value)
    if isinstance(value, enum.IntEnum):
        return int(value)
    if isinstance(value, (float, str)) or _is_int(value):
        return value
    raise CodecError(f"{where}: cannot encode value of type {_type_name(value)}")


def encode(msg: Message) -> bytes:
    """Serialize a registered message to msgpack bytes (see module docstring for the format)."""
    cls = type(msg)
    if MESSAGE_TYPES.get(cls.__name__) is not cls:
        raise CodecError(f"cannot encode object of type {cls.__name__}: not a registered message type")
    fields = {name: _encode_value(f"{cls.__name__}.{name}", getattr(msg, name)) for name in _field_types(cls)}
    envelope = {"type": cls.__name__, "v": WIRE_VERSION, "fields": fields}
    try:
        return msgpack.packb(envelope, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as err:
        raise CodecError(f"cannot encode {cls.__name__}: {err}") from err


# --------------------------------------------------------------------------- decode


def _check_keys(where: str, mapping: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """Require ``mapping`` to be a dict with exactly ``keys``; name the missing/unexpected ones."""
    if isinstance(mapping, dict) and len(mapping) == len(keys) and all(k in mapping for k in keys):
        return mapping  # the common case, checked without building lists
    if not isinstance(mapping, dict):
        raise CodecError(f"{where}: expected a map with keys {list(keys)}, got {_type_name(mapping)}")
    missing = [k for k in keys if k not in mapping]
    unexpected = sorted(str(k) for k in mapping if k not in keys)
    problems = []
    if missing:
        problems.append(f"missing fields {missing}")
    if unexpected:
        problems.append(f"unexpected fields {unexpected}")
    if problems:
        raise CodecError(f"{where}: " + ", ".join(problems))
    return mapping


def _decode_array(where: str, obj: Any) -> np.ndarray:
    nd = _check_keys(f"{where} (array)", obj, _ND_KEYS)
    dtype, shape, data = nd["dtype"], nd["shape"], nd["data"]
    if nd["__nd__"] is not True:
        raise CodecError(f"{where}: array marker __nd__ must be true, got {nd['__nd__']!r}")
    if not isinstance(dtype, str) or dtype not in WIRE_DTYPES:
        raise CodecError(f"{where}: dtype {dtype!r} is not allowed (allowed: {sorted(WIRE_DTYPES)})")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise CodecError(f"{where}: shape must be a list of ints >= 0, got {shape!r}")
    if not isinstance(data, bytes):
        raise CodecError(f"{where}: array data must be bytes, got {_type_name(data)}")
    wire = _WIRE[dtype]
    expected_len = math.prod(shape) * wire.itemsize
    if len(data) != expected_len:
        raise CodecError(
            f"{where}: array data has {len(data)} bytes, shape {shape} of {dtype} needs {expected_len}"
        )
    # astype to the native byte order always copies, so the result is writable and owns its memory.
    return np.frombuffer(data, dtype=wire).reshape(shape).astype(_NATIVE[dtype])


def _decode_field(where: str, kind: Any, value: Any) -> Any:
    if kind is np.ndarray:
        return _decode_array(where, value)
    if isinstance(kind, type) and issubclass(kind, enum.IntEnum):
        ok = _is_int(value)
    elif kind is float:
        ok = isinstance(value, float) or _is_int(value)
    elif kind is int:
        ok = _is_int(value)
    elif kind is str:
        ok = isinstance(value, str)
    else:
        raise CodecError(f"{where}: field annotation {kind!r} is not supported by the codec")
    if not ok:
        raise CodecError(f"{where}: expected {kind.__name__}, got {_type_name(value)}")
    return value  # enums are converted (and range-checked) by the message itself


def _unpack(data: Any, max_bytes: int) -> Any:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"decode: expected bytes, got {_type_name(data)}")
    size = memoryview(data).nbytes
    if size > max_bytes:
        raise CodecError(f"decode: input is {size} bytes, larger than max_bytes={max_bytes}")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_bin_len=max_bytes,
            max_str_len=max_bytes,
            max_array_len=_MAX_ARRAY_LEN,
            max_map_len=_MAX_MAP_LEN,
            max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.exceptions.UnpackException) as err:
        raise CodecError(f"malformed msgpack: {str(err) or type(err).__name__}") from err


def _message_class(envelope: Any, expected: type | None) -> type[Message]:
    env = _check_keys("decode: envelope", envelope, _ENVELOPE_KEYS)
    version, name = env["v"], env["type"]
    if not _is_int(version) or version != WIRE_VERSION:
        raise CodecError(f"decode: unsupported wire version {version!r} (this codec speaks v{WIRE_VERSION})")
    if not isinstance(name, str) or name not in MESSAGE_TYPES:
        raise CodecError(f"decode: unknown message type {name!r} (known: {sorted(MESSAGE_TYPES)})")
    cls = MESSAGE_TYPES[name]
    if expected is not None and cls is not expected:
        raise CodecError(f"decode: expected {getattr(expected, '__name__', expected)}, got {name}")
    return cls


def decode(data: bytes, expected: type | None = None, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Message:
    """Parse bytes produced by :func:`encode` into a validated message.

    Args:
        data: the encoded message (``bytes``, ``bytearray`` or ``memoryview``).
        expected: if given, the message class the caller requires; any other type is rejected.
        max_bytes: inputs larger than this are rejected before parsing.

    Raises:
        CodecError: on any malformed, oversized, unexpected or invalid input.
    """
    envelope = _unpack(data, max_bytes)
    cls = _message_class(envelope, expected)
    types = _field_types(cls)
    fields = _check_keys(cls.__name__, envelope["fields"], tuple(types))
    kwargs = {name: _decode_field(f"{cls.__name__}.{name}", types[name], fields[name]) for name in types}
    try:
        return cls(**kwargs)
    except MessageError as err:
        raise CodecError(f"invalid {cls.__name__}: {err}") from err
