"""Configuration of S2, the slow layer: (head-camera image, instruction) -> latent goal z and auxiliary heads."""

from __future__ import annotations

from dataclasses import dataclass, field

from infra.config.schemas import TrackingConfig
from infra.config.stack import StackConfig

FAMILIES = ("walk_to", "face", "point_at", "turn_left", "turn_right", "walk_forward", "walk_backward", "wave_left",
            "wave_right", "squat", "arms_up", "stop")
"""the task families, in the order of S2's ``family`` logits"""

BACKBONES = ("minilm", "hf")


@dataclass
class S2ModelConfig:
    """Architecture of the S2 latent-goal model (:mod:`s2_vlm.model`). Validated in ``__post_init__``, never mutated."""

    image_size: int = 64
    """side of the square head-camera image for fake inputs and latency checks, px; any H, W >= 32 is accepted"""
    z_dim: int = 128
    """D: latent-goal floats (DESIGN §3 LatentGoal), each in (-1, 1) like the frozen S1 goal encoder's tanh output"""
    width: int = 128
    """d: token width of the fusion transformer and the heads"""
    heads: int = 4
    """attention heads of the fusion transformer (width must be divisible by it)"""
    fusion_layers: int = 2
    """pre-LN transformer layers over [CLS] + visual tokens + text tokens"""
    mlp_ratio: int = 4
    """hidden width of each fusion MLP, as a multiple of width"""
    text_trainable: bool = False
    """fine-tune the MiniLM text encoder (False: frozen, eval mode, sentence encodings cached)"""
    text_cache_size: int = 1024
    """instructions whose frozen text encodings are kept in an LRU cache; 0 disables the cache"""
    max_text_tokens: int = 32
    """instructions are truncated to this many word pieces (including [CLS] and [SEP])"""
    num_families: int = len(FAMILIES)
    """F: task families predicted by the ``family`` head (see ``FAMILIES``)"""
    cnn_channels: list[int] = field(default_factory=lambda: [32, 64, 128])
    """output channels of the vision encoder's blocks; each block halves H and W"""
    visual_grid: int = 4
    """the last feature map is average-pooled to grid x grid visual tokens"""
    backbone: str = "minilm"
    """"minilm": the small CNN + frozen MiniLM model; "hf": a local Hugging Face VLM (``s2_vlm.hf_backbone``)"""
    hf_path: str = ""
    """local directory of the Hugging Face VLM (config.json, weights, processor files); needed when backbone="hf\""""
    hf_layer: int = -1
    """index into the VLM's hidden_states (0 = embeddings, L = last layer); -1 = the middle layer (GR00T N1)"""
    hf_train_backbone: bool = False
    """fine-tune the Hugging Face VLM too (False: frozen, only the projection and heads train)"""

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"S2ModelConfig.backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.backbone == "hf" and not self.hf_path:
            raise ValueError("S2ModelConfig: backbone='hf' needs hf_path, a local Hugging Face model directory")
        if self.width < 1 or self.heads < 1 or self.width % self.heads:
            raise ValueError(f"S2ModelConfig: width {self.width} must be a positive multiple of heads {self.heads}")
        if min(self.z_dim, self.fusion_layers, self.mlp_ratio, self.num_families, self.visual_grid) < 1:
            raise ValueError(f"S2ModelConfig: z_dim, fusion_layers, mlp_ratio, num_families and visual_grid must be "
                             f">= 1: {self}")
        if self.image_size < 32:
            raise ValueError(f"S2ModelConfig.image_size must be >= 32 px, got {self.image_size}")
        if not self.cnn_channels or min(self.cnn_channels) < 1:
            raise ValueError(f"S2ModelConfig.cnn_channels must be a non-empty list of positive ints, got "
                             f"{self.cnn_channels}")
        if self.max_text_tokens < 3 or self.text_cache_size < 0:
            raise ValueError(f"S2ModelConfig: need max_text_tokens >= 3 and text_cache_size >= 0: {self}")
        if self.hf_layer < -1:
            raise ValueError(f"S2ModelConfig.hf_layer must be -1 (middle layer) or an index >= 0, got {self.hf_layer}")


