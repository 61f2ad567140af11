"""Demonstrations -> S1 training -> the trained S1 in the lockstep runner, at toy sizes (real files, real sim)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from stack_fixtures import STACK, TINY, tiny_s1_config

from infra.checkpoint import CheckpointError
from infra.config.s1 import S1ModelConfig, TrainS1Config
from infra.config.stack import CollectConfig, StackConfig
from s1_policy.dataset import DemoDataset
from s1_policy.features import ChunkCoding, TaskClock, chunk_to_array, shift_chunk
from s1_policy.policy import S1Policy
from s1_policy.train import load_demos, train_s1
from systems.collect import IMAGE_KEY, episode_families
from systems.layers import GoalEncoderLayer, S1Layer
from systems.lockstep import LockstepRunner
from systems.tasks import FAMILY_NAMES, instructions, sample_task, task_rng, task_scene


def test_collected_dataset_holds_what_s1_trains_on(demos):
    root, stats = demos
    ds = DemoDataset(root)
    assert stats["episodes"] == 1 and len(ds) == stats["frames"] == 150  # 6 s at 25 Hz
    assert ds.info["fps"] == 25 and ds.info["codebase_version"] == "v3.0"
    actions = ds.column("action").reshape(len(ds), 16, -1)
    assert actions.shape[2] == 65 + 4 and np.isfinite(actions).all()
    goal = ds.column("observation.goal")
    assert np.all(goal[:, FAMILY_NAMES.index("wave_right")] == 1.0)
    assert ds.task_of(0) in instructions("wave_right", "train")
    frames = ds.video_frames(IMAGE_KEY, 0)
    assert frames.shape == (150, 32, 32, 3) and frames.std() > 5


_cfg = tiny_s1_config


def test_train_two_steps_then_resume(demos, tmp_path):
    root, _ = demos
    first = train_s1(_cfg(root, tmp_path, 2), progress=False)
    assert first["step"] == 2 and np.isfinite(first["loss/total"])
    resumed = train_s1(_cfg(root, tmp_path, 4, resume=str(tmp_path / "train.safetensors")), progress=False)
    assert resumed["step"] == 4
    policy = S1Policy(tmp_path / "policy.safetensors")
    assert policy.meta["step"] == 4
    chunk = policy.infer(np.zeros((32, 32, 3), np.uint8), np.zeros(137, np.float32), np.zeros(128, np.float32))
    assert chunk.shape == (16, 69) and np.isfinite(chunk).all()


def test_sample_steps_are_set_at_load_time(demos, tmp_path):
    root, _ = demos
    train_s1(_cfg(root, tmp_path, 2), progress=False)
    path = tmp_path / "policy.safetensors"
    inputs = (np.full((32, 32, 3), 90, np.uint8), np.zeros(137, np.float32), np.ones(128, np.float32))
    default, fewer = S1Policy(path), S1Policy(path, sample_steps=3)
    assert default.model.head.sample_steps == TINY.flow_steps and fewer.model.head.sample_steps == 3
    calls, expert = [], fewer.model.head.expert
    forward = expert.forward  # the head calls forward directly (no module dispatch), so count there
    expert.forward = lambda *args, **kw: (calls.append(1), forward(*args, **kw))[1]
    fewer.infer(*inputs)
    assert len(calls) == 3  # one expert pass per Euler step
    assert not np.allclose(default.infer(*inputs), fewer.infer(*inputs))
    with pytest.raises(ValueError, match="sample steps"):
        S1Policy(path, sample_steps=-1)


def test_guidance_is_set_at_load_time_and_needs_goal_dropout(demos, tmp_path):
    root, _ = demos
    cfg = tiny_s1_config(root, tmp_path / "cfg", 2)
    train_s1(dataclasses.replace(cfg, model=dataclasses.replace(TINY, goal_dropout=0.5, goal_to_actions=True)),
             progress=False)
    path = tmp_path / "cfg" / "policy.safetensors"
    inputs = (np.full((32, 32, 3), 90, np.uint8), np.zeros(137, np.float32), np.ones(128, np.float32))
    default, guided = S1Policy(path), S1Policy.for_stack(path, StackConfig(s1_guidance=2.0))
    assert default.model.guidance == 1.0 and guided.model.guidance == 2.0
    assert guided.infer(*inputs).shape == (16, 69) and not np.allclose(default.infer(*inputs), guided.infer(*inputs))
    train_s1(tiny_s1_config(root, tmp_path / "plain", 2), progress=False)  # no goal dropout: nothing to guide with
    with pytest.raises(CheckpointError, match="plain.*goal_dropout > 0"):
        S1Policy(tmp_path / "plain" / "policy.safetensors", guidance=2.0)


def test_s1_layer_inpaints_its_previous_chunk(demos, tmp_path):
    """With ``s1_inpaint_frames``, the chunk one S1 period later starts exactly where the previous chunk had it
    (frame 0 carries weight 1), moved into the new heading frame; without, frame 0 is a fresh draw. A head other
    than flow is refused at load time, naming the setting."""
    root, _ = demos
    train_s1(_cfg(root, tmp_path, 2), progress=False)
    path = tmp_path / "policy.safetensors"
    inputs = (np.full((32, 32, 3), 90, np.uint8), np.zeros(137, np.float32), np.ones(128, np.float32))
    frame_dt = 0.02

    def two_chunks(frames: int) -> tuple[np.ndarray, np.ndarray]:
        layer = S1Layer(S1Policy.for_stack(path, StackConfig(s1_inpaint_frames=frames)), 65, frame_dt)
        layer.start(0.0)
        first, second = (chunk_to_array(layer.chunk(t, *inputs, None)) for t in (0.0, 0.04))
        return first, second

    first, second = two_chunks(8)
    expected, valid = shift_chunk(first, 2.0, 65)
    assert valid == 14
    np.testing.assert_allclose(second[0], expected[0], atol=1e-4)
    plain_first, plain_second = two_chunks(0)
    np.testing.assert_allclose(plain_first, first, atol=1e-6)  # the first chunk has no prefix either way
    assert np.abs(plain_second[0] - expected[0]).max() > 1e-2
    cfg = tiny_s1_config(root, tmp_path / "diffusion", 2)
    train_s1(dataclasses.replace(cfg, model=dataclasses.replace(TINY, head="diffusion")), progress=False)
    with pytest.raises(CheckpointError, match="s1_inpaint_frames=8, s1_warm_start=0.0 need a flow head"):
        S1Policy(tmp_path / "diffusion" / "policy.safetensors", inpaint_frames=8)


def test_heading_rate_coding_trains_infers_and_is_kept_by_fine_tunes(demos, tmp_path):
    """heading_rate=true: the network's statistics are those of the yaw rate, every chunk it emits starts at heading
    0 (the chunk convention), inpainting pins the previous chunk's rate, and a fine-tune cannot change the coding."""
    root, _ = demos
    train_s1(_cfg(root, tmp_path / "rate", 2, heading_rate=True), progress=False)
    train_s1(_cfg(root, tmp_path / "plain", 2), progress=False)
    path = tmp_path / "rate" / "policy.safetensors"
    rate, plain = S1Policy(path), S1Policy(tmp_path / "plain" / "policy.safetensors")
    assert rate.coding == ChunkCoding(True, 0.02) and not plain.coding.heading_rate
    heading = 65 + 1
    coded_demos = ChunkCoding(True, 0.02).encode(load_demos(root, 16).actions, 65)
    np.testing.assert_allclose(float(rate.stats["action_mean"][heading]), coded_demos[..., heading].mean(), atol=1e-6)
    inputs = (np.full((32, 32, 3), 90, np.uint8), np.zeros(137, np.float32), np.ones(128, np.float32))
    chunks = [policy.infer(*inputs) for policy in (rate, plain)]
    assert chunks[0][0, heading] == 0.0 and np.isfinite(chunks[0]).all()
    assert chunks[1][0, heading] != 0.0  # the plain coding leaves frame 0 to the network
    layer = S1Layer(S1Policy.for_stack(path, StackConfig(s1_inpaint_frames=8)), 65, 0.02)
    layer.start(0.0)
    first, second = (chunk_to_array(layer.chunk(t, *inputs, None)) for t in (0.0, 0.04))
    expected, _ = shift_chunk(first, 2.0, 65)
    np.testing.assert_allclose(second[:2, heading], expected[:2, heading], atol=1e-4)
    with pytest.raises(CheckpointError, match="heading_rate=False"):
        train_s1(_cfg(root, tmp_path / "ft", 3, heading_rate=True, init=str(tmp_path / "plain" / "policy.safetensors")),
                 progress=False)


