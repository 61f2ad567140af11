"""Typed configuration schemas. Every field is documented where it is declared.

Named presets live in ``infra/config/presets/*.yaml`` and are merged over these defaults; command-line
``key=value`` overrides are merged last. ``__post_init__`` validates and never mutates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# ---------------------------------------------------------------------------------------------------
# Body


@dataclass
class Gains:
    """PD gains and drive properties of one joint group (position actuators, PD at physics rate)."""

    kp: float = 100.0
    """proportional gain, N·m/rad"""
    kd: float = 2.0
    """derivative gain, N·m·s/rad"""
    torque_limit: float = 100.0
    """actuator force limit, N·m"""
    armature: float | None = None
    """reflected rotor inertia, kg·m²; None keeps the MJCF's value"""
    damping: float | None = None
    """passive joint damping, N·m·s/rad; None keeps the MJCF's value"""

    def __post_init__(self) -> None:
        if self.kp < 0 or self.kd < 0 or self.torque_limit <= 0:
            raise ValueError(f"Gains: kp, kd must be >= 0 and torque_limit > 0, got {self}")


def _builtin_gains() -> dict[str, Gains]:
    # Stiff enough that PD alone holds the standing pose: the ankles must beat the whole body's
    # gravitational stiffness m·g·h ≈ 70·9.81·0.97 ≈ 670 N·m/rad, the hips the upper body's.
    return {
        "leg": Gains(kp=400.0, kd=10.0, torque_limit=250.0, armature=0.05, damping=1.0),
        "waist": Gains(kp=600.0, kd=15.0, torque_limit=250.0, armature=0.05, damping=1.0),
        "neck": Gains(kp=20.0, kd=1.0, torque_limit=20.0, armature=0.01, damping=0.2),
        "arm": Gains(kp=60.0, kd=2.0, torque_limit=60.0, armature=0.02, damping=0.5),
        "hand": Gains(kp=2.0, kd=0.05, torque_limit=2.0, armature=0.001, damping=0.02),
    }


def _builtin_joint_gains() -> dict[str, Gains]:
    return {
        ".*_ankle_(pitch|roll)": Gains(kp=800.0, kd=20.0, torque_limit=200.0, armature=0.03, damping=1.0),
        ".*_knee": Gains(kp=800.0, kd=20.0, torque_limit=300.0, armature=0.05, damping=1.0),
        ".*_wrist_(pronation|flexion|deviation)": Gains(kp=15.0, kd=0.5, torque_limit=15.0, armature=0.005,
                                                        damping=0.1),
    }


@dataclass
class BodyConfig:
    """Which humanoid to simulate and how its joints are driven.

    The default (``mjcf: ""``) is the project's own 65-DoF humanoid, built in code with MjSpec. Any other
    MJCF humanoid is loaded by path; its joints are mapped onto groups by regular expressions.
    """

    mjcf: str = ""
    """"" for the built-in 65-DoF humanoid; a path to an MJCF file; or ``menagerie:<robot>/<file>.xml``
    resolved under $MENAGERIE_ROOT"""
    groups: dict[str, list[str]] = field(default_factory=dict)
    """joint group -> regexes (full match) of joint names; required for a loaded MJCF"""
    exclude_bodies: list[str] = field(default_factory=list)
    """bodies (with their subtrees) removed from a loaded MJCF before use"""
    feet: list[str] = field(default_factory=list)
    """[left, right] foot body names of a loaded MJCF (contact sensors are fitted to their geoms)"""
    hands: list[str] = field(default_factory=list)
    """[left, right] hand body names of a loaded MJCF (optional)"""
    head_body: str = ""
    """body carrying the head camera in a loaded MJCF"""
    head_camera_pos: list[float] = field(default_factory=lambda: [0.10, 0.0, 0.13])
    """head camera position in the head body's frame, m"""
    head_camera_pitch_deg: float = 20.0
    """downward pitch of the head camera, degrees"""
    head_camera_fovy: float = 75.0
    """vertical field of view of the head camera, degrees"""
    gains: dict[str, Gains] = field(default_factory=_builtin_gains)
    """gains by group name, or by group kind (the group name without ``left_``/``right_``)"""
    joint_gains: dict[str, Gains] = field(default_factory=_builtin_joint_gains)
    """per-joint gain overrides: regex (full match) of joint name -> gains; checked in order, first match wins"""
    default_pose: dict[str, float] = field(default_factory=dict)
    """regex of joint name -> default position (rad); unmatched joints use 0 (loaded MJCF) or the
    built-in standing pose"""

    def __post_init__(self) -> None:
        if self.mjcf and not self.groups:
            raise ValueError(f"body.groups must map joint groups to joint-name regexes for {self.mjcf!r}")
        if self.feet and len(self.feet) != 2:
            raise ValueError(f"body.feet must name [left, right] foot bodies, got {self.feet}")
        if len(self.head_camera_pos) != 3:
            raise ValueError(f"body.head_camera_pos must have 3 entries, got {self.head_camera_pos}")


