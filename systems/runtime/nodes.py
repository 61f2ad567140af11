"""The layers of the real-time runner: one node per Ray actor, each a periodic step over ZeroMQ streams.

A node owns the *same* layer objects as the lockstep runner (:class:`~systems.lockstep.World`,
:class:`~s0_locomotion.tracking.controller.S0Controller` with its :class:`~s1_policy.chunking.ChunkBroker`,
:class:`~systems.layers.S1Layer`, :class:`~systems.s2_layer.S2Layer`) and wires them to streams:

=========== ============== ============================ ============================
stream      message        producer (binds)             consumers (connect)
=========== ============== ============================ ============================
state       RobotState     body, every control step     S0, S1, camera
camera      CameraFrame    camera, every S1 period      S1, S2
instruction Instruction    the driver, every 0.1 s      S2, body (success check)
goal        LatentGoal     S2                           S1
chunk       MotionChunk    S1                           S0
command     JointCommand   S0                           body
command_sb  JointCommand   S0's hot standby             body
=========== ============== ============================ ============================

Clock: every ``stamp`` is ``time.monotonic()`` of the node's host. The body stamps a state with the wall
instant its simulated time stands for (``t0 + sim_time - ctrl_dt``), so S0 indexes chunk frames exactly as
in lockstep; a chunk's ``start_time`` is the stamp of the camera frame it was computed from.

Faults (DESIGN §7): every input has a timeout. S0 runs twice (a hot standby in its own actor computes the
same commands from the same inputs): the body follows one command stream and switches to the other when
the one it follows goes stale (a killed S0 costs no control step), and holds the last joint targets when both
are stale; S0 cross-fades to standing when its chunk stream is stale; S1 keeps the last latent goal up to
``goal_timeout_s`` and then uses the stop goal; a layer whose state or camera input is stale skips its tick.
A layer output that fails message validation (NaN, wrong shape) is not sent and is counted
(``rejected_outputs``); bad frames on the wire are counted by the subscriber (``rejected``).

Each node records, per tick, the age of each input (staleness) next to the loop statistics of
:class:`~systems.runtime.loop.PeriodicLoop`, and a short log of its outputs for the video overlay. Reports
are plain JSON-able dicts.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from infra.config.stack import RealtimeConfig, StackConfig
from infra.files import save_npz
from infra.messages import (
    CameraFrame,
    CommandMode,
    Instruction,
    JointCommand,
    LatentGoal,
    Message,
    MessageError,
    MotionChunk,
    RobotState,
)
from infra.transport import Publisher, Subscriber
from s0_locomotion.body import HEAD_CAMERA, Body
from s0_locomotion.sim.backend import SimObs
from s0_locomotion.tracking.controller import S0Controller
from s0_locomotion.tracking.policy import S0Policy
from s1_policy.chunking import ChunkBroker
from systems.lockstep import World, proprio_of
from systems.tasks import FAMILY_NAMES, SuccessCheck, task_for

log = logging.getLogger("humanoid.runtime")

STREAMS: dict[str, type[Message]] = {"state": RobotState, "camera": CameraFrame, "instruction": Instruction,
                                     "goal": LatentGoal, "chunk": MotionChunk, "command": JointCommand,
                                     "command_sb": JointCommand}
"""Every stream of the stack and its one message type."""
PRODUCER = {"state": "body", "camera": "camera", "instruction": "driver", "goal": "s2", "chunk": "s1", "command": "s0",
            "command_sb": "s0_standby"}
"""Which node binds each stream."""


def obs_from_state(state: RobotState) -> SimObs:
    """A batch-1 :class:`SimObs` from a RobotState, for the layers written against the simulator's observation.

    ``time`` is the state's stamp (float64: monotonic seconds need more than float32's 24 bits). Fields a
    RobotState does not carry (IMU, hand contacts, body positions, centre of mass) are zeros; S0's policy
    observation and S1's proprioception do not read them.
    """
    def t(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(x, np.float32))[None]

    z3 = torch.zeros(1, 3)
    return SimObs(time=torch.tensor([state.stamp], dtype=torch.float64), root_pos=t(state.root_pos),
                  root_quat=t(state.root_quat), root_lin_vel=t(state.root_lin_vel), root_ang_vel=t(state.root_ang_vel),
                  joint_pos=t(state.joint_pos), joint_vel=t(state.joint_vel), imu_gyro=z3, imu_acc=z3,
                  foot_contact=t(state.foot_contact), hand_contact=torch.zeros(1, 2), body_pos=torch.zeros(1, 0, 3),
                  com_pos=z3, com_vel=z3)


class Input:
    """One subscribed stream: keeps the newest message and records its age at every tick of the consumer."""

    def __init__(self, name: str, address: str, timeout_s: float) -> None:
        self.name, self.timeout_s = name, timeout_s
        self.sub = Subscriber(address, STREAMS[name])
        self.msg: Message | None = None
        self.ages: list[float] = []  # s, one per consumer tick while a message was held
        self.stale_ticks = 0

    def poll(self, now: float) -> Message | None:
        """Take what arrived; return the newest message held (fresh or not) and record its age."""
        new = self.sub.latest()
        if new is not None:
            self.msg = new
        if self.msg is not None:
            self.ages.append(now - self.msg.stamp)
        if self.stale(now):
            self.stale_ticks += 1
        return self.msg

    def wait_newer(self, stamp: float, wait_s: float) -> None:
        """If the held message is not newer than ``stamp``, wait up to ``wait_s`` for one that is: a consumer
        whose producer ran a little late this period takes its output instead of last period's."""
        deadline = time.monotonic() + wait_s
        while (self.msg is None or self.msg.stamp <= stamp) and (left := deadline - time.monotonic()) > 0:
            new = self.sub.latest(timeout_s=left)
            if new is not None:
                self.msg = new

    def stale(self, now: float) -> bool:
        return self.msg is None or now - self.msg.stamp > self.timeout_s

    def report(self) -> dict:
        """Staleness statistics (for a stream without a timeout, such as the instruction, whose stamp is when
        it was issued, they are left out) and the subscriber's counters."""
        if math.isinf(self.timeout_s):
            return {"received": self.sub.received, "rejected": self.sub.rejected}
        ages = np.asarray(self.ages) * 1e3
        pct = (lambda q: round(float(np.percentile(ages, q)), 3)) if len(ages) else (lambda q: math.nan)
        return {"staleness_ms_p50": pct(50), "staleness_ms_p99": pct(99), "stale_ticks": self.stale_ticks,
                "received": self.sub.received, "rejected": self.sub.rejected, "skipped": self.sub.skipped}

    def close(self) -> None:
        self.sub.close()


