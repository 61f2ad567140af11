"""S1's action heads: the action expert and three interchangeable ways to turn it into a chunk generator.

Conventions, stated once here and used by every function below:

- A chunk is ``(B, H, A)``: H frames at S0's rate, A whole-body targets per frame, in *normalised* units
  (zero mean, unit variance per dimension with the dataset's statistics; the caller (de)normalises).
- Flow matching (DESIGN §3): τ = 0 is pure noise, τ = 1 is the data, ``A_τ = τ·A + (1 − τ)·ε``, the network
  predicts the velocity ``A − ε``, and inference integrates forward with Euler steps from τ = 0 to τ = 1.
- DDPM (Ho et al. 2020): integer steps t = 0..T−1, ``ᾱ_t = ∏_{s≤t} (1 − β_s)``,
  ``x_t = √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε``, the network predicts ε.
- Tokens: each dimension of each frame is one of K uniform bins over [−clip, clip].

Every head runs the prefix (image, proprio, z tokens) through the cross-attention K/V that
:meth:`ActionExpert.cache_kv` computes once per chunk (π0's prefix caching, held in a :class:`Context`); an
iterative sampler then only pays for the H action tokens on each step.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# ---------------------------------------------------------------------------------------------------
# Pure math


def flow_interpolate(actions: Tensor, noise: Tensor, tau: Tensor) -> Tensor:
    """A_τ = τ·A + (1 − τ)·ε. actions, noise (B, H, A); tau (B,) in [0, 1] -> (B, H, A)."""
    t = tau.reshape(-1, 1, 1).to(actions.dtype)
    return t * actions + (1.0 - t) * noise


def flow_target(actions: Tensor, noise: Tensor) -> Tensor:
    """The velocity dA_τ/dτ = A − ε that the network regresses, (B, H, A)."""
    return actions - noise


def sample_flow_time(batch: int, alpha: float, beta: float, time_max: float, device=None) -> Tensor:
    """Training times τ = time_max·(1 − u), u ~ Beta(alpha, beta) -> (B,) in [0, time_max].

    π0 draws its time from a Beta that emphasises noisy times. In our convention noise is τ = 0, so the Beta
    sample is mirrored: with (alpha, beta) = (1.5, 1), p(τ) ∝ (1 − τ/time_max)^0.5, largest at τ = 0 (pure noise,
    where the velocity is hardest to predict) and falling to 0 at τ = time_max. time_max < 1 keeps τ = 1 (the data
    itself, where the target A − ε is unobservable from A_τ) out of training. Uses the global RNG.
    """
    dist = torch.distributions.Beta(torch.tensor(alpha, device=device), torch.tensor(beta, device=device))
    return time_max * (1.0 - dist.sample((batch,)))


def euler_integrate(velocity_fn: Callable[[Tensor, float], Tensor], x0: Tensor, steps: int,
                    pin: Callable[[Tensor, float], Tensor] | None = None, first: int = 0) -> Tensor:
    """Integrate dx/dτ = v(x, τ) from τ = first/steps to τ = 1 with forward Euler steps of Δ = 1/steps.

    x_{k+1} = x_k + Δ·v(x_k, k·Δ). x0: the state at τ = first·Δ (noise for ``first`` = 0; any shape) -> x at
    τ = 1, same shape. ``pin(x, τ)``, if given, constrains the state before every step and once more at τ = 1
    (inpainting).
    """
    if steps < 1 or not 0 <= first < steps:
        raise ValueError(f"euler_integrate: need steps >= 1 and 0 <= first < steps, got {steps} and {first}")
    dt = 1.0 / steps
    x = x0
    for k in range(first, steps):
        if pin is not None:
            x = pin(x, k * dt)
        x = x + dt * velocity_fn(x, k * dt)
    return x if pin is None else pin(x, 1.0)


@dataclass(frozen=True)
class Prefix:
    """Frames a new chunk should keep (inpainting): the normalised values (B, H, A) it should have, and how
    firmly, one weight per frame (H,) in [0, 1] (0: free).

    The sampler pins the chunk's noisy state to the flow path of these values, x ← x + w·(τ·A_p + (1 − τ)·ε − x)
    with the sample's own initial noise ε, before every Euler step and at τ = 1 (replacement inpainting, as
    diffusion planners condition on a known state; Janner et al. 2022). No network gradients are needed, so it
    costs nothing against the latency budget; the network fills in the free frames consistently with the pinned
    ones because every step sees them."""

    values: Tensor
    weights: Tensor
    start: float = 0.0
    """warm start: integrate from τ = start on the flow path of ``values`` (every frame) instead of from pure noise
    at τ = 0 (SDEdit, Meng et al. 2022): the mode of the sample (a gait's or a wave's phase) is then already
    the previous chunk's, and only the remaining steps run"""

    def check(self, shape: torch.Size) -> None:
        if self.values.shape != shape or self.weights.shape != shape[1:2] or not 0 <= self.start < 1:
            raise ValueError(f"Prefix: values {tuple(self.values.shape)}, weights {tuple(self.weights.shape)} and "
                             f"start {self.start} do not fit a chunk batch {tuple(shape)} (expected values of that "
                             f"shape, weights ({shape[1]},) and 0 <= start < 1)")

    def pin(self, x: Tensor, noise: Tensor, tau: float) -> Tensor:
        return torch.lerp(x, flow_interpolate(self.values, noise, torch.full(x.shape[:1], tau, device=x.device)),
                          self.weights[None, :, None].to(x.dtype))


