"""DeepMimic loader and retargeting: a hand-made clip in the repo, the real clips in ../shared, bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from s0_locomotion.motion.clip import ClipError, Kinematics
from s0_locomotion.motion.deepmimic import (
    deepmimic_fk,
    load_deepmimic,
    load_deepmimic_skeleton,
    read_deepmimic_frames,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "deepmimic"
TINY = DATA / "tiny_walk.txt"
CLIPS = ("dance_a", "jog", "jump", "kick", "punch", "run", "spin", "walk")
SIDES = ("left", "right")
# Our body -> DeepMimic joint at the same place (a body's origin is its parent joint).
LEG = {"thigh": "hip", "shank": "knee", "foot": "ankle"}
ARM = {"forearm": "elbow", "hand": "wrist"}


def joint(clip, name: str) -> np.ndarray:
    return clip.joint_pos[:, clip.joint_names.index(name)]


def position(clip, body: str) -> np.ndarray:
    return clip.body_pos[:, clip.body_index(body)]


# -- the hand-made clip (always runs) ---------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(body):
    return load_deepmimic(TINY, body)


def test_tiny_clip_shapes_and_rate(tiny, body):
    assert tiny.name == "tiny_walk"
    assert tiny.joint_pos.shape == (4, body.n_dof) and tiny.root_pos.shape == (4, 3)
    assert tiny.fps == pytest.approx(30.0, rel=1e-3)
    assert tiny.meta["loop"] == "none" and tiny.meta["clamped"] == {}
    # Our hip-to-ankle 0.41 + 0.41 m over DeepMimic's 0.421546 + 0.40987 m.
    assert tiny.meta["scale"] == pytest.approx(0.82 / (0.421546 + 0.40987))


def test_tiny_clip_known_angles(tiny, body):
    # Frame 1: DeepMimic right knee -0.6 rad (flexion is negative about DeepMimic's z = right) -> ours +0.6.
    assert joint(tiny, "right_knee")[[0, 1, 2, 3]] == pytest.approx([0.0, 0.6, 0.6, 0.0], abs=1e-6)
    # Frame 2: right hip +0.4 rad about DeepMimic's z (thigh forward) -> hip flexion, our pitch -0.4.
    assert joint(tiny, "right_hip_pitch")[2] == pytest.approx(-0.4, abs=1e-5)
    assert joint(tiny, "right_hip_roll")[2] == pytest.approx(0.0, abs=1e-5)
    assert joint(tiny, "right_hip_yaw")[2] == pytest.approx(0.0, abs=1e-5)
    # Left elbow +0.5 (flexion in DeepMimic) -> ours -0.5 (our elbow flexion is negative).
    assert joint(tiny, "left_elbow")[2] == pytest.approx(-0.5, abs=1e-6)
    # Frame 0 is DeepMimic's zero pose = ours: straight legs; fingers at the default pose; wrists 0.
    legs = body.groups["left_leg"] + body.groups["right_leg"]
    assert tiny.joint_pos[0, legs] == pytest.approx(0.0, abs=1e-6)
    hands = body.groups["left_hand"] + body.groups["right_hand"]
    assert tiny.joint_pos[:, hands] == pytest.approx(np.tile(body.default_pose[hands], (4, 1)), abs=1e-6)
    assert joint(tiny, "left_wrist_flexion") == pytest.approx(0.0)
    # The bent knee puts the right ankle behind the knee.
    assert position(tiny, "right_foot")[1, 0] < position(tiny, "right_shank")[1, 0] - 0.2


def test_tiny_clip_root_and_floor(tiny, body):
    assert np.diff(tiny.root_pos[:, 0]) == pytest.approx(0.03 * tiny.meta["scale"], abs=1e-6)  # +x forward
    assert tiny.root_quat == pytest.approx(np.tile([1.0, 0, 0, 0], (4, 1)), abs=1e-9)
    lowest = Kinematics(body).geom_lowest_z(tiny.root_pos, tiny.root_quat, tiny.joint_pos, tuple(body.feet))
    assert lowest.min() == pytest.approx(0.0, abs=1e-6)
    # Standing straight (frames 0, 3): soles on the floor; frame 2's tilted foot dips 2 mm lower.
    assert lowest[0] == pytest.approx(lowest[3]) and lowest[0] < 0.005


def test_fk_frame_conversion():
    """DeepMimic's z (right) is our -y, its y (up) our z: checked on the zero pose by hand."""
    skeleton = load_deepmimic_skeleton(DATA / "character_humanoid3d.txt")
    frames, loop = read_deepmimic_frames(TINY, skeleton)
    assert frames.shape == (4, 44) and loop == "none"
    fk = deepmimic_fk(skeleton, frames)
    assert fk["root"][0] == pytest.approx([0.0, 0.0, 0.85])
    assert fk["right_hip"][0] == pytest.approx([0.0, -0.084887, 0.85])
    assert fk["right_ankle"][0] == pytest.approx([0.0, -0.084887, 0.85 - 0.421546 - 0.40987])
    assert fk["left_wrist"][0] == pytest.approx([-0.02405, 0.18311, 0.85 + 0.236151 + 0.2435 - 0.274788 - 0.258947])
    # Frame 1: the knee bent by 0.6 rad swings the right ankle backwards (-x).
    assert fk["right_ankle"][1, 0] == pytest.approx(0.03 - 0.40987 * np.sin(0.6))
    # A root turned +90 deg about DeepMimic's y (up) faces our +y (left): the right hip moves to +x.
    frames[:, 4:8] = [np.cos(np.pi / 4), 0.0, np.sin(np.pi / 4), 0.0]
    fk = deepmimic_fk(skeleton, frames)
    assert fk["right_hip"][0] == pytest.approx([0.084887, 0.0, 0.85])


