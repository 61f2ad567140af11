"""``humanoid motion list|show|render``: browse the motion library and any clip file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from infra.config.schemas import MotionConfig
from s0_locomotion.body import TRACK_CAMERA, Body
from s0_locomotion.motion.clip import MotionClip
from s0_locomotion.motion.sources import load_motion


def clip_summary(clip: MotionClip) -> dict:
    planar = clip.root_pos[-1, :2] - clip.root_pos[0, :2]
    w, x, y, z = clip.root_quat[[0, -1]].T
    yaw = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return {
        "name": clip.name, "source": clip.source, "fps": clip.fps, "frames": clip.num_frames,
        "duration_s": round(clip.duration, 3), "displacement_m": np.round(planar, 3).tolist(),
        "turn_rad": round(float(yaw[1] - yaw[0]), 3),
        "mean_speed_m_s": round(float(np.linalg.norm(clip.root_lin_vel[:, :2], axis=1).mean()), 3),
        "root_height_m": [round(float(clip.root_pos[:, 2].min()), 3), round(float(clip.root_pos[:, 2].max()), 3)],
        "max_joint_speed_rad_s": round(float(np.abs(clip.joint_vel).max()), 3),
    }


def motion_list(cfg: MotionConfig, as_json: bool) -> int:
    from s0_locomotion.motion.library import build_library

    clips = build_library(Body(cfg.body))
    rows = [clip_summary(c) for c in clips]
    if as_json:
        print(json.dumps(rows))
        return 0
    print(f"{'name':<22} {'seconds':>8} {'displacement (m)':>18} {'turn (rad)':>10}")
    for r in rows:
        dx, dy = r["displacement_m"]
        print(f"{r['name']:<22} {r['duration_s']:>8.2f} {dx:>9.2f} {dy:>8.2f} {r['turn_rad']:>10.2f}")
    return 0


def motion_show(cfg: MotionConfig, as_json: bool) -> int:
    body = Body(cfg.body)
    clip = load_motion(cfg.name, body)
    summary = clip_summary(clip) | {"joints": clip.joint_names.__len__(), "meta": clip.meta}
    print(json.dumps(summary, default=str) if as_json else "\n".join(f"{k:<22} {v}" for k, v in summary.items()))
    if cfg.out:
        print(f"saved {clip.save(cfg.out)}")
    return 0


def motion_render(cfg: MotionConfig, as_json: bool) -> int:
    """Kinematic mp4 of a clip from the tracking camera (no physics)."""
    import imageio.v2 as imageio

    from infra.config.schemas import SceneConfig, SimConfig
    from s0_locomotion.sim.render import CameraRenderer
    from s0_locomotion.sim.scene import Scene

    body = Body(cfg.body)
    clip = load_motion(cfg.name, body)
    scene = Scene.build(body, SceneConfig(objects=[]), SimConfig(), offscreen=(cfg.width, cfg.height))
    model = scene.model
    step = max(1, int(round(clip.fps / cfg.fps)))
    frames = np.arange(0, clip.num_frames, step)
    qpos = np.tile(model.qpos0, (len(frames), 1))
    body.layout(model).write_pose(qpos, clip.root_pos[frames], clip.root_quat[frames], clip.joint_pos[frames])
    out = Path(cfg.out or f"{clip.name}.mp4")
    renderer = CameraRenderer(model, fast=False)
    with imageio.get_writer(out, fps=clip.fps / step, macro_block_size=8) as writer:
        for chunk in np.array_split(qpos, max(1, len(qpos) // 50)):
            for image in renderer.render_qpos(chunk, TRACK_CAMERA, cfg.height, cfg.width):
                writer.append_data(image)
    renderer.close()
    result = {"video": str(out), "frames": len(frames), "fps": clip.fps / step}
    print(json.dumps(result) if as_json else f"wrote {out} ({len(frames)} frames)")
    return 0
