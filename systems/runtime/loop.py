"""A fixed-rate loop on the wall clock (``time.monotonic``, the clock of every message ``stamp``).

Schedule: tick k is due at ``start + k * period_s`` (absolute deadlines, so sleep errors never accumulate
into drift). The loop sleeps with ``time.sleep`` until ``spin_s`` before the deadline and busy-waits the
rest: ``time.sleep`` on Linux wakes 50-100 µs late (more under load), the spin removes that at the cost
of up to ``spin_s`` of CPU per tick. When a step overruns so far that whole deadlines have passed, those
ticks are skipped (counted in ``skipped``) rather than run back to back: a controller wants the current
sample, not a burst of stale ones.

Per tick the loop records the actual period (start - previous start), the lateness (start - deadline),
the step duration, and whether the tick missed its deadline: it started more than ``miss_tolerance_s``
after its deadline, or its step took longer than the period.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

__all__ = ["LoopStats", "PeriodicLoop", "summarize", "wait_until"]


class _Event(Protocol):
    def is_set(self) -> bool: ...


def summarize(periods: np.ndarray, lateness: np.ndarray, durations: np.ndarray, misses: np.ndarray,
              period_s: float) -> dict:
    """Statistics of a run of ticks. All inputs in seconds; times are reported in ms.

    Args:
        periods: (P,) intervals between consecutive tick starts (P = T - 1 for one run: the first tick of a
            run has no previous start).
        lateness: (T,) tick start - its deadline (>= 0 up to clock resolution).
        durations: (T,) step durations.
        misses: (T,) bool, whether each tick missed its deadline.
        period_s: the nominal period; jitter = |period - period_s|.

    Returns:
        ``rate_hz`` (1 / mean period), ``period_ms_p50``, ``jitter_ms_p50``, ``jitter_ms_p99``,
        ``lateness_ms_p99``, ``deadline_miss_rate`` (misses / T), ``step_ms_p50``, ``step_ms_p99``, ``ticks``
        (T). Statistics of empty inputs are NaN.
    """
    periods, lateness = np.asarray(periods, np.float64), np.asarray(lateness, np.float64)
    durations, misses = np.asarray(durations, np.float64), np.asarray(misses, bool)
    ticks = len(durations)
    if lateness.shape != (ticks,) or misses.shape != (ticks,) or periods.ndim != 1 or len(periods) > ticks:
        raise ValueError(f"summarize: expected lateness, durations, misses of shape (T,) and periods (<= T,), got "
                         f"{lateness.shape}, {durations.shape}, {misses.shape} and {periods.shape}")

    def pct(x: np.ndarray, q: float) -> float:
        return float(np.percentile(x, q) * 1e3) if len(x) else math.nan

    jitter = np.abs(periods - period_s)  # (T - 1,)
    return {
        "rate_hz": float(1.0 / periods.mean()) if len(periods) else math.nan,
        "period_ms_p50": pct(periods, 50),
        "jitter_ms_p50": pct(jitter, 50),
        "jitter_ms_p99": pct(jitter, 99),
        "lateness_ms_p99": pct(lateness, 99),
        "deadline_miss_rate": float(misses.mean()) if ticks else math.nan,
        "step_ms_p50": pct(durations, 50),
        "step_ms_p99": pct(durations, 99),
        "ticks": ticks,
    }


def wait_until(deadline: float, spin_s: float) -> None:
    """Sleep until ``spin_s`` before ``deadline`` (monotonic s), then busy-wait until it."""
    remaining = deadline - time.monotonic()
    if remaining > spin_s:
        time.sleep(remaining - spin_s)
    while time.monotonic() < deadline:
        pass


class LoopStats:
    """Records of the most recent ``capacity`` ticks (ring buffers, s) plus whole-run counters.

    ``ticks`` and ``misses`` count every recorded tick, ``skipped`` the deadlines passed without a tick.
    """

    def __init__(self, period_s: float, capacity: int = 60_000) -> None:
        if capacity < 2:
            raise ValueError(f"LoopStats: capacity must be >= 2, got {capacity}")
        self.period_s = period_s
        self.capacity = capacity
        self._buf = np.zeros((4, capacity))  # rows: period, lateness, duration, missed; NaN period = first tick
        self.ticks = 0
        self.misses = 0
        self.skipped = 0

    def record(self, period: float, lateness: float, duration: float, missed: bool) -> None:
        """One tick; ``period`` is NaN for the first tick of a run (no previous start)."""
        self._buf[:, self.ticks % self.capacity] = (period, lateness, duration, missed)
        self.ticks += 1
        self.misses += bool(missed)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(periods (<= n,), lateness (n,), durations (n,), misses (n,) bool) of the window, oldest first."""
        n = min(self.ticks, self.capacity)
        buf = np.roll(self._buf, -(self.ticks % self.capacity), axis=1)[:, -n:] if n else self._buf[:, :0]
        periods = buf[0]
        return periods[np.isfinite(periods)], buf[1], buf[2], buf[3].astype(bool)

    def summary(self) -> dict:
        """:func:`summarize` over the window, with ``skipped`` added. ``ticks`` is the window length."""
        return summarize(*self.arrays(), self.period_s) | {"skipped": self.skipped}


