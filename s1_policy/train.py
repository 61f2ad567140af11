"""S1 training: behaviour cloning of the teacher's chunks with the flow-matching (or diffusion, tokens) head.

Data: a demonstration dataset (LeRobot v3 layout) with one row per S1 tick: head-camera frame, proprio,
privileged goal parameters and the teacher's chunk. The goal encoder (goal parameters -> z) trains jointly
with the model. Inputs and chunks are normalised per dimension with the training set's mean and std
(stored in the checkpoint). Images get a random shift of up to ``shift_px`` pixels (DrQ's augmentation),
the usual remedy for a small CNN over-fitting a few hundred episodes.

Checkpoints are safetensors + JSON (model, goal encoder, normaliser statistics, optimiser, step, config).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from infra.checkpoint import (
    CheckpointError,
    check_config_matches,
    flatten_state,
    load_checkpoint,
    optimizer_state,
    optimizer_tensors,
    save_checkpoint,
    unflatten_state,
)
from infra.config import to_dict
from infra.config.s1 import TrainS1Config
from s1_policy.dataset import DemoDataset
from s1_policy.features import ChunkCoding, ProprioInput, TaskClock
from s1_policy.goal import GoalEncoder, family_separation_loss
from s1_policy.model import S1Model

IMAGE_KEY = "observation.images.head"
TRAIN_KIND, POLICY_KIND = "s1-train", "s1-policy"
STD_FLOOR = 0.05  # rad (or m, m/s): dimensions that barely move in the demonstrations (a hand that never
# points) are not blown up by normalisation into errors that swamp the rest


@dataclass
class Demos:
    """A dataset in memory. images (N, S, S, 3) uint8; proprio (N, P); goal (N, G); actions (N, H, A)."""

    images: np.ndarray
    proprio: np.ndarray
    goal: np.ndarray
    actions: np.ndarray
    episode: np.ndarray  # (N,) episode index of each row
    time: np.ndarray  # (N,) s since the episode's instruction
    family: np.ndarray  # (N,) task family index from the goal's one-hot entries (names "family.*"), -1 unnamed

    def __len__(self) -> int:
        return len(self.proprio)


def load_demos(root: str | Path, horizon: int) -> Demos:
    ds = DemoDataset(root)
    images = np.concatenate([ds.video_frames(IMAGE_KEY, e["episode_index"]) for e in ds.episodes])
    actions = ds.column("action")
    if actions.shape[1] % horizon:
        raise ValueError(f"{root}: action has {actions.shape[1]} values per row, not a multiple of horizon {horizon}")
    n = len(ds)
    if len(images) != n:
        raise ValueError(f"{root}: {len(images)} video frames for {n} rows")
    time = ds.column("frame_index").reshape(-1) / float(ds.info["fps"])
    goal = ds.column("observation.goal")
    return Demos(images, ds.column("observation.state"), goal, actions.reshape(n, horizon, -1),
                 ds.column("episode_index").reshape(-1), time.astype(np.float32),
                 family_labels(goal, ds.info["features"]["observation.goal"].get("names")))


def load_all(roots: list[str | Path], horizon: int) -> Demos:
    """Several datasets (teacher demonstrations and DAgger rounds) as one; episode indices kept distinct."""
    parts = [load_demos(r, horizon) for r in roots]
    for root, d in zip(roots[1:], parts[1:]):
        for name, a, b in (("observation.state", d.proprio, parts[0].proprio), ("observation.goal", d.goal,
                           parts[0].goal), ("action", d.actions, parts[0].actions), ("images", d.images,
                           parts[0].images)):
            if a.shape[1:] != b.shape[1:]:
                raise ValueError(f"{root}: {name} has shape {a.shape[1:]} per row, {roots[0]} has {b.shape[1:]}")
    offsets = np.cumsum([0] + [int(d.episode.max()) + 1 for d in parts[:-1]])
    return Demos(*(np.concatenate([getattr(d, f) for d in parts]) for f in ("images", "proprio", "goal", "actions")),
                 np.concatenate([d.episode + o for d, o in zip(parts, offsets)]),
                 np.concatenate([d.time for d in parts]), np.concatenate([d.family for d in parts]))


def coded(d: Demos, coding: ChunkCoding) -> Demos:
    """The demonstrations with their chunks as S1's network sees them (``ChunkCoding``)."""
    return replace(d, actions=coding.encode(d.actions, d.actions.shape[-1] - 4)) if coding.heading_rate else d


