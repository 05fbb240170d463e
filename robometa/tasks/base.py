"""The task-family contract shared by every family, sampler and trainer.

A :class:`TaskFamily` says four things about a family of related tasks:

1. what a :class:`Task` is (a small frozen dataclass that round-trips through JSON);
2. how tasks are distributed: seed-fixed ``train`` / ``val`` / ``test`` splits, and
   :meth:`TaskFamily.in_split`, which says which split's region a task lies in;
3. how a task becomes an ``MjModel`` (``MjSpec`` for structure, in-place edits for
   numbers, cached per structure);
4. the pure, vectorized functions of the environment: initial state, observation,
   reward (named terms), termination and success. They take arrays with a leading
   batch axis and never touch an ``MjData``, so :class:`robometa.sim.BatchSim` can
   call them once per control step for the whole batch, and the gymnasium facade
   calls the very same functions with a batch of one.

Nothing here imports torch or knows about algorithms.
"""

from __future__ import annotations

import dataclasses
import json
import math
import zlib
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import mujoco
import numpy as np

from robometa.errors import RobometaError, choice_error

SPLITS = ("train", "val", "test")
"""The fixed task splits of every family.

``train`` and ``val`` are drawn from the *training region* of task space; ``test``
from the held-out region, which training never samples. ``val`` is the only split
any choice (best checkpoint, early stop, tuning) may look at; ``test`` is for
reporting.
"""

# Seed stream of each split's fixed list (``split_tasks``). Fixed numbers, not
# positions in SPLITS: adding a split must not change another split's tasks.
_SPLIT_STREAM = {"train": 0, "test": 1, "val": 2}
# The region of task space each split draws from.
_SPLIT_REGION = {"train": "train", "val": "train", "test": "test"}