@dataclass
class Loop:
    """One periodic loop of a node: its own thread in the node's actor."""

    name: str
    period_s: float
    phase_s: float  # offset after the run's t0
    step: Callable[[float], None]
    warmup: Callable[[], None] = lambda: None  # called in the loop's thread before its first deadline
    cleanup: Callable[[], None] = lambda: None  # called in the loop's thread after its last tick


class Node:
    """A layer in the real-time runner. Subclasses set ``name``, ``period_s``, ``outputs`` (streams bound)
    and ``inputs`` (stream -> timeout), build their layer objects in ``__init__`` and implement :meth:`tick`."""

    name = ""
    outputs: tuple[str, ...] = ()

    def __init__(self, stack: StackConfig, rt: RealtimeConfig, bind: dict[str, str]) -> None:
        self.stack, self.rt = stack, rt
        self.pub = {s: Publisher(bind[s]) for s in self.outputs}
        self.inputs: dict[str, Input] = {}
        self.seq = dict.fromkeys(self.outputs, 0)  # per stream: a gap in seq is a lost message
        self.rejected_outputs = 0
        self.fallback_ticks = 0
        self.skipped_ticks = 0
        self.events: list[dict] = []  # the output log (video overlay, reaction times)

    def input_timeouts(self) -> dict[str, float]:
        return {}

    def connect(self, addresses: dict[str, str]) -> None:
        for stream, timeout in self.input_timeouts().items():
            self.inputs[stream] = Input(stream, addresses[stream], timeout)

    def publish(self, stream: str, cls: type[Message], **fields: Any) -> bool:
        """Build, validate and send one message; an invalid one (NaN, wrong shape) is dropped and counted."""
        try:
            msg = cls(seq=self.seq[stream], **fields)
        except MessageError as err:
            self.reject(err)
            return False
        self.pub[stream].publish(msg)
        self.seq[stream] += 1
        return True

    def reject(self, err: Exception) -> None:
        self.rejected_outputs += 1
        if self.rejected_outputs == 1 or self.rejected_outputs % 100 == 0:
            log.warning("%s: output not sent (%d so far): %s", self.name, self.rejected_outputs, err)

    def warmup(self) -> None:
        """First-call costs (torch's first inference) paid when the node is built, before the run starts."""

    def loops(self) -> list[Loop]:
        """The node's loops (one for a layer; the body adds its camera)."""
        return [Loop(self.name, self.period_s, getattr(self.rt.phases, self.name), self.tick)]

    def tick(self, now: float) -> None:
        raise NotImplementedError

    def report(self) -> dict:
        return {"inputs": {k: v.report() for k, v in self.inputs.items()},
                "rejected_outputs": self.rejected_outputs, "fallback_ticks": self.fallback_ticks,
                "skipped_ticks": self.skipped_ticks, "events": self.events}

    def close(self) -> None:
        for endpoint in [*self.pub.values(), *(i for i in self.inputs.values())]:
            endpoint.close()