@dataclass
class S2LossWeights:
    """Weights of the terms of :func:`s2_vlm.model.s2_loss` (each term is logged unweighted as ``loss/<name>``)."""

    z: float = 1.0
    """mean squared error of z against the S1 goal encoder's z"""
    z_cos: float = 0.1
    """1 - cosine similarity of z and the target z"""
    bearing: float = 0.5
    """squared error of (cos, sin) of the target's bearing, only on samples with a target"""
    distance: float = 0.1
    """L1 error of the target's distance in m, only on samples with a target"""
    family: float = 0.1
    """cross-entropy of the task-family logits"""
    has_target: float = 0.1
    """binary cross-entropy of the has-target logit"""

    def __post_init__(self) -> None:
        bad = {k: v for k, v in vars(self).items() if v < 0}
        if bad:
            raise ValueError(f"S2LossWeights: weights must be >= 0, got {bad}")


@dataclass
class TrainS2Config:
    """``humanoid train s2``: distil S1's goal encoder into S2 (image + instruction -> z) with auxiliary heads."""

    model: S2ModelConfig = field(default_factory=S2ModelConfig)
    weights: S2LossWeights = field(default_factory=S2LossWeights)
    data: str = "data/demos"
    """demonstrations (``humanoid collect``): images, instructions, privileged goal parameters"""
    more_data: list[str] = field(default_factory=list)
    """further demonstration datasets trained on together with ``data`` (``humanoid collect`` run in parts)"""
    eval_data: str = "data/demos_eval"
    """held-out demonstrations (held-out layouts and paraphrases) for the z error; "" = none"""
    s1_checkpoint: str = "checkpoints/s1/policy.safetensors"
    """the S1 checkpoint whose frozen goal encoder gives the z targets"""
    steps: int = 3000
    """optimiser steps"""
    batch_size: int = 64
    """samples per step"""
    lr: float = 3e-4
    """peak learning rate (linear warm-up, cosine decay)"""
    warmup: int = 100
    """warm-up steps"""
    max_image_lag: int = 4
    """latency-aware training: the image is up to this many S1 ticks older than the target (S2 runs every
    s2_period = 5 S1 ticks, so its z is used with images up to 4 ticks old)"""
    shift_px: int = 4
    """random-shift image augmentation, pixels"""
    word_dropout: float = 0.2
    """text augmentation: each word of a training instruction is left out with this probability (at least one
    word is kept), so that the family is read from every word that carries it ("right" in "... right hand")
    rather than from the whole memorised sentence. Measured (README): 0.2 fixed the right-hand waves; a rate
    drawn per sample in [0, 0.3] did worse. 0.2 is the committed S2's"""
    paraphrase_prob: float = 0.5
    """text augmentation: each training instruction is replaced, with this probability, by a training template
    of the same family naming the same object, drawn uniformly (``S2Data.paraphrases``), so that every wording
    is seen with every object and scene, not only the pairs the demonstrations happened to record. 0.5 is the
    committed S2's"""
    threads: int = 2
    """torch CPU threads"""
    log_every: int = 50
    """steps between metric logs"""
    eval_every: int = 500
    """steps between held-out z errors"""
    save_every: int = 500
    """steps between checkpoints"""
    out: str = "runs/s2"
    """checkpoint folder"""
    resume: str = ""
    """a train.safetensors to continue from"""
    seed: int = 0
    """torch seed"""
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(experiment="s2-train"))

    def __post_init__(self) -> None:
        if not 0.0 <= self.word_dropout < 1.0:
            raise ValueError(f"word_dropout must be in [0, 1), got {self.word_dropout}")
        if not 0.0 <= self.paraphrase_prob <= 1.0:
            raise ValueError(f"paraphrase_prob must be in [0, 1], got {self.paraphrase_prob}")
        if self.steps < 1 or self.batch_size < 1 or self.max_image_lag < 0:
            raise ValueError(f"steps, batch_size >= 1 and max_image_lag >= 0 needed, got {self.steps}, "
                             f"{self.batch_size}, {self.max_image_lag}")


@dataclass
class EvalStackConfig:
    """``humanoid eval stack``: S2 + S1 + S0 closed loop on held-out layouts and paraphrases."""

    stack: StackConfig = field(default_factory=StackConfig)
    s1_checkpoint: str = "checkpoints/s1/policy.safetensors"
    """the trained S1 (its goal encoder gives the reference z for ``z_error``)"""
    s2_checkpoint: str = "checkpoints/s2/policy.safetensors"
    """the trained S2"""
    episodes: int = 24
    """closed-loop episodes, the task families in turn"""
    seed: int = 0
    """first evaluation episode seed (held-out layout range)"""
    min_similarity: float = 0.5
    """instructions less similar than this (MiniLM cosine) to every training instruction are refused: the
    robot stops and stands"""
    latency_calls: int = 100
    """S2 calls timed on one thread (a new instruction each call)"""
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(experiment="eval-stack"))
