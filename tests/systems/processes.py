"""Subprocess helpers for the system tests: the ``humanoid`` command in a fresh process, and the processes a run
leaves behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_CK = REPO / "checkpoints"
COMMITTED = [f"checkpoint={_CK / 's0' / 'policy.safetensors'}", f"s1_checkpoint={_CK / 's1' / 'policy.safetensors'}",
             f"s2_checkpoint={_CK / 's2' / 'policy.safetensors'}"]
"""``humanoid run`` overrides for the committed S0, S1 and S2 (absolute paths: the tests run in tmp folders)."""


def humanoid(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """``humanoid ARGS`` in a fresh Python process (its environment: this one's, plus ``env``)."""
    return subprocess.run([sys.executable, "-m", "systems.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, timeout=300)


def descendants(pid: int) -> set[int]:
    """Live (non-zombie) descendants of ``pid``, read from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found
