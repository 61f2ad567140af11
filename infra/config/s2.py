"""Configuration of S2, the slow layer: (head-camera image, instruction) -> latent goal z and auxiliary heads."""

from __future__ import annotations

from dataclasses import dataclass, field

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
