"""Tests of the S1 model and its three action heads (``s1_policy.model``, ``s1_policy.heads``).

Latency (one thread, batch 1, encode + full sample) is measured by ``s1_policy.model.measure_latency``::

    python -c "from s1_policy.model import *; [print(h, measure_latency(S1Model(S1ModelConfig(head=h))))
               for h in HEADS]"
"""

from __future__ import annotations

import math

import pytest
import torch

from s1_policy.heads import (
    Context,
    cosine_alpha_bar,
    ddpm_posterior_step,
    ddpm_sample_timesteps,
    detokenize,
    euler_integrate,
    flow_interpolate,
    flow_target,
    sample_flow_time,
    tokenize,
)
from s1_policy.model import HEADS, S1Model, S1ModelConfig, fake_inputs

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(head: str, **kw) -> S1ModelConfig:
    return S1ModelConfig(image_size=32, proprio_dim=8, z_dim=8, horizon=4, action_dim=3, width=32, heads=2,
                         layers=1, cnn_channels=[8, 16, 16, 16], visual_grid=2, keypoints=4, head=head,
                         token_bins=64, **kw)


# ---------------------------------------------------------------------------------------------------
# 1. shapes and finiteness


@pytest.mark.parametrize("head", HEADS)
def test_default_config_shapes_and_finite(head):
    torch.manual_seed(0)
    cfg = S1ModelConfig(head=head)
    model = S1Model(cfg)
    assert 1_000_000 <= model.num_parameters() <= 3_000_000
    image, proprio, z = fake_inputs(cfg, batch=2, generator=torch.Generator().manual_seed(0))
    actions = torch.randn(2, cfg.horizon, cfg.action_dim)
    loss, metrics = model.loss(image, proprio, z, actions)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert all(k.startswith(("loss/", "tokens/")) and math.isfinite(v) for k, v in metrics.items())
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    ctx = model.encode(image, proprio, z)
    assert ctx.prefix.shape == (2, cfg.visual_grid**2 + 3, cfg.width)
    assert len(ctx.kv) == cfg.layers and ctx.kv[0][0].shape == (2, cfg.heads, ctx.prefix.shape[1], 32)
    chunk = model.sample(ctx)
    assert chunk.shape == (2, cfg.horizon, cfg.action_dim) and torch.isfinite(chunk).all()
    assert ctx.cond is None


@pytest.mark.parametrize("head", HEADS)
def test_goal_to_actions_conditions_every_action_token(head):
    torch.manual_seed(0)
    cfg = tiny_config(head, goal_to_actions=True)
    model = S1Model(cfg)
    image, proprio, z = fake_inputs(cfg, batch=2, generator=torch.Generator().manual_seed(0))
    ctx = model.encode(image, proprio, z)
    assert ctx.cond.shape == (2, cfg.width)
    tokens = torch.randn(2, cfg.horizon, cfg.width)
    torch.testing.assert_close(ctx.condition(tokens) - tokens, ctx.cond[:, None].expand_as(tokens))
    loss, _ = model.loss(image, proprio, z, torch.randn(2, cfg.horizon, cfg.action_dim))
    loss.backward()
    assert model.z_actions[0].weight.grad.abs().sum() > 0  # the path is trained
    assert model.sample(ctx, generator=torch.Generator().manual_seed(0)).shape == (2, cfg.horizon, cfg.action_dim)


