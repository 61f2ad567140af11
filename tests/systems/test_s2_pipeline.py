"""S2 on real demonstrations: z targets from S1's goal encoder, train then resume, the stack layer's refusal
of instructions outside the task families, and instruction parsing for the main job."""

from __future__ import annotations

import numpy as np
import pytest
from stack_fixtures import STACK

from infra.checkpoint import CheckpointError
from infra.config.s2 import FAMILIES, S2ModelConfig, TrainS2Config
from s1_policy.policy import S1Policy
from s2_vlm.policy import S2Policy
from s2_vlm.train import S2Data, concat_data, lagged_indices, swap_paraphrase, train_s2
from systems.layers import S1Layer
from systems.lockstep import LockstepRunner
from systems.s2_layer import S2Layer, s2_data, stop_z, training_paraphrases
from systems.tasks import FAMILY_NAMES, Task, instructions, object_phrase, run_layout, task_for

TINY_S2 = S2ModelConfig(image_size=32, width=32, heads=2, fusion_layers=1, cnn_channels=[8, 16], visual_grid=2)


def _cfg(out, steps, **kw) -> TrainS2Config:
    return TrainS2Config(model=TINY_S2, steps=steps, batch_size=8, log_every=1, save_every=2, out=str(out),
                         threads=1, warmup=1, eval_data="", **kw)


@pytest.fixture(scope="module")
def data(demos, tiny_s1):
    return s2_data(str(demos[0]), S1Policy(tiny_s1))


def test_s2_families_are_the_task_families():
    assert tuple(FAMILY_NAMES) == FAMILIES


def test_s2_data_targets_are_the_goal_encoders_z(data, tiny_s1):
    s1 = S1Policy(tiny_s1)
    goal = np.zeros(len(FAMILY_NAMES) + 4, np.float32)
    goal[FAMILY_NAMES.index("wave_right")] = 1.0
    np.testing.assert_allclose(data.z[0], s1.encode_goal(goal), atol=1e-6)
    assert np.all(data.family == FAMILY_NAMES.index("wave_right")) and np.all(data.has_target == 0)
    assert data.images.shape[1:] == (32, 32, 3) and len(data.texts) == len(data)


def test_paraphrase_swaps_keep_the_family_and_the_object():
    texts = ["walk to the red box", "indicate the blue sphere with your hand", "turn left", "bake me a cake"]
    para = training_paraphrases(texts)
    assert set(para) == set(texts[:3])  # nothing to swap an out-of-scope instruction for
    assert len(para["turn left"]) == len(instructions("turn_left", "train"))
    rng = np.random.default_rng(0)
    for text in texts[:3]:
        want = task_for(text, None, 0.0)
        swapped = {swap_paraphrase(text, para, 1.0, rng) for _ in range(200)}
        held = {t.format(obj=object_phrase(want.target)) for t in instructions(want.family, "eval")}
        assert len(swapped) > 10 and not swapped & held
        for s in swapped:
            got = task_for(s, None, 0.0)
            assert (got.family, got.target) == (want.family, want.target), s
    state = rng.bit_generator.state
    assert swap_paraphrase("turn left", para, 0.0, rng) == "turn left" and rng.bit_generator.state == state
    assert swap_paraphrase("bake me a cake", para, 1.0, rng) == "bake me a cake"
    swapped = [swap_paraphrase("turn left", para, 0.3, rng) != "turn left" for _ in range(4000)]
    assert abs(np.mean(swapped) - 0.3 * (1 - 1 / len(para["turn left"]))) < 0.03
    with pytest.raises(ValueError, match="paraphrase_prob"):
        TrainS2Config(paraphrase_prob=1.5)


def test_vocabulary_and_concatenation(data):
    assert data.paraphrases and data.vocabulary(0.0) == sorted(set(data.texts))
    assert set(data.vocabulary(0.5)) == set(data.texts) | set(data.paraphrases[data.texts[0]])
    both = concat_data([data, data])
    assert len(both) == 2 * len(data) and both.texts == data.texts * 2
    n_ep = int(data.episode.max()) + 1
    np.testing.assert_array_equal(both.episode, np.concatenate([data.episode, data.episode + n_ep]))
    np.testing.assert_array_equal(both.frame[len(data):], data.frame)
    np.testing.assert_array_equal(both.images[len(data):], data.images)
    assert isinstance(both, S2Data) and concat_data([data]) is data


def test_latency_aware_lag_stays_inside_the_episode():
    rng = np.random.default_rng(0)
    frame = np.array([0, 1, 2, 3, 4, 5, 0, 1])
    idx = np.arange(8)
    lagged = np.stack([lagged_indices(idx, frame, 4, rng) for _ in range(200)])
    assert np.all(idx - lagged <= np.minimum(frame, 4)) and np.all(lagged <= idx)
    assert (idx - lagged)[:, 5].max() == 4  # lags up to the S2 period are drawn