class BodyNode(Node):
    """The simulated robot in wall-clock time: one control step of physics (PD at the physics rate) per tick
    and the state out every tick. It also holds the simulator's truth: the success check of the current
    instruction, falls, and a recording of the physics state for the video.

    Stamps: a state is stamped with the start of the tick that produced it. A body that falls behind
    (skipped ticks) runs slower than real time; the stamps stay wall-clock true, so the consumers' staleness
    shows it."""

    name = "body"
    outputs = ("state",)

    def __init__(self, stack: StackConfig, rt: RealtimeConfig, bind: dict[str, str], layout: list[float],
                 seconds: float, record_path: str = "") -> None:
        super().__init__(stack, rt, bind)
        self.world = World(stack)
        self.period_s = self.world.backend.ctrl_dt
        self.layout = np.asarray(layout, dtype=float)
        self.seconds = seconds
        self.record_path = record_path
        self.q_target = torch.from_numpy(self.world.body.default_pose.astype(np.float32))[None]  # (1, n)
        self.world.backend.step(self.q_target)  # the first step starts the stepping threads (about 1 s): not in a tick
        self.obs = self.world.backend.reset(layout=self.layout[None])
        self.steps = 0
        self.following: str | None = None  # the command stream the body follows
        self.tasks: list[dict] = []
        self.check = None
        self.fell_at: float | None = None
        self.recording: dict[str, list] = {"time": [], "state": []}

    def input_timeouts(self) -> dict[str, float]:
        streams = {"command": self.rt.command_timeout_s, "instruction": math.inf}
        if self.rt.s0_standby:
            streams["command_sb"] = self.rt.command_timeout_s
        return streams

    def tick(self, now: float) -> None:
        commands = [s for s in ("command", "command_sb") if s in self.inputs]
        for stream in commands:
            self.inputs[stream].poll(now)
        fresh = [s for s in commands if not self.inputs[s].stale(now)]
        if fresh:
            if self.following not in fresh:  # sticky: switch only when the followed stream goes stale
                if self.following is not None:
                    self.events.append({"t": round(now, 4), "event": f"command stream: {self.following} -> {fresh[0]}"})
                    log.warning("body: %s stale, following %s", self.following, fresh[0])
                self.following = fresh[0]
            self.q_target = torch.from_numpy(self.inputs[self.following].msg.q_target)[None]
        elif any(self.inputs[s].msg is not None for s in commands):
            self.fallback_ticks += 1  # hold the last targets (the robot's HOLD mode)
        self.obs = obs = self.world.backend.step(self.q_target)
        self.steps += 1
        sim_time = float(obs.time[0])
        self.publish("state", RobotState, stamp=now, joint_pos=obs.joint_pos[0].numpy(),
                     joint_vel=obs.joint_vel[0].numpy(), root_quat=obs.root_quat[0].numpy(),
                     root_ang_vel=obs.root_ang_vel[0].numpy(), root_lin_vel=obs.root_lin_vel[0].numpy(),
                     root_pos=obs.root_pos[0].numpy(), foot_contact=np.maximum(obs.foot_contact[0].numpy(), 0.0))
        # the simulator's truth: which task is running, has it succeeded, has the robot fallen
        instruction = self.inputs["instruction"].poll(now)
        if instruction is not None and (not self.tasks or self.tasks[-1]["instruction"] != instruction.text):
            task = task_for(instruction.text, self.layout, self.seconds)
            self.check = SuccessCheck(task)
            self.tasks.append({"instruction": instruction.text, "family": task.family, "target": task.target,
                               "issued_stamp": instruction.stamp, "seen_at": round(sim_time, 3),
                               "success": False, "success_at": None})
        if self.check is not None and not self.tasks[-1]["success"]:
            priv = self.world.privileged(obs, self.check.task)
            if self.check.update(self.world.body_state(priv, obs)):
                self.tasks[-1] |= {"success": True, "success_at": round(sim_time, 3)}
        if self.fell_at is None and self.world.fallen(obs):
            self.fell_at = round(sim_time, 3)
            log.warning("body: fell at t = %.2f s", sim_time)
        if self.record_path and (self.steps - 1) % self.rt.record_every == 0:
            self.recording["time"].append(now)
            self.recording["state"].append(self.world.backend.get_state(np.array([0]))[0])

    def report(self) -> dict:
        if self.record_path and self.recording["time"]:
            save_npz(self.record_path, **{k: np.asarray(v) for k, v in self.recording.items()})
        root = self.obs.root_pos[0].numpy()
        return super().report() | {"tasks": self.tasks, "fell_at": self.fell_at,
                                   "sim_time": round(self.steps * self.period_s, 3),
                                   "root_xy": [round(float(root[0]), 3), round(float(root[1]), 3)],
                                   "root_height": round(float(root[2]), 3)}

    def close(self) -> None:
        super().close()
        self.world.close()