def test_classifier_free_guidance_extrapolates_from_no_goal_to_the_goal():
    """With one Euler step the chunk is noise + v, so the guided chunk at weight w must be the lerp of the
    chunks at w = 0 (the "no goal" model, blind to z) and w = 1 (the goal-conditioned model)."""
    torch.manual_seed(0)
    cfg = tiny_config("flow", goal_to_actions=True, goal_dropout=0.2, flow_steps=1)
    model = S1Model(cfg)
    with torch.no_grad():
        for param in model.parameters():  # leave adaLN-Zero's identity start: make every path matter
            param.normal_(0.0, 0.3)
    image, proprio, z = fake_inputs(cfg, batch=2, generator=torch.Generator().manual_seed(0))

    def chunk(w: float, goal: torch.Tensor = z) -> torch.Tensor:
        model.guidance = w
        return model.sample(image, proprio, goal, generator=torch.Generator().manual_seed(1))

    none, goal, guided = chunk(0.0), chunk(1.0), chunk(2.5)
    assert (goal - none).abs().max() > 1e-3  # z matters
    torch.testing.assert_close(guided, none + 2.5 * (goal - none), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(chunk(0.0, torch.randn_like(z)), none)  # w = 0 ignores z
    model.guidance = 1.0
    torch.testing.assert_close(model.sample(model.encode(image, proprio, z),
                                            generator=torch.Generator().manual_seed(1)), goal)
    # training drops z at the configured rate, and the "no goal" embeddings learn
    model.train()
    loss, _ = model.loss(image.repeat(16, 1, 1, 1), proprio.repeat(16, 1), z.repeat(16, 1),
                         torch.randn(32, cfg.horizon, cfg.action_dim))
    loss.backward()
    assert model.null_z_token.grad.abs().sum() > 0 and model.null_z_actions.grad.abs().sum() > 0


@pytest.mark.parametrize("head", HEADS)
def test_guidance_needs_goal_dropout_and_the_flow_head(head):
    with pytest.raises(ValueError, match="goal_dropout > 0"):
        tiny_config(head, guidance=2.0)
    if head != "flow":
        with pytest.raises(ValueError, match="goal_dropout > 0"):
            tiny_config(head, guidance=2.0, goal_dropout=0.1)
    model = S1Model(tiny_config(head))
    image, proprio, z = fake_inputs(model.config, batch=1)
    with pytest.raises(ValueError, match="goal_dropout > 0"):
        model.encode(image, proprio, z, drop=torch.tensor([True]))


@pytest.mark.parametrize("head", ["flow", "diffusion"])
def test_sampling_keeps_the_step_modulations_until_a_weight_changes(head):
    """The per-step adaLN parameters are cached between chunks; an in-place weight update (what an optimiser
    step does) must invalidate them."""
    import copy

    torch.manual_seed(0)
    model = S1Model(tiny_config(head))
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.3)
    model.eval()
    image, proprio, z = fake_inputs(model.config, batch=2, generator=torch.Generator().manual_seed(0))

    def chunk(m: S1Model) -> torch.Tensor:
        with torch.inference_mode():
            return m.sample(image, proprio, z, generator=torch.Generator().manual_seed(1))

    first = chunk(model)
    torch.testing.assert_close(chunk(model), first, rtol=0, atol=0)
    with torch.no_grad():
        model.head.expert.time_mlp[0].weight.mul_(1.5)
    changed = chunk(model)
    assert (changed - first).abs().max() > 1e-4
    fresh = copy.deepcopy(model)
    fresh.head._mods_cache = None  # computed from scratch with the changed weights
    torch.testing.assert_close(chunk(fresh), changed, rtol=0, atol=0)


def test_any_image_size_and_clear_errors():
    cfg = tiny_config("flow")
    model = S1Model(cfg)
    _, proprio, z = fake_inputs(cfg, batch=2)
    image = torch.randint(0, 256, (2, 3, 40, 56), dtype=torch.uint8)  # not square, not image_size
    assert model.sample(image, proprio, z).shape == (2, 4, 3)
    with pytest.raises(ValueError, match="proprio must be"):
        model.encode(image, proprio[:, :5], z)
    with pytest.raises(ValueError, match="H, W >= 32"):
        model.encode(image[..., :16, :16], proprio, z)
    with pytest.raises(ValueError, match="actions must be"):
        model.loss(image, proprio, z, torch.zeros(2, 5, 3))
    with pytest.raises(ValueError, match="head must be one of"):
        S1ModelConfig(head="diffusionn")


# ---------------------------------------------------------------------------------------------------
# 2. flow matching math


def test_flow_interpolate_and_target_by_hand():
    a = torch.tensor([[[1.0, -2.0]]]).repeat(3, 1, 1)  # (B=3, H=1, A=2)
    e = torch.tensor([[[0.5, 4.0]]]).repeat(3, 1, 1)
    x = flow_interpolate(a, e, torch.tensor([0.0, 1.0, 0.25]))
    torch.testing.assert_close(x[0], e[0])  # τ = 0: pure noise
    torch.testing.assert_close(x[1], a[1])  # τ = 1: data
    torch.testing.assert_close(x[2], torch.tensor([[0.625, 2.5]]))  # 0.25·a + 0.75·e
    torch.testing.assert_close(flow_target(a, e)[0], torch.tensor([[0.5, -6.0]]))


