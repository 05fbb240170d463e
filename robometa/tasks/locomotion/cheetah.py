"""HalfCheetah task families: ``cheetah-vel`` and ``cheetah-dir``.

The robot is gymnasium's own ``half_cheetah.xml``, loaded by path from the installed
gymnasium package and compiled with ``MjSpec``. Observations and the initial-state
distribution follow gymnasium's HalfCheetah-v5 (``qpos[1:]`` and ``qvel``, 17 values;
uniform +-0.1 noise on ``qpos``, Gaussian 0.1 noise on ``qvel``, frame skip 5, so a
control step lasts 0.05 s). Rewards follow the MAML paper (Finn et al., 2017, sec. 5.3)
as implemented in its released rllab code:

- cheetah-vel: ``-|v_x - v_goal| - 0.05 * |a|^2``, goal velocity in [0, 2] m/s;
- cheetah-dir: ``d * v_x - 0.05 * |a|^2`` with direction ``d`` in {-1, +1};

both with horizon 200.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import mujoco
import numpy as np

from robometa.assets import gymnasium_asset
from robometa.errors import RobometaError
from robometa.tasks.base import Marker, Task, TaskFamily, check_number, split_region
from robometa.tasks.locomotion.common import v5_initial_state

_TOTAL_MASS = 14.0  # half_cheetah.xml's settotalmass
RESET_NOISE = 0.1  # HalfCheetah-v5 reset_noise_scale
CTRL_COST = 0.05  # MAML rllab code: 0.5 * 1e-1 * sum(a^2)


def cheetah_spec() -> mujoco.MjSpec:
    """gymnasium's half_cheetah.xml as an editable spec."""
    spec = mujoco.MjSpec.from_file(str(gymnasium_asset("half_cheetah.xml")))
    # The XML scales masses with the deprecated compiler attribute settotalmass;
    # compile without it and apply the same scaling on the model (see compile_cheetah).
    spec.compiler.settotalmass = -1
    return spec


def compile_cheetah(spec: mujoco.MjSpec) -> mujoco.MjModel:
    model = spec.compile()
    mujoco.mj_setTotalmass(model, _TOTAL_MASS)
    mujoco.mj_setConst(model, mujoco.MjData(model))
    return model


class CheetahFamily(TaskFamily):
    """Shared HalfCheetah body: model, state noise, observation, x-velocity."""

    frame_skip = 5
    horizon = 200

    def __init__(self, ctrl_cost_weight: float = CTRL_COST, reset_noise_scale: float = RESET_NOISE):
        super().__init__()
        self.ctrl_cost_weight = check_number("ctrl_cost_weight", ctrl_cost_weight, 0.0, 10.0)
        self.reset_noise_scale = check_number("reset_noise_scale", reset_noise_scale, 0.0, 1.0)

    @property
    def obs_dim(self) -> int:
        return 17

    def model_key(self, task: Task) -> object:
        return "half_cheetah"

    def build_model(self, task: Task) -> mujoco.MjModel:
        return compile_cheetah(cheetah_spec())

    def initial_state(self, model: mujoco.MjModel, task: Task, rng: np.random.Generator) -> np.ndarray:
        return v5_initial_state(self.layout, model.qpos0, rng, self.reset_noise_scale)

    def observe(self, state: np.ndarray, sensordata: np.ndarray, params: np.ndarray) -> np.ndarray:
        lay = self.layout
        return np.concatenate([state[:, lay.qpos][:, 1:], state[:, lay.qvel]], axis=1)

    def x_velocity(self, prev_state: np.ndarray, state: np.ndarray) -> np.ndarray:
        lay = self.layout
        x = lay.qpos.start  # rootx is the first coordinate
        return (state[:, x] - prev_state[:, x]) / lay.dt

    def ctrl_cost(self, action: np.ndarray) -> np.ndarray:
        return -self.ctrl_cost_weight * np.square(action).sum(axis=1)

    def metrics(self, prev_state, state, params):
        lay = self.layout
        return {"x_velocity": self.x_velocity(prev_state, state), "x_position": state[:, lay.qpos.start]}

    def target_arrow(self, state: np.ndarray, velocity: float) -> Marker:
        """An arrow above the torso: the commanded velocity, 0.5 m per m/s."""
        x = float(state[self.layout.qpos.start])
        start = (x, 0.0, 1.0)
        return Marker("arrow", start, (0.02,), to=(x + 0.5 * velocity, 0.0, 1.0))


# ---------------------------------------------------------------- cheetah-vel