def early_sampling(time: np.ndarray, early_s: float, weight: float) -> np.ndarray | None:
    """Row probabilities that draw rows from the first ``early_s`` s of an episode ``weight`` times as often
    (None: uniform). From the standing start the body's state says nothing about the task, so only z (and the
    task clock) can tell S1 what to do there, and those rows are about 1 % of a dataset of 6 s episodes."""
    if early_s <= 0 or weight == 1.0:
        return None
    w = np.where(time < early_s, weight, 1.0)
    return w / w.sum()


def family_labels(goal: np.ndarray, names: list[str] | None) -> np.ndarray:
    """(N,) index of each row's task family: the largest of the goal entries named ``family.*``; rows with
    none set (and datasets without the names) get -1."""
    cols = [i for i, name in enumerate(names or []) if name.startswith("family.")]
    if not cols:
        return np.full(len(goal), -1, dtype=np.int64)
    onehot = goal[:, cols]
    return np.where(onehot.max(1) > 0.5, onehot.argmax(1), -1).astype(np.int64)


def normaliser_stats(d: Demos) -> dict[str, torch.Tensor]:
    """Per-dimension mean and std (floored) of proprio and of the chunk's per-frame values."""
    a = d.actions.reshape(-1, d.actions.shape[-1])
    return {"proprio_mean": torch.from_numpy(d.proprio.mean(0)), "proprio_std":
            torch.from_numpy(np.maximum(d.proprio.std(0), STD_FLOOR)), "action_mean": torch.from_numpy(a.mean(0)),
            "action_std": torch.from_numpy(np.maximum(a.std(0), STD_FLOOR))}


