"""s1_policy.dataset: LeRobot v3.0 demonstrations written by DatasetWriter and read back by DemoDataset."""

from __future__ import annotations

import json

import imageio_ffmpeg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from s1_policy.dataset import DatasetError, DatasetWriter, DemoDataset, Feature

FPS, H, W = 30, 32, 32
HEAD = "observation.images.head"
PICK, WALK = "pick up the red cube", "walk to the door"
QUANTS = ["q01", "q10", "q50", "q90", "q99"]
FEATURES = {
    "observation.state": Feature("float32", (5,), [f"q{i}" for i in range(5)]),
    # a (4, 3) action (4 contacts x xyz) flattened row-major, as lerobot's stats need 1-D features
    "action": Feature("float32", (12,), [f"contact{i}.{a}" for i in range(4) for a in "xyz"]),
    HEAD: Feature("video", (H, W, 3)),
}


def _image(ep: int, t: int) -> np.ndarray:
    """(H, W, 3) uint8 smooth gradients that move with t and differ per episode."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    r = 128 + 90 * np.sin((x + 2.5 * t) / 6.0 + ep)
    g = 128 + 90 * np.cos((y - 1.5 * t) / 7.0)
    b = np.full_like(x, 40 + 60 * ep)
    return np.stack([r, g, b], -1).round().astype(np.uint8)


def _episode(ep: int, n: int, rng: np.random.Generator) -> list[tuple[dict, str]]:
    """n (frame, task) pairs; episode 2 switches from PICK to WALK half-way."""
    action = rng.normal(size=(n, 4, 3)).astype(np.float32)
    tasks = [PICK] * n if ep == 0 else [WALK] * n if ep == 1 else [PICK] * (n // 2) + [WALK] * (n - n // 2)
    return [({"observation.state": rng.normal(size=5).astype(np.float32) + ep, "action": action[t].reshape(12),
              HEAD: _image(ep, t)}, tasks[t]) for t in range(n)]


def _write(root, lengths=(12, 7, 20), **kwargs) -> list[list[tuple[dict, str]]]:
    rng = np.random.default_rng(0)
    episodes = [_episode(ep, n, rng) for ep, n in enumerate(lengths)]
    writer = DatasetWriter(root, fps=FPS, features=FEATURES, **kwargs)
    for ep, frames in enumerate(episodes):
        for frame, task in frames:
            writer.add_frame(frame, task)
        assert writer.save_episode() == ep
    assert writer.finalize() == root
    return episodes


def _check_round_trip(ds: DemoDataset, episodes: list[list[tuple[dict, str]]]) -> None:
    frames = [f for ep in episodes for f, _ in ep]
    assert len(ds) == len(frames)
    for key in ("observation.state", "action"):
        np.testing.assert_array_equal(ds.column(key), np.stack([f[key] for f in frames]))
    assert [ds.task_of(i) for i in range(len(ds))] == [t for ep in episodes for _, t in ep]
    start = 0
    for ep, recorded in enumerate(episodes):
        assert ds.episode_range(ep) == (start, start + len(recorded))
        np.testing.assert_array_equal(ds.column("episode_index")[start:start + len(recorded), 0], ep)
        start += len(recorded)
        decoded = ds.video_frames(HEAD, ep).astype(np.float64)
        original = np.stack([f[HEAD] for f, _ in recorded]).astype(np.float64)
        assert decoded.shape == original.shape
        errors = np.abs(decoded - original).mean(axis=(1, 2, 3))  # (T,) in 0..255
        assert errors.max() < 8.0, errors
        # each decoded frame matches its own original better than its neighbours (no off-by-one in time)
        shifted = np.abs(decoded[1:] - original[:-1]).mean(axis=(1, 2, 3))
        assert (errors[1:] < shifted).all()


def test_round_trip_arrays_tasks_and_video(tmp_path):
    root = tmp_path / "demo"
    episodes = _write(root)
    ds = DemoDataset(root)
    assert ds.tasks == [PICK, WALK]
    assert [ep["tasks"] for ep in ds.episodes] == [[PICK], [WALK], [PICK, WALK]]
    assert [ep["length"] for ep in ds.episodes] == [12, 7, 20]
    _check_round_trip(ds, episodes)
    np.testing.assert_allclose(ds.column("timestamp")[12:19, 0], np.arange(7) / FPS, rtol=1e-6)


def test_files_follow_the_v3_layout(tmp_path):
    root = tmp_path / "demo"
    _write(root)
    info = json.loads((root / "meta/info.json").read_text())
    assert set(info) == {"codebase_version", "robot_type", "total_episodes", "total_frames", "total_tasks",
                         "chunks_size", "data_files_size_in_mb", "video_files_size_in_mb", "fps", "splits",
                         "data_path", "video_path", "features"}
    assert info["codebase_version"] == "v3.0" and info["robot_type"] == "humanoid65"
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, 39, 2)
    assert info["fps"] == FPS and isinstance(info["fps"], int) and info["chunks_size"] == 1000
    assert info["splits"] == {"train": "0:3"}
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    feats = info["features"]
    assert list(feats) == ["observation.state", "action", HEAD, "timestamp", "frame_index", "episode_index",
                           "index", "task_index"]
    assert feats["timestamp"] == {"dtype": "float32", "shape": [1], "names": None}
    for key in ("frame_index", "episode_index", "index", "task_index"):
        assert feats[key] == {"dtype": "int64", "shape": [1], "names": None}
    assert feats["action"] == {"dtype": "float32", "shape": [12], "names": FEATURES["action"].names}
    assert feats[HEAD]["dtype"] == "video" and feats[HEAD]["shape"] == [H, W, 3]
    assert feats[HEAD]["names"] == ["height", "width", "channels"]
    assert feats[HEAD]["info"] == {"video.height": H, "video.width": W, "video.codec": "h264",
                                   "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "video.fps": FPS,
                                   "video.channels": 3, "has_audio": False}

    stats = json.loads((root / "meta/stats.json").read_text())
    assert set(stats) == set(feats)
    shapes = {"observation.state": (5,), "action": (12,), HEAD: (3, 1, 1)} | {k: (1,) for k in list(feats)[3:]}
    for key, shape in shapes.items():
        assert set(stats[key]) == {"min", "max", "mean", "std", "count", *QUANTS}
        for name in ("min", "max", "mean", "std", *QUANTS):
            assert np.asarray(stats[key][name]).shape == shape, (key, name)
        assert stats[key]["count"] == [39]  # every video frame is sampled below 100 frames per episode
    data = pq.read_table(root / "data/chunk-000/file-000.parquet")
    state = np.stack(data["observation.state"].to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(stats["observation.state"]["mean"], state.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats["observation.state"]["std"], state.std(0), rtol=1e-5)
    # lerobot aggregates quantiles as the count-weighted mean of the episode quantiles
    bounds = [(0, 12), (12, 19), (19, 39)]
    q50 = sum((b - a) * np.median(state[a:b], 0) for a, b in bounds) / 39
    np.testing.assert_allclose(stats["observation.state"]["q50"], q50, rtol=1e-5)
    assert stats["frame_index"]["max"] == [19] and stats["index"]["max"] == [38]
    video_mean = np.asarray(stats[HEAD]["mean"]).reshape(3)
    assert 0.0 < video_mean.min() and video_mean.max() < 1.0
    assert abs(video_mean[2] - (40 + 60 * np.array([0] * 12 + [1] * 7 + [2] * 20)).mean() / 255) < 1e-6

    tasks = pq.read_table(root / "meta/tasks.parquet")
    assert tasks.schema.field("task_index").type == pa.int64()
    assert pd.read_parquet(root / "meta/tasks.parquet").to_dict()["task_index"] == {PICK: 0, WALK: 1}

    episodes = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet")
    cols = episodes.column_names
    assert cols[:7] == ["episode_index", "tasks", "length", "data/chunk_index", "data/file_index",
                        "dataset_from_index", "dataset_to_index"]
    assert cols[-2:] == ["meta/episodes/chunk_index", "meta/episodes/file_index"]
    assert {f"stats/{k}/{s}" for k in feats for s in ["min", "max", "mean", "std", "count", *QUANTS]} <= set(cols)
    assert episodes.schema.field("tasks").type == pa.list_(pa.string())
    rows = episodes.to_pylist()
    assert [r["dataset_from_index"] for r in rows] == [0, 12, 19]
    assert [r[f"videos/{HEAD}/from_timestamp"] for r in rows] == pytest.approx([0, 12 / FPS, 19 / FPS])
    assert [r[f"videos/{HEAD}/to_timestamp"] for r in rows] == pytest.approx([12 / FPS, 19 / FPS, 39 / FPS])

    assert data.column_names == ["observation.state", "action", "timestamp", "frame_index", "episode_index",
                                 "index", "task_index"]
    assert data.schema.field("observation.state").type == pa.list_(pa.float32(), 5)
    assert data.schema.field("action").type == pa.list_(pa.float32(), 12)
    assert data.schema.field("timestamp").type == pa.float32()
    assert all(data.schema.field(k).type == pa.int64() for k in data.column_names[3:])
    assert data.num_rows == 39
    np.testing.assert_array_equal(data["index"].to_numpy(), np.arange(39))
    frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(root / f"videos/{HEAD}/chunk-000/file-000.mp4"))
    assert frames == 39 and seconds == pytest.approx(39 / FPS, abs=0.05)


def test_bad_input_raises_dataset_error_naming_the_field(tmp_path):
    rng = np.random.default_rng(1)
    writer = DatasetWriter(tmp_path / "demo", fps=FPS, features=FEATURES)
    good, _ = _episode(0, 1, rng)[0]
    for key, bad in [("observation.state", np.zeros(4, np.float32)), ("observation.state", np.zeros(5)),
                     ("action", np.full(12, np.nan, np.float32)), (HEAD, np.zeros((H, W, 3), np.float32)),
                     (HEAD, np.zeros((W, H + 2, 3), np.uint8))]:
        with pytest.raises(DatasetError, match=key):
            writer.add_frame(good | {key: bad}, PICK)
    with pytest.raises(DatasetError, match="action"):
        writer.add_frame({k: v for k, v in good.items() if k != "action"}, PICK)
    with pytest.raises(DatasetError, match="extra.key"):
        writer.add_frame(good | {"extra.key": np.zeros(1, np.float32)}, PICK)
    with pytest.raises(DatasetError, match="no frames"):
        writer.save_episode()
    with pytest.raises(DatasetError, match="action"):
        DatasetWriter(tmp_path / "multi_axis", fps=FPS, features={"action": Feature("float32", (4, 3))})
    with pytest.raises(DatasetError, match="fps"):
        DatasetWriter(tmp_path / "fps", fps=29.97, features=FEATURES)
    assert DatasetWriter(tmp_path / "fps_from_period", fps=30 + 1e-9, features=FEATURES).fps == 30  # 1 / period

    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="not an empty directory"):
        DatasetWriter(occupied, fps=FPS, features=FEATURES)
    assert (occupied / "notes.txt").read_text() == "keep me"

    root = tmp_path / "old"
    _write(root, lengths=(3,))
    info = json.loads((root / "meta/info.json").read_text())
    (root / "meta/info.json").write_text(json.dumps(info | {"codebase_version": "v2.1"}))
    with pytest.raises(DatasetError, match=r"info\.json.*v2\.1"):
        DemoDataset(root)
    with pytest.raises(DatasetError, match=r"info\.json"):
        DemoDataset(tmp_path / "nowhere")


def test_roll_over_spreads_episodes_over_files_and_chunks(tmp_path):
    root = tmp_path / "demo"
    # ~2 KB parquet limit: each episode after the first starts a new data file, 2 files per chunk;
    # ~5 KB mp4 limit (clips are ~2-3 KB): some episodes share an mp4, others start a new one
    episodes = _write(root, lengths=(12, 7, 20, 5), chunks_size=2, data_files_size_in_mb=0.002,
                      video_files_size_in_mb=0.005)
    ds = DemoDataset(root)
    locs = [(ep["data/chunk_index"], ep["data/file_index"]) for ep in ds.episodes]
    assert len(set(locs)) > 1 and locs == sorted(locs)
    assert (root / "data/chunk-001/file-000.parquet").is_file()
    assert not (root / "data/chunk-000/file-002.parquet").exists()
    video_locs = [(ep[f"videos/{HEAD}/chunk_index"], ep[f"videos/{HEAD}/file_index"]) for ep in ds.episodes]
    assert len(set(video_locs)) > 1
    assert len(set(video_locs)) < len(video_locs)  # and at least two episodes share one
    for prev, ep, loc in zip([None] + ds.episodes, ds.episodes, video_locs):
        shared = prev is not None and video_locs[prev["episode_index"]] == loc
        expected = prev[f"videos/{HEAD}/to_timestamp"] if shared else 0.0
        assert ep[f"videos/{HEAD}/from_timestamp"] == pytest.approx(expected)
    _check_round_trip(ds, episodes)


def test_context_manager_discards_the_unfinished_episode(tmp_path):
    root = tmp_path / "demo"
    rng = np.random.default_rng(2)
    first, second = _episode(0, 6, rng), _episode(1, 4, rng)
    with pytest.raises(RuntimeError, match="robot fell"), DatasetWriter(root, fps=FPS, features=FEATURES) as w:
        for frame, task in first:
            w.add_frame(frame, task)
        w.save_episode()
        for frame, task in second[:3]:
            w.add_frame(frame, task)
        raise RuntimeError("robot fell")
    ds = DemoDataset(root)
    assert len(ds) == 6 and len(ds.episodes) == 1
    _check_round_trip(ds, [first])
    assert w.finalize() == root  # a second finalize is a no-op
    with pytest.raises(DatasetError, match="finalized"):
        w.add_frame(first[0][0], PICK)
