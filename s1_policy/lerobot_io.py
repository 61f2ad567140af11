"""Statistics and video files of the LeRobot v3.0 layout (see :mod:`s1_policy.dataset` for the layout).

Stats follow lerobot's compute_stats.py (min, max, mean, std, count and the q01..q99 quantiles; images per
channel in [0, 1]); videos are H.264 mp4 files written and read through imageio-ffmpeg's ffmpeg binary.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import imageio_ffmpeg
import numpy as np

QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
VCODEC, PIX_FMT = "libx264", "yuv420p"
VIDEO_OPTIONS = ["-g", "2", "-bf", "0", "-crf", "23"]  # keyframe every 2 frames (as lerobot), no B-frames


class DatasetError(ValueError):
    """A dataset file or an input does not fit the v3.0 layout; the message names the file/field and what was
    expected."""


def feature_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """Stats of (N, D) values over frames: min/max (input dtype), mean/std/q.. (float64) as (D,), count (1,)."""
    values = values.astype(np.float64) if values.dtype == np.bool_ else values
    f = values.astype(np.float64)
    stats = {"min": values.min(0), "max": values.max(0), "mean": f.mean(0), "std": f.std(0),
             "count": np.array([len(values)])}
    return stats | {name: np.quantile(f, q, axis=0) for name, q in QUANTILES.items()}


def sample_indices(n: int) -> np.ndarray:
    """Frames lerobot samples for image stats: all below 100, else ~n**0.75 evenly spaced (at most 10000)."""
    return np.round(np.linspace(0, n - 1, max(min(n, 100), min(int(n**0.75), 10_000)))).astype(int)


def image_stats(frames: np.ndarray) -> dict[str, np.ndarray]:
    """Per-channel stats of (T, H, W, 3) uint8 frames, in [0, 1], each (3, 1, 1); count = frames sampled."""
    imgs = frames[sample_indices(len(frames))]
    h, w = imgs.shape[1:3]
    if max(h, w) >= 300:  # lerobot's auto_downsample_height_width: stride so the long side is ~150 px
        step = int(w / 150) if w > h else int(h / 150)
        imgs = imgs[:, ::step, ::step]
    stats = feature_stats(imgs.reshape(-1, 3).astype(np.float64) / 255.0)
    return {k: np.array([len(imgs)]) if k == "count" else v.reshape(3, 1, 1) for k, v in stats.items()}


def aggregate_stats(per_episode: list[dict[str, dict[str, np.ndarray]]]) -> dict[str, dict[str, np.ndarray]]:
    """Dataset stats from episode stats as lerobot's aggregate_feature_stats: exact min/max/mean/std (parallel
    variance), summed count, quantiles = count-weighted mean of the episode quantiles (an approximation)."""
    out = {}
    for key in per_episode[0]:
        eps = [s[key] for s in per_episode]
        counts, means = np.stack([s["count"] for s in eps]).astype(np.float64), np.stack([s["mean"] for s in eps])
        counts = counts.reshape(counts.shape + (1,) * (means.ndim - counts.ndim))  # (E, 1, ...) to broadcast
        total = counts.sum(0)
        mean = (means * counts).sum(0) / total
        var = ((np.stack([s["std"] for s in eps]) ** 2 + (means - mean) ** 2) * counts).sum(0) / total
        out[key] = {"min": np.min([s["min"] for s in eps], 0), "max": np.max([s["max"] for s in eps], 0),
                    "mean": mean, "std": np.sqrt(var), "count": np.sum([s["count"] for s in eps], 0)}
        out[key] |= {q: (np.stack([s[q] for s in eps]) * counts).sum(0) / total for q in QUANTILES}
    return out


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Write through ``write(tmp_path)`` then os.replace, so no reader sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def json_writer(obj: dict) -> Callable[[Path], int]:
    return lambda path: path.write_text(json.dumps(obj, indent=4, ensure_ascii=False))


# ---------------------------------------------------------------------------------------------------- video I/O
def encode_mp4(path: Path, frames: np.ndarray, fps: int) -> None:
    """Encode (T, H, W, 3) uint8 RGB frames to an H.264 yuv420p mp4 of exactly T frames at ``fps``."""
    writer = imageio_ffmpeg.write_frames(str(path), (frames.shape[2], frames.shape[1]), fps=fps, codec=VCODEC,
                                         pix_fmt_out=PIX_FMT, quality=None, macro_block_size=1,
                                         ffmpeg_log_level="error", output_params=VIDEO_OPTIONS)
    try:
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
    except (OSError, RuntimeError) as e:
        raise DatasetError(f"{path}: ffmpeg could not encode the frames ({e})") from e
    finally:
        writer.close()


def concat_mp4(target: Path, extra: Path) -> None:
    """Append ``extra`` to ``target`` in place without re-encoding (ffmpeg concat demuxer, as lerobot does)."""
    listing, out = extra.with_suffix(".ffconcat"), extra.with_name(extra.stem + "-concat.mp4")
    quoted = ["'" + str(p.resolve()).replace("'", "'\\''") + "'" for p in (target, extra)]
    listing.write_text("ffconcat version 1.0\n" + "".join(f"file {q}\n" for q in quoted))
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "concat", "-safe", "0",
           "-i", str(listing), "-c", "copy", "-movflags", "+faststart", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise DatasetError(f"{target}: ffmpeg could not append {extra.name}: {result.stderr.strip()}")
    os.replace(out, target)


def probe_video_info(path: Path) -> dict:
    """The info block lerobot's get_video_info writes for a video feature, read from the mp4 stream header."""
    frames = imageio_ffmpeg.read_frames(str(path))
    try:
        meta = next(frames)
    finally:
        frames.close()
    return {"video.height": meta["size"][1], "video.width": meta["size"][0], "video.codec": meta["codec"],
            "video.pix_fmt": meta["pix_fmt"].split("(")[0], "video.is_depth_map": False,
            "video.fps": round(meta["fps"]), "video.channels": 3, "has_audio": False}


def decode_mp4(path: Path, start_s: float, count: int, fps: float) -> np.ndarray:
    """(count, H, W, 3) uint8 frames from ``start_s`` on; seeks half a frame early so frame k at k/fps is kept."""
    if not path.is_file():
        raise DatasetError(f"{path}: video file is missing")
    seek = ["-ss", f"{max(0.0, start_s - 0.5 / fps):.6f}"]
    frames = imageio_ffmpeg.read_frames(str(path), input_params=seek, output_params=["-frames:v", str(count)])
    try:
        w, h = next(frames)["size"]
        out = [np.frombuffer(b, np.uint8).reshape(h, w, 3) for b in frames]
    finally:
        frames.close()
    if len(out) != count:
        raise DatasetError(f"{path}: decoded {len(out)} frames from {start_s:.4f} s, expected {count}")
    return np.stack(out)


# -------------------------------------------------------------------------------------------------------- writer
