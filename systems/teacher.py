"""The scripted teacher: privileged state in, the reference motion for a task out, as MotionChunks.

At the start of an episode the teacher plans the whole motion by composing the procedural generator
(turn in place to face a target, walk a distance, gestures from the library) with smooth transitions
(``ops.concat``), in the world frame. At every S1 tick it cuts the next H frames of the plan and
expresses them as a :class:`MotionChunk` in the plan's heading frame at that instant; S0 anchors chunks
on its own reference path, so the plan stays one continuous path that S0 corrects its drift against.
It has the interface of an S1 layer, so the lockstep runner executes it with
the trained S0 exactly as it executes S1.
"""

from __future__ import annotations

import numpy as np

from infra.chunks import rotate2d, world_to_chunk
from infra.messages import MotionChunk
from s0_locomotion.body import Body
from s0_locomotion.body.humanoid65 import SHOULDER
from s0_locomotion.motion.clip import Kinematics, MotionClip
from s0_locomotion.motion.library import build_clip, hand_pose
from s0_locomotion.motion.ops import concat
from s0_locomotion.motion.procedural import FPS, Gait, _standing_clip, keyposes, locomotion
from systems.lockstep import ChunkLayer, GoalLayer, Privileged
from systems.tasks import Task, goal_params

TURN_RATE = 0.6  # rad/s, in place
WALK_SPEED = 0.3  # m/s forward (the trained S0 falls more often at 0.5)
BACK_SPEED = 0.35  # m/s backward
STOP_SHORT_M = 0.55  # walk_to stops this far before the object centre
LEFT_ARM_ABOVE = np.deg2rad(15)  # point_at uses the left arm for targets further left than this


def _turn(body: Body, kin: Kinematics, angle: float, balance: bool = False) -> MotionClip:
    """Turn in place by ``angle`` rad (positive = left) with the procedural gait; ``balance``: ``Gait.balance``."""
    ramp = 0.6
    rate = max(abs(angle) / ramp, 0.15) if abs(angle) < TURN_RATE * ramp else TURN_RATE
    steady = max(0.0, abs(angle) / rate - ramp)
    return locomotion(body, "turn", Gait(yaw_rate=float(np.sign(angle) * rate), cycle=1.0, pelvis_height=0.92,
                                         arm_swing=0.0, steady=steady, ramp=ramp, balance=balance), kin, settle=1.0)


def _walk(body: Body, kin: Kinematics, distance: float, balance: bool = False) -> MotionClip:
    """Walk ``distance`` m straight (negative = backward); ``balance``: the ZMP-planned pelvis (``Gait.balance``)."""
    speed = WALK_SPEED if distance >= 0 else -BACK_SPEED
    ramp = 1.0
    steady = max(0.0, abs(distance / speed) - ramp)
    gait = Gait(vx=speed, cycle=1.2 if distance >= 0 else 1.1, pelvis_height=0.92 if distance >= 0 else 0.91,
                steady=steady, ramp=ramp, balance=balance)
    return locomotion(body, "walk", gait, kin, settle=1.0)


def point_arm(body: Body, bearing: float, distance: float) -> tuple[str, float]:
    """The arm that points at a target at ``bearing`` rad (heading frame, from the root, left positive) and
    ``distance`` m, and its shoulder roll. With the shoulder pitched forward to the horizontal, the roll turns
    the arm about the vertical, so the roll is the target's bearing seen from that shoulder (``SHOULDER``'s
    sideways offset), clipped to the joint's range. The right arm points unless the target is more than
    ``LEFT_ARM_ABOVE`` to the left."""
    side = "left" if bearing > LEFT_ARM_ABOVE else "right"
    s = 1.0 if side == "left" else -1.0
    x, y = distance * np.cos(bearing), distance * np.sin(bearing) - s * SHOULDER[1]
    lo, hi = body.ranges[body.joint_names.index(f"{side}_shoulder_roll")]
    return side, float(np.clip(np.arctan2(y, x), lo, hi))


def _point(body: Body, kin: Kinematics, side: str, roll: float = 0.0) -> MotionClip:
    """Raise the ``side`` arm to the horizontal in 1 s, aimed ``roll`` rad about the vertical, hold 3 s."""
    arm = {f"{side}_shoulder_pitch": -1.5, f"{side}_shoulder_roll": roll, f"{side}_elbow": -0.1,
           **hand_pose(side, "point")}
    return _standing_clip(body, f"point_{side}", keyposes(body, [(0.0, {}), (1.0, arm), (4.0, arm)]), kin)


