"""S2 training: distillation of S1's goal encoder (z targets) plus auxiliary labels, from arrays.

The caller (``systems``) turns a demonstration dataset into :class:`S2Data` — images, instructions, the
frozen S1 goal encoder's z for each frame and the auxiliary labels — so this package needs neither S1 nor the
dataset code. Latency-aware: S2 runs every ``s2_period`` and its z is used until the next run, so each
sample pairs the target at frame t with the image of frame t - lag, lag uniform in [0, max_image_lag] within
the episode: the model learns to give the z that is right *now* from an image that is already old.

Checkpoints are safetensors + JSON; the frozen MiniLM weights are not saved (they come with the package).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from infra.checkpoint import (
    check_config_matches,
    flatten_state,
    load_checkpoint,
    optimizer_state,
    optimizer_tensors,
    save_checkpoint,
    unflatten_state,
)
from infra.config import to_dict
from infra.config.s2 import TrainS2Config
from s2_vlm.model import build_s2_model, s2_loss

TRAIN_KIND, POLICY_KIND = "s2-train", "s2-policy"


@dataclass
class S2Data:
    """N frames. images (N, S, S, 3) uint8; z (N, D); bearing (N, 2) cos/sin; distance (N,) m;
    has_target (N,) 0/1; family (N,) long; episode (N,) and frame (N,) index within its episode.
    paraphrases: for an instruction, the instructions that ask for the same thing (same family, same object),
    which training may put in its place (``TrainS2Config.paraphrase_prob``); instructions without an entry
    are never swapped."""

    images: np.ndarray
    texts: list[str]
    z: np.ndarray
    bearing: np.ndarray
    distance: np.ndarray
    has_target: np.ndarray
    family: np.ndarray
    episode: np.ndarray
    frame: np.ndarray
    paraphrases: dict[str, list[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    def vocabulary(self, paraphrase_prob: float) -> list[str]:
        """Every instruction training can show the model: the recorded ones, and their paraphrases when
        training swaps them in."""
        words = set(self.texts)
        if paraphrase_prob > 0:
            words.update(*(self.paraphrases.get(t, ()) for t in set(self.texts)))
        return sorted(words)


def concat_data(parts: list[S2Data]) -> S2Data:
    """One :class:`S2Data` from several (datasets trained on together); episode numbers stay distinct."""
    if len(parts) == 1:
        return parts[0]
    offsets = np.cumsum([0] + [int(p.episode.max()) + 1 if len(p) else 0 for p in parts[:-1]])
    arrays = {f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(S2Data)
              if f.name not in ("texts", "paraphrases", "episode")}
    return S2Data(**arrays, texts=[t for p in parts for t in p.texts],
                  episode=np.concatenate([p.episode + o for p, o in zip(parts, offsets)]),
                  paraphrases={k: v for p in parts for k, v in p.paraphrases.items()})


def lagged_indices(idx: np.ndarray, frame: np.ndarray, max_lag: int, rng: np.random.Generator) -> np.ndarray:
    """Image index for each target index: up to ``max_lag`` frames earlier, never before its episode's start."""
    lag = rng.integers(0, max_lag + 1, size=len(idx))
    return idx - np.minimum(lag, frame[idx])


def _shift(images: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """DrQ random shift of (B, 3, S, S) uint8 images by up to ``pad`` pixels."""
    if pad <= 0:
        return images
    b, _, h, w = images.shape
    padded = F.pad(images.float(), (pad, pad, pad, pad), mode="replicate")
    dx, dy = torch.randint(0, 2 * pad + 1, (2, b), generator=gen)
    rows, cols = dy[:, None] + torch.arange(h), dx[:, None] + torch.arange(w)
    return padded[torch.arange(b)[:, None, None, None], torch.arange(3)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]].to(torch.uint8)


def swap_paraphrase(text: str, paraphrases: dict[str, list[str]], p: float, rng: np.random.Generator) -> str:
    """With probability ``p``, one of ``paraphrases[text]`` drawn uniformly; otherwise (or without an entry)
    ``text``. Draws nothing from ``rng`` when ``p`` is 0."""
    if p <= 0 or rng.random() >= p or not paraphrases.get(text):
        return text
    options = paraphrases[text]
    return options[int(rng.integers(len(options)))]


def drop_words(text: str, p: float, rng: np.random.Generator) -> str:
    """``text`` with each word left out with probability ``p``; at least one word is kept."""
    words = text.split()
    if p <= 0 or len(words) < 2:
        return text
    keep = rng.random(len(words)) >= p
    if not keep.any():
        keep[rng.integers(len(words))] = True
    return " ".join(w for w, k in zip(words, keep) if k)


