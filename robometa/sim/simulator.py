"""The ``Simulator`` seam: what a sampler needs from a batch of simulated envs.

A simulator steps ``B`` envs together, each with its own task. Samplers and learners
never build one themselves: they name a *backend* and get a simulator from
:func:`make_simulator`. A backend is registered once with :func:`register_simulator`
(``"batch"``, MuJoCo's :class:`~robometa.sim.BatchSim`, is registered by
:mod:`robometa.sim`), so a new one (a Ray worker pool, a vector of gymnasium envs
with ``set_task``, a GPU simulator) is one class and one registry line:

    register_simulator("mybackend", MySim, act_dim=lambda family: family.act_dim)

where ``MySim(family, tasks, seeds, nthread)`` satisfies :class:`Simulator`.

A backend registered with ``two_phase=True`` (``"batch"``) steps in two phases too
(``begin_step`` / ``PendingStep.run`` / ``end_step``, see :class:`~robometa.sim.BatchSim`),
so that a pipelined rollout loop can step one of its simulators on a worker thread while
the policy of another runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from robometa.errors import RobometaError, choice_error


@dataclass
class StepResult:
    """What one batched control step returns; every array has leading axis B.

    Rows of envs left out of the step (``active`` false) keep their state and
    observation; their reward and terms are 0, ``terminated``, ``success`` and
    ``unstable`` false, and their metrics those of a step that did not move.
    """

    obs: np.ndarray  # (B, obs_dim) float64
    reward: np.ndarray  # (B,)
    terms: dict[str, np.ndarray]  # named reward terms, each (B,); they sum to reward
    terminated: np.ndarray  # (B,) bool; true on unstable steps too
    success: np.ndarray  # (B,) bool
    metrics: dict[str, np.ndarray]  # diagnostics, each (B,); 0 on unstable steps
    unstable: np.ndarray  # (B,) bool: the env blew up during the step (its row is void)


@dataclass(frozen=True, eq=False)
class SimSpec:
    """Sizes and bounds of a simulator's batch; backend-neutral."""

    num_envs: int  # B
    obs_dim: int
    act_dim: int
    state_dim: int  # length of a state row (``state``, ``set_state``, recorded states)
    has_success: bool  # whether ``StepResult.success`` means anything
    action_low: np.ndarray  # (B, act_dim): step() clips actions to [action_low, action_high]
    action_high: np.ndarray  # (B, act_dim)


@runtime_checkable
class Simulator(Protocol):
    """B envs of one task family, each with its own task, stepped in lockstep.

    Resets draw each env's initial state from that env's own random stream (seeded
    at construction), so an env's trajectory does not depend on its batch.
    """

    @property
    def spec(self) -> SimSpec: ...

    @property
    def state(self) -> np.ndarray:
        """Current state rows ``(B, state_dim)`` float64 (a view: copy to keep)."""

    @property
    def instabilities(self) -> int:
        """Steps since construction, over all envs, on which an env blew up."""

    def reset(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Fresh initial states for the envs in ``mask (B,)`` bool (all by default);
        returns every env's observation ``(B, obs_dim)`` float64."""

    def step(self, action: np.ndarray, active: np.ndarray | None = None) -> StepResult:
        """One control step of the envs in ``active (B,)`` bool (all by default).

        ``action: (B, act_dim)``, clipped to the spec's bounds; rows of inactive envs
        are ignored and their :class:`StepResult` rows are neutral.
        """

    def set_state(self, state: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Write state rows, ``(B, state_dim)`` or ``(n, state_dim)`` for the ``n`` envs
        in ``mask``; returns every env's observation ``(B, obs_dim)``."""


SimulatorFactory = Callable[..., Simulator]
"""``factory(family, tasks, seeds, nthread) -> Simulator``: ``tasks`` one per env,
``seeds`` one int per env (or an int ``s`` for ``s, s+1, ...``), ``nthread`` the
backend's worker threads (``None``: its default)."""


@dataclass(frozen=True)
class _Backend:
    factory: SimulatorFactory
    act_dim: Callable[[Any], int]
    two_phase: bool = False


_REGISTRY: dict[str, _Backend] = {}


def register_simulator(
    name: str, factory: SimulatorFactory, act_dim: Callable[[Any], int], two_phase: bool = False
) -> None:
    """Make ``factory`` available as backend ``name``.

    ``act_dim(family)``: the action size of the family's envs under this backend,
    known before any simulator exists (learners size their policies with it).
    ``two_phase``: its simulators also step in two phases (see the module docstring),
    so a rollout loop may pipeline them.
    Registering another factory under a taken name is an error.
    """
    old = _REGISTRY.get(name)
    if old is not None and old.factory is not factory:
        raise RobometaError(f"simulator backend {name!r} is already registered")
    _REGISTRY[name] = _Backend(factory, act_dim, two_phase)


def simulator_names() -> list[str]:
    """Registered backend names."""
    return sorted(_REGISTRY)


def check_backend(name: str) -> str:
    """``name`` if it is a registered backend, else a :class:`RobometaError` naming the choices."""
    if name not in _REGISTRY:
        raise choice_error("simulator backend", name, simulator_names())
    return name


def make_simulator(
    family: Any,
    tasks: Sequence[Any],
    seeds: int | Sequence[int] | None,
    nthread: int | None = None,
    backend: str = "batch",
) -> Simulator:
    """A simulator of ``len(tasks)`` envs of ``family`` from backend ``backend``."""
    return _REGISTRY[check_backend(backend)].factory(family, tasks, seeds, nthread)


def steps_in_two_phases(backend: str) -> bool:
    """Whether backend ``backend``'s simulators offer ``begin_step`` / ``end_step``."""
    return _REGISTRY[check_backend(backend)].two_phase


def action_size(family: Any, backend: str = "batch") -> int:
    """Action size of ``family``'s envs under ``backend``, without building a simulator."""
    return int(_REGISTRY[check_backend(backend)].act_dim(family))
