"""The S2 latent-goal model: (head-camera image, instruction) -> z and auxiliary heads.

Layout (small enough for one CPU thread at S2's 5-10 Hz)::

    image (B,3,H,W) uint8 ─ VisionEncoder (CNN from scratch) ─▶ grid² visual tokens (B, g², d) ┐
    texts [B] ─ TextEncoder (MiniLM, frozen) ─▶ tokens (B, T, 384) ─ Linear ─▶ (B, T, d)          ├▶ fusion
                                          └──▶ sentence (B, 384) ─ Linear ─▶ added to [CLS]       ┘  transformer
    [CLS] (B, d) ─ GoalHeads ─▶ z (B, D) in (-1, 1), bearing (B, 2), distance (B,), has_target (B,), family (B, F)

The fusion transformer masks the text padding. z distils the frozen S1 goal encoder's tanh-bounded z; the
auxiliary heads describe the instruction's target object (bearing and distance in the robot's heading frame) and
task family, and shape the features in training.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from infra.config.s2 import FAMILIES, S2LossWeights, S2ModelConfig
from s2_vlm.text import TEXT_DIM, TextEncoder


class VisionEncoder(nn.Module):
    """Head-camera image -> visual tokens, a small residual CNN trained from scratch.

    Input (B, 3, H, W), H, W >= 32: uint8 RGB 0..255 (scaled to [0, 1] here) or float already in [0, 1].
    Output (B, grid², d): the grid x grid adaptive-average-pooled cells of the last feature map, row-major,
    each projected to width d. Each block is a stride-2 conv and a residual stride-1 conv (halves H and W).
    """

    def __init__(self, channels: list[int], width: int, grid: int):
        super().__init__()
        self.down, self.res = nn.ModuleList(), nn.ModuleList()
        c_in = 3
        for c in channels:
            self.down.append(nn.Sequential(nn.Conv2d(c_in, c, 3, stride=2, padding=1), _norm(c), nn.SiLU()))
            self.res.append(nn.Sequential(nn.Conv2d(c, c, 3, padding=1), _norm(c), nn.SiLU()))
            c_in = c
        self.grid = grid
        self.proj = nn.Linear(c_in, width)

    def forward(self, image: Tensor) -> Tensor:
        x = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
        x = x - 0.5
        for down, res in zip(self.down, self.res):
            x = down(x)
            x = x + res(x)  # (B, C, h, w)
        cells = F.adaptive_avg_pool2d(x, self.grid).flatten(2).transpose(1, 2)  # (B, g², C)
        return self.proj(cells)  # (B, g², d)


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, c), c)


class GoalHeads(nn.Module):
    """Pooled feature (B, d) -> the S2 outputs, shared by :class:`S2Model` and the Hugging Face adapter.

    Output dict: ``z`` (B, D) tanh, in (-1, 1); ``bearing`` (B, 2) unit (cos, sin) of the target's bearing in the
    robot's heading frame (0 = straight ahead, counter-clockwise positive); ``distance`` (B,) m >= 0 (softplus);
    ``has_target`` (B,) logit that the instruction names an object; ``family`` (B, F) task-family logits.
    """

    def __init__(self, width: int, z_dim: int, num_families: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.z = nn.Sequential(nn.Linear(width, 2 * width), nn.SiLU(), nn.Linear(2 * width, z_dim))
        self.aux = nn.Linear(width, 2 + 1 + 1 + num_families)  # bearing (2), distance, has_target, family (F)

    def forward(self, feature: Tensor) -> dict[str, Tensor]:
        h = self.norm(feature)
        aux = self.aux(h)
        return {
            "z": torch.tanh(self.z(h)),
            "bearing": F.normalize(aux[:, 0:2], dim=-1, eps=1e-6),
            "distance": F.softplus(aux[:, 2]),
            "has_target": aux[:, 3],
            "family": aux[:, 4:],
        }


class S2Model(nn.Module):
    """S2: image (B, 3, H, W) uint8 + B instructions -> dict of z (B, D) and auxiliary heads (see :class:`GoalHeads`).

    The fused sequence is [CLS] + grid² visual tokens + T text tokens, width d; the text encoder's padding is
    masked out of attention. [CLS] starts as a learned vector plus the projected MiniLM sentence embedding, so
    the instruction's meaning reaches the heads even before fusion has learned anything.
    """

    def __init__(self, config: S2ModelConfig | None = None, text_encoder: TextEncoder | None = None):
        super().__init__()
        self.config = cfg = config or S2ModelConfig()
        if cfg.backbone != "minilm":
            raise ValueError(f"S2Model implements backbone='minilm'; for {cfg.backbone!r} use build_s2_model(config)")
        self.text = text_encoder or TextEncoder(trainable=cfg.text_trainable, cache_size=cfg.text_cache_size,
                                                max_tokens=cfg.max_text_tokens)
        self.vision = VisionEncoder(cfg.cnn_channels, cfg.width, cfg.visual_grid)
        self.text_proj = nn.Sequential(nn.LayerNorm(TEXT_DIM), nn.Linear(TEXT_DIM, cfg.width))
        self.sentence_proj = nn.Linear(TEXT_DIM, cfg.width)
        self.cls = nn.Parameter(0.02 * torch.randn(cfg.width))
        self.visual_pos = nn.Parameter(0.02 * torch.randn(cfg.visual_grid**2, cfg.width))  # (g², d)
        self.text_type = nn.Parameter(0.02 * torch.randn(cfg.width))  # MiniLM tokens already carry position
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(cfg.width, cfg.heads, cfg.mlp_ratio * cfg.width, dropout=0.0,
                                       activation="gelu", batch_first=True, norm_first=True)
            for _ in range(cfg.fusion_layers))
        self.heads = GoalHeads(cfg.width, cfg.z_dim, cfg.num_families)

    def _check_inputs(self, image: Tensor, texts: list[str]) -> None:
        if not isinstance(image, Tensor) or image.ndim != 4 or image.shape[1] != 3 or min(image.shape[-2:]) < 32:
            shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
            raise ValueError(f"S2Model: image must be a (B, 3, H, W) tensor with H, W >= 32, got {shape}")
        if isinstance(texts, str) or len(texts) != image.shape[0]:
            raise ValueError(f"S2Model: texts must be a list of {image.shape[0]} instructions (one per image), "
                             f"got {texts!r:.80}")

    def forward(self, image: Tensor, texts: list[str]) -> dict[str, Tensor]:
        """image (B, 3, H, W) uint8, texts: B instructions -> {z (B, D), bearing (B, 2), distance (B,),
        has_target (B,), family (B, F)}."""
        self._check_inputs(image, texts)
        device = self.cls.device
        enc = self.text(texts)
        visual = self.vision(image.to(device)) + self.visual_pos  # (B, g², d)
        words = self.text_proj(enc.tokens) + self.text_type  # (B, T, d)
        cls = (self.cls + self.sentence_proj(enc.sentence))[:, None]  # (B, 1, d)
        x = torch.cat([cls, visual, words], dim=1)  # (B, 1 + g² + T, d)
        keep = torch.ones(x.shape[0], 1 + visual.shape[1], dtype=torch.bool, device=device)
        pad = ~torch.cat([keep, enc.mask], dim=1)  # (B, L) True = ignore
        for block in self.blocks:
            x = block(x, src_key_padding_mask=pad)
        return self.heads(x[:, 0])

    def num_params(self, include_text: bool = False, trainable_only: bool = True) -> int:
        """Parameter count, by default the trainable ones outside the text encoder."""
        params = self.parameters() if include_text else (p for n, p in self.named_parameters()
                                                          if not n.startswith("text."))
        return sum(p.numel() for p in params if p.requires_grad or not trainable_only)


def build_s2_model(config: S2ModelConfig) -> nn.Module:
    """The configured S2 model: :class:`S2Model` (backbone "minilm") or ``HFGoalModel`` (backbone "hf")."""
    if config.backbone == "hf":
        from s2_vlm.hf_backbone import HFGoalModel  # lazy: only this path needs a VLM

        return HFGoalModel(config)
    return S2Model(config)


def fake_inputs(config: S2ModelConfig, batch_size: int = 2, seed: int = 0) -> tuple[Tensor, list[str]]:
    """Random uint8 images (B, 3, S, S), S = config.image_size, and B different instructions (tests, latency)."""
    g = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (batch_size, 3, config.image_size, config.image_size), dtype=torch.uint8,
                          generator=g)
    colours, shapes = ("red", "green", "blue", "yellow"), ("box", "sphere", "cylinder")
    texts = [f"walk to the {colours[(seed + i) % 4]} {shapes[(seed + i) % 3]}" if i % 2 == 0 else
             f"{FAMILIES[(seed + i) % len(FAMILIES)].replace('_', ' ')} please" for i in range(batch_size)]
    return image, texts


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of values (B,) over mask (B,) 0/1; 0 (with gradient) when the mask is empty."""
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def s2_loss(out: Mapping[str, Tensor], targets: Mapping[str, Tensor],
            weights: S2LossWeights | Mapping[str, float] | None = None) -> tuple[Tensor, dict[str, float]]:
    """Weighted sum of the S2 loss terms -> (scalar, logs ``loss/<term>`` unweighted and ``loss/total``).

    targets: ``z`` (B, D) required; optional ``has_target`` (B,) 0/1, ``bearing`` (B, 2) (cos, sin),
    ``distance`` (B,) m, ``family`` (B,) long (-1 = unknown, ignored). Terms whose target is absent are skipped.

        z        = mean (z - z*)²                          z_cos    = mean (1 - cos(z, z*))
        bearing  = Σ m_i · mean_c (b_ic - b*_ic)² / Σ m_i   distance = Σ m_i |d_i - d*_i| / Σ m_i,  m = has_target
        family   = CE(logits, family*)                      has_target = BCE(logit, has_target*)
    """
    w = weights if isinstance(weights, S2LossWeights) else S2LossWeights(**(weights or {}))
    z, z_t = out["z"], targets["z"].to(out["z"])
    if z.shape != z_t.shape:
        raise ValueError(f"s2_loss: targets['z'] must have shape {tuple(z.shape)}, got {tuple(z_t.shape)}")
    terms: dict[str, Tensor] = {"z": F.mse_loss(z, z_t),
                                "z_cos": (1 - F.cosine_similarity(z, z_t, dim=-1, eps=1e-6)).mean()}
    if ("bearing" in targets or "distance" in targets) and "has_target" not in targets:
        raise ValueError("s2_loss: bearing/distance targets need targets['has_target'] to mask samples without one")
    if "has_target" in targets:
        m = targets["has_target"].to(z.dtype)  # (B,)
        terms["has_target"] = F.binary_cross_entropy_with_logits(out["has_target"], m)
        if "bearing" in targets:
            err = (out["bearing"] - targets["bearing"].to(z)).pow(2).mean(-1)  # (B,)
            terms["bearing"] = _masked_mean(err, m)
        if "distance" in targets:
            terms["distance"] = _masked_mean((out["distance"] - targets["distance"].to(z)).abs(), m)
    if "family" in targets:
        fam = targets["family"].long()
        terms["family"] = (F.cross_entropy(out["family"], fam, ignore_index=-1) if (fam >= 0).any()
                           else out["family"].sum() * 0.0)
    total = sum(getattr(w, name) * value for name, value in terms.items())
    logs = {f"loss/{name}": float(value.detach()) for name, value in terms.items()}
    logs["loss/total"] = float(total.detach())
    return total, logs


