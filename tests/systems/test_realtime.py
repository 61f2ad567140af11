"""The real-time runner: the committed stack as Ray actors on the wall clock over ZeroMQ (issue 6).

Real parts throughout: a local Ray cluster, real actors and sockets, the committed checkpoints, MuJoCo.
Rates are checked loosely (this is a shared 2-core machine); speed goals live in ``humanoid bench runtime``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from processes import COMMITTED, REPO, descendants, humanoid

from infra.config.stack import RealtimeConfig, StackConfig
from infra.messages import CameraFrame, JointCommand, LatentGoal, MotionChunk, RobotState
from infra.transport import Publisher, Subscriber
from systems.runtime.realtime import parse_script

NOMINAL_HZ = {"body": 50.0, "camera": 25.0, "s0": 50.0, "s0_standby": 50.0, "s1": 25.0, "s2": 5.0}


def _sock_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("humanoid-rt-*"))


@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # the committed checkpoints are addressed relative to the repository


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_main_job_in_real_time_ticks_every_layer_at_its_rate_and_shuts_down_clean(in_repo, tmp_path, capsys):
    from systems.cli import main

    before, socks = descendants(os.getpid()), _sock_dirs()
    code = main(["run", "--instruction", "stop", "--json", "seconds=5", f"out_dir={tmp_path}",
                 f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"])
    captured = capsys.readouterr()
    assert captured.out.strip(), f"no summary printed (exit code {code}); stderr:\n{captured.err[-4000:]}"
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["mode"] == "realtime" and summary["tasks"][0]["family"] == "stop"
    layers = summary["layers"]
    assert set(layers) == set(NOMINAL_HZ)
    for name, hz in NOMINAL_HZ.items():
        row = layers[name]
        assert abs(row["rate_hz"] - hz) < 0.1 * hz, (name, row)
        assert 0.0 <= row["deadline_miss_rate"] <= 0.5 and row["jitter_ms_p99"] >= 0.0, (name, row)
        assert row["restarts"] == 0 and row["rejected_inputs"] == 0 and row["rejected_outputs"] == 0, (name, row)
    # messages flowed end to end: instruction -> S2 -> goal -> S1 -> chunk -> S0 -> command -> body -> state
    assert layers["s2"]["inputs"]["instruction"]["received"] > 0
    assert layers["s1"]["inputs"]["goal"]["received"] >= 10
    assert layers["s0"]["inputs"]["chunk"]["received"] >= 50
    assert layers["body"]["inputs"]["command"]["received"] >= 150
    assert layers["s1"]["inputs"]["camera"]["received"] >= 50
    for name in ("body", "s0", "s1", "s2"):
        assert layers[name]["staleness_ms_p99"] is not None and layers[name]["staleness_ms_p99"] > 0, name
    assert summary["tasks"][0]["reaction_ms"] is not None and summary["tasks"][0]["reaction_ms"] > 0
    assert not summary["fell"], summary["events"]  # "stop": the stack stands
    assert code == (0 if summary["success"] and not summary["fell"] else 1)
    out = Path(summary["out_dir"])
    for name in ("summary.json", "timing.png", "stack.mp4", "config.yaml"):
        assert (out / name).stat().st_size > 0, name
    import mlflow

    run = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_run(summary["mlflow_run_id"])
    assert run.data.metrics["timing/s0/rate_hz"] == pytest.approx(layers["s0"]["rate_hz"])
    give_up = time.monotonic() + 30.0  # Ray's processes take a moment to exit after ray.shutdown()
    while (left := descendants(os.getpid()) - before) and time.monotonic() < give_up:
        time.sleep(0.2)
    assert not left, f"processes left behind: {left}"
    assert _sock_dirs() <= socks, "socket files left behind"


def test_killed_actors_are_restarted_and_the_body_keeps_standing(in_repo, tmp_path):
    """Kill S1, then S0, mid-run: Ray restarts both and they rejoin; meanwhile S0 sees its chunk stream go
    stale and stands, and the body follows S0's hot standby."""
    from systems.runtime.realtime import RealtimeRunner
    from systems.tasks import run_layout

    stack = StackConfig()
    layout = run_layout(0, stack.scene)
    runner = RealtimeRunner(stack, RealtimeConfig(), "checkpoints/s1/policy.safetensors",
                            "checkpoints/s2/policy.safetensors", layout, tmp_path)
    killed = []

    def during(r, t):
        for when, kind in ((2.0, "s1"), (2.5, "s0")):
            if t > when and kind not in killed:
                killed.append(kind)
                r.kill(kind)

    # Ray restarts S1 in about 4 s here alone (it loads its checkpoint); 20 s leaves room for a loaded CI machine
    result = runner.run([(0.0, "stop")], 20.0, during=during)
    reports = result["reports"]
    assert killed == ["s1", "s0"] and result["restarts"]["s1"] == result["restarts"]["s0"] == 1, result["events"]
    for kind in killed:
        assert any(f"{kind} loop rejoined" in e for e in result["events"]), result["events"]
    assert reports["body"]["fell_at"] is None, result["events"]
    assert any("command -> command_sb" in e.get("event", "") for e in reports["body"]["events"])
    assert reports["s0_standby"]["fallback_ticks"] > 0  # stood on the stale chunk stream
    assert any("stand" in e.get("event", "") for e in reports["s0_standby"]["events"])
    for kind in killed:  # the restarted incarnations ran and reported
        assert reports[kind]["loops"][kind]["ticks"] > 0, kind
    for other in ("body", "camera", "s0_standby", "s2"):
        assert result["restarts"][other] == 0 and reports[other]["error"] is None, other
    for kind in ("body", "s0", "s0_standby"):  # the control loops asked for their priority (granted or not)
        assert [e["loop"] for e in reports[kind]["priority"]] == [kind], reports[kind]["priority"]


