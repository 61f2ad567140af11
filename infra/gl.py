"""Choose the headless OpenGL backend for MuJoCo before it is imported: EGL, falling back to OSMesa.

MuJoCo reads ``MUJOCO_GL`` once, when ``mujoco`` is first imported, so the choice is made by probing
EGL in a short subprocess and exporting the answer (child processes, Ray workers included, inherit it).
An explicit ``MUJOCO_GL`` is always respected.
"""

from __future__ import annotations

import os
import subprocess
import sys

_PROBE = "import mujoco.egl as e; c = e.GLContext(16, 16); c.make_current(); c.free()"


def ensure_gl_backend() -> str:
    """Set ``MUJOCO_GL`` (and ``PYOPENGL_PLATFORM``) to a working headless backend; return it."""
    chosen = os.environ.get("MUJOCO_GL", "").strip().lower()
    if not chosen:
        env = {**os.environ, "MUJOCO_GL": "egl", "PYOPENGL_PLATFORM": "egl"}
        try:
            probe = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, timeout=60)
            ok = probe.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        chosen = "egl" if ok else "osmesa"
        os.environ["MUJOCO_GL"] = chosen
    os.environ.setdefault("PYOPENGL_PLATFORM", chosen if chosen in ("egl", "osmesa") else "")
    return chosen