class CameraNode(Node):
    """The head camera: a sensor with its own rate and process. It renders the robot's newest state (root
    pose and joints from the state stream, the scene's objects where the layout put them) with MuJoCo's
    software GL, about 17 ms a frame here: in the body's process it would hold the GIL through physics
    steps. Frames are stamped with the stamp of the state they show."""

    name = "camera"
    outputs = ("camera",)

    def __init__(self, stack: StackConfig, rt: RealtimeConfig, bind: dict[str, str], layout: list[float],
                 record_path: str = "") -> None:
        super().__init__(stack, rt, bind)
        self.world = World(stack)
        self.world.backend.reset(layout=np.asarray(layout, dtype=float)[None])
        self.qpos = self.world.backend.qpos()[0]  # (nq,): objects at their layout, the body overwritten per frame
        self.period_s = stack.rates.s1_period_s
        self.record_path = record_path
        self.heads: list[tuple[float, np.ndarray]] = []  # (stamp, image) of every other frame, for the video

    def input_timeouts(self) -> dict[str, float]:
        return {"state": self.rt.input_timeout_s}

    def loops(self) -> list[Loop]:
        size = self.stack.image_size
        return [Loop(self.name, self.period_s, self.rt.phases.camera, self.tick,
                     # the GL context is made, used and freed in the loop's thread (it belongs to its thread)
                     warmup=lambda: self.world.backend.render_qpos(self.qpos[None], HEAD_CAMERA, size, size, True),
                     cleanup=self.world.backend.close_renderer)]

    def tick(self, now: float) -> None:
        state = self.inputs["state"].poll(now)
        if state is None or self.inputs["state"].stale(now):
            self.skipped_ticks += 1
            return
        qpos = self.qpos.copy()
        self.world.backend.layout.write_pose(qpos, state.root_pos, state.root_quat, state.joint_pos)
        size = self.stack.image_size
        head = self.world.backend.render_qpos(qpos[None], HEAD_CAMERA, size, size, fast=True)[0]
        if self.publish("camera", CameraFrame, stamp=state.stamp, image=head, camera="head") and \
                self.record_path and self.seq["camera"] % 2 == 1:
            self.heads.append((state.stamp, head))

    def report(self) -> dict:
        if self.record_path and self.heads:
            save_npz(self.record_path, time=np.array([h[0] for h in self.heads]),
                     head=np.stack([h[1] for h in self.heads]))
        return super().report()

    def close(self) -> None:
        super().close()
        self.world.close()


