"""PeriodicLoop (absolute-deadline schedule, statistics) and a smoke run of ``humanoid bench runtime``."""

from __future__ import annotations

import math
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from processes import descendants

from infra.config.stack import BenchRuntimeConfig
from systems.runtime.loop import LoopStats, PeriodicLoop, summarize


def test_200hz_for_half_a_second_runs_100_ticks():
    loop = PeriodicLoop(0.005, "t200", lambda now: None)
    summary = loop.run(until=time.monotonic() + 0.5)
    assert 95 <= summary["ticks"] <= 105  # absolute deadlines: sleep overshoot does not drift the count
    assert summary["ticks"] + summary["skipped"] == 100
    assert summary["rate_hz"] == pytest.approx(200.0, rel=0.05)


def test_step_receives_the_tick_start_and_n_ticks_or_stop_event_end_the_run():
    stamps = []
    loop = PeriodicLoop(0.002, "t", stamps.append)
    assert loop.run(n_ticks=5)["ticks"] == 5
    assert len(stamps) == 5 and all(b > a for a, b in zip(stamps, stamps[1:]))
    stop = threading.Event()
    ticks = []

    def step(now: float) -> None:
        ticks.append(now)
        if len(ticks) == 3:
            stop.set()

    PeriodicLoop(0.002, "s", step).run(stop_event=stop)
    assert len(ticks) == 3


def test_summarize_by_hand():
    periods = np.array([0.010, 0.011, 0.009, 0.013])  # (T-1,) for T = 5 ticks at 100 Hz
    lateness = np.array([0.0, 0.0002, 0.0, 0.0030, 0.0])
    durations = np.array([0.001, 0.002, 0.003, 0.004, 0.005])
    misses = np.array([False, False, False, True, False])
    s = summarize(periods, lateness, durations, misses, period_s=0.010)
    assert s["ticks"] == 5 and s["deadline_miss_rate"] == pytest.approx(1 / 5)
    assert s["rate_hz"] == pytest.approx(1 / 0.01075)
    # jitter |period - 10 ms| = [0, 1, 1, 3] ms: median 1 ms; p99 by linear interpolation 1 + 0.97 * 2 ms
    assert s["jitter_ms_p50"] == pytest.approx(1.0)
    assert s["jitter_ms_p99"] == pytest.approx(2.94)
    assert s["period_ms_p50"] == pytest.approx(10.5)
    assert s["step_ms_p50"] == pytest.approx(3.0) and s["step_ms_p99"] == pytest.approx(4.96)
    assert s["lateness_ms_p99"] == pytest.approx(2.888)
    with pytest.raises(ValueError, match="shape"):
        summarize(periods, lateness[:3], durations, misses, 0.01)
    empty = summarize(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, bool), 0.01)
    assert empty["ticks"] == 0 and math.isnan(empty["rate_hz"])


def test_loop_stats_ring_buffer_keeps_the_newest_ticks():
    stats = LoopStats(0.01, capacity=3)
    for k in range(5):
        stats.record(math.nan if k == 0 else 0.01, 0.0, float(k), k == 4)
    periods, _, durations, misses = stats.arrays()
    np.testing.assert_array_equal(durations, [2.0, 3.0, 4.0])
    assert len(periods) == 3 and misses.tolist() == [False, False, True]
    assert stats.ticks == 5 and stats.misses == 1


def test_overrunning_step_is_a_miss_and_late_deadlines_are_skipped():
    period = 0.005
    durations = iter([0.0, 0.0125, 0.0, 0.0, 0.0])  # tick 1 overruns by 1.5 periods

    def step(now: float) -> None:
        time.sleep(next(durations))

    loop = PeriodicLoop(period, "over", step, spin_s=0.0)
    s = loop.run(n_ticks=5)
    _, lateness, durs, misses = loop.stats.arrays()
    assert misses[1]  # the overrunning step (duration > period)
    assert durs[1] > period
    assert s["skipped"] >= 1  # tick 1 ended past deadline 3: deadline 2 is skipped, not run late in a burst
    assert loop.stats.misses >= 1


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="period_s"):
        PeriodicLoop(0.0, "x", lambda now: None)
    with pytest.raises(ValueError, match="miss_tolerance_s"):
        PeriodicLoop(0.01, "x", lambda now: None, miss_tolerance_s=0.02)
    with pytest.raises(ValueError, match="needs n_ticks"):
        PeriodicLoop(0.01, "x", lambda now: None).run()
    with pytest.raises(NotImplementedError, match="override step"):
        PeriodicLoop(0.01, "x").run(n_ticks=1)
    with pytest.raises(ValueError, match="loop_seconds"):
        BenchRuntimeConfig(loop_seconds=0.0)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_bench_runtime_smoke_and_clean_shutdown():
    from systems.bench_runtime import bench_runtime

    ipc_files = set(Path(tempfile.gettempdir()).glob("humanoid-*.ipc"))
    before = descendants(os.getpid())
    result = bench_runtime(BenchRuntimeConfig(messages=50, loop_seconds=0.2, warmup=10, rtf_seconds=0.4,
                                              rtf_repeats=2))
    keys = ["zmq_one_way_us_p50", "zmq_one_way_us_p99", "ray_call_us_p50", "ray_call_us_p99", "zmq_vs_ray_ratio",
            "zmq_vs_ray_ratio_with_codec", "encode_us_p50", "decode_us_p50", "s0_500hz_jitter_ms_p99",
            "s0_1khz_jitter_ms_p99", "lockstep_rtf", "lockstep_rtf_render"]
    for key in keys:
        assert math.isfinite(result[key]) and result[key] > 0, (key, result[key])
    for key in ("s0_500hz_miss_rate", "s0_1khz_miss_rate"):  # may be exactly 0 on a quiet machine
        assert 0.0 <= result[key] <= 1.0, (key, result[key])
    assert result["zmq_rejected"] == 0 and result["s0_500hz_ticks"] > 0 and result["s0_1khz_ticks"] > 0
    assert result["lockstep_physics_hz"] == 500 and result["lockstep_s1_steps"] == 10  # the defaults, as measured
    for key in ("lockstep_rtf", "lockstep_rtf_render"):  # the median of the repeats, within their spread
        assert result[f"{key}_min"] <= result[key] <= result[f"{key}_max"], key
    assert result["lockstep_rtf_repeats"] == 2
    assert result["s0_loop_nice"] in (-10, 0)  # S0's priority in the runner, or 0 where raising it is refused
    give_up = time.monotonic() + 20.0  # Ray's processes take a moment to exit after ray.shutdown()
    while (left := descendants(os.getpid()) - before) and time.monotonic() < give_up:
        time.sleep(0.2)
    assert not left, f"processes left behind: {left}"
    assert set(Path(tempfile.gettempdir()).glob("humanoid-*.ipc")) <= ipc_files
