"""Demonstrations in the LeRobot dataset v3.0 layout, written and read without the ``lerobot`` package.

Layout under ``root``, as lerobot 0.4.4 writes it (CODEBASE_VERSION "v3.0"):

- meta/info.json: codebase_version, robot_type, total_episodes, total_frames, total_tasks, chunks_size,
  data_files_size_in_mb, video_files_size_in_mb, fps (int), splits {"train": "0:N"}, data_path, video_path (None
  without videos), features {key: {dtype, shape, names}}; videos are (H, W, 3), names [height, width, channels],
  with an "info" block probed from the first mp4 (video.height/width/codec/pix_fmt/is_depth_map/fps/channels,
  has_audio); the defaults timestamp (float32), frame_index, episode_index, index, task_index (int64), shape (1,).
- meta/stats.json: per feature min, max, mean, std, count, q01, q10, q50, q90, q99; (D,) for vectors, (1,) for
  scalars, (3, 1, 1) per channel in [0, 1] for videos (<= ~100 sampled original frames per episode).
- meta/tasks.parquet: pandas frame, index = task strings, column task_index (int64).
- meta/episodes/chunk-000/file-000.parquet: a row per episode: episode_index, tasks (list of str), length,
  data/chunk_index, data/file_index, dataset_from_index, dataset_to_index, videos/<key>/{chunk_index, file_index,
  from_timestamp, to_timestamp}, stats/<feature>/<stat> (lists), meta/episodes/chunk_index, meta/episodes/file_index.
- data/chunk-XXX/file-YYY.parquet: a row per frame, a row group per episode: non-video features, then the
  defaults; shape (1,) is a scalar column, (D,) a fixed_size_list<D>. A new file starts when size + predicted
  episode size would reach data_files_size_in_mb; YYY runs to chunks_size - 1, then XXX increments.
- videos/<key>/chunk-XXX/file-YYY.mp4: episodes back to back (same roll-over with video_files_size_in_mb);
  episode frame k is at from_timestamp + k / fps, to_timestamp = from_timestamp + length / fps.

Verified against the lerobot 0.4.4 wheel (pip download --no-deps lerobot==0.4.4), lerobot/datasets/: utils.py
(DEFAULT_*_PATH, DEFAULT_FEATURES, create_empty_dataset_info, write_tasks, write_episodes, load_episodes,
get_hf_features_from_features), lerobot_dataset.py (save_episode, _save_episode_data, _save_episode_video,
LeRobotDatasetMetadata.save_episode, _query_videos), compute_stats.py (DEFAULT_QUANTILES, compute_episode_stats,
aggregate_feature_stats), video_utils.py (get_video_info, encode_video_frames, concatenate_video_files).
Differences, all inside the layout: tasks are numbered by first appearance (lerobot: set order); episode quantiles
are exact (lerobot: 5000-bin histograms); videos are libx264 H.264 (lerobot defaults to libsvtav1, "h264" is valid)
with -g 2 as lerobot and no B-frames, so frame k decodes at exactly k / fps; data parquet has no "huggingface"
schema metadata (lerobot casts with info.json's features). Multi-axis features are refused: lerobot types them
Array2D..5D, but its compute_stats reshapes them to (-1, shape[-1]); flatten them and label entries in ``names``.

``pip install --dry-run "lerobot==0.4.4"`` in this venv (torch 2.13.0+cpu) reports no conflict but "Would
install" torch-2.10.0, torchvision-0.25.0, torchcodec-0.10.0, numpy-2.2.6, datasets-4.8.5, av-15.1.0 and CUDA 12.8
wheels: lerobot 0.4.4 requires torch<2.11.0,>=2.2.1, so installing it would silently downgrade our torch.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from s1_policy.lerobot_io import (
    DatasetError,
    aggregate_stats,
    atomic_write,
    concat_mp4,
    decode_mp4,
    encode_mp4,
    feature_stats,
    image_stats,
    json_writer,
    probe_video_info,
)

CODEBASE_VERSION = "v3.0"
INFO_PATH, STATS_PATH, TASKS_PATH = "meta/info.json", "meta/stats.json", "meta/tasks.parquet"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
DEFAULT_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
_ARROW = {"float32": pa.float32(), "int64": pa.int64(), "bool": pa.bool_()}
_MB = 1024**2


@dataclass(frozen=True)
class Feature:
    """One per-frame feature: dtype ("float32", "int64", "bool", or "video"), shape, optional names.

    Numeric features are 1-D, ``(D,)`` (``(1,)`` is stored as a scalar column), ``names`` labels the D entries.
    Video features are ``(H, W, 3)`` uint8 RGB frames with even H and W (yuv420p).
    """

    dtype: str
    shape: tuple[int, ...]
    names: list[str] | None = None


# ----------------------------------------------------------------------------------------------- pure helpers
def next_chunk_file(chunk_index: int, file_index: int, chunks_size: int) -> tuple[int, int]:
    """The (chunk, file) after this one: file indices run 0..chunks_size-1 inside a chunk (lerobot's rule)."""
    return (chunk_index + 1, 0) if file_index == chunks_size - 1 else (chunk_index, file_index + 1)


def _feature_entry(key: str, ft: Feature) -> dict:
    """The info.json entry of one declared feature, or a DatasetError naming the key."""
    if not isinstance(key, str) or not key or "/" in key or key in DEFAULT_FEATURES or key == "task":
        raise DatasetError(f"features: {key!r} is not allowed (non-empty, no '/', not a default feature or 'task')")
    shape, names = tuple(ft.shape), ft.names
    if ft.dtype == "video":
        if len(shape) != 3 or shape[2] != 3 or min(shape) <= 0 or shape[0] % 2 or shape[1] % 2:
            raise DatasetError(f"features[{key!r}]: video shape must be (H, W, 3) with even H, W; got {shape}")
        names, n_names = names or ["height", "width", "channels"], 3
    elif ft.dtype in _ARROW:
        if len(shape) != 1 or shape[0] <= 0:
            raise DatasetError(f"features[{key!r}]: shape must be (D,), got {shape}; flatten multi-axis features "
                               "and label the entries with names (lerobot's stats assume 1-D)")
        n_names = shape[0]
    else:
        raise DatasetError(f"features[{key!r}]: dtype {ft.dtype!r}, expected one of float32, int64, bool, video")
    if names is not None and len(names) != n_names:
        raise DatasetError(f"features[{key!r}]: {len(names)} names, expected {n_names} for shape {shape}")
    return {"dtype": ft.dtype, "shape": list(shape), "names": None if names is None else list(names)}


def _arrow_type(entry: dict) -> pa.DataType:
    """Scalar for shape [1], fixed_size_list<D> for [D] (lerobot's Value / Sequence(length=D) hf features)."""
    t = _ARROW[entry["dtype"]]
    return t if entry["shape"] == [1] else pa.list_(t, entry["shape"][0])


def _episode_table(cols: dict[str, np.ndarray], schema: pa.Schema) -> pa.Table:
    """(n, D) arrays per column -> a table with ``schema`` (scalar or fixed_size_list<D> columns)."""
    arrays = []
    for field in schema:
        values, t = cols[field.name].reshape(-1), field.type
        arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(values, type=t.value_type), t.list_size)
                      if pa.types.is_fixed_size_list(t) else pa.array(values, type=t))
    return pa.table(arrays, schema=schema)