def _arms_up(body: Body, kin: Kinematics, seconds: float) -> MotionClip:
    """Both arms up in 1.2 s (shoulders at -2.4 rad, the hands about 0.28 m above the head) and held for the
    rest of ``seconds``. The library's arms_up clip (-2.9 rad, lowered again after 1 s) is beyond the trained
    S0: it fell in 3 of 4 episodes of ``eval s0 env.clips=[arms_up]``, and as the teacher's plan it fell on
    every collection episode (held at -2.9 rad too, at about 3.5 s), so no arms_up demonstration survived the
    cut before a fall. Held at -2.4 rad, four held-out layouts stood for the whole 5 s."""
    up = {f"{side}_{joint}": angle for side in ("left", "right")
          for joint, angle in (("shoulder_pitch", -2.4), ("elbow", -0.1))}
    return _standing_clip(body, "arms_up", keyposes(body, [(0.0, {}), (1.2, up), (seconds, up)]), kin)


def _stand(body: Body, kin: Kinematics, seconds: float) -> MotionClip:
    return _standing_clip(body, "stand", keyposes(body, [(0.0, {}), (seconds, {})], hold=0.0), kin)


class ScriptedTeacher:
    """Task + privileged state -> MotionChunks (an S1 stand-in). Rate: S1's; chunks of ``horizon`` frames.

    ``balance``: walk and turn with the ZMP-planned pelvis (``Gait.balance``), as an S0 trained with
    ``env.balanced_gait=true`` expects; :func:`systems.collect.collect` takes it from the S0 checkpoint.
    """

    def __init__(self, body: Body, horizon: int = 16, frame_dt: float = 1.0 / FPS, balance: bool = False) -> None:
        if abs(frame_dt - 1.0 / FPS) > 1e-9:
            raise ValueError(f"teacher: the procedural generator runs at {FPS} Hz, S0 at {1 / frame_dt} Hz")
        self.body, self.horizon, self.frame_dt, self.balance = body, horizon, frame_dt, balance
        self.kin = Kinematics(body)
        self.plan: MotionClip | None = None

    def reset(self, task: Task, objects: dict[str, np.ndarray], root_xy: np.ndarray, root_yaw: float) -> MotionClip:
        """Plan the task's motion from the robot's pose and the object positions (world frame)."""
        self.plan = self._plan(task, objects, root_xy, root_yaw)
        self.xy = self.plan.root_pos[:, :2] - self.plan.root_pos[0, :2]
        self.xy = root_xy + rotate2d(root_yaw, self.xy)
        w, x, y, z = self.plan.root_quat.T
        self.yaw = root_yaw + np.unwrap(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))
        return self.plan

    def _plan(self, task: Task, objects: dict[str, np.ndarray], root_xy: np.ndarray, root_yaw: float) -> MotionClip:
        body, kin, f = self.body, self.kin, task.family
        parts: list[MotionClip] = []
        if task.target:
            rel = rotate2d(-root_yaw, objects[task.target] - root_xy)
            bearing, dist = float(np.arctan2(rel[1], rel[0])), float(np.linalg.norm(rel))
            if f == "face" or (f == "walk_to" and abs(bearing) > np.deg2rad(8)):
                parts.append(_turn(body, kin, bearing, self.balance))
            if f == "walk_to":
                parts.append(_walk(body, kin, max(0.3, dist - STOP_SHORT_M), self.balance))
            if f == "point_at":  # from where it stands: the arm aimed at the target, no turn
                parts.append(_point(body, kin, *point_arm(body, bearing, dist)))
        elif f in ("turn_left", "turn_right"):
            parts.append(_turn(body, kin, np.pi / 2 * (1 if f == "turn_left" else -1), self.balance))
        elif f in ("walk_forward", "walk_backward"):
            parts.append(_walk(body, kin, 1.5 if f == "walk_forward" else -1.3, self.balance))
        elif f == "arms_up":
            parts.append(_arms_up(body, kin, task.time_limit_s))
        elif f in ("wave_left", "wave_right", "squat"):
            parts.append(build_clip(body, f, kin))
        parts.append(_stand(body, kin, 1.0 if f != "stop" else task.time_limit_s))
        return concat(body, parts, blend=0.3, name=f"teacher:{f}", kinematics=kin) if len(parts) > 1 else parts[0]

    def chunk(self, now: float) -> MotionChunk:
        """The next ``horizon`` frames of the plan from ``now`` (s since reset), in the plan's heading frame
        at ``now`` (S0 anchors it on its own reference, which keeps it on the plan)."""
        if self.plan is None:
            raise RuntimeError("teacher: reset(task, ...) before chunk()")
        n = self.plan.num_frames
        k0 = int(round(now / self.frame_dt))
        idx = np.minimum(np.arange(k0, k0 + self.horizon), n - 1)
        vel, heading = world_to_chunk(self.xy[idx], self.yaw[idx], self.frame_dt, float(self.yaw[idx[0]]))
        if k0 >= n - 1:
            vel[:] = 0.0  # the plan is over: stand
        return MotionChunk(stamp=now, seq=k0, joint_pos=self.plan.joint_pos[idx].astype(np.float32),
                           root_height=self.plan.root_pos[idx, 2].astype(np.float32),
                           root_heading=heading.astype(np.float32), root_planar_vel=vel.astype(np.float32),
                           start_time=now, frame_dt=self.frame_dt)

    @property
    def duration_s(self) -> float:
        return 0.0 if self.plan is None else self.plan.duration


