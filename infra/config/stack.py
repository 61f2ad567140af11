"""Configuration of the composed stack: rates, the lockstep runner, demonstration collection, S1 and S2."""

from __future__ import annotations

from dataclasses import dataclass, field

from infra.config.s0 import BalanceConfig
from infra.config.schemas import (
    BodyConfig,
    PhasesConfig,
    RealtimeConfig,
    RunConfig,
    SceneConfig,
    SimConfig,
    TrackingConfig,
)

__all__ = ["BenchRuntimeConfig", "CollectConfig", "PhasesConfig", "RatesConfig", "RealtimeConfig", "StackConfig",
           "stack_for_run"]


@dataclass
class RatesConfig:
    """Layer periods (DESIGN §4). Periods must be whole multiples of S0's ``sim.ctrl_dt``."""

    s1_period_s: float = 0.04
    """S1 inference period, s (25 Hz); the head camera is rendered at this rate too"""
    s2_period_s: float = 0.2
    """S2 inference period, s (5 Hz)"""
    horizon: int = 16
    """frames per MotionChunk, at S0's rate"""
    blend_frames: int = 6
    """frames over which the broker cross-fades a new chunk in"""

    def __post_init__(self) -> None:
        if self.horizon < 2:
            raise ValueError(f"rates.horizon must be >= 2, got {self.horizon}")
        if self.s1_period_s <= 0 or self.s2_period_s < self.s1_period_s:
            raise ValueError(f"rates: need 0 < s1_period_s <= s2_period_s, got {self.s1_period_s}, {self.s2_period_s}")


@dataclass
class StackConfig:
    """One world with the task scene, run by the lockstep (and later the real-time) runner."""

    body: BodyConfig = field(default_factory=BodyConfig)
    sim: SimConfig = field(default_factory=SimConfig)
    scene: SceneConfig = field(default_factory=SceneConfig)
    rates: RatesConfig = field(default_factory=RatesConfig)
    image_size: int = 64
    """head-camera image side, pixels (square); 64 keeps S1's CNN at about a third of the 96-pixel cost
    and the objects (1.5-3 m away) still span several pixels"""
    s0_checkpoint: str = "checkpoints/s0/policy.safetensors"
    """the trained S0 policy ("none" = PD on the reference)"""
    s0_re_anchor_m: float = 0.4
    """S0 moves a chunk's anchor from its reference path to the measured root when the two are further apart
    than this, m (``S0Controller.anchor``)"""
    s0_re_anchor_rad: float = 0.5
    """... or when their headings differ by more than this, rad"""
    s0_balance: BalanceConfig = field(default_factory=BalanceConfig)
    """SIMBICON-style balance feedback on S0's targets (``s0_locomotion/tracking/balance.py``)"""
    s1_sample_steps: int = 0
    """S1's flow (diffusion) sampling steps at run time; 0 = the checkpoint's (DESIGN's 10). The committed flow
    head's held-out chunk error is the same at 4 steps as at 10 (2.393 vs 2.398), and a chunk costs 9 ms
    instead of 13 on one thread"""
    s1_guidance: float = 0.0
    """S1's classifier-free guidance weight at run time (``S1ModelConfig.guidance``); 0 = the checkpoint's"""
    s1_inpaint_frames: int = 0
    """S1 keeps its own previous chunk: the new chunk's first frames are inpainted with the previous chunk's
    frames for the same instants, weight 1 at frame 0 falling linearly to 0 at this frame (the flow head;
    ``s1_policy.heads.Prefix``). Consecutive chunks then continue one motion instead of each drawing a fresh
    phase of a gait or a wave. 0 = off"""
    s1_warm_start: float = 0.0
    """S1 starts each chunk's flow integration at this τ on the path of its previous chunk's frames for the same
    instants instead of from pure noise at τ = 0 (SDEdit; ``s1_policy.heads.Prefix.start``), so it keeps the
    previous chunk's mode and runs only the remaining steps. 0 = off, < 1"""
    stop_on_success: bool = True
    """end an episode as soon as its success check holds"""
    s2_z: str = "params"
    """how S2's latent goal reaches S1: "head" (S2's z head, distilled from S1's goal encoder) or "params" (S2's
    family and target heads, as goal parameters through S1's frozen goal encoder, so z is always one that
    encoder produces: the most likely family's, at the estimated bearing and distance). Measured with the
    committed S1 and S2 (``eval stack episodes=24``): 0.58 with params against 0.42 with head; S2's z head
    falls between families on held-out paraphrases where its family head is right"""
    s2_family: str = "text"
    """with ``s2_z="params"``, where the family comes from: "text" (the instruction alone, a kernel density
    classifier over S2's training instructions in MiniLM's sentence space, ``systems.s2_layer.InstructionFamily``,
    once per instruction) or "head" (S2's family head, image and instruction, every S2 tick)"""
    s2_family_temperature: float = 0.05
    """the kernel's temperature for ``s2_family="text"`` (cosine similarity units)"""

    def __post_init__(self) -> None:
        for name in ("s1_period_s", "s2_period_s"):
            ratio = getattr(self.rates, name) / self.sim.ctrl_dt
            if abs(ratio - round(ratio)) > 1e-6:
                raise ValueError(f"rates.{name} ({getattr(self.rates, name)}) must be a whole multiple of "
                                 f"sim.ctrl_dt ({self.sim.ctrl_dt})")
        if self.image_size < 32:
            raise ValueError(f"image_size must be >= 32, got {self.image_size}")
        if self.s2_z not in ("head", "params"):
            raise ValueError(f"s2_z must be head or params, got {self.s2_z!r}")
        if self.s2_family not in ("text", "head"):
            raise ValueError(f"s2_family must be text or head, got {self.s2_family!r}")
        if self.s2_family_temperature <= 0:
            raise ValueError(f"s2_family_temperature must be > 0, got {self.s2_family_temperature}")
        if self.s1_sample_steps < 0:
            raise ValueError(f"s1_sample_steps must be >= 0, got {self.s1_sample_steps}")
        if self.s1_guidance < 0:
            raise ValueError(f"s1_guidance must be >= 0, got {self.s1_guidance}")
        if self.s1_inpaint_frames < 0:
            raise ValueError(f"s1_inpaint_frames must be >= 0, got {self.s1_inpaint_frames}")
        if not 0 <= self.s1_warm_start < 1:
            raise ValueError(f"s1_warm_start must be in [0, 1), got {self.s1_warm_start}")


