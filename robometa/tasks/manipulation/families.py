"""Manipulation task families: ``reach``, ``push``, ``pick-place`` and ``manip-ml``.

A task is an object (shape, size, mass, friction, colour), its initial position and
yaw on the table, and a goal. Every family shares one scene (``assets/arm``) and
one observation, so the multi-task family ``manip-ml`` can mix task kinds in a
batch:

====================  =====================================================
observation (20)      TCP position (3), finger gap (1), object position (3),
                      object quaternion (4), object minus TCP (3), TCP
                      velocity (3), object linear velocity (3); the goal (3)
                      is appended only with ``observe_goal=True`` (by default
                      it is hidden, as in Meta-World's ML benchmarks, so the
                      task must be inferred from rewards)
action (4)            TCP velocity target xyz in [-1, 1] m/s (at most 1 cm per
                      0.01 s control step) and gripper (+1 closes, -1 opens)
====================  =====================================================

Success criteria (distance thresholds as in Meta-World v2: reach 0.05 m, push
0.05 m, pick-place 0.07 m):

- reach: ``|tcp - goal| < 0.05``;
- push: ``|object_xy - goal_xy| < 0.05`` (the goal lies on the table, z = 0);
- pick-place: ``|object - goal| < 0.07``, goals 0.12 to 0.28 m above the table,
  so a resting object (centre at most 0.035 m high) can never count.

Success is evaluated per step; an episode succeeds if any step does (Meta-World's
evaluation protocol). Rewards are dense sums of named terms, in metres:

- ``reach``: minus the distance from the TCP to its target (the goal for reach,
  the object for push and pick-place); with ``reach_reward="squared"``, minus its
  square over ``SQUARED_REACH_REF`` (equal at 0.1 m), whose gradient grows with the
  distance (the reward of the MAML paper's 2D navigation is a negative squared
  distance, Finn et al., 2017, section 5.3);
- ``place``: minus ``PLACE_WEIGHT`` times the object's distance to the goal (xy for
  push, 3D for pick-place);
- ``lift`` (pick-place): ``LIFT_WEIGHT`` times the object's height above its rest
  height, capped at the goal's;
- ``success``: ``SUCCESS_BONUS`` on steps where the success criterion holds.

Splits: the single-kind families hold out object *shapes* (train: box, cylinder,
sphere; test: capsule, ellipsoid), *masses* (train 0.05-0.3 kg, test 0.3-0.5 kg)
and *goals* (test goals have x in [-0.125, -0.075] u [0.075, 0.125] m, which train
goals never do), in the style of Meta-World ML1. ``manip-ml`` holds out a task kind
in the style of ML10: it trains on reach and push and tests on pick-place, with
objects and goals from the full ranges. The val split is drawn as the train split,
on a seed stream of its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import mujoco
import numpy as np

from robometa.errors import RobometaError, choice_error
from robometa.tasks.base import Marker, Task, TaskFamily, check_number, split_region
from robometa.tasks.manipulation import robot
from robometa.tasks.manipulation.objects import SHAPES, ObjectSpec, add_object, sample_object

KINDS = ("reach", "push", "pick-place")

# Where things may be (m). Goal z ranges per kind; a push goal lies on the table.
OBJECT_X = (-0.25, 0.25)
OBJECT_Y = (0.35, 0.75)
GOAL_X = (-0.25, 0.25)
GOAL_Y = {"reach": (0.3, 0.75), "push": (0.35, 0.75), "pick-place": (0.35, 0.75)}
GOAL_Z = {"reach": (0.05, 0.3), "push": (0.0, 0.0), "pick-place": (0.12, 0.28)}
# Sampling regions (inside the valid ones, leaving room to move around objects).
SAMPLE_OBJECT_X = (-0.15, 0.15)
SAMPLE_OBJECT_Y = (0.45, 0.65)
MIN_GOAL_DISTANCE = {"reach": 0.15, "push": 0.12, "pick-place": 0.15}  # from the start (m)
REACH_GOAL_CLEARANCE = 0.1  # m, horizontal distance of a sampled reach goal from the object

SUCCESS_THRESHOLD = {"reach": 0.05, "push": 0.05, "pick-place": 0.07}  # m
_THRESHOLDS = np.array([SUCCESS_THRESHOLD[k] for k in KINDS])  # indexed by params[:, 0]
PLACE_WEIGHT = 2.0
LIFT_WEIGHT = 2.0
SUCCESS_BONUS = 1.0
SQUARED_REACH_REF = 0.1  # m: reach_reward="squared" gives -d**2 / 0.1, which is -d at d = 0.1 m
REACH_REWARDS = ("distance", "squared")

OBS_DIM = 20
TERMS = {"reach": ("reach", "success"), "push": ("reach", "place", "success")}
TERMS["pick-place"] = ("reach", "lift", "place", "success")


# --------------------------------------------------------------------------- task


@dataclass(frozen=True)
class ManipTask(Task):
    """One manipulation task.

    Attributes:
        kind: ``reach``, ``push`` or ``pick-place``.
        shape, size, mass, friction, rgb: the object (see :class:`ObjectSpec`).
        object_xy: initial object position on the table (m).
        object_yaw: initial rotation about the vertical (rad, in [-pi, pi]).
        goal: target position (m): of the TCP (reach) or of the object's centre.
    """

    kind: str
    shape: str
    size: tuple[float, ...]
    mass: float
    friction: float
    rgb: tuple[float, float, float]
    object_xy: tuple[float, float]
    object_yaw: float
    goal: tuple[float, float, float]

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise choice_error("manipulation task kind", self.kind, KINDS)
        obj = ObjectSpec(self.shape, self.size, self.mass, self.friction, self.rgb)
        for f in ("size", "mass", "friction", "rgb"):
            object.__setattr__(self, f, getattr(obj, f))
        xy = _vector("object_xy", self.object_xy, 2)
        xy = (check_number("object x (m)", xy[0], *OBJECT_X), check_number("object y (m)", xy[1], *OBJECT_Y))
        object.__setattr__(self, "object_xy", xy)
        object.__setattr__(
            self, "object_yaw", check_number("object_yaw (rad)", self.object_yaw, -math.pi, math.pi)
        )
        g = _vector("goal", self.goal, 3)
        k = self.kind
        goal = (
            check_number(f"{k} goal x (m)", g[0], *GOAL_X),
            check_number(f"{k} goal y (m)", g[1], *GOAL_Y[k]),
            check_number(f"{k} goal z (m)", g[2], *GOAL_Z[k]),
        )
        object.__setattr__(self, "goal", goal)

    @property
    def object(self) -> ObjectSpec:
        return ObjectSpec(self.shape, self.size, self.mass, self.friction, self.rgb)


def _vector(name: str, value, n: int) -> tuple[float, ...]:
    if isinstance(value, (int, float, str)) or len(value) != n:
        raise RobometaError(f"{name} must have {n} numbers, got {value!r}")
    return tuple(value)


# ------------------------------------------------------------------------- family


@dataclass(frozen=True)
class SplitSpec:
    """What one split samples.

    Attributes:
        kinds: task kinds, drawn uniformly.
        shapes: object shapes, drawn uniformly.
        mass_range: object mass range (kg).
        friction_range: object sliding-friction range.
        goal_x_bands: if set, goal x is drawn from these bands (m) only.
        exclude_goal_x_bands: goal x never falls in these bands (m).
    """

    kinds: tuple[str, ...]
    shapes: tuple[str, ...] = SHAPES
    mass_range: tuple[float, float] = (0.05, 0.5)
    friction_range: tuple[float, float] = (0.4, 0.8)
    goal_x_bands: tuple[tuple[float, float], ...] | None = None
    exclude_goal_x_bands: tuple[tuple[float, float], ...] = ()

    def contains(self, task: ManipTask) -> bool:
        """Whether this split could draw ``task``: its kind, object and goal x are in range."""
        x = task.goal[0]
        in_bands = self.goal_x_bands is None or any(lo <= x <= hi for lo, hi in self.goal_x_bands)
        return (
            task.kind in self.kinds
            and task.shape in self.shapes
            and self.mass_range[0] <= task.mass <= self.mass_range[1]
            and self.friction_range[0] <= task.friction <= self.friction_range[1]
            and in_bands
            and not any(lo <= x <= hi for lo, hi in self.exclude_goal_x_bands)
        )


class ManipFamily(TaskFamily):
    """The table-top arm's shared model, state, observation, reward and success.

    Args:
        observe_goal: append the goal to the observation (hidden by default).
        reset_noise_scale: half-width (m) of the uniform noise on the TCP's
            start position around :data:`robot.HOME`.
        reach_reward: the ``reach`` term: ``distance`` (minus the TCP's distance to
            its target, m) or ``squared`` (minus its square over
            :data:`SQUARED_REACH_REF`).

    Raises:
        RobometaError: an option out of its range, naming the valid values.
    """

    task_cls = ManipTask
    frame_skip = 5  # 0.002 s physics steps -> 0.01 s control steps
    horizon = 200
    has_success = True
    has_expert = True  # robometa.tasks.manipulation.experts
    n_train = 50
    n_val = 20
    n_test = 20
    splits: ClassVar[dict[str, SplitSpec]]  # by region: "train" (train and val splits) and "test"

    def __init__(
        self, observe_goal: bool = False, reset_noise_scale: float = 0.01, reach_reward: str = "distance"
    ):
        super().__init__()
        if not isinstance(observe_goal, bool):
            raise RobometaError(f"observe_goal must be true or false, got {observe_goal!r}")
        if reach_reward not in REACH_REWARDS:
            raise choice_error("reach_reward", reach_reward, REACH_REWARDS)
        self.observe_goal = observe_goal
        self.reach_reward = reach_reward
        self.reset_noise_scale = check_number("reset_noise_scale", reset_noise_scale, 0.0, 0.05)
        self._addr: robot.Addresses | None = None

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(k for s in self.splits.values() for k in s.kinds))

    @property
    def term_names(self) -> tuple[str, ...]:
        names: dict[str, None] = {}
        for k in self.kinds:
            names.update(dict.fromkeys(TERMS[k]))
        return tuple(names)

    # ---- task distribution --------------------------------------------------
    def sample_tasks(self, n, rng, split="train"):
        spec = self.splits[split if split in self.axis_splits else split_region(split)]
        return [self._sample_task(rng, spec) for _ in range(n)]

    def expert_action(self, state: np.ndarray, params: np.ndarray) -> np.ndarray:
        from robometa.tasks.manipulation.experts import expert_action  # it builds on this module

        return expert_action(self, state, params)

    def _in_training_region(self, task: ManipTask) -> bool:
        return self.splits["train"].contains(task)

    def _in_axis_split(self, task: ManipTask, split: str) -> bool:
        return self.splits[split].contains(task)

    def _sample_task(self, rng: np.random.Generator, spec: SplitSpec) -> ManipTask:
        kind = spec.kinds[int(rng.integers(len(spec.kinds)))]
        obj = sample_object(rng, spec.shapes, spec.mass_range, spec.friction_range)
        xy = np.array([rng.uniform(*SAMPLE_OBJECT_X), rng.uniform(*SAMPLE_OBJECT_Y)])
        yaw = float(rng.uniform(-math.pi, math.pi))
        start = robot.HOME if kind == "reach" else np.array([*xy, obj.half_height])
        while True:  # rejection: goal far enough from the start and in the split's x region
            goal = np.array([rng.uniform(*GOAL_X), rng.uniform(*GOAL_Y[kind]), rng.uniform(*GOAL_Z[kind])])
            if spec.goal_x_bands is not None:
                lo, hi = spec.goal_x_bands[int(rng.integers(len(spec.goal_x_bands)))]
                goal[0] = rng.uniform(lo, hi)
            if any(lo <= goal[0] <= hi for lo, hi in spec.exclude_goal_x_bands):
                continue
            d = goal - start
            if kind == "push":
                d = d[:2]
            # A reach goal keeps clear of the object, which would be in the way.
            clear = kind != "reach" or np.linalg.norm(goal[:2] - xy) >= REACH_GOAL_CLEARANCE
            if clear and np.linalg.norm(d) >= MIN_GOAL_DISTANCE[kind]:
                break
        return ManipTask(
            kind=kind,
            shape=obj.shape,
            size=obj.size,
            mass=obj.mass,
            friction=obj.friction,
            rgb=obj.rgb,
            object_xy=(float(xy[0]), float(xy[1])),
            object_yaw=yaw,
            goal=tuple(float(v) for v in goal),
        )

    def task_params(self, tasks: Sequence[Task]) -> np.ndarray:
        """``(B, 7)``: kind index, goal xyz (m), object half-height (m), xy radius (m), mass (kg)."""
        rows = []
        for t in tasks:
            o = t.object
            rows.append([KINDS.index(t.kind), *t.goal, o.half_height, o.radius_xy, o.mass])
        return np.asarray(rows, dtype=np.float64).reshape(-1, 7)

    # ---- models -------------------------------------------------------------
    def model_key(self, task: Task) -> object:
        if task.kind not in self.kinds:
            raise choice_error(f"task kind for family {self.name}", task.kind, self.kinds)
        return task.object  # tasks that differ only in start or goal share a model

    def build_model(self, task: Task) -> mujoco.MjModel:
        spec = robot.scene_spec()
        add_object(spec, task.object)
        return spec.compile()

    def markers(self, task: Task, state: np.ndarray) -> list[Marker]:
        """The goal, drawn as a translucent sphere whose radius is the success threshold."""
        rgba = (0.1, 0.85, 0.3, 0.35)
        return [Marker("sphere", task.goal, (SUCCESS_THRESHOLD[task.kind],), rgba)]

    @property
    def addr(self) -> robot.Addresses:
        if self._addr is None:
            self._addr = robot.Addresses.of(self.model(self.default_task()))
        return self._addr

    # ---- state --------------------------------------------------------------
    def initial_state(self, model, task, rng):
        lay, a = self.layout, self.addr
        s = self.reset_noise_scale
        tcp = robot.HOME + rng.uniform(-s, s, size=3)
        qpos = model.qpos0.copy()
        qpos[a.tcp_qpos] = tcp
        qpos[a.arm_qpos] = robot.arm_ik(tcp)
        qpos[a.finger_qpos] = robot.MAX_GAP / 2
        o = a.obj_qpos
        # Exactly at rest height: the object touches the table without penetrating it.
        qpos[o : o + 3] = (*task.object_xy, task.object.half_height)
        qpos[o + 3 : o + 7] = (math.cos(task.object_yaw / 2), 0.0, 0.0, math.sin(task.object_yaw / 2))
        state = np.zeros(lay.nstate)
        state[lay.qpos] = qpos
        state[lay.act] = tcp  # the servo targets start where the TCP is
        return state

    def parts(self, state: np.ndarray) -> dict[str, np.ndarray]:
        """Named views of a ``(B, nstate)`` state batch: ``tcp (B,3)``, ``gap (B,)``, ``gap_vel (B,)``,
        ``obj (B,3)``, ``quat (B,4)``, ``tcp_vel (B,3)``, ``obj_vel (B,3)`` (m, m/s)."""
        lay, a = self.layout, self.addr
        qpos, qvel = state[:, lay.qpos], state[:, lay.qvel]
        o, v = a.obj_qpos, a.obj_qvel
        return {
            "tcp": qpos[:, a.tcp_qpos],
            "gap": qpos[:, a.finger_qpos].sum(axis=1),
            "gap_vel": qvel[:, a.finger_qvel].sum(axis=1),
            "obj": qpos[:, o : o + 3],
            "quat": qpos[:, o + 3 : o + 7],
            "tcp_vel": qvel[:, a.tcp_qvel],
            "obj_vel": qvel[:, v : v + 3],
        }

    @property
    def obs_dim(self) -> int:
        return OBS_DIM + (3 if self.observe_goal else 0)

    def observe(self, state, sensordata, params):
        p = self.parts(state)
        cols = [
            p["tcp"],
            p["gap"][:, None],
            p["obj"],
            p["quat"],
            p["obj"] - p["tcp"],
            p["tcp_vel"],
            p["obj_vel"],
        ]
        if self.observe_goal:
            cols.append(params[:, 1:4])
        return np.concatenate(cols, axis=1)

    # ---- reward and success -------------------------------------------------
    def _distances(self, state: np.ndarray, params: np.ndarray) -> dict[str, np.ndarray]:
        """``reach``, ``place``, ``target`` distances (m) and the object's ``height`` above
        its rest height (m), each ``(B,)``."""
        lay, a = self.layout, self.addr
        qpos = state[:, lay.qpos]
        tcp, obj = qpos[:, a.tcp_qpos], qpos[:, a.obj_qpos : a.obj_qpos + 3]
        kind, goal = params[:, 0], params[:, 1:4]
        is_reach, is_push = kind == 0, kind == 1
        to_goal_3d = np.linalg.norm(obj - goal, axis=1)
        to_goal_xy = np.linalg.norm(obj[:, :2] - goal[:, :2], axis=1)
        tcp_goal = np.linalg.norm(tcp - goal, axis=1)
        tcp_obj = np.linalg.norm(tcp - obj, axis=1)
        place = np.where(is_push, to_goal_xy, to_goal_3d)
        return {
            "reach": np.where(is_reach, tcp_goal, tcp_obj),
            "place": place,
            "target": np.where(is_reach, tcp_goal, place),
            "height": obj[:, 2] - params[:, 4],
        }

    @staticmethod
    def _success(d: dict[str, np.ndarray], params: np.ndarray) -> np.ndarray:
        return d["target"] < _THRESHOLDS[params[:, 0].astype(int)]

    def _terms(
        self, d: dict[str, np.ndarray], params: np.ndarray, success: np.ndarray
    ) -> dict[str, np.ndarray]:
        kind = params[:, 0]
        lift_cap = np.maximum(params[:, 3] - params[:, 4], 0.0)
        terms = {
            "reach": -d["reach"]
            if self.reach_reward == "distance"
            else -(d["reach"] ** 2) / SQUARED_REACH_REF,
            "lift": np.where(kind == 2, LIFT_WEIGHT * np.clip(d["height"], 0.0, lift_cap), 0.0),
            "place": np.where(kind == 0, 0.0, -PLACE_WEIGHT * d["place"]),
            "success": SUCCESS_BONUS * success,
        }
        return {k: terms[k] for k in self.term_names}

    @staticmethod
    def _metrics(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"goal_distance": d["target"], "object_height": d["height"]}

    def success(self, state, sensordata, params):
        return self._success(self._distances(state, params), params)

    def reward_terms(self, prev_state, state, sensordata, action, params):
        d = self._distances(state, params)
        return self._terms(d, params, self._success(d, params))

    def metrics(self, prev_state, state, params):
        return self._metrics(self._distances(state, params))

    def step_outcome(self, prev_state, state, sensordata, action, params):
        # The distances serve the reward terms, success and metrics: computed once.
        d = self._distances(state, params)
        success = self._success(d, params)
        terminated = self.terminated(state, sensordata, params)
        return self._terms(d, params, success), terminated, success, self._metrics(d)


# ------------------------------------------------------------------ the families

_TEST_BANDS = ((-0.125, -0.075), (0.075, 0.125))
_ML1_HELDOUT = (
    "capsule and ellipsoid objects of 0.3-0.5 kg (train: box, cylinder, sphere of 0.05-0.3 kg); "
    "goals with |x| in [0.075, 0.125] m"
)


_TRAIN_OBJECTS = {"shapes": ("box", "cylinder", "sphere"), "mass_range": (0.05, 0.3)}
_TEST_OBJECTS = {"shapes": ("capsule", "ellipsoid"), "mass_range": (0.3, 0.5)}
# The test split changes the object and the goal region at once; these hold out one axis.
_ML1_AXES = {
    "test-objects": "held-out objects (capsules, ellipsoids of 0.3-0.5 kg) with training goals",
    "test-goals": "held-out goals (|x| in [0.075, 0.125] m) with training objects",
}


def _ml1(kind: str) -> dict[str, SplitSpec]:
    return {
        "train": SplitSpec(kinds=(kind,), **_TRAIN_OBJECTS, exclude_goal_x_bands=_TEST_BANDS),
        "test": SplitSpec(kinds=(kind,), **_TEST_OBJECTS, goal_x_bands=_TEST_BANDS),
        "test-objects": SplitSpec(kinds=(kind,), **_TEST_OBJECTS, exclude_goal_x_bands=_TEST_BANDS),
        "test-goals": SplitSpec(kinds=(kind,), **_TRAIN_OBJECTS, goal_x_bands=_TEST_BANDS),
    }


class Reach(ManipFamily):
    name = "reach"
    env_id = "robometa/Reach-v0"
    description = "table-top arm moves its gripper to a goal position; random objects on the table"
    splits = _ml1("reach")
    heldout = _ML1_HELDOUT
    axis_splits = _ML1_AXES


class Push(ManipFamily):
    name = "push"
    env_id = "robometa/Push-v0"
    description = "table-top arm pushes a randomized object to a goal on the table"
    splits = _ml1("push")
    heldout = _ML1_HELDOUT
    axis_splits = _ML1_AXES


class PickPlace(ManipFamily):
    name = "pick-place"
    env_id = "robometa/PickPlace-v0"
    description = "table-top arm grasps a randomized object and lifts it to a goal in the air"
    splits = _ml1("pick-place")
    heldout = _ML1_HELDOUT
    axis_splits = _ML1_AXES


class ManipML(ManipFamily):
    name = "manip-ml"
    env_id = "robometa/ManipML-v0"
    description = "multi-task manipulation (Meta-World ML10 style): train on reach + push, test on pick-place"
    splits = {"train": SplitSpec(kinds=("reach", "push")), "test": SplitSpec(kinds=("pick-place",))}
    heldout = "the pick-place task kind (train: reach and push); objects and goals from the full ranges"
