"""The commit a checkpoint or run was made from (without importing MLflow)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git_commit(path: str | Path | None = None) -> str:
    """The commit checked out at ``path`` (default: this package's directory), or ``"unknown"``."""
    cwd = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):  # no git binary, no such directory, hung
        return "unknown"
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and sha else "unknown"