_FULLPHYSICS = int(mujoco.mjtState.mjSTATE_FULLPHYSICS)


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class Task:
    """Base class of a family's task record.

    Subclasses are frozen dataclasses of plain numbers / strings / tuples, validated
    in ``__post_init__`` (raise :class:`RobometaError` naming the valid range).
    """

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Task:
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise RobometaError(f"unknown {cls.__name__} field {unknown[0]!r}; valid: {', '.join(names)}")
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name in data:
                value = data[f.name]
                kwargs[f.name] = tuple(value) if isinstance(value, list) else value
        try:
            return cls(**kwargs)
        except TypeError as exc:  # missing required field
            raise RobometaError(f"malformed {cls.__name__}: {exc}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def check_number(name: str, value: Any, low: float, high: float) -> float:
    """Validate a finite real in ``[low, high]``; returns it as ``float``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise RobometaError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    value = float(value)
    if not math.isfinite(value) or not low <= value <= high:
        raise RobometaError(f"{name} must be in [{low}, {high}], got {value!r}")
    return value


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise choice_error("split", split, SPLITS)
    return split


def split_region(split: str) -> str:
    """The region a split draws from: ``"train"`` (train and val) or ``"test"``."""
    return _SPLIT_REGION[check_split(split)]


# ---------------------------------------------------------------- state layout


@dataclass(frozen=True)
class StateLayout:
    """Where things live in a row of ``mjSTATE_FULLPHYSICS`` state and in sensordata.

    ``mujoco.rollout`` returns full-physics states and sensor values; the family's
    pure functions index them through this layout instead of through an ``MjData``.
    """

    nq: int
    nv: int
    nu: int
    nstate: int
    time: int
    qpos: slice
    qvel: slice
    act: slice
    sensors: Mapping[str, slice]
    nsensordata: int
    dt: float  # seconds per control step (timestep * frame_skip)

    @classmethod
    def of(cls, model: mujoco.MjModel, frame_skip: int) -> StateLayout:
        def offset(bit: mujoco.mjtState) -> int:
            # Components are stored in bit order, so a component starts after all
            # full-physics components with lower bits.
            return mujoco.mj_stateSize(model, _FULLPHYSICS & (int(bit) - 1))

        q0 = offset(mujoco.mjtState.mjSTATE_QPOS)
        v0 = offset(mujoco.mjtState.mjSTATE_QVEL)
        a0 = offset(mujoco.mjtState.mjSTATE_ACT)
        sensors = {}
        for i in range(model.nsensor):
            name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_SENSOR, i)
            adr, dim = int(model.sensor_adr[i]), int(model.sensor_dim[i])
            sensors[name or f"sensor{i}"] = slice(adr, adr + dim)
        return cls(
            nq=model.nq,
            nv=model.nv,
            nu=model.nu,
            nstate=mujoco.mj_stateSize(model, _FULLPHYSICS),
            time=offset(mujoco.mjtState.mjSTATE_TIME),
            qpos=slice(q0, q0 + model.nq),
            qvel=slice(v0, v0 + model.nv),
            act=slice(a0, a0 + model.na),
            sensors=sensors,
            nsensordata=model.nsensordata,
            dt=float(model.opt.timestep) * frame_skip,
        )

    def sensor(self, sensordata: np.ndarray, name: str) -> np.ndarray:
        return sensordata[..., self.sensors[name]]


def model_signature(model: mujoco.MjModel) -> int:
    """Models with equal size signatures can share one ``mujoco.rollout`` call.

    MuJoCo's own ``signature`` hashes all model sizes, so equal signatures also mean
    one ``MjData`` layout serves every model of the group. It does not cover the
    per-body / per-dof "simple inertia" flags, which change how the mass matrix is
    factorized: models differing there (e.g. a geom rotated inside a free body) gave
    NaNs when rolled out with another model's ``MjData``, so they group apart.
    """
    return hash((int(model.signature), model.body_simple.tobytes(), model.dof_simplenum.tobytes()))


# ---------------------------------------------------------------- markers


@dataclass(frozen=True)
class Marker:
    """A visual aid drawn into rendered scenes and the viewer; never part of physics.

    ``kind`` is ``"sphere"`` (``size = (radius,)``), ``"box"`` (``size`` = half
    extents) or ``"arrow"`` (from ``pos`` to ``to``, ``size = (shaft radius,)``).
    Positions are world coordinates in metres.
    """

    kind: str
    pos: tuple[float, float, float]
    size: tuple[float, ...]
    rgba: tuple[float, float, float, float] = (0.1, 0.8, 0.2, 0.8)
    to: tuple[float, float, float] | None = None


# ------------------------------------------------------------------ the family


@dataclass(frozen=True)
class FamilyInfo:
    """What ``robometa tasks`` prints about a family.

    ``n_train`` / ``n_val`` / ``n_test``: default sizes of the fixed splits;
    ``heldout``: what the test split holds out; ``validation``: what the val split is.
    """

    name: str
    env_id: str
    obs_dim: int
    act_dim: int
    horizon: int
    dt: float
    n_train: int
    n_val: int
    n_test: int
    heldout: str
    validation: str
    has_success: bool
    description: str
    axis_splits: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class TaskFamily(ABC):
    """A distribution over related MuJoCo tasks plus their pure batched dynamics.

    Subclasses set the class attributes and implement the abstract methods. Reward
    and observation functions receive ``params``: the ``(B, P)`` array returned by
    :meth:`task_params` for the batch's tasks.
    """

    name: ClassVar[str]
    env_id: ClassVar[str]
    task_cls: ClassVar[type[Task]]
    description: ClassVar[str] = ""
    horizon: ClassVar[int] = 200
    frame_skip: ClassVar[int] = 5
    has_success: ClassVar[bool] = False
    # default sizes of the fixed splits returned by split_tasks()
    n_train: ClassVar[int] = 100
    n_val: ClassVar[int] = 40
    n_test: ClassVar[int] = 40
    heldout: ClassVar[str] = ""  # one line: what the test split holds out
    # one line: what the val split is
    validation: ClassVar[str] = "drawn like train (the training region), on a seed stream of its own"
    # False for families whose whole task space is the training region (nothing held out).
    has_heldout: ClassVar[bool] = True
    # True for families with a scripted expert (:meth:`expert_action`): the evaluation baseline.
    has_expert: ClassVar[bool] = False
    # Per-axis held-out splits, name -> what it holds out, for families whose test split
    # changes several things at once (e.g. "test-objects": new objects, training goals).
    axis_splits: ClassVar[dict[str, str]] = {}

    # compiled models kept per family (least recently used ones are dropped)
    model_cache_size: ClassVar[int] = 1024
    # attributes holding caches that are rebuilt when None (dropped when pickling)
    _caches: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self._models: OrderedDict[Any, mujoco.MjModel] = OrderedDict()
        self._layout: StateLayout | None = None

    def __getstate__(self) -> dict[str, Any]:
        # The model cache is rebuilt on demand from the tasks (model() is a pure
        # function of the task), so a pickled family ships its options, not megabytes
        # of compiled models.
        state = self.__dict__.copy()
        state["_models"] = OrderedDict()
        for name in self._caches:
            state[name] = None
        return state

    # ---- task distribution ------------------------------------------------
    @abstractmethod
    def sample_tasks(self, n: int, rng: np.random.Generator, split: str = "train") -> list[Task]:
        """Draw ``n`` tasks from the split's region of task space (:func:`split_region`)."""

    @abstractmethod
    def _in_training_region(self, task: Task) -> bool:
        """Whether the train split could draw ``task`` (the family's one region predicate)."""

    def split_names(self) -> tuple[str, ...]:
        """Every split of this family: ``train``, ``val``, ``test``, then its per-axis
        held-out splits (:attr:`axis_splits`)."""
        return SPLITS + tuple(self.axis_splits)

    def check_split(self, split: str) -> str:
        """``split`` if this family has it; else :class:`RobometaError` naming the valid ones."""
        if split not in self.split_names():
            raise choice_error("split", split, self.split_names())
        return split

    def _in_axis_split(self, task: Task, split: str) -> bool:
        """Membership of a per-axis held-out split; families with :attr:`axis_splits` override."""
        raise NotImplementedError(f"{self.name} declares no per-axis split {split!r}")

    def in_split(self, task: Task, split: str) -> bool:
        """Whether ``task`` lies in the region of task space that ``split`` draws from.

        ``train`` and ``val``: the training region. ``test``: the held-out region, every
        task outside the training region, for families with one (:attr:`has_heldout`);
        for a family without one, every task. A per-axis split (e.g. ``test-objects``):
        the family's own region for it, always outside the training region.
        """
        if not isinstance(task, self.task_cls):
            raise RobometaError(f"{self.name} expects a {self.task_cls.__name__}, got {type(task).__name__}")
        if self.check_split(split) in self.axis_splits:
            return bool(self._in_axis_split(task, split)) and not self._in_training_region(task)
        region = split_region(split)
        inside = bool(self._in_training_region(task))
        if region == "train":
            return inside
        return not inside if self.has_heldout else True

    def split_size(self, split: str) -> int:
        """Default number of tasks in a split's fixed list (per-axis splits: as ``test``)."""
        if self.check_split(split) in self.axis_splits:
            return self.n_test
        return {"train": self.n_train, "val": self.n_val, "test": self.n_test}[split]

    def split_tasks(self, split: str, seed: int = 0, n: int | None = None) -> list[Task]:
        """The fixed task list of a split: same seed, same tasks.

        Each split has its own seed stream, so no list depends on another. ``val``
        draws from the training region like ``train`` but on another stream: its
        tasks are not the train list's, and (outside families without a held-out
        region) never the test split's.
        """
        if n is None:
            n = self.split_size(split)
        stream = _SPLIT_STREAM.get(split)
        if stream is None:  # a per-axis split: a stream of its own, fixed by its name
            stream = zlib.crc32(split.encode())
        rng = np.random.default_rng([seed, stream])
        return self.sample_tasks(n, rng, split)

    def task_from_dict(self, data: Mapping[str, Any]) -> Task:
        return self.task_cls.from_dict(data)

    @abstractmethod
    def task_params(self, tasks: Sequence[Task]) -> np.ndarray:
        """Numeric task parameters the pure functions need, ``(B, P)`` float64."""

    # ---- models -------------------------------------------------------------
    @abstractmethod
    def model_key(self, task: Task) -> Any:
        """Hashable key: tasks with equal keys share one compiled ``MjModel``."""

    @abstractmethod
    def build_model(self, task: Task) -> mujoco.MjModel:
        """Compile (or copy and edit) the model of a task; called once per key."""

    def model(self, task: Task) -> mujoco.MjModel:
        """The task's model, cached by :meth:`model_key`. Treat it as read-only."""
        if not isinstance(task, self.task_cls):
            raise RobometaError(f"{self.name} expects a {self.task_cls.__name__}, got {type(task).__name__}")
        key = self.model_key(task)
        model = self._models.get(key)
        if model is None:
            model = self._models[key] = self.build_model(task)
            while len(self._models) > self.model_cache_size:
                self._models.popitem(last=False)
        else:
            self._models.move_to_end(key)
        return model

    @property
    def layout(self) -> StateLayout:
        """State layout of this family's models (every model of a family shares it)."""
        if self._layout is None:
            self._layout = StateLayout.of(self.model(self.default_task()), self.frame_skip)
        return self._layout

    def default_task(self) -> Task:
        return self.split_tasks("train", seed=0, n=1)[0]

    def info(self) -> FamilyInfo:
        lay = self.layout
        return FamilyInfo(
            name=self.name,
            env_id=self.env_id,
            obs_dim=self.obs_dim,
            act_dim=lay.nu,
            horizon=self.horizon,
            dt=lay.dt,
            n_train=self.n_train,
            n_val=self.n_val,
            n_test=self.n_test,
            heldout=self.heldout,
            validation=self.validation,
            has_success=self.has_success,
            description=self.description,
            axis_splits=dict(self.axis_splits),
        )

    # ---- pure batched dynamics ----------------------------------------------
    @property
    @abstractmethod
    def obs_dim(self) -> int: ...

    @abstractmethod
    def initial_state(self, model: mujoco.MjModel, task: Task, rng: np.random.Generator) -> np.ndarray:
        """One full-physics state row ``(nstate,)`` drawn with the env's own ``rng``."""

    @abstractmethod
    def observe(self, state: np.ndarray, sensordata: np.ndarray, params: np.ndarray) -> np.ndarray:
        """``state: (B, nstate)``, ``sensordata: (B, nsensordata)`` -> ``(B, obs_dim)``."""

    @abstractmethod
    def reward_terms(
        self,
        prev_state: np.ndarray,
        state: np.ndarray,
        sensordata: np.ndarray,
        action: np.ndarray,
        params: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """Named reward terms, each ``(B,)``; the reward is their sum."""

    def terminated(self, state: np.ndarray, sensordata: np.ndarray, params: np.ndarray) -> np.ndarray:
        """``(B,)`` bool; families without termination keep this default."""
        return np.zeros(state.shape[0], dtype=bool)

    def success(self, state: np.ndarray, sensordata: np.ndarray, params: np.ndarray) -> np.ndarray:
        """``(B,)`` bool; only meaningful where ``has_success``."""
        return np.zeros(state.shape[0], dtype=bool)

    def expert_action(self, state: np.ndarray, params: np.ndarray) -> np.ndarray:
        """The scripted expert's actions ``(B, act_dim)`` for states ``(B, nstate)`` and task
        parameters ``(B, P)``; only families with :attr:`has_expert` have one."""
        raise NotImplementedError(f"{self.name} has no scripted expert")

    def markers(self, task: Task, state: np.ndarray) -> list[Marker]:
        """What to draw for ``task`` at one state row ``(nstate,)``: goals, targets."""
        return []

    def metrics(self, prev_state: np.ndarray, state: np.ndarray, params: np.ndarray) -> dict[str, np.ndarray]:
        """Extra per-step diagnostics for ``info`` (e.g. ``x_velocity``), each ``(B,)``."""
        return {}

    def step_outcome(
        self,
        prev_state: np.ndarray,
        state: np.ndarray,
        sensordata: np.ndarray,
        action: np.ndarray,
        params: np.ndarray,
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """What one batched step yields, in one call: ``(reward_terms, terminated, success,
        metrics)``, each as its own method returns it. The simulator calls this once per
        control step; a family whose methods share work (distances, contacts) overrides it
        to do that work once, returning the same values."""
        return (
            self.reward_terms(prev_state, state, sensordata, action, params),
            self.terminated(state, sensordata, params),
            self.success(state, sensordata, params),
            self.metrics(prev_state, state, params),
        )