class TeacherLayer(ChunkLayer):
    """The scripted teacher in S1's place in the lockstep runner (privileged state in, chunks out)."""

    def __init__(self, body: Body, horizon: int = 16, frame_dt: float = 1.0 / FPS, balance: bool = False) -> None:
        self.teacher = ScriptedTeacher(body, horizon, frame_dt, balance)

    def reset(self, task: Task, privileged: Privileged) -> None:
        self.t0 = privileged.time
        self.teacher.reset(task, privileged.objects, privileged.root_xy, privileged.root_yaw)

    def chunk(self, now: float, image: np.ndarray, proprio: np.ndarray, z: np.ndarray,
              privileged: Privileged) -> MotionChunk:
        return self.teacher.chunk(now - self.t0)


class GoalParamsLayer(GoalLayer):
    """S2's place during collection: the privileged goal parameters themselves (GOAL_DIM,)."""

    def goal(self, now: float, image: np.ndarray, instruction: str, privileged: Privileged) -> np.ndarray:
        task = privileged.task
        obj = privileged.objects.get(task.target) if task.target else None
        return goal_params(task, obj, privileged.root_xy, privileged.root_yaw)


class DaggerLayer(ChunkLayer):
    """DAgger's collection layer (Ross et al., 2011): a student S1 drives, the teacher labels.

    Each tick it asks both for a chunk from the same state, executes the student's (or, with probability
    ``beta``, the teacher's) and keeps the teacher's, one per tick of the episode, in ``labels``. ``z`` is the
    privileged goal parameters (``GoalParamsLayer``): the student's goal encoder turns them into its latent
    goal. Behaviour cloning alone trains S1 only on the states the teacher visits. Measured on an S1 trained
    that way: its chunk was right given the teacher's proprioception and wrong given its own a few ticks
    later (a wave turned into a squat). DAgger's labels on the student's own states correct that compounding.
    """

    def __init__(self, student: ChunkLayer, encode_goal, teacher: TeacherLayer, beta: float = 0.0,
                 seed: int = 0) -> None:
        self.student, self.encode_goal, self.teacher, self.beta = student, encode_goal, teacher, beta
        self.rng = np.random.default_rng(seed)
        self.labels: list[MotionChunk] = []
        self.z: tuple[np.ndarray, np.ndarray] | None = None

    def reset(self, task: Task, privileged: Privileged) -> None:
        self.student.reset(task, privileged)
        self.teacher.reset(task, privileged)
        self.labels, self.z = [], None

    def chunk(self, now: float, image: np.ndarray, proprio: np.ndarray, z: np.ndarray,
              privileged: Privileged) -> MotionChunk:
        self.labels.append(self.teacher.chunk(now, image, proprio, z, privileged))
        if self.z is None or not np.array_equal(self.z[0], z):  # the goal changes at S2's rate, not every tick
            self.z = (z.copy(), self.encode_goal(z))
        own = self.student.chunk(now, image, proprio, self.z[1], privileged)
        return self.labels[-1] if self.rng.random() < self.beta else own