def test_task_clock_octaves_train_and_infer(demos, tmp_path):
    """The clock's octaves widen S1's proprioception: a model config that does not count them is refused by name,
    one that does trains, and the policy feeds the same features at run time; fine-tuning a checkpoint with other
    octaves is refused."""
    root, _ = demos
    with pytest.raises(ValueError, match=r"proprio_dim is 138, the data gives 144 \(137 proprio \+ 7 task clock\)"):
        train_s1(tiny_s1_config(root, tmp_path / "bad", 2, task_clock_octaves=3), progress=False)
    model = dataclasses.replace(TINY, proprio_dim=144)
    train_s1(dataclasses.replace(tiny_s1_config(root, tmp_path / "oct", 2, task_clock_octaves=3), model=model),
             progress=False)
    policy = S1Policy(tmp_path / "oct" / "policy.safetensors")
    assert policy.clock == TaskClock(8.0, 3)
    inputs = (np.full((32, 32, 3), 90, np.uint8), np.zeros(137, np.float32), np.ones(128, np.float32))
    def at(t: float) -> np.ndarray:
        policy.reset()  # the same noise: only the clock differs
        return policy.infer(*inputs, task_time=t)

    assert at(0.1).shape == (16, 69) and np.array_equal(at(0.1), at(0.1)) and not np.allclose(at(0.1), at(0.6))
    with pytest.raises(CheckpointError, match="task_clock_octaves=3, this run asks for 2"):
        train_s1(dataclasses.replace(tiny_s1_config(root, tmp_path / "ft", 2, task_clock_octaves=2,
                                                    init=str(tmp_path / "oct" / "policy.safetensors")), model=model),
                 progress=False)