def test_train_two_steps_then_resume_and_mismatch(data, tmp_path):
    first = train_s2(_cfg(tmp_path, 2), data, meta={"instructions": sorted(set(data.texts))}, progress=False)
    assert first["step"] == 2 and np.isfinite(first["loss/total"])
    resumed = train_s2(_cfg(tmp_path, 4, resume=str(tmp_path / "train.safetensors")), data, progress=False)
    assert resumed["step"] == 4
    wider = TrainS2Config(**{**_cfg(tmp_path, 6).__dict__, "resume": str(tmp_path / "train.safetensors"),
                             "model": S2ModelConfig(**{**TINY_S2.__dict__, "width": 64})})
    with pytest.raises(CheckpointError, match="model"):
        train_s2(wider, data, progress=False)
    policy = S2Policy(tmp_path / "policy.safetensors")
    out = policy.infer(data.images[0], data.texts[0])
    assert out["z"].shape == (128,) and np.all(np.abs(out["z"]) < 1)


def test_corrupted_s2_checkpoint_is_refused(data, tmp_path):
    train_s2(_cfg(tmp_path, 2), data, progress=False)
    path = tmp_path / "policy.safetensors"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x55
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="sha256"):
        S2Policy(path)


def test_out_of_scope_instruction_stops_and_stands(data, tiny_s1, tmp_path):
    train_s2(_cfg(tmp_path, 2), data, meta={"instructions": sorted(set(data.texts))}, progress=False)
    s1, s2 = S1Policy(tiny_s1), S2Policy(tmp_path / "policy.safetensors")
    layer = S2Layer(s2, stop_z(s1), min_similarity=0.5)
    assert layer.check(data.texts[0])  # a training instruction
    runner = LockstepRunner(STACK)
    try:
        layout = run_layout(0, STACK.scene)
        task = Task("unknown", "bake me a chocolate cake", time_limit_s=0.4, layout=layout)
        runner.run(task, S1Layer(s1, runner.body.n_dof, runner.backend.ctrl_dt), layer)
    finally:
        runner.close()
    assert not layer.in_scope
    np.testing.assert_array_equal(layer.last["z"], stop_z(s1))


def test_instruction_parsing_for_the_success_check():
    layout = np.zeros((3, 3))
    assert task_for("walk to the red box", layout, 10).target == "red_box"
    assert task_for("Point toward the blue sphere", layout, 10).family == "point_at"
    assert task_for("turn left", layout, 10).family == "turn_left"
    assert task_for("bake me a chocolate cake", layout, 10).family == "unknown"


def test_goal_parameters_from_s2s_heads_by_hand():
    from systems.s2_layer import s2_goal_params

    family = np.full(len(FAMILY_NAMES), 0.01, np.float32)
    family[FAMILY_NAMES.index("walk_to")] = 0.9
    out = {"family": family, "bearing": np.array([0.0, 2.0], np.float32), "distance": np.array(1.5, np.float32),
           "has_target": np.array(0.8, np.float32)}
    g = s2_goal_params(out)
    expected = np.zeros(len(FAMILY_NAMES) + 4, np.float32)
    expected[FAMILY_NAMES.index("walk_to")] = 1.0
    expected[-4:] = [0.0, 1.0, 1.5, 1.0]  # bearing renormalised to a unit (cos, sin)
    np.testing.assert_allclose(g, expected)
    out["has_target"], out["distance"] = np.array(0.2, np.float32), np.array(-0.3, np.float32)
    assert s2_goal_params(out)[-4:].tolist() == [0.0, 0.0, 0.0, 0.0]  # no target: no target parameters


def test_params_mode_sends_the_goal_encoders_z_of_s2s_heads(data, tiny_s1, tmp_path):
    from infra.config.stack import StackConfig
    from systems.s2_layer import layer_for_stack, s2_goal_params

    train_s2(_cfg(tmp_path, 2), data, meta={"instructions": sorted(set(data.texts))}, progress=False)
    s1, s2 = S1Policy(tiny_s1), S2Policy(tmp_path / "policy.safetensors")
    image = np.zeros((32, 32, 3), np.uint8)
    head = layer_for_stack(s2, s1, StackConfig(image_size=32, s2_z="head"))
    params = layer_for_stack(s2, s1, STACK)  # the default
    assert STACK.s2_z == "params"
    z_head = head.goal(0.0, image, data.texts[0], None)
    z = params.goal(0.0, image, data.texts[0], None)
    np.testing.assert_array_equal(params.last["z_head"], z_head)  # the same S2 call underneath
    np.testing.assert_allclose(z, s1.encode_goal(s2_goal_params(params.last, from_family=True)))
    by_head = layer_for_stack(s2, s1, StackConfig(image_size=32, s2_family="head"))
    z = by_head.goal(0.0, image, data.texts[0], None)
    assert by_head.family is None and "family_head" not in by_head.last
    np.testing.assert_allclose(z, s1.encode_goal(s2_goal_params(by_head.last)))
    with pytest.raises(ValueError, match="s2_z"):
        StackConfig(s2_z="both")
    with pytest.raises(ValueError, match="s2_family"):
        StackConfig(s2_family="image")
    with pytest.raises(ValueError, match="s2_family_temperature"):
        StackConfig(s2_family_temperature=0.0)


