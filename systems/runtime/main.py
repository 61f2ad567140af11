"""``humanoid run --instruction "..."`` in real time: the trained stack as Ray actors, then its summary, video,
timing plot and MLflow run.

Files in the run folder: ``summary.json`` (what ``--json`` prints), ``stack.mp4`` (third-person view with
the head camera inset, the current instruction and each layer's latest output overlaid, rendered after the
run from the body's recording so that video never costs the real-time loops anything), ``timing.png``
(per-layer tick periods and step times), ``events.json`` (every layer's output log: S2's family and target
estimate, S1's chunks, S0's fallbacks, the body's stream switches), ``config.yaml``.
"""

from __future__ import annotations

import contextlib
import json
import math
from datetime import datetime
from pathlib import Path

import numpy as np

from infra.config import to_yaml
from infra.config.schemas import RunConfig
from infra.config.stack import StackConfig, stack_for_run
from infra.tracking import Tracker
from systems.runtime.realtime import RealtimeRunner, parse_script
from systems.tasks import OUT_OF_SCOPE, run_layout

LAYER_ORDER = ("body", "camera", "s0", "s0_standby", "s1", "s2")
"""Rows of the timing table: the body's physics and camera loops, then the layers."""


def _clean(x):
    """JSON-safe: NaN/inf -> None, recursively."""
    if isinstance(x, float):
        return None if not math.isfinite(x) else x
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


def layer_table(reports: dict[str, dict], restarts: dict[str, int]) -> dict[str, dict]:
    """Per loop: rate, jitter, deadline misses, step times, the worst input staleness and fault counters."""
    out = {}
    for actor, rep in reports.items():
        for name, loop in rep.get("loops", {}).items():
            inputs = rep.get("inputs", {}) if name == actor else {}
            stale = [v["staleness_ms_p99"] for v in inputs.values()
                     if v.get("staleness_ms_p99") is not None and math.isfinite(v["staleness_ms_p99"])]
            out[name] = {"rate_hz": round(loop["rate_hz"], 2), "jitter_ms_p99": round(loop["jitter_ms_p99"], 3),
                         "deadline_miss_rate": round(loop["deadline_miss_rate"], 4),
                         "staleness_ms_p99": round(max(stale), 2) if stale else math.nan,
                         "step_ms_p50": round(loop["step_ms_p50"], 3), "step_ms_p99": round(loop["step_ms_p99"], 3),
                         "ticks": loop["ticks"], "skipped": loop["skipped"], "restarts": restarts.get(actor, 0)}
            if name == actor:
                out[name] |= {"fallback_ticks": rep.get("fallback_ticks", 0),
                              "rejected_outputs": rep.get("rejected_outputs", 0),
                              "rejected_inputs": sum(v.get("rejected", 0) for v in inputs.values()),
                              "inputs": inputs}
        if not rep.get("loops"):
            out[actor] = {"error": rep.get("error") or "no report", "restarts": restarts.get(actor, 0)}
    return {k: out[k] for k in LAYER_ORDER if k in out} | {k: v for k, v in out.items() if k not in LAYER_ORDER}


def reaction_ms(text: str, stamp: float, events: list[dict]) -> float | None:
    """ms from an instruction issued at ``stamp`` to the first event of a layer that answered it (None: none)."""
    first = next((e["t"] for e in events if e.get("instruction") == text and e["t"] >= stamp), None)
    return round((first - stamp) * 1e3, 1) if first is not None else None