def test_a_blind_s1_ignores_the_body_state_but_not_the_clock(demos, tmp_path):
    """proprio_dropout=1: the policy zeroes the body state at run time as in training, so two different bodies give
    the same chunk, while the task clock still reaches the network; an S1 trained with the body state reads it."""
    root, _ = demos
    with pytest.raises(ValueError, match="proprio_dropout must be in"):
        tiny_s1_config(root, tmp_path, 2, proprio_dropout=1.5)
    train_s1(tiny_s1_config(root, tmp_path / "blind", 2, proprio_dropout=1.0), progress=False)
    train_s1(tiny_s1_config(root, tmp_path / "sees", 2), progress=False)
    image, z = np.full((32, 32, 3), 90, np.uint8), np.ones(128, np.float32)
    bodies = np.zeros(137, np.float32), np.linspace(-1, 1, 137, dtype=np.float32)

    def chunk(policy: S1Policy, proprio: np.ndarray, t: float = 0.5) -> np.ndarray:
        policy.reset()
        return policy.infer(image, proprio, z, task_time=t)

    blind, sees = (S1Policy(tmp_path / name / "policy.safetensors") for name in ("blind", "sees"))
    assert blind.blind and not sees.blind
    assert np.array_equal(chunk(blind, bodies[0]), chunk(blind, bodies[1]))
    assert not np.allclose(chunk(blind, bodies[0]), chunk(blind, bodies[0], t=3.0))
    assert not np.allclose(chunk(sees, bodies[0]), chunk(sees, bodies[1]))


def test_resume_with_another_model_names_the_mismatch(demos, tmp_path):
    root, _ = demos
    train_s1(_cfg(root, tmp_path, 2), progress=False)
    wider = TrainS1Config(**{**_cfg(root, tmp_path, 4).__dict__, "model": S1ModelConfig(**{**TINY.__dict__,
                                                                                         "width": 64}),
                             "resume": str(tmp_path / "train.safetensors")})
    with pytest.raises(CheckpointError, match="model"):
        train_s1(wider, progress=False)


def test_corrupted_checkpoint_is_refused(demos, tmp_path):
    root, _ = demos
    train_s1(_cfg(root, tmp_path, 2), progress=False)
    path = tmp_path / "policy.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        S1Policy(path)


