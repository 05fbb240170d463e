"""BatchSim: B MuJoCo environments stepped together by ``mujoco.rollout``.

The first backend (``"batch"``) of the :class:`~robometa.sim.simulator.Simulator` seam.

Every env carries its own task and its own ``MjModel`` (``mujoco.rollout`` takes a
list of models, one per env, as long as they share a size signature; envs whose
models differ in signature are stepped in separate groups). One control step is one
native ``rollout`` call per group with ``nstep = frame_skip``, on a persistent thread
pool. Observation, reward, termination and success come from the family's pure
vectorized functions, so nothing loops over envs in Python while stepping. Only
resets, which happen once per episode, draw each env's initial state from that
env's own random stream, so an env's trajectory does not depend on what else is in
its batch (and equals the single-env gymnasium facade's for the same seed).

Sensors: ``rollout`` records, for each physics step, the sensor values that
``mj_step`` computed *before* integrating, i.e. those of the state one physics step
earlier than the state it records. For families whose models have sensors, a
control step therefore runs one more physics step (with zero control) whose state
is discarded: its sensor values are those of the control step's final state, the
values ``mj_forward`` gives there, as after :meth:`BatchSim.reset` and
:meth:`BatchSim.set_state` (bit for bit for position and velocity sensors such as
rangefinders; sensors of constraint forces agree to the solver's tolerance).
Families without sensors run ``frame_skip`` steps only.

Instabilities: when MuJoCo meets NaN, Inf or huge values it warns and resets the
env's data to the model defaults in the middle of a step. A step whose time did not
advance by exactly the control step, or whose state is not finite, is flagged in
``StepResult.unstable``: it terminates, and its reward terms and metrics are 0 (the
jump is not a transition the learner should see).

Warm starts: ``rollout`` starts every call from ``qacc_warmstart = 0`` (passing
the previous step's accelerations would need ``mjData`` rows we do not keep). The
facade steps through the same code, so both see identical physics.

Two-phase steps: :meth:`BatchSim.step` is :meth:`BatchSim.begin_step` (clip the
actions, copy the rows in; on the calling thread), :meth:`PendingStep.run` (the native
``rollout`` calls, which release the GIL and may run on another thread) and
:meth:`BatchSim.end_step` (copy the rows out, observation / reward / termination). A
pipelined rollout loop (:func:`robometa.sampling.rollout.collect_parts`) runs one
simulator's ``run`` on a worker thread while the main thread computes the policy of
another. A persistent ``rollout`` pool serves one call at a time: that loop's worker
runs its simulators' physics one after the other. Results do not depend on the thread.

A ``BatchSim`` pickles and deep-copies (for Ray workers and ``copy.deepcopy`` of
the gymnasium env): the thread pool and the ``MjData`` scratch are rebuilt, models,
states and random streams travel.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import mujoco
import numpy as np
from mujoco import rollout

from robometa.errors import RobometaError
from robometa.sim.simulator import SimSpec, StepResult
from robometa.tasks.base import StateLayout, Task, TaskFamily, model_signature

_POOLS: dict[int, rollout.Rollout] = {}
_POOLS_LOCK = threading.Lock()
_FULLPHYSICS = mujoco.mjtState.mjSTATE_FULLPHYSICS


def default_nthread() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def rollout_pool(nthread: int) -> rollout.Rollout:
    """A process-wide persistent ``mujoco.rollout.Rollout`` with ``nthread`` workers."""
    with _POOLS_LOCK:
        pool = _POOLS.get(nthread)
        if pool is None:
            pool = _POOLS[nthread] = rollout.Rollout(nthread=nthread)
        return pool


_INHERITED: list[rollout.Rollout] = []  # a forked child's copies of its parent's pools


def _forked() -> None:
    # A forked child has the parent's pools but not their threads: a call would wait for
    # them forever. It builds its own; the copies are kept, as destroying them would join
    # threads that do not exist. (Simulators built before the fork keep the copies.)
    global _POOLS_LOCK
    _INHERITED.extend(_POOLS.values())
    _POOLS.clear()
    _POOLS_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forked)


class _Group:
    """Envs whose models share a size signature: one rollout call per step.

    ``index``: the batch rows of the group's envs. Each control step runs ``nstep``
    physics steps: ``frame_skip``, plus one for the sensors where there are any.
    """

    # Rebuilt on unpickling, never shipped: per-thread MjData and rollout buffers.
    _SCRATCH = ("datas", "scratch", "state_in", "state_out", "sens_out", "ctrl", "warmstart")

    def __init__(
        self, index: np.ndarray, models: list[mujoco.MjModel], nthread: int, frame_skip: int, lay: StateLayout
    ):
        self.index = index
        self.whole = False  # the group is the whole batch, in order (set by BatchSim)
        self.models = models
        self.nthread = nthread
        self.frame_skip = frame_skip
        self.nstep = frame_skip + (1 if lay.nsensordata else 0)
        self.dims = (lay.nstate, lay.nsensordata, lay.nu, lay.nv)
        self._alloc()

    def _alloc(self) -> None:
        nstate, nsens, nu, nv = self.dims
        n = len(self.index)
        self.datas = [mujoco.MjData(self.models[0]) for _ in range(max(1, self.nthread))]
        self.scratch: mujoco.MjData | None = None  # for mj_forward at resets
        self.state_in = np.zeros((n, nstate))
        self.state_out = np.zeros((n, self.nstep, nstate))
        self.sens_out = np.zeros((n, self.nstep, nsens))
        self.ctrl = np.zeros((n, self.nstep, nu))  # the sensor step's control stays 0
        self.warmstart = np.zeros((n, nv))

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in self._SCRATCH}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._alloc()

    def scratch_data(self) -> mujoco.MjData:
        """An ``MjData`` that serves every model of the group (they share one layout)."""
        if self.scratch is None:
            self.scratch = mujoco.MjData(self.models[0])
        return self.scratch

    def stage(
        self, state: np.ndarray, action: np.ndarray, local: np.ndarray | None = None
    ) -> tuple[_Group, int, slice | np.ndarray, list[mujoco.MjModel]]:
        """Copy the inputs of one control step of the group's envs at positions ``local``
        (all when ``None``) into the rollout buffers: their rows of the batch's
        ``state (B, nstate)`` and of ``action (B, nu)`` (already clipped).

        Returns what :meth:`run` and :meth:`store` need: ``(group, n, rows, models)``.
        """
        if local is None:
            n, models = len(self.index), self.models
            rows: slice | np.ndarray = slice(None) if self.whole else self.index
        else:
            n, rows = len(local), self.index[local]
            models = [self.models[j] for j in local]
        # Leading-axis slices of the buffers stay C-contiguous, as rollout needs.
        self.state_in[:n] = state[rows]
        self.ctrl[:n, : self.frame_skip] = action[rows][:, None, :]
        return self, n, rows, models

    def run(self, pool: rollout.Rollout, n: int, models: list[mujoco.MjModel]) -> None:
        """The native rollout of the ``n`` staged envs (releases the GIL)."""
        pool.rollout(
            models,
            self.datas,
            self.state_in[:n],
            self.ctrl[:n],
            nstep=self.nstep,
            initial_warmstart=self.warmstart[:n],
            state=self.state_out[:n],
            sensordata=self.sens_out[:n],
            skip_checks=True,
        )

    def store(self, state: np.ndarray, sensordata: np.ndarray, n: int, rows: slice | np.ndarray) -> None:
        """Overwrite the staged envs' rows of ``state`` and ``sensordata`` with the results."""
        state[rows] = self.state_out[:n, self.frame_skip - 1]
        # With sensors, the extra step's values are those of the state just kept.
        sensordata[rows] = self.sens_out[:n, -1]


