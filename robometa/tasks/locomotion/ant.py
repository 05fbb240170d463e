"""Ant task families: ``ant-dir`` (run in a 2D direction) and ``ant-goal`` (reach a point).

The robot is gymnasium's own ``ant.xml``, loaded by path from the installed gymnasium
package. Dynamics, reset noise and reward terms follow gymnasium's Ant-v5
(frame skip 5 on a 0.01 s RK4 step, so a control step lasts 0.05 s; uniform +-0.1
noise on ``qpos`` and Gaussian 0.1 noise on ``qvel``; ``healthy_reward = 1``;
healthy while the state is finite and the torso height is in [0.2, 1.0] m), except
the control cost: ``0.1 * |a|^2`` as in PEARL's ant tasks, not Ant-v5's
``0.5 * |a|^2``. With Ant-v5's weight a fresh Gaussian policy (unit std, clipped to
[-1, 1] on 8 actuators) pays about 2.1 per step in control cost against 1 of healthy
reward: while it explores, every step alive costs and ending the episode early pays
(measured on ant-dir: -0.94 reward per step; with SB3 PPO returns stayed negative
and episodes ~55 steps long over the first 10k steps). With 0.1 the same policy
earns +0.72 per step alive. ``ctrl_cost_weight=0.5`` restores Ant-v5's.

Observation: ``qpos[2:]`` and ``qvel`` (27 values), which is Ant-v5 with
``include_cfrc_ext_in_observation=False`` and the observation most meta-RL Ant
benchmarks use. The external contact forces Ant-v5 adds by default are not part of a
MuJoCo state row, and Ant-v5's contact cost (weight 5e-4 on clipped contact forces)
is left out with them. The 27 values are also Ant-v4's default observation
(``use_contact_forces=False``), on which standard PPO/SAC learn to run.

Horizon 200 control steps, as MAML (Finn et al., 2017, sec. 5.3) used for its ant
tasks.

- ``ant-dir``: run in direction ``theta`` in the plane; the forward term is the torso
  velocity projected on ``(cos theta, sin theta)`` (the 2D generalisation of MAML's
  forward/backward ant of Finn et al. 2017, as in ProMP's ``AntRandDirec2DEnv``,
  Rothfuss et al. 2019), with Ant-v5's healthy reward and termination.
- ``ant-goal``: walk to a goal position in the plane, drawn in a disc of radius 3 m
  with an area-uniform radius as in PEARL's ant-goal (Rakelly et al., 2019); the
  goal term is minus the Euclidean torso-to-goal distance (PEARL used the L1
  distance). Like PEARL's ant-goal it never terminates (a negative per-step reward
  would otherwise pay the agent to fall over early).
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

RESET_NOISE = 0.1  # Ant-v5 reset_noise_scale
# PEARL's ant tasks (Rakelly et al., 2019, code: rlkit/envs/ant_goal.py); Ant-v5 uses
# 0.5, see the module docstring for why we do not.
CTRL_COST = 0.1
HEALTHY_REWARD = 1.0  # Ant-v5 healthy_reward
HEALTHY_Z = (0.2, 1.0)  # Ant-v5 healthy_z_range, metres

# Ant legs by gymnasium's joint numbering; the hip sits at (x, y) = pos * 0.2 m.
ANT_LEGS: dict[str, tuple[str, str]] = {
    "leg1": ("hip_1", "ankle_1"),  # +x +y
    "leg2": ("hip_2", "ankle_2"),  # -x +y
    "leg3": ("hip_3", "ankle_3"),  # -x -y
    "leg4": ("hip_4", "ankle_4"),  # +x -y
}


def ant_spec() -> mujoco.MjSpec:
    """gymnasium's ant.xml as an editable spec."""
    return mujoco.MjSpec.from_file(str(gymnasium_asset("ant.xml")))


def compile_ant(spec: mujoco.MjSpec) -> mujoco.MjModel:
    return spec.compile()


def torso_up_z(quat: np.ndarray) -> np.ndarray:
    """World z component of the torso's z axis, ``quat: (B, 4)`` (w, x, y, z) -> ``(B,)``.

    1 when upright, -1 when upside down. Works for unnormalized quaternions (resets
    perturb them), as the rotation they stand for does.
    """
    w, x, y, z = quat.T
    return (w * w - x * x - y * y + z * z) / np.sum(quat * quat, axis=1)


