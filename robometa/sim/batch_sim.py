"""BatchSim: B MuJoCo environments stepped together by ``mujoco.rollout``.

Every env carries its own task and its own ``MjModel`` (``mujoco.rollout`` takes a
list of models, one per env, as long as they share a size signature; envs whose
models differ in signature are stepped in separate groups). One control step is one
native ``rollout`` call per group with ``nstep = frame_skip``, on a persistent thread
pool. Observation, reward, termination and success come from the family's pure
vectorized functions, so nothing loops over envs in Python while stepping. Only
resets, which happen once per episode, draw each env's initial state from that
env's own random stream, so an env's trajectory does not depend on what else is in
its batch (and equals the single-env gymnasium facade's for the same seed).

Warm starts: ``rollout`` starts every call from ``qacc_warmstart = 0`` (passing
the previous step's accelerations would need ``mjData`` rows we do not keep). The
facade steps through the same code, so both see identical physics.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import mujoco
import numpy as np
from mujoco import rollout

from robometa.errors import RobometaError
from robometa.tasks.base import Task, TaskFamily, model_signature

_POOLS: dict[int, rollout.Rollout] = {}
_POOLS_LOCK = threading.Lock()


def default_nthread() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def rollout_pool(nthread: int) -> rollout.Rollout:
    """A process-wide persistent ``mujoco.rollout.Rollout`` with ``nthread`` workers."""
    with _POOLS_LOCK:
        pool = _POOLS.get(nthread)
        if pool is None:
            pool = _POOLS[nthread] = rollout.Rollout(nthread=nthread)
        return pool


@dataclass
class StepResult:
    """What one batched control step returns; every array has leading axis B."""

    obs: np.ndarray  # (B, obs_dim) float64
    reward: np.ndarray  # (B,)
    terms: dict[str, np.ndarray]  # named reward terms, each (B,); they sum to reward
    terminated: np.ndarray  # (B,) bool
    success: np.ndarray  # (B,) bool
    metrics: dict[str, np.ndarray]  # diagnostics, each (B,)


class _Group:
    """Envs whose models share a size signature: one rollout call per step."""

    def __init__(self, index: np.ndarray, models: list[mujoco.MjModel], nthread: int, frame_skip: int, lay):
        self.index = index
        self.models = models
        self.datas = [mujoco.MjData(models[0]) for _ in range(max(1, nthread))]
        n = len(index)
        self.state_in = np.zeros((n, lay.nstate))
        self.state_out = np.zeros((n, frame_skip, lay.nstate))
        self.sens_out = np.zeros((n, frame_skip, lay.nsensordata))
        self.ctrl = np.zeros((n, frame_skip, lay.nu))
        self.warmstart = np.zeros((n, lay.nv))


class BatchSim:
    """B environments of one family, each with its own task, stepped in lockstep.

    Args:
        family: the task family (its pure functions define obs / reward / done).
        tasks: one task per env (B of them).
        seeds: per-env seeds for the initial-state noise (an int ``s`` means
            ``s, s+1, ...``); resets draw from these per-env streams.
        nthread: rollout threads; ``None`` picks the CPU count for big batches and
            the calling thread for batches under 8 envs.
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
        # Action bounds: per env, from each model's actuator ctrlrange.
        self.ctrl_low = np.stack([m.actuator_ctrlrange[:, 0] for m in self.models])
        self.ctrl_high = np.stack([m.actuator_ctrlrange[:, 1] for m in self.models])

        self.state = np.zeros((self.B, lay.nstate))
        self.sensordata = np.zeros((self.B, lay.nsensordata))
        self._prev_state = np.zeros_like(self.state)
        self._scratch: mujoco.MjData | None = None
        self.reseed(seeds)

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

    def reset(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Draw fresh initial states for the envs in ``mask`` (all by default).

        Returns the observation of every env, ``(B, obs_dim)``.
        """
        idx = np.arange(self.B) if mask is None else np.flatnonzero(mask)
        for i in idx:
            self.state[i] = self.family.initial_state(self.models[i], self.tasks[i], self.rngs[i])
        if self.layout.nsensordata:
            self._forward_sensors(idx)
        return self.observe()

    def set_state(self, state: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Write full-physics state rows (e.g. recorded ones); returns observations."""
        idx = np.arange(self.B) if mask is None else np.flatnonzero(mask)
        self.state[idx] = state
        if self.layout.nsensordata:
            self._forward_sensors(idx)
        return self.observe()

    def _forward_sensors(self, idx: np.ndarray) -> None:
        # Sensors at a reset state need one mj_forward; reset-only, never per step.
        full = mujoco.mjtState.mjSTATE_FULLPHYSICS
        for i in idx:
            m = self.models[i]
            if self._scratch is None or self._scratch.model is not m:
                self._scratch = mujoco.MjData(m)
            d = self._scratch
            mujoco.mj_setState(m, d, self.state[i], full)
            mujoco.mj_forward(m, d)
            self.sensordata[i] = d.sensordata

    # ------------------------------------------------------------------ stepping
    def observe(self) -> np.ndarray:
        return self.family.observe(self.state, self.sensordata, self.params)

    def clip(self, action: np.ndarray) -> np.ndarray:
        return np.clip(action, self.ctrl_low, self.ctrl_high)

    def step(self, action: np.ndarray) -> StepResult:
        """Advance every env by one control step (``frame_skip`` physics steps).

        ``action: (B, nu)``; it is clipped to each actuator's ``ctrlrange`` and the
        clipped action is what the control cost sees.
        """
        action = self.clip(np.asarray(action, dtype=np.float64).reshape(self.B, -1))
        np.copyto(self._prev_state, self.state)
        for g in self._groups:
            if len(self._groups) == 1:
                np.copyto(g.state_in, self.state)
                g.ctrl[:] = action[:, None, :]
            else:
                g.state_in[:] = self.state[g.index]
                g.ctrl[:] = action[g.index][:, None, :]
            self._pool.rollout(
                g.models,
                g.datas,
                g.state_in,
                g.ctrl,
                nstep=self.frame_skip,
                initial_warmstart=g.warmstart,
                state=g.state_out,
                sensordata=g.sens_out,
                skip_checks=True,
            )
            if len(self._groups) == 1:
                self.state[:] = g.state_out[:, -1]
                self.sensordata[:] = g.sens_out[:, -1]
            else:
                self.state[g.index] = g.state_out[:, -1]
                self.sensordata[g.index] = g.sens_out[:, -1]
        fam = self.family
        terms = fam.reward_terms(self._prev_state, self.state, self.sensordata, action, self.params)
        reward = np.sum(list(terms.values()), axis=0)
        return StepResult(
            obs=self.observe(),
            reward=reward,
            terms=terms,
            terminated=fam.terminated(self.state, self.sensordata, self.params),
            success=fam.success(self.state, self.sensordata, self.params),
            metrics=fam.metrics(self._prev_state, self.state, self.params),
        )

    # ------------------------------------------------------------------ helpers
    def data_for(self, i: int) -> tuple[mujoco.MjModel, mujoco.MjData]:
        """A fresh ``MjData`` holding env ``i``'s current state (for rendering)."""
        m = self.models[i]
        d = mujoco.MjData(m)
        mujoco.mj_setState(m, d, self.state[i], mujoco.mjtState.mjSTATE_FULLPHYSICS)
        mujoco.mj_forward(m, d)
        return m, d
