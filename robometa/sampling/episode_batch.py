"""EpisodeBatch: episodes of several tasks as tensors shaped (task, episode, time, ...)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import Tensor


@dataclass
class EpisodeBatch:
    """N episodes of horizon T for each of M tasks.

    Time steps after an episode terminated have ``masks == 0`` and zero
    observation, action, reward and log-probability.
    """

    obs: Tensor  # (M, N, T, obs_dim) observation the action was taken at
    actions: Tensor  # (M, N, T, act_dim) actions as sampled (before clipping)
    rewards: Tensor  # (M, N, T)
    log_probs: Tensor  # (M, N, T) log pi(a|s) of the sampling policy
    masks: Tensor  # (M, N, T) 1.0 while the episode is running, incl. its last step
    terminated: Tensor  # (M, N, T) 1.0 at the step where the episode terminated
    final_obs: Tensor  # (M, N, obs_dim) observation after the last step
    success: Tensor  # (M, N) 1.0 if the success criterion held at any step
    reward_terms: dict[str, Tensor] = field(default_factory=dict)  # name -> (M, N) episode sums
    tasks: list[Any] = field(default_factory=list)  # the M tasks
    # (M, N, T+1, nstate) float64 physics states, if recorded; after an episode ends
    # its rows repeat its last state
    states: Tensor | None = None

    @property
    def num_tasks(self) -> int:
        return self.obs.shape[0]

    @property
    def episodes_per_task(self) -> int:
        return self.obs.shape[1]

    @property
    def horizon(self) -> int:
        return self.obs.shape[2]

    @property
    def returns(self) -> Tensor:
        """Undiscounted episode returns, ``(M, N)``."""
        return (self.rewards * self.masks).sum(-1)

    @property
    def lengths(self) -> Tensor:
        """Episode lengths in steps, ``(M, N)``."""
        return self.masks.sum(-1)

    @property
    def env_steps(self) -> int:
        return int(self.masks.sum().item())

    def _map(self, fn, tasks) -> EpisodeBatch:
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Tensor):
                out[f.name] = fn(v)
            elif f.name == "reward_terms":
                out[f.name] = {k: fn(t) for k, t in v.items()}
        return EpisodeBatch(**out, tasks=tasks)

    def to(self, device: torch.device | str) -> EpisodeBatch:
        return self._map(lambda t: t.to(device), list(self.tasks))

    def task(self, m: int) -> EpisodeBatch:
        """The episodes of task ``m`` alone, keeping a task axis of size 1."""
        return self._map(lambda t: t[m : m + 1], self.tasks[m : m + 1])
