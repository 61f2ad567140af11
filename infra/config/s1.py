"""Configuration of S1: the model (architecture and action head), training and evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field

from infra.config.schemas import TrackingConfig
from infra.config.stack import StackConfig

HEADS = ("flow", "diffusion", "tokens")


@dataclass
class S1ModelConfig:
    """Architecture and action-head settings of :class:`S1Model`. Validated in ``__post_init__``, never mutated."""

    image_size: int = 64
    """side of the square head-camera image for fake inputs and latency checks, px; any H, W >= 32 is accepted"""
    proprio_dim: int = 138
    """P: proprioception floats per step (2 n_dof + 7, plus the task clock's ``TaskClock.dim``: 1 for
    ``TrainS1Config.task_clock_s`` and 2 per ``task_clock_octaves``)"""
    z_dim: int = 128
    """D: latent-goal floats (DESIGN §3 LatentGoal)"""
    horizon: int = 16
    """H: frames per action chunk (at S0's rate)"""
    action_dim: int = 69
    """A: whole-body targets per frame, normalised units"""
    width: int = 128
    """d: token width of the prefix and the action expert"""
    heads: int = 4
    """attention heads (width must be divisible by it)"""
    layers: int = 3
    """action-expert transformer blocks"""
    mlp_ratio: int = 2
    """hidden width of every transformer MLP, as a multiple of width (2, not the usual 4: it is ~30% of the
    per-step matmul time at batch 1, where the 10-step sample must stay under 20 ms on one thread)"""
    prefix_layers: int = 1
    """pre-LN transformer layers mixing the prefix tokens (run once per chunk)"""
    goal_to_actions: bool = False
    """also add an embedding of z to every action token (not only z's prefix token, which the action expert
    reaches through cross-attention alone). Off in checkpoints trained before it existed"""
    cnn_channels: list[int] = field(default_factory=lambda: [32, 64, 128, 128])
    """output channels of the image encoder's stride-2 conv blocks"""
    visual_grid: int = 3
    """the last feature map is average-pooled to grid x grid visual tokens"""
    keypoints: int = 16
    """spatial-softmax keypoint maps, packed into one extra visual token"""
    head: str = "flow"
    """action head: "flow" (flow matching, π0), "diffusion" (DDPM ε-prediction) or "tokens" (autoregressive bins)"""
    flow_steps: int = 10
    """Euler steps from τ = 0 (noise) to τ = 1 (data) at inference"""
    flow_beta_alpha: float = 1.5
    """training time τ = flow_time_max·(1 − u), u ~ Beta(alpha, beta): emphasises noisy (low) τ"""
    flow_beta_beta: float = 1.0
    """second Beta parameter of the training-time distribution"""
    flow_time_max: float = 0.999
    """largest training τ (keeps τ = 1, the data itself, out of training)"""
    diffusion_train_steps: int = 100
    """T: DDPM steps of the squared-cosine schedule used in training"""
    diffusion_sample_steps: int = 10
    """ancestral steps at inference, on an evenly strided sub-sequence of the T steps"""
    token_bins: int = 256
    """K: uniform bins per action dimension over [-action_clip, action_clip]"""
    token_embed_dim: int = 32
    """rank of the token head's bin logits (shared bin embedding width)"""
    token_temperature: float = 0.0
    """token sampling temperature; 0 is greedy (argmax)"""
    action_clip: float = 4.0
    """normalised range ±clip: the token bins' span and the diffusion head's clamp on its x0 estimate"""
    goal_dropout: float = 0.0
    """training probability of replacing z with a learned "no goal" embedding, so that one network is both
    the goal-conditioned and the unconditioned model (classifier-free guidance, Ho & Salimans 2022). Off in
    checkpoints trained before it existed"""
    guidance: float = 1.0
    """classifier-free guidance weight w of the flow head's sampling: v = v(no goal) + w·(v(z) − v(no goal));
    1 is the goal-conditioned model alone, w > 1 leans harder on z. Needs goal_dropout > 0"""

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"S1ModelConfig.head must be one of {HEADS}, got {self.head!r}")
        if self.width % self.heads:
            raise ValueError(f"S1ModelConfig: width {self.width} must be divisible by heads {self.heads}")
        if min(self.proprio_dim, self.z_dim, self.horizon, self.action_dim, self.layers, self.visual_grid) < 1:
            raise ValueError(f"S1ModelConfig: dimensions must be >= 1: {self}")
        if self.image_size < 32 or not self.cnn_channels:
            raise ValueError(f"S1ModelConfig: image_size >= 32 and non-empty cnn_channels needed: {self}")
        if not 1 <= self.diffusion_sample_steps <= self.diffusion_train_steps:
            raise ValueError("S1ModelConfig: need 1 <= diffusion_sample_steps <= diffusion_train_steps")
        if self.flow_steps < 1 or not 0 < self.flow_time_max <= 1 or self.token_bins < 2 or self.action_clip <= 0:
            raise ValueError(f"S1ModelConfig: bad flow/token settings: {self}")
        if not 0.0 <= self.goal_dropout < 1.0:
            raise ValueError(f"S1ModelConfig.goal_dropout must be in [0, 1), got {self.goal_dropout}")
        check_guidance(self.guidance, self.goal_dropout, self.head)


