"""Trials for memory-based meta-RL: K consecutive episodes of one task per env.

A *trial* (Duan et al., 2016) is K episodes on the same task with a policy whose
memory persists across them. :class:`TrialSampler` runs M tasks x N trials as
``B = M*N`` envs of one :class:`~robometa.sim.BatchSim`, one batched policy forward
and one native rollout call per control step. Env ``b`` runs task ``b // N``.

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

from robometa.sampling.sampler import Sampler, torch_threads
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
    tasks: list[Any] = field(default_factory=list)  # the M tasks
    states: Tensor | None = None  # (M, N, K, T+1, nstate) float64 physics states per episode, if recorded

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
        (rows after an early termination stay 0).
        """
        if record_states is None:
            record_states = self.record_states
        counts = {"trials_per_task": trials_per_task, "episodes_per_trial": episodes_per_trial}
        T, sim = self._batch_sim("sample_trials", tasks, counts, horizon)
        M, N, K = len(tasks), int(trials_per_task), int(episodes_per_trial)
        B, L = M * N, K * T

        obs_dim, act_dim = self.family.obs_dim, sim.layout.nu
        obs_buf = np.zeros((L, B, obs_dim), dtype=np.float32)
        act_buf = np.zeros((L, B, act_dim), dtype=np.float32)
        rew_buf = np.zeros((L, B), dtype=np.float32)
        logp_buf = np.zeros((L, B), dtype=np.float32)
        mask_buf = np.zeros((L, B), dtype=np.float32)
        ep_buf = np.full((L, B), K - 1, dtype=np.int64)
        end_buf = np.zeros((L, B), dtype=np.float32)
        term_buf = np.zeros((L, B), dtype=np.float32)
        ep_return = np.zeros((B, K))
        ep_length = np.zeros((B, K))
        ep_success = np.zeros((B, K), dtype=bool)

        rows = np.arange(B)
        episode = np.zeros(B, dtype=np.int64)  # current episode of every env
        t_in_episode = np.zeros(B, dtype=np.int64)
        running = np.ones(B, dtype=bool)  # trial not finished
        obs = sim.reset()
        states = np.zeros((B, K, T + 1, sim.layout.nstate)) if record_states else None
        if states is not None:
            states[:, 0, 0] = sim.state
        dev = self.device
        prev_action = torch.zeros(B, act_dim, device=dev)
        prev_reward = torch.zeros(B, device=dev)
        done = torch.zeros(B, device=dev)
        with torch_threads(self.torch_threads):
            memory = actor.initial_state(B, dev)
            for s in range(L):
                obs_buf[s] = obs
                obs_t = torch.from_numpy(obs_buf[s]).to(dev)
                action, logp, memory = actor.act(
                    obs_t, prev_action, prev_reward, done, memory, self._gen, deterministic
                )
                act_np = action.cpu().numpy().astype(np.float32, copy=False)
                act_buf[s] = act_np
                logp_buf[s] = logp.cpu().numpy()
                mask_buf[s] = running
                ep_buf[s] = np.minimum(episode, K - 1)
                # Envs whose trial is over stay put (their steps are padding).
                r = sim.step(act_np, active=running)
                self._instabilities += int(r.unstable.sum())
                rew_buf[s] = r.reward
                live = rows[running]
                ep_return[live, episode[live]] += r.reward[live]
                ep_length[live, episode[live]] += 1
                ep_success[live, episode[live]] |= r.success[live]
                t_in_episode += running
                if states is not None:
                    states[live, episode[live], t_in_episode[live]] = sim.state[live]
                ended = running & (r.terminated | (t_in_episode >= T))
                end_buf[s] = ended
                term_buf[s] = ended & r.terminated
                episode += ended
                running &= episode < K
                restart = ended & running
                obs = sim.reset(restart) if restart.any() else r.obs
                t_in_episode[restart] = 0
                if states is not None and restart.any():
                    states[restart, episode[restart], 0] = sim.state[restart]
                if not running.any():
                    break
                # What the next step's input says about this one; float32 exactly as
                # stored, so learning recomputes bit-identical inputs.
                prev_action = torch.from_numpy(act_buf[s]).to(dev)
                prev_reward = torch.from_numpy(rew_buf[s]).to(dev)
                done = torch.from_numpy(end_buf[s]).to(dev)

        # Padding carries no data: zero it so NaNs of a diverged env cannot leak.
        pad = mask_buf == 0
        for buf in (obs_buf, act_buf, rew_buf, logp_buf):
            buf[pad] = 0.0

        def trial_major(x: np.ndarray, *tail: int) -> Tensor:
            # (L, B, ...) -> (M, N, L, ...)
            return torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, 0, 1))).view(M, N, L, *tail)

        def per_episode(x: np.ndarray) -> Tensor:
            return torch.from_numpy(x.astype(np.float32)).view(M, N, K)

        return TrialBatch(
            obs=trial_major(obs_buf, obs_dim),
            actions=trial_major(act_buf, act_dim),
            rewards=trial_major(rew_buf),
            log_probs=trial_major(logp_buf),
            masks=trial_major(mask_buf),
            episode=trial_major(ep_buf),
            episode_ends=trial_major(end_buf),
            terminated=trial_major(term_buf),
            episode_returns=per_episode(ep_return),
            episode_lengths=per_episode(ep_length),
            success=per_episode(ep_success),
            horizon=T,
            tasks=list(tasks),
            states=None if states is None else torch.from_numpy(states).view(M, N, K, T + 1, -1),
        )