def test_euler_on_exact_velocity_reaches_data():
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(1, 4, 3, generator=gen, dtype=torch.float64)
    eps = torch.randn(1, 4, 3, generator=gen, dtype=torch.float64)
    # The marginal velocity field of a single data point A: v(x, τ) = (A − x)/(1 − τ). Euler's last step, from
    # τ = 1 − Δ, lands on A exactly whatever the error before it.
    out = euler_integrate(lambda x, tau: (a - x) / (1.0 - tau), eps, steps=10)
    torch.testing.assert_close(out, a, rtol=0, atol=1e-12)
    # The straight path's constant velocity A − ε from x0 = ε also reaches A.
    torch.testing.assert_close(euler_integrate(lambda x, tau: flow_target(a, eps), eps, 7), a, rtol=0, atol=1e-12)


def test_flow_time_emphasises_noise():
    torch.manual_seed(0)
    tau = sample_flow_time(20000, 1.5, 1.0, 0.999)
    assert tau.min() >= 0 and tau.max() <= 0.999
    # τ = 0.999·(1 − u), u ~ Beta(1.5, 1): E[τ] = 0.999·0.4; P(τ < 0.5) = 1 − (0.5/0.999)^1.5 ≈ 0.646
    assert abs(tau.mean().item() - 0.3996) < 0.01
    assert abs((tau < 0.5).float().mean().item() - 0.646) < 0.02


# ---------------------------------------------------------------------------------------------------
# 3. DDPM


def test_cosine_schedule_monotone_in_unit_interval():
    ab = cosine_alpha_bar(100)
    assert ab.shape == (100,)
    assert (ab > 0).all() and (ab < 1).all() and (ab.diff() < 0).all()
    assert ab[0] > 0.999 and ab[-1] < 1e-3
    assert ddpm_sample_timesteps(100, 10) == [99, 88, 77, 66, 55, 44, 33, 22, 11, 0]


def test_posterior_step_matches_gaussian_conditioning():
    ab = cosine_alpha_bar(100).tolist()
    x0, xt = torch.tensor([0.7], dtype=torch.float64), torch.tensor([-0.3], dtype=torch.float64)
    t, s = 60, 40
    eps = (xt - math.sqrt(ab[t]) * x0) / math.sqrt(1 - ab[t])  # the ε that makes x̂_0 = x0
    # Independently: x_s ~ N(√ᾱ_s x0, 1 − ᾱ_s), x_t | x_s ~ N(√a x_s, 1 − a), a = ᾱ_t/ᾱ_s; condition on x_t.
    a = ab[t] / ab[s]
    var = 1.0 / (1.0 / (1 - ab[s]) + a / (1 - a))
    mean = var * (math.sqrt(ab[s]) * x0 / (1 - ab[s]) + math.sqrt(a) * xt / (1 - a))
    torch.testing.assert_close(ddpm_posterior_step(xt, eps, ab[t], ab[s]), mean)
    one = torch.ones_like(xt)
    torch.testing.assert_close(ddpm_posterior_step(xt, eps, ab[t], ab[s], noise=one) - mean, math.sqrt(var) * one)