def check_guidance(guidance: float, goal_dropout: float, head: str) -> None:
    """A guidance weight other than 1 needs the "no goal" embedding (goal_dropout > 0) and the flow head."""
    if guidance < 0:
        raise ValueError(f"S1 guidance must be >= 0, got {guidance}")
    if guidance != 1.0 and (goal_dropout <= 0 or head != "flow"):
        raise ValueError(f"S1 guidance={guidance} needs a flow head trained with goal_dropout > 0 (this one: "
                         f"head={head}, goal_dropout={goal_dropout})")


@dataclass
class TrainS1Config:
    """``humanoid train s1``: behaviour cloning of teacher demonstrations."""

    model: S1ModelConfig = field(default_factory=S1ModelConfig)
    data: str = "data/demos"
    """demonstration dataset (LeRobot v3 layout, from ``humanoid collect``)"""
    more_data: list[str] = field(default_factory=list)
    """further datasets trained on together with ``data`` (DAgger rounds: ``humanoid collect policy=...``)"""
    eval_data: str = "data/demos_eval"
    """held-out demonstrations (``humanoid collect split=eval``) for the chunk error; "" = none"""
    steps: int = 4000
    """optimiser steps"""
    batch_size: int = 64
    """samples per step"""
    lr: float = 3e-4
    """peak learning rate (linear warm-up, cosine decay)"""
    warmup: int = 200
    """warm-up steps"""
    weight_decay: float = 1e-4
    """AdamW weight decay"""
    shift_px: int = 4
    """random-shift image augmentation, pixels"""
    freeze_goal_after: int = 1500
    """freeze the goal encoder after this many steps (0 = never) and save ``goal_frozen.safetensors`` then: S2
    can distil that z while S1 keeps training, because z no longer changes"""
    goal_separation: float = 1.0
    """weight of the goal encoder's family-separation term (a squared hinge on the cosine of z between task
    families, while the encoder trains; 0 = behaviour cloning alone). Without it the gesture families' z
    were almost parallel (cosine up to 0.91) and S1 mixed them up"""
    goal_margin: float = 0.3
    """cosine similarity between two families' z above which the separation term pushes them apart"""
    early_s: float = 0.0
    """with ``early_weight``: rows from the first ``early_s`` s of each episode are drawn ``early_weight`` times
    as often (0 = uniform sampling)"""
    early_weight: float = 1.0
    """sampling weight of the early rows; from a standing start only z tells the families apart"""
    task_clock_s: float = 8.0
    """> 0: S1 also gets the time since the instruction, min(t, task_clock_s) / task_clock_s, after the
    proprioception (model.proprio_dim = 2 n_dof + 8). Measured without it: from a standing start every
    gesture looks the same as standing, and S1 stalls at rest (0/2 arms_up, 0/2 squat closed loop)"""
    task_clock_octaves: int = 0
    """with a task clock: also sin and cos of 2π·2^k·t / task_clock_s for k < this (``features.TaskClock``),
    each adding 2 to model.proprio_dim; the phase of the teacher's gaits and waves as an input"""
    proprio_dropout: float = 0.0
    """fraction of training samples whose body state (the proprioception, not the task clock) is zeroed; 1 = a
    blind S1 that never sees the body state, in training or at run time (``S1Policy.blind``): the teacher's plans
    are indexed by time, and an S1 that reads the body learns to continue whatever the body is doing"""
    heading_rate: bool = False
    """S1's network learns the chunk's root heading as a yaw rate, integrated back to the heading (0 at frame 0
    by construction) on its output (``features.ChunkCoding``); the datasets are unchanged"""
    proprio_noise: float = 0.05
    """Gaussian noise added to the normalised proprioception (robustness to states the teacher never visited)"""
    threads: int = 2
    """torch CPU threads"""
    log_every: int = 50
    """steps between metric logs"""
    eval_every: int = 500
    """steps between held-out chunk errors"""
    save_every: int = 500
    """steps between checkpoints"""
    goal_from: str = ""
    """an S1 policy whose goal encoder this run takes over, frozen from the first step: S2 distilled from it
    stays valid while S1's network (even its architecture) changes; "" = train a goal encoder"""
    out: str = "runs/s1"
    """checkpoint folder"""
    resume: str = ""
    """a train.safetensors to continue from"""
    init: str = ""
    """an S1 policy.safetensors whose network, goal encoder and normalisation statistics start this run (fresh
    optimiser and schedule): fine-tuning on demonstrations recollected with a new S0. Its goal encoder stays
    frozen for the whole run, so z, and an S2 distilled from it, stay valid"""
    seed: int = 0
    """torch and sampling seed"""
    eval_episodes: int = 12
    """closed-loop episodes (held-out layouts) run after training, logged with a video; 0 = none"""
    stack: StackConfig = field(default_factory=StackConfig)
    """the stack those episodes run in"""
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(experiment="s1-train"))

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}")
        if self.init and self.resume:
            raise ValueError("train s1: give init= (fine-tune) or resume= (continue), not both")
        if not 0.0 <= self.proprio_dropout <= 1.0:
            raise ValueError(f"train s1: proprio_dropout must be in [0, 1], got {self.proprio_dropout}")
        if self.task_clock_octaves < 0 or (self.task_clock_octaves and self.task_clock_s <= 0):
            raise ValueError(f"train s1: task_clock_octaves={self.task_clock_octaves} needs to be >= 0, and a task "
                             f"clock (task_clock_s > 0, got {self.task_clock_s}) to be > 0")