_LATENCY_TEMPLATES = ("walk to the {c} {s}", "face the {c} {s}", "point at the {c} {s}", "go over to the {c} {s}",
                      "turn towards the {c} {s}", "please approach the {c} {s}")


@torch.no_grad()
def measure_latency(model: nn.Module, n: int = 100, threads: int = 1, warmup: int = 5) -> dict[str, float]:
    """Wall-clock latency of one image + instruction, ms, on ``threads`` CPU threads.

    ``uncached_*``: every call carries an instruction never seen before (so the text encoder runs);
    ``cached_*``: the same instruction every call (its frozen text encoding comes from the LRU cache).
    Returns p50/p99/mean for both.
    """
    cfg = model.config
    was_training, old_threads = model.training, torch.get_num_threads()
    model.eval()
    torch.set_num_threads(threads)
    try:
        image, _ = fake_inputs(cfg, batch_size=1)
        colours, shapes = ("red", "green", "blue", "yellow", "white", "black"), ("box", "sphere", "cylinder")
        k = 0

        def new_instruction() -> list[str]:
            nonlocal k
            k += 1
            t = _LATENCY_TEMPLATES[k % len(_LATENCY_TEMPLATES)]
            return [t.format(c=colours[k % 6], s=shapes[k % 3]) + f" number {k}"]

        def timed(texts_fn) -> np.ndarray:
            for _ in range(warmup):
                model(image, texts_fn())
            times = []
            for _ in range(n):
                texts = texts_fn()
                t0 = time.perf_counter()
                model(image, texts)
                times.append(1e3 * (time.perf_counter() - t0))
            return np.asarray(times)

        results = {"uncached": timed(new_instruction), "cached": timed(lambda: ["walk to the red box"])}
    finally:
        torch.set_num_threads(old_threads)
        model.train(was_training)
    return {f"{name}_{stat}": float(fn(t)) for name, t in results.items()
            for stat, fn in (("p50_ms", np.median), ("p99_ms", lambda a: np.percentile(a, 99)), ("mean_ms", np.mean))}