def test_strided_posterior_with_true_eps_recovers_x0():
    gen = torch.Generator().manual_seed(2)
    ab = cosine_alpha_bar(100).tolist()
    steps = ddpm_sample_timesteps(100, 10)
    x0 = torch.randn(2, 4, 3, generator=gen, dtype=torch.float64)
    x = math.sqrt(ab[99]) * x0 + math.sqrt(1 - ab[99]) * torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    for i, t in enumerate(steps):
        eps = (x - math.sqrt(ab[t]) * x0) / math.sqrt(1 - ab[t])  # oracle ε of the current x_t
        last = i + 1 == len(steps)
        noise = None if last else torch.randn(x0.shape, generator=gen, dtype=torch.float64)
        x = ddpm_posterior_step(x, eps, ab[t], 1.0 if last else ab[steps[i + 1]], noise)
    torch.testing.assert_close(x, x0, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------------
# 4. tokenizer


def test_tokenizer_round_trip_and_clipping():
    bins, clip = 256, 4.0
    half = clip / bins  # half a bin width
    x = torch.cat([torch.linspace(-clip, clip, 10001), torch.tensor([-clip, clip, 0.0])])
    tok = tokenize(x, bins, clip)
    assert tok.dtype == torch.int64 and tok.min() == 0 and tok.max() == bins - 1
    assert (detokenize(tok, bins, clip) - x).abs().max() <= half + 1e-6
    out = tokenize(torch.tensor([-100.0, -4.5, 4.5, 1e6]), bins, clip)
    assert out.tolist() == [0, 0, bins - 1, bins - 1]
    torch.testing.assert_close(detokenize(out, bins, clip), torch.tensor([-clip + half] * 2 + [clip - half] * 2))


# ---------------------------------------------------------------------------------------------------
# 5. it learns


@pytest.mark.parametrize("head", HEADS)
def test_learns_goal_conditioned_chunks(head):
    torch.manual_seed(0)
    cfg = tiny_config(head)
    model = S1Model(cfg)
    goals = torch.tensor([[1.0] * 4 + [-1.0] * 4, [-1.0] * 4 + [1.0] * 4])  # (2, D)
    base = torch.tensor([[1.0, -0.5, 0.5], [0.8, -0.3, 0.7], [0.6, -0.1, 0.9], [0.4, 0.1, 1.1]])  # (H, A)
    targets = torch.stack([base, -base])  # (2, H, A): every element differs by >= 0.2·2, mean |a − b| = 1.2
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch = 32
    for _ in range(300):
        which = torch.randint(0, 2, (batch,))
        image, proprio, _ = fake_inputs(cfg, batch)  # image and proprio are distractors
        loss, _ = model.loss(image, proprio, goals[which], targets[which])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    n = 8
    which = torch.arange(2).repeat_interleave(n)
    image, proprio, _ = fake_inputs(cfg, 2 * n)
    chunk = model.sample(image, proprio, goals[which], generator=torch.Generator().manual_seed(0))
    err = (chunk - targets[which]).abs().mean(dim=(1, 2))  # (2n,) per sample
    # A z-blind model gives both goals the same output distribution; by |p − a| + |p − b| >= |a − b| its mean
    # error over the two goals is >= 1.2 / 2 = 0.6 per element.
    assert err.mean() < 0.15 and err.max() < 0.3, f"{head}: per-sample errors {err.tolist()}"


# ---------------------------------------------------------------------------------------------------
# 6. prefix caching


@pytest.mark.parametrize("head", HEADS)
def test_prefix_is_computed_once_per_sample(head):
    torch.manual_seed(0)
    cfg = tiny_config(head, flow_steps=7, diffusion_sample_steps=5, token_temperature=1.0)
    model = S1Model(cfg).eval()
    image, proprio, z = fake_inputs(cfg, 2)
    calls = {"image": 0, "expert": 0}
    model.image_encoder.register_forward_hook(lambda *_: calls.__setitem__("image", calls["image"] + 1))
    expert, forward = model.head.expert, model.head.expert.forward  # the denoisers call forward directly

    def counted(*args, **kw):
        calls["expert"] += 1
        return forward(*args, **kw)

    expert.forward = counted

    raw = model.sample(image, proprio, z, generator=torch.Generator().manual_seed(3))
    expected_steps = {"flow": 7, "diffusion": 5, "tokens": cfg.horizon}[head]
    assert calls == {"image": 1, "expert": expected_steps}

    ctx = model.encode(image, proprio, z)
    assert isinstance(ctx, Context)
    calls.update(image=0, expert=0)
    cached = model.sample(ctx, generator=torch.Generator().manual_seed(3))
    assert calls == {"image": 0, "expert": expected_steps}
    torch.testing.assert_close(cached, raw)
    other = model.sample(ctx, generator=torch.Generator().manual_seed(4))
    assert not torch.equal(other, raw)  # the generator is actually used
