"""The S1 visuomotor model: (head-camera image, proprioception, latent goal z) -> a normalised action chunk.

Layout (π0-style, sized for CPU latency)::

    image (B,3,H,W) uint8 ─ ImageEncoder ─▶ grid² pooled tokens + 1 keypoint token ┐
    proprio (B,P) ─ MLP ─▶ 1 token                                                   ├▶ prefix (B, L, d) ─▶ K/V cache
    z (B,D) ─ MLP ─▶ 1 token                                                         ┘        (Context, once per chunk)
    z (B,D) ─ MLP ─▶ added to every action token (``goal_to_actions``, optional)
    Context ─▶ ActionHead (flow | diffusion | tokens, see ``heads``) ─▶ chunk (B, H, A) normalised

The prefix and its cross-attention K/V are computed once per chunk by :meth:`S1Model.encode`; the heads' iterative
samplers only run the H action tokens on each step. Conventions (flow time, DDPM, bins) are in ``heads``.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from infra.config.s1 import HEADS, S1ModelConfig  # noqa: F401  (re-exported)
from s1_policy.heads import ActionHead, Context, DiffusionHead, FlowHead, Prefix, TokenHead


class ImageEncoder(nn.Module):
    """Head-camera image -> visual tokens, a small CNN trained from scratch.

    Input (B, 3, H, W), H, W >= 32: uint8 RGB 0..255 (scaled to [0, 1] here) or float already in [0, 1].
    Output (B, grid² + 1, d): the grid x grid adaptive-average-pooled cells of the last feature map, then one
    token of spatial-softmax keypoints (expected image x, y in [-1, 1] of ``keypoints`` attention maps;
    Levine et al. 2016), each projected to width d.
    """

    def __init__(self, channels: list[int], width: int, grid: int, keypoints: int):
        super().__init__()
        blocks, c_in = [], 3
        for c in channels:  # each block halves H and W
            blocks += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.GroupNorm(math.gcd(8, c), c), nn.SiLU()]
            c_in = c
        self.cnn = nn.Sequential(*blocks)
        self.grid = grid
        self.cell_proj = nn.Linear(c_in, width)
        self.kp_logits = nn.Conv2d(c_in, keypoints, 1)
        self.kp_proj = nn.Linear(2 * keypoints, width)

    @property
    def num_tokens(self) -> int:
        return self.grid**2 + 1

    def forward(self, image: Tensor) -> Tensor:
        x = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
        f = self.cnn(x - 0.5)  # (B, C, h, w)
        cells = F.adaptive_avg_pool2d(f, self.grid).flatten(2).transpose(1, 2)  # (B, g², C)
        attn = torch.softmax(self.kp_logits(f).flatten(2), dim=-1)  # (B, K, h·w)
        h, w = f.shape[-2:]
        ys = torch.linspace(-1, 1, h, device=f.device).repeat_interleave(w)  # (h·w,) row-major
        xs = torch.linspace(-1, 1, w, device=f.device).repeat(h)
        kp = torch.stack([attn @ xs, attn @ ys], dim=-1).flatten(1)  # (B, 2K)
        return torch.cat([self.cell_proj(cells), self.kp_proj(kp)[:, None]], dim=1)  # (B, g²+1, d)


def _mlp(d_in: int, width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, width), nn.SiLU(), nn.Linear(width, width))


def make_head(cfg: S1ModelConfig) -> ActionHead:
    """The configured action head."""
    common = dict(horizon=cfg.horizon, action_dim=cfg.action_dim, width=cfg.width, heads=cfg.heads,
                  layers=cfg.layers, mlp_ratio=cfg.mlp_ratio)
    if cfg.head == "flow":
        return FlowHead(**common, steps=cfg.flow_steps, beta_alpha=cfg.flow_beta_alpha,
                        beta_beta=cfg.flow_beta_beta, time_max=cfg.flow_time_max)
    if cfg.head == "diffusion":
        return DiffusionHead(**common, train_steps=cfg.diffusion_train_steps,
                             sample_steps=cfg.diffusion_sample_steps, clip=cfg.action_clip)
    return TokenHead(**common, bins=cfg.token_bins, clip=cfg.action_clip, embed_dim=cfg.token_embed_dim,
                     temperature=cfg.token_temperature)


class S1Model(nn.Module):
    """S1: (image, proprio, z) -> normalised chunk (B, H, A) via a cached prefix and one of three action heads.

    Inputs: image (B, 3, H, W) uint8 RGB head camera; proprio (B, P) normalised float; z (B, D) latent goal.
    ``encode`` builds the prefix (B, L, d), L = grid² + 3, and its cross-attention K/V once per chunk;
    ``loss`` trains on normalised chunks (B, H, A); ``sample`` returns one (B, H, A).
    """

    def __init__(self, config: S1ModelConfig | None = None):
        super().__init__()
        self.config = cfg = config or S1ModelConfig()
        self.image_encoder = ImageEncoder(cfg.cnn_channels, cfg.width, cfg.visual_grid, cfg.keypoints)
        self.proprio_token = _mlp(cfg.proprio_dim, cfg.width)
        self.z_token = _mlp(cfg.z_dim, cfg.width)
        self.z_actions = _mlp(cfg.z_dim, cfg.width) if cfg.goal_to_actions else None
        if cfg.goal_dropout > 0:  # the "no goal" embeddings that stand in for z (classifier-free guidance)
            self.null_z_token = nn.Parameter(torch.zeros(cfg.width))
            self.null_z_actions = nn.Parameter(torch.zeros(cfg.width)) if cfg.goal_to_actions else None
        self.guidance = cfg.guidance  # the sampling weight; S1Policy may set another at run time
        n_prefix = self.image_encoder.num_tokens + 2
        self.prefix_pos = nn.Parameter(0.02 * torch.randn(n_prefix, cfg.width))  # (L, d): token type + position
        self.prefix_blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(cfg.width, cfg.heads, cfg.mlp_ratio * cfg.width, dropout=0.0,
                                       activation="gelu", batch_first=True, norm_first=True)
            for _ in range(cfg.prefix_layers))
        self.head = make_head(cfg)

    def _check_inputs(self, image: Tensor, proprio: Tensor, z: Tensor) -> None:
        cfg = self.config
        if image.ndim != 4 or image.shape[1] != 3 or min(image.shape[-2:]) < 32:
            raise ValueError(f"S1Model: image must be (B, 3, H, W) with H, W >= 32, got {tuple(image.shape)}")
        if proprio.ndim != 2 or proprio.shape[1] != cfg.proprio_dim:
            raise ValueError(f"S1Model: proprio must be (B, {cfg.proprio_dim}), got {tuple(proprio.shape)}")
        if z.ndim != 2 or z.shape[1] != cfg.z_dim:
            raise ValueError(f"S1Model: z must be (B, {cfg.z_dim}), got {tuple(z.shape)}")
        if not image.shape[0] == proprio.shape[0] == z.shape[0]:
            raise ValueError(f"S1Model: batch sizes differ: image {image.shape[0]}, proprio {proprio.shape[0]}, "
                             f"z {z.shape[0]}")

    def encode(self, image: Tensor, proprio: Tensor, z: Tensor, drop: Tensor | None = None) -> Context:
        """(B,3,H,W) image, (B,P) proprio, (B,D) z -> Context (prefix (B, L, d) + per-layer K/V).

        ``drop`` (B,) bool: where true, z is replaced by the learned "no goal" embeddings (``goal_dropout``)."""
        self._check_inputs(image, proprio, z)
        z_tok = self.z_token(z.float())
        cond = self.z_actions(z.float()) if self.z_actions is not None else None
        if drop is not None:
            if self.config.goal_dropout <= 0:
                raise ValueError("S1Model.encode: drop= needs a model trained with goal_dropout > 0")
            z_tok = torch.where(drop[:, None], self.null_z_token, z_tok)
            if cond is not None:
                cond = torch.where(drop[:, None], self.null_z_actions, cond)
        prefix = torch.cat([self.image_encoder(image), self.proprio_token(proprio.float())[:, None],
                            z_tok[:, None]], dim=1) + self.prefix_pos  # (B, L, d)
        for block in self.prefix_blocks:
            prefix = block(prefix)
        return Context(prefix=prefix, kv=self.head.cache_kv(prefix), cond=cond)

    def encode_for_sampling(self, image: Tensor, proprio: Tensor, z: Tensor) -> Context:
        """The Context :meth:`sample` needs: :meth:`encode`'s, or with guidance (w != 1) the batch twice, first
        with z and then with the "no goal" embeddings (``Context.guided``)."""
        if self.guidance == 1.0:
            return self.encode(image, proprio, z)
        b = image.shape[0]
        drop = torch.arange(2 * b, device=image.device) >= b
        ctx = self.encode(image.repeat(2, 1, 1, 1), proprio.repeat(2, 1), z.repeat(2, 1), drop)
        return dataclasses.replace(ctx, guided=True)

    def loss(self, image: Tensor, proprio: Tensor, z: Tensor, actions: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Training loss on normalised chunks actions (B, H, A) -> (scalar, metrics named ``loss/...``)."""
        cfg = self.config
        if actions.shape[1:] != (cfg.horizon, cfg.action_dim) or actions.shape[0] != image.shape[0]:
            raise ValueError(f"S1Model: actions must be (B, {cfg.horizon}, {cfg.action_dim}) with B = "
                             f"{image.shape[0]}, got {tuple(actions.shape)}")
        drop = None
        if self.training and cfg.goal_dropout > 0:
            drop = torch.rand(image.shape[0], device=image.device) < cfg.goal_dropout
        return self.head.loss(self.encode(image, proprio, z, drop), actions.float())

    def forward(self, image: Tensor, proprio: Tensor, z: Tensor, actions: Tensor) -> tuple[Tensor, dict]:
        """Same as :meth:`loss` (so wrappers such as DDP see the training step)."""
        return self.loss(image, proprio, z, actions)

    @torch.no_grad()
    def sample(self, ctx: Context | Tensor, proprio: Tensor | None = None, z: Tensor | None = None, *,
               generator: torch.Generator | None = None, prefix: Prefix | None = None) -> Tensor:
        """One normalised chunk (B, H, A) from a Context (:meth:`encode_for_sampling`'s), or from raw inputs
        ``sample(image, proprio, z)``; with classifier-free guidance when ``self.guidance`` != 1, with the frames
        of ``prefix`` inpainted when given (the flow head)."""
        if not isinstance(ctx, Context):
            if proprio is None or z is None:
                raise ValueError("S1Model.sample: pass a Context, or image, proprio and z")
            ctx = self.encode_for_sampling(ctx, proprio, z)
        return self.head.sample(ctx, generator, self.guidance, prefix)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def fake_inputs(config: S1ModelConfig, batch: int = 1, generator: torch.Generator | None = None
                ) -> tuple[Tensor, Tensor, Tensor]:
    """Random inputs shaped by the config: image (B, 3, S, S) uint8, proprio (B, P), z (B, D) float32."""
    s = config.image_size
    image = torch.randint(0, 256, (batch, 3, s, s), generator=generator, dtype=torch.uint8)
    return (image, torch.randn(batch, config.proprio_dim, generator=generator),
            torch.randn(batch, config.z_dim, generator=generator))


