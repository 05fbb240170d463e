"""Running over procedurally generated terrain: ``cheetah-terrain`` and ``ant-terrain``.

A task is a terrain type, a difficulty in [0, 1], a generator seed and a ground
friction scale (see :mod:`robometa.tasks.locomotion.terrain` for what each type and
difficulty means). A family builds one base model with ``MjSpec`` (gymnasium's robot,
a heightfield on the family's fixed grid, the optional rangefinders); each task's
model is a copy with the task's heights and friction written in, cached. All tasks
of a family share one size signature and batch into one ``mujoco.rollout`` call.

Splits: training sees ``rough``, ``slopes`` and ``stairs`` up to difficulty 0.7;
the test split holds the two terrain types training never sees (``waves``,
``gaps``, any difficulty) and the training types at difficulties above 0.7.
Friction scales are log-uniform in [1/1.5, 1.5] in both. The val split is drawn
as the train split, on a seed stream of its own.

Observations are proprioceptive (blind) by default, as in HalfCheetah-v5 / the
27-value Ant. ``height_scan=True`` adds MuJoCo rangefinder readings: rays cast
straight down (along the torso's -z) from points fixed in the torso frame, each
reading the distance to whatever they hit (clipped to ``SCAN_RANGE``; a ray that
hits nothing reads ``SCAN_RANGE``). The rays start ``SCAN_LIFT`` above torso level
and the reading is taken relative to torso level. A rangefinder ignores its own body
(the torso) but not the legs, so a ray may now and then read a leg below it.

Rewards: forward running along +x, HalfCheetah-v5's (``v_x - 0.1 |a|^2``) and the
ant families' (``v_x + 1 [healthy] - 0.1 |a|^2``). Ant-v5's healthy torso height
range is measured from flat ground and does not hold on terrain, so the ant is
healthy while its state is finite and it is not upside down; it terminates
otherwise.
"""

from __future__ import annotations

import copy
import math
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import mujoco
import numpy as np

from robometa.errors import RobometaError
from robometa.tasks.base import Task, TaskFamily, check_number, split_region
from robometa.tasks.locomotion.ant import CTRL_COST as ANT_CTRL_COST
from robometa.tasks.locomotion.ant import AntFamily, ant_spec, compile_ant, torso_up_z
from robometa.tasks.locomotion.cheetah import CheetahFamily, cheetah_spec, compile_cheetah
from robometa.tasks.locomotion.terrain import (
    TERRAIN_TYPES,
    TerrainGrid,
    add_terrain,
    check_terrain_type,
    generate_heights,
    write_heights,
)

TRAIN_TYPES = ("rough", "slopes", "stairs")
TEST_TYPES = ("waves", "gaps")
TRAIN_MAX_DIFFICULTY = 0.7
FRICTION_RANGE = (0.25, 4.0)  # what a task may hold
SPLIT_FRICTION = 1.5  # every split: friction scale log-uniform in [1/1.5, 1.5]
SCAN_RANGE = 3.0  # metres below the torso
# Rays start this far above the torso: a ray cast from inside the terrain (a site
# ahead of a nose-down torso) would pass through the heightfield and read nonsense.
SCAN_LIFT = 0.5
MAX_SEED = 2**31 - 1
V5_CHEETAH_CTRL_COST = 0.1  # HalfCheetah-v5 ctrl_cost_weight


@dataclass(frozen=True)
class TerrainTask(Task):
    """Ground of type ``terrain`` at ``difficulty`` in [0, 1], generated from ``seed``.

    ``friction_scale`` multiplies every geom's friction (hence every contact's).
    """

    terrain: str
    difficulty: float
    seed: int
    friction_scale: float = 1.0

    def __post_init__(self) -> None:
        check_terrain_type(self.terrain)
        object.__setattr__(self, "difficulty", check_number("difficulty", self.difficulty, 0.0, 1.0))
        seed = self.seed
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
            raise RobometaError(f"seed must be an integer in [0, {MAX_SEED}], got {seed!r}")
        object.__setattr__(self, "seed", int(seed))
        object.__setattr__(
            self, "friction_scale", check_number("friction_scale", self.friction_scale, *FRICTION_RANGE)
        )


