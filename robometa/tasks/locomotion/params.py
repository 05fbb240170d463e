"""Dynamics randomization: ``cheetah-params`` and ``ant-params``.

A task is a set of scales for the robot's physics (body masses, joint damping, contact
friction, actuator gains) plus the joints whose actuators are disabled ("crippled").
These are the "random parameters" tasks of PEARL (Rakelly et al., 2019), whose
``rand_param_envs`` multiply every body's mass and inertia and every geom's friction
by its own ``1.5**u`` and every dof's damping by ``1.3**u`` (``u`` uniform in
[-3, 3]) and need mujoco-py 0.5 with MuJoCo 1.31, and the crippled-leg tasks of
Nagabandi et al. (2019, "Learning to adapt in dynamic, real-world environments").
Here each category gets one multiplier, so a task reads as four numbers and a list
of joints, and it all runs on today's MuJoCo.

Numbers are edited in place on a copy of one compiled base model (``mj_setConst``
refreshes the derived constants), never recompiled per task, so every task of a
family shares one size signature and batches into one ``mujoco.rollout`` call.

Task space and splits (``s`` stands for each of the four scales):

- train: every ``s`` log-uniform in [1/1.5, 1.5]; half of the tasks cripple one
  *training* unit (a joint of the cheetah's back leg; one of ant legs 1-3, i.e. its
  hip and ankle), the other half cripple nothing;
- test: each task is either "strong" (every ``s`` log-uniform in [1/2.5, 2.5] with at
  least one outside [1/1.5, 1.5], crippling as in training) or "new cripple"
  (training-range scales, one held-out unit crippled: a joint of the cheetah's front
  leg, ant leg 4). Either way the task lies outside the training region;
- val: drawn as train (the training region), on a seed stream of its own.

Crippled geoms are painted red so that rendered tasks show them.

Rewards: running forward along +x, HalfCheetah-v5's (``v_x - 0.1 |a|^2``) and
the ant families' (``v_x + 1 [healthy] - 0.1 |a|^2``, ending when unhealthy; see
:mod:`robometa.tasks.locomotion.ant`) respectively.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import mujoco
import numpy as np

from robometa.errors import RobometaError
from robometa.tasks.base import Task, TaskFamily, check_number, split_region
from robometa.tasks.locomotion.ant import ANT_LEGS, AntFamily
from robometa.tasks.locomotion.cheetah import CheetahFamily

TRAIN_SCALE = 1.5  # train: s in [1/1.5, 1.5]
TEST_SCALE = 2.5  # test "strong": s in [1/2.5, 2.5], at least one outside the train range
# What a task may hold: the splits' union. Beyond it, corners such as gain x4 with
# damping /4 make the cheetah's 0.01 s Euler step blow up now and then (measured:
# MuJoCo's instability resets in ~1 of 1000 steps under random actions).
SCALE_RANGE = (1.0 / TEST_SCALE, TEST_SCALE)
SCALES = ("mass_scale", "damping_scale", "friction_scale", "gain_scale")
CRIPPLED_RGBA = (0.85, 0.1, 0.1, 1.0)

V5_CHEETAH_CTRL_COST = 0.1  # HalfCheetah-v5 ctrl_cost_weight


@dataclass(frozen=True)
class DynamicsTask(Task):
    """Scales of the robot's physics and the joints whose actuators are disabled.

    Each scale multiplies the model's own values: ``mass_scale`` all body masses and
    inertias, ``damping_scale`` all joint damping, ``friction_scale`` every geom's
    friction (so every contact's friction scales by it), ``gain_scale`` every
    actuator's gear. ``crippled`` names joints whose actuators produce no force.
    """

    mass_scale: float = 1.0
    damping_scale: float = 1.0
    friction_scale: float = 1.0
    gain_scale: float = 1.0
    crippled: tuple[str, ...] = ()

    joints: ClassVar[tuple[str, ...]] = ()  # actuated joints that may be crippled
    max_crippled: ClassVar[int] = 0

    def __post_init__(self) -> None:
        for name in SCALES:
            object.__setattr__(self, name, check_number(name, getattr(self, name), *SCALE_RANGE))
        crippled = self.crippled
        if isinstance(crippled, str) or not isinstance(crippled, (tuple, list)):
            raise RobometaError(f"crippled must be a list of joint names from {', '.join(self.joints)}")
        for j in crippled:
            if j not in self.joints:
                raise RobometaError(f"unknown joint {j!r} in crippled; valid: {', '.join(self.joints)}")
        if len(set(crippled)) != len(crippled):
            raise RobometaError(f"crippled lists a joint twice: {list(crippled)}")
        if len(crippled) > self.max_crippled:
            raise RobometaError(
                f"at most {self.max_crippled} of the {len(self.joints)} actuated joints can be crippled, "
                f"got {len(crippled)}"
            )
        # Canonical order so that equal tasks compare (and cache) equal.
        object.__setattr__(self, "crippled", tuple(j for j in self.joints if j in crippled))


@dataclass(frozen=True)
class CheetahParamsTask(DynamicsTask):
    __doc__ = DynamicsTask.__doc__
    joints: ClassVar[tuple[str, ...]] = ("bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot")
    max_crippled: ClassVar[int] = 3


@dataclass(frozen=True)
class AntParamsTask(DynamicsTask):
    __doc__ = DynamicsTask.__doc__
    joints: ClassVar[tuple[str, ...]] = tuple(j for leg in ANT_LEGS.values() for j in leg)
    max_crippled: ClassVar[int] = 4


def apply_dynamics(model: mujoco.MjModel, task: DynamicsTask, data: mujoco.MjData | None = None) -> None:
    """Scale ``model``'s numbers in place for ``task`` and refresh derived constants.

    ``data``: scratch ``MjData`` of a model of the same sizes (allocating one per
    call dominates the cost for robots with big stacks, such as the cheetah).
    """
    model.body_mass[1:] *= task.mass_scale
    model.body_inertia[1:] *= task.mass_scale
    model.dof_damping[:] *= task.damping_scale
    model.geom_friction[:] *= task.friction_scale
    model.actuator_gear[:, 0] *= task.gain_scale
    for joint in task.crippled:
        jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, joint)
        for a in np.flatnonzero(
            (model.actuator_trntype == mujoco.mjtTrn.mjTRN_JOINT) & (model.actuator_trnid[:, 0] == jid)
        ):
            model.actuator_gear[a, :] = 0.0
        # Paint the geoms the joint moves directly.
        model.geom_rgba[model.geom_bodyid == model.jnt_bodyid[jid]] = CRIPPLED_RGBA
    mujoco.mj_setConst(model, mujoco.MjData(model) if data is None else data)


class DynamicsFamily(TaskFamily):
    """Mixin over a robot family: tasks are :class:`DynamicsTask` records.

    Subclasses name the crippling units: ``train_units`` and ``test_units`` are lists
    of joint groups; a crippled task disables one whole unit.
    """

    train_units: ClassVar[tuple[tuple[str, ...], ...]] = ()
    test_units: ClassVar[tuple[tuple[str, ...], ...]] = ()
    n_train = 100
    n_test = 40

    _caches = ("_base", "_scratch")  # rebuilt with the first model

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._base: mujoco.MjModel | None = None
        self._scratch: mujoco.MjData | None = None

    # ---- task distribution ----------------------------------------------------
    def _scales(self, rng: np.random.Generator, bound: float, n: int) -> np.ndarray:
        return np.exp(rng.uniform(-math.log(bound), math.log(bound), size=(n, len(SCALES))))

    def sample_tasks(self, n, rng, split="train"):
        test = split_region(split) == "test"
        scales = self._scales(rng, TRAIN_SCALE, n)
        cripple = rng.uniform(size=n) < 0.5
        units = [self.train_units[i] for i in rng.integers(len(self.train_units), size=n)]
        if test:
            strong = rng.uniform(size=n) < 0.5
            wide = self._scales(rng, TEST_SCALE, n)
            # Force one scale per strong task into the band outside the train range.
            which = rng.integers(len(SCALES), size=n)
            mag = np.exp(rng.uniform(math.log(TRAIN_SCALE), math.log(TEST_SCALE), size=n))
            sign = np.where(rng.uniform(size=n) < 0.5, 1.0, -1.0)
            wide[np.arange(n), which] = mag**sign
            new_units = [self.test_units[i] for i in rng.integers(len(self.test_units), size=n)]
            scales = np.where(strong[:, None], wide, scales)
            units = [u if s else nu for u, nu, s in zip(units, new_units, strong)]
            cripple = np.where(strong, cripple, True)
        # exp(log) can land an ulp outside the range's ends.
        scales = np.clip(scales, *SCALE_RANGE)
        return [
            self.task_cls(*map(float, s), crippled=tuple(u) if c else ())
            for s, u, c in zip(scales, units, cripple)
        ]

    def _in_training_region(self, task: DynamicsTask) -> bool:
        # Every scale in the train box, and nothing or one whole training unit crippled.
        lo, hi = 1.0 / TRAIN_SCALE, TRAIN_SCALE
        in_box = all(lo <= getattr(task, s) <= hi for s in SCALES)
        units = [set()] + [set(u) for u in self.train_units]
        return in_box and set(task.crippled) in units

    def task_params(self, tasks: Sequence[Task]) -> np.ndarray:
        return np.array([[getattr(t, s) for s in SCALES] for t in tasks], dtype=np.float64).reshape(
            -1, len(SCALES)
        )

    # ---- models -------------------------------------------------------------
    def model_key(self, task: Task) -> object:
        return task

    def build_model(self, task: Task) -> mujoco.MjModel:
        if self._base is None:
            self._base = super().build_model(task)
            self._scratch = mujoco.MjData(self._base)
        model = copy.copy(self._base)
        apply_dynamics(model, task, self._scratch)
        return model


class CheetahParams(DynamicsFamily, CheetahFamily):
    name = "cheetah-params"
    env_id = "robometa/CheetahParams-v0"
    task_cls = CheetahParamsTask
    description = "HalfCheetah runs forward under random masses, damping, friction, gains, crippled joints"
    heldout = "scales in [1/2.5, 2.5] beyond the train range [1/1.5, 1.5], or a crippled front-leg joint"
    train_units = (("bthigh",), ("bshin",), ("bfoot",))
    test_units = (("fthigh",), ("fshin",), ("ffoot",))

    def __init__(self, ctrl_cost_weight: float = V5_CHEETAH_CTRL_COST, reset_noise_scale: float = 0.1):
        super().__init__(ctrl_cost_weight=ctrl_cost_weight, reset_noise_scale=reset_noise_scale)

    def reward_terms(self, prev_state, state, sensordata, action, params):
        return {"forward": self.x_velocity(prev_state, state), "ctrl": self.ctrl_cost(action)}


class AntParams(DynamicsFamily, AntFamily):
    name = "ant-params"
    env_id = "robometa/AntParams-v0"
    task_cls = AntParamsTask
    description = "Ant runs forward under random masses, damping, friction, gains, crippled legs"
    heldout = "scales in [1/2.5, 2.5] beyond the train range [1/1.5, 1.5], or crippled leg 4"
    train_units = (ANT_LEGS["leg1"], ANT_LEGS["leg2"], ANT_LEGS["leg3"])
    test_units = (ANT_LEGS["leg4"],)

    def reward_terms(self, prev_state, state, sensordata, action, params):
        v = self.xy_velocity(prev_state, state)
        return {"forward": v[:, 0], "healthy": self.healthy_term(state), "ctrl": self.ctrl_cost(action)}
