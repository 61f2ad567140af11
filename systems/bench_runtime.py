"""``humanoid bench runtime``: the real-time data path (DESIGN §4), measured in one run.

1. ZeroMQ: a spawned publisher process sends a 16-frame x 65-joint :class:`MotionChunk` every 1 ms over
   ``ipc://``; the main process subscribes and busy-polls (as a loop spinning to its deadline does). The
   publisher builds and encodes each message for a send time
   (its ``stamp``) a little in the future, waits for that instant and sends the bytes then, so
   ``zmq_one_way_us`` = receipt - ``stamp`` is the transport alone: from the bytes handed to ZeroMQ to the
   frame off the consumer's socket (:attr:`Subscriber.last_receipt`; one node, one clock). Building,
   validating and encoding a message, and decoding and validating it, are the same work whatever carries
   the bytes: they are measured apart (``encode_us_p50`` in the publisher after its sleep, i.e. as a loop
   that wakes for its tick pays it; ``decode_us_p50`` in the consumer) and added to both paths in
   ``zmq_vs_ray_ratio_with_codec``.
2. Ray: a Ray actor method called with the same encoded bytes (encoded before ``t0``, as above).
   ``ray_call_us`` is the blocking call (submit -> ``ray.get`` returns: what a per-tick Ray call would cost
   a loop); ``ray_one_way_us`` is submit -> the bytes in the actor's method. ``zmq_vs_ray_ratio`` =
   ``ray_call_us_p50 / zmq_one_way_us_p50``.
3. S0 loops: a :class:`~systems.runtime.loop.PeriodicLoop` whose step is an S0-sized MLP forward
   (349 -> 512 -> 256 -> 128 -> 65, ELU, one torch thread) plus encoding a :class:`JointCommand`, at 500 Hz
   and at 1 kHz for ``loop_seconds`` each, in a child process of its own: a fresh interpreter without the
   ZeroMQ I/O thread or Ray's driver threads, as S0 will run in its own actor process in the runner.
4. The lockstep real-time factor of the full trained stack, without and with the video
   (:func:`lockstep_rtf`).

The parts run one after the other (never concurrently) so that they do not disturb each other.
The children are plain ``python -m systems.bench_runtime ROLE ...`` processes (DESIGN §7: processes
connected by ZeroMQ): arguments on the command line, the S0 result as JSON on stdout, and the parent
stops the publisher by closing its stdin (which also stops it if the parent dies). Nothing is pickled,
and no multiprocessing helper process (resource tracker) outlives the run. Speed goals are reported here,
never asserted in tests.
"""

from __future__ import annotations

import json
import logging
import math
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from infra.codec import encode
from infra.config.stack import BenchRuntimeConfig
from infra.messages import CommandMode, JointCommand, MotionChunk
from infra.transport import Publisher, Subscriber, ipc_address, ipc_path
from systems.runtime.loop import PeriodicLoop, wait_until

__all__ = ["bench_runtime", "bench_runtime_cmd"]

HORIZON, N_DOF = 16, 65
"""MotionChunk size: S1's chunk of 16 frames for the 65-DoF body."""
S0_LAYERS = (349, 512, 256, 128, 65)
"""S0 policy MLP widths: observation -> hidden -> joint targets."""
PUBLISH_PERIOD_S = 1e-3
"""Interval between the benchmark publisher's messages."""
LEAD_S = 3e-4
"""The publisher builds and encodes a message this long before its send time (longer than encoding takes)."""
CHILD_TIMEOUT_S = 120.0
"""Longest wait for a child's start-up (imports under load) before giving up."""
REPO = Path(__file__).resolve().parents[1]


def _chunk(seq: int, stamp: float, joint_pos: np.ndarray) -> MotionChunk:
    """A realistic S1 output: ``joint_pos`` (H, n_dof) float32 plus the root trajectory."""
    return MotionChunk(stamp=stamp, seq=seq, joint_pos=joint_pos, root_height=np.full(HORIZON, 0.9, np.float32),
                       root_heading=np.zeros(HORIZON, np.float32), root_planar_vel=np.zeros((HORIZON, 2), np.float32),
                       start_time=stamp, frame_dt=0.02)


def _joint_pos() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((HORIZON, N_DOF), np.float32)  # (H, n_dof)


def _percentiles_us(seconds: list[float] | np.ndarray) -> tuple[float, float]:
    p50, p99 = np.percentile(np.asarray(seconds) * 1e6, [50, 99])
    return round(float(p50), 1), round(float(p99), 1)


