"""The task suite: held-out splits, goal parameters by hand, and success checks on synthetic body states."""

from __future__ import annotations

import numpy as np
import pytest

from infra.config.schemas import SceneConfig
from systems.tasks import (
    FAMILY_NAMES,
    GOAL_DIM,
    HELD_OUT_TEMPLATES,
    TEMPLATES,
    TRAIN_TEMPLATES,
    BodyState,
    SuccessCheck,
    Task,
    goal_params,
    instructions,
    object_phrase,
    sample_task,
    success_interval,
    task_for,
    task_rng,
    task_scene,
)

STAND = 0.956


def _state(t: float, xy=(0.0, 0.0), yaw=0.0, height=STAND, bodies=None, objects=None) -> BodyState:
    base = {"head": np.array([0.0, 0.0, 1.6]), "pelvis": np.array([0.0, 0.0, 0.95]),
            "left_hand": np.array([0.0, 0.2, 0.8]), "right_hand": np.array([0.0, -0.2, 0.8]),
            "left_upper_arm": np.array([0.0, 0.2, 1.4]), "right_upper_arm": np.array([0.0, -0.2, 1.4])}
    return BodyState(t, np.asarray(xy, float), height, yaw, base | (bodies or {}), objects or {}, STAND)


def _run(task: Task, states: list[BodyState]) -> bool:
    check = SuccessCheck(task)
    return any([check.update(s) for s in states])


def test_held_out_paraphrases_are_disjoint_and_cover_every_family():
    for family in FAMILY_NAMES:
        train, held = set(instructions(family, "train")), set(instructions(family, "eval"))
        assert train and held and not train & held
        assert train | held == set(TEMPLATES[family])


def test_every_template_parses_back_to_its_family_and_object():
    objects = [o.name for o in SceneConfig().objects]
    texts = [t for ts in TEMPLATES.values() for t in ts]
    assert len(texts) == len(set(texts))  # no wording belongs to two families
    for family, templates in TEMPLATES.items():
        for template in templates:
            for obj in objects if "{obj}" in template else [""]:
                text = template.format(obj=object_phrase(obj)) if obj else template
                task = task_for(text, np.zeros((0, 3)), 5.0)
                assert (task.family, task.target) == (family, obj), text
    # the object phrase may sit mid-sentence; a template's frame alone names no object
    assert task_for("indicate the blue sphere with your hand", None, 5.0).target == "blue_sphere"
    assert task_for("indicate  with your hand", None, 5.0).family == "unknown"


def _words(text: str) -> set[str]:
    w = text.replace("{obj}", " ").split()
    return set(w) | {" ".join(w[i:i + 2]) for i in range(len(w) - 1)}


def test_added_training_templates_borrow_no_held_out_wording():
    """The held-out templates are the suite's first version's; the training templates beyond its first six
    per family bring no content word or two-word phrase of a held-out template that the six did not have."""
    function_words = {"the", "a", "to", "your", "with", "at", "and", "of", "in"}
    for family, train in TRAIN_TEMPLATES.items():
        held = set().union(*map(_words, HELD_OUT_TEMPLATES[family]))
        first = set().union(*map(_words, train[:6]))
        for template in train[6:]:
            assert not (_words(template) & held) - first - function_words, (family, template)


def test_eval_layouts_come_from_another_seed_range():
    scene = task_scene(SceneConfig())
    a = sample_task(task_rng(3, "train"), scene, "train", ["walk_to"])
    b = sample_task(task_rng(3, "eval"), scene, "eval", ["walk_to"])
    assert not np.allclose(a.layout, b.layout)
    assert b.instruction.split(" the ")[0] + " {obj}" in instructions("walk_to", "eval")
    assert "the " in a.instruction and a.target in {o.name for o in scene.objects}
    with pytest.raises(ValueError, match=r"unknown task families \['moonwalk'\]"):
        sample_task(task_rng(3, "train"), scene, "train", ["walk_to", "moonwalk"])


def test_goal_parameters_by_hand():
    task = Task("walk_to", "walk to the red box", "red_box")
    g = goal_params(task, np.array([1.0, 3.0]), root_xy=np.array([1.0, 1.0]), root_yaw=np.pi / 2)
    assert g.shape == (GOAL_DIM,) and g[FAMILY_NAMES.index("walk_to")] == 1.0 and g[:-4].sum() == 1.0
    np.testing.assert_allclose(g[-4:], [1.0, 0.0, 2.0, 1.0], atol=1e-6)  # straight ahead, 2 m
    assert np.all(goal_params(Task("squat", "squat"), None, np.zeros(2), 0.0)[-4:] == 0)


def test_turn_and_walk_checks_need_the_right_direction():
    turning = [_state(0.02 * i, yaw=0.02 * i) for i in range(60)]  # 1.2 rad to the left
    assert _run(Task("turn_left", "turn left"), turning)
    assert not _run(Task("turn_right", "turn right"), turning)
    walking = [_state(0.02 * i, xy=(0.02 * i, 0.0)) for i in range(60)]  # 1.2 m forward
    assert _run(Task("walk_forward", "walk forward"), walking)
    assert not _run(Task("walk_backward", "walk backward"), walking)


@pytest.mark.parametrize("height,expected", [(0.7, True), (0.9, False)])
def test_squat_must_hold_low(height, expected):
    assert _run(Task("squat", "squat"), [_state(0.02 * i, height=height) for i in range(40)]) == expected


def test_arms_up_and_stop():
    up = {"left_hand": np.array([0.0, 0.2, 1.8]), "right_hand": np.array([0.0, -0.2, 1.8])}
    assert _run(Task("arms_up", "arms up"), [_state(0.02 * i, bodies=up) for i in range(40)])
    assert not _run(Task("arms_up", "arms up"), [_state(0.02 * i) for i in range(40)])
    still = [_state(0.02 * i) for i in range(201)]
    assert _run(Task("stop", "stop", time_limit_s=4.0), still)
    drifting = [_state(0.02 * i, xy=(0.003 * i, 0.0)) for i in range(201)]
    assert not _run(Task("stop", "stop", time_limit_s=4.0), drifting)


def test_pointing_needs_an_arm_along_the_object_direction():
    objects = {"red_box": np.array([2.0, -0.2])}
    arm = {"right_hand": np.array([0.6, -0.2, 1.4])}  # extended straight ahead at shoulder height
    assert _run(Task("point_at", "point at the red box", "red_box"),
                [_state(0.02 * i, bodies=arm, objects=objects) for i in range(40)])
    side = {"red_box": np.array([0.0, -2.0])}  # the same arm, but the object is to the right
    assert not _run(Task("point_at", "point at the red box", "red_box"),
                    [_state(0.02 * i, bodies=arm, objects=side) for i in range(40)])


def test_success_interval_by_hand():
    """Wilson's 95 % score interval: 0 of 10 is [0, 0.278] (the rule of three would say 0.3), 10 of 10 its mirror,
    and the interval narrows as the episodes grow while it always holds the observed rate."""
    assert success_interval([False] * 10) == [0.0, 0.278]
    assert success_interval([True] * 10) == [0.722, 1.0]
    assert success_interval([True] * 135 + [False] * 33) == [0.737, 0.857]
    lo24, hi24 = success_interval([True] * 19 + [False] * 5)
    lo168, hi168 = success_interval([True] * 133 + [False] * 35)
    assert lo24 < lo168 < 19 / 24 < hi168 < hi24
    with pytest.raises(ValueError, match="no episodes"):
        success_interval([])
