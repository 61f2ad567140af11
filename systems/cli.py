"""The ``humanoid`` command. Thin: each sub-command loads its typed config and calls one function.

Every command takes ``--preset NAME`` (a YAML in ``infra/config/presets`` or a path) and ``key=value``
overrides; ``humanoid config show COMMAND`` prints the resolved configuration of a command.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from infra.config import ConfigError, load_config, to_yaml
from infra.config.s0 import BenchS0Config, EvalS0Config, TrainS0Config
from infra.config.s1 import EvalS1Config, EvalTeacherConfig, TrainS1Config
from infra.config.s2 import EvalStackConfig, TrainS2Config
from infra.config.schemas import BenchSimConfig, BodyInfoConfig, MotionConfig, RunConfig
from infra.config.stack import BenchRuntimeConfig, CollectConfig
from infra.gl import ensure_gl_backend

SCHEMAS = {"run": RunConfig, "body-info": BodyInfoConfig, "bench-sim": BenchSimConfig, "motion": MotionConfig,
           "train-s0": TrainS0Config, "eval-s0": EvalS0Config, "bench-s0": BenchS0Config,
           "collect": CollectConfig, "train-s1": TrainS1Config, "eval-s1": EvalS1Config,
           "train-s2": TrainS2Config, "eval-stack": EvalStackConfig, "eval-teacher": EvalTeacherConfig,
           "bench-runtime": BenchRuntimeConfig}

ALIASES = {"train-s1": {"head": "model.head"},  # short names the issues and the README use
           "eval-teacher": {"checkpoint": "stack.s0_checkpoint"}}


def _cmd_run(cfg: RunConfig, as_json: bool) -> int:
    if cfg.instruction or cfg.script or cfg.stdin:
        return _cmd_run_stack(cfg, as_json)
    from systems.rollout import run

    result = run(cfg, progress=not as_json)
    if as_json:
        print(json.dumps(result))
    else:
        what = f"S0 tracked {cfg.motion}" if cfg.controller == "s0" else "stood under PD"
        status = what if result["success"] else f"FELL ({what} attempted)"
        print(f"{status} for {result['seconds']} s ({result['num_envs']} world(s), {result['pushes']} pushes); "
              f"min root height {result['min_root_height_m']} m, max tilt {result['max_tilt_deg']} deg, "
              f"real-time factor {result['realtime_factor']}")
        print(f"files: {result['out_dir']}  mlflow run: {result.get('mlflow_run_id', '-')}")
    return 0 if result["success"] else 1


def _cmd_run_stack(cfg: RunConfig, as_json: bool) -> int:
    from systems.stack_run import run_stack

    result = run_stack(cfg, progress=not as_json)
    realtime = result["mode"] == "realtime"
    if as_json:
        print(json.dumps(result))
    elif realtime:
        print(_realtime_text(result))
    else:
        scope = "" if result["in_scope"] else " (outside the task families: stood still)"
        print(f"{result['instruction']!r}{scope}: {'success' if result['success'] else 'not done'}"
              f"{', FELL' if result['fell'] else ''} after {result['seconds']} s; files: {result['out_dir']}")
    if realtime:
        return 0 if result["success"] and not result["fell"] else 1
    return 0 if result["success"] or not result["in_scope"] else 1


def _realtime_text(result: dict) -> str:
    """The real-time run's summary: the tasks, then the per-layer timing table."""
    lines = []
    for t in result["tasks"]:
        done = f"success at {t['success_at']} s" if t["success"] else "not done"
        lines.append(f"{t['instruction']!r} ({t['family']}): {done}; stack reacted in {t['reaction_ms']} ms")
    if result["fell"]:
        lines.append(f"the body FELL at {result['fell_at']} s")
    lines.append(f"{'layer':<8}{'rate Hz':>9}{'jitter p99 ms':>15}{'miss rate':>11}{'stale p99 ms':>14}"
                 f"{'step p99 ms':>13}{'restarts':>10}")
    for name, row in result["layers"].items():
        if "rate_hz" not in row:
            lines.append(f"{name:<8} {row.get('error')}")
            continue
        lines.append(f"{name:<8}{row['rate_hz']:>9.2f}{row['jitter_ms_p99']:>15.3f}{row['deadline_miss_rate']:>11.4f}"
                     f"{row['staleness_ms_p99'] if row['staleness_ms_p99'] is not None else float('nan'):>14.2f}"
                     f"{row['step_ms_p99']:>13.3f}{row['restarts']:>10}")
    lines.append(f"real-time factor {result['realtime_factor']}; files: {result['out_dir']}  "
                 f"mlflow run: {result.get('mlflow_run_id', '-')}")
    return "\n".join(lines)


def _cmd_body_info(cfg: BodyInfoConfig, as_json: bool) -> int:
    from s0_locomotion.body import Body

    info = Body(cfg.body).info()
    if as_json:
        print(json.dumps(info))
        return 0
    print(f"{info['name']}: {info['n_dof']} DoF, {info['mass_kg']} kg, {info['height_m']} m")
    for group, n in info["groups"].items():
        print(f"  {group:<12} {n:>3}")
    print(f"{'joint':<30} {'group':<11} {'range (rad)':>18} {'kp':>7} {'kd':>6} {'tau_max':>8}")
    for j in info["joints"]:
        lo, hi = j["range"]
        print(f"{j['name']:<30} {j['group']:<11} {lo:>8.3f} {hi:>8.3f} {j['kp']:>7.1f} {j['kd']:>6.2f} "
              f"{j['torque_limit']:>8.1f}")
    return 0


def _cmd_bench_sim(cfg: BenchSimConfig, as_json: bool) -> int:
    from systems.bench import bench_sim

    result = bench_sim(cfg)
    if as_json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:<32} {value}")
    return 0


