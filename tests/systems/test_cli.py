"""The humanoid command end to end, in subprocesses, against a real MLflow SQLite store."""

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient
from processes import COMMITTED, REPO, humanoid


def test_body_info_json(tmp_path):
    out = humanoid("body", "info", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["n_dof"] == 65
    assert info["groups"]["left_hand"] >= 11 and info["groups"]["right_hand"] >= 11
    joint = info["joints"][0]
    assert set(joint) >= {"name", "group", "range", "kp", "kd", "torque_limit"}


def test_unknown_key_exits_2_naming_it(tmp_path):
    out = humanoid("run", "sim.num_envz=3", cwd=tmp_path)
    assert out.returncode == 2
    assert "unknown config key 'sim.num_envz'" in out.stderr and "sim.num_envs" in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_mjcf_exits_2_naming_the_path(tmp_path):
    out = humanoid("body", "info", "body.mjcf=/no/such/robot.xml", "body.groups={all: ['.*']}", cwd=tmp_path)
    assert out.returncode == 2 and "/no/such/robot.xml" in out.stderr


def test_run_writes_video_metrics_and_mlflow_run(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    out = humanoid("run", "--json", "controller=stand", "seconds=1.0", "push.enabled=true", "push.interval_s=[0.3,0.5]",
                   "video.width=160", "video.height=120", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["success"] and result["seconds"] == pytest.approx(1.0) and result["pushes"] >= 1
    run_dir = Path(result["out_dir"])
    if not run_dir.is_absolute():
        run_dir = tmp_path / run_dir
    assert {"rollout.mp4", "metrics.json", "rollout.png", "config.yaml"} <= {p.name for p in run_dir.iterdir()}
    import imageio.v2 as imageio

    frames = [f for f in imageio.get_reader(run_dir / "rollout.mp4")]
    assert len(frames) == 25 and frames[0].shape == (120, 160, 3)
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["seconds"] == "1.0" and run.data.params["sim.num_envs"] == "1"
    heights = client.get_metric_history(run.info.run_id, "eval/root_height")
    assert len(heights) == 50 and min(m.value for m in heights) > 0.8
    assert {"rollout.mp4", "metrics.json"} <= {a.path for a in client.list_artifacts(run.info.run_id)}


def test_bench_sim_reports_ratio_of_its_own_measurements(tmp_path):
    out = humanoid("bench", "sim", "--json", "sim.num_envs=4", "raw_steps=500", "batched_steps=5", "repeats=1",
                   cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert set(r) >= {"raw_single_thread_steps_per_s", "batched_steps_per_s", "env_steps_per_s", "ratio",
                      "n_worlds", "threads", "n_dof"}
    assert r["n_worlds"] == 4 and r["n_dof"] == 65
    assert r["ratio"] == pytest.approx(r["batched_steps_per_s"] / r["raw_single_thread_steps_per_s"], rel=1e-2)
    assert r["batched_steps_per_s"] == pytest.approx(r["env_steps_per_s"] * 10, rel=1e-3)


def test_config_show_prints_resolved_yaml(tmp_path):
    out = humanoid("config", "show", "run", "seconds=3", "--preset", "push", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "seconds: 3.0" in out.stdout and "enabled: true" in out.stdout


def test_motion_list_show_and_render(tmp_path):
    out = humanoid("motion", "list", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert len(rows) >= 23 and rows["walk"]["displacement_m"][0] > 2.0
    out = humanoid("motion", "show", "name=squat", f"out={tmp_path / 'squat.npz'}", cwd=tmp_path)
    assert out.returncode == 0 and (tmp_path / "squat.npz").is_file()
    out = humanoid("motion", "render", "--json", "name=hands_point", "width=96", "height=64", "fps=10",
                   f"out={tmp_path / 'p.mp4'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    import imageio.v2 as imageio

    frames = [f for f in imageio.get_reader(tmp_path / "p.mp4")]
    assert len(frames) == json.loads(out.stdout)["frames"] == 34 and frames[0].shape == (64, 96, 3)
    out = humanoid("motion", "show", "name=walk_sideways", cwd=tmp_path)
    assert out.returncode == 2 and "unknown motion 'walk_sideways'" in out.stderr


def test_eval_s0_reports_the_phc_metrics(tmp_path):
    # checkpoint=none: zero residual, the PD tracks the reference joints on its own; a still stand succeeds.
    # A walk under PD alone falls within a few seconds: survived_s is the time to that fall.
    out = humanoid("eval", "s0", "--json", "checkpoint=none", "env.clips=[stand, hands_point, walk]",
                   "randomize=false", "episodes=1", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert set(r) >= {"success_rate", "mpjpe_mm", "joint_error_rad", "hand_joint_error_rad", "root_drift_m",
                      "survived_s", "episodes", "per_clip"}
    assert r["episodes"] == 3 and set(r["per_clip"]) == {"stand", "hands_point", "walk"}
    assert r["balanced_gait"] is False  # checkpoint=none: env.balanced_gait, false by default
    assert r["per_clip"]["stand"]["success_rate"] == 1.0 and r["per_clip"]["stand"]["mpjpe_mm"] < 40
    from s0_locomotion.body import Body
    from s0_locomotion.motion.library import build_clip

    stand = build_clip(Body(), "stand")
    assert r["per_clip"]["stand"]["survived_s"] == pytest.approx(stand.duration, abs=0.03)  # the whole clip
    assert r["per_clip"]["walk"]["success_rate"] == 0.0 and 0.5 < r["per_clip"]["walk"]["survived_s"] < 4.0
    assert r["per_clip"]["hands_point"]["hand_joint_error_rad"] > r["per_clip"]["stand"]["hand_joint_error_rad"]
    out = humanoid("eval", "s0", "checkpoint=nope.safetensors", cwd=tmp_path)
    assert out.returncode == 2 and "nope.safetensors" in out.stderr


def test_eval_teacher_reports_falls_and_their_times(tmp_path):
    # checkpoint=none: PD alone executes the plans. It stands through "stop" and falls a few seconds into a walk;
    # episodes run on past success, so the fall is counted with its time, inside the plan.
    out = humanoid("eval", "teacher", "--json", "checkpoint=none", "families=[stop, walk_forward]", "episodes=2",
                   "tracking.enabled=false", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["episodes"] == 2 and r["balanced_gait"] is False and r["s0_checkpoint"] == "none" and r["push_mps"] == 0
    stop, walk = r["per_family"]["stop"], r["per_family"]["walk_forward"]
    assert stop["success"] == 1.0 and stop["fell"] == 0.0 and stop["fall_s"] is None
    assert walk["fell"] == 1.0 and 0.5 < walk["fall_s"] < walk["plan_s"]
    assert r["fell_rate"] == 0.5
    low, high = r["success_ci95"]
    assert low < r["success_rate"] < high and high - low > 0.5  # two episodes say little
    out = humanoid("eval", "teacher", "families=[moonwalk]", "tracking.enabled=false", cwd=tmp_path)
    assert out.returncode == 2 and "moonwalk" in out.stderr


def test_eval_teacher_runs_one_instruction_on_the_main_jobs_layout(tmp_path):
    # instruction=: every episode is that task (the main job's layout and length) instead of the families in turn
    out = humanoid("eval", "teacher", "--json", "checkpoint=none", "instruction=walk to the red box", "seconds=1.5",
                   "episodes=2", "push_mps=0.05", "tracking.enabled=false", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert list(r["per_family"]) == ["walk_to"] and r["episodes"] == 2
    assert r["instruction"] == "walk to the red box" and r["layout_seed"] == 0
    assert r["per_family"]["walk_to"]["success"] == 0.0  # nobody reaches the box in 1.5 s
    out = humanoid("eval", "teacher", "instruction=bake a cake", "tracking.enabled=false", cwd=tmp_path)
    assert out.returncode == 2 and "bake a cake" in out.stderr


def test_bench_s0_reports_ratio_in_one_run(tmp_path):
    out = humanoid("bench", "s0", "--json", "train.env.sim.num_envs=4", "train.ppo.steps_per_env=4", "iterations=1",
                   "latency_calls=50", "train.env.clips=[stand]", "train.ppo.actor_hidden=[32]", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["ratio"] == pytest.approx(r["train_env_steps_per_s"] / r["physics_env_steps_per_s"], rel=1e-2)
    assert 0 < r["policy_latency_ms_p50"] <= r["policy_latency_ms_p99"]


def test_main_job_runs_the_committed_s0_checkpoint(tmp_path):
    """The default main job: the trained S0 (checkpoints/s0) tracks a wave in the scene without falling."""
    ckpt = REPO / "checkpoints" / "s0" / "policy.safetensors"
    out = humanoid("run", "--json", f"checkpoint={ckpt}", "seconds=3", "video.enabled=false", "tracking.enabled=false",
                   cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["success"] and result["max_tilt_deg"] < 20
    out = humanoid("run", "checkpoint=missing.safetensors", "seconds=1", cwd=tmp_path)
    assert out.returncode == 2 and "missing.safetensors" in out.stderr


def test_main_job_with_an_instruction_runs_the_committed_stack(tmp_path):
    """``humanoid run --instruction``: S2 -> S1 -> S0 on the committed checkpoints, a video and an MLflow run;
    an instruction outside the task families is refused and the body stands."""
    common = [*COMMITTED, "seconds=1", "mode=lockstep"]
    out = humanoid("run", "--json", "--instruction", "turn to face the red box", *common, cwd=tmp_path)
    assert out.returncode in (0, 1), out.stderr
    result = json.loads(out.stdout)
    assert result["family"] == "face" and result["target"] == "red_box" and result["in_scope"]
    assert result["ticks"] == {"s0": 50, "s1": 25, "s2": 5, "camera": 25}
    assert (tmp_path / result["out_dir"] / "stack.mp4").stat().st_size > 0
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert any(r.data.tags.get("instruction") == "turn to face the red box" for r in runs)
    out = humanoid("run", "--json", "--instruction", "bake me a chocolate cake", *common, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    refused = json.loads(out.stdout)
    assert not refused["in_scope"] and not refused["fell"]
    assert "outside the task families" in out.stderr


def test_real_time_run_names_bad_input_before_starting_ray(tmp_path):
    good = COMMITTED
    out = humanoid("run", *good[:2], "s2_checkpoint=nowhere/s2.safetensors", "--instruction", "stop", cwd=tmp_path)
    assert out.returncode == 2 and "s2_checkpoint: no file nowhere/s2.safetensors" in out.stderr, out.stderr
    out = humanoid("run", *good, "--script", "missing.txt", cwd=tmp_path)
    assert out.returncode == 2 and "script: no file missing.txt" in out.stderr, out.stderr
    (tmp_path / "bad.txt").write_text("0 stop\nlater wave with your left hand\n")
    out = humanoid("run", *good, "--script", "bad.txt", cwd=tmp_path)
    assert out.returncode == 2 and "bad.txt:2:" in out.stderr, out.stderr
    out = humanoid("run", *good, "realtime.transport=udp", "--instruction", "stop", cwd=tmp_path)
    assert out.returncode == 2 and "transport" in out.stderr, out.stderr
    assert not (tmp_path / "runs").exists()  # nothing started, nothing written
