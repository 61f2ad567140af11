from pathlib import Path

import mujoco
import numpy as np
import pytest
import torch

from infra.config import load_config
from infra.config.schemas import BodyConfig, BodyInfoConfig, SceneConfig, SimConfig
from s0_locomotion.body import Body, BodyError
from s0_locomotion.sim.mujoco_backend import MujocoBackend
from systems.rollout import tilt_deg


def test_dof_count_and_groups(body):
    assert body.n_dof == 65
    sizes = {g: len(idx) for g, idx in body.groups.items()}
    assert sizes == {"waist": 3, "neck": 2, "left_leg": 6, "right_leg": 6, "left_arm": 7, "right_arm": 7,
                     "left_hand": 17, "right_hand": 17}
    assert sum(sizes.values()) == 65
    model = body.spec().compile()
    hinges = [j for j in range(model.njnt) if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE]
    assert len(hinges) == 65 and model.nu == 65
    assert sum(model.jnt_type == mujoco.mjtJoint.mjJNT_FREE) == 1
    for side in ("left", "right"):  # four fingers and an opposable thumb on each hand
        names = [body.joints[i].name for i in body.groups[f"{side}_hand"]]
        for finger in ("index", "middle", "ring", "little", "thumb"):
            assert any(f"{side}_{finger}_" in n for n in names), finger
        assert f"{side}_thumb_cmc_opposition" in names


def test_limits_gains_and_anthropometry_are_sane(body):
    lo, hi = body.ranges.T
    assert np.all(lo < hi) and np.all(hi - lo < 2 * np.pi)
    assert np.all((body.default_pose >= lo) & (body.default_pose <= hi))
    assert np.all(body.kp > 0) and np.all(body.kd > 0) and np.all(body.torque_limit > 0)
    legs = body.groups["left_leg"] + body.groups["right_leg"]
    hands = body.groups["left_hand"] + body.groups["right_hand"]
    assert body.kp[legs].min() > 10 * body.kp[hands].max()  # legs carry the body, fingers weigh grams
    info = body.info()
    assert 55 <= info["mass_kg"] <= 75 and 1.6 <= info["height_m"] <= 1.8
    model = body.spec().compile()
    assert np.all(model.dof_armature[6:72] > 0) and np.all(model.dof_damping[6:72] > 0)
    for name in ("imu_gyro", "imu_acc", "imu_quat", "left_foot_touch", "right_foot_touch"):
        assert name in info["sensors"]
    assert {model.camera(i).name for i in range(model.ncam)} == {"head_cam", "track_cam"}


def test_body_info_json_fields(body):
    info = body.info()
    assert info["n_dof"] == 65 and len(info["joints"]) == 65
    assert set(info["joints"][0]) >= {"name", "group", "range", "kp", "kd", "torque_limit"}


def test_stands_ten_seconds_under_its_own_pd(body):
    backend = MujocoBackend(body, SimConfig(num_envs=1), SceneConfig(objects=[]))
    targets = torch.from_numpy(body.default_pose)[None]
    obs = backend.reset()
    heights, tilts = [], []
    for _ in range(int(10.0 / backend.ctrl_dt)):
        obs = backend.step(targets)
        heights.append(float(obs.root_pos[0, 2]))
        tilts.append(float(tilt_deg(obs.root_quat)[0]))
    backend.close()
    assert float(obs.time[0]) == pytest.approx(10.0)
    assert min(heights) > 0.9 * body.root_height
    assert max(tilts) < 10.0
    assert float(obs.foot_contact.sum()) == pytest.approx(70.15 * 9.81, rel=0.1)  # weight on the soles


def test_missing_and_invalid_mjcf_name_the_path(tmp_path: Path):
    missing = tmp_path / "nope.xml"
    with pytest.raises(BodyError, match=str(missing)):
        Body(BodyConfig(mjcf=str(missing), groups={"all": [".*"]}))
    bad = tmp_path / "bad.xml"
    bad.write_text("<mujoco><worldbody><body name='a'><joint type='hinge'/></body></worldbody>")
    with pytest.raises(BodyError, match=f"cannot parse MJCF file '{bad}'"):
        Body(BodyConfig(mjcf=str(bad), groups={"all": [".*"]}))


def test_menagerie_without_root_explains_offline(monkeypatch):
    monkeypatch.delenv("MENAGERIE_ROOT", raising=False)
    with pytest.raises(BodyError, match="MENAGERIE_ROOT.*downloads its robots at first use, which fails offline"):
        Body(BodyConfig(mjcf="menagerie:unitree_g1/g1.xml", groups={"all": [".*"]}))


def test_loads_unitree_h1_with_group_mapping(shared_dir):
    cfg = load_config(BodyInfoConfig, [f"body.mjcf={shared_dir / 'robots/unitree_h1/h1.xml'}"], "unitree_h1").body
    h1 = Body(cfg)
    assert h1.n_dof == 19
    assert {g: len(i) for g, i in h1.groups.items()} == {"left_leg": 5, "right_leg": 5, "waist": 1,
                                                          "left_arm": 4, "right_arm": 4}
    assert h1.joints[4].name == "left_ankle_joint" and h1.joints[4].torque_limit == 40.0
    assert 0.9 < h1.root_height < 1.2
    backend = MujocoBackend(h1, SimConfig(num_envs=2), SceneConfig())
    obs = backend.step(torch.from_numpy(h1.default_pose).expand(2, -1))  # feet start on the floor
    assert obs.joint_pos.shape == (2, 19) and float(obs.foot_contact.sum()) > 0
    image = backend.render(np.array([0]), "head_cam", 48, 64)
    assert image.shape == (1, 48, 64, 3) and image.std() > 5
    backend.close()


def test_unmapped_joint_is_named(shared_dir):
    cfg = load_config(BodyInfoConfig, [f"body.mjcf={shared_dir / 'robots/unitree_h1/h1.xml'}"], "unitree_h1").body
    cfg.groups.pop("waist")
    with pytest.raises(BodyError, match="joint 'torso_joint' .* matches no group"):
        Body(cfg)
