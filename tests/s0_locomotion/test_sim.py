import mujoco
import numpy as np
import pytest
import torch

from infra.config.schemas import SceneConfig, SimConfig
from s0_locomotion.sim.backend import SimError
from s0_locomotion.sim.mujoco_backend import FULL, MujocoBackend
from s0_locomotion.sim.scene import FLOOR_HALF_M, sample_layout


def _actions(body, n: int, seed: int, scale: float = 0.3) -> torch.Tensor:
    """Random joint targets around the default pose, inside the joint limits."""
    rng = np.random.default_rng(seed)
    lo, hi = body.ranges.T
    a = body.default_pose + scale * rng.standard_normal((n, body.n_dof)).astype(np.float32)
    return torch.from_numpy(np.clip(a, lo, hi))


@pytest.fixture(scope="module")
def backend(body):
    b = MujocoBackend(body, SimConfig(num_envs=4, threads=2, seed=3), SceneConfig())
    yield b
    b.close()


def test_batch_step_equals_stepping_worlds_one_by_one(backend, body):
    backend.reset()
    start = backend.get_state()
    actions = [_actions(body, 4, seed) for seed in range(5)]
    for a in actions:
        backend.step(a)
    batched = backend.get_state()
    model, data = backend.model, mujoco.MjData(backend.model)
    for i in range(4):
        mujoco.mj_setState(model, data, start[i], FULL)
        for a in actions:
            data.qacc_warmstart[:] = 0.0  # each control step starts cold (see the backend's docstring)
            data.ctrl[:] = a[i].numpy()
            for _ in range(backend.decimation):
                mujoco.mj_step(model, data)
        single = np.empty_like(start[i])
        mujoco.mj_getState(model, data, single, FULL)
        np.testing.assert_array_equal(batched[i], single)


def test_reset_from_state_round_trip(backend, body):
    backend.reset()
    for seed in range(3):
        backend.step(_actions(body, 4, seed))
    saved = backend.get_state()
    a = _actions(body, 4, 99)
    first = backend.step(a)
    backend.step(_actions(body, 4, 100))  # wander off
    backend.set_state(saved)
    np.testing.assert_array_equal(backend.get_state(), saved)
    again = backend.step(a)
    torch.testing.assert_close(first.joint_pos, again.joint_pos, rtol=0, atol=0)
    # One world restored from another's state follows it exactly.
    backend.set_state(saved[[2]], env_ids=np.array([0]))
    np.testing.assert_array_equal(backend.get_state(np.array([0])), saved[[2]])


def test_deterministic_across_runs_and_thread_counts(body):
    finals = []
    for threads in (1, 2):
        b = MujocoBackend(body, SimConfig(num_envs=3, threads=threads, seed=11), SceneConfig())
        for seed in range(4):
            b.step(_actions(body, 3, seed))
        finals.append(b.get_state())
        b.close()
    np.testing.assert_array_equal(finals[0], finals[1])
    layouts = finals[0][:, 1:][:, backend_qpos_slice(body)]
    assert not np.allclose(layouts[0], layouts[1])  # randomized layouts differ between worlds


def backend_qpos_slice(body):
    return slice(7 + body.n_dof, None)  # object free joints follow the robot in qpos


def test_observations_are_tensors_with_contract_shapes(backend, body):
    obs = backend.reset()
    assert obs.joint_pos.shape == (4, 65) and obs.joint_pos.dtype == torch.float32
    assert obs.root_quat.shape == (4, 4) and obs.foot_contact.shape == (4, 2)
    np.testing.assert_allclose(obs.joint_pos.numpy(), np.tile(body.default_pose, (4, 1)), atol=1e-6)
    obs = backend.step(torch.from_numpy(body.default_pose).expand(4, -1))
    assert float(obs.time[0]) == pytest.approx(backend.ctrl_dt)
    assert torch.all(obs.foot_contact > 100)  # standing on both feet
    assert torch.allclose(obs.imu_acc[:, 2], torch.tensor(9.81), atol=1.0)