def test_trained_s1_drives_the_stack(demos, tmp_path):
    root, _ = demos
    train_s1(_cfg(root, tmp_path, 2), progress=False)
    policy = S1Policy(tmp_path / "policy.safetensors")
    runner = LockstepRunner(STACK)
    try:
        task = sample_task(task_rng(0, "eval"), task_scene(STACK.scene), "eval", ["arms_up"])
        ticks = []
        result = runner.run(task, S1Layer(policy, runner.body.n_dof, runner.backend.ctrl_dt),
                            GoalEncoderLayer(policy), record=ticks.append, max_seconds=0.4)
    finally:
        runner.close()
    assert result.ticks["s1"] == 10 and len(ticks) == 10
    assert ticks[0].z.shape == (128,) and np.all(np.abs(ticks[0].z) < 1)
    assert all(np.isfinite(t.chunk.joint_pos).all() for t in ticks)


def test_goal_encoder_freezes_for_s2(demos, tmp_path):
    root, _ = demos
    train_s1(_cfg(root, tmp_path, 4, freeze_goal_after=2), progress=False)
    frozen, final = S1Policy(tmp_path / "goal_frozen.safetensors"), S1Policy(tmp_path / "policy.safetensors")
    assert frozen.meta["step"] == 2 and final.meta["step"] == 4
    goal = np.eye(16, dtype=np.float32)[3]
    np.testing.assert_array_equal(frozen.encode_goal(goal), final.encode_goal(goal))  # z fixed after step 2
    image, proprio = np.zeros((32, 32, 3), np.uint8), np.zeros(137, np.float32)
    assert not np.allclose(frozen.infer(image, proprio, np.zeros(128)), final.infer(image, proprio, np.zeros(128)))


def test_fine_tuning_keeps_the_goal_encoder_and_statistics(demos, tmp_path):
    root, _ = demos
    train_s1(_cfg(root, tmp_path / "base", 2, freeze_goal_after=0), progress=False)
    base_path = tmp_path / "base" / "policy.safetensors"
    train_s1(_cfg(root, tmp_path / "ft", 3, init=str(base_path)), progress=False)
    base, tuned = S1Policy(base_path), S1Policy(tmp_path / "ft" / "policy.safetensors")
    assert tuned.meta["step"] == 3 and not (tmp_path / "ft" / "goal_frozen.safetensors").exists()
    goal = np.eye(16, dtype=np.float32)[5]
    np.testing.assert_array_equal(base.encode_goal(goal), tuned.encode_goal(goal))  # S2's target z is unchanged
    for key in ("proprio_mean", "action_std"):
        np.testing.assert_array_equal(base.stats[key], tuned.stats[key])
    image, proprio = np.zeros((32, 32, 3), np.uint8), np.zeros(137, np.float32)
    assert not np.allclose(base.infer(image, proprio, np.zeros(128)), tuned.infer(image, proprio, np.zeros(128)))
    wider = TrainS1Config(**{**_cfg(root, tmp_path / "bad", 2).__dict__, "init": str(base_path),
                             "model": S1ModelConfig(**{**TINY.__dict__, "width": 64})})
    with pytest.raises(CheckpointError, match="model"):
        train_s1(wider, progress=False)


def test_eval_s1_reports_every_checkpoint_of_one_head(tiny_s1):
    from infra.config.s1 import EvalS1Config
    from systems.eval_s1 import evaluate_s1

    cfg = EvalS1Config(stack=STACK, checkpoints=[str(tiny_s1), str(tiny_s1)], eval_data="", episodes=1,
                       latency_calls=3)
    out = evaluate_s1(cfg, progress=False)
    names = sorted(out["heads"])
    assert len(names) == 2 and names[1] == names[0] + "_2", names  # a fine-tune and its base: two rows
    for entry in out["heads"].values():
        assert entry["checkpoint"] == str(tiny_s1) and 0.0 <= entry["success_rate"] <= 1.0
        low, high = entry["success_ci95"]
        assert 0.0 <= low <= entry["success_rate"] <= high <= 1.0 and high - low > 0.5  # one episode says little
        assert entry["latency_ms_p99"] >= entry["latency_ms_p50"] > 0
        assert -1.0 <= entry["goal_cosine_max"] <= 1.0
        first, second = entry["goal_closest_pair"].split("/")
        assert first != second and {first, second} <= set(FAMILY_NAMES)


