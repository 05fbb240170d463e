"""The rollout loop: every sampler, baseline and expert steps envs through :func:`collect`.

``collect`` runs ``B`` envs of a :class:`~robometa.sim.Simulator` for ``K``
consecutive episodes each (a *trial*; ``K = 1`` for plain episodes), asking a
:class:`RolloutActor` for the whole batch's actions once per control step. It owns
every piece of bookkeeping, so that all consumers agree on it:

* Steps are stored on the *trial clock*: ``L = K * T`` steps, ``T`` the horizon.
  When an env's episode ends (termination, a blow-up, or ``T`` steps) and the trial
  has episodes left, the env is reset at once and its next episode starts on the
  next step; the actor's memory carries on. After its ``K``-th episode an env is
  no longer simulated (``active`` stepping) and its remaining steps are padding
  (``masks == 0``, zero observation / action / reward / log-probability).
  With ``K = 1`` this is exactly an episode sampler.
* Per episode: the undiscounted return, the length, success (the criterion held at
  *any* step of the episode, Meta-World's rule), the sums of the reward terms,
  and the observation after its last step when the horizon cut it (not when it
  terminated, where there is nothing to bootstrap from).
* Recorded states (``record_states``): ``T + 1`` state rows per episode, from its
  initial state on; after an episode ends its rows repeat its last state, so a
  replay shows the env standing still rather than garbage.
* Blow-ups (``StepResult.unstable``) end their episode and are counted.

The loop ends as soon as every env finished its trial.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np

from robometa.sim.simulator import Simulator


class PreviousStep(NamedTuple):
    """What the previous control step said about each env (all zero before the first).

    ``done`` is 1.0 where the previous step ended an episode, i.e. where this step
    starts a new one within the trial. Float32, exactly as stored in :class:`Rollout`.
    """

    action: np.ndarray  # (B, act_dim) float32
    reward: np.ndarray  # (B,) float32
    done: np.ndarray  # (B,) float32


class RolloutActor(Protocol):
    """What :func:`collect` asks for actions; memory is optional.

    A memoryless actor returns ``None`` from :meth:`initial_memory` and ignores
    ``memory`` and ``prev``; an actor with memory (RL²) gets its memory back every
    step, across the episodes of a trial, and fresh memory only per :func:`collect`.
    """

    def initial_memory(self, num_envs: int) -> Any:
        """Memory of ``num_envs`` fresh trials (``None`` for a memoryless actor)."""

    def act(
        self, obs: np.ndarray, memory: Any, prev: PreviousStep
    ) -> tuple[np.ndarray, np.ndarray | None, Any]:
        """``obs: (B, obs_dim)`` float64 -> actions ``(B, act_dim)`` (what the simulator
        gets; stored as float32), log-probabilities ``(B,)`` or ``None``, next memory."""


@dataclass
class Rollout:
    """What :func:`collect` returns: ``B`` envs x ``K`` episodes of horizon ``T``, ``L = K*T``.

    Per-step arrays are time-major, ``(L, B, ...)``; per-episode ones env-major,
    ``(B, K, ...)``.
    """

    obs: np.ndarray  # (L, B, obs_dim) float32 observation each action was taken at
    actions: np.ndarray  # (L, B, act_dim) float32 actions as the actor gave them (before clipping)
    rewards: np.ndarray  # (L, B) float32
    log_probs: np.ndarray  # (L, B) float32 (0 where the actor gives none)
    masks: np.ndarray  # (L, B) float32: 1.0 on the trial's valid steps
    episode: np.ndarray  # (L, B) int64 episode index 0..K-1 of every step (K-1 on padding)
    episode_ends: np.ndarray  # (L, B) float32: 1.0 on the last step of each episode
    terminated: np.ndarray  # (L, B) float32: 1.0 where an episode ended by termination
    episode_returns: np.ndarray  # (B, K) float64 undiscounted returns
    episode_lengths: np.ndarray  # (B, K) int64 steps
    success: np.ndarray  # (B, K) bool: the success criterion held at any step
    reward_terms: dict[str, np.ndarray]  # name -> (B, K) float64 episode sums
    final_obs: np.ndarray  # (B, K, obs_dim) float32 observation after a horizon-cut episode, else 0
    final_metrics: dict[str, np.ndarray]  # name -> (B,) the simulator's metrics at each env's last step
    states: np.ndarray | None  # (B, K, T+1, state_dim) float64, if recorded
    instabilities: int  # steps on which an env blew up
    horizon: int  # T


def collect(
    sim: Simulator, actor: RolloutActor, horizon: int, episodes: int = 1, record_states: bool = False
) -> Rollout:
    """Run every env of ``sim`` for ``episodes`` episodes of up to ``horizon`` steps.

    Starts by resetting every env; see the module docstring for the bookkeeping.
    """
    spec = sim.spec
    B, K, T = spec.num_envs, int(episodes), int(horizon)
    L = K * T
    obs_buf = np.zeros((L, B, spec.obs_dim), dtype=np.float32)
    act_buf = np.zeros((L, B, spec.act_dim), dtype=np.float32)
    rew_buf = np.zeros((L, B), dtype=np.float32)
    logp_buf = np.zeros((L, B), dtype=np.float32)
    mask_buf = np.zeros((L, B), dtype=np.float32)
    end_buf = np.zeros((L, B), dtype=np.float32)
    term_buf = np.zeros((L, B), dtype=np.float32)
    # Per episode, filled when the episode ends from the running sums of the current one.
    ep_return = np.zeros((B, K))
    ep_length = np.zeros((B, K), dtype=np.int64)
    ep_success = np.zeros((B, K), dtype=bool)
    ep_terms: dict[str, np.ndarray] = {}
    final_obs = np.zeros((B, K, spec.obs_dim), dtype=np.float32)
    final_metrics: dict[str, np.ndarray] = {}
    cur_return = np.zeros(B)
    cur_success = np.zeros(B, dtype=bool)
    cur_terms: dict[str, np.ndarray] = {}

    episode = np.zeros(B, dtype=np.int64)  # current episode of every env (K once its trial is over)
    t_in_episode = np.zeros(B, dtype=np.int64)  # steps taken in the current episode
    running = np.ones(B, dtype=bool)  # trial not over
    instabilities = 0
    obs = sim.reset()
    states = np.zeros((B, K, T + 1, spec.state_dim)) if record_states else None
    if states is not None:
        states[:, 0, 0] = sim.state
    prev = PreviousStep(
        np.zeros((B, spec.act_dim), dtype=np.float32),
        np.zeros(B, dtype=np.float32),
        np.zeros(B, dtype=np.float32),
    )
    memory = actor.initial_memory(B)
    for s in range(L):
        obs_buf[s] = obs
        action, logp, memory = actor.act(obs, memory, prev)
        act_buf[s] = action
        if logp is not None:
            logp_buf[s] = logp
        mask_buf[s] = running
        r = sim.step(action, active=running)  # envs whose trial is over stay put
        instabilities += int(r.unstable.sum())
        rew_buf[s] = r.reward
        np.add(cur_return, r.reward, out=cur_return, where=running)
        for k, v in r.terms.items():
            if k not in cur_terms:
                cur_terms[k], ep_terms[k] = np.zeros(B), np.zeros((B, K))
            np.add(cur_terms[k], v, out=cur_terms[k], where=running)
        np.logical_or(cur_success, r.success, out=cur_success, where=running)
        t_in_episode += running
        if states is not None:
            live = np.flatnonzero(running)
            states[live, episode[live], t_in_episode[live]] = sim.state[live]
        ended = running & (r.terminated | (t_in_episode >= T))
        end_buf[s] = ended
        term_buf[s] = ended & r.terminated
        obs = r.obs
        if ended.any():
            e = np.flatnonzero(ended)
            k_e = episode[e]
            ep_return[e, k_e] = cur_return[e]
            ep_length[e, k_e] = t_in_episode[e]
            ep_success[e, k_e] = cur_success[e]
            for k, v in cur_terms.items():
                ep_terms[k][e, k_e] = v[e]
                v[e] = 0.0
            cut = e[~r.terminated[e]]
            final_obs[cut, episode[cut]] = r.obs[cut]
            for k, v in r.metrics.items():
                final_metrics.setdefault(k, np.zeros(B, dtype=v.dtype))[e] = v[e]
            cur_return[e] = 0.0
            cur_success[e] = False
            episode[e] += 1
            running[e] = episode[e] < K
            restart = ended & running
            if restart.any():
                obs = sim.reset(restart)
                t_in_episode[restart] = 0
                if states is not None:
                    states[restart, episode[restart], 0] = sim.state[restart]
            if not running.any():
                break
        # What the next step's actor input says about this one (views of the stored rows).
        prev = PreviousStep(act_buf[s], rew_buf[s], end_buf[s])

    # Episode index of every step: the episodes that ended before it (K-1 on padding).
    ep_buf = np.minimum(np.cumsum(end_buf, axis=0, dtype=np.int64) - end_buf.astype(np.int64), K - 1)
    # Padding carries no data: zero it so NaNs of a diverged env cannot leak.
    pad = mask_buf == 0
    for buf in (obs_buf, act_buf, rew_buf, logp_buf):
        buf[pad] = 0.0
    if states is not None:
        # After an episode's last step its rows repeat its last state.
        rows = np.minimum(np.arange(T + 1), ep_length[:, :, None])
        states = np.take_along_axis(states, rows[:, :, :, None], axis=2)
    return Rollout(
        obs=obs_buf,
        actions=act_buf,
        rewards=rew_buf,
        log_probs=logp_buf,
        masks=mask_buf,
        episode=ep_buf,
        episode_ends=end_buf,
        terminated=term_buf,
        episode_returns=ep_return,
        episode_lengths=ep_length,
        success=ep_success,
        reward_terms=ep_terms,
        final_obs=final_obs,
        final_metrics=final_metrics,
        states=states,
        instabilities=instabilities,
        horizon=T,
    )