def stack_for_run(cfg: RunConfig) -> StackConfig:
    """The stack ``humanoid run`` runs (either runner): the run's body, simulation, scene, S0 checkpoint and S1/S2
    run-time settings, everything else at StackConfig's defaults."""
    return StackConfig(body=cfg.body, sim=cfg.sim, scene=cfg.scene, s0_checkpoint=cfg.checkpoint,
                       s1_sample_steps=cfg.s1_sample_steps, s1_guidance=cfg.s1_guidance, s2_z=cfg.s2_z,
                       s2_family=cfg.s2_family)


@dataclass
class CollectConfig:
    """``humanoid collect``: scripted-teacher demonstrations in the LeRobot v3 layout."""

    stack: StackConfig = field(default_factory=StackConfig)
    episodes: int = 50
    """episodes to record"""
    out: str = "data/demos"
    """dataset folder (must not exist yet)"""
    seed: int = 0
    """first episode seed (episode i uses seed + i; layouts from the training range)"""
    split: str = "train"
    """train (training paraphrases and layouts) or eval (held-out ones)"""
    families: list[str] = field(default_factory=list)
    """task families to draw from; [] = all"""
    families_in_turn: bool = False
    """episode i gets the (i mod n)-th family, so every family gets an equal share; false draws each episode's
    family at random with its layout (how the committed S1's 200 episodes were collected: 8 were point_at)"""
    policy: str = ""
    """an S1 policy checkpoint: DAgger collection. The policy drives the body (its goal encoder reading the
    privileged goal) and the teacher labels every state it visits with the chunk it would have sent then;
    "" = the teacher drives (plain demonstrations)"""
    beta: float = 0.0
    """DAgger's mixing: the probability that an S1 tick executes the teacher's chunk instead of the policy's"""
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(experiment="collect"))

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if self.split not in ("train", "eval"):
            raise ValueError(f"split must be train or eval, got {self.split!r}")
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {self.beta}")


@dataclass
class BenchRuntimeConfig:
    """``humanoid bench runtime``: ZeroMQ vs Ray message latency and S0-sized periodic loops at 500 Hz / 1 kHz."""

    messages: int = 2000
    """latency samples taken for ZeroMQ and again for Ray (after the warm-up)"""
    loop_seconds: float = 5.0
    """wall-clock seconds each S0 loop runs (once at 500 Hz, once at 1 kHz)"""
    loop_nice: int = -10
    """nice value of the S0 loops' thread: the real-time runner's S0 priority (``realtime.loop_nice``); 0 measures
    them at the default priority"""
    warmup: int = 100
    """messages / Ray calls / S0 steps run first and not measured"""
    rtf_seconds: float = 4.0
    """simulated seconds of the full stack (S2 + S1 + S0, committed checkpoints) in the lockstep runner, run
    without and with the third-person video, ``rtf_repeats`` times each; 0 skips this part"""
    rtf_repeats: int = 3
    """repeats of each real-time-factor run; the median is reported (with the min and max). On this shared
    2-core machine one 4 s run of the same build measured anywhere from 1.4 to 2.3"""
    s1_checkpoint: str = "checkpoints/s1/policy.safetensors"
    s2_checkpoint: str = "checkpoints/s2/policy.safetensors"
    stack: StackConfig = field(default_factory=lambda: StackConfig(stop_on_success=False))
    """the stack the real-time factor is measured on (its S0 checkpoint, physics rate, S1 sampling steps)"""

    def __post_init__(self) -> None:
        if self.messages < 1:
            raise ValueError(f"messages must be >= 1, got {self.messages}")
        if not self.loop_seconds > 0:
            raise ValueError(f"loop_seconds must be > 0, got {self.loop_seconds}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if self.rtf_seconds < 0:
            raise ValueError(f"rtf_seconds must be >= 0, got {self.rtf_seconds}")
        if self.rtf_repeats < 1:
            raise ValueError(f"rtf_repeats must be >= 1, got {self.rtf_repeats}")

