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

Simulation blow-ups (MuJoCo's instability resets, see :mod:`robometa.sim.batch_sim`)
end their episode with reward 0 and are counted; :meth:`Sampler.pop_metrics` hands
the count to the learner, which logs it as ``sim/instabilities``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from robometa.device import resolve_device
from robometa.errors import RobometaError
from robometa.sampling.episode_batch import EpisodeBatch
from robometa.sampling.rollout import PreviousStep, collect
from robometa.sim import Simulator, action_size, check_backend, make_simulator
from robometa.tasks.base import Task, TaskFamily


class Actor(Protocol):
    """What the sampler calls once per control step for the whole batch."""

    def act(
        self, obs: Tensor, generator: torch.Generator | None = None, deterministic: bool = False
    ) -> tuple[Tensor, Tensor]:
        """``obs: (M, N, obs_dim)`` -> actions ``(M, N, act_dim)``, log-probs ``(M, N)``."""


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class Sampler:
    """Collects episodes of a family's tasks with a torch policy.

    Args:
        family: the task family.
        device: where the policy runs: ``auto`` | ``cpu`` | ``cuda[:N]``.
        seed: seeds the initial-state noise and the action noise; the stream
            continues across calls and is part of :meth:`state_dict`.
        nthread: MuJoCo rollout threads (``None``: all cores for big batches).
        torch_threads: torch intra-op threads while sampling on CPU (``None``: leave).
        backend: the simulator backend (:func:`robometa.sim.simulator_names`).
    """

    def __init__(
        self,
        family: TaskFamily,
        device: str | torch.device = "auto",
        seed: int = 0,
        nthread: int | None = None,
        torch_threads: int | None = 1,
        backend: str = "batch",
    ):
        self.family = family
        self.backend = check_backend(backend)
        self.device = resolve_device(device)
        self.nthread = nthread
        self.torch_threads = torch_threads if self.device.type == "cpu" else None
        # Default of sample(record_states=...): evaluation turns it on to replay exactly.
        self.record_states = False
        self._rng = np.random.default_rng(seed)
        self._gen = torch.Generator(device=self.device)
        self._gen.manual_seed(int(seed))
        self._instabilities = 0  # since the last pop_metrics()

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {"rng": self._rng.bit_generator.state, "torch_gen": self._gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state["rng"]
        self._gen.set_state(state["torch_gen"])

    def pop_metrics(self) -> dict[str, float]:
        """Counters since the previous call, keyed by TensorBoard tag; resets them.

        ``sim/instabilities``: episodes ended by a simulation blow-up. A learner calls
        this once per iteration and adds the result to its metrics.
        """
        metrics = {"sim/instabilities": float(self._instabilities)}
        self._instabilities = 0
        return metrics

    # ---------------------------------------------------------------- sampling
    @property
    def act_dim(self) -> int:
        """Action size of the family's envs under this sampler's backend."""
        return action_size(self.family, self.backend)

    def _simulator(
        self, caller: str, tasks: Sequence[Task], counts: dict[str, int], horizon: int | None
    ) -> tuple[int, Simulator]:
        """Check a request and build its simulator: horizon ``T`` and the backend's :class:`Simulator`.

        ``counts`` names the per-task counts (all must be >= 1); the first is how many
        envs every task gets, each env seeded from the sampler's stream.
        """
        if not tasks:
            raise RobometaError(f"{caller}() needs at least one task")
        for name, n in counts.items():
            if n < 1:
                raise RobometaError(f"{name} must be >= 1, got {n}")
        T = self.family.horizon if horizon is None else int(horizon)
        if T < 1:
            raise RobometaError(f"horizon must be >= 1, got {T}")
        copies = int(next(iter(counts.values())))
        seeds = self._rng.integers(0, 2**31 - 1, size=len(tasks) * copies)
        env_tasks = [t for t in tasks for _ in range(copies)]
        return T, make_simulator(self.family, env_tasks, seeds.tolist(), self.nthread, self.backend)

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
        T, sim = self._simulator("sample", tasks, {"episodes_per_task": episodes_per_task}, horizon)
        M, N = len(tasks), int(episodes_per_task)
        policy = _EpisodeActor(actor, M, N, self.device, self._gen, deterministic)
        with torch_threads(self.torch_threads):
            out = collect(sim, policy, T, 1, record_states)
        self._instabilities += out.instabilities

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


class _EpisodeActor:
    """An :class:`Actor` seen by the rollout loop: a batch of ``B = M*N`` envs, no memory."""

    def __init__(
        self, actor: Actor, M: int, N: int, device: torch.device, gen: torch.Generator, deterministic: bool
    ):
        self.actor, self.M, self.N = actor, M, N
        self.device, self.gen, self.deterministic = device, gen, deterministic

    def initial_memory(self, num_envs: int) -> None:
        return None

    def act(self, obs: np.ndarray, memory: None, prev: PreviousStep) -> tuple[np.ndarray, np.ndarray, None]:
        B = self.M * self.N
        obs_t = torch.from_numpy(obs.astype(np.float32)).to(self.device).view(self.M, self.N, -1)
        action, logp = self.actor.act(obs_t, self.gen, self.deterministic)
        return action.reshape(B, -1).cpu().numpy(), logp.reshape(B).cpu().numpy(), None