# ---------------------------------------------------------------------------- nodes without Ray


def _addr(tmp_path: Path, name: str) -> str:
    return f"ipc://{tmp_path}/{name}"


def _standing_state(body, stamp: float, seq: int) -> RobotState:
    return RobotState(stamp=stamp, seq=seq, joint_pos=body.default_pose.astype(np.float32),
                      joint_vel=np.zeros(body.n_dof, np.float32), root_quat=np.array([1, 0, 0, 0], np.float32),
                      root_ang_vel=np.zeros(3, np.float32), root_lin_vel=np.zeros(3, np.float32),
                      root_pos=np.array([0, 0, body.root_height], np.float32), foot_contact=np.zeros(2, np.float32))


def test_s0_stands_within_one_period_of_its_chunk_stream_going_stale(in_repo, tmp_path):
    from systems.runtime.nodes import S0Node

    rt = RealtimeConfig(chunk_timeout_s=0.1)
    node = S0Node(StackConfig(), rt, {"command": _addr(tmp_path, "command")})
    node.connect({"state": _addr(tmp_path, "state"), "chunk": _addr(tmp_path, "chunk")})
    with Publisher(_addr(tmp_path, "state")) as states, Publisher(_addr(tmp_path, "chunk")) as chunks, \
            Subscriber(_addr(tmp_path, "command"), JointCommand) as commands:
        time.sleep(0.3)  # subscriptions propagate
        last_chunk, ticks, sent = None, [], 0  # ticks: (the tick's clock, standing after it)
        for k in range(40):
            now = time.monotonic()
            states.publish(_standing_state(node.body, now, k))
            if k < 10:
                chunk = node.stand_chunk(now)
                chunks.publish(MotionChunk(**{**chunk.__dict__, "seq": k}))
                last_chunk = now
            time.sleep(0.003)
            now = time.monotonic()
            node.tick(now)
            ticks.append((now, node.standing))
            sent += commands.latest(timeout_s=0.05) is not None
            time.sleep(0.016)
        assert node.s0.chunks_received >= 10
        deadline = last_chunk + rt.chunk_timeout_s
        # standing from the first tick past the timeout on, not before
        assert [standing for _, standing in ticks] == [t > deadline for t, _ in ticks], node.events
        assert sent > 30 and np.isfinite(commands.last.q_target).all()
        # a layer output with NaN is never sent: dropped and counted
        q = np.full(node.body.n_dof, np.nan, np.float32)
        assert not node.publish("command", JointCommand, stamp=time.monotonic(), q_target=q, kp=node.kp, kd=node.kd,
                                tau_ff=np.zeros_like(q), mode=0)
        assert node.rejected_outputs == 1 and commands.latest(timeout_s=0.1) is None
    node.close()


