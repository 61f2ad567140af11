import numpy as np
import pytest

from s0_locomotion.motion import ClipError, Kinematics, load_clip, make_clip
from s0_locomotion.motion.library import build_clip, clip_names
from s0_locomotion.motion.ops import concat, mirror, time_scale
from s0_locomotion.motion.procedural import FOOT_CENTER, FOOT_HALF, GRAVITY, THIGH, ProceduralError, leg_ik


@pytest.fixture(scope="module")
def kin(body):
    return Kinematics(body)


@pytest.fixture(scope="module")
def library(body, kin):
    return {name: build_clip(body, name, kin) for name in clip_names()}


REQUIRED = ["stand", "walk_slow", "walk", "walk_fast", "walk_backward", "side_step_left", "side_step_right",
            "turn_left", "turn_right", "walk_arc_left", "walk_arc_right", "squat", "wave_left", "wave_right",
            "reach_forward_left", "reach_forward_right", "reach_side_left", "reach_side_right", "arms_up",
            "hands_open", "hands_close", "hands_point", "hands_grasp"]


def test_library_has_every_motion_within_limits(library, body):
    assert set(REQUIRED) <= set(library)
    lo, hi = body.ranges.T
    for clip in library.values():
        assert np.all(clip.joint_pos >= lo - 1e-6) and np.all(clip.joint_pos <= hi + 1e-6), clip.name
        # every clip starts and ends standing, so clips concatenate
        np.testing.assert_allclose(clip.joint_pos[0], clip.joint_pos[-1], atol=2e-2, err_msg=clip.name)


def test_no_foot_sliding_in_stance_and_no_ground_penetration(library, body, kin):
    for clip in library.values():
        low = np.stack([kin.geom_lowest_z(clip.root_pos, clip.root_quat, clip.joint_pos, (f,)) for f in body.feet], 1)
        assert low.min() > -1e-4, f"{clip.name}: a sole goes {low.min():.4f} m into the floor"
        feet = clip.body_pos[:, [clip.body_index(f) for f in body.feet], :2]  # (T, 2, 2) ankle xy
        speed = np.linalg.norm(np.diff(feet, axis=0), axis=-1) * clip.fps  # (T-1, 2)
        stance = (low[1:] < 1e-3) & (low[:-1] < 1e-3)  # sole on the floor at both frames
        assert stance.mean() > 0.5, clip.name
        assert speed[stance].max(initial=0.0) < 1e-3, f"{clip.name}: stance foot slides {speed[stance].max():.4f} m/s"


WALKS = ["walk_slow", "walk", "walk_fast", "walk_backward", "side_step_left", "side_step_right", "turn_left",
         "turn_right", "walk_arc_left", "walk_arc_right"]


@pytest.fixture(scope="module")
def balanced(body, kin):
    return {name: build_clip(body, name, kin, balance=True) for name in WALKS}


def _single_support_zmp(clip, body, kin) -> list[np.ndarray]:
    """Cart-table ZMP (c - c''·h/g of the whole-body CoM by forward kinematics) in the stance sole's frame,
    relative to the sole's centre, for every single-support frame: a list of (2,) vectors."""
    com = kin.com_positions(clip.root_pos, clip.root_quat, clip.joint_pos)
    acc = (com[2:] - 2 * com[1:-1] + com[:-2]) * clip.fps**2
    zmp = com[1:-1, :2] - acc[:, :2] * com[:, 2].mean() / GRAVITY
    low = np.stack([kin.geom_lowest_z(clip.root_pos, clip.root_quat, clip.joint_pos, (f,)) for f in body.feet], 1)
    ids = [kin.model.body(f).id for f in body.feet]
    out = []
    for i, d in enumerate(kin.poses(clip.root_pos, clip.root_quat, clip.joint_pos)):
        if i == 0 or i == clip.num_frames - 1 or (low[i] < 1e-3).sum() != 1:
            continue
        k = int(np.argmin(low[i]))  # the stance foot
        rot = d.xmat[ids[k]].reshape(3, 3)[:2, :2]
        out.append(rot.T @ (zmp[i - 1] - d.xpos[ids[k], :2]) - np.asarray(FOOT_CENTER[:2]))
    return out