def cosine_alpha_bar(train_steps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """ᾱ_t, t = 0..T−1, of Nichol & Dhariwal's squared-cosine schedule -> (T,) float64, decreasing in (0, 1).

    f(u) = cos²(((u + s)/(1 + s))·π/2), β_t = min(1 − f((t+1)/T)/f(t/T), max_beta), ᾱ_t = ∏_{s≤t} (1 − β_s).
    """
    u = torch.arange(train_steps + 1, dtype=torch.float64) / train_steps
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1.0 - f[1:] / f[:-1]).clamp(max=max_beta)
    return torch.cumprod(1.0 - betas, dim=0)


def ddpm_sample_timesteps(train_steps: int, sample_steps: int) -> list[int]:
    """The strided sub-sequence sampled at inference: ``sample_steps`` evenly spaced integers from T−1 down to 0."""
    if not 1 <= sample_steps <= train_steps:
        raise ValueError(f"need 1 <= sample_steps <= train_steps, got {sample_steps}, {train_steps}")
    if sample_steps == 1:
        return [train_steps - 1]
    return [int(t) for t in torch.linspace(train_steps - 1, 0, sample_steps).round().long()]


def ddpm_posterior_step(x_t: Tensor, eps: Tensor, alpha_bar_t: float, alpha_bar_s: float,
                        noise: Tensor | None = None, clip: float | None = None) -> Tensor:
    """One ancestral step t -> s < t of the DDPM posterior q(x_s | x_t, x̂_0), x̂_0 estimated from ε.

        x̂_0 = (x_t − √(1 − ᾱ_t)·ε) / √ᾱ_t                  (clamped to ±clip when given)
        α_{t|s} = ᾱ_t / ᾱ_s,  β_{t|s} = 1 − α_{t|s}
        μ  = √ᾱ_s·β_{t|s}/(1 − ᾱ_t)·x̂_0 + √α_{t|s}·(1 − ᾱ_s)/(1 − ᾱ_t)·x_t
        σ² = (1 − ᾱ_s)/(1 − ᾱ_t)·β_{t|s}
    For s = t − 1 this is Ho et al.'s eq. 6–7; on a strided sub-sequence it is the same posterior of the
    sub-sequence's Markov chain (DDIM with η = 1). Pass ᾱ_s = 1 for the final step (μ = x̂_0, σ = 0).
    x_t, eps, noise (any shape, same) -> x_s; noise None takes the mean.
    """
    x0 = (x_t - math.sqrt(1.0 - alpha_bar_t) * eps) / math.sqrt(alpha_bar_t)
    if clip is not None:
        x0 = x0.clamp(-clip, clip)
    a_ts = alpha_bar_t / alpha_bar_s
    b_ts = 1.0 - a_ts
    mean = (math.sqrt(alpha_bar_s) * b_ts / (1.0 - alpha_bar_t)) * x0 \
        + (math.sqrt(a_ts) * (1.0 - alpha_bar_s) / (1.0 - alpha_bar_t)) * x_t
    if noise is None:
        return mean
    return mean + math.sqrt((1.0 - alpha_bar_s) / (1.0 - alpha_bar_t) * b_ts) * noise