def test_s1_keeps_the_last_goal_until_its_timeout_then_uses_the_stop_goal(in_repo, tmp_path):
    from systems.runtime.nodes import S1Node

    rt = RealtimeConfig(goal_timeout_s=0.3)
    stack = StackConfig()
    node = S1Node(stack, rt, {"chunk": _addr(tmp_path, "chunk")}, "checkpoints/s1/policy.safetensors")
    node.connect({s: _addr(tmp_path, s) for s in ("camera", "state", "goal")})
    image = np.zeros((stack.image_size, stack.image_size, 3), np.uint8)
    with Publisher(_addr(tmp_path, "camera")) as cams, Publisher(_addr(tmp_path, "state")) as states, \
            Publisher(_addr(tmp_path, "goal")) as goals, Subscriber(_addr(tmp_path, "chunk"), MotionChunk) as chunks:
        time.sleep(0.3)
        from s0_locomotion.body import Body

        body = Body(stack.body)
        z = np.full(node.z_stop.shape, 0.3, np.float32)
        last_goal, ticks = None, []  # (the tick's clock, whether it fell back to the stop goal)
        for k in range(30):
            now = time.monotonic()
            cams.publish(CameraFrame(stamp=now, seq=k, image=image, camera="head"))
            states.publish(_standing_state(body, now, k))
            if k < 5:
                goals.publish(LatentGoal(stamp=now, seq=k, z=z, instruction="wave with your left hand",
                                         image_stamp=now))
                last_goal = now
            time.sleep(0.003)
            before, now = node.fallback_ticks, time.monotonic()
            node.tick(now)
            ticks.append((now, node.fallback_ticks > before))
            time.sleep(0.035)
        assert node.instruction == "wave with your left hand"
        kept = [e for e in node.events if e["instruction"] == "wave with your left hand"]
        assert len(kept) >= 5  # the last goal was kept after its producer went quiet
        deadline = last_goal + rt.goal_timeout_s
        assert [fell for t, fell in ticks] == [t > deadline for t, _ in ticks]  # from the first tick past the timeout
        assert node.events[-1]["instruction"].startswith("(stop")
        assert chunks.latest(timeout_s=0.1) is not None
    node.close()


def test_instruction_script_parses_and_names_bad_lines():
    assert parse_script("0 walk to the red box\n# comment\n\n4.5 wave with your left hand  # later\n") == [
        (0.0, "walk to the red box"), (4.5, "wave with your left hand")]
    for text, line in (("0 stop\nsoon wave", 2), ("3 stop\n1 wave", 2), ("-1 stop", 1), ("2", 1)):
        with pytest.raises(ValueError, match=f"script.txt:{line}:"):
            parse_script(text, "script.txt")
    with pytest.raises(ValueError, match="no instructions"):
        parse_script("# nothing\n", "script.txt")
    assert math.isfinite(parse_script("0 stop")[0][0])