def _spawn(role: str, *args: str, stdin: int, stdout: int) -> subprocess.Popen:
    """``python -m systems.bench_runtime ROLE ARGS...`` with this repository first on the path."""
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", "systems.bench_runtime", role, *args], stdin=stdin,
                            stdout=stdout, env=env, cwd=REPO)


def _stop_process(proc: subprocess.Popen) -> None:
    """Close its pipes, wait, then kill: never leave the child behind."""
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()
    try:
        proc.wait(10.0)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------- ZeroMQ


def _publisher_main(address: str, period_s: float) -> None:
    """Child process: publish MotionChunks every ``period_s`` until stdin reaches EOF (the parent closed it).

    Each message is built for a send time ``LEAD_S`` ahead and sent at that instant; one line per message on
    stderr would disturb the timing, so the build + encode times go out as one JSON line on stdout at the end.
    """
    joint_pos = _joint_pos()
    encode_s = []
    with Publisher(address) as pub:
        seq = 0
        while not select.select([sys.stdin], [], [], 0.0)[0]:
            t0 = time.monotonic()
            send_at = t0 + LEAD_S
            data = encode(_chunk(seq, send_at, joint_pos))
            encode_s.append(time.monotonic() - t0)
            wait_until(send_at, spin_s=LEAD_S)  # late only if building took longer than LEAD_S (then counted)
            pub.send_encoded(data)
            seq += 1
            time.sleep(period_s)
    print(json.dumps({"encode_us_p50": _percentiles_us(encode_s[-5000:])[0]}), flush=True)


def zmq_latency(cfg: BenchRuntimeConfig) -> tuple[np.ndarray, np.ndarray, int, float]:
    """(one-way latencies (messages,) s, decode times (messages,) s, frames rejected, encode µs p50) over
    ``ipc://``."""
    address = ipc_address("bench")
    samples: list[tuple[float, float]] = []
    proc = None
    try:
        with Subscriber(address, MotionChunk) as sub:  # connects first; ZeroMQ retries until the bind exists
            proc = _spawn("publish", address, repr(PUBLISH_PERIOD_S), stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE)
            give_up = time.monotonic() + CHILD_TIMEOUT_S + (cfg.warmup + cfg.messages) * 0.05
            while len(samples) < cfg.warmup + cfg.messages:
                msg = sub.latest()  # busy-poll: the transport, not the wake-up of a sleeping consumer
                if msg is not None:
                    samples.append((sub.last_receipt - msg.stamp, time.monotonic() - sub.last_receipt))
                elif proc.poll() is not None or time.monotonic() > give_up:
                    raise RuntimeError(f"bench runtime: publisher at {address} delivered {len(samples)} of "
                                       f"{cfg.warmup + cfg.messages} messages (exit code {proc.poll()})")
            rejected = sub.rejected
            proc.stdin.close()  # EOF: the publisher stops and reports its encode times
            encode_us = json.loads(proc.stdout.readline() or "{}").get("encode_us_p50", math.nan)
    finally:
        if proc is not None:
            _stop_process(proc)
        ipc_path(address).unlink(missing_ok=True)  # the child removes it; this covers a killed child
    one_way, decode_s = np.asarray(samples[cfg.warmup:]).T
    return one_way, decode_s, rejected, encode_us


# --------------------------------------------------------------------------- Ray


class _Sink:
    """Ray actor: returns ``time.monotonic()`` at which the MotionChunk bytes reached its method."""

    def deliver(self, data: bytes) -> float:
        return time.monotonic()