class PeriodicLoop:
    """Runs ``step(now)`` every ``period_s`` seconds on absolute deadlines (see the module docstring).

    Args:
        period_s: nominal period, s (e.g. 0.002 for S0 at 500 Hz).
        name: for messages and logs.
        step: ``step(now)`` with ``now`` the tick's start (``time.monotonic()``, s); or override :meth:`step`.
        spin_s: busy-wait this long before each deadline (0 = sleep only).
        miss_tolerance_s: a tick starting later than this after its deadline is a miss (default 10% of the
            period).
        capacity: ticks kept in :attr:`stats`.
    """

    def __init__(self, period_s: float, name: str, step: Callable[[float], None] | None = None, *,
                 spin_s: float = 5e-4, miss_tolerance_s: float | None = None, capacity: int = 60_000) -> None:
        if not period_s > 0:
            raise ValueError(f"PeriodicLoop {name!r}: period_s must be > 0, got {period_s}")
        tolerance = 0.1 * period_s if miss_tolerance_s is None else miss_tolerance_s
        if not 0 <= tolerance < period_s:
            raise ValueError(f"PeriodicLoop {name!r}: miss_tolerance_s must be in [0, period_s={period_s}), "
                             f"got {tolerance}")
        if spin_s < 0:
            raise ValueError(f"PeriodicLoop {name!r}: spin_s must be >= 0, got {spin_s}")
        self.period_s = period_s
        self.name = name
        self.spin_s = spin_s
        self.miss_tolerance_s = tolerance
        self.stats = LoopStats(period_s, capacity)
        self._step = step

    def step(self, now: float) -> None:
        """The work of one tick; ``now`` is the tick's start, monotonic s."""
        if self._step is None:
            raise NotImplementedError(f"PeriodicLoop {self.name!r}: pass step= or override step()")
        self._step(now)

    def run(self, n_ticks: int | None = None, until: float | None = None, stop_event: _Event | None = None,
            start: float | None = None) -> dict:
        """Tick until ``n_ticks`` ticks ran, the next deadline is at or after ``until`` (monotonic s) or
        ``stop_event.is_set()``; at least one condition is required. ``start`` is the first deadline (default
        now): loops of several processes given one ``start`` (plus their phases) tick in a fixed order.
        Returns :meth:`LoopStats.summary`. Exceptions from ``step`` propagate (the ticks before them stay
        recorded)."""
        if n_ticks is None and until is None and stop_event is None:
            raise ValueError(f"PeriodicLoop {self.name!r}: run() needs n_ticks, until or stop_event")
        period, stats = self.period_s, self.stats
        start = time.monotonic() if start is None else start
        k, done, prev = 0, 0, math.nan
        while not (n_ticks is not None and done >= n_ticks or stop_event is not None and stop_event.is_set()):
            deadline = start + k * period  # absolute: no accumulated drift
            if until is not None and deadline >= until:
                break
            wait_until(deadline, self.spin_s)
            t0 = time.monotonic()
            self.step(t0)
            t1 = time.monotonic()
            late, duration = t0 - deadline, t1 - t0
            stats.record(t0 - prev, late, duration, late > self.miss_tolerance_s or duration > period)
            prev, done, k = t0, done + 1, k + 1
            passed = math.floor((t1 - start) / period) - k  # deadlines after k already gone: skip them
            if passed > 0:
                stats.skipped += passed
                k += passed
        return stats.summary()