@dataclass
class EvalS1Config:
    """``humanoid eval s1``: each head's held-out chunk error, closed-loop success and latency."""

    stack: StackConfig = field(default_factory=StackConfig)
    checkpoints: list[str] = field(default_factory=lambda: ["checkpoints/s1/policy.safetensors"])
    """S1 checkpoints to compare (one per head)"""
    eval_data: str = "data/demos_eval"
    """held-out demonstrations for the chunk error ("" = skip it)"""
    episodes: int = 24
    """closed-loop episodes per checkpoint (held-out layouts and paraphrases, families in turn)"""
    seed: int = 0
    """first evaluation episode seed"""
    latency_calls: int = 200
    """single-chunk inference calls timed on one thread"""
    video: str = ""
    """write an mp4 of the first closed-loop episode of each head into this folder ("" = none)"""
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(experiment="s1-eval"))


@dataclass
class EvalTeacherConfig:
    """``humanoid eval teacher``: the scripted teacher's plans executed by an S0 in the lockstep runner, the data S1
    learns from and the ceiling of what S1 on that S0 can reach. Episodes run to their time limit (not stopped at
    success), so a fall after the goal is reached is seen."""

    stack: StackConfig = field(default_factory=lambda: StackConfig(stop_on_success=False))
    """the stack whose S0 (``stack.s0_checkpoint``) executes the plans"""
    families: list[str] = field(default_factory=list)
    """task families to run ([] = all), in turn"""
    episodes: int = 48
    """episodes in all, the families in turn, held-out layouts"""
    seed: int = 0
    """first evaluation episode seed"""
    push_mps: float = 0.0
    """each episode starts with the standing body pushed at this speed, m/s, in a direction drawn from the episode's
    seed: without it, a family without a target replays one plan from one state in every episode"""
    instruction: str = ""
    """one task instead of the families: every episode runs this instruction on ``humanoid run``'s layout of
    ``layout_seed`` for ``seconds`` (can this S0 do the main job's task at all?); give ``push_mps`` so that the
    episodes differ"""
    layout_seed: int = 0
    """with an instruction: the layout, as ``humanoid run layout_seed=``"""
    seconds: float = 10.0
    """with an instruction: the episode length, s, as ``humanoid run seconds=``"""
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(experiment="eval-teacher"))

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if self.push_mps < 0:
            raise ValueError(f"push_mps must be >= 0, got {self.push_mps}")
        if self.seconds <= 0:
            raise ValueError(f"seconds must be > 0, got {self.seconds}")