class AntFamily(TaskFamily):
    """Shared Ant body: model, Ant-v5 reset noise, 27-value observation, health."""

    frame_skip = 5
    horizon = 200
    # Whether an unhealthy state ends the episode (Ant-v5's terminate_when_unhealthy).
    terminate_when_unhealthy: ClassVar[bool] = True

    def __init__(
        self,
        ctrl_cost_weight: float = CTRL_COST,
        healthy_reward: float = HEALTHY_REWARD,
        reset_noise_scale: float = RESET_NOISE,
    ):
        super().__init__()
        self.ctrl_cost_weight = check_number("ctrl_cost_weight", ctrl_cost_weight, 0.0, 10.0)
        self.healthy_reward = check_number("healthy_reward", healthy_reward, 0.0, 10.0)
        self.reset_noise_scale = check_number("reset_noise_scale", reset_noise_scale, 0.0, 1.0)

    @property
    def obs_dim(self) -> int:
        return 27

    def model_key(self, task: Task) -> object:
        return "ant"

    def build_model(self, task: Task) -> mujoco.MjModel:
        return compile_ant(ant_spec())

    def initial_state(self, model: mujoco.MjModel, task: Task, rng: np.random.Generator) -> np.ndarray:
        return v5_initial_state(self.layout, model.qpos0, rng, self.reset_noise_scale)

    def observe(self, state: np.ndarray, sensordata: np.ndarray, params: np.ndarray) -> np.ndarray:
        lay = self.layout
        return np.concatenate([state[:, lay.qpos][:, 2:], state[:, lay.qvel]], axis=1)

    def xy(self, state: np.ndarray) -> np.ndarray:
        """Torso position in the plane, ``(B, 2)`` metres."""
        q = self.layout.qpos.start
        return state[:, q : q + 2]

    def xy_velocity(self, prev_state: np.ndarray, state: np.ndarray) -> np.ndarray:
        """Torso velocity in the plane over the control step, ``(B, 2)`` m/s."""
        return (self.xy(state) - self.xy(prev_state)) / self.layout.dt

    def is_healthy(self, state: np.ndarray) -> np.ndarray:
        z = state[:, self.layout.qpos.start + 2]
        finite = np.isfinite(state).all(axis=1)
        return finite & (HEALTHY_Z[0] <= z) & (z <= HEALTHY_Z[1])

    def healthy_term(self, state: np.ndarray) -> np.ndarray:
        return self.healthy_reward * self.is_healthy(state)

    def ctrl_cost(self, action: np.ndarray) -> np.ndarray:
        return -self.ctrl_cost_weight * np.square(action).sum(axis=1)

    def terminated(self, state, sensordata, params):
        if not self.terminate_when_unhealthy:
            return np.zeros(state.shape[0], dtype=bool)
        return ~self.is_healthy(state)

    def metrics(self, prev_state, state, params):
        v = self.xy_velocity(prev_state, state)
        p = self.xy(state)
        return {"x_velocity": v[:, 0], "y_velocity": v[:, 1], "x_position": p[:, 0], "y_position": p[:, 1]}


def _in_sectors(angle: np.ndarray, sectors: np.ndarray) -> np.ndarray:
    a = np.mod(angle, 2 * np.pi)
    return np.any([(lo <= a) & (a <= hi) for lo, hi in sectors], axis=0)


def _sample_sectors(rng: np.random.Generator, n: int, sectors: np.ndarray) -> np.ndarray:
    widths = sectors[:, 1] - sectors[:, 0]
    which = rng.choice(len(sectors), size=n, p=widths / widths.sum())
    return sectors[which, 0] + rng.uniform(0.0, 1.0, n) * widths[which]


def _sample_outside(rng: np.random.Generator, n: int, sectors: np.ndarray) -> np.ndarray:
    # Rejection sampling on the circle minus the held-out sectors (80% acceptance).
    out = np.empty(0)
    while out.size < n:
        draw = rng.uniform(0.0, 2 * np.pi, size=2 * n)
        out = np.concatenate([out, draw[~_in_sectors(draw, sectors)]])
    return out[:n]


# Held-out directions: four 18-degree sectors (20% of the circle), centred between the
# axes so that neither the axis-aligned directions nor their neighbours are held out.
HELDOUT_SECTORS = np.deg2rad([[36.0, 54.0], [126.0, 144.0], [216.0, 234.0], [306.0, 324.0]])


# ---------------------------------------------------------------- ant-dir


@dataclass(frozen=True)
class AntDirTask(Task):
    """Run in direction ``angle`` (radians, counter-clockwise from +x, in [0, 2 pi))."""

    angle: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "angle", check_number("angle", self.angle, 0.0, 2 * np.pi))


def _sample_bearings(rng: np.random.Generator, n: int, split: str) -> np.ndarray:
    """``n`` angles (rad): inside the held-out sectors for ``test``, outside them for ``train`` / ``val``."""
    if split_region(split) == "test":
        return _sample_sectors(rng, n, HELDOUT_SECTORS)
    return _sample_outside(rng, n, HELDOUT_SECTORS)


