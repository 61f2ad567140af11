"""Humanoid bodies: the built-in 65-DoF model and any MJCF humanoid, behind one interface."""

from s0_locomotion.body.body import HEAD_CAMERA, IMU_SITE, TRACK_CAMERA, Body, BodyError, JointInfo, QposLayout

__all__ = ["Body", "BodyError", "JointInfo", "QposLayout", "HEAD_CAMERA", "TRACK_CAMERA", "IMU_SITE"]
