"""The trained S0 controller as a small inference object (no training stack needed to run it)."""

from __future__ import annotations

from pathlib import Path

import torch

from infra.checkpoint import load_checkpoint
from infra.config.s0 import BalanceConfig

POLICY_KIND = "s0-policy"
NORMALIZER_EPS = 1e-2  # rsl-rl's EmpiricalNormalization: (x - mean) / (std + eps)


def observation_config(env_config: dict) -> dict:
    """The TrackingEnvConfig fields that define a policy's observation and action, from a (saved) environment
    config. Configs from before ``actor_root_vel`` existed had no velocity input, and configs from before
    ``balance`` existed had no balance feedback on their targets."""
    return {"future_frames": [int(k) for k in env_config["future_frames"]],
            "action_scale": float(env_config["action_scale"]),
            "actor_root_vel": bool(env_config.get("actor_root_vel", False)),
            "balance": BalanceConfig(**env_config.get("balance", {"enabled": False}))}


class S0Policy:
    """Observation (N, obs_dim) -> residual action (N, n_dof); targets = q_ref + action_scale * action.

    The observation is :meth:`TrackingEnv._observe`'s ``policy`` group; ``meta`` holds the environment
    config it was trained with (future frames, action scale) and the body's joint names. Rate: S0's.
    """

    def __init__(self, path: str | Path) -> None:
        ckpt = load_checkpoint(path, kind=POLICY_KIND)
        t = ckpt.tensors
        self.meta = ckpt.meta
        self.path = Path(path)
        self.mean = t["actor/obs_normalizer._mean"].reshape(-1)
        self.std = t["actor/obs_normalizer._std"].reshape(-1)
        layers = sorted({int(k.split(".")[1]) for k in t if k.startswith("actor/mlp.") and k.endswith(".weight")})
        self.weights = [(t[f"actor/mlp.{i}.weight"], t[f"actor/mlp.{i}.bias"]) for i in layers]
        self.obs_dim = self.weights[0][0].shape[1]
        self.observation_config = observation_config(self.meta["config"])
        self.action_scale = self.observation_config["action_scale"]
        self.actor_root_vel = self.observation_config["actor_root_vel"]
        self.balanced_gait = bool(self.meta["config"].get("balanced_gait", False))  # the walks it was trained on
        if self.obs_dim != self.meta["obs_dim"]:
            raise ValueError(f"{path}: network input {self.obs_dim} != recorded obs_dim {self.meta['obs_dim']}")

    def reset(self) -> None:
        """Stateless (the last action is part of the observation)."""

    @torch.inference_mode()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic action (the Gaussian's mean). obs: (N, obs_dim) float32 -> (N, n_dof)."""
        if obs.shape[-1] != self.obs_dim:
            raise ValueError(f"S0 policy {self.path}: expected observations of size {self.obs_dim}, "
                             f"got {obs.shape[-1]}")
        x = (obs - self.mean) / (self.std + NORMALIZER_EPS)
        for i, (w, b) in enumerate(self.weights):
            x = torch.nn.functional.linear(x, w, b)
            if i < len(self.weights) - 1:
                x = torch.nn.functional.elu(x)
        return x
