"""Trials for memory-based meta-RL: K consecutive episodes of one task per env.

A *trial* (Duan et al., 2016) is K episodes on the same task with a policy whose
memory persists across them. :class:`TrialSampler` runs M tasks x N trials as
``B = M*N`` envs of one :class:`~robometa.sim.Simulator`, one batched policy forward
and one batched simulator step per control step. Env ``b`` runs task ``b // N``. The
stepping and its bookkeeping are :func:`robometa.sampling.rollout.collect`'s; this
module shapes them into a :class:`TrialBatch`.

Layout: steps are stored on the *trial clock*, ``(M, N, L, ...)`` with
``L = K * T``. When an episode ends (termination or the horizon T) the env is reset
at once and the next episode continues on the next trial step, so the valid steps
of a trial are contiguous from step 0 and only the tail after its K-th episode is
padding (``masks == 0``). ``episode`` gives each step's episode index within the
trial and ``episode_ends`` flags each episode's last step. This is the layout a
recurrent learner wants: one sequence per trial, GAE running across episode
boundaries, and the policy inputs ``(a_{t-1}, r_{t-1}, d_t)`` obtained by shifting
``actions``, ``rewards`` and ``episode_ends`` one step
(:func:`robometa.policies.recurrent.previous_step_inputs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from robometa.sampling.sampler import Sampler
from robometa.tasks.base import Task


class TrialActor(Protocol):
    """A policy with memory that the trial sampler calls once per control step."""

    def initial_state(self, batch: int, device: torch.device) -> Any:
        """Memory of ``batch`` fresh trials."""

    def act(
        self,
        obs: Tensor,
        prev_action: Tensor,
        prev_reward: Tensor,
        done: Tensor,
        state: Any,
        generator: torch.Generator | None = None,
        deterministic: bool = False,
    ) -> tuple[Tensor, Tensor, Any]:
        """Raw ``obs: (B, obs_dim)``, ``prev_action: (B, act_dim)``, ``prev_reward, done: (B,)``
        -> actions ``(B, act_dim)``, log-probs ``(B,)``, next memory."""


@dataclass
class TrialBatch:
    """N trials of K episodes (horizon T) for each of M tasks, on the trial clock ``L = K*T``.

    Padding steps (after a trial's K-th episode ended) have ``masks == 0`` and
    zero observation, action, reward and log-probability.
    """

    obs: Tensor  # (M, N, L, obs_dim) observation the action was taken at
    actions: Tensor  # (M, N, L, act_dim) actions as sampled (before clipping)
    rewards: Tensor  # (M, N, L)
    log_probs: Tensor  # (M, N, L) log pi(a | inputs, memory) of the sampling policy
    masks: Tensor  # (M, N, L) 1.0 on the trial's valid steps
    episode: Tensor  # (M, N, L) int64 episode index 0..K-1 of every step (K-1 on padding)
    episode_ends: Tensor  # (M, N, L) 1.0 on the last step of each episode
    terminated: Tensor  # (M, N, L) 1.0 where an episode ended by termination
    episode_returns: Tensor  # (M, N, K) undiscounted return of each episode
    episode_lengths: Tensor  # (M, N, K) steps of each episode
    success: Tensor  # (M, N, K) 1.0 if the success criterion held at any step of the episode
    horizon: int = 0  # T
    reward_terms: dict[str, Tensor] = field(default_factory=dict)  # name -> (M, N, K) episode sums
    tasks: list[Any] = field(default_factory=list)  # the M tasks
    # (M, N, K, T+1, nstate) float64 physics states per episode, if recorded; after an
    # episode ends its rows repeat its last state
    states: Tensor | None = None

    @property
    def num_tasks(self) -> int:
        return self.obs.shape[0]

    @property
    def trials_per_task(self) -> int:
        return self.obs.shape[1]

    @property
    def episodes_per_trial(self) -> int:
        return self.episode_returns.shape[2]

    @property
    def env_steps(self) -> int:
        return int(self.masks.sum().item())

    def to(self, device: torch.device | str) -> TrialBatch:
        moved = {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in vars(self).items()}
        moved["tasks"] = list(self.tasks)
        moved["reward_terms"] = {k: v.to(device) for k, v in self.reward_terms.items()}
        return TrialBatch(**moved)


class TrialSampler(Sampler):
    """Collects trials with a recurrent policy; same seeding and state as :class:`Sampler`.

    As there, envs whose trial is over are no longer simulated, and simulation
    blow-ups end their episode (the trial goes on) and are counted in
    :meth:`Sampler.pop_metrics`.
    """

    def sample_trials(
        self,
        actor: TrialActor,
        tasks: Sequence[Task],
        trials_per_task: int,
        episodes_per_trial: int,
        horizon: int | None = None,
        deterministic: bool = False,
        record_states: bool | None = None,
    ) -> TrialBatch:
        """Run ``trials_per_task`` trials of ``episodes_per_trial`` episodes on every task.

        The actor's memory starts fresh for every trial (``actor.initial_state``) and
        is carried across the episodes inside it. With ``record_states`` (default:
        the sampler's ``record_states``) the full-physics states of every episode are
        attached as ``batch.states`` ``(M, N, K, T+1, nstate)``, for exact replay
        (after an episode ends its rows repeat its last state).
        """
        if record_states is None:
            record_states = self.record_states
        counts = {"trials_per_task": trials_per_task, "episodes_per_trial": episodes_per_trial}
        M, N, K = len(tasks), int(trials_per_task), int(episodes_per_trial)
        T, out = self._collect(
            "sample_trials", actor, tasks, counts, horizon, K, True, deterministic, record_states
        )
        L = K * T

        def trial_major(x: np.ndarray) -> Tensor:
            # (L, B, ...) -> (M, N, L, ...)
            return torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, 0, 1))).view(M, N, L, *x.shape[2:])

        def per_episode(x: np.ndarray) -> Tensor:
            return torch.from_numpy(x.astype(np.float32)).view(M, N, K)

        return TrialBatch(
            obs=trial_major(out.obs),
            actions=trial_major(out.actions),
            rewards=trial_major(out.rewards),
            log_probs=trial_major(out.log_probs),
            masks=trial_major(out.masks),
            episode=trial_major(out.episode),
            episode_ends=trial_major(out.episode_ends),
            terminated=trial_major(out.terminated),
            episode_returns=per_episode(out.episode_returns),
            episode_lengths=per_episode(out.episode_lengths),
            success=per_episode(out.success),
            horizon=T,
            reward_terms={k: per_episode(v) for k, v in out.reward_terms.items()},
            tasks=list(tasks),
            states=None if out.states is None else torch.from_numpy(out.states).view(M, N, K, T + 1, -1),
        )