class PendingStep:
    """A control step begun by :meth:`BatchSim.begin_step`: :meth:`run` it (on any
    thread), then hand it to :meth:`BatchSim.end_step` (on the thread that began it)."""

    def __init__(
        self,
        pool: rollout.Rollout,
        staged: list[tuple[_Group, int, slice | np.ndarray, list[mujoco.MjModel]]],
        action: np.ndarray,
        live: np.ndarray | None,
    ):
        self.pool, self.staged, self.action, self.live = pool, staged, action, live

    def run(self) -> None:
        """The physics: one native ``rollout`` call per size group; releases the GIL."""
        for g, n, _, models in self.staged:
            g.run(self.pool, n, models)


class BatchSim:
    """B environments of one family, each with its own task, stepped in lockstep.

    Args:
        family: the task family (its pure functions define obs / reward / done).
        tasks: one task per env (B of them).
        seeds: per-env seeds for the initial-state noise (an int ``s`` means
            ``s, s+1, ...``); resets draw from these per-env streams.
        nthread: rollout threads; ``None`` picks the CPU count for big batches and
            the calling thread for batches under 8 envs.

    Until the first :meth:`reset` (or :meth:`set_state`, :meth:`reset_to_reference`)
    the states are zero rows, not physical states.
    """

    def __init__(
        self,
        family: TaskFamily,
        tasks: Sequence[Task],
        seeds: int | Sequence[int] | None = 0,
        nthread: int | None = None,
    ):
        if len(tasks) == 0:
            raise RobometaError("BatchSim needs at least one task")
        self.family = family
        self.tasks = list(tasks)
        self.B = len(self.tasks)
        self.layout = lay = family.layout
        self.frame_skip = family.frame_skip
        if nthread is None:
            nthread = default_nthread() if self.B >= 8 else 0
        self.nthread = nthread
        self._pool = rollout_pool(nthread)

        self.models = [family.model(t) for t in self.tasks]
        self.params = np.ascontiguousarray(family.task_params(self.tasks), dtype=np.float64)
        groups: dict[int, list[int]] = {}
        for i, m in enumerate(self.models):
            groups.setdefault(model_signature(m), []).append(i)
        self._groups = [
            _Group(np.asarray(ix), [self.models[i] for i in ix], nthread, self.frame_skip, lay)
            for ix in groups.values()
        ]
        self._groups[0].whole = len(self._groups) == 1
        self._group_of = np.empty(self.B, dtype=np.intp)
        for k, g in enumerate(self._groups):
            self._group_of[g.index] = k
        # Action bounds: per env, from each model's actuator ctrlrange.
        self.ctrl_low = np.stack([m.actuator_ctrlrange[:, 0] for m in self.models])
        self.ctrl_high = np.stack([m.actuator_ctrlrange[:, 1] for m in self.models])
        # Seconds a control step advances each env's clock, and the slack allowed for
        # rounding: half a physics step (MuJoCo's resets are off by whole ones).
        timestep = np.array([m.opt.timestep for m in self.models])
        self._dt = timestep * self.frame_skip
        self._dt_slack = 0.5 * timestep

        self.state = np.zeros((self.B, lay.nstate))
        self.sensordata = np.zeros((self.B, lay.nsensordata))
        self._prev_state = np.zeros_like(self.state)
        self.instabilities = 0  # unstable steps since construction, over all envs
        self.spec = SimSpec(
            num_envs=self.B,
            obs_dim=family.obs_dim,
            act_dim=lay.nu,
            state_dim=lay.nstate,
            has_success=family.has_success,
            action_low=self.ctrl_low,
            action_high=self.ctrl_high,
        )
        self.reseed(seeds)

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_pool"]  # a native thread pool; every process has its own
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._pool = rollout_pool(self.nthread)

    # ------------------------------------------------------------------ resets
    def reseed(self, seeds: int | Sequence[int] | None) -> None:
        if seeds is None or isinstance(seeds, (int, np.integer)):
            base = None if seeds is None else int(seeds)
            seq = [None] * self.B if base is None else [base + i for i in range(self.B)]
        else:
            seq = [int(s) for s in seeds]
            if len(seq) != self.B:
                raise RobometaError(f"got {len(seq)} seeds for {self.B} envs")
        self.rngs = [np.random.default_rng(s) for s in seq]

    def _mask(self, mask: np.ndarray | Sequence[bool], name: str) -> np.ndarray:
        mask = np.asarray(mask)
        if mask.shape != (self.B,):
            raise RobometaError(
                f"{name} must be a boolean array of shape ({self.B},), got shape {mask.shape}"
            )
        return mask.astype(bool, copy=False)

    def _rows(self, mask: np.ndarray | None) -> np.ndarray:
        return np.arange(self.B) if mask is None else np.flatnonzero(self._mask(mask, "mask"))

    def reset(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Draw fresh initial states for the envs in ``mask`` ``(B,)`` (all by default).

        Each env draws from its own stream. Returns the observation of every env,
        ``(B, obs_dim)``.
        """
        idx = self._rows(mask)
        for i in idx:
            self.state[i] = self.family.initial_state(self.models[i], self.tasks[i], self.rngs[i])
        if self.layout.nsensordata:
            self._forward_sensors(idx)
        return self.observe()

    def reset_to_reference(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Put the envs in ``mask`` at their model's reference state, drawing no random numbers.

        The reference state is what ``mj_resetData`` gives: ``qpos0``, zero
        velocities, time 0. Returns the observation of every env, ``(B, obs_dim)``.
        """
        idx = self._rows(mask)
        for i in idx:
            m, d = self.models[i], self._groups[self._group_of[i]].scratch_data()
            mujoco.mj_resetData(m, d)
            mujoco.mj_getState(m, d, self.state[i], _FULLPHYSICS)
        if self.layout.nsensordata:
            self._forward_sensors(idx)
        return self.observe()

    def set_state(self, state: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Write full-physics state rows (e.g. recorded ones); returns observations ``(B, obs_dim)``.

        ``state``: ``(B, nstate)``, or ``(n, nstate)`` for the ``n`` envs in ``mask``.
        """
        idx = self._rows(mask)
        self.state[idx] = state
        if self.layout.nsensordata:
            self._forward_sensors(idx)
        return self.observe()

    def _forward_sensors(self, idx: np.ndarray) -> None:
        # Sensors at a reset state need one mj_forward; reset-only, never per step.
        for i in idx:
            m, d = self.models[i], self._groups[self._group_of[i]].scratch_data()
            mujoco.mj_setState(m, d, self.state[i], _FULLPHYSICS)
            d.qacc_warmstart[:] = 0.0  # no solver memory from the previous env
            mujoco.mj_forward(m, d)
            self.sensordata[i] = d.sensordata

    # ------------------------------------------------------------------ stepping
    def observe(self) -> np.ndarray:
        return self.family.observe(self.state, self.sensordata, self.params)

    def clip(self, action: np.ndarray) -> np.ndarray:
        return np.clip(action, self.ctrl_low, self.ctrl_high)

    def step(self, action: np.ndarray, active: np.ndarray | None = None) -> StepResult:
        """Advance the envs by one control step (``frame_skip`` physics steps).

        ``action: (B, nu)``; it is clipped to each actuator's ``ctrlrange`` and the
        clipped action is what the control cost sees. ``active: (B,)`` bool, all by
        default: only these envs are simulated (per env, exactly as in a full step);
        the others keep their state and get the neutral rows described on
        :class:`StepResult`.
        """
        pending = self.begin_step(action, active)
        pending.run()
        return self.end_step(pending)

    def begin_step(self, action: np.ndarray, active: np.ndarray | None = None) -> PendingStep:
        """The first part of :meth:`step` (same arguments): clip the actions and stage
        the rows. Run the returned step (on any thread), then pass it to :meth:`end_step`;
        until then, begin no other step and leave the states alone."""
        action = self.clip(np.asarray(action, dtype=np.float64).reshape(self.B, -1))
        np.copyto(self._prev_state, self.state)
        live = None if active is None else self._mask(active, "active")
        staged = []
        for g in self._groups:
            if live is None:
                staged.append(g.stage(self.state, action))
                continue
            local = np.flatnonzero(live[g.index])
            if local.size == len(g.index):
                staged.append(g.stage(self.state, action))
            elif local.size:
                staged.append(g.stage(self.state, action, local))
        return PendingStep(self._pool, staged, action, live)

    def end_step(self, pending: PendingStep) -> StepResult:
        """The last part of :meth:`step`: the new states and what they yield."""
        for g, n, rows, _ in pending.staged:
            g.store(self.state, self.sensordata, n, rows)
        action, live = pending.action, pending.live
        fam, lay = self.family, self.layout
        advanced = self.state[:, lay.time] - self._prev_state[:, lay.time]
        unstable = (np.abs(advanced - self._dt) > self._dt_slack) | ~np.isfinite(self.state).all(axis=1)
        if live is not None:
            unstable &= live
        self.instabilities += int(unstable.sum())
        # Rows whose step yields nothing: blown up, or not simulated.
        void = unstable if live is None else unstable | ~live

        terms, terminated, success, metrics = fam.step_outcome(
            self._prev_state, self.state, self.sensordata, action, self.params
        )
        if void.any():
            terms = {k: np.where(void, 0.0, v) for k, v in terms.items()}
            terminated = np.where(void, unstable, terminated)
            success = success & ~void
            metrics = {k: np.where(unstable, 0.0, v) for k, v in metrics.items()}
        return StepResult(
            obs=self.observe(),
            reward=np.sum(list(terms.values()), axis=0),
            terms=terms,
            terminated=terminated,
            success=success,
            metrics=metrics,
            unstable=unstable,
        )

    # ------------------------------------------------------------------ helpers
    def data_for(self, i: int) -> tuple[mujoco.MjModel, mujoco.MjData]:
        """A fresh ``MjData`` holding env ``i``'s current state (for rendering)."""
        m = self.models[i]
        d = mujoco.MjData(m)
        mujoco.mj_setState(m, d, self.state[i], _FULLPHYSICS)
        mujoco.mj_forward(m, d)
        return m, d
