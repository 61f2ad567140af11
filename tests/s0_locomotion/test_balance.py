import math

import pytest
import torch

from infra.config import load_config
from infra.config.s0 import BalanceConfig, EvalS0Config
from s0_locomotion.tracking.balance import BalanceFeedback, stance_weight, tilt
from s0_locomotion.tracking.controller import yaw_quat


def _quat(axis: str, angle: float) -> torch.Tensor:
    c, s = math.cos(angle / 2), math.sin(angle / 2)
    return torch.tensor([[c, s if axis == "x" else 0.0, s if axis == "y" else 0.0, s if axis == "z" else 0.0]])


def test_tilt_reads_roll_and_pitch_whatever_the_heading():
    roll, pitch = tilt(_quat("x", 0.2))
    assert roll.item() == pytest.approx(0.2, abs=1e-5) and pitch.item() == pytest.approx(0.0, abs=1e-6)
    roll, pitch = tilt(_quat("y", -0.15))
    assert roll.item() == pytest.approx(0.0, abs=1e-6) and pitch.item() == pytest.approx(-0.15, abs=1e-5)
    roll, _ = tilt(torch.from_numpy(yaw_quat(torch.tensor([1.3]).numpy())).float())
    assert roll.item() == pytest.approx(0.0, abs=1e-6)


def test_stance_weight_splits_the_load_and_is_even_in_flight():
    w = stance_weight(torch.tensor([[600.0, 0.0], [300.0, 100.0], [0.0, 5.0]]))
    torch.testing.assert_close(w, torch.tensor([[1.0, 0.0], [0.75, 0.25], [0.5, 0.5]]))


def test_feedback_turns_the_pelvis_back_and_steps_towards_the_drift(body):
    """On the left foot with the pelvis rolled left side up (the unsupported right side sagging) and the
    body drifting left: the stance (left) hip rolls the pelvis back, the swing (right) hip keeps its leg's
    world orientation and moves the foot left (+y, positive roll for either leg)."""
    cfg = BalanceConfig(enabled=True, k_pelvis=5.0, c_v_lateral=0.5, c_v_sagittal=0.0, k_ankle=0.0)
    fb = BalanceFeedback(cfg, body)
    left, right = fb.legs
    upright = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    out = fb(_quat("x", 0.05), torch.tensor([[0.0, 0.2, 0.0]]), torch.tensor([[600.0, 0.0]]), upright,
             torch.zeros(1, 3))[0]
    assert out[left.hip_roll].item() == pytest.approx(5.0 * 0.05, rel=1e-3)
    assert out[right.hip_roll].item() == pytest.approx(-0.05 + 0.5 * 0.2, rel=1e-3)
    others = [i for i in range(body.n_dof) if i not in (left.hip_roll, right.hip_roll, left.hip_pitch, right.hip_pitch)]
    assert out[others].abs().max().item() == 0.0
    # on the reference (no tilt, no velocity error) nothing changes
    still = fb(upright, torch.zeros(1, 3), torch.tensor([[300.0, 300.0]]), upright, torch.zeros(1, 3))
    assert still.abs().max().item() == 0.0


@pytest.mark.slow
def test_feedback_keeps_pd_alone_up_longer_on_a_walk():
    """The law's signs, checked by physics: PD on the reference alone falls sooner without it."""
    from s0_locomotion.tracking.evaluate import evaluate_s0

    common = ["randomize=false", "episodes=1", "env.clips=[walk_backward]", "env.sim.num_envs=1"]
    off = evaluate_s0(load_config(EvalS0Config, common), None)
    on = evaluate_s0(load_config(EvalS0Config, common + ["env.balance.enabled=true", "env.balance.k_pelvis=6",
                                                         "env.balance.c_v_lateral=0.6"]), None)
    assert on["survived_s"] > off["survived_s"] + 0.5, (on["survived_s"], off["survived_s"])


def test_a_policy_trained_with_feedback_runs_with_it_in_the_stack(tmp_path, body):
    """The feedback changes what the actions mean, so a checkpoint carries it: the stack's controller applies
    the trained feedback unless told otherwise, and a policy trained without it runs without it."""
    from infra.config.s0 import TrainS0Config
    from s0_locomotion.tracking.controller import S0Controller
    from s0_locomotion.tracking.policy import S0Policy
    from s0_locomotion.tracking.train import train_s0

    args = ["env.clips=[stand]", "env.sim.num_envs=4", "ppo.steps_per_env=4", "ppo.mini_batches=1", "iterations=1",
            "ppo.actor_hidden=[32]", "ppo.critic_hidden=[32]", "save_every=1000"]
    train_s0(load_config(TrainS0Config, args + [f"out={tmp_path / 'on'}", "env.balance.enabled=true",
                                                "env.balance.k_pelvis=4.5"]), progress=False)
    train_s0(load_config(TrainS0Config, args + [f"out={tmp_path / 'off'}"]), progress=False)
    on, off = (S0Policy(tmp_path / name / "policy.safetensors") for name in ("on", "off"))
    assert on.observation_config["balance"].k_pelvis == 4.5 and not off.observation_config["balance"].enabled
    assert S0Controller(on, body, 0.02).balance.cfg.k_pelvis == 4.5
    assert S0Controller(off, body, 0.02).balance is None
    asked = BalanceConfig(enabled=True, k_pelvis=2.0)
    assert S0Controller(off, body, 0.02, balance=asked).balance.cfg.k_pelvis == 2.0