def tokenize(x: Tensor, bins: int, clip: float) -> Tensor:
    """Normalised values (any shape) -> bin indices (same shape, int64) of K = bins uniform bins on [−clip, clip].

    Values outside the range are clipped to the end bins.
    """
    width = 2.0 * clip / bins
    return torch.floor((x.clamp(-clip, clip) + clip) / width).long().clamp(0, bins - 1)


def detokenize(idx: Tensor, bins: int, clip: float) -> Tensor:
    """Bin indices (any shape, int) -> the bins' centres, float32: −clip + (i + ½)·2·clip/bins."""
    return -clip + (idx.float() + 0.5) * (2.0 * clip / bins)


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of times t (B,) in [0, 1] (scaled by 1000, as DDPM's integer steps) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


# ---------------------------------------------------------------------------------------------------
# The action expert


@dataclass
class Context:
    """What one chunk's sampling reuses, computed once by ``S1Model.encode``.

    prefix: (B, L, d) prefix tokens (visual, proprio, z). kv: one (k, v) pair per expert layer, each
    (B, heads, L, d/heads): the cross-attention keys and values of the prefix. cond: optional (B, d) vector
    added to every action token.
    """

    prefix: Tensor
    kv: list[tuple[Tensor, Tensor]]
    cond: Tensor | None = None  # (B, d) added to every action token (``S1ModelConfig.goal_to_actions``)
    guided: bool = False  # the batch is 2B: B samples with their z, then the same B with the "no goal" z

    def condition(self, tokens: Tensor) -> Tensor:
        """Action tokens (B, T, d) plus the per-sample conditioning, if any."""
        return tokens if self.cond is None else tokens + self.cond[:, None]

    @property
    def batch(self) -> int:
        return self.prefix.shape[0]

    @property
    def samples(self) -> int:
        """Chunks this Context samples: its batch, or half of it when guided."""
        return self.batch // 2 if self.guided else self.batch


def _split_heads(x: Tensor, heads: int) -> Tensor:
    b, n, d = x.shape  # (B, N, d) -> (B, nh, N, d/nh)
    return x.view(b, n, heads, d // heads).transpose(1, 2)


def _merge_heads(x: Tensor) -> Tensor:
    b, h, n, hd = x.shape  # (B, nh, N, hs) -> (B, N, nh·hs)
    return x.transpose(1, 2).reshape(b, n, h * hd)


class ExpertBlock(nn.Module):
    """Pre-LN block over action tokens (B, T, d): causal-or-full self-attention, cross-attention to the cached
    prefix K/V, MLP. Conditioned blocks use adaLN-Zero (DiT): shift/scale/gate per sub-layer from a (B, d)
    conditioning vector, gates zero-initialised so every block starts as the identity."""

    def __init__(self, width: int, heads: int, mlp_ratio: int, conditioned: bool):
        super().__init__()
        self.heads = heads
        affine = not conditioned
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(width, elementwise_affine=affine) for _ in range(3))
        self.norm_shape, self.norm_eps = self.norm1.normalized_shape, self.norm1.eps
        self.qkv = nn.Linear(width, 3 * width)
        self.self_out = nn.Linear(width, width)
        self.cross_q = nn.Linear(width, width)
        self.cross_kv = nn.Linear(width, 2 * width)
        self.cross_out = nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(), nn.Linear(mlp_ratio * width, width))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 9 * width)) if conditioned else None
        if self.ada is not None:
            nn.init.zeros_(self.ada[1].weight)
            nn.init.zeros_(self.ada[1].bias)
            one = torch.zeros(9, width)
            one[1::3] = 1.0  # rows (shift, scale, gate) × 3: the scale rows get the "1 +"
            self.register_buffer("scale_one", one.flatten(), persistent=False)  # (9d,)

    def cache_kv(self, prefix: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised prefix (B, L, d) -> (k, v), each (B, nh, L, d/nh)."""
        k, v = self.cross_kv(prefix).chunk(2, dim=-1)
        return _split_heads(k, self.heads), _split_heads(v, self.heads)

    def modulation(self, cond: Tensor) -> Tensor:
        """Conditioning (N, d) -> adaLN parameters (N, 9d): (shift, 1 + scale, gate) of the three sub-layers."""
        return self.ada(cond) + self.scale_one

    # The sub-layers call torch.nn.functional directly on the block's parameters: the same arithmetic as
    # calling the modules, without their dispatch, which at batch 1 and 16 tokens costs as much as the maths
    # (S1 runs these blocks ten times a chunk). A sampler fetches the parameters once per chunk
    # (:meth:`weights`) instead of looking each up through the module tree on every step.
    def weights(self) -> tuple[Tensor | None, ...]:
        """The block's parameters in the order :meth:`forward` uses them (None: a norm without affine)."""
        up, down = self.mlp[0], self.mlp[2]
        return (self.norm1.weight, self.norm1.bias, self.qkv.weight, self.qkv.bias, self.self_out.weight,
                self.self_out.bias, self.norm2.weight, self.norm2.bias, self.cross_q.weight, self.cross_q.bias,
                self.cross_out.weight, self.cross_out.bias, self.norm3.weight, self.norm3.bias, up.weight, up.bias,
                down.weight, down.bias)

    def forward(self, x: Tensor, kv: tuple[Tensor, Tensor], mod: tuple[Tensor, ...] | None, causal: bool,
                w: tuple[Tensor | None, ...] | None = None) -> Tensor:
        """x (B, T, d), this block's prefix (k, v), mod: the nine (B or 1, 1, d) parts of :meth:`modulation`
        (:meth:`ActionExpert.modulations`) or None, w: :meth:`weights` or None (fetched here) -> (B, T, d)."""
        n1w, n1b, qkv_w, qkv_b, so_w, so_b, n2w, n2b, cq_w, cq_b, co_w, co_b, n3w, n3b, up_w, up_b, dn_w, dn_b = \
            self.weights() if w is None else w
        shape, eps, heads = self.norm_shape, self.norm_eps, self.heads

        def self_attn(h: Tensor) -> Tensor:
            q, k, v = (_split_heads(t, heads) for t in F.linear(h, qkv_w, qkv_b).chunk(3, dim=-1))  # (B, nh, T, hs)
            return F.linear(_merge_heads(F.scaled_dot_product_attention(q, k, v, is_causal=causal)), so_w, so_b)

        def cross_attn(h: Tensor) -> Tensor:
            q = _split_heads(F.linear(h, cq_w, cq_b), heads)  # vs (B, nh, L, hs)
            return F.linear(_merge_heads(F.scaled_dot_product_attention(q, kv[0], kv[1])), co_w, co_b)

        def mlp(h: Tensor) -> Tensor:
            return F.linear(F.gelu(F.linear(h, up_w, up_b)), dn_w, dn_b)

        if mod is None:  # plain pre-LN
            x = x + self_attn(F.layer_norm(x, shape, n1w, n1b, eps))
            x = x + cross_attn(F.layer_norm(x, shape, n2w, n2b, eps))
            return x + mlp(F.layer_norm(x, shape, n3w, n3b, eps))
        sh1, sc1, g1, sh2, sc2, g2, sh3, sc3, g3 = mod
        x = torch.addcmul(x, g1, self_attn(torch.addcmul(sh1, F.layer_norm(x, shape, n1w, n1b, eps), sc1)))
        x = torch.addcmul(x, g2, cross_attn(torch.addcmul(sh2, F.layer_norm(x, shape, n2w, n2b, eps), sc2)))
        return torch.addcmul(x, g3, mlp(torch.addcmul(sh3, F.layer_norm(x, shape, n3w, n3b, eps), sc3)))


class ActionExpert(nn.Module):
    """Transformer over T ≤ H action tokens: (B, T, d) tokens, cached prefix K/V, time τ (B,) -> (B, T, d).

    With ``conditioned`` the blocks are modulated by the denoising time (flow τ or DDPM t/T, in [0, 1]); with
    ``causal`` self-attention only looks back (the token head's autoregressive model). Adds a learned
    position embedding per frame and ends with a (modulated) LayerNorm.
    """

    def __init__(self, width: int, heads: int, layers: int, horizon: int, mlp_ratio: int = 2,
                 conditioned: bool = True, causal: bool = False):
        super().__init__()
        if width % heads:
            raise ValueError(f"ActionExpert: width {width} must be divisible by heads {heads}")
        self.width, self.causal = width, causal
        self.pos = nn.Parameter(0.02 * torch.randn(horizon, width))
        self.prefix_norm = nn.LayerNorm(width)
        self.blocks = nn.ModuleList(ExpertBlock(width, heads, mlp_ratio, conditioned) for _ in range(layers))
        self.time_mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width)) \
            if conditioned else None
        self.norm_out = nn.LayerNorm(width, elementwise_affine=not conditioned)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width)) if conditioned else None
        if self.ada_out is not None:
            nn.init.zeros_(self.ada_out[1].weight)
            nn.init.zeros_(self.ada_out[1].bias)

    def cache_kv(self, prefix: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Prefix (B, L, d) -> one (k, v) per block, each (B, nh, L, d/nh). Run once per chunk."""
        p = self.prefix_norm(prefix)
        return [block.cache_kv(p) for block in self.blocks]

    def modulations(self, tau: Tensor) -> list[tuple[Tensor, ...]]:
        """Times (N,) in [0, 1] -> adaLN parameters, split into (N, 1, d) parts: per block its nine (shift,
        1 + scale, gate of each sub-layer), then the output norm's two (shift, 1 + scale).

        They depend on the time only, so a sampler computes every step's in one batched call.
        """
        if self.time_mlp is None:
            raise ValueError("ActionExpert.modulations: this expert is not time-conditioned")
        cond = self.time_mlp(timestep_embedding(tau, self.width))  # (N, d)
        shift, scale = self.ada_out(cond)[:, None].chunk(2, dim=-1)
        return [tuple(block.modulation(cond)[:, None].chunk(9, dim=-1)) for block in self.blocks] + \
            [(shift, 1.0 + scale)]

    def block_weights(self) -> list[tuple[Tensor | None, ...]]:
        """Every block's :meth:`ExpertBlock.weights`: fetched once per chunk by a sampler."""
        return [block.weights() for block in self.blocks]

    def forward(self, tokens: Tensor, kv: list[tuple[Tensor, Tensor]], tau: Tensor | None = None,
                mods: list[tuple[Tensor, ...]] | None = None,
                weights: list[tuple[Tensor | None, ...]] | None = None) -> Tensor:
        """tokens (B, T, d), per-block K/V, and either tau (B,) or its precomputed :meth:`modulations` (parts of
        batch B or 1), ``weights``: :meth:`block_weights` or None -> (B, T, d)."""
        x = tokens + self.pos[: tokens.shape[1]]  # (B, T, d)
        if self.time_mlp is not None and mods is None:
            if tau is None:
                raise ValueError("ActionExpert is time-conditioned: pass tau (B,) or mods")
            mods = self.modulations(tau)
        block_mods = mods[:-1] if mods is not None else [None] * len(self.blocks)
        block_weights = weights if weights is not None else [None] * len(self.blocks)
        for block, block_kv, mod, w in zip(self.blocks, kv, block_mods, block_weights, strict=True):
            x = block.forward(x, block_kv, mod, self.causal, w)  # no module dispatch (see ExpertBlock)
        x = F.layer_norm(x, self.norm_out.normalized_shape, self.norm_out.weight, self.norm_out.bias, self.norm_out.eps)
        if mods is not None:
            shift, scale1 = mods[-1]  # 2 × (B, 1, d): shift, 1 + scale
            x = torch.addcmul(shift, x, scale1)
        return x


# ---------------------------------------------------------------------------------------------------
# Heads


class ActionHead(nn.Module, ABC):
    """One way of generating a normalised chunk (B, H, A) from a :class:`Context`.

    ``loss(ctx, actions)`` -> (scalar loss, metrics named ``loss/...``); ``sample(ctx, generator)`` -> (B, H, A).
    Each head owns an :class:`ActionExpert` (``self.expert``) whose K/V ``cache_kv`` fills the Context.
    """

    expert: ActionExpert

    def __init__(self, horizon: int, action_dim: int):
        super().__init__()
        self.horizon, self.action_dim = horizon, action_dim

    def cache_kv(self, prefix: Tensor) -> list[tuple[Tensor, Tensor]]:
        return self.expert.cache_kv(prefix)

    @abstractmethod
    def loss(self, ctx: Context, actions: Tensor) -> tuple[Tensor, dict[str, float]]:
        """actions (B, H, A) normalised -> (scalar loss, metrics)."""

    @abstractmethod
    def sample(self, ctx: Context, generator: torch.Generator | None = None, guidance: float = 1.0,
               prefix: Prefix | None = None) -> Tensor:
        """-> (B, H, A) normalised chunk. ``guidance`` != 1 (a guided Context): classifier-free guidance.
        ``prefix``: frames to keep (:class:`Prefix`; the flow head only)."""

    @property
    def sample_steps(self) -> int:
        """Sequential network passes per chunk at inference (the token head: one per frame)."""
        return self.horizon

    def set_sample_steps(self, steps: int) -> None:
        """Iterative steps of the sampler at inference (the denoising heads); the token head decodes one step per
        frame, so it has nothing to set."""

    def _noise(self, ctx: Context, generator: torch.Generator | None) -> Tensor:
        return torch.randn((ctx.samples, self.horizon, self.action_dim), generator=generator,
                           device=ctx.prefix.device, dtype=ctx.prefix.dtype)

    def _flow_only(self, ctx: Context, guidance: float, prefix: Prefix | None) -> None:
        """Guidance and inpainting are the flow head's: the other heads refuse them by name."""
        if ctx.guided or guidance != 1.0:
            raise ValueError(f"{type(self).__name__}: classifier-free guidance is implemented for the flow head only")
        if prefix is not None:
            raise ValueError(f"{type(self).__name__}: prefix inpainting and warm starts (stack.s1_inpaint_frames, "
                             "stack.s1_warm_start) are implemented for the flow head only")


class _DenoiserHead(ActionHead):
    """Shared body of the flow and diffusion heads: (B, H, A) chunk and time (B,) -> (B, H, A) prediction."""

    def __init__(self, horizon: int, action_dim: int, width: int, heads: int, layers: int, mlp_ratio: int):
        super().__init__(horizon, action_dim)
        self.expert = ActionExpert(width, heads, layers, horizon, mlp_ratio, conditioned=True)
        self.in_proj = nn.Linear(action_dim, width)
        self.out_proj = nn.Linear(width, action_dim)

    def predict(self, x: Tensor, t: Tensor | None, ctx: Context, mods: list | None = None,
                weights: list[tuple[Tensor | None, ...]] | None = None) -> Tensor:
        """x (B, H, A), t (B,) in [0, 1] (or its precomputed modulations), the expert's ``block_weights`` if the
        caller fetched them -> (B, H, A)."""
        tokens = ctx.condition(F.linear(x, self.in_proj.weight, self.in_proj.bias))
        return F.linear(self.expert.forward(tokens, ctx.kv, t, mods, weights), self.out_proj.weight,
                        self.out_proj.bias)

    def step_modulations(self, times: list[float], device) -> list[list[tuple[Tensor, ...]]]:
        """The expert's :meth:`ActionExpert.modulations` of every sampling step: [step][layer] (1, 1, d) parts,
        which broadcast over any batch.

        They depend on the step times and the weights only, so they are computed once for the S times and kept
        until the times, the device or any weight changes (an optimiser step bumps the weights' versions)."""
        e = self.expert
        params = [*e.time_mlp.parameters(), *e.ada_out.parameters(), *(p for b in e.blocks for p in b.ada.parameters())]
        key = (tuple(times), str(device), torch.is_autocast_enabled(), tuple(p._version for p in params),
               tuple(p.data_ptr() for p in params))
        cache = getattr(self, "_mods_cache", None)
        if cache is None or cache[0] != key or torch.is_grad_enabled():
            tau = torch.tensor(times, device=device, dtype=torch.float32)  # (S,)
            per_layer = self.expert.modulations(tau)  # [layer] parts (S, 1, d)
            cache = (key, [[tuple(part[k:k + 1] for part in parts) for parts in per_layer] for k in range(len(times))])
            if not torch.is_grad_enabled():
                self._mods_cache = cache
        return cache[1]


class FlowHead(_DenoiserHead):
    """Flow matching (π0): predicts the velocity A − ε at A_τ; samples with ``steps`` Euler steps τ: 0 -> 1."""

    def __init__(self, horizon: int, action_dim: int, width: int, heads: int, layers: int, mlp_ratio: int = 2,
                 steps: int = 10, beta_alpha: float = 1.5, beta_beta: float = 1.0, time_max: float = 0.999):
        super().__init__(horizon, action_dim, width, heads, layers, mlp_ratio)
        self.steps, self.beta_alpha, self.beta_beta, self.time_max = steps, beta_alpha, beta_beta, time_max

    def loss(self, ctx: Context, actions: Tensor) -> tuple[Tensor, dict[str, float]]:
        noise = torch.randn_like(actions)
        tau = sample_flow_time(actions.shape[0], self.beta_alpha, self.beta_beta, self.time_max, actions.device)
        pred = self.predict(flow_interpolate(actions, noise, tau), tau, ctx)
        loss = F.mse_loss(pred, flow_target(actions, noise))
        return loss, {"loss/flow": loss.item()}

    @property
    def sample_steps(self) -> int:
        return self.steps

    def set_sample_steps(self, steps: int) -> None:
        if steps < 1:
            raise ValueError(f"FlowHead: sample steps must be >= 1, got {steps}")
        self.steps = steps

    def sample(self, ctx: Context, generator: torch.Generator | None = None, guidance: float = 1.0,
               prefix: Prefix | None = None) -> Tensor:
        """Euler integration of the predicted velocity; with a guided Context (batch 2B: with z, then without)
        the velocity is v(no goal) + guidance·(v(z) − v(no goal)), both halves in one batched pass. With a
        ``prefix``, its frames are inpainted (:class:`Prefix`)."""
        if ctx.guided != (guidance != 1.0):
            raise ValueError(f"FlowHead.sample: guidance {guidance} with a Context built "
                             f"{'with' if ctx.guided else 'without'} guidance (use S1Model.encode_for_sampling)")
        mods = self.step_modulations([k / self.steps for k in range(self.steps)], ctx.prefix.device)
        weights = self.expert.block_weights()

        def velocity(x: Tensor, tau: float) -> Tensor:
            mod = mods[round(tau * self.steps)]  # tau = k / steps
            if not ctx.guided:
                return self.predict(x, None, ctx, mod, weights)
            v_goal, v_none = self.predict(torch.cat([x, x]), None, ctx, mod, weights).chunk(2)
            return torch.lerp(v_none, v_goal, guidance)

        noise = self._noise(ctx, generator)
        if prefix is None:
            return euler_integrate(velocity, noise, self.steps)
        prefix.check(noise.shape)
        first = min(self.steps - 1, round(prefix.start * self.steps))
        x0 = noise if first == 0 else flow_interpolate(prefix.values, noise,
                                                       torch.full(noise.shape[:1], first / self.steps))
        pin = None if not bool(prefix.weights.any()) else (lambda x, tau: prefix.pin(x, noise, tau))
        return euler_integrate(velocity, x0, self.steps, pin, first)


class DiffusionHead(_DenoiserHead):
    """DDPM ε-prediction on a squared-cosine schedule of ``train_steps``; samples ancestrally on an evenly strided
    sub-sequence of ``sample_steps`` (the DDPM posterior of the sub-sequence), clamping x̂_0 to ±clip."""

    def __init__(self, horizon: int, action_dim: int, width: int, heads: int, layers: int, mlp_ratio: int = 2,
                 train_steps: int = 100, sample_steps: int = 10, clip: float = 4.0):
        super().__init__(horizon, action_dim, width, heads, layers, mlp_ratio)
        self.train_steps, self.clip = train_steps, clip
        self.timesteps = ddpm_sample_timesteps(train_steps, sample_steps)
        alpha_bar = cosine_alpha_bar(train_steps)  # (T,) float64
        self.register_buffer("alpha_bar", alpha_bar.float(), persistent=False)
        self._alpha_bar_list = alpha_bar.tolist()  # the sampler's scalars, float64

    def loss(self, ctx: Context, actions: Tensor) -> tuple[Tensor, dict[str, float]]:
        b = actions.shape[0]
        t = torch.randint(0, self.train_steps, (b,), device=actions.device)
        ab = self.alpha_bar[t].reshape(b, 1, 1)
        noise = torch.randn_like(actions)
        x_t = ab.sqrt() * actions + (1.0 - ab).sqrt() * noise
        loss = F.mse_loss(self.predict(x_t, t.float() / self.train_steps, ctx), noise)
        return loss, {"loss/diffusion": loss.item()}

    @property
    def sample_steps(self) -> int:
        return len(self.timesteps)

    def set_sample_steps(self, steps: int) -> None:
        if not 1 <= steps <= self.train_steps:
            raise ValueError(f"DiffusionHead: sample steps must be in 1..{self.train_steps}, got {steps}")
        self.timesteps = ddpm_sample_timesteps(self.train_steps, steps)

    def sample(self, ctx: Context, generator: torch.Generator | None = None, guidance: float = 1.0,
               prefix: Prefix | None = None) -> Tensor:
        self._flow_only(ctx, guidance, prefix)
        x = self._noise(ctx, generator)  # x_{T-1} ~ N(0, I)
        ab = self._alpha_bar_list
        mods = self.step_modulations([t / self.train_steps for t in self.timesteps], ctx.prefix.device)
        weights = self.expert.block_weights()
        for i, t in enumerate(self.timesteps):
            last = i + 1 == len(self.timesteps)
            ab_s = 1.0 if last else ab[self.timesteps[i + 1]]
            eps = self.predict(x, None, ctx, mods[i], weights)
            noise = None if last else self._noise(ctx, generator)
            x = ddpm_posterior_step(x, eps, ab[t], ab_s, noise, self.clip)
        return x


class TokenHead(ActionHead):
    """Autoregressive binned actions: a causal transformer over the H frames.

    Position h's input embeds frame h−1's tokens (a learned BOS for h = 0): the bin centres of its A tokens,
    scaled by 1/clip, through an MLP. Its output gives A independent categoricals over K bins for frame h, with
    low-rank logits ``logit[a, k] = <W_a·o_h, E_k> + b[a, k]`` (E: a (K, e) bin embedding shared by all
    dimensions, as bin k means the same normalised value in every dimension), which keeps A·K·d parameters off
    the model. Teacher forcing with a causal mask in training; H sequential steps at inference, greedy when
    ``temperature`` is 0, else sampled from softmax(logits / temperature).
    """

    def __init__(self, horizon: int, action_dim: int, width: int, heads: int, layers: int, mlp_ratio: int = 2,
                 bins: int = 256, clip: float = 4.0, embed_dim: int = 32, temperature: float = 0.0):
        super().__init__(horizon, action_dim)
        self.bins, self.clip, self.temperature, self.embed_dim = bins, clip, temperature, embed_dim
        self.expert = ActionExpert(width, heads, layers, horizon, mlp_ratio, conditioned=False, causal=True)
        self.bos = nn.Parameter(0.02 * torch.randn(width))
        self.in_mlp = nn.Sequential(nn.Linear(action_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.out_proj = nn.Linear(width, action_dim * embed_dim)
        self.bin_embed = nn.Parameter(torch.randn(bins, embed_dim) / math.sqrt(embed_dim))
        self.bin_bias = nn.Parameter(torch.zeros(action_dim, bins))

    def embed_frames(self, tokens: Tensor) -> Tensor:
        """Previous frames' tokens (B, T, A) -> input embeddings (B, T, d)."""
        return self.in_mlp(detokenize(tokens, self.bins, self.clip) / self.clip)

    def logits(self, ctx: Context, inputs: Tensor) -> Tensor:
        """inputs (B, T, d) -> logits (B, T, A, K), causal over T."""
        o = self.out_proj(self.expert(ctx.condition(inputs), ctx.kv))  # (B, T, A·e)
        o = o.unflatten(-1, (self.action_dim, self.embed_dim))  # (B, T, A, e)
        return o @ self.bin_embed.T + self.bin_bias  # (B, T, A, K)

    def loss(self, ctx: Context, actions: Tensor) -> tuple[Tensor, dict[str, float]]:
        tokens = tokenize(actions, self.bins, self.clip)  # (B, H, A)
        bos = self.bos.expand(actions.shape[0], 1, -1)  # (B, 1, d)
        inputs = torch.cat([bos, self.embed_frames(tokens[:, :-1])], dim=1)  # (B, H, d): teacher forcing
        logits = self.logits(ctx, inputs)
        loss = F.cross_entropy(logits.reshape(-1, self.bins), tokens.reshape(-1))
        acc = (logits.argmax(-1) == tokens).float().mean()
        return loss, {"loss/tokens": loss.item(), "tokens/accuracy": acc.item()}

    def sample(self, ctx: Context, generator: torch.Generator | None = None, guidance: float = 1.0,
               prefix: Prefix | None = None) -> Tensor:
        self._flow_only(ctx, guidance, prefix)
        inputs = self.bos.expand(ctx.batch, 1, -1)  # (B, 1, d)
        frames = []
        for _ in range(self.horizon):
            logits = self.logits(ctx, inputs)[:, -1]  # (B, A, K): the newest frame
            if self.temperature <= 0:
                tok = logits.argmax(-1)  # (B, A)
            else:
                probs = torch.softmax(logits / self.temperature, dim=-1).reshape(-1, self.bins)
                tok = torch.multinomial(probs, 1, generator=generator).reshape(ctx.batch, self.action_dim)
            frames.append(tok)
            inputs = torch.cat([inputs, self.embed_frames(tok[:, None])], dim=1)
        return detokenize(torch.stack(frames, dim=1), self.bins, self.clip)  # (B, H, A)
