"""Scenes: the body on a floor with coloured objects around it, compiled into one MuJoCo model.

Objects are free bodies named ``<color>_<shape>`` (``red_box``), so a layout is part of each world's
state: N worlds of one model can hold N different layouts, drawn by :func:`sample_layout`.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from infra.config.schemas import ObjectConfig, SceneConfig, SimConfig
from s0_locomotion.body import Body

PALETTE: dict[str, tuple[float, float, float, float]] = {
    "red": (0.85, 0.12, 0.12, 1.0),
    "green": (0.15, 0.7, 0.2, 1.0),
    "blue": (0.15, 0.3, 0.85, 1.0),
    "yellow": (0.95, 0.85, 0.1, 1.0),
    "orange": (0.95, 0.5, 0.1, 1.0),
    "purple": (0.55, 0.2, 0.75, 1.0),
    "white": (0.92, 0.92, 0.92, 1.0),
    "black": (0.08, 0.08, 0.08, 1.0),
}
FLOOR_HALF_M = 50.0  # the rendered floor's half-size; collisions treat the plane as infinite
_INTEGRATORS = {
    "implicitfast": mujoco.mjtIntegrator.mjINT_IMPLICITFAST,
    "implicit": mujoco.mjtIntegrator.mjINT_IMPLICIT,
    "euler": mujoco.mjtIntegrator.mjINT_EULER,
    "rk4": mujoco.mjtIntegrator.mjINT_RK4,
}


def sample_layout(rng: np.random.Generator, cfg: SceneConfig, num_envs: int) -> np.ndarray:
    """Draw object layouts around a robot standing at the origin facing +x.

    Returns:
        (num_envs, n_objects, 3) array of [x (m), y (m), yaw (rad)] in the world frame. Objects lie at
        distance [radius_min, radius_max], bearing within ±bearing_range/2 and at least
        ``min_separation`` apart (rejection sampling, up to 1000 tries per object).
    """
    n = len(cfg.objects)
    out = np.zeros((num_envs, n, 3))
    half = np.deg2rad(cfg.bearing_range_deg) / 2
    for env in range(num_envs):
        placed: list[np.ndarray] = []
        for i in range(n):
            for _ in range(1000):
                r = rng.uniform(cfg.radius_min, cfg.radius_max)
                bearing = rng.uniform(-half, half)
                xy = np.array([r * np.cos(bearing), r * np.sin(bearing)])
                if all(np.linalg.norm(xy - p) >= cfg.min_separation for p in placed):
                    break
            else:
                raise ValueError(f"scene: cannot place {n} objects {cfg.min_separation} m apart within "
                                 f"radius [{cfg.radius_min}, {cfg.radius_max}]; widen the ring or separate less")
            placed.append(xy)
            out[env, i] = [xy[0], xy[1], rng.uniform(-np.pi, np.pi)]
    return out


def _add_object(world, obj: ObjectConfig) -> None:
    if obj.color not in PALETTE:
        raise ValueError(f"scene object colour {obj.color!r} unknown; palette: {', '.join(PALETTE)}")
    half_height = obj.size if obj.shape == "sphere" else obj.height / 2
    body = world.add_body(name=obj.name, pos=[0, 0, half_height])
    body.add_freejoint(name=f"{obj.name}_root")
    kind = getattr(mujoco.mjtGeom, f"mjGEOM_{obj.shape.upper()}")
    size = {"box": [obj.size, obj.size, half_height], "sphere": [obj.size, 0, 0],
            "cylinder": [obj.size, half_height, 0]}[obj.shape]
    body.add_geom(name=obj.name, type=kind, size=size, mass=obj.mass, rgba=list(PALETTE[obj.color]),
                  contype=1, conaffinity=1)


def build_scene_spec(body: Body, scene: SceneConfig, sim: SimConfig, offscreen: tuple[int, int] = (640, 480)):
    """The body's spec plus floor, lights, sky and objects, with the simulation options set."""
    spec = body.spec()
    spec.option.timestep = sim.sim_dt
    spec.option.integrator = _INTEGRATORS[sim.integrator]
    spec.visual.global_.offwidth = max(offscreen[0], 640)
    spec.visual.global_.offheight = max(offscreen[1], 480)
    spec.visual.quality.shadowsize = 4096
    spec.visual.map.shadowscale, spec.visual.map.shadowclip = 0.3, 3.0  # no shadow acne on the floor
    spec.add_texture(name="grid", type=mujoco.mjtTexture.mjTEXTURE_2D, builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
                     rgb1=[0.42, 0.45, 0.48], rgb2=[0.32, 0.35, 0.38], width=512, height=512)
    spec.add_material(name="grid", textures=["", "grid"], texrepeat=[1, 1], texuniform=True, reflectance=0.05)
    spec.add_texture(name="sky", type=mujoco.mjtTexture.mjTEXTURE_SKYBOX, builtin=mujoco.mjtBuiltin.mjBUILTIN_GRADIENT,
                     rgb1=[0.55, 0.7, 0.9], rgb2=[0.1, 0.15, 0.25], width=256, height=256)
    world = spec.worldbody
    # A finite plane for rendering only (MuJoCo collides with planes as infinite either way). An infinite
    # plane is drawn as the largest grid MuJoCo allows, whatever its spacing: 3.7 of the 4.6 ms of a 64x64
    # head-camera frame in software GL. 100 x 100 m in 1 m cells renders it in 1.3 ms, with the same
    # checker (the texture is in world units) and 0.3 of 255 mean difference in the head camera's image.
    world.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[FLOOR_HALF_M, FLOOR_HALF_M, 1.0],
                   material="grid", friction=[scene.floor_friction, 0.005, 0.0001], contype=1, conaffinity=1)
    world.add_light(name="sun", pos=[0, 0, 5], dir=[0.2, 0.3, -1], diffuse=[0.7, 0.7, 0.7], castshadow=True,
                    type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL)
    world.add_light(name="fill", pos=[0, 0, 4], dir=[0, 0, -1], diffuse=[0.3, 0.3, 0.3], castshadow=False,
                    mode=mujoco.mjtCamLight.mjCAMLIGHT_TRACKCOM)
    for obj in scene.objects:
        _add_object(world, obj)
    return spec


