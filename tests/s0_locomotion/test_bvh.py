"""BVH loading: parser, source FK, retargeting signs, foot placement, root height and bad input.

Two hand-made files in tests/data/bvh (written from formulas, so every value below is worked by hand):

* ``cmu_tpose_cm.bvh``: CMU names, centimetres, Y up, facing +Z (left = +X), T-pose rest, channels
  ZYX, 20 frames at 30 fps. Over u = frame/19: root forward 20u cm and yaw 10u deg; left hip
  Xrotation -30u (flexion), left knee Xrotation +60u (flexion), left foot -30u (stays level); Spine
  and Spine1 Xrotation +5u each (lean forward); arms lowered 60u deg; elbows bent 30u deg forward;
  hands with zero-offset FingerBase/Thumb children (as in CMU files) and no rotation.
  Legs 45 + 45 cm -> auto scale 0.82 m / 90 cm.
* ``zup_m.bvh`` (+ ``zup_m_map.yaml``): Z up, facing +Y (left = -X), metres, arms-down rest, channels
  XYZ, no Spine1, legs 0.36 + 0.46 m (ours 0.41 + 0.41), 16 frames at 25 fps. Right hip Xrotation
  +25u, right knee Xrotation -50u (knee flexion is about -X here), right foot +25u; root yaw -15u deg.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from infra.config import ConfigError
from s0_locomotion.motion.bvh import (
    BvhMapping,
    axes_matrix,
    forward_kinematics,
    level_feet,
    load_bvh,
    load_mapping,
    parse_bvh,
    rest_positions,
    retarget_angles,
)
from s0_locomotion.motion.clip import ClipError, Kinematics
from s0_locomotion.motion.retarget import HUMANOID65_CHAINS

DATA = Path(__file__).resolve().parents[1] / "data" / "bvh"
CMU = DATA / "cmu_tpose_cm.bvh"
ZUP = DATA / "zup_m.bvh"
CMU_SCALE = 0.82 / 90.0  # our hip-to-ankle length over the source's, m per cm
FOOT_TOL = 0.002  # m: our ankle vs the scaled source foot joint (measured: ~1e-6 m after IK)


@pytest.fixture(scope="module")
def zup_map() -> BvhMapping:
    return load_mapping(str(DATA / "zup_m_map.yaml"))


@pytest.fixture(scope="module")
def kin(body) -> Kinematics:
    return Kinematics(body)


@pytest.fixture(scope="module")
def clips(body, kin, zup_map):
    return {"cmu": load_bvh(CMU, body, kinematics=kin), "zup": load_bvh(ZUP, body, zup_map, kinematics=kin)}


def u(frames: int) -> np.ndarray:
    return np.arange(frames) / (frames - 1)


def col(body, name: str) -> int:
    return body.joint_names.index(name)


# -- parsing and source FK --------------------------------------------------------------------------------


def test_parse_joint_count_channel_order_and_frame_time():
    bvh = parse_bvh(CMU)
    assert len(bvh.joints) == 27 and bvh.values.shape == (20, 6 + 26 * 3)
    assert bvh.joints[0].channels == ("Xposition", "Yposition", "Zposition", "Zrotation", "Yrotation", "Xrotation")
    assert bvh.joints[bvh.index("LeftLeg")].channels == ("Zrotation", "Yrotation", "Xrotation")
    assert bvh.joints[bvh.index("LeftLeg")].parent == bvh.index("LeftUpLeg")
    assert bvh.frame_time == pytest.approx(0.033333)
    np.testing.assert_allclose(bvh.joints[bvh.index("Head")].end_sites[0], [0, 15, 0])
    zup = parse_bvh(ZUP)
    assert len(zup.joints) == 16 and zup.values.shape == (16, 6 + 15 * 3) and zup.frame_time == 0.04
    assert zup.joints[1].channels == ("Xrotation", "Yrotation", "Zrotation")


def test_rest_fk_equals_summed_offsets():
    bvh = parse_bvh(CMU)
    rest = type(bvh)(bvh.path, bvh.joints, bvh.frame_time, np.zeros((1, bvh.values.shape[1])))
    pos, rot = forward_kinematics(rest)
    expected = {"LeftFoot": (10, -95, 0), "RightToeBase": (-10, -101, 12), "Head": (0, 60, 0),
                "LeftHand": (3 + 15 + 28 + 25, 10 + 20 + 18, 0), "RightForeArm": (-3 - 15 - 28, 48, 0)}
    for name, value in expected.items():
        np.testing.assert_allclose(pos[0, bvh.index(name)], value, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(pos[0], rest_positions(bvh), atol=1e-12)
    np.testing.assert_allclose(rot[0], np.broadcast_to(np.eye(3), rot[0].shape))


def test_fk_euler_order_is_intrinsic_in_channel_order():
    bvh = parse_bvh(CMU)
    values = np.zeros((1, bvh.values.shape[1]))
    cols = bvh.channel_slices()[bvh.index("LeftUpLeg")]  # Zrotation Yrotation Xrotation
    values[0, cols.start], values[0, cols.start + 2] = 90.0, 90.0
    pos, _ = forward_kinematics(type(bvh)(bvh.path, bvh.joints, bvh.frame_time, values))
    # Rz(90) Rx(90) (0, -45, 0) = Rz(90) (0, 0, -45) = (0, 0, -45); the other order would give (45, 0, 0).
    np.testing.assert_allclose(pos[0, bvh.index("LeftLeg")], (10, -5, -45), atol=1e-9)
    values[:] = 0.0
    values[0, 4] = 90.0  # Hips Yrotation: Ry(90) (10, -5, 0) = (0, -5, -10)
    pos, _ = forward_kinematics(type(bvh)(bvh.path, bvh.joints, bvh.frame_time, values))
    np.testing.assert_allclose(pos[0, bvh.index("LeftUpLeg")], (0, -5, -10), atol=1e-9)


def test_axes_matrix_maps_source_axes_to_ours():
    np.testing.assert_array_equal(axes_matrix("y", "z") @ [1, 2, 3], [3, 1, 2])  # CMU: left = +X
    np.testing.assert_array_equal(axes_matrix("z", "y") @ [1, 2, 3], [2, -1, 3])  # left = -X
    for up, fwd in (("y", "z"), ("z", "y"), ("z", "-x"), ("-y", "x")):
        assert np.linalg.det(axes_matrix(up, fwd)) == pytest.approx(1.0)


# -- mapping config ---------------------------------------------------------------------------------------


def test_cmu_preset_loads_and_unknown_keys_fail(tmp_path):
    cmu = load_mapping("cmu")
    assert cmu.joints["Spine1"] == "chest" and cmu.joints["LeftLeg"] == "left_knee"
    assert (cmu.up_axis, cmu.forward_axis, cmu.units_scale, cmu.feet) == ("y", "z", "auto", ["LeftFoot", "RightFoot"])
    assert load_mapping("cmu", ["units_scale=0.01"]).units_scale == 0.01
    with pytest.raises(ConfigError, match="up_axes"):
        load_mapping("cmu", ["up_axes=z"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("joints: {Hips: root}\nfoot: [LeftFoot, RightFoot]\n")
    with pytest.raises(ConfigError, match="foot"):
        load_mapping(str(bad))
    with pytest.raises(ValueError, match="unknown roles"):
        BvhMapping(joints={**cmu.joints, "LeftLeg": "left_shin"})
    with pytest.raises(ValueError, match="perpendicular"):
        BvhMapping(joints=cmu.joints, up_axis="y", forward_axis="-y")


# -- retargeting ------------------------------------------------------------------------------------------


def test_known_angles_come_out_with_our_signs(body, kin, zup_map):
    ret = retarget_angles(parse_bvh(CMU), body, load_mapping("cmu"), kin.model)
    deg = np.rad2deg(ret.joint_pos)
    w = u(20)
    np.testing.assert_allclose(deg[:, col(body, "left_knee")], 60 * w, atol=1e-4)  # flexion is positive
    np.testing.assert_allclose(deg[:, col(body, "left_hip_pitch")], -30 * w, atol=1e-4)  # flexion negative
    np.testing.assert_allclose(deg[:, col(body, "right_knee")], 0, atol=1e-4)
    np.testing.assert_allclose(deg[:, col(body, "waist_pitch")], 10 * w, atol=1e-4)  # Spine + Spine1 folded
    for side, s in (("left", 1), ("right", -1)):  # the T-pose rest is factored out
        np.testing.assert_allclose(deg[:, col(body, f"{side}_elbow")], -30 * w, atol=1e-4)
        np.testing.assert_allclose(deg[:, col(body, f"{side}_shoulder_roll")], s * 90 * (1 - 2 / 3 * w), atol=1e-4)
        for joint in HUMANOID65_CHAINS[f"{side}_wrist"]:  # zero-offset FingerBase/Thumb children: the
            np.testing.assert_allclose(deg[:, col(body, joint)], 0, atol=1e-4)  # hand continues the forearm
    assert ret.scale == pytest.approx(CMU_SCALE) and ret.clamped == {}
    zup = retarget_angles(parse_bvh(ZUP), body, zup_map, kin.model)
    np.testing.assert_allclose(np.rad2deg(zup.joint_pos[:, col(body, "right_knee")]), 50 * u(16), atol=1e-4)
    np.testing.assert_allclose(np.rad2deg(zup.joint_pos[:, col(body, "right_hip_pitch")]), -25 * u(16), atol=1e-4)


def test_ik_keeps_the_knee_where_proportions_match(body, clips):
    knee = np.rad2deg(clips["cmu"].joint_pos[:, col(body, "left_knee")])
    np.testing.assert_allclose(knee, 60 * u(20), atol=0.5)  # same thigh:shank ratio, 1 mm wider hips
    assert clips["cmu"].fps == pytest.approx(30.0, rel=1e-4) and clips["cmu"].num_frames == 20


def _scaled_source_feet(path: Path, scale: float, c: np.ndarray) -> np.ndarray:
    bvh = parse_bvh(path)
    pos, _ = forward_kinematics(bvh)
    return pos[:, [bvh.index("LeftFoot"), bvh.index("RightFoot")]] * scale @ c.T  # (T, 2, 3)


@pytest.mark.parametrize("key, path, scale, c", [
    ("cmu", CMU, CMU_SCALE, np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]])),  # ours = (z, x, y)
    ("zup", ZUP, 1.0, np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1]])),  # ours = (y, -x, z)
], ids=["cmu", "zup"])
def test_feet_land_where_the_source_feet_land(clips, key, path, scale, c):
    clip = clips[key]
    target = _scaled_source_feet(path, scale, c)
    ours = clip.body_pos[:, [clip.body_index("left_foot"), clip.body_index("right_foot")]]
    err = ours - target
    assert np.abs(err[..., :2]).max() < FOOT_TOL  # horizontal: absolute
    assert np.abs(err[..., 2] - clip.meta["root_shift_m"]).max() < FOOT_TOL  # vertical: up to the root shift
    assert clip.meta["foot_error_max_m"] < FOOT_TOL


def test_ik_is_what_puts_the_feet_there(clips):
    # zup's legs are 0.36 + 0.46 m: copying the knee angle alone misses the foot by centimetres.
    assert clips["zup"].meta["foot_error_max_before_ik_m"] > 0.02
    assert clips["zup"].meta["foot_error_max_m"] < FOOT_TOL


@pytest.mark.parametrize("key", ["cmu", "zup"])
def test_root_height_puts_the_lowest_foot_on_the_floor(body, kin, clips, key):
    clip = clips[key]
    lowest = kin.geom_lowest_z(clip.root_pos, clip.root_quat, clip.joint_pos, tuple(body.feet))
    assert abs(lowest.min()) < 0.01
    assert abs(clip.meta["root_shift_m"]) > 0.02  # the source's own height would have been off


def test_root_follows_the_source_in_our_axes(clips):
    cmu, zup = clips["cmu"], clips["zup"]
    np.testing.assert_allclose(cmu.root_pos[-1, :2] - cmu.root_pos[0, :2], [20 * CMU_SCALE, 0], atol=1e-9)
    np.testing.assert_allclose(zup.root_pos[-1, :2] - zup.root_pos[0, :2], [0.3, -0.05], atol=1e-9)
    yaw = np.deg2rad(-15) / 2  # zup: Zrotation -15 deg about its up axis = ours
    np.testing.assert_allclose(zup.root_quat[-1], [np.cos(yaw), 0, 0, np.sin(yaw)], atol=1e-9)


def test_level_feet_levels_only_feet_on_the_ground():
    pitch = np.deg2rad(20)
    tilt = np.array([[np.cos(pitch), 0, np.sin(pitch)], [0, 1, 0], [-np.sin(pitch), 0, np.cos(pitch)]])
    yaw = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1.0]])  # heading +y
    rot = np.broadcast_to(yaw @ tilt, (1, 2, 3, 3))
    pos = np.array([[[0, 0, 0.0], [0, 0, 0.2]]])  # left on the ground, right 20 cm up
    out = level_feet(pos, rot, contact_height=0.03)
    np.testing.assert_allclose(out[0, 0], yaw, atol=1e-12)
    np.testing.assert_allclose(out[0, 1], yaw @ tilt, atol=1e-12)


# -- bad input --------------------------------------------------------------------------------------------


def _cut_rows(text: str) -> str:
    return "\n".join(text.splitlines()[:-3]) + "\n"


def _drop_value(text: str) -> str:
    lines = text.splitlines()
    row = lines.index("Frame Time: 0.033333") + 5  # frame 4
    lines[row] = lines[row].rsplit(" ", 1)[0]
    return "\n".join(lines) + "\n"


def _nan(text: str) -> str:
    lines = text.splitlines()
    row = lines.index("Frame Time: 0.033333") + 3  # frame 2
    values = lines[row].split()
    values[7] = "nan"  # LeftUpLeg Yrotation
    lines[row] = " ".join(values)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("edit, problem", [
    (_cut_rows, r"MOTION is truncated: Frames: 20 but only 17 rows"),
    (_drop_value, r"frame 4 \(line \d+\) has 83 values, expected 84"),
    (_nan, r"NaN/inf in frame 2, channel 7 \(LeftUpLeg\)"),
    (lambda t: t.replace("Zrotation Yrotation Xrotation", "Zrotation Yrotation Xrotaton", 1),
     r"unknown channel name 'Xrotaton'"),
    (lambda t: t.replace("JOINT LeftLeg\n", "JOINT LeftShin\n"), r"missing from the hierarchy: \['LeftLeg'\]"),
], ids=["truncated", "row-length", "nan", "channel", "mapped-joint"])
def test_bad_input_raises_clip_error_naming_file_and_problem(body, kin, tmp_path, edit, problem):
    path = tmp_path / "broken_clip.bvh"
    path.write_text(edit(CMU.read_text()))
    with pytest.raises(ClipError, match=rf"broken_clip\.bvh: .*{problem}"):
        load_bvh(path, body, kinematics=kin)


def test_missing_file_raises_clip_error(body, tmp_path):
    with pytest.raises(ClipError, match=r"nowhere\.bvh: no such BVH file"):
        load_bvh(tmp_path / "nowhere.bvh", body)
