"""ZeroMQ latest-value transport for :mod:`infra.messages` (DESIGN §4: the real-time data path).

One stream = one address = one message type. A :class:`Publisher` (PUB, binds by default) sends each
message as **one** ZeroMQ frame holding :func:`infra.codec.encode` bytes (msgpack, never pickle); a
:class:`Subscriber` (SUB, connects by default) decodes with :func:`infra.codec.decode` and hands the
consumer only the newest valid message.

Latest-value semantics come from ``ZMQ_CONFLATE`` on both ends: each pipe keeps only the last frame, so a
slow consumer never works through a backlog of stale messages. CONFLATE does not support multipart
messages (libzmq keeps a single *part*, so a multipart message would arrive truncated); that is why every
message is exactly one frame and there is no topic frame (one address per stream instead). With
``conflate=False`` the queues are ordinary and :meth:`Subscriber.latest` drains them, with the same result
for the caller but more work per call.

Addresses: ``ipc:///tmp/...`` between processes on one node (see :func:`ipc_address`), ``tcp://host:port``
across nodes (``tcp://127.0.0.1:*`` binds a free port; :attr:`Publisher.address` then holds the real one),
``inproc://name`` between threads of one process. The side that binds an ``ipc://`` address owns the
socket file and removes it on :meth:`close`.

Clock: ``stamp`` is ``time.monotonic()`` of the producer. On one node producer and consumer share that
clock, so ``now - stamp`` is the true age; across nodes the clocks differ and staleness is only as good as
their synchronisation.

Errors: bad input on the wire never raises into the consumer's loop; :meth:`Subscriber.latest` counts it in
``rejected`` and logs one line (throttled) naming the address and the :class:`~infra.codec.CodecError`.
Messages containing NaN/inf are rejected by the message validation inside ``decode``.
"""

from __future__ import annotations

import logging
import math
import os
import re
import tempfile
import time
import uuid
from pathlib import Path

import zmq

from infra.codec import DEFAULT_MAX_BYTES, CodecError, decode, encode
from infra.messages import Message

__all__ = ["Publisher", "Subscriber", "TransportError", "ipc_address", "ipc_path", "is_stale"]

log = logging.getLogger(__name__)

SCHEMES = ("ipc://", "tcp://", "inproc://")
"""Address schemes the transport accepts."""
IPC_PATH_MAX = 107
"""Longest ``ipc://`` path Linux accepts (``sizeof(sockaddr_un.sun_path) - 1``)."""
REJECT_LOG_INTERVAL_S = 1.0
"""At most one log line per subscriber per this many seconds about rejected input."""

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")


class TransportError(ValueError):
    """A bad address or socket option (not raised for bad input on the wire: that is counted)."""


# --------------------------------------------------------------------------- pure helpers


def is_stale(stamp: float | None, now: float, timeout_s: float) -> bool:
    """Whether an input stamped ``stamp`` (monotonic s; None = never received) is older than ``timeout_s``.

    The watchdog test of every input (DESIGN §7): a consumer that sees True switches to its fallback.
    """
    if not timeout_s > 0.0:
        raise TransportError(f"is_stale: timeout_s must be > 0, got {timeout_s}")
    return stamp is None or now - stamp > timeout_s


def ipc_address(name: str) -> str:
    """A fresh ``ipc://`` address under the temp dir: ``ipc:///tmp/humanoid-<name>-<pid>-<8 hex>.ipc``."""
    if not _NAME.match(name):
        raise TransportError(f"ipc_address: name must match {_NAME.pattern}, got {name!r}")
    path = Path(tempfile.gettempdir()) / f"humanoid-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}.ipc"
    return _check_address(f"ipc://{path}")


def ipc_path(address: str) -> Path | None:
    """The socket file of an ``ipc://`` address, None for other schemes."""
    return Path(address[len("ipc://"):]) if address.startswith("ipc://") else None


def _check_address(address: str) -> str:
    if not isinstance(address, str) or not address.startswith(SCHEMES) or address.endswith("://"):
        raise TransportError(f"address: expected ipc:///path, tcp://host:port or inproc://name, got {address!r}")
    path = ipc_path(address)
    if path is not None and len(str(path)) > IPC_PATH_MAX:
        raise TransportError(f"address: ipc path is {len(str(path))} characters, the limit is {IPC_PATH_MAX}: "
                             f"{address!r}")
    return address


# --------------------------------------------------------------------------- sockets


class _Endpoint:
    """One PUB or SUB socket with LINGER 0, bound or connected, and ipc-file cleanup on close."""

    def __init__(self, kind: int, address: str, conflate: bool, bind: bool, context: zmq.Context | None) -> None:
        _check_address(address)
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(kind)
        self._sock.setsockopt(zmq.LINGER, 0)  # close() never waits for undelivered messages
        if conflate:
            self._sock.setsockopt(zmq.CONFLATE, 1)  # must precede bind/connect
        self.conflate = conflate
        self.bound = bind
        try:
            if kind == zmq.SUB:
                self._sock.setsockopt(zmq.SUBSCRIBE, b"")
            if bind:
                self._sock.bind(address)
                self._address = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
            else:
                self._sock.connect(address)
                self._address = address
        except zmq.ZMQError as err:
            self._sock.close(linger=0)
            verb = "bind" if bind else "connect"
            raise TransportError(f"cannot {verb} {address!r}: {err}") from err
        self._closed = False

    @property
    def address(self) -> str:
        """The endpoint in use (for a wildcard ``tcp://host:*`` bind, the port actually chosen)."""
        return self._address

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the socket without lingering; remove the ipc socket file if this end bound it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._sock.close(linger=0)
        path = ipc_path(self._address)
        if self.bound and path is not None:
            # libzmq unlinks the file only from its I/O thread, later or (if the process exits first) never:
            # remove it here so that it is gone when close() returns (a later unlink by libzmq fails harmlessly).
            path.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("bound" if self.bound else "connected")
        return f"{type(self).__name__}({self._address!r}, {state}, conflate={self.conflate})"


