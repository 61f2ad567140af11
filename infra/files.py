"""Files written whole or not at all."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["save_npz"]


def save_npz(path: str | Path, **arrays) -> Path:
    """Write ``arrays`` to ``path`` (.npz, compressed) atomically: a temporary file renamed into place, so a
    reader never sees a half-written file and a crash leaves the previous one (or none)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return path
