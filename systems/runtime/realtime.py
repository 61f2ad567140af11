"""The real-time runner: the body, S0, S1 and S2 as Ray actors, each ticking on the wall clock (DESIGN §4).

Each actor hosts one :mod:`systems.runtime.nodes` node in a :class:`~systems.runtime.loop.PeriodicLoop`
thread; the data between them flows over ZeroMQ latest-value streams (``ipc://`` files in a run folder on
one node, ``tcp://`` fixed ports across nodes), never through Ray calls. Ray does what it is good at:

* **placement**: the body, its head camera, S0 (and its standby) and S1 ask for the custom resource
  ``onboard`` (a robot's computer declares it; the local Ray this runner starts declares ``onboard: 1``);
  S2 asks for a GPU where the cluster has one;
* **lifecycle**: ``max_restarts`` (a killed or crashed actor comes back; the driver re-wires and restarts
  its loop on the run's schedule, and the other layers ride out the gap on their fallbacks);
* **health**: the driver asks every actor for its status each ``health_period_s``; a loop that died with an
  exception, or an actor that stops answering, is killed for Ray to restart;
* **shutdown**: at the end, on an error or on Ctrl-C the driver stops every loop, kills the actors, removes
  the socket files and shuts down the Ray it started: no orphaned processes or sockets.

Configuration travels to the actors as JSON (plain data), reports come back as JSON; nothing is pickled
by this module, and no message of the data path goes through Ray.

Schedule: every loop gets the same ``t0`` and ``t_end`` (monotonic s on one node); loop k's deadlines are
``t0 + phase_k + n * period_k``. The driver issues the instructions of the script at ``t0 + time``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import select
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from infra.gl import ensure_gl_backend

ensure_gl_backend()  # before mujoco is imported: an actor process imports this module first

import numpy as np  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from infra.config import to_dict  # noqa: E402
from infra.config.stack import RealtimeConfig, StackConfig  # noqa: E402
from infra.messages import Instruction  # noqa: E402
from infra.transport import Publisher  # noqa: E402
from systems.runtime.loop import PeriodicLoop  # noqa: E402
from systems.runtime.nodes import PRODUCER, STREAMS, BodyNode, CameraNode, S0Node, S1Node, S2Node  # noqa: E402

__all__ = ["LAYERS", "LayerHost", "RealtimeError", "RealtimeRunner", "parse_script"]

log = logging.getLogger("humanoid.runtime")

LAYERS = ("body", "camera", "s0", "s0_standby", "s1", "s2")
"""The actors, in start-up order (producers of the state first); ``s0_standby`` with ``realtime.s0_standby``."""
_NODES = {"body": BodyNode, "camera": CameraNode, "s0": S0Node, "s0_standby": S0Node, "s1": S1Node, "s2": S2Node}
TRACE_TICKS = 3000
"""Per-tick timings kept per layer for the timing plot (the most recent)."""


class RealtimeError(RuntimeError):
    """The stack could not be started (actors not placed or not ready in time)."""


def parse_script(text: str, source: str = "script") -> list[tuple[float, str]]:
    """A timed instruction script: one ``SECONDS INSTRUCTION`` per line (``#`` comments, blank lines ignored),
    times non-decreasing from 0. Raises ValueError naming the line."""
    out: list[tuple[float, str]] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        head, _, rest = line.partition(" ")
        try:
            t = float(head)
        except ValueError:
            raise ValueError(f"{source}:{n}: expected 'SECONDS INSTRUCTION', got {raw!r}") from None
        if not math.isfinite(t) or t < 0 or (out and t < out[-1][0]) or not rest.strip():
            raise ValueError(f"{source}:{n}: times must be finite, >= 0 and non-decreasing, with an instruction "
                             f"after them; got {raw!r}")
        out.append((t, rest.strip()))
    if not out:
        raise ValueError(f"{source}: no instructions")
    return out


def _rebuild(schema: type, data: dict):
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), data))


class LayerHost:
    """The Ray actor of one layer: builds its node (loads the model, binds its output streams) on creation,
    runs the node's loop in a thread from :meth:`start` until the run's end or :meth:`stop`."""

    def __init__(self, kind: str, spec: str) -> None:
        logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {kind} %(levelname)s %(message)s")
        args = json.loads(spec)
        stack, rt = _rebuild(StackConfig, args.pop("stack")), _rebuild(RealtimeConfig, args.pop("rt"))
        self.kind, self.rt = kind, rt
        self.node = _NODES[kind](stack, rt, **args)
        self.loops: dict[str, PeriodicLoop] = {}
        self.threads: list[threading.Thread] = []
        self.stop_event = threading.Event()
        self.error: str | None = None
        self.priority_events: list[dict] = []

    def ready(self) -> str:
        import ray

        return json.dumps({"ip": ray.util.get_node_ip_address(), "pid": os.getpid()})

    def start(self, addresses: str, t0: float, t_end: float) -> bool:
        """Connect the inputs and start the node's loops on the run's schedule (a restarted actor joins at its
        next deadlines). Returns False if it was already started."""
        if self.threads:
            return False
        self.node.connect(json.loads(addresses))
        now = time.monotonic()
        for spec in self.node.loops():
            first = t0 + spec.phase_s
            if now > first:
                first += math.ceil((now - first) / spec.period_s) * spec.period_s
            loop = PeriodicLoop(spec.period_s, spec.name, spec.step, spin_s=self.rt.spin_s)
            self.loops[spec.name] = loop
            thread = threading.Thread(target=self._run, args=(spec, loop, first, t_end), name=f"{spec.name}-loop",
                                      daemon=True)
            self.threads.append(thread)
        for thread in self.threads:
            thread.start()
        return True

    def _run(self, spec, loop: PeriodicLoop, first: float, t_end: float) -> None:
        try:
            set_thread_nice(spec.name, self.rt.loop_nice.get(spec.name, 0), self.priority_events)
            spec.warmup()
            loop.run(until=t_end, stop_event=self.stop_event, start=first)
        except Exception:  # reported by status(); the driver restarts the actor
            self.error = f"{spec.name}: " + traceback.format_exc(limit=8)
            log.error("%s loop died:\n%s", spec.name, self.error)
        finally:
            spec.cleanup()  # in this thread: a GL context belongs to the thread that made it

    def status(self) -> str:
        return json.dumps({"started": bool(self.threads), "running": all(t.is_alive() for t in self.threads)
                           if self.threads else False,
                           "ticks": {k: v.stats.ticks for k, v in self.loops.items()}, "error": self.error})

    def stop(self) -> str:
        """Stop the loops, close the sockets and return the report (JSON): the node's report plus, per loop,
        its timing summary and the recent per-tick trace."""
        self.stop_event.set()
        for thread in self.threads:
            thread.join(30.0)
        report = self.node.report()
        self.node.close()
        report["loops"] = {}
        for name, loop in self.loops.items():
            periods, _, durations, _ = loop.stats.arrays()
            report["loops"][name] = loop.stats.summary() | {
                "trace": {"period_ms": np.round(periods[-TRACE_TICKS:] * 1e3, 3).tolist(),
                          "step_ms": np.round(durations[-TRACE_TICKS:] * 1e3, 3).tolist()}}
        report["error"] = self.error
        report["priority"] = self.priority_events
        return json.dumps(report)


def set_thread_nice(name: str, nice: int, events: list[dict]) -> None:
    """Give the calling thread the nice value ``nice`` (Linux: a thread's own; 0 = leave it). A refused raise
    (no CAP_SYS_NICE) leaves the thread at its priority and records why in ``events``."""
    if nice == 0 or not hasattr(os, "setpriority"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, nice)
        events.append({"loop": name, "nice": os.getpriority(os.PRIO_PROCESS, tid)})
    except PermissionError as exc:
        events.append({"loop": name, "nice": os.getpriority(os.PRIO_PROCESS, tid), "refused": nice})
        log.warning("%s: nice %d refused (%s): the loop runs at the default priority", name, nice, exc)


@dataclass
class _Layer:
    kind: str
    handle: object
    restarts: int = 0
    started: bool = False
    last_ok: float = field(default_factory=time.monotonic)


class RealtimeRunner:
    """Runs the stack on the wall clock. ``run()`` returns the per-layer reports and what the body saw."""

    def __init__(self, stack: StackConfig, rt: RealtimeConfig, s1_checkpoint: str, s2_checkpoint: str,
                 layout: np.ndarray, out_dir: Path, min_similarity: float = 0.5) -> None:
        self.stack, self.rt = stack, rt
        self.s1_checkpoint, self.s2_checkpoint = str(Path(s1_checkpoint).resolve()), str(Path(s2_checkpoint).resolve())
        self.layout = np.asarray(layout, dtype=float)
        self.out_dir = Path(out_dir)
        self.min_similarity = min_similarity
        self.layers: dict[str, _Layer] = {}
        self.events: list[str] = []

    # ---------------------------------------------------------------- wiring

    def _addresses(self, ips: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        """(bind address, connect address) per stream."""
        if self.rt.transport == "ipc":
            addr = {s: f"ipc://{self.sock_dir}/{s}" for s in STREAMS}
            return addr, addr
        ports = {s: self.rt.tcp_base_port + i for i, s in enumerate(STREAMS)}
        bind = {s: f"tcp://*:{p}" for s, p in ports.items()}
        connect = {s: f"tcp://{ips.get(PRODUCER[s], '127.0.0.1')}:{p}" for s, p in ports.items()}
        return bind, connect

    def _options(self, kind: str, ray) -> dict:
        opts = {"name": f"humanoid-{kind}-{os.getpid()}-{self.run_id}", "max_restarts": self.rt.max_restarts,
                "max_task_retries": 0, "num_cpus": 0}
        if kind == "s2":
            gpus = ray.cluster_resources().get("GPU", 0)
            if self.rt.s2_gpu == "yes" or (self.rt.s2_gpu == "auto" and gpus >= 1):
                opts["num_gpus"] = 1
        else:
            opts["resources"] = {"onboard": self.rt.onboard}
        return opts

    def _spec(self, kind: str, bind: dict[str, str], seconds: float) -> str:
        args: dict = {"stack": to_dict(self.stack), "rt": to_dict(self.rt), "bind": bind}
        if kind == "body":
            args |= {"layout": self.layout.tolist(), "seconds": seconds,
                     "record_path": str((self.out_dir / "recording.npz").resolve())}
        if kind == "camera":
            args |= {"layout": self.layout.tolist(), "record_path": str((self.out_dir / "head.npz").resolve())}
        if kind == "s0_standby":
            args["standby"] = True
        if kind == "s1":
            args["s1_checkpoint"] = self.s1_checkpoint
        if kind == "s2":
            args |= {"s1_checkpoint": self.s1_checkpoint, "s2_checkpoint": self.s2_checkpoint,
                     "min_similarity": self.min_similarity}
        return json.dumps(args)

    # ---------------------------------------------------------------- the run

    def run(self, script: list[tuple[float, str]], seconds: float, read_stdin: bool = False,
            on_progress: Callable[[float, str], None] | None = None,
            during: Callable[[RealtimeRunner, float], None] | None = None) -> dict:
        """Run for ``seconds`` of wall-clock time, issuing ``script`` [(time s, instruction)] and, with
        ``read_stdin``, every line read from standard input as the new instruction. ``during(runner, t)`` is
        called from the supervision loop (tests use it to kill an actor). Returns the driver's record."""
        import ray

        started_ray = not ray.is_initialized()
        if started_ray:
            kwargs: dict = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": True}
            if self.rt.ray_address:
                ray.init(address=self.rt.ray_address, **kwargs)
            else:
                ray.init(num_cpus=os.cpu_count(), resources={"onboard": 1.0}, **kwargs)
        self.out_dir.mkdir(parents=True, exist_ok=True)  # the body and the camera write their recordings here
        self.run_id = os.urandom(3).hex()
        self.sock_dir = tempfile.mkdtemp(prefix="humanoid-rt-")
        publisher = None
        try:
            bind, _ = self._addresses({})
            self.layers = {}
            for kind in (k for k in LAYERS if k != "s0_standby" or self.rt.s0_standby):
                host = ray.remote(LayerHost).options(**self._options(kind, ray))
                self.layers[kind] = _Layer(kind, host.remote(kind, self._spec(kind, bind, seconds)))
            publisher = Publisher(bind["instruction"])
            ready = self._ready(ray, list(self.layers))
            ips = {k: v["ip"] for k, v in ready.items()} | {"driver": ray.util.get_node_ip_address()}
            _, self.connect = self._addresses(ips)
            self.t0 = time.monotonic() + 1.0  # every loop connected (and the camera's GL context made) first
            self.t_end = self.t0 + seconds
            ray.get([lay.handle.start.remote(json.dumps(self.connect), self.t0, self.t_end)
                     for lay in self.layers.values()])
            for lay in self.layers.values():
                lay.started = True
            self.issued: list[dict] = []
            self.interrupted = False
            try:
                self._supervise(ray, publisher, script, read_stdin, on_progress, during)
            except KeyboardInterrupt:  # Ctrl-C: stop every loop now and report what ran (a second one aborts)
                self.interrupted = True
                self.events.append(f"{time.monotonic() - self.t0:.2f} s: interrupted (Ctrl-C)")
                log.warning("realtime: interrupted; stopping the layers")
            wall_s = min(time.monotonic(), self.t_end) - self.t0
            reports = self._stop_all(ray)
            issued = self.issued
        finally:
            for lay in self.layers.values():
                try:
                    ray.kill(lay.handle, no_restart=True)
                except Exception:  # already gone
                    pass
            if publisher is not None:
                publisher.close()
            shutil.rmtree(self.sock_dir, ignore_errors=True)
            if started_ray:
                ray.shutdown()
        return {"reports": reports, "issued": issued, "t0": self.t0, "wall_s": wall_s, "interrupted": self.interrupted,
                "restarts": {k: v.restarts for k, v in self.layers.items()}, "events": self.events}

    def _ready(self, ray, kinds: list[str]) -> dict[str, dict]:
        refs = {k: self.layers[k].handle.ready.remote() for k in kinds}
        try:
            values = ray.get(list(refs.values()), timeout=self.rt.startup_timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise RealtimeError(f"realtime: the layer actors were not ready within {self.rt.startup_timeout_s} s "
                               f"(realtime.startup_timeout_s); is the 'onboard' resource declared on a node?") from None
        return {k: json.loads(v) for k, v in zip(refs, values)}

    def _supervise(self, ray, publisher: Publisher, script: list[tuple[float, str]], read_stdin: bool,
                   on_progress, during) -> None:
        issued = self.issued  # {"t": s after t0, "stamp": monotonic, "text": ...}
        pending = list(script)
        next_publish = next_health = next_progress = 0.0
        stdin_open = read_stdin
        seq = 0
        while (now := time.monotonic()) < self.t_end:
            t = now - self.t0
            while pending and pending[0][0] <= max(t, 0.0):
                _, text = pending.pop(0)
                issued.append({"t": round(max(t, 0.0), 3), "stamp": max(now, self.t0), "text": text})
                self.events.append(f"{max(t, 0):.2f} s: instruction {text!r}")
            if stdin_open and select.select([sys.stdin], [], [], 0.0)[0]:
                line = sys.stdin.readline()
                if not line:
                    stdin_open = False
                elif line.strip():
                    issued.append({"t": round(max(t, 0.0), 3), "stamp": max(now, self.t0), "text": line.strip()})
                    self.events.append(f"{max(t, 0):.2f} s: instruction {line.strip()!r} (stdin)")
            if issued and now >= next_publish:
                publisher.publish(Instruction(stamp=issued[-1]["stamp"], seq=seq, text=issued[-1]["text"]))
                seq += 1
                next_publish = now + self.rt.instruction_period_s
            if now >= next_health:
                self._health(ray)
                next_health = now + self.rt.health_period_s
            if during is not None:
                during(self, t)
            if on_progress is not None and now >= next_progress:
                on_progress(t, issued[-1]["text"] if issued else "")
                next_progress = now + 1.0
            time.sleep(0.02)

    def _health(self, ray) -> None:
        """Ask every actor for its status; restart the ones whose loop died or that stopped answering."""
        refs = {k: lay.handle.status.remote() for k, lay in self.layers.items()}
        done, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=min(self.rt.health_period_s, 0.5))
        for kind, ref in refs.items():
            lay = self.layers[kind]
            if ref not in done:
                if time.monotonic() - lay.last_ok > 4 * self.rt.health_period_s and lay.started:
                    self._restart(ray, lay, "not answering")
                continue
            try:
                status = json.loads(ray.get(ref))
            except ray.exceptions.RayActorError:  # died; Ray is restarting it (or it is out of restarts)
                if lay.started:
                    lay.started = False
                    lay.restarts += 1
                    self.events.append(f"{time.monotonic() - self.t0:.2f} s: {kind} actor died; Ray restarts it")
                    log.warning("realtime: the %s actor died; Ray restarts it", kind)
                continue
            lay.last_ok = time.monotonic()
            if status["error"]:
                self._restart(ray, lay, "its loop raised")
            elif not status["started"]:  # a restarted incarnation: wire it and join the schedule
                if lay.started:  # died and came back between two checks
                    lay.restarts += 1
                    self.events.append(f"{time.monotonic() - self.t0:.2f} s: {kind} actor restarted by Ray")
                lay.handle.start.remote(json.dumps(self.connect), self.t0, self.t_end)
                lay.started = True
                self.events.append(f"{time.monotonic() - self.t0:.2f} s: {kind} loop rejoined the schedule")

    def _restart(self, ray, lay: _Layer, why: str) -> None:
        self.events.append(f"{time.monotonic() - self.t0:.2f} s: restarting {lay.kind} ({why})")
        log.warning("realtime: restarting the %s actor (%s)", lay.kind, why)
        ray.kill(lay.handle, no_restart=False)
        lay.started = False
        lay.restarts += 1
        lay.last_ok = time.monotonic()

    def kill(self, kind: str) -> None:
        """Kill one layer's actor as a fault would (Ray restarts it)."""
        import ray

        self._restart(ray, self.layers[kind], "killed from outside")

    def _stop_all(self, ray) -> dict[str, dict]:
        refs = {k: lay.handle.stop.remote() for k, lay in self.layers.items()}
        reports = {}
        for kind, ref in refs.items():
            try:
                reports[kind] = json.loads(ray.get(ref, timeout=60))
            except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError) as err:
                reports[kind] = {"error": f"no report: {type(err).__name__}"}
        return reports
