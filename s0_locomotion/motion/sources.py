"""Resolve a motion reference to clips: a library name, a ``.npz`` clip, a DeepMimic ``.txt`` or a ``.bvh``."""

from __future__ import annotations

from pathlib import Path

from s0_locomotion.body import Body
from s0_locomotion.motion.clip import ClipError, Kinematics, MotionClip, load_clip


def load_motion(ref: str, body: Body, kin: Kinematics | None = None, balance: bool = False) -> MotionClip:
    """One clip from a library name or a file path (by suffix). ``balance``: the library's walks with the
    ZMP-planned pelvis (``procedural.Gait.balance``); files are taken as they are."""
    path = Path(ref)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return load_clip(path, body)
    if suffix == ".txt":
        from s0_locomotion.motion.deepmimic import load_deepmimic

        return load_deepmimic(path, body)
    if suffix == ".bvh":
        from s0_locomotion.motion.bvh import load_bvh

        return load_bvh(path, body)
    if suffix:
        raise ClipError(f"{ref}: unknown motion file type {suffix!r}; expected .npz, .txt (DeepMimic) or .bvh")
    from s0_locomotion.motion.library import build_clip

    try:
        return build_clip(body, ref, kin, balance)
    except KeyError as exc:
        raise ClipError(str(exc.args[0])) from exc


def load_motions(refs: list[str], body: Body, balance: bool = False) -> list[MotionClip]:
    """Clips for a list of references; a folder expands to the motion files inside it."""
    kin = Kinematics(body)
    out: list[MotionClip] = []
    for ref in refs:
        path = Path(ref)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".npz", ".bvh")
                           or (p.suffix.lower() == ".txt" and not p.name.startswith("character")))
            if not files:
                raise ClipError(f"{path}: no motion files (.npz, .txt, .bvh) in this folder")
            out.extend(load_motion(str(p), body, kin) for p in files)
        else:
            out.append(load_motion(ref, body, kin, balance))
    return out
