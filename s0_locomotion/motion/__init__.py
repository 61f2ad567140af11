"""Motion library: the clip format, loaders and retargeting, the procedural generator, clip operations."""

from s0_locomotion.motion.clip import ClipError, Kinematics, MotionClip, load_clip, make_clip

__all__ = ["ClipError", "Kinematics", "MotionClip", "load_clip", "make_clip"]