class S0Node(Node):
    """S0: the trained tracking policy on the chunk stream, one command per control step."""

    name = "s0"
    outputs = ("command",)

    def __init__(self, stack: StackConfig, rt: RealtimeConfig, bind: dict[str, str], standby: bool = False) -> None:
        if standby:  # the hot standby: same inputs and work, its own command stream and actor
            self.name, self.outputs = "s0_standby", ("command_sb",)
        super().__init__(stack, rt, bind)
        torch.set_num_threads(1)
        self.body = Body(stack.body)
        self.period_s = stack.sim.ctrl_dt
        policy = None if stack.s0_checkpoint == "none" else S0Policy(stack.s0_checkpoint)
        self.s0 = S0Controller(policy, self.body, self.period_s, stack.s0_re_anchor_m,
                                 stack.s0_re_anchor_rad, stack.s0_balance)
        self.broker = ChunkBroker(stack.rates.blend_frames)
        self.kp = np.array([j.kp for j in self.body.joints], np.float32)
        self.kd = np.array([j.kd for j in self.body.joints], np.float32)
        self.started = False
        self.standing = True  # no chunk yet: the controller's reset reference is standing
        self.last_chunk_seq = -1
        self.last_state_stamp = -math.inf

    def input_timeouts(self) -> dict[str, float]:
        return {"state": self.rt.input_timeout_s, "chunk": self.rt.chunk_timeout_s}

    def stand_chunk(self, start: float) -> MotionChunk:
        h = self.stack.rates.horizon
        pose = np.repeat(self.body.default_pose[None], h, 0).astype(np.float32)
        return MotionChunk(stamp=start, seq=0, joint_pos=pose,
                           root_height=np.full(h, self.body.root_height, np.float32),
                           root_heading=np.zeros(h, np.float32), root_planar_vel=np.zeros((h, 2), np.float32),
                           start_time=start, frame_dt=self.period_s)

    def tick(self, now: float) -> None:
        self.inputs["state"].wait_newer(self.last_state_stamp, self.rt.input_wait_s)
        state = self.inputs["state"].poll(now)
        chunk = self.inputs["chunk"].poll(now)
        if state is not None:
            self.last_state_stamp = state.stamp
        if state is None or self.inputs["state"].stale(now):
            self.skipped_ticks += 1  # no body to act on
            return
        obs = obs_from_state(state)
        if not self.started:
            self.s0.reset(obs)
            self.broker.reset()
            self.started = True
        if chunk is not None and chunk.seq != self.last_chunk_seq and not self.inputs["chunk"].stale(now):
            self.last_chunk_seq = chunk.seq
            xy, yaw = self.s0.anchor(obs, at=chunk.start_time)  # frame 0 belongs where the reference was then
            self.s0.set_chunk(self.broker.add(chunk, xy, yaw, now=state.stamp), xy, yaw)
            self.standing = False
        elif self.inputs["chunk"].stale(now) and not self.standing:
            xy, yaw = self.s0.anchor(obs)  # cross-fade to standing where the reference is
            self.s0.set_chunk(self.broker.add(self.stand_chunk(state.stamp), xy, yaw, now=state.stamp), xy, yaw)
            self.standing = True
            self.events.append({"t": round(now, 4), "event": "stand: chunk stream stale"})
            log.warning("s0: MotionChunk stream stale (> %.2f s): standing", self.rt.chunk_timeout_s)
        if self.standing and chunk is not None:
            self.fallback_ticks += 1
        q = self.s0.act(obs)[0].numpy()
        self.publish(self.outputs[0], JointCommand, stamp=state.stamp, q_target=q, kp=self.kp, kd=self.kd,
                     tau_ff=np.zeros_like(q), mode=CommandMode.RUN)

    def report(self) -> dict:
        return super().report() | {"re_anchors": self.s0.re_anchors, "chunks_received": self.s0.chunks_received}


