"""Clips stacked as padded tensors for per-world reference lookup at the control rate."""

from __future__ import annotations

import numpy as np
import torch

from s0_locomotion.body import Body
from s0_locomotion.motion.clip import ClipError, Kinematics, MotionClip
from s0_locomotion.motion.ops import resample


class MotionLib:
    """C clips, each resampled to the control rate and padded to the longest (T frames).

    Tensors (float32): joint_pos / joint_vel (C, T, n), root_pos / root_lin_vel / root_ang_vel (C, T, 3),
    root_quat (C, T, 4), body_pos (C, T, B, 3) in ``body_names`` order, com_vel (C, T, 3); lengths (C,).
    """

    def __init__(self, clips: list[MotionClip], body: Body, body_names: tuple[str, ...], ctrl_dt: float) -> None:
        if not clips:
            raise ClipError("motion library: no clips")
        kin = Kinematics(body)
        fps = 1.0 / ctrl_dt
        clips = [c if abs(c.fps - fps) < 1e-6 else resample(body, c, fps, kinematics=kin) for c in clips]
        self.names = [c.name for c in clips]
        self.body_names = body_names
        order = [clips[0].body_names.index(b) for b in body_names]
        t_max = max(c.num_frames for c in clips)

        def pad(arrays: list[np.ndarray]) -> torch.Tensor:
            out = np.stack([np.concatenate([a, np.repeat(a[-1:], t_max - len(a), 0)]) for a in arrays])
            return torch.from_numpy(out.astype(np.float32))

        self.lengths = torch.tensor([c.num_frames for c in clips])
        self.joint_pos = pad([c.joint_pos for c in clips])
        self.joint_vel = pad([c.joint_vel for c in clips])
        self.root_pos = pad([c.root_pos for c in clips])
        self.root_quat = pad([c.root_quat for c in clips])
        self.root_lin_vel = pad([c.root_lin_vel for c in clips])
        self.root_ang_vel = pad([c.root_ang_vel for c in clips])
        self.body_pos = pad([c.body_pos[:, order] for c in clips])
        self.com_vel = pad([np.gradient(kin.com_positions(c.root_pos, c.root_quat, c.joint_pos), c.dt, axis=0)
                            for c in clips])

    @property
    def num_clips(self) -> int:
        return len(self.names)

    def frame(self, clip: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
        """Reference at integer frames t (N,) of clips (N,), clamped to each clip's last frame."""
        t = torch.minimum(t, self.lengths[clip] - 1)
        return {k: getattr(self, k)[clip, t] for k in ("joint_pos", "joint_vel", "root_pos", "root_quat",
                                                        "root_lin_vel", "root_ang_vel", "body_pos", "com_vel")}

