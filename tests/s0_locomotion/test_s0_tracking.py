import dataclasses
import math

import numpy as np
import pytest
import torch

from infra.config import load_config
from infra.config.s0 import RandomizeConfig, TrackingEnvConfig, TrainS0Config
from infra.config.schemas import SimConfig
from s0_locomotion.motion.library import build_clip
from s0_locomotion.tracking import rewards as R
from s0_locomotion.tracking.env import TrackingEnv
from s0_locomotion.tracking.policy import S0Policy


def test_reward_terms_on_hand_made_states():
    q = torch.zeros(2, 65)
    assert torch.allclose(R.pose_reward(q, q, 2.0), torch.ones(2))
    q_err = q.clone()
    q_err[0, :2] = 0.1  # two joints off by 0.1 rad: exp(-2 * 0.02)
    assert R.pose_reward(q_err, q, 2.0)[0].item() == pytest.approx(math.exp(-0.04), rel=1e-6)
    assert R.velocity_reward(q + 1.0, q, 0.02)[1].item() == pytest.approx(math.exp(-0.02 * 65), rel=1e-6)
    ee = torch.zeros(1, 5, 3)
    ee_off = ee.clone()
    ee_off[0, 0, 2] = 0.1  # one end effector 10 cm off: exp(-10 * 0.01)
    assert R.end_effector_reward(ee_off, ee, 10.0).item() == pytest.approx(math.exp(-0.1), rel=1e-6)
    quat = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    turned = torch.tensor([[math.cos(0.25), 0.0, 0.0, math.sin(0.25)]])  # 0.5 rad about z
    assert R.root_reward(torch.zeros(1, 3), torch.zeros(1, 3), quat, quat, 5.0).item() == pytest.approx(1.0)
    expected = math.exp(-5.0 * (0.04 + 0.1 * 0.25))  # 0.2 m off and 0.5 rad turned
    got = R.root_reward(torch.tensor([[0.2, 0, 0]]), torch.zeros(1, 3), turned, quat, 5.0).item()
    assert got == pytest.approx(expected, rel=1e-5)
    com = R.com_reward(torch.tensor([[0.0, 0.3, 0.0]]), torch.zeros(1, 3), 5.0).item()
    assert com == pytest.approx(math.exp(-0.45))


@pytest.fixture(scope="module")
def env(body):
    clips = [build_clip(body, "walk"), build_clip(body, "wave_right")]
    cfg = TrackingEnvConfig(sim=SimConfig(num_envs=4, seed=2))
    e = TrackingEnv(cfg, clips, body)
    yield e
    e.close()


def test_reference_state_initialisation_is_exact(env):
    clip, frame = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 120, 30, 200])
    env.start(clip, frame)
    ref = env.lib.frame(clip, frame)
    obs = env.backend.observe()
    torch.testing.assert_close(obs.joint_pos, ref["joint_pos"], atol=1e-5, rtol=0)
    torch.testing.assert_close(obs.root_pos, ref["root_pos"], atol=1e-5, rtol=0)
    torch.testing.assert_close(obs.root_quat, ref["root_quat"], atol=1e-5, rtol=0)
    torch.testing.assert_close(obs.joint_vel, ref["joint_vel"], atol=1e-4, rtol=0)
    torch.testing.assert_close(obs.body_pos, ref["body_pos"], atol=1e-4, rtol=0)  # FK of the clip = the sim's
    assert env.get_observations()["policy"].shape == (4, 65 * 3 + 6 + 2 * (65 + 9))