class Publisher(_Endpoint):
    """Sends messages on one stream; never blocks (PUB drops when a subscriber's queue is full).

    Args:
        address: ``ipc://``, ``tcp://`` or ``inproc://`` endpoint (see the module docstring).
        conflate: keep only the newest frame per subscriber (latest-value semantics).
        bind: bind (default; the producer owns the address) or connect to a binding subscriber.
        context: ZeroMQ context (default: the process-wide ``zmq.Context.instance()``).
    """

    def __init__(self, address: str, conflate: bool = True, *, bind: bool = True,
                 context: zmq.Context | None = None) -> None:
        super().__init__(zmq.PUB, address, conflate, bind, context)
        self.sent = 0
        """messages handed to ZeroMQ"""

    def publish(self, msg: Message) -> None:
        """Encode ``msg`` (one frame) and send it. Raises CodecError for an unencodable object."""
        if self._closed:
            raise TransportError(f"publish on closed {self!r}")
        self.send_encoded(encode(msg))

    def send_encoded(self, data: bytes) -> None:
        """Send bytes already produced by :func:`infra.codec.encode` (one encoding for several streams, or a
        send at a chosen instant). The subscriber validates them like any frame."""
        if self._closed:
            raise TransportError(f"send on closed {self!r}")
        self._sock.send(data)
        self.sent += 1


class Subscriber(_Endpoint):
    """Receives one stream and keeps its newest valid message.

    Args:
        address: the publisher's endpoint.
        expected: message class to accept (None: any registered type); others are rejected.
        conflate: keep only the newest frame (latest-value semantics).
        bind: connect (default) or bind (for a consumer that several publishers connect to).
        max_bytes: frames larger than this are rejected by the codec.
        context: ZeroMQ context (default: the process-wide ``zmq.Context.instance()``).

    Counters: ``received`` (valid messages), ``rejected`` (frames that failed to decode), ``skipped`` (gaps in
    ``seq`` between consecutive valid messages: overwritten by CONFLATE or dropped).
    """

    def __init__(self, address: str, expected: type[Message] | None = None, conflate: bool = True, *,
                 bind: bool = False, max_bytes: int = DEFAULT_MAX_BYTES, context: zmq.Context | None = None) -> None:
        if expected is not None and not (isinstance(expected, type) and issubclass(expected, Message)):
            raise TransportError(f"Subscriber: expected must be a Message subclass or None, got {expected!r}")
        if max_bytes < 1:
            raise TransportError(f"Subscriber: max_bytes must be >= 1, got {max_bytes}")
        super().__init__(zmq.SUB, address, conflate, bind, context)
        self.expected = expected
        self.max_bytes = max_bytes
        self.received = 0
        self.rejected = 0
        self.skipped = 0
        self._last: Message | None = None
        self._last_receipt = math.nan
        self._last_log = -math.inf

    @property
    def last(self) -> Message | None:
        """The newest valid message received so far (None before the first)."""
        return self._last

    @property
    def last_receipt(self) -> float:
        """``time.monotonic()`` when the frame of :attr:`last` was taken off the socket, before decoding (NaN
        before the first message); ``last_receipt - last.stamp`` is the one-way latency of the transport."""
        return self._last_receipt

    def latest(self, timeout_s: float = 0.0) -> Message | None:
        """The newest valid message that arrived since the previous call, or None if there is none.

        Waits up to ``timeout_s`` for a first frame, then takes whatever else is queued without waiting.
        Malformed, oversized, wrong-typed or invalid (NaN) frames are counted in ``rejected`` and skipped.
        """
        if self._closed:
            raise TransportError(f"latest on closed {self!r}")
        if timeout_s > 0.0 and not self._sock.poll(max(1, math.ceil(timeout_s * 1e3)), zmq.POLLIN):
            return None
        newest = None
        while (data := self._recv()) is not None:
            msg = self._decode(data, time.monotonic())
            if msg is not None:
                newest = msg
        return newest

    def staleness(self, now: float | None = None) -> float:
        """Seconds from the stamp of the newest valid message to ``now`` (default ``time.monotonic()``); inf
        before the first message. Call :meth:`latest` first to take in what has arrived."""
        if self._last is None:
            return math.inf
        return (time.monotonic() if now is None else now) - self._last.stamp

    def _recv(self) -> bytes | None:
        """One whole message without waiting (a multipart one is drained and returned as b"" = rejected)."""
        try:
            frame = self._sock.recv(zmq.NOBLOCK)
        except zmq.Again:
            return None
        if not self._sock.getsockopt(zmq.RCVMORE):
            return frame
        while self._sock.getsockopt(zmq.RCVMORE):
            self._sock.recv()  # the rest of a multipart message is already queued
        return b""

    def _decode(self, data: bytes, received_at: float) -> Message | None:
        try:
            if not data:
                raise CodecError("empty or multipart frame (the transport sends one frame per message)")
            msg = decode(data, self.expected, max_bytes=self.max_bytes)
        except CodecError as err:
            self.rejected += 1
            if received_at - self._last_log >= REJECT_LOG_INTERVAL_S:
                self._last_log = received_at
                log.warning("%s: rejected frame (%d so far): CodecError: %s", self._address, self.rejected, err)
            return None
        if self._last is not None and msg.seq > self._last.seq + 1:
            self.skipped += msg.seq - self._last.seq - 1
        self._last, self._last_receipt = msg, received_at
        self.received += 1
        return msg