def test_balanced_walks_keep_the_zmp_on_the_stance_foot(balanced, library, body, kin):
    for name, clip in balanced.items():
        local = np.abs(np.stack(_single_support_zmp(clip, body, kin)))
        assert len(local) > 20, name
        assert local[:, 0].max() < FOOT_HALF[0] - 0.02, f"{name}: ZMP {local[:, 0].max():.3f} m along the sole"
        assert local[:, 1].max() < FOOT_HALF[1] - 0.02, f"{name}: ZMP {local[:, 1].max():.3f} m across the sole"
        # the feet are the same footsteps as the commanded-path walk's; only the pelvis moves. A balanced walk
        # stands longer at the end, until the CoM is back between the feet: its extra frames keep the feet still
        feet = clip.body_pos[:, [clip.body_index(f) for f in body.feet]]
        plain = library[name].body_pos[:, [library[name].body_index(f) for f in body.feet]]
        assert len(feet) >= len(plain), name
        np.testing.assert_allclose(feet[:len(plain)], plain, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(feet[len(plain) - 1:], np.broadcast_to(plain[-1], feet[len(plain) - 1:].shape),
                                   atol=1e-6, err_msg=name)
    # the commanded-path walk keeps the CoM between the feet: the ZMP leaves the sole sideways
    commanded = np.abs(np.stack(_single_support_zmp(library["walk"], body, kin)))
    assert commanded[:, 1].max() > FOOT_HALF[1]


def test_balanced_walks_neither_slide_nor_sink(balanced, body, kin):
    test_no_foot_sliding_in_stance_and_no_ground_penetration(balanced, body, kin)
    test_locomotion_goes_where_commanded(balanced)


def test_locomotion_goes_where_commanded(library):
    def displacement(name):
        return library[name].root_pos[-1, :2] - library[name].root_pos[0, :2]

    speeds = [displacement(n)[0] for n in ("walk_slow", "walk", "walk_fast")]
    assert 0 < speeds[0] < speeds[1] < speeds[2]
    assert displacement("walk_backward")[0] < -1.0
    assert displacement("side_step_left")[1] > 1.0 and displacement("side_step_right")[1] < -1.0
    assert np.linalg.norm(displacement("turn_left")) < 0.05
    w, _, _, z = library["turn_left"].root_quat[-1]
    assert 2 * np.arctan2(z, w) > 1.5
    assert displacement("walk_arc_left")[1] > 0.5 and displacement("walk_arc_right")[1] < -0.5


def test_gestures_move_the_named_limb(library, body):
    names = body.joint_names
    wave = library["wave_right"]
    assert wave.joint_pos[:, names.index("right_shoulder_roll")].min() < -1.0
    assert np.ptp(wave.joint_pos[:, names.index("left_shoulder_roll")]) < 1e-6
    mirrored = library["wave_left"]
    assert mirrored.joint_pos[:, names.index("left_shoulder_roll")].max() > 1.0
    head = wave.body_index("right_hand")
    assert wave.body_pos[:, head, 2].max() > 1.4  # the hand goes above the shoulder
    fist = library["hands_close"].joint_pos[len(library["hands_close"].joint_pos) // 2]
    point = library["hands_point"].joint_pos[len(library["hands_point"].joint_pos) // 2]
    assert fist[names.index("right_index_pip_flexion")] > 1.5 and point[names.index("right_index_pip_flexion")] < 0.1
    squat = library["squat"]
    assert squat.root_pos[:, 2].min() < squat.root_pos[0, 2] - 0.2


def test_leg_ik_is_exact_through_forward_kinematics(body, kin):
    # A foot 20 cm forward and 5 cm out, turned 0.3 rad, with the pelvis at 0.88 m: FK must put the ankle there.
    names = body.joint_names
    pose = body.default_pose.astype(np.float64).copy()
    hip = np.array([[0.0, 0.09, 0.88 - 0.06]])
    ankle = np.array([[0.2, 0.14, 0.08]])
    legs = leg_ik(hip, ankle, np.zeros(1), np.array([0.3]), 1.0)
    pose[[names.index(f"left_{j}") for j in ("hip_yaw", "hip_roll", "hip_pitch", "knee", "ankle_pitch",
                                             "ankle_roll")]] = legs[0]
    pos = kin.body_positions(np.array([[0, 0, 0.88]]), np.array([[1.0, 0, 0, 0]]), pose[None])[0]
    np.testing.assert_allclose(pos[kin.body_names.index("left_foot")], ankle[0], atol=1e-9)
    with pytest.raises(ProceduralError, match="left foot out of reach"):
        leg_ik(hip, np.array([[0.0, 0.09, -2 * THIGH]]), np.zeros(1), np.zeros(1), 1.0)


def test_mirror_twice_is_identity_and_mirrors_space(body, kin, library):
    walk = library["walk_arc_left"]
    once = mirror(body, walk, kinematics=kin)
    np.testing.assert_allclose(once.root_pos[:, 1], -walk.root_pos[:, 1], atol=1e-9)
    twice = mirror(body, once, kinematics=kin)
    np.testing.assert_allclose(twice.joint_pos, walk.joint_pos, atol=1e-9)
    left = kin.body_names.index("left_hand")
    right = kin.body_names.index("right_hand")
    np.testing.assert_allclose(once.body_pos[:, right], walk.body_pos[:, left] * [1, -1, 1], atol=1e-6)


def test_time_scale_and_concat_are_smooth(body, kin, library):
    slow = time_scale(body, library["wave_right"], 2.0, kinematics=kin)
    assert slow.duration == pytest.approx(2 * library["wave_right"].duration, abs=1 / slow.fps)
    assert np.abs(slow.joint_vel).max() == pytest.approx(np.abs(library["wave_right"].joint_vel).max() / 2, rel=0.1)
    parts = [library["walk"], library["turn_left"], library["wave_right"]]
    chain = concat(body, parts, blend=0.4, kinematics=kin)
    assert chain.num_frames == sum(p.num_frames for p in parts) - 2 * 20
    # Continuity: no frame-to-frame jump larger than inside the parts themselves.
    jump = np.abs(np.diff(chain.joint_pos, axis=0)).max()
    assert jump <= max(np.abs(np.diff(p.joint_pos, axis=0)).max() for p in parts) + 1e-6
    step = np.linalg.norm(np.diff(chain.root_pos, axis=0), axis=1).max()
    assert step < 0.05  # the turn starts where the walk ended (3 m ahead), not back at the origin
    assert chain.root_pos[-1, 0] > 2.5


def test_clip_file_round_trip_and_bad_files(tmp_path, body, library):
    path = library["squat"].save(tmp_path / "squat.npz")
    clip = load_clip(path, body)
    np.testing.assert_allclose(clip.body_pos, library["squat"].body_pos, atol=1e-5)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ClipError, match="bad.npz: not a readable clip"):
        load_clip(tmp_path / "bad.npz")
    with pytest.raises(ClipError, match="nope.npz: no such clip file"):
        load_clip(tmp_path / "nope.npz")
    frames = np.tile(body.default_pose, (5, 1)).astype(np.float64)
    frames[2, 3] = np.nan
    with pytest.raises(ClipError, match="joint_pos contains NaN"):
        make_clip(body, "x", 50, np.zeros((5, 3)), np.tile([1.0, 0, 0, 0], (5, 1)), frames)
    with pytest.raises(ClipError, match=r"joint_pos has shape \(5, 64\), expected \(5, 65\)"):
        make_clip(body, "x", 50, np.zeros((5, 3)), np.tile([1.0, 0, 0, 0], (5, 1)), frames[:, :64])