# ---------------------------------------------------------------------------------------------------
# Simulation and scene


@dataclass
class SimConfig:
    """Batched simulation: N worlds stepped together, control applied every ``decimation`` physics steps."""

    backend: str = "mujoco"
    """simulation backend: mujoco (CPU, C threads)"""
    num_envs: int = 1
    """number of worlds stepped as one batch"""
    sim_dt: float = 0.002
    """physics time step, s (500 Hz)"""
    ctrl_dt: float = 0.02
    """control period of S0, s (50 Hz); must be a whole multiple of sim_dt"""
    threads: int = 0
    """C threads stepping the batch; 0 = one per core this process may run on (its CPU affinity)"""
    integrator: str = "implicitfast"
    """MuJoCo integrator: implicitfast | implicit | euler | rk4"""
    seed: int = 0
    """seed of every random draw in the simulation (layouts, noise, pushes)"""

    def __post_init__(self) -> None:
        if self.num_envs < 1:
            raise ValueError(f"sim.num_envs must be >= 1, got {self.num_envs}")
        if self.sim_dt <= 0 or self.ctrl_dt < self.sim_dt:
            raise ValueError(f"sim.ctrl_dt ({self.ctrl_dt}) must be >= sim.sim_dt ({self.sim_dt}) > 0")
        ratio = self.ctrl_dt / self.sim_dt
        if abs(ratio - round(ratio)) > 1e-6:
            raise ValueError(f"sim.ctrl_dt ({self.ctrl_dt}) must be a whole multiple of sim.sim_dt ({self.sim_dt})")
        if self.integrator not in ("implicitfast", "implicit", "euler", "rk4"):
            raise ValueError(f"sim.integrator must be implicitfast|implicit|euler|rk4, got {self.integrator!r}")
        if self.backend != "mujoco":
            raise ValueError(f"sim.backend {self.backend!r} is not available; available: mujoco")

    @property
    def decimation(self) -> int:
        """physics steps per control step"""
        return round(self.ctrl_dt / self.sim_dt)


@dataclass
class ObjectConfig:
    """One object in the scene, named ``<color>_<shape>`` (e.g. ``red_box``)."""

    shape: str = "box"
    """box | sphere | cylinder"""
    color: str = "red"
    """a colour name from the scene palette"""
    size: float = 0.15
    """half-extent (box), radius (sphere, cylinder), m"""
    height: float = 0.3
    """full height of boxes and cylinders, m"""
    mass: float = 2.0
    """kg"""

    def __post_init__(self) -> None:
        if self.shape not in ("box", "sphere", "cylinder"):
            raise ValueError(f"scene object shape must be box|sphere|cylinder, got {self.shape!r}")
        if self.size <= 0 or self.height <= 0 or self.mass <= 0:
            raise ValueError(f"scene object size, height and mass must be > 0, got {self}")

    @property
    def name(self) -> str:
        return f"{self.color}_{self.shape}"


