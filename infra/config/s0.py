"""Configuration schemas of S0: the tracking environment, its rewards and randomisation, PPO, eval."""

from __future__ import annotations

from dataclasses import dataclass, field

from infra.config.schemas import BodyConfig, SimConfig, TrackingConfig


@dataclass
class RewardConfig:
    """DeepMimic reward terms: weight w_* and kernel scale k_* of exp(-k * error) (Peng et al. 2018)."""

    w_pose: float = 0.5
    """joint pose weight"""
    k_pose: float = 2.0
    """joint pose kernel, 1/rad^2 (summed over all 65 joints)"""
    w_vel: float = 0.05
    """joint velocity weight"""
    k_vel: float = 0.02
    """joint velocity kernel, s^2/rad^2"""
    w_ee: float = 0.15
    """end-effector (feet, hands, head relative to the root) weight"""
    k_ee: float = 10.0
    """end-effector kernel, 1/m^2"""
    w_root: float = 0.15
    """root position and orientation weight"""
    k_root: float = 5.0
    """root kernel, 1/m^2"""
    w_com: float = 0.15
    """centre-of-mass velocity weight"""
    k_com: float = 5.0
    """centre-of-mass kernel, s^2/m^2"""
    w_body: float = 0.3
    """global body-position weight (PHC's term; penalises drift off the clip's path: without it the policy
    learned to let standing and walking drift, which a chunk stream cannot hide)"""
    k_body: float = 10.0
    """global body-position kernel, 1/m^2 (on the mean over bodies of the squared error)"""


@dataclass
class RandomizeConfig:
    """Domain randomisation. Physical parameters are drawn per model variant; worlds pick a variant at reset."""

    enabled: bool = True
    """randomise at all"""
    variants: int = 8
    """number of randomised model copies shared by the worlds"""
    friction: list[float] = field(default_factory=lambda: [0.6, 1.2])
    """floor sliding friction range"""
    mass_scale: list[float] = field(default_factory=lambda: [0.9, 1.1])
    """per-link mass (and inertia) scale range"""
    kp_scale: list[float] = field(default_factory=lambda: [0.9, 1.1])
    """PD gain scale range (kp and kd together)"""
    push_interval_s: list[float] = field(default_factory=lambda: [3.0, 6.0])
    """seconds between velocity pushes of the root"""
    push_velocity: float = 0.3
    """largest horizontal push, m/s"""
    latency_steps: int = 1
    """actions are delayed by 0..latency_steps control steps (drawn per episode)"""


@dataclass
class BalanceConfig:
    """SIMBICON-style balance feedback added to S0's joint targets (``s0_locomotion/tracking/balance.py``)."""

    enabled: bool = False
    """add the feedback (training environment, evaluation and the stack's S0 controller alike)"""
    k_pelvis: float = 1.0
    """stance hip roll/pitch target change per rad of pelvis tilt error"""
    c_v_lateral: float = 0.3
    """swing hip roll change per m/s of sideways root velocity error (foot placement), rad s/m"""
    c_v_sagittal: float = 0.2
    """swing hip pitch change per m/s of forward root velocity error, rad s/m"""
    k_ankle: float = 0.0
    """stance ankle roll change per m/s of sideways root velocity error, rad s/m"""
    max_tilt_rad: float = 0.4
    """pelvis tilt error clamp"""
    max_correction_rad: float = 0.4
    """clamp of each joint's correction"""


@dataclass
class TrackingEnvConfig:
    """The S0 tracking environment (DESIGN §1: S0 tracks whatever reference S1 gives it)."""

    body: BodyConfig = field(default_factory=BodyConfig)
    sim: SimConfig = field(default_factory=lambda: SimConfig(num_envs=128))
    clips: list[str] = field(default_factory=list)
    """library names or clip files (.npz, DeepMimic .txt, .bvh) or folders; [] = the whole procedural library"""
    future_frames: list[int] = field(default_factory=lambda: [1, 5])
    """reference frames ahead (in control steps) shown to the policy"""
    action_scale: float = 0.1
    """rad per unit action; targets = reference joints + action_scale * action"""
    actor_root_vel: bool = False
    """the actor also sees the root's linear velocity in its heading frame (a state estimator's output on a
    robot; BeyondMimic's actor has it). Off by default so the README's commands reproduce the committed
    checkpoint, which was trained without it (checkpoints without the key run without it); 1,600 fine-tuning
    iterations with it and failure sampling did not improve S0 (README)"""
    clip_sampling: str = "uniform"
    """uniform, or failure: a clip is drawn at reset with probability proportional to its running
    termination rate plus ``sampling_floor`` (PHC's hard-negative mining, ProtoMotions' prioritised
    sampling), so the walks that fall get the samples and the mastered gestures are still revisited.
    Measured: with the floor at 0.05 the closed-hand and pointing clips were forgotten"""
    sampling_floor: float = 0.05
    """the floor added to each clip's termination rate under failure sampling"""
    balanced_gait: bool = False
    """the library's walks with the pelvis placed so the whole-body centre of mass follows a linear inverted
    pendulum over a ZMP plan on the footsteps (``procedural.Gait.balance``), instead of the commanded path.
    Off by default: the committed S0 was trained on the commanded-path walks (on the balanced ones it
    survives 2.2 s of a walk against 4.0 s, README)"""
    episode_s: float = 10.0
    """time limit of an episode, s (a clip's end also ends it)"""
    terminate_error_m: float = 0.5
    """early termination when the mean body-position error exceeds this (PHC), m"""
    reward: RewardConfig = field(default_factory=RewardConfig)
    balance: BalanceConfig = field(default_factory=BalanceConfig)
    randomize: RandomizeConfig = field(default_factory=RandomizeConfig)

    def __post_init__(self) -> None:
        if not self.future_frames or min(self.future_frames) < 1:
            raise ValueError(f"future_frames must be >= 1, got {self.future_frames}")
        if self.action_scale <= 0:
            raise ValueError(f"action_scale must be > 0, got {self.action_scale}")
        if self.clip_sampling not in ("uniform", "failure"):
            raise ValueError(f"clip_sampling must be uniform or failure, got {self.clip_sampling!r}")
        if self.sampling_floor <= 0:
            raise ValueError(f"sampling_floor must be > 0, got {self.sampling_floor}")