def test_actor_sees_the_root_velocity_in_its_heading_frame(env):
    from s0_locomotion.tracking.rotations import yaw_of

    env.cfg = dataclasses.replace(env.cfg, actor_root_vel=True)
    clip, frame = torch.tensor([0, 0, 0, 1]), torch.tensor([100, 100, 100, 30])
    env.start(clip, frame)
    yaw = torch.tensor([0.0, math.pi / 2, -2.0, 0.0])
    for i in range(3):  # the same walking state, turned about z: the heading-frame velocity is the same
        qpos, qvel = env.backend.qpos()[i:i + 1].copy(), np.zeros((1, env.backend.model.nv))
        qpos[0, 3:7] = [math.cos(yaw[i] / 2), 0, 0, math.sin(yaw[i] / 2)]
        qvel[0, 0:3] = [0.8 * math.cos(yaw[i]), 0.8 * math.sin(yaw[i]), 0.1]  # 0.8 m/s forward, 0.1 m/s up
        env.backend.set_qpos_qvel(np.array([i]), qpos, qvel)
    obs = env.backend.observe()
    torch.testing.assert_close(yaw_of(obs.root_quat[:3]), yaw[:3], atol=1e-5, rtol=0)
    vel = env._observe(obs)["policy"][:, -3:]
    torch.testing.assert_close(vel[:3], torch.tensor([[0.8, 0.0, 0.1]] * 3), atol=1e-4, rtol=0)
    assert vel[3].abs().max() < 0.05  # standing still in the wave
    env.cfg = dataclasses.replace(env.cfg, actor_root_vel=False)
    assert env._observe(obs)["policy"].shape[1] == 65 * 3 + 6 + 2 * (65 + 9)


def test_failure_sampling_draws_the_clips_that_fall(body):
    cfg = TrackingEnvConfig(sim=SimConfig(num_envs=4, seed=3), randomize=RandomizeConfig(enabled=False),
                            clip_sampling="failure")
    e = TrackingEnv(cfg, [build_clip(body, "stand"), build_clip(body, "wave_right")], body)
    try:
        e.clip_fail[:] = torch.tensor([0.0, 0.5])
        np.testing.assert_allclose(e.clip_probabilities(), [0.05 / 0.6, 0.55 / 0.6])
        e.clip[:] = torch.tensor([0, 0, 1, 1])
        e._update_clip_failures(torch.tensor([0, 2, 3]), torch.tensor([True, False, True, False]))
        torch.testing.assert_close(e.clip_fail, torch.tensor([0.05, 0.5 + 0.05 * 0.5 - 0.05 * 0.525]))
        e.clip_fail[:] = torch.tensor([0.0, 1.0])
        drawn = torch.cat([e.reset_envs(torch.arange(4)) and e.clip.clone() for _ in range(500)])
        assert 0.93 < (drawn == 1).float().mean() < 0.98  # p = 1.05 / 1.1 = 0.955, 2000 draws
        e.cfg = dataclasses.replace(e.cfg, clip_sampling="uniform")
        np.testing.assert_allclose(e.clip_probabilities(), [0.5, 0.5])
    finally:
        e.close()


def test_early_termination_on_a_fall(env, body):
    env.auto_reset = False
    env.start(torch.tensor([1, 1, 1, 1]), torch.tensor([10, 10, 10, 10]))
    env.backend.push(np.array([2]), np.array([[6.0, 0.0, 0.0]]))  # a kick no PD survives
    fell_at = None
    for step in range(100):
        _, _, done, extras = env.step(torch.zeros(4, 65))
        if extras["fell"][2]:
            fell_at = step
            break
    assert fell_at is not None and done[2] and not extras["fell"][[0, 1, 3]].any()
    env.auto_reset = True
    env.step(torch.zeros(4, 65))  # world 2 is still beyond the threshold: it is reset onto a reference
    assert env.episode_length_buf[2] <= 1


def _train_cfg(tmp_path, **over) -> TrainS0Config:
    args = ["env.clips=[stand, wave_right]", "env.sim.num_envs=8", "ppo.steps_per_env=8", "ppo.mini_batches=2",
            "ppo.actor_hidden=[64, 64]", "ppo.critic_hidden=[64, 64]", f"out={tmp_path}", "save_every=1000"]
    return load_config(TrainS0Config, args + [f"{k}={v}" for k, v in over.items()])


