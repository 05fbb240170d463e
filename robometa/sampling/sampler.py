"""Closed-loop batched sampler: N episodes for each of M tasks in one simulator.

All M*N envs step in lockstep: one batched policy forward on ``device`` and one
batched simulator step per control step (for the default backend, one native
``mujoco.rollout`` call). Env ``b`` runs task ``b // N``. The stepping and its
bookkeeping are :func:`robometa.sampling.rollout.collect`'s; this module shapes
them into an :class:`EpisodeBatch`.

Only envs whose episode is still running are simulated: an env that terminated
keeps its last state while the rest of the batch goes on (early terminations, as on
the ant families, would otherwise keep the whole batch stepping dead envs).

On a CPU-only machine torch and MuJoCo's rollout threads would fight for the same
cores (measured: ~30% slower with torch on all cores), so while sampling torch is
limited to ``torch_threads`` (1 by default) and restored afterwards.

Pipelining (``pipeline``): the batch is cut in two parts, each with its own simulator,
and one part's physics runs from a worker thread (``mujoco.rollout`` releases the GIL)
while the main thread computes the other part's policy forward and bookkeeping. The cut
is taken only where it changes nothing (:func:`robometa.sampling.chunks.split_actor`):
the episodes, the action noise and the sampler's streams are those of the plain loop, bit
for bit, so the setting is a matter of speed only and is not part of a run's
configuration. By default (``None``) a sampler whose policy runs on the CPU with two or
more MuJoCo threads times its own requests both ways and keeps the faster
(:class:`robometa.sampling.chunks.PipelineChoice`).

Simulation blow-ups (MuJoCo's instability resets, see :mod:`robometa.sim.batch_sim`)
end their episode with reward 0 and are counted; :meth:`Sampler.pop_metrics` hands
the count to the learner, which logs it as ``sim/instabilities``.

Where the envs are stepped is the backend's (:mod:`robometa.sampling.backends`): in
this process by default, or on Ray workers that each run a copy of the policy over
their share of the envs (``backend="ray"``). A request may be cut into chunks that
carry their own seeds (:mod:`robometa.sampling.chunks`); one chunk, the default here,
is the whole batch as described above.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from robometa.device import resolve_device
from robometa.errors import RobometaError
from robometa.sampling.backends import (
    InProcess,
    SamplerContext,
    backend_action_size,
    check_sampling_backend,
    runner,
)
from robometa.sampling.chunks import (
    PipelineChoice,
    Request,
    chunk_grid,
    make_chunks,
    pipelining,
    torch_threads,
)
from robometa.sampling.episode_batch import EpisodeBatch
from robometa.sampling.rollout import Rollout
from robometa.tasks.base import Task, TaskFamily

__all__ = ["Actor", "Sampler", "torch_threads"]


class Actor(Protocol):
    """What the sampler calls once per control step for the whole batch."""

    def act(
        self, obs: Tensor, generator: torch.Generator | None = None, deterministic: bool = False
    ) -> tuple[Tensor, Tensor]:
        """``obs: (M, N, obs_dim)`` -> actions ``(M, N, act_dim)``, log-probs ``(M, N)``."""


class Sampler:
    """Collects episodes of a family's tasks with a torch policy.

    Args:
        family: the task family.
        device: where the policy runs: ``auto`` | ``cpu`` | ``cuda[:N]``.
        seed: seeds the initial-state noise and the action noise; the stream
            continues across calls and is part of :meth:`state_dict`.
        nthread: MuJoCo rollout threads (``None``: all cores for big batches).
        torch_threads: torch intra-op threads while sampling on CPU (``None``: leave).
        pipeline: overlap the policy forward of one half of the batch with the physics
            of the other (in this process): ``True`` wherever an exact cut exists,
            ``False`` never, ``None`` (auto) where the policy runs on the CPU and
            ``nthread`` allows two threads or more, whichever of the two is faster on
            this machine's requests so far. Results do not depend on it.
        backend: where the envs are simulated: a simulator backend
            (:func:`robometa.sim.simulator_names`) stepped in this process, or ``ray``
            (Ray workers), optionally cut into ``/K`` chunks (:mod:`robometa.sampling.backends`).
    """

    def __init__(
        self,
        family: TaskFamily,
        device: str | torch.device = "auto",
        seed: int = 0,
        nthread: int | None = None,
        torch_threads: int | None = 1,
        backend: str = "batch",
        pipeline: bool | None = None,
    ):
        self.family = family
        self.backend = check_sampling_backend(backend)
        self.device = resolve_device(device)
        self.nthread = nthread
        self.pipeline = pipeline
        self._pipeline_choice = PipelineChoice()
        self.torch_threads = torch_threads if self.device.type == "cpu" else None
        # Default of sample(record_states=...): evaluation turns it on to replay exactly.
        self.record_states = False
        self._rng = np.random.default_rng(seed)
        self._gen = torch.Generator(device=self.device)
        self._gen.manual_seed(int(seed))
        self._instabilities = 0  # since the last pop_metrics()
        self._worker_restarts = 0  # since the last pop_metrics()

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {"rng": self._rng.bit_generator.state, "torch_gen": self._gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state["rng"]
        self._gen.set_state(state["torch_gen"])

    def pop_metrics(self) -> dict[str, float]:
        """Counters since the previous call, keyed by TensorBoard tag; resets them.

        ``sim/instabilities``: episodes ended by a simulation blow-up;
        ``sim/worker_restarts``: sampling workers that died and were replaced (their
        chunks re-run; always 0 in this process). A learner calls this once per
        iteration and adds the result to its metrics.
        """
        metrics = {
            "sim/instabilities": float(self._instabilities),
            "sim/worker_restarts": float(self._worker_restarts),
        }
        self._instabilities = self._worker_restarts = 0
        return metrics

    # ---------------------------------------------------------------- sampling
    @property
    def act_dim(self) -> int:
        """Action size of the family's envs under this sampler's backend."""
        return backend_action_size(self.family, self.backend)

    def _collect(
        self,
        caller: str,
        actor: Any,
        tasks: Sequence[Task],
        counts: dict[str, int],
        horizon: int | None,
        episodes: int,
        trials: bool,
        deterministic: bool,
        record_states: bool,
    ) -> tuple[int, Rollout]:
        """Check a request and run it on the backend: horizon ``T`` and the :class:`Rollout`
        of its ``B = M * N`` envs, env ``b`` on task ``b // N``.

        ``counts`` names the per-task counts (all must be >= 1); the first is ``N``, how
        many envs every task gets. Every env's initial-state seed comes from the
        sampler's stream; the request is cut into chunks, each with its action noise
        (:mod:`robometa.sampling.chunks`): a single chunk continues the sampler's
        action-noise stream, more chunks get seeds drawn from it.
        """
        if not tasks:
            raise RobometaError(f"{caller}() needs at least one task")
        for name, n in counts.items():
            if n < 1:
                raise RobometaError(f"{name} must be >= 1, got {n}")
        T = self.family.horizon if horizon is None else int(horizon)
        if T < 1:
            raise RobometaError(f"horizon must be >= 1, got {T}")
        M, N = len(tasks), int(next(iter(counts.values())))
        seeds = self._rng.integers(0, 2**31 - 1, size=M * N)
        run, k = runner(self.backend)
        grid = chunk_grid(M, N, k or run.default_chunks(M, N))
        # A stream lives on its device: only a chunk whose policy runs there continues it.
        continues = len(grid) == 1 and run.policy_device(self.device).type == self._gen.device.type
        if continues:
            noise: list[Any] = [self._gen.get_state()]
        else:
            noise = torch.randint(
                0, 2**62, (len(grid),), generator=self._gen, device=self._gen.device
            ).tolist()
        request = Request(N, T, int(episodes), trials, deterministic, record_states)
        pipeline, shape = self.pipeline, None
        if pipeline is None:  # auto (only this process's runner pipelines)
            pipeline = isinstance(run, InProcess) and pipelining(None, self.device, self.nthread)
            if pipeline:  # which way is faster here: time this request
                shape = (M * N, T, int(episodes), trials, len(grid))
                pipeline = self._pipeline_choice.pick(shape)
        context = SamplerContext(self.device, self.nthread, self.torch_threads, pipeline)
        t0 = time.perf_counter()
        result = run.run(self.family, actor, request, make_chunks(tasks, N, seeds, grid, noise), M, context)
        if shape is not None:
            steps = max(1.0, float(result.rollout.masks.sum()))
            self._pipeline_choice.record(shape, pipeline, (time.perf_counter() - t0) / steps)
        if continues:
            self._gen.set_state(result.noise[0])
        self._instabilities += result.rollout.instabilities
        self._worker_restarts += result.worker_restarts
        return T, result.rollout

    def sample(
        self,
        actor: Actor,
        tasks: Sequence[Task],
        episodes_per_task: int,
        horizon: int | None = None,
        deterministic: bool = False,
        record_states: bool | None = None,
    ) -> EpisodeBatch:
        """Run ``episodes_per_task`` episodes of every task; returns an :class:`EpisodeBatch`.

        With ``record_states`` (default: the sampler's ``record_states``) the
        full-physics states ``(M, N, T+1, nstate)`` are attached as ``batch.states``
        (for exact replay; after an episode ends its rows repeat its last state).
        """
        if record_states is None:
            record_states = self.record_states
        counts = {"episodes_per_task": episodes_per_task}
        T, out = self._collect(
            "sample", actor, tasks, counts, horizon, 1, False, deterministic, record_states
        )
        M, N = len(tasks), int(episodes_per_task)

        def per_step(x: np.ndarray) -> Tensor:
            # (T, B, ...) -> (M, N, T, ...)
            return torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, 0, 1))).view(M, N, T, *x.shape[2:])

        def per_episode(x: np.ndarray) -> Tensor:
            # (B, 1, ...) -> (M, N, ...) float32
            return torch.from_numpy(np.ascontiguousarray(x[:, 0], dtype=np.float32)).view(M, N, *x.shape[2:])

        batch = EpisodeBatch(
            obs=per_step(out.obs),
            actions=per_step(out.actions),
            rewards=per_step(out.rewards),
            log_probs=per_step(out.log_probs),
            masks=per_step(out.masks),
            terminated=per_step(out.terminated),
            final_obs=per_episode(out.final_obs),
            success=per_episode(out.success),
            reward_terms={k: per_episode(v) for k, v in out.reward_terms.items()},
            tasks=list(tasks),
        )
        if out.states is not None:
            batch.states = torch.from_numpy(np.ascontiguousarray(out.states[:, 0])).view(M, N, T + 1, -1)
        return batch