@dataclass
class PPOConfig:
    """PPO (rsl-rl-lib) hyper-parameters."""

    steps_per_env: int = 24
    """rollout length per iteration"""
    epochs: int = 5
    """learning epochs per iteration"""
    mini_batches: int = 4
    """mini-batches per epoch"""
    learning_rate: float = 2e-4
    """learning rate (the initial one when schedule=adaptive)"""
    schedule: str = "fixed"
    """fixed, or adaptive (rsl-rl's KL-controlled rate). Measured here: with 65 action dimensions Adam's
    first steps already move the mean enough to exceed desired_kl, so adaptive pins the rate at its 1e-5
    floor and the policy barely moves; fixed 2e-4 with PPO's clipping learns"""
    desired_kl: float = 0.01
    """target KL of the adaptive schedule"""
    gamma: float = 0.99
    """discount"""
    lam: float = 0.95
    """GAE lambda"""
    clip: float = 0.2
    """surrogate clipping"""
    entropy: float = 0.001
    """entropy bonus (summed over 65 dimensions, so small)"""
    init_noise_std: float = 0.5
    """initial action noise, in action units (0.5 * action_scale = 0.05 rad); 1.0 made the body fall
    about twice as often during collection"""
    actor_hidden: list[int] = field(default_factory=lambda: [512, 256, 128])
    """actor MLP widths"""
    critic_hidden: list[int] = field(default_factory=lambda: [512, 256, 128])
    """critic MLP widths"""

    def __post_init__(self) -> None:
        if self.schedule not in ("fixed", "adaptive"):
            raise ValueError(f"ppo.schedule must be fixed or adaptive, got {self.schedule!r}")
        if self.steps_per_env < 1 or self.epochs < 1 or self.mini_batches < 1:
            raise ValueError("ppo.steps_per_env, ppo.epochs and ppo.mini_batches must be >= 1")


@dataclass
class TrainS0Config:
    """``humanoid train s0``."""

    env: TrackingEnvConfig = field(default_factory=TrackingEnvConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(experiment="s0-train"))
    iterations: int = 2000
    """PPO iterations"""
    out: str = "runs/s0"
    """checkpoint folder"""
    save_every: int = 100
    """iterations between checkpoints"""
    resume: str = ""
    """a .safetensors checkpoint to continue from (weights, optimiser, normaliser, iteration)"""
    init: str = ""
    """a training checkpoint whose actor and critic (with normalisers) start this run (fine-tuning with a
    changed reward or randomisation), or a deployable policy (``checkpoints/s0/policy.safetensors``: the actor
    alone, the critic starts fresh; give ``critic_warmup``); the optimiser, iteration and worlds start fresh"""
    critic_warmup: int = 0
    """first iterations in which the actor is frozen and PPO trains only the critic (after ``init=`` from a
    policy, so that a fresh critic's advantages do not undo the actor)"""
    seed: int = 0
    """torch seed"""


@dataclass
class EvalS0Config:
    """``humanoid eval s0``."""

    env: TrackingEnvConfig = field(default_factory=lambda: TrackingEnvConfig(sim=SimConfig(num_envs=16)))
    checkpoint: str = "checkpoints/s0/policy.safetensors"
    """the trained S0 policy"""
    episodes: int = 0
    """episodes per clip; 0 = one per world slot rounded to the clip count"""
    randomize: bool = True
    """domain randomisation during evaluation"""
    balanced_gait: bool | None = None
    """the library's walks: balanced (true) or on the commanded path (false); unset = the walks the checkpoint
    was trained on (its env.balanced_gait), or env.balanced_gait without a checkpoint"""


@dataclass
class BenchS0Config:
    """``humanoid bench s0``: training throughput against the physics ceiling, policy latency."""

    train: TrainS0Config = field(default_factory=TrainS0Config)
    iterations: int = 5
    """PPO iterations timed (after one warm-up iteration)"""
    latency_calls: int = 2000
    """single-observation policy calls timed"""
