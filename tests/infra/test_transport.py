"""ZeroMQ latest-value transport: round trips, latest-value semantics, rejection of bad frames, staleness."""

from __future__ import annotations

import logging
import math
import time

import msgpack
import numpy as np
import pytest
import zmq

from infra.codec import encode
from infra.messages import LatentGoal, MotionChunk
from infra.transport import Publisher, Subscriber, TransportError, ipc_address, ipc_path, is_stale

JOIN_TIMEOUT_S = 5.0


def chunk(seq: int, stamp: float | None = None) -> MotionChunk:
    rng = np.random.default_rng(seq)
    return MotionChunk(stamp=time.monotonic() if stamp is None else stamp, seq=seq,
                       joint_pos=rng.standard_normal((16, 65), np.float32),
                       root_height=rng.uniform(0.8, 1.0, 16).astype(np.float32),
                       root_heading=rng.standard_normal(16, np.float32),
                       root_planar_vel=rng.standard_normal((16, 2), np.float32), start_time=1.5, frame_dt=0.02)


def goal(seq: int) -> LatentGoal:
    return LatentGoal(stamp=time.monotonic(), seq=seq, z=np.full(8, seq, np.float32), instruction="wave",
                      image_stamp=0.0)


def join(send, sub: Subscriber):
    """Send until the subscriber has one message (PUB/SUB drops everything before the connection is up)."""
    give_up = time.monotonic() + JOIN_TIMEOUT_S
    while time.monotonic() < give_up:
        send()
        if (msg := sub.latest(timeout_s=0.02)) is not None:
            return msg
    pytest.fail(f"no message reached {sub.address} within {JOIN_TIMEOUT_S} s")


@pytest.mark.parametrize("scheme", ["ipc", "tcp"])
def test_round_trip_motion_chunk(scheme):
    address = ipc_address("rt") if scheme == "ipc" else "tcp://127.0.0.1:*"
    sent = chunk(7)
    with Publisher(address) as pub, Subscriber(pub.address, MotionChunk) as sub:
        assert pub.address.startswith(f"{scheme}://") and not pub.address.endswith("*")
        got = join(lambda: pub.publish(sent), sub)
    assert isinstance(got, MotionChunk) and got is not sent and got.seq == 7 and got.stamp == sent.stamp
    for name in ("joint_pos", "root_height", "root_heading", "root_planar_vel"):
        np.testing.assert_array_equal(getattr(got, name), getattr(sent, name))
    assert (got.start_time, got.frame_dt) == (1.5, 0.02)
    assert sub.last is got and sub.received >= 1 and sub.rejected == 0
    assert sub.last_receipt >= got.stamp


@pytest.mark.parametrize("conflate", [True, False])
def test_latest_returns_newest_not_a_queue(conflate):
    with Publisher(ipc_address("lv"), conflate) as pub, Subscriber(pub.address, MotionChunk, conflate) as sub:
        join(lambda: pub.publish(chunk(0)), sub)
        for seq in range(50):
            pub.publish(chunk(seq))
        time.sleep(0.2)  # let all 50 arrive
        got = sub.latest(timeout_s=1.0)
        assert got is not None and got.seq == 49
        assert sub.latest() is None  # nothing old left behind
        assert sub.last is got and sub.staleness() >= 0.0
        if conflate:
            assert sub.received <= 3  # the join message(s) and seq 49, not 50 queued chunks


def test_bad_frames_are_counted_not_raised(caplog):
    address = ipc_address("bad")
    ctx = zmq.Context.instance()
    raw = ctx.socket(zmq.PUB)
    raw.setsockopt(zmq.LINGER, 0)
    raw.bind(address)
    try:
        with Subscriber(address, LatentGoal, max_bytes=4096) as sub:
            good = join(lambda: raw.send(encode(goal(1))), sub)
            nan_goal = {"type": "LatentGoal", "v": 1, "fields": {
                "stamp": 1.0, "seq": 2, "instruction": "wave", "image_stamp": 0.0,
                "z": {"__nd__": True, "dtype": "<f4", "shape": [2], "data": np.array([0, np.nan], "<f4").tobytes()}}}
            bad = [b"\x00garbage\xff", b"\x91" * 5000, encode(chunk(3)), msgpack.packb(nan_goal, use_bin_type=True)]
            with caplog.at_level(logging.WARNING, logger="infra.transport"):
                for n, frame in enumerate(bad, start=1):
                    raw.send(frame)
                    assert sub.latest(timeout_s=2.0) is None
                    assert sub.rejected == n and sub.last is good
            assert any(address in r.getMessage() and "CodecError" in r.getMessage() for r in caplog.records)
            raw.send(encode(goal(5)))
            assert sub.latest(timeout_s=2.0).seq == 5 and sub.skipped == 3
    finally:
        raw.close(linger=0)
        ipc_path(address).unlink(missing_ok=True)


def test_staleness_flips_within_one_period_after_the_publisher_stops():
    period, timeout = 0.01, 0.05
    with Publisher(ipc_address("st")) as pub, Subscriber(pub.address, MotionChunk) as sub:
        assert sub.staleness() == math.inf and is_stale(None, time.monotonic(), timeout)
        join(lambda: pub.publish(chunk(0)), sub)
        for seq in range(1, 11):  # a live stream: fresh within the timeout
            pub.publish(chunk(seq))
            time.sleep(period)
            sub.latest()
            assert not is_stale(sub.last.stamp, time.monotonic(), timeout)
        last_stamp = sub.last.stamp
        flipped_at = None
        while flipped_at is None and time.monotonic() < last_stamp + 2.0:  # publisher stopped: consumer ticks
            time.sleep(period)
            sub.latest()
            now = time.monotonic()
            if is_stale(sub.last.stamp, now, timeout):
                flipped_at = now
        assert flipped_at is not None and sub.staleness() > timeout
        assert flipped_at - last_stamp <= timeout + period + 0.05  # slack for a loaded machine


def test_is_stale_by_hand():
    assert not is_stale(1.0, 1.125, 0.25)
    assert not is_stale(1.0, 1.25, 0.25)  # exactly at the timeout (exact in binary): still fresh
    assert is_stale(1.0, 1.375, 0.25)
    assert is_stale(None, 0.0, 0.25)
    with pytest.raises(TransportError, match="timeout_s"):
        is_stale(1.0, 1.0, 0.0)


def test_ipc_files_removed_on_close():
    address = ipc_address("cl")
    path = ipc_path(address)
    pub = Publisher(address)
    sub = Subscriber(address)
    assert path.exists()
    sub.close()
    assert path.exists()  # the connecting side does not own the file
    pub.close()
    assert not path.exists()
    pub.close()  # idempotent
    with pytest.raises(TransportError, match="closed"):
        pub.publish(chunk(0))
    with Subscriber(address, bind=True):  # a binding subscriber owns it instead
        assert path.exists()
    assert not path.exists()


def test_bad_addresses_are_named():
    with pytest.raises(TransportError, match="expected ipc:///path"):
        Publisher("udp://127.0.0.1:5555")
    with pytest.raises(TransportError, match="limit is 107"):
        Publisher("ipc:///tmp/" + "x" * 200)
    with pytest.raises(TransportError, match="name must match"):
        ipc_address("no/slashes")
    with pytest.raises(TransportError, match="Message subclass"):
        Subscriber("tcp://127.0.0.1:5555", expected=dict)
