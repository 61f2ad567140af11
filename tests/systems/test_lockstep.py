"""The lockstep runner with the scripted teacher and the trained S0 (real MuJoCo, real rendering)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from infra.config.schemas import SceneConfig
from infra.config.stack import RatesConfig, StackConfig
from s0_locomotion.motion.procedural import FPS
from systems.lockstep import LockstepRunner
from systems.tasks import Task, sample_task, task_rng, task_scene
from systems.teacher import GoalParamsLayer, TeacherLayer


@pytest.fixture(scope="module")
def runner():
    r = LockstepRunner(StackConfig(image_size=48))
    yield r
    r.close()


def _task(family: str, seed: int = 0):
    return sample_task(task_rng(seed, "train"), task_scene(SceneConfig()), "train", [family])


def test_tick_counts_are_exact(runner):
    result = runner.run(_task("stop"), TeacherLayer(runner.body), GoalParamsLayer(), max_seconds=1.0)
    assert result.ticks == {"s0": 50, "s1": 25, "s2": 5, "camera": 25}


def test_other_periods_tick_exactly():
    cfg = StackConfig(image_size=48, rates=RatesConfig(s1_period_s=0.06, s2_period_s=0.3), s0_checkpoint="none")
    r = LockstepRunner(cfg)
    try:
        result = r.run(_task("stop"), TeacherLayer(r.body), GoalParamsLayer(), max_seconds=0.6)
    finally:
        r.close()
    assert result.ticks == {"s0": 30, "s1": 10, "s2": 2, "camera": 10}


def test_period_must_be_a_multiple_of_the_control_period():
    with pytest.raises(ValueError, match="s1_period_s"):
        StackConfig(rates=RatesConfig(s1_period_s=0.05))


def test_deterministic_for_a_seed(runner):
    def trace():
        rows = []
        runner.run(_task("turn_left", 1), TeacherLayer(runner.body), GoalParamsLayer(),
                   record=lambda tick: rows.append(np.r_[tick.privileged.root_xy, tick.proprio]), max_seconds=1.0)
        return np.array(rows)

    first, second = trace(), trace()
    assert first.shape[0] == 25
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("family", ["arms_up", "squat", "wave_right", "point_at"])
def test_teacher_with_trained_s0_succeeds(runner, family):
    result = runner.run(_task(family), TeacherLayer(runner.body, balance=runner.balanced_gait), GoalParamsLayer())
    assert result.success and not result.fell, result


@pytest.mark.parametrize("bearing_deg", [-50, -20, 0, 10, 25, 50])
def test_teacher_points_from_where_it_stands(runner, bearing_deg):
    """point_at raises one arm to the horizontal, aimed at the target from its shoulder, without turning:
    the planned arm (shoulder to hand) is within 3 degrees of the target in the plane, the root stays put."""
    teacher = TeacherLayer(runner.body).teacher
    b, yaw = np.deg2rad(bearing_deg), 0.7
    target = np.array([1.0, -2.0]) + 2.5 * np.array([np.cos(yaw + b), np.sin(yaw + b)])
    plan = teacher.reset(Task("point_at", "point at the red box", "red_box"), {"red_box": target},
                         np.array([1.0, -2.0]), yaw)
    k = int(3.0 * FPS)
    side = "left" if bearing_deg > 15 else "right"
    shoulder, hand = (plan.body_pos[k, plan.body_names.index(f"{side}_{part}")] for part in ("upper_arm", "hand"))
    local_target = 2.5 * np.array([np.cos(b), np.sin(b)])  # the clip's frame: the start's heading, root at 0
    arm, to_target = (hand - shoulder)[:2], local_target - shoulder[:2]
    angle = np.degrees(np.arccos(arm @ to_target / np.linalg.norm(arm) / np.linalg.norm(to_target)))
    assert angle < 3.0 and np.linalg.norm(hand - shoulder) > 0.4 and hand[2] > shoulder[2] - 0.15
    other = plan.body_pos[k, plan.body_names.index(f"{'right' if side == 'left' else 'left'}_hand")]
    assert other[2] < shoulder[2] - 0.3  # the other arm hangs
    assert np.linalg.norm(teacher.xy - teacher.xy[0], axis=1).max() < 0.02  # no turn, no step


def test_teacher_demonstration_of_arms_up_stands_to_the_time_limit(runner):
    """Collection records whole episodes (no stop at success) and cuts falls; with the library's -2.9 rad
    clip the body fell at about 3.5 s in every episode, and no arms_up demonstration survived the cut."""
    task = _task("arms_up")
    teacher = TeacherLayer(runner.body, balance=runner.balanced_gait)
    result = runner.run(task, teacher, GoalParamsLayer(), record=lambda tick: None)
    assert result.success and not result.fell
    assert result.duration_s == pytest.approx(task.time_limit_s, abs=0.05)


@pytest.mark.parametrize("family", ["walk_forward", "walk_to"])
def test_balanced_teacher_sways_the_pelvis_over_the_stance_foot(runner, family):
    """With ``balance`` the teacher's walks are the ZMP-planned ones: the pelvis sways sideways over each
    stance foot (8-11 cm peak to peak in the library's walks); without it the pelvis follows the commanded
    straight path. The lateral offset is taken across the plan's own direction of travel."""
    task = _task(family)
    objects = {obj.name: xy[:2] for obj, xy in zip(task_scene(SceneConfig()).objects, task.layout, strict=True)}

    def lateral_sway(balance: bool) -> float:
        teacher = TeacherLayer(runner.body, balance=balance).teacher
        plan = teacher.reset(task, objects, np.zeros(2), 0.0)
        walking = np.linalg.norm(np.gradient(teacher.xy, axis=0), axis=1) * FPS > 0.2
        xy = teacher.xy[walking]
        direction = (xy[-1] - xy[0]) / np.linalg.norm(xy[-1] - xy[0])
        side = (xy - xy[0]) @ np.array([-direction[1], direction[0]])
        assert plan.num_frames > 0
        return float(side.max() - side.min())

    assert lateral_sway(True) > 0.05
    assert lateral_sway(False) < 0.02


def test_balanced_teacher_turns_in_place_over_the_stance_foot(runner):
    """Turning in place, the commanded pelvis stays on the spot; the balanced one sways over each stance foot."""
    task = _task("turn_left")

    def pelvis_travel(balance: bool) -> float:
        teacher = TeacherLayer(runner.body, balance=balance).teacher
        teacher.reset(task, {}, np.zeros(2), 0.0)
        return float(np.linalg.norm(teacher.xy, axis=1).max())

    assert pelvis_travel(True) > 0.03
    assert pelvis_travel(False) < 1e-6


def test_records_what_s1_will_see(runner):
    ticks = []
    runner.run(_task("point_at"), TeacherLayer(runner.body), GoalParamsLayer(), record=ticks.append, max_seconds=0.2)
    tick = ticks[0]
    assert tick.image.shape == (48, 48, 3) and tick.image.dtype == np.uint8 and tick.image.std() > 5
    assert tick.proprio.shape == (2 * runner.body.n_dof + 7,) and np.isfinite(tick.proprio).all()
    assert tick.z[-1] == 1.0  # the target is present in the goal parameters
    assert tick.chunk.joint_pos.shape == (16, runner.body.n_dof)
    assert dataclasses.is_dataclass(tick.privileged)


def test_a_start_push_moves_the_body_and_replays_exactly(runner):
    def final_xy(push):
        rows = []
        runner.run(_task("stop"), TeacherLayer(runner.body), GoalParamsLayer(), push=push,
                   record=lambda tick: rows.append(tick.privileged.root_xy.copy()), max_seconds=0.5)
        return rows[-1]

    still, pushed = final_xy(None), final_xy(np.array([0.3, 0.0]))
    assert pushed[0] - still[0] > 0.01  # pushed forward (+x, the robot's heading at the start)
    np.testing.assert_array_equal(pushed, final_xy(np.array([0.3, 0.0])))