def ray_latency(cfg: BenchRuntimeConfig) -> tuple[np.ndarray, np.ndarray]:
    """(blocking call times (messages,) s, one-way times to the bytes in the actor's method (messages,) s)."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    sink = None
    try:
        sink = ray.remote(num_cpus=0)(_Sink).remote()
        joint_pos = _joint_pos()
        calls, one_way = np.empty(cfg.messages), np.empty(cfg.messages)
        for i in range(cfg.warmup + cfg.messages):
            data = encode(_chunk(i, time.monotonic(), joint_pos))
            t0 = time.monotonic()
            t_actor = ray.get(sink.deliver.remote(data))
            t1 = time.monotonic()
            if i >= cfg.warmup:
                calls[i - cfg.warmup], one_way[i - cfg.warmup] = t1 - t0, t_actor - t0
        return calls, one_way
    finally:
        if sink is not None:
            ray.kill(sink)
        if started:
            ray.shutdown()


# --------------------------------------------------------------------------- S0 loops


def _s0_step_fn(warmup: int):
    """An S0-sized step: MLP forward on one thread + encode a JointCommand. Returns (step, warm-up ms p50)."""
    import torch

    torch.set_num_threads(1)
    layers: list[torch.nn.Module] = []
    for fan_in, fan_out in zip(S0_LAYERS[:-1], S0_LAYERS[1:]):
        layers += [torch.nn.Linear(fan_in, fan_out), torch.nn.ELU()]
    mlp = torch.nn.Sequential(*layers[:-1]).eval()
    obs = torch.randn(1, S0_LAYERS[0])  # (1, obs_dim)
    kp, kd, tau = np.full(N_DOF, 100.0, np.float32), np.full(N_DOF, 2.0, np.float32), np.zeros(N_DOF, np.float32)
    seq = [0]

    def step(now: float) -> None:
        with torch.inference_mode():
            q = mlp(obs)[0].numpy()  # (n_dof,) float32
        encode(JointCommand(stamp=now, seq=seq[0], q_target=q, kp=kp, kd=kd, tau_ff=tau, mode=CommandMode.RUN))
        seq[0] += 1

    times = []
    for _ in range(max(warmup, 1)):
        t0 = time.monotonic()
        step(t0)
        times.append(time.monotonic() - t0)
    return step, float(np.percentile(times, 50) * 1e3)


def _loops_main(loop_seconds: float, warmup: int, nice: int) -> None:
    """Child process: run the S0 loop at 500 Hz then 1 kHz at the nice value the real-time runner gives S0;
    print the summaries as one JSON line."""
    from systems.runtime.realtime import set_thread_nice

    priority: list[dict] = []
    set_thread_nice("s0", nice, priority)
    step, step_ms = _s0_step_fn(warmup)
    out = {"step_ms_p50_warmup": step_ms, "priority": priority}
    for label, hz in (("500hz", 500), ("1khz", 1000)):
        loop = PeriodicLoop(1.0 / hz, f"s0-{label}", step)
        out[label] = loop.run(until=time.monotonic() + loop_seconds)
    print(json.dumps(out), flush=True)


def s0_loops(cfg: BenchRuntimeConfig) -> dict:
    """Summaries of the S0 loops at 500 Hz and 1 kHz, measured in a child process."""
    proc = _spawn("s0-loops", repr(cfg.loop_seconds), str(cfg.warmup), str(cfg.loop_nice), stdin=subprocess.DEVNULL,
                  stdout=subprocess.PIPE)
    try:
        out, _ = proc.communicate(timeout=CHILD_TIMEOUT_S + 2 * cfg.loop_seconds)
    except subprocess.TimeoutExpired:
        raise RuntimeError("bench runtime: the S0 loop process sent no result in time") from None
    finally:
        _stop_process(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"bench runtime: the S0 loop process failed (exit code {proc.returncode})")
    return json.loads(out)


# --------------------------------------------------------------------------- lockstep real-time factor


def lockstep_rtf(cfg: BenchRuntimeConfig) -> dict:
    """Simulated / wall-clock seconds of the full trained stack in the lockstep runner (one process, one torch
    thread): the head camera, S2, S1, S0 and the physics every tick, on the instruction "stop" (an episode
    that runs to its end). ``lockstep_rtf_render`` adds the third-person video at 12.5 fps (320 x 240), as
    ``humanoid run`` records it. Each is the median of ``rtf_repeats`` runs, reported with their min and max."""
    import torch

    from infra.gl import ensure_gl_backend

    ensure_gl_backend()
    from s1_policy.policy import S1Policy
    from s2_vlm.policy import S2Policy
    from systems.layers import S1Layer
    from systems.lockstep import LockstepRunner
    from systems.s2_layer import layer_for_stack
    from systems.tasks import run_layout, task_for

    torch.set_num_threads(1)
    stack = cfg.stack
    s1, s2 = S1Policy.for_stack(cfg.s1_checkpoint, stack), S2Policy(cfg.s2_checkpoint)
    layout = run_layout(0, stack.scene)
    runner = LockstepRunner(stack)
    out = {"lockstep_physics_hz": round(1.0 / stack.sim.sim_dt), "lockstep_s1_steps": s1.model.head.sample_steps}
    try:
        task = task_for("stop", layout, cfg.rtf_seconds)
        layers = (S1Layer(s1, runner.body.n_dof, runner.backend.ctrl_dt), layer_for_stack(s2, s1, stack))
        runner.run(task, *layers, video_every=4, max_seconds=0.5)  # warm-up: GL contexts, first inferences
        factors: dict[str, list[float]] = {"lockstep_rtf": [], "lockstep_rtf_render": []}
        for _ in range(cfg.rtf_repeats):  # interleaved, so a slow spell of the machine hits both alike
            for key, video_every in (("lockstep_rtf", 0), ("lockstep_rtf_render", 4)):
                t0 = time.monotonic()
                result = runner.run(task, *layers, video_every=video_every, max_seconds=cfg.rtf_seconds)
                factors[key].append(result.duration_s / (time.monotonic() - t0))
        for key, values in factors.items():
            out |= {key: round(float(np.median(values)), 3), f"{key}_min": round(min(values), 3),
                    f"{key}_max": round(max(values), 3)}
        out["lockstep_rtf_repeats"] = cfg.rtf_repeats
    finally:
        runner.close()
    return out


# --------------------------------------------------------------------------- entry points


def bench_runtime(cfg: BenchRuntimeConfig) -> dict:
    """All the numbers of ``humanoid bench runtime`` from one run (latencies in µs, loop times in ms)."""
    load_1m = os.getloadavg()[0]
    zmq_s, decode_s, rejected, encode_us = zmq_latency(cfg)
    ray_s, ray_one_way_s = ray_latency(cfg)
    loops = s0_loops(cfg)
    rtf = lockstep_rtf(cfg) if cfg.rtf_seconds > 0 else {}
    zmq_p50, zmq_p99 = _percentiles_us(zmq_s)
    ray_p50, ray_p99 = _percentiles_us(ray_s)
    decode_us = _percentiles_us(decode_s)[0]
    codec = encode_us + decode_us  # the same work on either path
    result = {"zmq_one_way_us_p50": zmq_p50, "zmq_one_way_us_p99": zmq_p99,
              "ray_call_us_p50": ray_p50, "ray_call_us_p99": ray_p99,
              "ray_one_way_us_p50": _percentiles_us(ray_one_way_s)[0],
              "zmq_vs_ray_ratio": round(ray_p50 / zmq_p50, 2) if zmq_p50 > 0 else math.nan,
              "encode_us_p50": encode_us, "decode_us_p50": decode_us,
              "zmq_vs_ray_ratio_with_codec": round((codec + ray_p50) / (codec + zmq_p50), 2),
              "zmq_rejected": rejected,
              "message_bytes": len(encode(_chunk(0, 0.0, _joint_pos())))}
    for label, summary in ((k, loops[k]) for k in ("500hz", "1khz")):
        result |= {f"s0_{label}_miss_rate": round(summary["deadline_miss_rate"], 4),
                   f"s0_{label}_jitter_ms_p50": round(summary["jitter_ms_p50"], 4),
                   f"s0_{label}_jitter_ms_p99": round(summary["jitter_ms_p99"], 4),
                   f"s0_{label}_rate_hz": round(summary["rate_hz"], 2),
                   f"s0_{label}_step_ms_p99": round(summary["step_ms_p99"], 4),
                   f"s0_{label}_ticks": summary["ticks"], f"s0_{label}_skipped": summary["skipped"]}
    applied = loops["priority"][0]["nice"] if loops["priority"] else 0
    return result | rtf | {"s0_step_ms_p50": round(loops["step_ms_p50_warmup"], 4), "s0_loop_nice": applied,
                           "messages": cfg.messages, "loop_seconds": cfg.loop_seconds, "cpus": os.cpu_count(),
                           "load_avg_1m_before": load_1m}


def bench_runtime_cmd(cfg: BenchRuntimeConfig, as_json: bool) -> int:
    result = bench_runtime(cfg)
    print(json.dumps(result) if as_json else "\n".join(f"{k:<28} {v}" for k, v in result.items()))
    return 0


def _child_main(argv: list[str]) -> None:
    """Entry of the children: ``publish ADDRESS PERIOD_S`` or ``s0-loops LOOP_SECONDS WARMUP NICE``."""
    roles = {"publish": (2, lambda a, p: _publisher_main(a, float(p))),
             "s0-loops": (3, lambda t, w, n: _loops_main(float(t), int(w), int(n)))}
    if not argv or argv[0] not in roles or len(argv) != 1 + roles[argv[0]][0]:
        raise SystemExit("usage: python -m systems.bench_runtime publish ADDRESS PERIOD_S | s0-loops LOOP_SECONDS "
                         f"WARMUP NICE (started by `humanoid bench runtime`), got {argv}")
    roles[argv[0]][1](*argv[1:])


if __name__ == "__main__":
    _child_main(sys.argv[1:])