def test_root_rotation_converted(body, clip_dir):
    frames = _frames()
    for row in frames:
        row[4:8] = [np.cos(np.pi / 4), 0.0, np.sin(np.pi / 4), 0.0]  # yaw +90 deg about DeepMimic's y (up)
    clip = load_deepmimic(_write(clip_dir, frames), body)
    assert clip.root_quat == pytest.approx(np.tile([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)], (4, 1)))
    assert position(clip, "right_thigh")[0, :2] - clip.root_pos[0, :2] == pytest.approx([0.09, 0.0])


# -- bad input -----------------------------------------------------------------------------------------


@pytest.fixture
def clip_dir(tmp_path: Path) -> Path:
    (tmp_path / "character_humanoid3d.txt").write_text((DATA / "character_humanoid3d.txt").read_text())
    return tmp_path


def _write(clip_dir: Path, frames) -> Path:
    path = clip_dir / "bad.txt"
    path.write_text(json.dumps({"Loop": "none", "Frames": frames}))
    return path


def _frames() -> list[list[float]]:
    return json.loads(TINY.read_text())["Frames"]


def test_missing_file(body, clip_dir):
    with pytest.raises(ClipError, match=r"nope\.txt: no such DeepMimic clip file"):
        load_deepmimic(clip_dir / "nope.txt", body)


def test_truncated_file(body, clip_dir):
    path = clip_dir / "bad.txt"
    path.write_text(TINY.read_text()[:400])
    with pytest.raises(ClipError, match=r"bad\.txt: not valid JSON, truncated"):
        load_deepmimic(path, body)


def test_missing_frames(body, clip_dir):
    path = clip_dir / "bad.txt"
    path.write_text(json.dumps({"Loop": "none"}))
    with pytest.raises(ClipError, match=r"bad\.txt: missing \"Frames\""):
        load_deepmimic(path, body)


def test_wrong_value_count(body, clip_dir):
    frames = _frames()
    frames[2] = frames[2][:-1]
    with pytest.raises(ClipError, match=r"bad\.txt: frame 2 has 43 values, expected 44"):
        load_deepmimic(_write(clip_dir, frames), body)


def test_nan_value(body, clip_dir):
    frames = _frames()
    frames[1][20] = float("nan")  # json.dumps writes NaN, which Python's json reads back
    with pytest.raises(ClipError, match=r"bad\.txt: NaN/inf value nan in frame 1 \(column 20\)"):
        load_deepmimic(_write(clip_dir, frames), body)


def test_character_lacks_joint(body, clip_dir):
    character = clip_dir / "character_humanoid3d.txt"
    data = json.loads(character.read_text())
    data["Skeleton"]["Joints"] = [j for j in data["Skeleton"]["Joints"] if j["Name"] != "left_knee"]
    character.write_text(json.dumps(data))
    with pytest.raises(ClipError, match=re.escape(f"{character}: character file lacks the required joint 'left_knee'")):
        load_deepmimic(_write(clip_dir, _frames()), body)


# -- the real clips in ../shared ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def walk(shared_dir, body):
    folder = shared_dir / "motions" / "deepmimic"
    clip = load_deepmimic(folder / "humanoid3d_walk.txt", body)
    skeleton = load_deepmimic_skeleton(folder / "character_humanoid3d.txt")
    frames, _ = read_deepmimic_frames(folder / "humanoid3d_walk.txt", skeleton)
    return clip, frames, deepmimic_fk(skeleton, frames)