@dataclass(frozen=True)
class VelocityTask(Task):
    """Run forward at ``goal_velocity`` m/s."""

    goal_velocity: float

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "goal_velocity",
            check_number("goal_velocity", self.goal_velocity, *CheetahVel.velocity_range),
        )


class CheetahVel(CheetahFamily):
    name = "cheetah-vel"
    env_id = "robometa/CheetahVel-v0"
    task_cls = VelocityTask
    description = "HalfCheetah runs at a target forward velocity (MAML, Finn et al. 2017)"
    velocity_range: ClassVar[tuple[float, float]] = (0.0, 2.0)
    # Held-out bands: four interpolation windows covering 20% of [0, 2] that
    # training never samples from.
    test_bands: ClassVar[tuple[tuple[float, float], ...]] = (
        (0.20, 0.30),
        (0.70, 0.80),
        (1.20, 1.30),
        (1.70, 1.80),
    )
    heldout = "goal velocities in [0.2,0.3] u [0.7,0.8] u [1.2,1.3] u [1.7,1.8] m/s"

    def _in_bands(self, v: np.ndarray) -> np.ndarray:
        """``v: (n,)`` goal velocities (m/s) -> ``(n,)`` bool: inside a held-out band."""
        return np.any([(lo <= v) & (v <= hi) for lo, hi in self.test_bands], axis=0)

    def _in_training_region(self, task: VelocityTask) -> bool:
        return not self._in_bands(np.array([task.goal_velocity]))[0]

    def sample_tasks(self, n, rng, split="train"):
        if split_region(split) == "test":
            bands = np.asarray(self.test_bands)
            widths = bands[:, 1] - bands[:, 0]
            which = rng.choice(len(bands), size=n, p=widths / widths.sum())
            v = bands[which, 0] + rng.uniform(0.0, 1.0, n) * widths[which]
        else:
            # Rejection sampling from [0, 2] minus the test bands (80% acceptance).
            v = np.empty(0)
            while v.size < n:
                draw = rng.uniform(*self.velocity_range, size=2 * n)
                v = np.concatenate([v, draw[~self._in_bands(draw)]])
            v = v[:n]
        return [VelocityTask(float(x)) for x in v]

    def task_params(self, tasks: Sequence[Task]) -> np.ndarray:
        return np.array([[t.goal_velocity] for t in tasks], dtype=np.float64).reshape(-1, 1)

    def reward_terms(self, prev_state, state, sensordata, action, params):
        v = self.x_velocity(prev_state, state)
        return {"forward": -np.abs(v - params[:, 0]), "ctrl": self.ctrl_cost(action)}

    def markers(self, task, state):
        return [self.target_arrow(state, task.goal_velocity)]


# ---------------------------------------------------------------- cheetah-dir


@dataclass(frozen=True)
class DirectionTask(Task):
    """Run forward (``+1``) or backward (``-1``)."""

    direction: int

    def __post_init__(self) -> None:
        if isinstance(self.direction, bool) or self.direction not in (1, -1):
            raise RobometaError(f"direction must be 1 or -1, got {self.direction!r}")
        object.__setattr__(self, "direction", int(self.direction))


class CheetahDir(CheetahFamily):
    name = "cheetah-dir"
    env_id = "robometa/CheetahDir-v0"
    task_cls = DirectionTask
    description = "HalfCheetah runs forward or backward (MAML, Finn et al. 2017)"
    n_train = 2
    n_val = 2
    n_test = 2
    heldout = "none: the family has only two tasks, every split holds both directions"
    validation = "both directions, as train and test: nothing is held out (evaluate uses latest.pt)"
    has_heldout = False

    def sample_tasks(self, n, rng, split="train"):
        split_region(split)  # validates the name: every split draws from both directions
        return [DirectionTask(int(d)) for d in rng.choice([-1, 1], size=n)]

    def _in_training_region(self, task: DirectionTask) -> bool:
        return True

    def split_tasks(self, split, seed=0, n=None):
        split_region(split)
        if n is None:
            return [DirectionTask(1), DirectionTask(-1)]
        return super().split_tasks(split, seed, n)

    def task_params(self, tasks):
        return np.array([[t.direction] for t in tasks], dtype=np.float64).reshape(-1, 1)

    def reward_terms(self, prev_state, state, sensordata, action, params):
        v = self.x_velocity(prev_state, state)
        return {"forward": params[:, 0] * v, "ctrl": self.ctrl_cost(action)}

    def markers(self, task, state):
        return [self.target_arrow(state, float(task.direction))]
