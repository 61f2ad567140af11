"""S1's chunk coding: the root heading as a yaw rate for the network, integrated back on its output."""

from __future__ import annotations

import numpy as np

from s1_policy.features import ChunkCoding

N_DOF = 65
HEADING = N_DOF + 1


def _chunks(rng: np.random.Generator, n: int = 4, h: int = 16) -> np.ndarray:
    a = rng.normal(size=(n, h, N_DOF + 4)).astype(np.float32)
    rate = rng.normal(scale=2.0, size=(n, h))  # rad/s, some turning faster than a half turn a second
    a[..., HEADING] = np.concatenate([np.zeros((n, 1)), np.cumsum(rate[:, :-1], axis=1) * 0.02], axis=1)
    return a


def test_a_steady_turn_is_a_constant_rate_and_comes_back_exactly():
    coding = ChunkCoding(heading_rate=True, frame_dt=0.02)
    turn = np.zeros((16, N_DOF + 4), np.float32)
    turn[:, HEADING] = 0.6 * 0.02 * np.arange(16)  # turn_left's 0.6 rad/s
    turn[:, N_DOF + 2] = 0.3
    coded = coding.encode(turn, N_DOF)
    np.testing.assert_allclose(coded[:, HEADING], 0.6, atol=1e-5)
    np.testing.assert_array_equal(np.delete(coded, HEADING, axis=1), np.delete(turn, HEADING, axis=1))
    np.testing.assert_allclose(coding.decode(coded, N_DOF), turn, atol=1e-6)
    chunks = _chunks(np.random.default_rng(0))
    np.testing.assert_allclose(coding.decode(coding.encode(chunks, N_DOF), N_DOF), chunks, atol=1e-5)


def test_the_heading_crosses_pi_without_a_jump_in_the_rate():
    coding = ChunkCoding(heading_rate=True, frame_dt=0.02)
    a = np.zeros((16, N_DOF + 4), np.float32)
    a[:, HEADING] = np.angle(np.exp(1j * (3.0 + 0.05 * np.arange(16)))) - 3.0  # wraps past +pi at frame 3
    a[:, HEADING] = np.angle(np.exp(1j * a[:, HEADING]))
    a[:, HEADING] = np.where(np.arange(16) >= 3, a[:, HEADING] - 2 * np.pi, a[:, HEADING])  # a stored wrap
    np.testing.assert_allclose(coding.encode(a, N_DOF)[:, HEADING], 2.5, atol=1e-4)


def test_whatever_the_network_says_frame_0_faces_the_chunks_own_heading():
    """The chunk convention (heading 0 at frame 0) holds by construction: a level offset in the network's output
    is a turn rate, not a jump of S0's reference at every tick."""
    coding = ChunkCoding(heading_rate=True, frame_dt=0.02)
    out = np.random.default_rng(1).normal(size=(8, 16, N_DOF + 4)).astype(np.float32)
    out[..., HEADING] += 0.05
    chunk = coding.decode(out, N_DOF)
    assert np.all(chunk[:, 0, HEADING] == 0.0)
    np.testing.assert_allclose(np.diff(chunk[..., HEADING], axis=1), out[:, :-1, HEADING] * 0.02, atol=1e-6)


def test_without_the_rate_the_coding_is_the_identity_and_old_checkpoints_have_none():
    chunks = _chunks(np.random.default_rng(2))
    plain = ChunkCoding(heading_rate=False)
    np.testing.assert_array_equal(plain.encode(chunks, N_DOF), chunks)
    np.testing.assert_array_equal(plain.decode(chunks, N_DOF), chunks)
    stack = {"sim": {"ctrl_dt": 0.02}}
    assert ChunkCoding.of({"stack": stack}) == ChunkCoding(False, 0.02)
    assert ChunkCoding.of({"stack": {"sim": {"ctrl_dt": 0.01}}}) == ChunkCoding()  # a plain S0 rate is no coding
    assert ChunkCoding.of({"stack": stack, "heading_rate": True}) == ChunkCoding(True, 0.02)