def test_walk_matches_source_fk(walk):
    """Key joints of our body follow the source skeleton's, both scaled to our leg length.

    Aligned at the hip centre (DeepMimic's root joint sits there; our pelvis origin is 6 cm above it).
    Measured: legs mean 0.7 / max 0.9 cm (the only difference is hip width, 8.4 vs 9 cm); hands and
    elbows relative to the shoulder 1.4-1.9 cm (segment lengths differ by <= 2 cm); shoulders 9.1 / 9.2 cm
    from the hip centre (our shoulders sit 8.6 cm higher: a proportion, not a pose, difference).
    A flipped knee sign moves the ankle by ~0.5 m, a mirrored arm swing the hand by ~0.2 m.
    """
    clip, _, fk = walk
    s = clip.meta["scale"]
    ours_hip = (position(clip, "left_thigh") + position(clip, "right_thigh")) / 2
    dm_hip = s * (fk["left_hip"] + fk["right_hip"]) / 2
    # The root trajectory: hip centres coincide after scaling, up to the one floor shift in z.
    assert ours_hip[:, :2] == pytest.approx(dm_hip[:, :2], abs=1e-6)
    assert np.ptp(ours_hip[:, 2] - dm_hip[:, 2]) < 1e-6
    for side in SIDES:
        for ours, dm in LEG.items():
            err = np.linalg.norm(position(clip, f"{side}_{ours}") - ours_hip - (s * fk[f"{side}_{dm}"] - dm_hip),
                                 axis=1)
            assert err.mean() < 0.02 and err.max() < 0.03, (side, ours, err.mean(), err.max())
        shoulder, dm_shoulder = position(clip, f"{side}_upper_arm"), s * fk[f"{side}_shoulder"]
        err = np.linalg.norm(shoulder - ours_hip - (dm_shoulder - dm_hip), axis=1)
        assert err.max() < 0.12, (side, "shoulder", err.max())
        for ours, dm in ARM.items():
            err = np.linalg.norm(position(clip, f"{side}_{ours}") - shoulder - (s * fk[f"{side}_{dm}"] - dm_shoulder),
                                 axis=1)
            assert err.mean() < 0.03 and err.max() < 0.04, (side, ours, err.mean(), err.max())


def test_walk_moves_forward_on_the_floor(walk, body):
    clip, _, _ = walk
    assert clip.fps == pytest.approx(30.0, rel=1e-3)
    assert clip.root_pos[-1, 0] - clip.root_pos[0, 0] > 1.0  # 1.23 m in 1.27 s, along +x
    assert abs(clip.root_pos[-1, 1] - clip.root_pos[0, 1]) < 0.05
    w, x, y, z = clip.root_quat.T
    heading = np.array([1 - 2 * (y**2 + z**2), 2 * (x * y + w * z)])  # (2, T) pelvis x axis in the world, xy
    assert np.mean(np.sum(heading.T * clip.root_lin_vel[:, :2], axis=1)) > 0.7  # m/s along the heading
    kin = Kinematics(body)
    lowest = np.stack([kin.geom_lowest_z(clip.root_pos, clip.root_quat, clip.joint_pos, (f,)) for f in body.feet], 1)
    assert lowest.min() > -0.01 and lowest.min() == pytest.approx(0.0, abs=1e-6)
    assert lowest.min(axis=1).max() < 0.03  # a walk always has a foot on the floor (measured: <= 1.8 cm)
    assert (position(clip, "head")[:, 2] - clip.root_pos[:, 2] > 0.5).all()  # upright


def test_walk_knees_flex_the_right_way(walk):
    clip, frames, _ = walk
    # DeepMimic columns: right knee 20, left knee 34 (negative = flexion); ours is positive flexion.
    for name, col in (("right_knee", 20), ("left_knee", 34)):
        assert (frames[:, col] <= 0).all()
        assert joint(clip, name) == pytest.approx(-frames[:, col], abs=1e-6)
        assert joint(clip, name).max() > 1.0  # swing-phase flexion (1.36 rad)
    assert clip.meta["clamped"] == {}


@pytest.mark.parametrize("name", CLIPS)
def test_shared_clip_loads(shared_dir, body, name):
    path = shared_dir / "motions" / "deepmimic" / f"humanoid3d_{name}.txt"
    clip = load_deepmimic(path, body)
    raw = json.loads(path.read_text())["Frames"]
    assert clip.num_frames == len(raw) and clip.fps == pytest.approx(1 / raw[0][0], rel=1e-4)
    lo, hi = body.ranges.T
    assert np.all(clip.joint_pos >= lo - 1e-6) and np.all(clip.joint_pos <= hi + 1e-6)
    assert np.isfinite(clip.body_pos).all()
    assert all(isinstance(v, int) and 0 < v <= clip.num_frames for v in clip.meta["clamped"].values())