@dataclass
class Scene:
    """A compiled scene: model, body and where each object's pose lives in qpos."""

    body: Body
    cfg: SceneConfig
    model: mujoco.MjModel
    object_qpos_adr: np.ndarray  # (n_objects,) qpos address of each object's free joint

    @classmethod
    def build(cls, body: Body, scene: SceneConfig, sim: SimConfig, offscreen: tuple[int, int] = (640, 480)):
        model = build_scene_spec(body, scene, sim, offscreen).compile()
        adr = np.array([model.jnt_qposadr[model.joint(f"{o.name}_root").id] for o in scene.objects], dtype=int)
        return cls(body, scene, model, adr)

    @property
    def object_names(self) -> list[str]:
        return [o.name for o in self.cfg.objects]

    def qpos0(self, layout: np.ndarray | None = None) -> np.ndarray:
        """(nq,) standing robot at the origin and objects at ``layout`` ((n_objects, 3) x, y, yaw)."""
        qpos = self.body.qpos0(self.model)
        if layout is not None:
            set_layout(qpos[None], self.object_qpos_adr, layout[None])
        return qpos


def set_layout(qpos: np.ndarray, adr: np.ndarray, layout: np.ndarray) -> None:
    """Write layouts into qpos in place. qpos: (N, nq); adr: (n_objects,); layout: (N, n_objects, 3)."""
    cols = adr[:, None] + np.arange(7)[None, :]  # (n_objects, 7): x y z qw qx qy qz
    yaw = layout[..., 2]
    qpos[:, cols[:, 0]] = layout[..., 0]
    qpos[:, cols[:, 1]] = layout[..., 1]
    qpos[:, cols[:, 3]] = np.cos(yaw / 2)
    qpos[:, cols[:, 4]] = 0.0
    qpos[:, cols[:, 5]] = 0.0
    qpos[:, cols[:, 6]] = np.sin(yaw / 2)