class TerrainFamily(TaskFamily):
    """Mixin over a robot family: tasks are :class:`TerrainTask` records.

    Subclasses give the heightfield ``grid``, the rangefinder points ``scan_points``
    (``(K, 2)`` metres in the torso frame) and how to load and compile the robot.
    """

    task_cls = TerrainTask
    grid: ClassVar[TerrainGrid]
    scan_points: ClassVar[np.ndarray]
    torso: ClassVar[str] = "torso"
    n_train = 100
    n_test = 40
    heldout = (
        f"terrain types {', '.join(TEST_TYPES)} (any difficulty) and "
        f"{', '.join(TRAIN_TYPES)} at difficulty above {TRAIN_MAX_DIFFICULTY}"
    )

    _caches = ("_base",)  # the robot without terrain, rebuilt with the first model

    def __init__(self, height_scan: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        if not isinstance(height_scan, bool):
            raise RobometaError(f"height_scan must be true or false, got {height_scan!r}")
        self.height_scan = height_scan
        self._base: mujoco.MjModel | None = None

    # ---- robot hooks ---------------------------------------------------------
    @abstractmethod
    def robot_spec(self) -> mujoco.MjSpec:
        """A fresh, editable spec of the robot (with its ``floor`` plane)."""

    @abstractmethod
    def compile_robot(self, spec: mujoco.MjSpec) -> mujoco.MjModel:
        """Compile the robot's spec the way its flat-ground families do."""

    # ---- task distribution ----------------------------------------------------
    def sample_tasks(self, n, rng, split="train"):
        train = split_region(split) == "train"
        lo, hi = -math.log(SPLIT_FRICTION), math.log(SPLIT_FRICTION)
        tasks = []
        for _ in range(n):
            if train:
                terrain = TRAIN_TYPES[rng.integers(len(TRAIN_TYPES))]
                difficulty = rng.uniform(0.0, TRAIN_MAX_DIFFICULTY)
            elif rng.uniform() < 0.5:
                terrain = TEST_TYPES[rng.integers(len(TEST_TYPES))]
                difficulty = rng.uniform(0.0, 1.0)
            else:
                terrain = TRAIN_TYPES[rng.integers(len(TRAIN_TYPES))]
                # (0.7, 1]: the open end keeps 0.7 itself in training only
                difficulty = 1.0 - rng.uniform(0.0, 1.0 - TRAIN_MAX_DIFFICULTY)
            seed = int(rng.integers(MAX_SEED))
            friction = math.exp(rng.uniform(lo, hi))
            tasks.append(TerrainTask(str(terrain), float(difficulty), seed, friction))
        return tasks

    def _in_training_region(self, task: TerrainTask) -> bool:
        friction = 1.0 / SPLIT_FRICTION <= task.friction_scale <= SPLIT_FRICTION
        return task.terrain in TRAIN_TYPES and task.difficulty <= TRAIN_MAX_DIFFICULTY and friction

    def task_params(self, tasks: Sequence[Task]) -> np.ndarray:
        return np.array([[t.difficulty, t.friction_scale] for t in tasks], dtype=np.float64).reshape(-1, 2)

    # ---- models -------------------------------------------------------------
    def heights(self, task: TerrainTask) -> np.ndarray:
        """The task's terrain heights ``(nrow, ncol)`` in metres on :attr:`grid`."""
        return generate_heights(self.grid, task.terrain, task.difficulty, task.seed)

    def model_key(self, task: Task) -> object:
        return task

    def build_model(self, task: Task) -> mujoco.MjModel:
        if self._base is None:
            self._base = self._build_base()
        model = copy.copy(self._base)
        write_heights(model, self.heights(task))
        model.geom_friction[:] *= task.friction_scale
        return model

    def _build_base(self) -> mujoco.MjModel:
        """The robot, the family's (empty) heightfield and the height-scan sensors."""
        spec = self.robot_spec()
        add_terrain(spec, self.grid)
        if self.height_scan:
            torso = spec.body(self.torso)
            for i, (x, y) in enumerate(self.scan_points):
                # quat (0, 1, 0, 0): half a turn about x, so the site's z axis points down.
                torso.add_site(name=f"scan{i}", pos=[x, y, SCAN_LIFT], quat=[0.0, 1.0, 0.0, 0.0], group=4)
                sensor = spec.add_sensor(
                    name=f"scan{i}",
                    type=mujoco.mjtSensor.mjSENS_RANGEFINDER,
                    objtype=mujoco.mjtObj.mjOBJ_SITE,
                    objname=f"scan{i}",
                )
                if hasattr(mujoco, "mjtRayDataField"):
                    # Newer MuJoCo: intprm[0] is a bitmask of what a rangefinder reports
                    # (MJCF fills in the distance; a spec must say so).
                    sensor.intprm[0] = 1 << int(mujoco.mjtRayDataField.mjRAYDATA_DIST)
        return self.compile_robot(spec)

    # ---- observation ----------------------------------------------------------
    @property
    def obs_dim(self) -> int:
        return super().obs_dim + (len(self.scan_points) if self.height_scan else 0)

    def scan(self, sensordata: np.ndarray) -> np.ndarray:
        """Ground clearance along each ray below torso level, ``(B, K)`` metres.

        In ``[-SCAN_LIFT, SCAN_RANGE]``; rays that hit nothing read ``SCAN_RANGE``.
        """
        lay = self.layout
        first, last = lay.sensors["scan0"], lay.sensors[f"scan{len(self.scan_points) - 1}"]
        d = sensordata[:, first.start : last.stop]
        return np.where(d < 0.0, SCAN_RANGE, np.minimum(d - SCAN_LIFT, SCAN_RANGE))

    def observe(self, state, sensordata, params):
        obs = super().observe(state, sensordata, params)
        if not self.height_scan:
            return obs
        return np.concatenate([obs, self.scan(sensordata)], axis=1)


# ---------------------------------------------------------------- cheetah-terrain


class CheetahTerrain(TerrainFamily, CheetahFamily):
    name = "cheetah-terrain"
    env_id = "robometa/CheetahTerrain-v0"
    description = "HalfCheetah runs forward over generated rough ground, slopes, stairs, waves, gaps"
    # 160 m of track at 0.1 m: room for a 15 m/s cheetah over a 200-step episode.
    grid = TerrainGrid(
        x_min=-10.0, x_max=150.0, y_min=-3.0, y_max=3.0, ncol=1601, nrow=4, start_radius=1.5, radial=False
    )
    # Ten rays ahead of the torso, 0.9-2.7 m forward (clear of the legs).
    scan_points = np.stack([np.linspace(0.9, 2.7, 10), np.zeros(10)], axis=1)

    def __init__(
        self,
        height_scan: bool = False,
        ctrl_cost_weight: float = V5_CHEETAH_CTRL_COST,
        reset_noise_scale: float = 0.1,
    ):
        super().__init__(
            height_scan=height_scan, ctrl_cost_weight=ctrl_cost_weight, reset_noise_scale=reset_noise_scale
        )

    def robot_spec(self):
        return cheetah_spec()

    def compile_robot(self, spec):
        return compile_cheetah(spec)

    def reward_terms(self, prev_state, state, sensordata, action, params):
        return {"forward": self.x_velocity(prev_state, state), "ctrl": self.ctrl_cost(action)}


# ---------------------------------------------------------------- ant-terrain


class AntTerrain(TerrainFamily, AntFamily):
    name = "ant-terrain"
    env_id = "robometa/AntTerrain-v0"
    description = "Ant runs forward over generated rough ground, slopes, stairs, waves, gaps"
    # 56 m x 18 m at 0.1 m; kept smaller than the cheetah's track because the grid is 2D.
    grid = TerrainGrid(
        x_min=-6.0, x_max=50.0, y_min=-9.0, y_max=9.0, ncol=561, nrow=181, start_radius=1.5, radial=True
    )
    model_cache_size = 128  # ~0.4 MB of heightfield per model
    # 7 x 3 rays from 1 m behind to 2 m ahead, 1 m to either side
    # (the point under the torso centre is left out: its ray would hit the hip capsules).
    scan_points = np.array(
        [(x, y) for x in np.arange(-1.0, 2.01, 0.5) for y in (-1.0, 0.0, 1.0) if (x, y) != (0.0, 0.0)]
    )

    def __init__(
        self,
        height_scan: bool = False,
        ctrl_cost_weight: float = ANT_CTRL_COST,
        healthy_reward: float = 1.0,
        reset_noise_scale: float = 0.1,
    ):
        super().__init__(
            height_scan=height_scan,
            ctrl_cost_weight=ctrl_cost_weight,
            healthy_reward=healthy_reward,
            reset_noise_scale=reset_noise_scale,
        )

    def robot_spec(self):
        return ant_spec()

    def compile_robot(self, spec):
        return compile_ant(spec)

    def is_healthy(self, state):
        q = self.layout.qpos.start
        return np.isfinite(state).all(axis=1) & (torso_up_z(state[:, q + 3 : q + 7]) > 0.0)

    def reward_terms(self, prev_state, state, sensordata, action, params):
        v = self.xy_velocity(prev_state, state)
        return {"forward": v[:, 0], "healthy": self.healthy_term(state), "ctrl": self.ctrl_cost(action)}


__all__ = ["TERRAIN_TYPES", "AntTerrain", "CheetahTerrain", "TerrainTask"]
