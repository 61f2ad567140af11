"""Shared fixtures. Picks a headless GL backend before anything imports mujoco."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.gl import ensure_gl_backend

ensure_gl_backend()

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (robots, motion clips); tests that need it skip cleanly without it."""
    if not SHARED.is_dir():
        pytest.skip("../shared is not present")
    return SHARED


@pytest.fixture(scope="session")
def body():
    from s0_locomotion.body import Body

    return Body()


@pytest.fixture()
def one_thread():
    """Torch on one thread for the test (model tests, latency checks), the previous count restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