class S1Node(Node):
    """S1: head camera + proprioception + the latest latent goal -> a MotionChunk every S1 period."""

    name = "s1"
    outputs = ("chunk",)

    def __init__(self, stack: StackConfig, rt: RealtimeConfig, bind: dict[str, str], s1_checkpoint: str) -> None:
        from s1_policy.policy import S1Policy  # the models load only in the actors that run them
        from systems.layers import S1Layer
        from systems.s2_layer import stop_z

        super().__init__(stack, rt, bind)
        torch.set_num_threads(1)
        self.period_s = stack.rates.s1_period_s
        policy = S1Policy.for_stack(s1_checkpoint, stack)
        self.layer = S1Layer(policy, Body(stack.body).n_dof, stack.sim.ctrl_dt)
        self.layer.start(0.0)
        self.z_stop = stop_z(policy)
        self.instruction: str | None = None
        self.last_camera_stamp = -math.inf
        self.warmup()

    def input_timeouts(self) -> dict[str, float]:
        return {"camera": self.rt.input_timeout_s, "state": self.rt.input_timeout_s, "goal": self.rt.goal_timeout_s}

    def warmup(self) -> None:
        size = self.stack.image_size
        proprio = self.layer.policy.stats["proprio_mean"].numpy().astype(np.float32)
        self.layer.policy.infer(np.zeros((size, size, 3), np.uint8), proprio, self.z_stop, 0.0)
        self.layer.policy.reset()

    def tick(self, now: float) -> None:
        self.inputs["camera"].wait_newer(self.last_camera_stamp, self.rt.input_wait_s)
        camera = self.inputs["camera"].poll(now)
        state = self.inputs["state"].poll(now)
        goal = self.inputs["goal"].poll(now)
        if camera is not None:
            self.last_camera_stamp = camera.stamp
        if camera is None or state is None or self.inputs["camera"].stale(now) or self.inputs["state"].stale(now):
            self.skipped_ticks += 1
            return
        if goal is not None and not self.inputs["goal"].stale(now):
            z, instruction = goal.z, goal.instruction
            if instruction != self.instruction:
                self.instruction = instruction
                self.layer.start(goal.image_stamp)  # the task clock runs from the frame S2 first answered
        else:
            z, instruction = self.z_stop, "(stop: no fresh goal)"
            self.fallback_ticks += 1
        t0 = time.monotonic()
        try:
            chunk = self.layer.chunk(camera.stamp, camera.image, proprio_of(obs_from_state(state)), z, None)
        except MessageError as err:  # NaN or a wrong shape out of the model: never sent
            self.reject(err)
            return
        infer_ms = (time.monotonic() - t0) * 1e3
        sent = self.publish("chunk", MotionChunk, stamp=camera.stamp, joint_pos=chunk.joint_pos,
                            root_height=chunk.root_height, root_heading=chunk.root_heading,
                            root_planar_vel=chunk.root_planar_vel, start_time=chunk.start_time,
                            frame_dt=chunk.frame_dt)
        if sent:
            self.events.append({"t": round(now, 4), "instruction": instruction, "seq": self.seq["chunk"] - 1,
                                "speed": round(float(np.linalg.norm(chunk.root_planar_vel[0])), 3),
                                "infer_ms": round(infer_ms, 2)})


class S2Node(Node):
    """S2: head camera + the current instruction -> the latent goal z every S2 period (or the stop goal and a
    log line for an instruction outside the task families)."""

    name = "s2"
    outputs = ("goal",)

    def __init__(self, stack: StackConfig, rt: RealtimeConfig, bind: dict[str, str], s1_checkpoint: str,
                 s2_checkpoint: str, min_similarity: float = 0.5) -> None:
        from s1_policy.policy import S1Policy  # the models (and transformers) load only in S2's actor
        from s2_vlm.policy import S2Policy
        from systems.s2_layer import layer_for_stack

        super().__init__(stack, rt, bind)
        torch.set_num_threads(1)
        self.period_s = stack.rates.s2_period_s
        self.layer = layer_for_stack(S2Policy(s2_checkpoint), S1Policy(s1_checkpoint), stack, min_similarity)
        self.warmup()

    def input_timeouts(self) -> dict[str, float]:
        return {"camera": self.rt.input_timeout_s, "instruction": math.inf}

    def warmup(self) -> None:
        size = self.stack.image_size
        self.layer.goal(0.0, np.zeros((size, size, 3), np.uint8), "stand still", None)  # scope check + inference
        self.layer.reset(None)

    def tick(self, now: float) -> None:
        camera = self.inputs["camera"].poll(now)
        instruction = self.inputs["instruction"].poll(now)
        if camera is None or instruction is None or not instruction.text or self.inputs["camera"].stale(now):
            self.skipped_ticks += 1
            return
        z = self.layer.goal(now, camera.image, instruction.text, None)
        if self.publish("goal", LatentGoal, stamp=now, z=np.asarray(z, np.float32), instruction=instruction.text,
                        image_stamp=camera.stamp):
            last = self.layer.last
            event = {"t": round(now, 4), "instruction": instruction.text, "in_scope": self.layer.in_scope,
                     "family": FAMILY_NAMES[int(np.argmax(last["family"]))] if "family" in last else "refused"}
            if "bearing" in last:
                bearing = np.degrees(np.arctan2(last["bearing"][1], last["bearing"][0]))
                event |= {"bearing_deg": round(float(bearing), 1),
                          "distance_m": round(float(last["distance"]), 2), "has_target": bool(last["has_target"] > 0.5)}
            self.events.append(event)