def measure_latency(model: S1Model, n: int = 200, warmup: int = 20) -> dict[str, float]:
    """Time of encode + full sample at batch 1 on ONE CPU thread -> {p50_ms, p99_ms, mean_ms, cpu_p50_ms, cpu_p99_ms}.

    ``p*_ms`` are wall-clock; ``cpu_*`` are the thread's CPU time, which leaves out time the thread spent
    preempted, so they estimate the latency on an otherwise idle core when the machine is busy.
    Sets torch's intra-op threads to 1 for the measurement and restores them afterwards.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    was_training = model.training
    model.eval()
    try:
        image, proprio, z = fake_inputs(model.config, 1, torch.Generator().manual_seed(0))
        wall, cpu = [], []
        with torch.inference_mode():
            for i in range(warmup + n):
                t0, c0 = time.perf_counter(), time.thread_time()
                model.sample(image, proprio, z)
                if i >= warmup:
                    wall.append(1e3 * (time.perf_counter() - t0))
                    cpu.append(1e3 * (time.thread_time() - c0))
    finally:
        torch.set_num_threads(threads)
        model.train(was_training)
    wall_ms, cpu_ms = np.asarray(wall), np.asarray(cpu)
    return {"p50_ms": float(np.percentile(wall_ms, 50)), "p99_ms": float(np.percentile(wall_ms, 99)),
            "mean_ms": float(wall_ms.mean()), "cpu_p50_ms": float(np.percentile(cpu_ms, 50)),
            "cpu_p99_ms": float(np.percentile(cpu_ms, 99))}