def test_bad_actions_are_rejected_with_the_expected_shape(backend, body):
    with pytest.raises(SimError, match=r"expected shape \(num_envs, n_dof\) = \(4, 65\), got \(4, 64\)"):
        backend.step(torch.zeros(4, 64))
    a = torch.from_numpy(body.default_pose).repeat(4, 1)
    a[2, 7] = float("nan")
    before = backend.get_state()
    with pytest.raises(SimError, match=r"NaN/inf in worlds \[2\] at joints \[7\]"):
        backend.step(a)
    np.testing.assert_array_equal(backend.get_state(), before)  # nothing stepped
    with pytest.raises(SimError, match="expected shape"):
        backend.set_state(before[:2])
    with pytest.raises(SimError, match=r"env_ids must lie in \[0, 4\)"):
        backend.get_state(np.array([4]))


def test_contacts_report_feet_on_the_floor(backend, body):
    backend.reset()
    for _ in range(25):  # let the landing transient settle
        backend.step(torch.from_numpy(body.default_pose).expand(4, -1))
    contacts = backend.contacts(0)
    bodies = {c["body2"] for c in contacts if c["body1"] == "world"}
    assert {"left_foot", "right_foot"} <= bodies
    total = sum(c["normal_force"] for c in contacts if c["body2"] in ("left_foot", "right_foot"))
    assert total == pytest.approx(70.15 * 9.81, rel=0.15)


def test_floor_holds_the_body_beyond_its_rendered_edge(backend, body):
    """The floor is drawn as a finite plane (FLOOR_HALF_M) but must collide everywhere."""
    backend.reset()
    qpos = backend.get_state()[:, backend._qpos].copy()
    qpos[1, 0] += FLOOR_HALF_M + 5.0  # world 1 stands 5 m past the drawn floor's edge
    backend.set_qpos_qvel(np.array([1]), qpos[[1]], np.zeros((1, backend.model.nv)))
    for _ in range(25):
        obs = backend.step(torch.from_numpy(body.default_pose).expand(4, -1))
    assert float(obs.root_pos[1, 0]) > FLOOR_HALF_M
    assert float(obs.root_pos[1, 2]) == pytest.approx(float(obs.root_pos[0, 2]), abs=0.01)
    assert {"left_foot", "right_foot"} <= {c["body2"] for c in backend.contacts(1) if c["body1"] == "world"}


def test_push_changes_root_velocity(backend):
    backend.reset()
    backend.push(np.array([1]), np.array([[0.5, 0.0, 0.0]]))
    obs = backend.observe()
    assert float(obs.root_lin_vel[1, 0]) == pytest.approx(0.5)
    assert float(obs.root_lin_vel[0, 0]) == pytest.approx(0.0)


def test_render_has_requested_shape_and_is_not_blank(backend):
    backend.reset()
    images = backend.render(np.array([0, 3]), "head_cam", 72, 96)
    assert images.shape == (2, 72, 96, 3) and images.dtype == np.uint8
    assert images.std() > 10  # floor, sky and objects, not a uniform frame
    for image in images:  # a coloured object is in view somewhere in front of the robot
        assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50
    with pytest.raises(ValueError, match="unknown camera 'eye'"):
        backend.render(np.array([0]), "eye", 32, 32)


def test_layouts_respect_distance_and_separation():
    cfg = SceneConfig()
    layout = sample_layout(np.random.default_rng(0), cfg, 50)  # (50, 3, 3)
    r = np.linalg.norm(layout[..., :2], axis=-1)
    assert np.all((r >= cfg.radius_min) & (r <= cfg.radius_max))
    d = np.linalg.norm(layout[:, :, None, :2] - layout[:, None, :, :2], axis=-1)
    d[:, np.arange(3), np.arange(3)] = np.inf
    assert d.min() >= cfg.min_separation
    tight = SceneConfig(radius_min=1.0, radius_max=1.0, min_separation=5.0)
    with pytest.raises(ValueError, match="cannot place 3 objects"):
        sample_layout(np.random.default_rng(0), tight, 1)