def random_shift(images: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """DrQ augmentation: replicate-pad by ``pad`` and crop back at a random offset. (B, 3, S, S) uint8."""
    if pad <= 0:
        return images
    b, _, h, w = images.shape
    padded = F.pad(images.float(), (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None])  # (B, h)
    cols = (dx[:, None] + torch.arange(w)[None])  # (B, w)
    out = padded[torch.arange(b)[:, None, None, None], torch.arange(3)[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]
    return out.to(torch.uint8)


class Batcher:
    """Normalised torch batches from :class:`Demos`."""

    def __init__(self, d: Demos, stats: dict[str, torch.Tensor], inputs: ProprioInput | None = None) -> None:
        """``inputs``: how the proprioception input is built (the task clock, a blind S1's zeroed body state)."""
        self.d, self.stats, self.inputs = d, stats, inputs or ProprioInput()

    def get(self, idx: np.ndarray) -> tuple[torch.Tensor, ...]:
        d, s = self.d, self.stats
        image = torch.from_numpy(d.images[idx]).permute(0, 3, 1, 2).contiguous()  # (B, 3, S, S) uint8
        proprio = self.inputs((torch.from_numpy(d.proprio[idx]) - s["proprio_mean"]) / s["proprio_std"], d.time[idx])
        actions = (torch.from_numpy(d.actions[idx]) - s["action_mean"]) / s["action_std"]
        return image, proprio, torch.from_numpy(d.goal[idx]), actions

    def family(self, idx: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.d.family[idx])


def chunk_error(model: S1Model, goal: GoalEncoder, batcher: Batcher, n: int = 512, seed: int = 0) -> float:
    """Mean squared error (normalised units) of sampled chunks against held-out demonstrations."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(batcher.d), size=min(n, len(batcher.d)), replace=False)
    model.eval()
    errs = []
    with torch.inference_mode():
        for part in np.array_split(idx, max(1, len(idx) // 128)):
            image, proprio, g, actions = batcher.get(part)
            pred = model.sample(image, proprio, goal(g), generator=torch.Generator().manual_seed(seed))
            errs.append(((pred - actions) ** 2).mean(dim=(1, 2)))
    model.train()
    return float(torch.cat(errs).mean())


def save_s1(path: Path, kind: str, model: S1Model, goal: GoalEncoder, stats: dict, cfg: TrainS1Config, step: int,
            extra: dict | None = None, optimizer: torch.optim.Optimizer | None = None) -> Path:
    tensors = {**flatten_state("model", model.state_dict()), **flatten_state("goal", goal.state_dict()),
               **{f"stats/{k}": v for k, v in stats.items()}}
    meta = {"config": to_dict(cfg), "model": to_dict(cfg.model), "goal_dim": goal.goal_dim, "step": step,
            **(extra or {})}
    if optimizer is not None:
        tensors |= optimizer_tensors(optimizer)
    return save_checkpoint(path, tensors, meta, kind=kind)


def _restore(path: str, model: S1Model, goal: GoalEncoder, opt: torch.optim.Optimizer, cfg: TrainS1Config) -> int:
    ckpt = load_checkpoint(path, kind=TRAIN_KIND)
    check_config_matches(ckpt.meta["config"], to_dict(cfg), ["model", "data"])
    _check_coding(ckpt.meta["config"], cfg, path)
    model.load_state_dict(unflatten_state("model", ckpt.tensors))
    goal.load_state_dict(unflatten_state("goal", ckpt.tensors))
    opt.load_state_dict(opt.state_dict() | {"state": optimizer_state(ckpt.tensors)})
    return int(ckpt.meta["step"])


def _init_from(ckpt, cfg: TrainS1Config, model: S1Model, goal: GoalEncoder) -> None:
    """Fine-tuning start: the network and goal encoder of an S1 policy trained with the same model config."""
    check_config_matches(ckpt.meta["config"], to_dict(cfg), ["model", "task_clock_s"])  # names the mismatch
    saved, clock = TaskClock.of(ckpt.meta["config"]), TaskClock.of(to_dict(cfg))
    if saved != clock:  # a checkpoint from before task_clock_octaves has none
        raise CheckpointError(f"{cfg.init}: trained with task_clock_octaves={saved.octaves}, this run asks for "
                              f"{clock.octaves}")
    _check_coding(ckpt.meta["config"], cfg, cfg.init)
    _load_goal(ckpt, cfg.init, goal, cfg.model.z_dim)
    model.load_state_dict(unflatten_state("model", ckpt.tensors))


def _check_coding(saved: dict, cfg: TrainS1Config, path: str) -> None:
    """A checkpoint's network and statistics are in its own chunk coding: a run continuing it must keep it."""
    old, new = ChunkCoding.of(saved), ChunkCoding.of(to_dict(cfg))
    if old != new:
        raise CheckpointError(f"{path}: trained with heading_rate={old.heading_rate} (frames {old.frame_dt} s "
                              f"apart), this run asks for heading_rate={new.heading_rate} ({new.frame_dt} s)")


def _load_goal(ckpt, path: str, goal: GoalEncoder, z_dim: int) -> None:
    """The goal encoder of an S1 policy checkpoint (``init``, ``goal_from``): same goal parameters and z size."""
    if int(ckpt.meta["goal_dim"]) != goal.goal_dim or int(ckpt.meta["model"]["z_dim"]) != z_dim:
        raise CheckpointError(f"{path}: goal encoder for {ckpt.meta['goal_dim']} goal parameters -> z of "
                              f"{ckpt.meta['model']['z_dim']}, this run needs {goal.goal_dim} -> {z_dim}")
    goal.load_state_dict(unflatten_state("goal", ckpt.tensors))


def train_s1(cfg: TrainS1Config, progress: bool = True, tracker=None) -> dict:
    """Train for ``cfg.steps``; checkpoints ``train.safetensors`` (resumable) and ``policy.safetensors``."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    coding = ChunkCoding.of(to_dict(cfg))
    demos = coded(load_all([cfg.data, *cfg.more_data], cfg.model.horizon), coding)
    held = coded(load_demos(cfg.eval_data, cfg.model.horizon), coding) if cfg.eval_data else None
    stats = normaliser_stats(demos)
    if cfg.resume or cfg.init:
        source = load_checkpoint(cfg.resume or cfg.init, kind=TRAIN_KIND if cfg.resume else POLICY_KIND)
        stats = {k.removeprefix("stats/"): v for k, v in source.tensors.items() if k.startswith("stats/")}
    model = S1Model(cfg.model)
    goal = GoalEncoder(demos.goal.shape[1], cfg.model.z_dim)
    if cfg.init:
        _init_from(source, cfg, model, goal)
    if cfg.goal_from:
        _load_goal(load_checkpoint(cfg.goal_from, kind=POLICY_KIND), cfg.goal_from, goal, cfg.model.z_dim)
    params = list(model.parameters()) + list(goal.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    start = _restore(cfg.resume, model, goal, opt, cfg) if cfg.resume else 0
    inputs = ProprioInput.of(to_dict(cfg))
    clock = inputs.clock
    want = demos.proprio.shape[1] + clock.dim
    if cfg.model.proprio_dim != want:
        raise ValueError(f"train s1: model.proprio_dim is {cfg.model.proprio_dim}, the data gives {want} "
                         f"({demos.proprio.shape[1]} proprio{f' + {clock.dim} task clock' if clock.dim else ''})")
    if cfg.goal_separation > 0 and not (demos.family >= 0).any():
        raise ValueError(f"train s1: goal_separation={cfg.goal_separation} needs task families, and {cfg.data}'s "
                         "observation.goal has no entries named family.* (set goal_separation=0)")
    batcher = Batcher(demos, stats, inputs)
    row_p = early_sampling(demos.time, cfg.early_s, cfg.early_weight)
    held_batcher = Batcher(held, stats, inputs) if held is not None else None
    rng = np.random.default_rng(cfg.seed + start)
    gen = torch.Generator().manual_seed(cfg.seed + start)
    metrics: dict[str, float] = {}
    t0 = time.perf_counter()
    bar = tqdm(range(start, cfg.steps), desc=f"train s1 ({cfg.model.head})", disable=not progress)
    for step in bar:
        if cfg.freeze_goal_after and step == cfg.freeze_goal_after and not (cfg.init or cfg.goal_from):
            save_s1(out / "goal_frozen.safetensors", POLICY_KIND, model, goal, stats, cfg, step)
        goal_trains = not (cfg.init or cfg.goal_from or (cfg.freeze_goal_after and step >= cfg.freeze_goal_after))
        goal.requires_grad_(goal_trains)
        lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup) * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        idx = rng.choice(len(demos), cfg.batch_size, p=row_p) if row_p is not None else \
            rng.integers(0, len(demos), cfg.batch_size)
        image, proprio, g, actions = batcher.get(idx)
        proprio = proprio + cfg.proprio_noise * torch.randn(proprio.shape, generator=gen)
        if 0 < cfg.proprio_dropout:
            drop = torch.rand(len(idx), generator=gen) < cfg.proprio_dropout  # the body part; the clock stays
            proprio[drop, :demos.proprio.shape[1]] = 0.0
        z = goal(g)
        loss, logs = model.loss(random_shift(image, cfg.shift_px, gen), proprio, z, actions)
        if goal_trains and cfg.goal_separation > 0:
            family = batcher.family(idx)
            known = family >= 0
            separation = family_separation_loss(z[known], family[known], cfg.goal_margin)
            loss = loss + cfg.goal_separation * separation
            logs["loss/goal_separation"] = float(separation.detach())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        metrics = {"loss/total": float(loss.detach()), **logs, "train/lr": lr}
        if (step + 1) % cfg.log_every == 0:
            metrics["perf/samples_per_s"] = cfg.log_every * cfg.batch_size / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            if held_batcher is not None and (step + 1) % cfg.eval_every == 0:
                metrics["eval/chunk_error"] = chunk_error(model, goal, held_batcher)
            if tracker is not None:
                tracker.log_metrics(metrics, step=step + 1)
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        if (step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps:
            save_s1(out / "train.safetensors", TRAIN_KIND, model, goal, stats, cfg, step + 1, optimizer=opt)
            save_s1(out / "policy.safetensors", POLICY_KIND, model, goal, stats, cfg, step + 1)
    if held_batcher is not None:
        metrics["eval/chunk_error"] = chunk_error(model, goal, held_batcher)
    return {k: v for k, v in metrics.items()} | {"step": cfg.steps}