class _Known:
    """The two things InstructionFamily reads from an S2 policy, with similarities set by hand."""

    path = "by-hand.safetensors"

    def __init__(self, known: list[str], sims: list[float]) -> None:
        self.known, self.sims = known, np.array(sims, np.float32)

    def similarities(self, instruction: str) -> np.ndarray:
        return self.sims


def test_instruction_family_is_a_kernel_density_classifier_by_hand():
    from systems.s2_layer import InstructionFamily

    known = ["turn left", "rotate left", "turn right", "walk to the red box", "bake a cake"]
    family = InstructionFamily(_Known(known, [0.85, 0.5, 0.8, 0.5, 1.0]), temperature=0.1)
    p = family("whatever")
    # per family the mean of exp(cos / T) over its sentences; the out-of-scope sentence counts for nothing
    left, right, walk = (np.exp(8.5) + np.exp(5)) / 2, np.exp(8), np.exp(5)
    want = np.zeros(len(FAMILY_NAMES))
    for name, score in (("turn_left", left), ("turn_right", right), ("walk_to", walk)):
        want[FAMILY_NAMES.index(name)] = score
    np.testing.assert_allclose(p, want / want.sum(), rtol=1e-5)
    assert FAMILY_NAMES[int(np.argmax(p))] == "turn_right"  # the mean, not the best match, decides
    with pytest.raises(ValueError, match="names a task family"):
        InstructionFamily(_Known(["bake a cake"], [1.0]))


def test_the_family_is_read_from_the_instruction_alone(data, tiny_s1, tmp_path):
    """The real MiniLM and an S2 trained for two steps: held-out paraphrases get their family from the training
    instructions, the same one at every tick whatever the image, and the goal carries the target an object
    family needs even when the untrained has-target head says otherwise."""
    from systems.s2_layer import InstructionFamily, layer_for_stack, s2_goal_params
    from systems.tasks import FAMILIES as TASK_FAMILIES

    vocab = sorted({t.format(obj=object_phrase(o)) for f in FAMILY_NAMES for t in instructions(f, "train")
                    for o in ("red_box", "blue_sphere")})
    train_s2(_cfg(tmp_path, 2), data, meta={"instructions": vocab}, progress=False)
    s1, s2 = S1Policy(tiny_s1), S2Policy(tmp_path / "policy.safetensors")
    layer = layer_for_stack(s2, s1, STACK)
    assert isinstance(layer.family, InstructionFamily)
    rng = np.random.default_rng(0)
    for text, want in (("swivel right", "turn_right"), ("hold still", "stop"), ("gesture at the red box", "point_at"),
                       ("put both hands in the air", "arms_up"), ("take a few steps back", "walk_backward")):
        layer.reset(None)
        for tick in range(3):
            z = layer.goal(0.2 * tick, rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), text, None)
            assert FAMILY_NAMES[int(np.argmax(layer.last["family"]))] == want, (text, tick)
            g = s2_goal_params(layer.last, from_family=True)
            assert g[FAMILY_NAMES.index(want)] == 1.0 and g[-1] == float(TASK_FAMILIES[want][0])
            np.testing.assert_allclose(z, s1.encode_goal(g), rtol=1e-5, atol=1e-6)


def test_the_main_jobs_stack_takes_the_runs_settings():
    from infra.config.schemas import RunConfig
    from infra.config.stack import stack_for_run

    run = RunConfig(instruction="turn left", s1_sample_steps=4, s1_guidance=2.0, s2_z="params", s2_family="head",
                    checkpoint="elsewhere.safetensors")
    stack = stack_for_run(run)
    assert (stack.s1_sample_steps, stack.s1_guidance, stack.s2_z, stack.s2_family) == (4, 2.0, "params", "head")
    assert stack.s0_checkpoint == "elsewhere.safetensors" and stack.scene == run.scene and stack.body == run.body
    with pytest.raises(ValueError, match="s2_family"):
        stack_for_run(RunConfig(s2_family="image"))