def test_resume_continues_with_the_same_state(tmp_path):
    from s0_locomotion.tracking.train import train_s0

    train_s0(_train_cfg(tmp_path / "a", iterations=3), progress=False)  # 3 straight iterations
    train_s0(_train_cfg(tmp_path / "b", iterations=2), progress=False)  # 2, then resume for 1
    train_s0(_train_cfg(tmp_path / "b", iterations=1, resume=tmp_path / "b" / "train.safetensors"), progress=False)
    a, b = S0Policy(tmp_path / "a" / "policy.safetensors"), S0Policy(tmp_path / "b" / "policy.safetensors")
    assert a.meta["iteration"] == b.meta["iteration"] == 3
    for (wa, ba), (wb, bb) in zip(a.weights, b.weights):
        torch.testing.assert_close(wa, wb, rtol=0, atol=0)
        torch.testing.assert_close(ba, bb, rtol=0, atol=0)
    torch.testing.assert_close(a.mean, b.mean, rtol=0, atol=0)


def test_a_policy_records_the_walks_it_was_trained_on_and_eval_uses_them(tmp_path):
    from infra.config.s0 import EvalS0Config
    from s0_locomotion.tracking.evaluate import eval_balanced_gait
    from s0_locomotion.tracking.train import train_s0

    train_s0(_train_cfg(tmp_path / "bal", iterations=1, **{"env.balanced_gait": "true"}), progress=False)
    train_s0(_train_cfg(tmp_path / "plain", iterations=1), progress=False)
    bal, plain = (S0Policy(tmp_path / name / "policy.safetensors") for name in ("bal", "plain"))
    assert bal.balanced_gait and not plain.balanced_gait
    cfg = load_config(EvalS0Config)
    assert eval_balanced_gait(cfg, bal) and not eval_balanced_gait(cfg, plain)
    assert not eval_balanced_gait(load_config(EvalS0Config, ["balanced_gait=false"]), bal)  # explicit wins
    assert eval_balanced_gait(load_config(EvalS0Config, ["balanced_gait=true"]), plain)
    assert eval_balanced_gait(load_config(EvalS0Config, ["env.balanced_gait=true"]), None)  # PD only


def test_fine_tuning_adds_the_velocity_inputs_without_changing_the_actor(tmp_path):
    from infra.checkpoint import CheckpointError
    from s0_locomotion.tracking.train import build_ppo, init_weights, make_env, train_s0

    train_s0(_train_cfg(tmp_path / "old", iterations=1, **{"env.actor_root_vel": "false"}), progress=False)
    old = S0Policy(tmp_path / "old" / "policy.safetensors")
    assert not old.actor_root_vel and old.observation_config["actor_root_vel"] is False
    cfg = _train_cfg(tmp_path / "new", init=tmp_path / "old" / "train.safetensors", **{"env.actor_root_vel": "true"})
    env = make_env(cfg)
    try:
        alg = build_ppo(env, cfg.ppo)
        init_weights(cfg.init, alg, env, cfg)
        obs = env.get_observations()
        assert obs["policy"].shape[1] == old.obs_dim + 3
        with torch.inference_mode():
            torch.testing.assert_close(alg.actor(obs), old.act(obs["policy"][:, :-3]), rtol=1e-5, atol=1e-5)
    finally:
        env.close()
    train_s0(_train_cfg(tmp_path / "new", iterations=1, **{"env.actor_root_vel": "true"}), progress=False)
    back = _train_cfg(tmp_path / "back", init=tmp_path / "new" / "train.safetensors", **{"env.actor_root_vel": "false"})
    with pytest.raises(CheckpointError, match="actor_root_vel=True"):
        train_s0(back, progress=False)