def timing_plot(reports: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loops = [(name, loop) for rep in reports.values() for name, loop in rep.get("loops", {}).items()]
    fig, axes = plt.subplots(len(loops), 2, figsize=(11, 2.1 * len(loops)), squeeze=False)
    for row, (name, loop) in enumerate(loops):
        period, step = np.asarray(loop["trace"]["period_ms"]), np.asarray(loop["trace"]["step_ms"])
        nominal = 1e3 / loop["rate_hz"] if loop["rate_hz"] else math.nan
        axes[row, 0].plot(period, lw=0.7)
        axes[row, 0].axhline(loop["period_ms_p50"], color="k", ls=":", lw=0.7)
        axes[row, 0].set_ylabel(f"{name}\nperiod ms")
        axes[row, 1].plot(step, lw=0.7, color="tab:orange")
        axes[row, 1].axhline(nominal, color="r", ls=":", lw=0.7, label="period")
        axes[row, 1].set_ylabel("step ms")
        axes[row, 1].set_title(f"miss rate {loop['deadline_miss_rate']:.3f}, jitter p99 {loop['jitter_ms_p99']:.2f} ms",
                               fontsize=8)
    axes[-1, 0].set_xlabel("tick")
    axes[-1, 1].set_xlabel("tick")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def render_video(cfg: RunConfig, stack: StackConfig, record: Path, s1_events: list[dict], s2_events: list[dict],
                 issued: list[dict], out: Path) -> Path | None:
    """``stack.mp4`` from the body's recording: the state replayed in a fresh world, the head camera inset,
    the instruction and the layers' outputs at that instant overlaid."""
    import imageio.v2 as imageio

    from systems.lockstep import World
    from systems.stack_run import overlay

    if not record.exists():
        return None
    rec = np.load(record)
    heads = np.load(record.with_name("head.npz")) if record.with_name("head.npz").exists() else None
    head_t = heads["time"] if heads is not None else np.zeros(0)
    world = World(stack)
    frames = []
    try:
        for t, state in zip(rec["time"], rec["state"]):
            world.backend.set_state(state[None], np.array([0]))
            view = world.view(cfg.video.height, cfg.video.width)
            k = np.searchsorted(head_t, t, side="right") - 1
            head = heads["head"][k] if k >= 0 else np.zeros((stack.image_size,) * 2 + (3,), np.uint8)
            instr = next((i["text"] for i in reversed(issued) if i["stamp"] <= t), "")
            s2 = next((e for e in reversed(s2_events) if e["t"] <= t), None)
            s1 = next((e for e in reversed(s1_events) if e["t"] <= t), None)
            s2_line = "S2: -" if s2 is None else (f"S2: {s2['family']}" + (
                f"; bearing {s2['bearing_deg']:+.0f} deg, {s2['distance_m']:.1f} m" if s2.get("has_target") else ""))
            s1_line = "S1: -" if s1 is None else (f"S1: chunk {s1['seq']}, v = {s1['speed']:.2f} m/s, "
                                                  f"{s1['infer_ms']:.0f} ms")
            clock = f"t = {t - issued[0]['stamp'] if issued else 0:5.2f} s (real time)"
            frames.append(overlay(view, head, [f'"{instr}"', clock, s2_line, s1_line]))
    finally:
        world.close()
    path = out / "stack.mp4"
    imageio.mimwrite(path, frames, fps=1.0 / (stack.sim.ctrl_dt * cfg.realtime.record_every), macro_block_size=8)
    return path


def run_realtime(cfg: RunConfig, progress: bool = True) -> dict:
    # bad input fails here, named, before Ray and five actor processes start
    for key in ("checkpoint", "s1_checkpoint", "s2_checkpoint"):
        if not Path(getattr(cfg, key)).is_file():
            raise FileNotFoundError(f"{key}: no file {getattr(cfg, key)}")
    if cfg.script:
        path = Path(cfg.script)
        if not path.is_file():
            raise FileNotFoundError(f"script: no file {cfg.script}")
        script = parse_script(path.read_text(), str(path))
        if cfg.instruction:
            script = [(0.0, cfg.instruction)] + [s for s in script if s[0] > 0]
    else:
        script = [(0.0, cfg.instruction)] if cfg.instruction else []
    out = Path(cfg.out_dir) / datetime.now().strftime("run-%Y%m%d-%H%M%S-%f")
    out.mkdir(parents=True, exist_ok=False)
    (out / "config.yaml").write_text(to_yaml(cfg))
    stack = stack_for_run(cfg)
    layout = run_layout(cfg.layout_seed, cfg.scene)
    runner = RealtimeRunner(stack, cfg.realtime, cfg.s1_checkpoint, cfg.s2_checkpoint, layout, out)

    def on_progress(t: float, instruction: str) -> None:
        print(f"\r[{t:5.1f}/{cfg.seconds:.0f} s] {instruction}", end="", flush=True)

    with contextlib.ExitStack() as stack_ctx:
        tracker = None
        if cfg.tracking.enabled:
            tracker = stack_ctx.enter_context(Tracker(cfg.tracking.experiment, tracking_uri=cfg.tracking.uri or None,
                                                      config=cfg, tags={"command": "run", "mode": "realtime",
                                                                        "instruction": cfg.instruction}))
        result = runner.run(script, cfg.seconds, read_stdin=cfg.stdin, on_progress=on_progress if progress else None)
        if progress:
            print()
        reports, t0 = result["reports"], result["t0"]
        body = reports.get("body", {})
        tasks = body.get("tasks", [])
        s1_events = [e for e in reports.get("s1", {}).get("events", []) if "seq" in e]
        s2_events = reports.get("s2", {}).get("events", [])
        for task in tasks:  # the stack's reaction: S1's first chunk for the instruction; S2's first latent too
            stamp = task.pop("issued_stamp")
            task["issued_at"] = round(stamp - t0, 3)
            task["reaction_ms"] = reaction_ms(task["instruction"], stamp, s1_events)
            task["s2_reaction_ms"] = reaction_ms(task["instruction"], stamp, s2_events)
        layers = layer_table(reports, result["restarts"])
        in_scope = [t for t in tasks if t["family"] != OUT_OF_SCOPE]
        fell = body.get("fell_at") is not None
        summary = {"mode": "realtime", "instruction": cfg.instruction or (script[0][1] if script else ""),
                   # every task of a family done; instructions outside the families only ask to stand
                   "success": (all(t["success"] for t in in_scope) if in_scope else bool(tasks) and not fell),
                   "fell": fell, "fell_at": body.get("fell_at"), "interrupted": result["interrupted"], "tasks": tasks,
                   "seconds": round(result["wall_s"], 3), "sim_seconds": body.get("sim_time"),
                   "realtime_factor": round(body["sim_time"] / result["wall_s"], 3) if body.get("sim_time") else None,
                   "layers": layers, "restarts": result["restarts"], "events": result["events"], "out_dir": str(out)}
        (out / "events.json").write_text(json.dumps(_clean({k: rep.get("events", []) for k, rep in reports.items()})))
        timing_plot(reports, out / "timing.png")
        if cfg.video.enabled:
            render_video(cfg, stack, out / "recording.npz", s1_events, s2_events, result["issued"], out)
        summary = _clean(summary)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        if tracker is not None:
            metrics = {"eval/success": float(summary["success"]), "eval/fell": float(fell)}
            for name, row in layers.items():
                for key in ("rate_hz", "jitter_ms_p99", "deadline_miss_rate", "staleness_ms_p99", "step_ms_p99"):
                    if isinstance(row.get(key), float) and math.isfinite(row[key]):
                        metrics[f"timing/{name}/{key}"] = row[key]
            tracker.log_metrics(metrics)
            for name in ("summary.json", "timing.png", "stack.mp4", "config.yaml"):
                if (out / name).exists():
                    tracker.log_artifact(out / name)
            summary["mlflow_run_id"] = tracker.run_id
    return summary