def test_instructions_change_mid_run_from_a_script_and_stdin(tmp_path):
    """``--script`` issues timed instructions on the run's clock and ``--stdin`` takes new ones while it runs;
    the stack reacts to each within about S2's period plus S1's (generous bound for a loaded machine)."""
    import re
    import subprocess
    import sys
    import threading

    script = tmp_path / "script.txt"
    script.write_text("0 stop\n2 turn to face the red box\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "systems.cli", "run", "--script", str(script), "--stdin", "seconds=8", *COMMITTED,
         f"out_dir={tmp_path}", "tracking.enabled=false"],
        cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    printed: list[str] = []
    reader = threading.Thread(target=lambda: printed.extend(iter(lambda: proc.stdout.read(1), "")), daemon=True)
    reader.start()
    give_up = time.monotonic() + 240
    while time.monotonic() < give_up and proc.poll() is None:
        clock = re.findall(r"\[\s*(-?[\d.]+)/", "".join(printed))  # the progress line: [  3.1/8 s] ...
        if clock and float(clock[-1]) >= 4.0:
            break
        time.sleep(0.1)
    proc.stdin.write("wave with your left hand\n")
    proc.stdin.flush()
    assert proc.wait(240) in (0, 1)
    reader.join(10)
    summary = json.loads(next(tmp_path.glob("run-*/summary.json")).read_text())
    assert [t["instruction"] for t in summary["tasks"]] == [
        "stop", "turn to face the red box", "wave with your left hand"], summary["events"]
    for t in summary["tasks"]:
        assert t["reaction_ms"] is not None and 0 < t["reaction_ms"] < 1000, t
    assert [t["family"] for t in summary["tasks"]] == ["stop", "face", "wave_left"]
    assert any("(stdin)" in e for e in summary["events"])


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_cluster(monkeypatch):
    """A Ray cluster started with ``ray start`` (as on a robot: ``onboard: 1``) with token authentication (one
    token for the cluster and this driver), stopped by killing exactly the processes of its own temp dir
    (``ray stop`` would stop every Ray cluster on the machine)."""
    import shutil
    import signal
    import subprocess

    if shutil.which("ray") is None:
        pytest.skip("the ray CLI is not on PATH")
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", os.urandom(16).hex())
    temp = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))  # short: Ray's socket paths live below it
    port = _free_port()
    subprocess.run(["ray", "start", "--head", f"--port={port}", "--num-cpus=2", '--resources={"onboard": 1}',
                    f"--temp-dir={temp}", "--include-dashboard=false", "--disable-usage-stats"],
                   check=True, capture_output=True, timeout=120, env=os.environ.copy())
    try:
        yield f"127.0.0.1:{port}"
    finally:
        for proc in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if str(temp) in proc.read_bytes().decode(errors="replace"):
                    os.kill(int(proc.parent.name), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        shutil.rmtree(temp, ignore_errors=True)


def test_joins_a_ray_start_cluster_and_places_layers_by_the_onboard_resource(tmp_path, ray_cluster):
    """``humanoid run realtime.ray_address=...`` in a fresh process (Ray reads the cluster's token at import)."""
    common = [*COMMITTED, f"realtime.ray_address={ray_cluster}", "tracking.enabled=false", "video.enabled=false",
              "seconds=3"]

    def run(*args: str):
        return humanoid("run", *common, *args, "--instruction", "stop", cwd=tmp_path)

    # five onboard layers asking for all of the node's one "onboard" each: they cannot all be placed
    greedy = run("realtime.onboard=1.0", "realtime.startup_timeout_s=8")
    assert greedy.returncode == 2 and "onboard" in greedy.stderr, greedy.stderr[-2000:]
    out = run("--json")
    assert out.returncode in (0, 1), out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    for name, row in summary["layers"].items():
        assert row["restarts"] == 0 and row["ticks"] > 0.5 * 3.0 * NOMINAL_HZ[name], (name, row)
    assert summary["layers"]["body"]["inputs"]["command"]["received"] > 50


def test_loop_priorities_apply_to_the_loop_thread_only():
    import threading

    from systems.runtime.realtime import set_thread_nice

    events: list[dict] = []
    seen: dict[str, int] = {}

    def loop(name: str, nice: int) -> None:
        set_thread_nice(name, nice, events)
        seen[name] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    for name, nice in (("s2", 7), ("s1", 0)):  # lowering a priority is always permitted
        thread = threading.Thread(target=loop, args=(name, nice))
        thread.start()
        thread.join()
    assert seen == {"s2": 7, "s1": base} and events == [{"loop": "s2", "nice": 7}]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # the caller's thread is untouched
    with pytest.raises(ValueError, match=r"loop_nice.*-20..19.*'s0': -30"):
        RealtimeConfig(loop_nice={"s0": -30})
