"""Quaternion helpers on torch tensors. Convention: (w, x, y, z), shapes (..., 4), vectors (..., 3)."""

from __future__ import annotations

import torch


def quat_conj(q: torch.Tensor) -> torch.Tensor:
    return q * q.new_tensor([1.0, -1.0, -1.0, -1.0])


def quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a * b."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], dim=-1)


def quat_rotate(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotate v by q: q * (0, v) * q^-1."""
    w, xyz = q[..., :1], q[..., 1:]
    t = 2.0 * torch.cross(xyz, v, dim=-1)
    return v + w * t + torch.cross(xyz, t, dim=-1)


def quat_rotate_inverse(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Express a world vector v in the frame of q."""
    return quat_rotate(quat_conj(q), v)


def yaw_of(q: torch.Tensor) -> torch.Tensor:
    """Heading angle about world z, rad. (..., 4) -> (...)."""
    w, x, y, z = q.unbind(-1)
    return torch.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


def rotate_z(v: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate vectors (..., 3) about world z by angle (...)."""
    c, s = torch.cos(angle), torch.sin(angle)
    x, y, z = v.unbind(-1)
    return torch.stack([c * x - s * y, s * x + c * y, z], dim=-1)


def quat_to_tan_norm(q: torch.Tensor) -> torch.Tensor:
    """Continuous 6-D encoding of an orientation: its rotated x and z axes (..., 6)."""
    x = quat_rotate(q, q.new_tensor([1.0, 0.0, 0.0]).expand(q.shape[:-1] + (3,)))
    z = quat_rotate(q, q.new_tensor([0.0, 0.0, 1.0]).expand(q.shape[:-1] + (3,)))
    return torch.cat([x, z], dim=-1)
