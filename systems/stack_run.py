"""``humanoid run --instruction "..."``: the whole stack (S2 -> S1 -> S0), in real time by default
(:mod:`systems.runtime.main`) or, with ``mode=lockstep``, in the lockstep runner.

The lockstep run writes ``stack.mp4`` (third-person view with the head camera inset, the instruction and
each layer's output overlaid), ``metrics.json`` and an MLflow run.
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from infra.config import to_yaml
from infra.config.schemas import RunConfig
from infra.config.stack import stack_for_run
from infra.tracking import Tracker
from s0_locomotion.body import TRACK_CAMERA
from s1_policy.policy import S1Policy
from s2_vlm.policy import S2Policy
from systems.layers import S1Layer
from systems.lockstep import LockstepRunner, Tick
from systems.s2_layer import layer_for_stack
from systems.tasks import FAMILY_NAMES, object_phrase, run_layout, task_for


def overlay(frame: np.ndarray, head: np.ndarray, lines: list[str]) -> np.ndarray:
    """Third-person frame (H, W, 3) with the head camera inset (top right) and text lines (top left)."""
    img = Image.fromarray(frame)
    inset = Image.fromarray(head).resize((96, 96), Image.NEAREST)
    img.paste(inset, (img.width - 100, 4))
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((6, 4 + 12 * i), line, fill=(255, 255, 255), stroke_width=1, stroke_fill=(0, 0, 0))
    return np.asarray(img)


def run_stack(cfg: RunConfig, progress: bool = True) -> dict:
    """The whole stack on ``cfg.instruction`` (and ``cfg.script``): in real time (Ray actors, the default) or
    in the lockstep runner."""
    if cfg.mode == "realtime":
        from systems.runtime.main import run_realtime

        return run_realtime(cfg, progress)
    if cfg.script or cfg.stdin:
        raise ValueError("script and stdin (changing instructions during a run) need mode=realtime")
    return run_lockstep(cfg)


def run_lockstep(cfg: RunConfig) -> dict:
    import imageio.v2 as imageio

    torch.set_num_threads(1)
    out = Path(cfg.out_dir) / datetime.now().strftime("run-%Y%m%d-%H%M%S-%f")
    out.mkdir(parents=True, exist_ok=False)
    (out / "config.yaml").write_text(to_yaml(cfg))
    stack_cfg = stack_for_run(cfg)
    s1, s2 = S1Policy.for_stack(cfg.s1_checkpoint, stack_cfg), S2Policy(cfg.s2_checkpoint)
    layout = run_layout(cfg.layout_seed, cfg.scene)
    task = task_for(cfg.instruction, layout, cfg.seconds)
    runner = LockstepRunner(stack_cfg)
    layer1 = S1Layer(s1, runner.body.n_dof, runner.backend.ctrl_dt)
    layer2 = layer_for_stack(s2, s1, stack_cfg)
    frames: list[np.ndarray] = []

    def record(tick: Tick) -> None:
        if tick.chunk.seq % 2:
            return  # 12.5 fps video
        last = layer2.last
        fam = (FAMILY_NAMES[int(np.argmax(last["family"]))] if "family" in last
               else "refused: stop and stand")
        target = (f"bearing {np.degrees(np.arctan2(last['bearing'][1], last['bearing'][0])):+.0f} deg, "
                  f"{float(last['distance']):.1f} m" if "bearing" in last and last["has_target"] > 0.5 else "no target")
        lines = [f'"{cfg.instruction}"', f"t = {tick.time:5.2f} s", f"S2: {fam}; {target}",
                 f"S1: chunk {tick.chunk.seq}, v = {np.linalg.norm(tick.chunk.root_planar_vel[0]):.2f} m/s",
                 f"S0: re-anchors {runner.s0.re_anchors}"]
        view = runner.backend.render(np.array([0]), TRACK_CAMERA, cfg.video.height, cfg.video.width, fast=True)[0]
        frames.append(overlay(view, tick.image, lines))

    with contextlib.ExitStack() as stack:
        stack.callback(runner.close)
        tracker = None
        if cfg.tracking.enabled:
            tracker = stack.enter_context(Tracker(cfg.tracking.experiment, tracking_uri=cfg.tracking.uri or None,
                                                  config=cfg, tags={"command": "run", "instruction": cfg.instruction}))
        result = runner.run(task, layer1, layer2, record=record if cfg.video.enabled else None,
                            max_seconds=cfg.seconds)
        if frames:
            imageio.mimwrite(out / "stack.mp4", frames, fps=12.5, macro_block_size=8)
        summary = {"mode": "lockstep", "instruction": cfg.instruction, "family": task.family, "target": task.target,
                   "in_scope": layer2.in_scope, "success": bool(result.success), "fell": result.fell,
                   "seconds": round(result.duration_s, 3), "ticks": result.ticks, "out_dir": str(out),
                   "target_phrase": object_phrase(task.target) if task.target else ""}
        (out / "metrics.json").write_text(json.dumps(summary, indent=2))
        if tracker is not None:
            tracker.log_metrics({"eval/success": float(result.success), "eval/fell": float(result.fell)})
            for path in sorted(out.iterdir()):
                tracker.log_artifact(path)
            summary["mlflow_run_id"] = tracker.run_id
    return summary