def test_dagger_collection_labels_the_students_states_with_the_teachers_chunks(demos, tiny_s1, tmp_path):
    """A (barely trained) S1 drives; every recorded action is the teacher's chunk for that tick, the states are
    the student's own. wave_right's plan depends only on time, so the labels equal the teacher's own run's."""
    from infra.config.stack import CollectConfig
    from s1_policy.train import load_all, load_demos
    from systems.collect import collect

    teacher_root, _ = demos
    out = tmp_path / "dagger"
    stats = collect(CollectConfig(stack=STACK, episodes=1, out=str(out), families=["wave_right"],
                                  policy=str(tiny_s1)), progress=False)
    assert stats["driver"] == str(tiny_s1) and stats["episodes"] == 1
    mine, teacher = DemoDataset(out), DemoDataset(teacher_root)
    n = min(len(mine), len(teacher))
    assert n >= 50
    np.testing.assert_allclose(mine.column("action")[:n], teacher.column("action")[:n], atol=1e-5)
    moved = np.abs(mine.column("observation.state")[:n] - teacher.column("observation.state")[:n]).max()
    assert moved > 0.1  # the student's states, not the teacher's
    both = load_all([teacher_root, out], TINY.horizon)
    assert len(both) == len(mine) + len(teacher)
    assert len(np.unique(both.episode)) == 2 and (both.family == FAMILY_NAMES.index("wave_right")).all()
    assert len(load_demos(out, TINY.horizon)) == len(mine)
    train_s1(_cfg(teacher_root, tmp_path / "s1", 2, more_data=[str(out)]), progress=False)
    assert S1Policy(tmp_path / "s1" / "policy.safetensors").meta["step"] == 2


def test_goal_from_keeps_another_policys_goal_encoder_across_architectures(demos, tiny_s1, tmp_path):
    """S1 with z added to every action token, trained with the tiny policy's goal encoder: the encoder (and
    so S2's distillation target) is the source's, bit for bit; a z size that does not match is refused."""
    root, _ = demos
    model = S1ModelConfig(**{**TINY.__dict__, "goal_to_actions": True})
    train_s1(TrainS1Config(**{**_cfg(root, tmp_path / "z", 2, goal_from=str(tiny_s1)).__dict__, "model": model}),
             progress=False)
    source, tuned = S1Policy(tiny_s1), S1Policy(tmp_path / "z" / "policy.safetensors")
    assert tuned.config.goal_to_actions and tuned.model.z_actions is not None and source.model.z_actions is None
    assert not (tmp_path / "z" / "goal_frozen.safetensors").exists()
    goal = np.eye(16, dtype=np.float32)[7]
    np.testing.assert_array_equal(source.encode_goal(goal), tuned.encode_goal(goal))
    image, proprio = np.zeros((32, 32, 3), np.uint8), np.zeros(137, np.float32)
    z1, z2 = tuned.encode_goal(np.eye(16, dtype=np.float32)[0]), tuned.encode_goal(goal)
    tuned.reset()
    a = tuned.infer(image, proprio, z1)
    tuned.reset()
    assert not np.allclose(a, tuned.infer(image, proprio, z2))  # z reaches the chunk
    small = S1ModelConfig(**{**TINY.__dict__, "z_dim": 64})
    with pytest.raises(CheckpointError, match="z of 128"):
        train_s1(TrainS1Config(**{**_cfg(root, tmp_path / "bad", 2, goal_from=str(tiny_s1)).__dict__,
                                  "model": small}), progress=False)


def test_collect_families_in_turn_gives_every_family_an_equal_share():
    def families(cfg: CollectConfig) -> list[str]:
        scene = task_scene(cfg.stack.scene)
        return [sample_task(task_rng(cfg.seed + i, "train"), scene, "train", episode_families(cfg, i)).family
                for i in range(cfg.episodes)]

    in_turn = families(CollectConfig(episodes=24, families_in_turn=True))
    assert sorted(in_turn) == sorted(FAMILY_NAMES * 2)
    drawn = families(CollectConfig(episodes=24))  # at random: the shares come out uneven
    assert set(drawn) <= set(FAMILY_NAMES) and max(drawn.count(f) for f in FAMILY_NAMES) > 2
    assert families(CollectConfig(episodes=4, families=["squat", "stop"], families_in_turn=True)) == \
        ["squat", "stop", "squat", "stop"]
