"""The instruction suite: task families, instructions from templates, goal parameters and success checks.

A :class:`Task` is one instruction in one scene layout: its family (``walk_to``, ``wave_left``, ...), the
object it refers to (if any), the instruction text, and a time limit. Its *goal parameters* are the
privileged quantities S1's goal encoder turns into z (family, and where the target object is relative
to the robot); its *success check* reads only the simulated body and object state.

Templates have paraphrases; a held-out set of paraphrases and of layouts (a disjoint seed range) is kept
for evaluation only (``split="eval"``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from infra.chunks import rotate2d, wrap_angle
from infra.config.schemas import SceneConfig
from s0_locomotion.sim.scene import sample_layout

# family -> (needs an object, time limit s)
FAMILIES: dict[str, tuple[bool, float]] = {
    "walk_to": (True, 14.0), "face": (True, 8.0), "point_at": (True, 9.0),
    "turn_left": (False, 7.0), "turn_right": (False, 7.0), "walk_forward": (False, 8.0),
    "walk_backward": (False, 8.0), "wave_left": (False, 6.0), "wave_right": (False, 6.0),
    "squat": (False, 6.0), "arms_up": (False, 5.0), "stop": (False, 4.0),
}
FAMILY_NAMES = list(FAMILIES)
OUT_OF_SCOPE = "unknown"  # the family of an instruction outside the suite: stop and stand

# {obj} is "the red box". Evaluation uses only HELD_OUT_TEMPLATES, two per family, fixed since the suite's first
# version; training uses TRAIN_TEMPLATES. The first six training templates of each family are the suite's first
# version; the rest were added to give S2 more varied wording (some families without an object use "the" too, so
# that "the" alone does not read as an object-directed task), and none of them shares a content word or a two-word
# phrase with a held-out template of its family that the first six did not already share (checked by
# tests/systems/test_tasks.py).
TRAIN_TEMPLATES: dict[str, list[str]] = {
    "walk_to": ["walk to {obj}", "go to {obj}", "walk over to {obj}", "head to {obj}", "approach {obj}",
                "move to {obj}", "walk towards {obj}", "walk up to {obj}", "go over to {obj}", "get to {obj}",
                "head over to {obj}", "go up to {obj}", "travel to {obj}", "move towards {obj}",
                "walk until you reach {obj}", "get close to {obj}", "proceed to {obj}", "reach {obj}"],
    "face": ["turn to face {obj}", "face {obj}", "look at {obj}", "turn towards {obj}", "orient yourself to {obj}",
             "turn toward {obj}", "face towards {obj}", "face toward {obj}", "turn your body to {obj}",
             "turn so you face {obj}", "spin to face {obj}", "orient towards {obj}", "look towards {obj}",
             "turn and look at {obj}", "square up to {obj}", "aim your body at {obj}", "turn to {obj}",
             "keep your eyes on {obj}"],
    "point_at": ["point at {obj}", "point to {obj}", "show me {obj}", "point towards {obj}",
                 "indicate {obj} with your hand", "point toward {obj}", "point your finger at {obj}",
                 "point out {obj}", "aim your hand at {obj}", "direct your hand at {obj}", "point your hand at {obj}",
                 "reach out and point at {obj}", "extend a hand toward {obj}", "point in the direction of {obj}",
                 "show where {obj} is", "indicate where {obj} is", "identify {obj} by pointing",
                 "hold out a hand toward {obj}"],
    "turn_left": ["turn left", "rotate left", "turn to your left", "spin left", "turn counterclockwise",
                  "make a left turn", "turn your body left", "rotate to your left", "face left", "do a left turn",
                  "take a left turn", "spin to your left", "turn a bit left", "turn leftward",
                  "rotate counterclockwise", "turn anticlockwise", "left turn", "look left",
                  "turn left on the spot"],
    "turn_right": ["turn right", "rotate right", "turn to your right", "spin right", "turn clockwise",
                   "make a right turn", "turn your body right", "rotate to your right", "face right",
                   "do a right turn", "take a right turn", "spin to your right", "turn a bit right", "turn rightward",
                   "rotate clockwise", "right turn", "look right", "turn right on the spot"],
    "walk_forward": ["walk forward", "go forward", "walk ahead", "move forward", "step forward",
                     "go straight ahead", "walk straight", "go ahead", "move ahead", "walk straight ahead",
                     "head forward", "walk on", "keep walking forward", "proceed forward", "go forwards",
                     "walk forwards", "move forwards", "march forward",
                     "walk forward across the room"],
    "walk_backward": ["walk backward", "go backward", "walk backwards", "move back", "step back",
                      "back up", "go backwards", "move backward", "move backwards", "walk back", "back away",
                      "retreat", "step backwards", "back off a little", "go back", "move back a little",
                      "walk back a little", "move away backwards",
                      "walk back across the room"],
    "wave_left": ["wave with your left hand", "wave your left hand", "left hand wave", "wave hello with your left",
                  "give a wave with the left hand", "raise your left hand and wave", "wave using your left hand",
                  "wave the left hand", "wave goodbye with your left hand", "do a left-handed wave",
                  "wave left hand", "lift your left hand and wave", "wave with the left hand",
                  "use your left hand to wave", "wave your left arm", "left-handed wave",
                  "wave hello using your left hand", "give a left hand wave"],
    "wave_right": ["wave with your right hand", "wave your right hand", "right hand wave",
                   "wave hello with your right", "give a wave with the right hand", "raise your right hand and wave",
                   "wave using your right hand", "wave the right hand", "wave goodbye with your right hand",
                   "do a right-handed wave", "wave right hand", "lift your right hand and wave",
                   "wave with the right hand", "use your right hand to wave", "wave your right arm",
                   "right-handed wave", "wave hello using your right hand", "give a right hand wave"],
    "squat": ["squat", "squat down", "do a squat", "crouch down", "bend your knees and squat", "crouch",
              "bend your knees", "drop to a squat", "assume a squat position", "squat all the way", "do a deep squat",
              "crouch on the spot", "squat in place", "bend down", "duck down", "hunker down",
              "bend at the knees", "squat please", "squat on the spot"],
    "arms_up": ["raise both arms", "put your arms up", "lift both arms", "hands up", "raise your hands",
                "arms up", "raise your arms", "lift your arms", "arms overhead", "put your hands up",
                "lift your hands up", "hold your arms up", "stretch your arms up", "hands over your head",
                "throw your arms up", "raise your arms above your head", "both arms up",
                "arms above your head", "raise your arms to the sky"],
    "stop": ["stop", "stand still", "stay where you are", "halt", "don't move", "freeze", "stop moving",
             "stand where you are", "do not move", "remain still", "keep still", "wait here", "be still",
             "stop right there", "stay still", "don't go anywhere", "stop walking", "remain where you are",
             "stay on the spot"],
}
HELD_OUT_TEMPLATES: dict[str, list[str]] = {
    "walk_to": ["go stand next to {obj}", "make your way to {obj}"],
    "face": ["rotate to face {obj}", "turn around to look at {obj}"],
    "point_at": ["use your arm to point at {obj}", "gesture at {obj}"],
    "turn_left": ["pivot to the left", "swivel left"],
    "turn_right": ["pivot to the right", "swivel right"],
    "walk_forward": ["take a few steps forward", "advance"],
    "walk_backward": ["take a few steps back", "reverse a bit"],
    "wave_left": ["say hi with your left hand", "greet with your left hand"],
    "wave_right": ["say hi with your right hand", "greet with your right hand"],
    "squat": ["lower yourself into a squat", "get down low"],
    "arms_up": ["reach up with both arms", "put both hands in the air"],
    "stop": ["hold still", "stay put"],
}
TEMPLATES: dict[str, list[str]] = {f: TRAIN_TEMPLATES[f] + HELD_OUT_TEMPLATES[f] for f in FAMILIES}
EVAL_SEED_OFFSET = 1_000_000  # evaluation layouts come from seeds at and above this


@dataclass(frozen=True)
class Task:
    """One instruction in one layout. ``target`` names a scene object (``red_box``) or is empty."""

    family: str
    instruction: str
    target: str = ""
    time_limit_s: float = 6.0
    layout: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # (n_objects, 3) x, y, yaw


def success_interval(outcomes: list[bool], z: float = 1.96) -> list[float]:
    """Wilson's score interval for a success rate (95 % at z = 1.96): [low, high], rounded to 3 places. 135 of
    168 episodes gives [0.737, 0.857], so a goal of 0.8 cannot tell such a policy from one at 0.78 or 0.83; the
    evaluations print it beside ``success_rate``."""
    n = len(outcomes)
    if n == 0:
        raise ValueError("success_interval: no episodes")
    p = sum(bool(o) for o in outcomes) / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(float(max(0.0, centre - half)), 3), round(float(min(1.0, centre + half)), 3)]


def instructions(family: str, split: str) -> list[str]:
    """Instruction templates of a family: ``train`` (``TRAIN_TEMPLATES``) or ``eval`` (``HELD_OUT_TEMPLATES``)."""
    return TRAIN_TEMPLATES[family] if split == "train" else HELD_OUT_TEMPLATES[family]


def object_phrase(name: str) -> str:
    """``red_box`` -> ``the red box``."""
    return "the " + name.replace("_", " ")


def sample_task(rng: np.random.Generator, scene: SceneConfig, split: str = "train",
                families: list[str] | None = None) -> Task:
    """A random family, instruction paraphrase, layout and (for object tasks) target object."""
    if split not in ("train", "eval"):
        raise ValueError(f"task split must be train or eval, got {split!r}")
    check_families(families)
    family = str(rng.choice(families or FAMILY_NAMES))
    layout = sample_layout(rng, scene, 1)[0]
    needs_object, limit = FAMILIES[family]
    target = ""
    text = str(rng.choice(instructions(family, split)))
    if needs_object:
        target = scene.objects[int(rng.integers(len(scene.objects)))].name
        text = text.format(obj=object_phrase(target))
    return Task(family, text, target, limit, layout)


def check_families(families: list[str] | None) -> None:
    """ValueError naming any family that is not one of the suite's (commands call it before starting work)."""
    unknown = sorted(set(families or ()) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown task families {unknown}; known: {FAMILY_NAMES}")


def family_in_turn(i: int, families: list[str] | None = None) -> str:
    """Episode i's family when the families ([] or None: all) take turns, so each gets an equal share."""
    pool = families or FAMILY_NAMES
    return pool[i % len(pool)]


def task_rng(seed: int, split: str) -> np.random.Generator:
    """Episode seeds: train layouts from [0, EVAL_SEED_OFFSET), evaluation layouts above it (disjoint)."""
    return np.random.default_rng(seed + (EVAL_SEED_OFFSET if split == "eval" else 0))


def task_scene(base: SceneConfig) -> SceneConfig:
    """The task suite's scene: objects ahead, within the head camera's view, 1.5-3 m away."""
    return dataclasses.replace(base, bearing_range_deg=100.0, radius_min=1.5, radius_max=3.0, min_separation=0.8)


# -- goal parameters --------------------------------------------------------------------------------

GOAL_DIM = len(FAMILY_NAMES) + 4


def task_for(instruction: str, layout: np.ndarray, seconds: float) -> Task:
    """The task an instruction names (for the success check only; S2 never sees it): the family whose
    templates match it word for word around the object phrase, else ``unknown``."""
    text = instruction.strip().lower()
    for family, templates in TEMPLATES.items():
        for template in templates:
            if "{obj}" not in template:
                if text == template:
                    return Task(family, instruction, "", seconds, layout)
                continue
            prefix, suffix = template.split("{obj}")
            middle = text[len(prefix):len(text) - len(suffix)]
            if (text.startswith(prefix) and text.endswith(suffix) and len(text) > len(prefix) + len(suffix)
                    and middle.startswith("the ")):
                return Task(family, instruction, middle[4:].replace(" ", "_"), seconds, layout)
    return Task(OUT_OF_SCOPE, instruction, "", seconds, layout)


def run_layout(layout_seed: int, scene: SceneConfig) -> np.ndarray:
    """The object layout of ``humanoid run``'s scene for a layout seed (drawn from the held-out range)."""
    return sample_task(task_rng(layout_seed, "eval"), task_scene(scene), "eval").layout


def pack_goal(family: int | None, target: tuple[float, float, float] | None = None) -> np.ndarray:
    """The goal-parameter layout (GOAL_DIM,) float32: the family's one-hot (none for an unknown family), then
    the target's bearing cos, sin, distance (m) and a has-target flag (zeros without a target)."""
    g = np.zeros(GOAL_DIM, dtype=np.float32)
    if family is not None:
        g[family] = 1.0
    if target is not None:
        g[-4:] = [*target, 1.0]
    return g


def goal_params(task: Task, object_xy: np.ndarray | None, root_xy: np.ndarray, root_yaw: float) -> np.ndarray:
    """Privileged goal parameters (:func:`pack_goal`) of a task: the target's bearing and distance in the
    robot's heading frame."""
    target = None
    if object_xy is not None:
        rel = rotate2d(-root_yaw, np.asarray(object_xy, float) - root_xy)
        bearing = np.arctan2(rel[1], rel[0])
        target = (np.cos(bearing), np.sin(bearing), np.linalg.norm(rel))
    return pack_goal(FAMILY_NAMES.index(task.family) if task.family in FAMILIES else None, target)


# -- success checks ---------------------------------------------------------------------------------

@dataclass
class BodyState:
    """What the success checks read, one world, world frame, SI units."""

    time: float
    root_xy: np.ndarray  # (2,)
    root_height: float
    yaw: float
    bodies: dict[str, np.ndarray]  # name -> (3,) position of the tracked bodies
    objects: dict[str, np.ndarray]  # name -> (2,) planar position of the scene objects
    standing_height: float


class SuccessCheck:
    """Accumulates the body state over an episode and says whether the task is done.

    Conditions (checked every control step): walk_to, planar distance to the object < ``reach_m``;
    face, |bearing| < 20 deg; point_at, a hand extended (>0.4 m from its shoulder, above the pelvis) along
    a direction within 25 deg of the object; turn_*, accumulated yaw >= 60 deg that way; walk_*, 1.0 m
    travelled along (against) the start heading; wave_*, the hand above the head and its sideways speed
    changing sign at least twice; squat, root below 80 % of standing; arms_up, both hands 0.1 m above the
    head; stop, still (<0.25 m from the start) and upright for the whole time limit. Gestures and poses
    must hold for ``hold_s``.
    """

    reach_m = 1.0
    hold_s = 0.4

    def __init__(self, task: Task) -> None:
        self.task = task
        self.start: BodyState | None = None
        self.prev: BodyState | None = None
        self.turned = 0.0
        self.held = 0.0
        self.sign_changes = 0
        self.last_sign = 0.0
        self.success = False
        self.success_time: float | None = None

    def update(self, s: BodyState) -> bool:
        if self.start is None:
            self.start = self.prev = s
        dt = s.time - self.prev.time
        self.turned += float(wrap_angle(s.yaw - self.prev.yaw))
        ok = self._condition(s)
        self.held = self.held + dt if ok else 0.0
        self.prev = s
        need = 0.0 if self.task.family in ("walk_to", "turn_left", "turn_right", "walk_forward", "walk_backward") \
            else self.hold_s
        if self.task.family == "stop":
            need = self.task.time_limit_s - 0.1
        if not self.success and ok and self.held >= need:
            self.success, self.success_time = True, s.time
        return self.success

    def _condition(self, s: BodyState) -> bool:
        f, start = self.task.family, self.start
        fallen = s.root_height < 0.6 * s.standing_height
        if fallen:
            return False
        if f in ("walk_to", "face", "point_at"):
            rel = rotate2d(-s.yaw, s.objects[self.task.target] - s.root_xy)
            if f == "walk_to":
                return float(np.linalg.norm(rel)) < self.reach_m
            if f == "face":
                return abs(np.arctan2(rel[1], rel[0])) < np.deg2rad(20)
            return any(self._points_at(s, side) for side in ("left", "right"))
        if f in ("turn_left", "turn_right"):
            return self.turned * (1 if f == "turn_left" else -1) >= np.deg2rad(60)
        if f in ("walk_forward", "walk_backward"):
            along = rotate2d(-start.yaw, s.root_xy - start.root_xy)[0]
            return along * (1 if f == "walk_forward" else -1) >= 1.0
        if f in ("wave_left", "wave_right"):
            side = f.split("_")[1]
            hand = s.bodies[f"{side}_hand"]
            prev_hand = self.prev.bodies[f"{side}_hand"]
            lateral = rotate2d(-s.yaw, (hand - prev_hand)[:2])[1]
            up = hand[2] > s.bodies["head"][2] - 0.05
            if up and abs(lateral) > 1e-3:
                sign = np.sign(lateral)
                self.sign_changes += int(self.last_sign != 0 and sign != self.last_sign)
                self.last_sign = sign
            return up and self.sign_changes >= 2
        if f == "squat":
            return s.root_height < 0.8 * s.standing_height
        if f == "arms_up":
            return all(s.bodies[f"{side}_hand"][2] > s.bodies["head"][2] + 0.1 for side in ("left", "right"))
        if f == "stop":
            return float(np.linalg.norm(s.root_xy - start.root_xy)) < 0.25
        return False

    def _points_at(self, s: BodyState, side: str) -> bool:
        shoulder, hand = s.bodies[f"{side}_upper_arm"], s.bodies[f"{side}_hand"]
        arm = hand - shoulder
        if np.linalg.norm(arm) < 0.4 or hand[2] < s.bodies["pelvis"][2]:
            return False
        to_obj = s.objects[self.task.target] - shoulder[:2]
        cos = float(arm[:2] @ to_obj) / (np.linalg.norm(arm[:2]) * np.linalg.norm(to_obj) + 1e-9)
        return cos > np.cos(np.deg2rad(25))