def test_fine_tuning_from_a_policy_freezes_the_actor_while_the_fresh_critic_warms_up(tmp_path):
    from infra.checkpoint import CheckpointError
    from s0_locomotion.tracking.train import train_s0

    train_s0(_train_cfg(tmp_path / "old", iterations=1), progress=False)
    old = S0Policy(tmp_path / "old" / "policy.safetensors")
    init = tmp_path / "old" / "policy.safetensors"  # the actor alone: no critic, no optimiser
    stats = train_s0(_train_cfg(tmp_path / "warm", iterations=2, critic_warmup=2, init=init), progress=False)
    warm = S0Policy(tmp_path / "warm" / "policy.safetensors")
    assert stats["policy/actor_frozen"] == 1.0 and stats["loss/value"] > 0
    for (wa, ba), (wb, bb) in zip(old.weights, warm.weights):  # two PPO updates, the actor's weights untouched
        torch.testing.assert_close(wa, wb, rtol=0, atol=0)
        torch.testing.assert_close(ba, bb, rtol=0, atol=0)
    train_s0(_train_cfg(tmp_path / "tuned", iterations=1, critic_warmup=0, init=init), progress=False)
    tuned = S0Policy(tmp_path / "tuned" / "policy.safetensors")
    assert any(not torch.equal(wa, wb) for (wa, _), (wb, _) in zip(old.weights, tuned.weights))
    with pytest.raises(CheckpointError, match="ppo.actor_hidden"):
        train_s0(_train_cfg(tmp_path / "wide", iterations=1, init=init, **{"ppo.actor_hidden": "[32, 32]"}),
                 progress=False)


def test_policy_file_reproduces_the_trained_actor(tmp_path):
    from rsl_rl.algorithms import PPO

    from s0_locomotion.tracking.train import export_policy, make_env, rsl_config

    cfg = _train_cfg(tmp_path)
    env = make_env(cfg)
    alg = PPO.construct_algorithm(env.get_observations(), env, rsl_config(cfg.ppo), "cpu")
    obs = env.get_observations()
    alg.actor.update_normalization(obs)  # non-trivial normaliser statistics
    export_policy(tmp_path / "p.safetensors", alg, env, cfg, 0, {})
    policy = S0Policy(tmp_path / "p.safetensors")
    with torch.inference_mode():
        torch.testing.assert_close(policy.act(obs["policy"]), alg.actor(obs), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="expected observations of size"):
        policy.act(torch.zeros(1, 10))
    env.close()


@pytest.mark.slow
def test_short_training_improves_the_mean_reward(tmp_path):
    from s0_locomotion.tracking import train as T

    rewards = []
    original = T._iteration

    def spy(alg, env, steps):
        stats = original(alg, env, steps)
        rewards.append(stats["episode/reward_per_step"])
        return stats

    T._iteration = spy
    try:
        cfg = _train_cfg(tmp_path, iterations=40, **{"env.clips": "[stand]", "env.sim.num_envs": 16,
                                                      "ppo.steps_per_env": 16, "ppo.entropy": 0.0,
                                                      "env.randomize.enabled": False})
        T.train_s0(cfg, progress=False)
    finally:
        T._iteration = original
    # The first iterations start every world fresh on the reference (RSI), which scores high; compare
    # from iteration 5 on, once episode ages have mixed.
    assert np.mean(rewards[-5:]) > np.mean(rewards[5:10]) + 0.01, rewards


def test_reference_initialisation_keeps_scene_objects_in_place(body):
    from infra.config.schemas import SceneConfig

    cfg = TrackingEnvConfig(sim=SimConfig(num_envs=2, seed=4))
    env = TrackingEnv(cfg, [build_clip(body, "stand")], body, scene=SceneConfig())
    objects = env.backend.qpos()[:, 7 + body.n_dof:].copy()
    assert np.linalg.norm(objects[:, :2], axis=1).min() > 1.0  # laid out around the robot
    env.start(torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    np.testing.assert_array_equal(env.backend.qpos()[:, 7 + body.n_dof:], objects)
    env.close()


def test_resume_with_a_different_config_names_the_mismatch(tmp_path):
    from infra.checkpoint import CheckpointError
    from s0_locomotion.tracking.train import train_s0

    train_s0(_train_cfg(tmp_path, iterations=1), progress=False)
    cfg = _train_cfg(tmp_path, iterations=1, resume=tmp_path / "train.safetensors", **{"ppo.actor_hidden": "[32]"})
    with pytest.raises(CheckpointError, match=r"ppo.actor_hidden: saved \[64, 64\], current \[32\]"):
        train_s0(cfg, progress=False)