def _lazy(module: str, func: str) -> Callable:
    """A command whose module is imported only when it runs (keeps `humanoid --help` fast)."""

    def run(cfg, as_json: bool) -> int:
        import importlib

        return getattr(importlib.import_module(module), func)(cfg, as_json)

    return run


def _add(sub, name: str, help_: str, schema: str, func: Callable) -> None:
    parser = sub.add_parser(name, help=help_, description=help_)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (dotlist)")
    parser.add_argument("--preset", help="preset name from infra/config/presets, or a YAML path")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    if name == "run":
        parser.add_argument("--instruction", help='run the whole stack on an instruction ("walk to the red box")')
        parser.add_argument("--script", metavar="FILE", help="timed instructions, one 'SECONDS INSTRUCTION' per line")
        parser.add_argument("--stdin", action="store_true", help="read new instructions from standard input")
    parser.set_defaults(schema=schema, func=func)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="humanoid", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add(sub, "run", "simulated humanoid rollout: video, metrics JSON, MLflow run", "run", _cmd_run)
    body = sub.add_parser("body", help="the humanoid body").add_subparsers(dest="body_command", required=True)
    _add(body, "info", "DoF, joint groups, limits and gains of the body", "body-info", _cmd_body_info)
    motion = sub.add_parser("motion", help="the motion library").add_subparsers(dest="motion_command", required=True)
    _add(motion, "list", "the procedural library's clips", "motion", _lazy("systems.motion_cmd", "motion_list"))
    _add(motion, "show", "summary of one clip (name=... a library name or a clip file)", "motion",
         _lazy("systems.motion_cmd", "motion_show"))
    _add(motion, "render", "kinematic mp4 of one clip (name=..., out=...)", "motion",
         _lazy("systems.motion_cmd", "motion_render"))
    _add(sub, "collect", "scripted-teacher demonstrations (LeRobot v3 layout) executed by the trained S0",
         "collect", _lazy("systems.s1_cmd", "collect_cmd"))
    train = sub.add_parser("train", help="training").add_subparsers(dest="train_command", required=True)
    _add(train, "s0", "PPO training of the S0 tracking controller", "train-s0",
         _lazy("systems.s0_cmd", "train_s0_cmd"))
    _add(train, "s1", "S1 behaviour cloning (head=flow|diffusion|tokens)", "train-s1",
         _lazy("systems.s1_cmd", "train_s1_cmd"))
    _add(train, "s2", "S2 distillation of S1's goal encoder from image + instruction", "train-s2",
         _lazy("systems.s1_cmd", "train_s2_cmd"))
    evaluate = sub.add_parser("eval", help="evaluation").add_subparsers(dest="eval_command", required=True)
    _add(evaluate, "s0", "S0 tracking: success rate, MPJPE, joint errors per clip", "eval-s0",
         _lazy("systems.s0_cmd", "eval_s0_cmd"))
    _add(evaluate, "s1", "S1 heads: held-out chunk error, closed-loop success, latency", "eval-s1",
         _lazy("systems.s1_cmd", "eval_s1_cmd"))
    _add(evaluate, "stack", "S2 + S1 + S0 closed loop on held-out layouts and paraphrases", "eval-stack",
         _lazy("systems.s1_cmd", "eval_stack_cmd"))
    _add(evaluate, "teacher", "the scripted teacher's plans executed by S0: success, falls and fall times per family",
         "eval-teacher", _lazy("systems.s1_cmd", "eval_teacher_cmd"))
    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench_command", required=True)
    _add(bench, "sim", "raw single-thread physics vs the batched backend", "bench-sim", _cmd_bench_sim)
    _add(bench, "s0", "S0 training throughput vs the physics ceiling, policy latency", "bench-s0",
         _lazy("systems.s0_cmd", "bench_s0_cmd"))
    _add(bench, "runtime", "ZeroMQ vs Ray message latency, S0-sized loops at 500 Hz / 1 kHz", "bench-runtime",
         _lazy("systems.bench_runtime", "bench_runtime_cmd"))
    config = sub.add_parser("config", help="configuration").add_subparsers(dest="config_command", required=True)
    show = config.add_parser("show", help="print the resolved configuration of a command")
    show.add_argument("target", choices=sorted(SCHEMAS))
    show.add_argument("overrides", nargs="*", metavar="key=value")
    show.add_argument("--preset")
    show.set_defaults(func=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ensure_gl_backend()  # before anything imports mujoco
    from infra.checkpoint import CheckpointError
    from s0_locomotion.body import BodyError
    from s0_locomotion.motion.clip import ClipError
    from s0_locomotion.sim.backend import SimError
    from systems.runtime.realtime import RealtimeError

    try:
        schema = args.target if args.func is None else args.schema
        alias = ALIASES.get(schema, {})
        overrides = [alias.get(o.split("=", 1)[0], o.split("=", 1)[0]) + o[o.index("="):] if "=" in o else o
                     for o in args.overrides]
        if getattr(args, "instruction", None):
            overrides.append(f"instruction={json.dumps(args.instruction)}")
        if getattr(args, "script", None):
            overrides.append(f"script={json.dumps(args.script)}")
        if getattr(args, "stdin", False):
            overrides.append("stdin=true")
        cfg = load_config(SCHEMAS[schema], overrides, args.preset)
        if args.func is None:
            print(to_yaml(cfg), end="")
            return 0
        return args.func(cfg, args.json)
    except (ConfigError, BodyError, SimError, ClipError, CheckpointError, FileNotFoundError, ValueError,
            RealtimeError) as exc:
        print(f"humanoid: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
