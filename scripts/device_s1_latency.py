"""S1 chunk latency on the CPU (one thread) and, where there is one, a CUDA GPU: the committed checkpoint.

``python scripts/device_s1_latency.py [CHECKPOINT]`` prints one JSON object: batch-1 latency p50/p99 (ms) on
one CPU thread, on the GPU in eager mode (fp32 and bf16 autocast, 10 and 4 Euler steps), replayed as one CUDA
graph, and batch-64 throughput (chunks/s). The goal S1 has is a CPU one (issue 4: p99 <= 20 ms on this CPU);
the GPU rows say what an onboard GPU buys. Every timed call is synchronised; medians of ``N`` calls after warm-up.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch

from s1_policy.model import fake_inputs
from s1_policy.policy import S1Policy

N, WARMUP = 200, 20


def _time(fn, sync: bool) -> tuple[float, float]:
    for _ in range(WARMUP):
        fn()
    out = []
    for _ in range(N):
        if sync:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        out.append(1e3 * (time.perf_counter() - t0))
    return round(float(np.percentile(out, 50)), 3), round(float(np.percentile(out, 99)), 3)


def main(path: str) -> dict:
    model = S1Policy(path).model.eval()
    cfg = model.config
    res: dict = {"checkpoint": path, "euler_steps": model.head.sample_steps, "torch": torch.__version__}
    torch.set_num_threads(1)
    inputs = fake_inputs(cfg, 1, torch.Generator().manual_seed(0))
    with torch.inference_mode():
        res["cpu_1thread_b1_ms_p50"], res["cpu_1thread_b1_ms_p99"] = _time(lambda: model.sample(*inputs), False)
        if not torch.cuda.is_available():
            return res
        res["gpu"] = torch.cuda.get_device_name(0)
        model.cuda()
        one = [t.cuda() for t in inputs]
        for steps in (10, 4):
            model.head.set_sample_steps(steps)
            res[f"gpu_b1_{steps}steps_ms_p50"], res[f"gpu_b1_{steps}steps_ms_p99"] = _time(
                lambda: model.sample(*one), True)
        model.head.set_sample_steps(10)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            res["gpu_b1_bf16_ms_p50"], res["gpu_b1_bf16_ms_p99"] = _time(lambda: model.sample(*one), True)
        many = [t.cuda() for t in fake_inputs(cfg, 64, torch.Generator().manual_seed(1))]
        p50, _ = _time(lambda: model.sample(*many), True)
        res["gpu_b64_chunks_per_s"] = round(64 / (p50 / 1e3), 1)
        try:  # the whole chunk as one CUDA graph (no launch overhead); fails while the sampler copies its step
            # times from the host during capture (seen on an H100, torch 2.11): reported, not hidden
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    model.sample(*one)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                chunk = model.sample(*one)
            res["gpu_b1_graph_ms_p50"], res["gpu_b1_graph_ms_p99"] = _time(graph.replay, True)
            res["gpu_graph_chunk_finite"] = bool(torch.isfinite(chunk).all())
        except Exception as exc:  # noqa: BLE001  (reported, not hidden: capture limits vary by version)
            res["gpu_graph_error"] = f"{type(exc).__name__}: {exc}"[:300]
    return res


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1] if len(sys.argv) > 1 else "checkpoints/s1/policy.safetensors")))