def _default_objects() -> list[ObjectConfig]:
    return [
        ObjectConfig(shape="box", color="red"),
        ObjectConfig(shape="sphere", color="blue", size=0.15),
        ObjectConfig(shape="cylinder", color="green", size=0.12, height=0.5),
    ]


@dataclass
class SceneConfig:
    """Floor plus coloured objects around the robot: what S1 and S2 see and are asked about."""

    objects: list[ObjectConfig] = field(default_factory=_default_objects)
    """objects in the scene; names must be unique"""
    randomize_layout: bool = True
    """draw a new layout (positions, yaw) per world at reset; False uses a fixed layout from the seed"""
    radius_min: float = 1.2
    """closest object distance from the robot's start, m"""
    radius_max: float = 3.0
    """farthest object distance from the robot's start, m"""
    bearing_range_deg: float = 240.0
    """objects are placed within ±half this angle of the robot's forward direction, degrees"""
    min_separation: float = 0.7
    """minimum distance between object centres, m"""
    floor_friction: float = 1.0
    """sliding friction of the floor"""

    def __post_init__(self) -> None:
        names = [o.name for o in self.objects]
        if len(set(names)) != len(names):
            raise ValueError(f"scene.objects must have unique colour+shape names, got {names}")
        if not 0 < self.radius_min <= self.radius_max:
            raise ValueError(f"scene needs 0 < radius_min <= radius_max, got {self.radius_min}, {self.radius_max}")


@dataclass
class RenderConfig:
    """Headless rendering (EGL, falling back to OSMesa)."""

    width: int = 128
    """image width, pixels"""
    height: int = 128
    """image height, pixels"""
    fast: bool = True
    """turn off shadows, reflections and skybox (about 5-10x faster)"""

    def __post_init__(self) -> None:
        if self.width < 8 or self.height < 8:
            raise ValueError(f"render size must be at least 8x8, got {self.width}x{self.height}")


# ---------------------------------------------------------------------------------------------------
# Tracking and commands


@dataclass
class TrackingConfig:
    """MLflow tracking. The embedded default is ``sqlite:///mlflow.db`` in the working directory;
    ``MLFLOW_TRACKING_URI`` wins over ``uri``."""

    uri: str = ""
    """tracking URI; "" = embedded SQLite store in the working directory"""
    experiment: str = "humanoid"
    """MLflow experiment name"""
    enabled: bool = True
    """log to MLflow at all"""


@dataclass
class PushConfig:
    """Random pushes: a horizontal velocity impulse added to the root at random intervals."""

    enabled: bool = False
    """apply random pushes"""
    interval_s: list[float] = field(default_factory=lambda: [2.0, 4.0])
    """[min, max] seconds between pushes"""
    max_velocity: float = 0.5
    """largest horizontal velocity change of the root, m/s"""


@dataclass
class VideoConfig:
    """Video written from the third-person tracking camera."""

    enabled: bool = True
    """write an mp4"""
    width: int = 480
    """pixels"""
    height: int = 360
    """pixels"""
    fps: int = 25
    """frames per second of the video (rounded to a whole number of control steps per frame)"""
    quality: bool = True
    """shadows, reflections and sky in the video (slower); False renders like the head camera"""


@dataclass
class PhasesConfig:
    """Offset of each loop's ticks after the body's, s. The body steps the physics and publishes the state at
    its tick (and renders the head camera on S1's ticks); S0 acts on that state a few ms later, within the
    same control period, so the command reaches the next physics step exactly as in the lockstep runner."""

    body: float = 0.0
    camera: float = 0.002
    """renders the state of the body's tick at 0 (about 17 ms in software GL here)"""
    s0: float = 0.004
    s0_standby: float = 0.007
    """S0's hot standby, after S0 (two policies at one instant only contend for the two cores)"""
    s1: float = 0.024
    """after the camera's frame of this S1 period"""
    s2: float = 0.012
    """after the camera's render; S2 reads the newest frame (at most one S1 period old)"""