def batch(d: S2Data, idx: np.ndarray, image_idx: np.ndarray) -> tuple[torch.Tensor, list[str], dict]:
    image = torch.from_numpy(d.images[image_idx]).permute(0, 3, 1, 2).contiguous()
    targets = {"z": torch.from_numpy(d.z[idx]), "bearing": torch.from_numpy(d.bearing[idx]),
               "distance": torch.from_numpy(d.distance[idx]), "has_target": torch.from_numpy(d.has_target[idx]),
               "family": torch.from_numpy(d.family[idx])}
    return image, [d.texts[i] for i in idx], targets


@torch.no_grad()
def z_error(model: torch.nn.Module, d: S2Data, max_lag: int, n: int = 512, seed: int = 0) -> dict[str, float]:
    """Held-out mean squared z error (with the run-time image lag) and family accuracy."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(d), size=min(n, len(d)), replace=False)
    model.eval()
    errs, correct = [], []
    for part in np.array_split(idx, max(1, len(idx) // 128)):
        image, texts, t = batch(d, part, lagged_indices(part, d.frame, max_lag, rng))
        out = model(image, texts)
        errs.append(((out["z"] - t["z"]) ** 2).mean(-1))
        correct.append((out["family"].argmax(-1) == t["family"]).float())
    model.train()
    return {"eval/z_error": float(torch.cat(errs).mean()), "eval/family_accuracy": float(torch.cat(correct).mean())}


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Trainable state without the frozen text encoder (it ships with its package)."""
    frozen_text = not getattr(model.config, "text_trainable", True)
    return {k: v for k, v in model.state_dict().items() if not (frozen_text and k.startswith("text."))}


def save_s2(path: Path, kind: str, model, cfg: TrainS2Config, step: int, meta: dict,
            opt: torch.optim.Optimizer | None = None) -> Path:
    tensors = flatten_state("model", _state(model))
    if opt is not None:
        tensors |= optimizer_tensors(opt)
    return save_checkpoint(path, tensors, {"config": to_dict(cfg), "model": to_dict(cfg.model), "step": step, **meta},
                           kind=kind)


def load_s2_weights(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    missing, unexpected = model.load_state_dict(unflatten_state("model", tensors), strict=False)
    missing = [k for k in missing if not k.startswith("text.")]
    if missing or unexpected:
        raise ValueError(f"S2 checkpoint does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")


def _restore(path: str, model, opt: torch.optim.Optimizer, cfg: TrainS2Config) -> int:
    ckpt = load_checkpoint(path, kind=TRAIN_KIND)
    check_config_matches(ckpt.meta["config"], to_dict(cfg), ["model", "data", "more_data", "s1_checkpoint"])
    load_s2_weights(model, ckpt.tensors)
    opt.load_state_dict(opt.state_dict() | {"state": optimizer_state(ckpt.tensors)})
    return int(ckpt.meta["step"])


def train_s2(cfg: TrainS2Config, data: S2Data, held: S2Data | None = None, meta: dict | None = None,
             progress: bool = True, tracker=None) -> dict:
    """Train for ``cfg.steps``; ``out/train.safetensors`` (resumable) and ``out/policy.safetensors``."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model = build_s2_model(cfg.model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-4)
    start = _restore(cfg.resume, model, opt, cfg) if cfg.resume else 0
    rng = np.random.default_rng(cfg.seed + start)
    gen = torch.Generator().manual_seed(cfg.seed + start)
    metrics: dict[str, float] = {}
    t0 = time.perf_counter()
    model.train()
    for step in tqdm(range(start, cfg.steps), desc="train s2", disable=not progress):
        lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup) * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        idx = rng.integers(0, len(data), cfg.batch_size)
        image, texts, targets = batch(data, idx, lagged_indices(idx, data.frame, cfg.max_image_lag, rng))
        texts = [drop_words(swap_paraphrase(t, data.paraphrases, cfg.paraphrase_prob, rng), cfg.word_dropout, rng)
                 for t in texts]
        loss, logs = s2_loss(model(_shift(image, cfg.shift_px, gen), texts), targets, cfg.weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        metrics = {**logs, "train/lr": lr}
        if (step + 1) % cfg.log_every == 0:
            metrics["perf/samples_per_s"] = cfg.log_every * cfg.batch_size / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            if held is not None and (step + 1) % cfg.eval_every == 0:
                metrics |= z_error(model, held, cfg.max_image_lag)
            if tracker is not None:
                tracker.log_metrics(metrics, step=step + 1)
        if (step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps:
            save_s2(out / "train.safetensors", TRAIN_KIND, model, cfg, step + 1, meta or {}, opt)
            save_s2(out / "policy.safetensors", POLICY_KIND, model, cfg, step + 1, meta or {})
    if held is not None:
        metrics |= z_error(model, held, cfg.max_image_lag)
    return metrics | {"step": cfg.steps}
