"""S1 keeps its own previous chunk: prefix inpainting in the flow sampler, the chunk shift, and the layer wiring."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from infra.chunks import chunk_to_world, world_to_chunk
from infra.config.s1 import S1ModelConfig
from infra.config.stack import StackConfig
from s1_policy.features import action_dim, inpaint_weights, shift_chunk
from s1_policy.heads import Prefix
from s1_policy.model import S1Model


def _toy(head: str = "flow") -> S1Model:
    cfg = S1ModelConfig(image_size=32, proprio_dim=2, z_dim=2, horizon=4, action_dim=1, width=32, heads=2, layers=1,
                        cnn_channels=[4], keypoints=2, visual_grid=1, head=head)
    return S1Model(cfg)


def _inputs(n: int) -> tuple[torch.Tensor, ...]:
    return torch.zeros(n, 3, 32, 32, dtype=torch.uint8), torch.zeros(n, 2), torch.zeros(n, 2)


def test_a_warm_start_keeps_the_mode_and_pinning_fixes_the_frame():
    """Chunks are all -2 or all +2 (two phases of one motion). Unpinned, the sampler draws both. Warm-started at
    τ = 0.5 on the path of a +2 chunk, every sample stays at +2. Pinning frame 0 to +2 (replacement inpainting)
    makes that frame exactly +2 and pulls the free frames towards it, but only partly: the mode is chosen in the
    first, noisiest steps, when the pinned frame still carries little of its value."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = _toy()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    image, proprio, z = _inputs(256)
    for _ in range(400):
        sign = torch.where(torch.rand(256) < 0.5, -2.0, 2.0)
        target = (sign[:, None] + 0.05 * torch.randn(256, 4))[..., None]  # (256, 4, 1)
        loss, _ = model.loss(image, proprio, z, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    free = model.sample(image, proprio, z, generator=torch.Generator().manual_seed(1))[:, 1:, 0]
    upper = (free > 1.0).float().mean()
    assert 0.2 < upper < 0.8  # both modes without a prefix
    values = torch.full((256, 4, 1), 2.0)
    warm = model.sample(image, proprio, z, generator=torch.Generator().manual_seed(1),
                        prefix=Prefix(values, torch.zeros(4), start=0.5))
    assert (warm[..., 0] > 1.0).float().mean() > 0.95
    pinned = model.sample(image, proprio, z, generator=torch.Generator().manual_seed(1),
                          prefix=Prefix(values, torch.tensor([1.0, 0.0, 0.0, 0.0])))
    assert torch.equal(pinned[:, 0, 0], values[:, 0, 0])  # weight 1: exactly the known value
    assert upper + 0.05 < (pinned[:, 1:, 0] > 1.0).float().mean() < 0.95


def test_prefix_weights_zero_change_nothing_and_a_wrong_shape_is_named():
    model = _toy().eval()
    image, proprio, z = _inputs(3)
    plain = model.sample(image, proprio, z, generator=torch.Generator().manual_seed(2))
    zero = model.sample(image, proprio, z, generator=torch.Generator().manual_seed(2),
                        prefix=Prefix(torch.ones(3, 4, 1), torch.zeros(4)))
    torch.testing.assert_close(zero, plain, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"Prefix: values \(3, 5, 1\)"):
        model.sample(image, proprio, z, prefix=Prefix(torch.ones(3, 5, 1), torch.zeros(4)))


@pytest.mark.parametrize("head", ["diffusion", "tokens"])
def test_other_heads_refuse_a_prefix_by_name(head):
    model = _toy(head).eval()
    image, proprio, z = _inputs(1)
    with pytest.raises(ValueError, match="inpainting and warm starts.*flow head only"):
        model.sample(image, proprio, z, prefix=Prefix(torch.ones(1, 4, 1), torch.ones(4)))


def test_shift_chunk_matches_the_chunk_planned_from_the_later_pose():
    """A curving walk planned as one world path: the chunk anchored at frame 0, shifted by 2 frames, equals the
    chunk of the same path anchored at frame 2 (the robot where the plan put it), over the frames both cover."""
    n_dof, h, dt = 3, 16, 0.02
    t = np.arange(h + 2) * dt
    yaw = 0.4 + 1.5 * t  # turning at 1.5 rad/s
    xy = np.cumsum(np.stack([np.cos(yaw), np.sin(yaw)], axis=1) * 0.8 * dt, axis=0)
    joints = np.sin(np.arange(h + 2)[:, None] * 0.3 + np.arange(n_dof))
    height = 0.9 + 0.01 * np.arange(h + 2)

    def chunk(first: int) -> np.ndarray:
        sl = slice(first, first + h)
        vel, heading = world_to_chunk(xy[sl], yaw[sl], dt, yaw[first])
        return np.concatenate([joints[sl], height[sl, None], heading[:, None], vel], axis=1)

    shifted, valid = shift_chunk(chunk(0), 2.0, n_dof)
    assert valid == h - 2 and shifted.shape == (h, action_dim(n_dof))
    np.testing.assert_allclose(shifted[:valid - 1], chunk(2)[:valid - 1], atol=1e-5)  # the last velocity repeats
    # a fractional shift interpolates between the two whole ones
    half, _ = shift_chunk(chunk(0), 1.0, n_dof)
    np.testing.assert_allclose(half[:5, :n_dof], joints[1:6], atol=1e-6)
    back_xy, _ = chunk_to_world(shifted[:, n_dof + 2:], shifted[:, n_dof + 1], dt, xy[2], yaw[2])
    np.testing.assert_allclose(back_xy[:valid - 1], xy[2:valid + 1], atol=1e-5)
    with pytest.raises(ValueError, match=r"shift_chunk: expected a \(H, 7\) chunk"):
        shift_chunk(np.zeros((h, 5)), 1.0, n_dof)


def test_inpaint_weights():
    np.testing.assert_allclose(inpaint_weights(6, 4, 6), [1, 0.75, 0.5, 0.25, 0, 0])
    np.testing.assert_allclose(inpaint_weights(6, 4, 2), [1, 0.75, 0, 0, 0, 0])


def test_stack_config_refuses_negative_inpainting():
    with pytest.raises(ValueError, match="s1_inpaint_frames"):
        StackConfig(s1_inpaint_frames=-1)