@dataclass
class RealtimeConfig:
    """The real-time runner (DESIGN §4): one Ray actor per layer, ZeroMQ latest-value streams between them."""

    transport: str = "ipc"
    """ipc (one node: socket files under a run folder in /tmp) or tcp (across nodes: fixed ports)"""
    tcp_base_port: int = 47100
    """with transport=tcp: the streams use this port and the next six"""
    ray_address: str = ""
    """"" = start a local Ray for the run (shut down after it); "auto" or "host:port" = join a running cluster"""
    onboard: float = 0.2
    """units of the custom resource ``onboard`` that the body, the head camera, S0 and S1 each ask for (a
    robot's computer declares ``onboard: 1``); the local Ray declares 1"""

    s2_gpu: str = "auto"
    """S2 asks for a GPU: auto (if the cluster has one), yes, no"""
    s0_standby: bool = True
    """run a hot standby of S0 in a second actor; the body switches to its commands when S0's go stale"""
    max_restarts: int = 3
    """Ray restarts a killed or crashed layer actor this many times"""
    health_period_s: float = 0.5
    """the driver checks every actor this often (and restarts a hung one)"""
    spin_s: float = 5e-4
    """each loop busy-waits this long before its deadline (see ``PeriodicLoop``)"""
    command_timeout_s: float = 0.1
    """the body holds the last joint targets when S0's command is older than this"""
    chunk_timeout_s: float = 0.2
    """S0 cross-fades to standing when its newest MotionChunk is older than this"""
    goal_timeout_s: float = 1.0
    """S1 keeps the last latent goal up to this age, then uses the stop goal (stand)"""
    input_timeout_s: float = 0.2
    """a layer skips its tick when its state or camera input is older than this (the body is gone)"""
    input_wait_s: float = 0.008
    """S0 (S1) waits up to this long in its tick for the state (camera frame) of the current period when the
    producer runs late, instead of acting on last period's"""
    instruction_period_s: float = 0.1
    """the driver republishes the current instruction this often"""
    phases: PhasesConfig = field(default_factory=PhasesConfig)
    startup_timeout_s: float = 180.0
    """longest wait for every actor to load its model and bind its sockets"""
    loop_nice: dict[str, int] = field(default_factory=lambda: {"body": -10, "s0": -10, "s0_standby": -10})
    """nice value of each named loop's thread (-20..19; loops not named keep 0). The body's physics and S0's
    control loops run ahead of the camera, S1, S2 and a restarting actor's model loading, as a robot's
    control threads do (measured on 2 busy cores without it: the standby ticked at 24 Hz instead of 50 and the
    body fell). Raising a priority needs CAP_SYS_NICE (root); without it the loop keeps 0 and says so"""
    record_every: int = 4
    """the body records its state for the video every this many control steps (12.5 fps at 50 Hz)"""

    def __post_init__(self) -> None:
        if self.transport not in ("ipc", "tcp"):
            raise ValueError(f"realtime.transport must be ipc or tcp, got {self.transport!r}")
        if self.s2_gpu not in ("auto", "yes", "no"):
            raise ValueError(f"realtime.s2_gpu must be auto, yes or no, got {self.s2_gpu!r}")
        for name in ("command_timeout_s", "chunk_timeout_s", "goal_timeout_s", "input_timeout_s",
                     "instruction_period_s", "health_period_s", "startup_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"realtime.{name} must be > 0, got {getattr(self, name)}")
        bad_nice = {k: v for k, v in self.loop_nice.items() if not -20 <= v <= 19}
        if bad_nice:
            raise ValueError(f"realtime.loop_nice: nice values must be in -20..19, got {bad_nice}")
        if self.max_restarts < 0 or self.record_every < 1 or not 0 < self.onboard <= 1:
            raise ValueError(f"realtime: need max_restarts >= 0, record_every >= 1 and 0 < onboard <= 1, got "
                             f"{self.max_restarts}, {self.record_every}, {self.onboard}")


@dataclass
class RunConfig:
    """``humanoid run``: a simulated rollout of the body."""

    body: BodyConfig = field(default_factory=BodyConfig)
    sim: SimConfig = field(default_factory=SimConfig)
    scene: SceneConfig = field(default_factory=SceneConfig)
    push: PushConfig = field(default_factory=PushConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(experiment="humanoid-run"))
    seconds: float = 10.0
    """simulated duration, s"""
    controller: str = "s0"
    """s0: the trained S0 controller tracking ``motion``; stand: PD on the default pose"""
    motion: str = "wave_right"
    """with controller=s0: the reference (library name or clip file) to track from its first frame"""
    checkpoint: str = "checkpoints/s0/policy.safetensors"
    """with controller=s0: the S0 policy"""
    out_dir: str = "runs"
    """folder for the run's files (a sub-folder per run)"""
    instruction: str = ""
    """an instruction for the whole stack (S2 -> S1 -> S0, lockstep runner): ``--instruction "walk to the red box"``;
    empty: S0 alone tracks ``motion``"""
    s1_checkpoint: str = "checkpoints/s1/policy.safetensors"
    """with an instruction: the S1 policy (and its goal encoder)"""
    s2_checkpoint: str = "checkpoints/s2/policy.safetensors"
    """with an instruction: the S2 model"""
    s1_sample_steps: int = 0
    """with an instruction: S1's sampling steps at run time (``StackConfig.s1_sample_steps``; 0 = the checkpoint's)"""
    s1_guidance: float = 0.0
    """with an instruction: S1's classifier-free guidance weight (``StackConfig.s1_guidance``; 0 = the checkpoint's)"""
    s2_z: str = "params"
    """with an instruction: how S2's latent goal is formed (``StackConfig.s2_z``: head or params)"""
    s2_family: str = "text"
    """with an instruction and ``s2_z=params``: where the task family comes from (``StackConfig.s2_family``: text,
    the instruction alone, or head, S2's family head)"""
    layout_seed: int = 0
    """with an instruction: the scene layout is drawn from this seed (held-out range)"""
    mode: str = "realtime"
    """with an instruction: realtime (Ray actors on the wall clock) or lockstep (one process, simulated time)"""
    script: str = ""
    """a timed instruction script (lines ``SECONDS INSTRUCTION``; realtime mode): ``--script FILE``"""
    stdin: bool = False
    """read new instructions from standard input during the run (realtime mode): ``--stdin``"""
    realtime: RealtimeConfig = field(default_factory=RealtimeConfig)

    def __post_init__(self) -> None:
        if self.seconds <= 0:
            raise ValueError(f"seconds must be > 0, got {self.seconds}")
        if self.controller not in ("stand", "s0"):
            raise ValueError(f"controller must be stand or s0, got {self.controller!r}")
        if self.mode not in ("realtime", "lockstep"):
            raise ValueError(f"mode must be realtime or lockstep, got {self.mode!r}")


@dataclass
class BodyInfoConfig:
    """``humanoid body info``."""

    body: BodyConfig = field(default_factory=BodyConfig)


@dataclass
class MotionConfig:
    """``humanoid motion list|show|render``."""

    body: BodyConfig = field(default_factory=BodyConfig)
    name: str = "walk"
    """a library clip name, or a path to a .npz clip, a DeepMimic .txt or a .bvh"""
    out: str = ""
    """show: save the clip as this .npz; render: the mp4 path (default <name>.mp4)"""
    width: int = 480
    """render width, pixels"""
    height: int = 360
    """render height, pixels"""
    fps: float = 25.0
    """render frame rate (frames are skipped from the clip's rate)"""


@dataclass
class BenchSimConfig:
    """``humanoid bench sim``: raw single-thread stepping against the batched backend, in one run."""

    body: BodyConfig = field(default_factory=BodyConfig)
    sim: SimConfig = field(default_factory=lambda: SimConfig(num_envs=32))
    scene: SceneConfig = field(default_factory=SceneConfig)
    raw_steps: int = 20000
    """physics steps of the plain mj_step loop"""
    batched_steps: int = 200
    """control steps of the batched backend (each = decimation physics steps per world)"""
    repeats: int = 3
    """best-of repeats for each measurement"""
