"""Closed-loop batched sampler: N episodes for each of M tasks in one BatchSim.

All M*N envs step in lockstep: one batched policy forward on ``device`` and one
native ``mujoco.rollout`` call per control step. Env ``b`` runs task ``b // N``.

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
from robometa.sim.batch_sim import BatchSim
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
    """

    def __init__(
        self,
        family: TaskFamily,
        device: str | torch.device = "auto",
        seed: int = 0,
        nthread: int | None = None,
        torch_threads: int | None = 1,
    ):
        self.family = family
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
    def _batch_sim(
        self, caller: str, tasks: Sequence[Task], counts: dict[str, int], horizon: int | None
    ) -> tuple[int, BatchSim]:
        """Check a request and build its simulator: horizon ``T`` and a :class:`BatchSim`.

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
        return T, BatchSim(self.family, env_tasks, seeds=seeds.tolist(), nthread=self.nthread)

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
        (for exact replay; after an episode terminates its rows repeat its last state).
        """
        if record_states is None:
            record_states = self.record_states
        T, sim = self._batch_sim("sample", tasks, {"episodes_per_task": episodes_per_task}, horizon)
        M, N = len(tasks), int(episodes_per_task)
        B = M * N

        obs_dim, act_dim = self.family.obs_dim, sim.layout.nu
        obs_buf = np.zeros((T, B, obs_dim), dtype=np.float32)
        act_buf = np.zeros((T, B, act_dim), dtype=np.float32)
        rew_buf = np.zeros((T, B), dtype=np.float32)
        logp_buf = np.zeros((T, B), dtype=np.float32)
        mask_buf = np.zeros((T, B), dtype=np.float32)
        term_buf = np.zeros((T, B), dtype=np.float32)
        success = np.zeros(B, dtype=bool)
        term_sums: dict[str, np.ndarray] = {}
        states = np.zeros((T + 1, B, sim.layout.nstate)) if record_states else None

        alive = np.ones(B, dtype=bool)
        obs = sim.reset()
        if states is not None:
            states[0] = sim.state
        with torch_threads(self.torch_threads):
            for t in range(T):
                obs_buf[t] = obs
                obs_t = torch.from_numpy(obs_buf[t]).to(self.device).view(M, N, obs_dim)
                action, logp = actor.act(obs_t, self._gen, deterministic)
                act_np = action.reshape(B, act_dim).cpu().numpy()
                act_buf[t] = act_np
                logp_buf[t] = logp.reshape(B).cpu().numpy()
                mask_buf[t] = alive
                r = sim.step(act_np, active=alive)
                self._instabilities += int(r.unstable.sum())
                rew_buf[t] = r.reward
                for k, v in r.terms.items():
                    term_sums[k] = term_sums.get(k, 0.0) + np.where(alive, v, 0.0)
                success |= alive & r.success
                ended = alive & r.terminated
                term_buf[t] = ended
                alive &= ~ended
                obs = r.obs
                if states is not None:
                    states[t + 1] = sim.state
                if not alive.any():  # every episode terminated: the rest is padding
                    break

        # Dead steps carry no data: zero them so NaNs of a diverged env cannot leak.
        dead = mask_buf == 0
        obs_buf[dead] = 0.0
        act_buf[dead] = 0.0
        rew_buf[dead] = 0.0
        logp_buf[dead] = 0.0
        final_obs = np.where(alive[:, None], obs, 0.0).astype(np.float32)

        def shape(x: np.ndarray, *tail: int) -> Tensor:
            # (T, B, ...) -> (M, N, T, ...)
            return torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, 0, 1))).view(M, N, T, *tail)

        batch = EpisodeBatch(
            obs=shape(obs_buf, obs_dim),
            actions=shape(act_buf, act_dim),
            rewards=shape(rew_buf),
            log_probs=shape(logp_buf),
            masks=shape(mask_buf),
            terminated=shape(term_buf),
            final_obs=torch.from_numpy(final_obs).view(M, N, obs_dim),
            success=torch.from_numpy(success.astype(np.float32)).view(M, N),
            reward_terms={k: torch.from_numpy(v.astype(np.float32)).view(M, N) for k, v in term_sums.items()},
            tasks=list(tasks),
        )
        if states is not None:
            batch.states = torch.from_numpy(np.moveaxis(states, 0, 1).copy()).view(M, N, T + 1, -1)
        return batch