class DatasetWriter:
    """Records episodes frame by frame into a new v3.0 dataset at ``root``.

    ``add_frame`` buffers one frame (an episode stays in memory: T*H*W*3 bytes per video key), ``save_episode``
    appends it to the current data parquet and mp4 files, ``finalize`` writes meta/. As a context manager, an
    exception discards the unfinished episode and finalizes the saved ones. ``fps`` must be a whole number
    (lerobot stores an int; 1 / period within 1e-6 is rounded); timestamps are frame_index / fps seconds.
    """

    def __init__(self, root: str | Path, fps: float, features: dict[str, Feature], robot_type: str = "humanoid65",
                 chunks_size: int = 1000, data_files_size_in_mb: float = 100.0,
                 video_files_size_in_mb: float = 200.0) -> None:
        self.root = Path(root)
        if self.root.exists() and (not self.root.is_dir() or any(self.root.iterdir())):
            raise DatasetError(f"{self.root}: exists and is not an empty directory; never overwriting a dataset")
        if not (math.isfinite(fps) and fps >= 1 and abs(fps - round(fps)) <= 1e-6 * fps):  # 1 / period may be off
            raise DatasetError(f"fps: {fps!r}, expected a positive whole number (info.json stores an int)")
        if chunks_size < 1 or data_files_size_in_mb <= 0 or video_files_size_in_mb <= 0:
            raise DatasetError(f"chunks_size={chunks_size}, data_files_size_in_mb={data_files_size_in_mb}, "
                               f"video_files_size_in_mb={video_files_size_in_mb}: expected all > 0")
        if not features:
            raise DatasetError("features: expected at least one feature")
        self.fps, self.features = round(fps), dict(features)
        entries = {key: _feature_entry(key, ft) for key, ft in self.features.items()}
        entries |= json.loads(json.dumps(DEFAULT_FEATURES))
        self._video_keys = [k for k, ft in self.features.items() if ft.dtype == "video"]
        self._schema = pa.schema([(k, _arrow_type(e)) for k, e in entries.items() if e["dtype"] != "video"])
        self._info = {"codebase_version": CODEBASE_VERSION, "robot_type": robot_type, "total_episodes": 0,
                      "total_frames": 0, "total_tasks": 0, "chunks_size": int(chunks_size),
                      "data_files_size_in_mb": data_files_size_in_mb,
                      "video_files_size_in_mb": video_files_size_in_mb, "fps": self.fps, "splits": {},
                      "data_path": DATA_PATH, "video_path": VIDEO_PATH if self._video_keys else None,
                      "features": entries}
        self.root.mkdir(parents=True, exist_ok=True)
        self._tasks: dict[str, int] = {}  # task string -> task_index
        self._episodes: list[dict] = []  # meta/episodes rows
        self._episode_stats: list[dict] = []
        self._frames: dict[str, list[np.ndarray]] = {k: [] for k in self.features}
        self._frame_tasks: list[str] = []
        self._data = {"writer": None, "loc": (0, 0), "frames": 0}  # open data parquet, (chunk, file), its rows
        self._videos: dict[str, dict] = {}  # key -> {"loc": (chunk, file), "seconds": length of that mp4}
        self._failed: str | None = None
        self._finalized = False

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._finalized:
            return False
        pending = self.discard_episode()
        if exc_type is None:
            self.finalize()
            if pending:
                raise DatasetError(f"{self.root}: {pending} frames added after the last save_episode() were "
                                   "discarded; call save_episode() or discard_episode() before leaving the block")
        elif self._episodes and self._failed is None:
            try:
                self.finalize()
            except DatasetError as e:  # the original exception propagates; report this one beside it
                warnings.warn(f"finalize after {exc_type.__name__} failed: {e}", stacklevel=2)
        elif self._data["writer"] is not None:
            self._data["writer"].close()
        return False

    def _check_open(self) -> None:
        if self._finalized:
            raise DatasetError(f"{self.root}: already finalized; open a new DatasetWriter for more episodes")
        if self._failed:
            raise DatasetError(f"{self.root}: an earlier save_episode failed ({self._failed}); files are inconsistent")

    def add_frame(self, frame: dict[str, np.ndarray], task: str) -> None:
        """Buffer one frame: every declared feature with its dtype and shape ((H, W, 3) uint8 for videos)."""
        self._check_open()
        if not isinstance(task, str) or not task:
            raise DatasetError(f"task: expected a non-empty string, got {task!r}")
        missing, extra = set(self.features) - set(frame), set(frame) - set(self.features)
        if missing or extra:
            raise DatasetError(f"frame: missing features {sorted(missing)}, unexpected {sorted(extra)} "
                               "(timestamp and the indices are derived, not passed)")
        for key, ft in self.features.items():
            value, dtype = frame[key], "uint8" if ft.dtype == "video" else ft.dtype
            if not isinstance(value, np.ndarray) or value.dtype != np.dtype(dtype) or value.shape != tuple(ft.shape):
                got = f"{value.dtype} {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__
                raise DatasetError(f"frame[{key!r}]: expected np.ndarray {dtype} {tuple(ft.shape)}, got {got}")
            if dtype == "float32" and not np.isfinite(value).all():
                raise DatasetError(f"frame[{key!r}]: non-finite values (NaN or inf)")
        for key in self.features:
            self._frames[key].append(np.array(frame[key], copy=True))
        self._frame_tasks.append(task)

    def discard_episode(self) -> int:
        """Drop the frames added since the last save_episode; returns how many were dropped."""
        n = len(self._frame_tasks)
        self._frames, self._frame_tasks = {k: [] for k in self.features}, []
        return n

    def save_episode(self) -> int:
        """Append the buffered frames as the next episode to the data parquet and mp4 files; returns its index."""
        self._check_open()
        n, ep, start = len(self._frame_tasks), len(self._episodes), self._info["total_frames"]
        if n == 0:
            raise DatasetError(f"{self.root}: save_episode() with no frames; call add_frame() first")
        ep_tasks = list(dict.fromkeys(self._frame_tasks))
        new_tasks = [t for t in ep_tasks if t not in self._tasks]
        tasks = self._tasks | {t: len(self._tasks) + i for i, t in enumerate(new_tasks)}
        cols = {k: np.stack(v).reshape(n, -1) for k, v in self._frames.items() if k not in self._video_keys}
        cols |= {"timestamp": (np.arange(n) / self.fps).astype(np.float32)[:, None],
                 "frame_index": np.arange(n, dtype=np.int64)[:, None],
                 "episode_index": np.full((n, 1), ep, dtype=np.int64),
                 "index": np.arange(start, start + n, dtype=np.int64)[:, None],
                 "task_index": np.array([tasks[t] for t in self._frame_tasks], dtype=np.int64)[:, None]}
        videos = {k: np.stack(self._frames[k]) for k in self._video_keys}
        stats = {k: feature_stats(v) for k, v in cols.items()} | {k: image_stats(v) for k, v in videos.items()}
        table = _episode_table(cols, self._schema)
        with tempfile.TemporaryDirectory(dir=self.root, prefix=".tmp-") as tmp:
            clips = {k: Path(tmp) / f"{i}.mp4" for i, k in enumerate(self._video_keys)}
            for key, clip in clips.items():
                encode_mp4(clip, videos[key], self.fps)
            try:  # past here a failure leaves rows or clips that no meta describes: refuse further writes
                row = {"episode_index": ep, "tasks": ep_tasks, "length": n, **self._append_data(table, start, n)}
                for key, clip in clips.items():
                    row |= self._append_video(key, clip, n)
            except Exception as e:
                self._failed = f"episode {ep}: {e}"
                raise
        self._episodes.append(row | {f"stats/{k}/{s}": np.asarray(v).tolist()
                                     for k, st in stats.items() for s, v in st.items()})
        self._episode_stats.append(stats)
        self._tasks = tasks
        self._info["total_episodes"], self._info["total_frames"] = ep + 1, start + n
        self.discard_episode()
        return ep

    def _append_data(self, table: pa.Table, start: int, n: int) -> dict:
        """Write one episode as a row group, first starting a new file if this one would reach the size limit."""
        d = self._data
        if d["writer"] is not None:
            size = os.path.getsize(d["writer"].where)
            if size + size / d["frames"] * n >= self._info["data_files_size_in_mb"] * _MB:
                d["writer"].close()
                d.update(writer=None, loc=next_chunk_file(*d["loc"], self._info["chunks_size"]))
        if d["writer"] is None:
            path = self.root / DATA_PATH.format(chunk_index=d["loc"][0], file_index=d["loc"][1])
            path.parent.mkdir(parents=True, exist_ok=True)
            d.update(writer=pq.ParquetWriter(str(path), self._schema, compression="snappy", use_dictionary=True),
                     frames=0)
        d["writer"].write_table(table)
        d["frames"] += n
        return {"data/chunk_index": d["loc"][0], "data/file_index": d["loc"][1],
                "dataset_from_index": start, "dataset_to_index": start + n}

    def _append_video(self, key: str, clip: Path, n: int) -> dict:
        """Append the episode clip to the current mp4, or move it to a new file past the size limit."""
        v = self._videos.get(key)
        where = lambda loc: self.root / VIDEO_PATH.format(video_key=key, chunk_index=loc[0], file_index=loc[1])  # noqa: E731
        if v and where(v["loc"]).stat().st_size + clip.stat().st_size < self._info["video_files_size_in_mb"] * _MB:
            concat_mp4(where(v["loc"]), clip)
        else:
            v = {"loc": next_chunk_file(*v["loc"], self._info["chunks_size"]) if v else (0, 0), "seconds": 0.0}
            path = where(v["loc"])
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(clip, path)
        start, end = v["seconds"], v["seconds"] + n / self.fps
        self._videos[key] = {"loc": v["loc"], "seconds": end}
        return {f"videos/{key}/chunk_index": v["loc"][0], f"videos/{key}/file_index": v["loc"][1],
                f"videos/{key}/from_timestamp": start, f"videos/{key}/to_timestamp": end}

    def finalize(self) -> Path:
        """Close the data files and write meta/ (episodes, tasks, stats, info.json last); returns root.

        Calling it again is a no-op that returns root."""
        if self._finalized:
            return self.root
        self._check_open()
        if self._frame_tasks:
            raise DatasetError(f"{self.root}: {len(self._frame_tasks)} unsaved frames; save_episode() or "
                               "discard_episode() first")
        if not self._episodes:
            raise DatasetError(f"{self.root}: no episodes saved; nothing to finalize")
        if self._data["writer"] is not None:
            self._data["writer"].close()
            self._data["writer"] = None
        for key in self._video_keys:
            first = self.root / VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0)
            self._info["features"][key]["info"] = probe_video_info(first)
        self._write_episodes()
        tasks = pd.DataFrame({"task_index": np.arange(len(self._tasks), dtype=np.int64)},
                             index=pd.Index(list(self._tasks), dtype=object))
        atomic_write(self.root / TASKS_PATH, tasks.to_parquet)
        stats = aggregate_stats(self._episode_stats)
        atomic_write(self.root / STATS_PATH, json_writer(
            {k: {s: np.asarray(v).tolist() for s, v in st.items()} for k, st in stats.items()}))
        self._info["total_tasks"], self._info["splits"] = len(self._tasks), {"train": f"0:{len(self._episodes)}"}
        atomic_write(self.root / INFO_PATH, json_writer(self._info))
        self._finalized = True
        return self.root

    def _write_episodes(self) -> None:
        """All episode rows in meta/episodes/chunk-000/file-000.parquet (lerobot's write_episodes; it refuses past
        100 MB, which takes ~10^5 episodes, and so do we rather than roll over)."""
        rows = [row | {"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0} for row in self._episodes]
        table = pa.Table.from_pylist(rows)
        if table.nbytes >= 100 * _MB:
            raise DatasetError(f"{self.root}/meta/episodes: {table.nbytes / _MB:.0f} MB of episode rows, over 100")
        atomic_write(self.root / EPISODES_PATH.format(chunk_index=0, file_index=0),
                      lambda p: pq.write_table(table, str(p)))


# -------------------------------------------------------------------------------------------------------- reader
def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise DatasetError(f"{path}: missing; expected a LeRobot {CODEBASE_VERSION} dataset")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: not valid JSON ({e})") from e


def _to_numpy(column: pa.ChunkedArray, shape: tuple[int, ...], dtype: str, where: str) -> np.ndarray:
    """(N, *shape) array from a scalar, list, fixed_size_list or nested-list (Array2D..) parquet column."""
    arr = column.combine_chunks()
    if arr.null_count:
        raise DatasetError(f"{where}: {arr.null_count} null values")
    n = len(arr)
    while pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type):
        arr = arr.flatten()
    values = arr.to_numpy(zero_copy_only=False)
    if values.size != n * math.prod(shape):
        raise DatasetError(f"{where}: {values.size} values for {n} rows, expected shape {shape} per row")
    return values.reshape(n, *shape).astype(np.dtype(dtype), copy=False)


class DemoDataset:
    """Reads a v3.0 dataset written by DatasetWriter (or by lerobot): meta, per-episode index ranges, arrays, video
    frames.

    ``info``/``stats``: meta/info.json and meta/stats.json ({} when absent); ``tasks[i]``: the task with task_index
    i; ``episodes[e]``: the meta/episodes row of episode e without its stats/ columns. Frames are indexed globally
    0..len-1, episode e covers ``episode_range(e)``; video frames are (T, H, W, 3) uint8 RGB.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        info_path = self.root / INFO_PATH
        self.info = _read_json(info_path)
        if self.info.get("codebase_version") != CODEBASE_VERSION:
            raise DatasetError(f"{info_path}: codebase_version {self.info.get('codebase_version')!r}, "
                               f"expected {CODEBASE_VERSION!r}")
        missing = {"fps", "features", "data_path", "total_episodes", "total_frames"} - set(self.info)
        if missing:
            raise DatasetError(f"{info_path}: missing keys {sorted(missing)}")
        self.features: dict[str, dict] = self.info["features"]
        self.video_keys = [k for k, ft in self.features.items() if ft.get("dtype") == "video"]
        if self.video_keys and not self.info.get("video_path"):
            raise DatasetError(f"{info_path}: video features {self.video_keys} but no video_path")
        stats_path = self.root / STATS_PATH
        self.stats = _read_json(stats_path) if stats_path.exists() else {}
        self.tasks = self._load_tasks()
        self.episodes = self._load_episodes()
        self._columns: dict[str, np.ndarray] = {}

    def _load_tasks(self) -> list[str]:
        path = self.root / TASKS_PATH
        if not path.is_file():
            raise DatasetError(f"{path}: missing; expected task strings with a task_index column")
        df = pd.read_parquet(path)
        if "task_index" not in df.columns:
            raise DatasetError(f"{path}: no task_index column (columns: {list(df.columns)})")
        names = df["task"] if "task" in df.columns else df.index  # lerobot keeps the strings in the index
        by_index = dict(zip(df["task_index"].astype(int), map(str, names)))
        if sorted(by_index) != list(range(len(df))):
            raise DatasetError(f"{path}: task_index values {sorted(by_index)}, expected 0..{len(df) - 1}")
        return [by_index[i] for i in range(len(df))]

    def _load_episodes(self) -> list[dict]:
        where = self.root / "meta/episodes"
        files = sorted(where.glob("chunk-*/file-*.parquet"))
        if not files:
            raise DatasetError(f"{where}: no chunk-*/file-*.parquet files")
        rows = []
        for path in files:
            table = pq.read_table(path)
            rows += table.select([c for c in table.column_names if not c.startswith("stats/")]).to_pylist()
        rows.sort(key=lambda r: r.get("episode_index", -1))
        required = ["episode_index", "tasks", "length", "data/chunk_index", "data/file_index", "dataset_from_index",
                    "dataset_to_index"] + [f"videos/{k}/{f}" for k in self.video_keys
                                           for f in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")]
        if absent := [c for c in required if c not in rows[0]]:
            raise DatasetError(f"{where}: missing columns {absent}")
        if [r["episode_index"] for r in rows] != list(range(self.info["total_episodes"])):
            raise DatasetError(f"{where}: episode_index is not 0..{self.info['total_episodes'] - 1} (info.json)")
        end = 0
        for r in rows:
            if r["dataset_from_index"] != end or r["dataset_to_index"] - r["dataset_from_index"] != r["length"]:
                raise DatasetError(f"{where}: episode {r['episode_index']} covers [{r['dataset_from_index']}, "
                                   f"{r['dataset_to_index']}) with length {r['length']}, expected to start at {end}")
            end = r["dataset_to_index"]
        if end != self.info["total_frames"]:
            raise DatasetError(f"{where}: episodes cover {end} frames, info.json total_frames is {len(self)}")
        return rows

    def __len__(self) -> int:
        return int(self.info["total_frames"])

    def column(self, key: str) -> np.ndarray:
        """(total_frames, *shape) array of a non-video feature in global index order; shape (1,) gives (N, 1)."""
        if key in self._columns:
            return self._columns[key]
        ft = self.features.get(key)
        if ft is None or ft.get("dtype") in ("video", "image"):
            raise DatasetError(f"{self.root / INFO_PATH}: {key!r} is not a non-video feature ({sorted(self.features)})")
        parts, order = [], []
        for c, f in dict.fromkeys((ep["data/chunk_index"], ep["data/file_index"]) for ep in self.episodes):
            path = self.root / self.info["data_path"].format(chunk_index=c, file_index=f)
            if not path.is_file():
                raise DatasetError(f"{path}: data file is missing")
            try:
                table = pq.read_table(path, columns=[key, "index"])
            except (KeyError, pa.ArrowInvalid) as exc:
                raise DatasetError(f"{path}: column {key!r} is missing, though info.json declares it ({exc})") from exc
            parts.append(_to_numpy(table[key], tuple(ft["shape"]), ft["dtype"], f"{path}:{key}"))
            order.append(table["index"].to_numpy())
        values, index = np.concatenate(parts), np.concatenate(order)
        if not np.array_equal(np.sort(index), np.arange(len(self))):
            raise DatasetError(f"{self.root / 'data'}: index column is not a permutation of 0..{len(self) - 1}")
        self._columns[key] = values[np.argsort(index, kind="stable")]
        return self._columns[key]

    def _episode(self, ep: int) -> dict:
        if not 0 <= ep < len(self.episodes):
            raise DatasetError(f"episode {ep}: out of range, the dataset has {len(self.episodes)} episodes")
        return self.episodes[ep]

    def episode_range(self, ep: int) -> tuple[int, int]:
        """[from, to) global frame indices of episode ``ep``."""
        row = self._episode(ep)
        return int(row["dataset_from_index"]), int(row["dataset_to_index"])

    def video_frames(self, key: str, ep: int) -> np.ndarray:
        """(length, H, W, 3) uint8 frames of episode ``ep``, decoded from its mp4 from ``from_timestamp`` on."""
        if key not in self.video_keys:
            raise DatasetError(f"{self.root / INFO_PATH}: {key!r} is not a video feature ({self.video_keys})")
        row = self._episode(ep)
        path = self.root / self.info["video_path"].format(
            video_key=key, chunk_index=row[f"videos/{key}/chunk_index"], file_index=row[f"videos/{key}/file_index"])
        return decode_mp4(path, float(row[f"videos/{key}/from_timestamp"]), int(row["length"]),
                          float(self.info["fps"]))

    def task_of(self, index: int) -> str:
        """The task string of global frame ``index``."""
        if not 0 <= index < len(self):
            raise DatasetError(f"frame {index}: out of range, the dataset has {len(self)} frames")
        return self.tasks[int(self.column("task_index")[index, 0])]