def _bearing_outside_sectors(angle: float) -> bool:
    """Whether a bearing (rad) lies in the training region: outside every held-out sector."""
    return not _in_sectors(np.array([angle]), HELDOUT_SECTORS)[0]


class AntDir(AntFamily):
    name = "ant-dir"
    env_id = "robometa/AntDir-v0"
    task_cls = AntDirTask
    description = "Ant runs in a target direction in the plane (MAML ant-dir in 2D)"
    heldout = "directions in the 18-degree sectors around 45, 135, 225 and 315 degrees"

    def sample_tasks(self, n, rng, split="train"):
        a = _sample_bearings(rng, n, split)
        return [AntDirTask(float(x)) for x in a]

    def _in_training_region(self, task: AntDirTask) -> bool:
        return _bearing_outside_sectors(task.angle)

    def task_params(self, tasks: Sequence[Task]) -> np.ndarray:
        a = np.array([t.angle for t in tasks], dtype=np.float64)
        return np.stack([np.cos(a), np.sin(a)], axis=1).reshape(-1, 2)

    def markers(self, task, state):
        # An arrow 1 m long above the torso, pointing in the commanded direction.
        x, y = self.xy(state[None])[0]
        to = (x + np.cos(task.angle), y + np.sin(task.angle), 1.2)
        return [Marker("arrow", (float(x), float(y), 1.2), (0.03,), to=tuple(map(float, to)))]

    def reward_terms(self, prev_state, state, sensordata, action, params):
        v = self.xy_velocity(prev_state, state)
        return {
            "forward": np.sum(v * params[:, :2], axis=1),
            "healthy": self.healthy_term(state),
            "ctrl": self.ctrl_cost(action),
        }


# ---------------------------------------------------------------- ant-goal

GOAL_RADIUS = 3.0  # PEARL ant-goal: goals uniform in a disc of radius 3 m


@dataclass(frozen=True)
class AntGoalTask(Task):
    """Walk to ``goal = (x, y)`` metres, within ``GOAL_RADIUS`` of the start."""

    goal: tuple[float, float]

    def __post_init__(self) -> None:
        goal = tuple(self.goal) if isinstance(self.goal, (tuple, list, np.ndarray)) else None
        if goal is None or len(goal) != 2:
            raise RobometaError(f"goal must be a pair (x, y) of metres, got {self.goal!r}")
        x = check_number("goal x", goal[0], -GOAL_RADIUS, GOAL_RADIUS)
        y = check_number("goal y", goal[1], -GOAL_RADIUS, GOAL_RADIUS)
        check_number("goal distance from the origin", float(np.hypot(x, y)), 0.0, GOAL_RADIUS)
        object.__setattr__(self, "goal", (x, y))


class AntGoal(AntFamily):
    name = "ant-goal"
    env_id = "robometa/AntGoal-v0"
    task_cls = AntGoalTask
    description = "Ant walks to a goal position in the plane (PEARL ant-goal, Rakelly et al. 2019)"
    heldout = "goals whose bearing lies in the 18-degree sectors around 45, 135, 225 and 315 degrees"
    terminate_when_unhealthy = False

    def sample_tasks(self, n, rng, split="train"):
        a = _sample_bearings(rng, n, split)
        # Uniform over the disc (area-preserving radius).
        r = GOAL_RADIUS * np.sqrt(rng.uniform(0.0, 1.0, n))
        return [AntGoalTask((float(ri * np.cos(ai)), float(ri * np.sin(ai)))) for ri, ai in zip(r, a)]

    def _in_training_region(self, task: AntGoalTask) -> bool:
        return _bearing_outside_sectors(float(np.arctan2(task.goal[1], task.goal[0])))

    def task_params(self, tasks: Sequence[Task]) -> np.ndarray:
        return np.array([t.goal for t in tasks], dtype=np.float64).reshape(-1, 2)

    def markers(self, task, state):
        return [Marker("sphere", (task.goal[0], task.goal[1], 0.1), (0.15,))]

    def reward_terms(self, prev_state, state, sensordata, action, params):
        dist = np.linalg.norm(self.xy(state) - params[:, :2], axis=1)
        return {"goal": -dist, "healthy": self.healthy_term(state), "ctrl": self.ctrl_cost(action)}

    def metrics(self, prev_state, state, params):
        out = super().metrics(prev_state, state, params)
        out["goal_distance"] = np.linalg.norm(self.xy(state) - params[:, :2], axis=1)
        return out
