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

Pipelining (:func:`collect_parts`): the batch may come as two or more *parts*, each a
simulator over consecutive columns with its own actor, such that calling the parts'
actors in order gives exactly what one actor over the whole batch gives (the sampler
checks this before it cuts, :mod:`robometa.sampling.chunks`). The parts' physics then
runs on one worker thread, part after part, each on the simulator's own MuJoCo threads
(``mujoco.rollout`` releases the GIL), while the main thread does everything else of
the other parts: their bookkeeping and their policy forward. Every env's trajectory
depends only on its own inputs, the actors are called in part order at every step, and
a part whose envs are all done keeps calling its actor (drawing its noise) for as long
as the loop goes on, exactly as the whole-batch actor does; so the result equals
:func:`collect` over the whole batch, bit for bit.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
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


class _Buffers:
    """The whole batch's arrays, which every part fills in its own columns."""

    def __init__(
        self, B: int, K: int, T: int, obs_dim: int, act_dim: int, state_dim: int, record_states: bool
    ):
        L = K * T
        self.B, self.K, self.T = B, K, T
        self.obs = np.zeros((L, B, obs_dim), dtype=np.float32)
        self.act = np.zeros((L, B, act_dim), dtype=np.float32)
        self.rew = np.zeros((L, B), dtype=np.float32)
        self.logp = np.zeros((L, B), dtype=np.float32)
        self.mask = np.zeros((L, B), dtype=np.float32)
        self.end = np.zeros((L, B), dtype=np.float32)
        self.term = np.zeros((L, B), dtype=np.float32)
        # Per episode, filled when the episode ends from the running sums of the current one.
        self.ep_return = np.zeros((B, K))
        self.ep_length = np.zeros((B, K), dtype=np.int64)
        self.ep_success = np.zeros((B, K), dtype=bool)
        self.ep_terms: dict[str, np.ndarray] = {}
        self.final_obs = np.zeros((B, K, obs_dim), dtype=np.float32)
        self.final_metrics: dict[str, np.ndarray] = {}
        self.states = np.zeros((B, K, T + 1, state_dim)) if record_states else None


class _Part:
    """The loop's state for one simulator (columns ``cols`` of the batch) and its actor.

    A step is :meth:`act` (observation -> actor -> stored), :meth:`launch` (the
    simulator step begins; its physics runs inline, or on ``worker``) and :meth:`finish`
    (the step's results -> bookkeeping, resets of ended episodes).
    """

    def __init__(self, sim: Simulator, actor: RolloutActor, cols: slice, buf: _Buffers):
        self.sim, self.actor, self.cols, self.buf = sim, actor, cols, buf
        self.n = n = cols.stop - cols.start
        # Views of this part's columns of the batch's arrays.
        self.obs_buf, self.act_buf, self.rew_buf = buf.obs[:, cols], buf.act[:, cols], buf.rew[:, cols]
        self.logp_buf, self.mask_buf = buf.logp[:, cols], buf.mask[:, cols]
        self.end_buf, self.term_buf = buf.end[:, cols], buf.term[:, cols]
        self.ep_return, self.ep_length = buf.ep_return[cols], buf.ep_length[cols]
        self.ep_success, self.final_obs = buf.ep_success[cols], buf.final_obs[cols]
        self.states = None if buf.states is None else buf.states[cols]
        self.cur_return = np.zeros(n)
        self.cur_success = np.zeros(n, dtype=bool)
        self.cur_terms: dict[str, np.ndarray] = {}
        self.episode = np.zeros(n, dtype=np.int64)  # current episode of every env (K once its trial is over)
        self.t_in_episode = np.zeros(n, dtype=np.int64)  # steps taken in the current episode
        self.running = np.ones(n, dtype=bool)  # trial not over
        self.live = True  # some env's trial is not over
        self.instabilities = 0
        self.future: Future | None = None

    def start(self) -> None:
        self.obs = self.sim.reset()
        if self.states is not None:
            self.states[:, 0, 0] = self.sim.state
        act_dim = self.buf.act.shape[2]
        self.prev = PreviousStep(
            np.zeros((self.n, act_dim), dtype=np.float32),
            np.zeros(self.n, dtype=np.float32),
            np.zeros(self.n, dtype=np.float32),
        )
        self.memory = self.actor.initial_memory(self.n)

    def act(self, s: int) -> None:
        """The actor's call of step ``s``. A part whose envs are all done still calls
        it (the whole-batch actor would, drawing its noise) but keeps nothing."""
        if not self.live:
            self.actor.act(self.obs, self.memory, self.prev)
            return
        self.obs_buf[s] = self.obs
        self.action, logp, self.memory = self.actor.act(self.obs, self.memory, self.prev)
        self.act_buf[s] = self.action
        if logp is not None:
            self.logp_buf[s] = logp
        self.mask_buf[s] = self.running

    def launch(self, worker: ThreadPoolExecutor | None = None) -> None:
        """Begin the step (envs whose trial is over stay put); its physics on ``worker``."""
        if worker is None:
            self.result = self.sim.step(self.action, active=self.running)
            return
        self.pending = self.sim.begin_step(self.action, active=self.running)  # type: ignore[attr-defined]
        self.future = worker.submit(self.pending.run)

    def wait(self) -> None:
        if self.future is not None:
            future, self.future = self.future, None
            future.result()
            self.result = self.sim.end_step(self.pending)  # type: ignore[attr-defined]

    def finish(self, s: int) -> None:
        """Bookkeeping of step ``s``; afterwards ``live`` says whether a trial goes on."""
        self.wait()
        r, buf, running = self.result, self.buf, self.running
        sim, T, K, cols = self.sim, buf.T, buf.K, self.cols
        episode, t_in_episode = self.episode, self.t_in_episode
        self.instabilities += int(r.unstable.sum())
        self.rew_buf[s] = r.reward
        np.add(self.cur_return, r.reward, out=self.cur_return, where=running)
        for k, v in r.terms.items():
            if k not in self.cur_terms:
                self.cur_terms[k] = np.zeros(self.n)
                buf.ep_terms.setdefault(k, np.zeros((buf.B, K)))
            np.add(self.cur_terms[k], v, out=self.cur_terms[k], where=running)
        np.logical_or(self.cur_success, r.success, out=self.cur_success, where=running)
        t_in_episode += running
        if self.states is not None:
            live = np.flatnonzero(running)
            self.states[live, episode[live], t_in_episode[live]] = sim.state[live]
        ended = running & (r.terminated | (t_in_episode >= T))
        self.end_buf[s] = ended
        self.term_buf[s] = ended & r.terminated
        self.obs = r.obs
        if ended.any():
            e = np.flatnonzero(ended)
            k_e = episode[e]
            self.ep_return[e, k_e] = self.cur_return[e]
            self.ep_length[e, k_e] = t_in_episode[e]
            self.ep_success[e, k_e] = self.cur_success[e]
            for k, v in self.cur_terms.items():
                buf.ep_terms[k][cols][e, k_e] = v[e]
                v[e] = 0.0
            cut = e[~r.terminated[e]]
            self.final_obs[cut, episode[cut]] = r.obs[cut]
            for k, v in r.metrics.items():
                buf.final_metrics.setdefault(k, np.zeros(buf.B, dtype=v.dtype))[cols][e] = v[e]
            self.cur_return[e] = 0.0
            self.cur_success[e] = False
            episode[e] += 1
            running[e] = episode[e] < K
            restart = ended & running
            if restart.any():
                self.obs = sim.reset(restart)
                t_in_episode[restart] = 0
                if self.states is not None:
                    self.states[restart, episode[restart], 0] = sim.state[restart]
            self.live = bool(running.any())
        # What the next step's actor input says about this one (views of the stored rows).
        self.prev = PreviousStep(self.act_buf[s], self.rew_buf[s], self.end_buf[s])


_WORKER: list[ThreadPoolExecutor] = []
_WORKER_LOCK = threading.Lock()


def _worker() -> ThreadPoolExecutor:
    """The process's persistent worker thread that runs pipelined parts' physics, in order."""
    with _WORKER_LOCK:
        if not _WORKER:
            _WORKER.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="robometa-physics"))
        return _WORKER[0]


def _forked() -> None:
    # A forked child has no copy of the thread: it starts its own when it first needs one.
    global _WORKER_LOCK
    _WORKER.clear()
    _WORKER_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forked)


def collect(
    sim: Simulator, actor: RolloutActor, horizon: int, episodes: int = 1, record_states: bool = False
) -> Rollout:
    """Run every env of ``sim`` for ``episodes`` episodes of up to ``horizon`` steps.

    Starts by resetting every env; see the module docstring for the bookkeeping.
    """
    return collect_parts([(sim, actor)], horizon, episodes, record_states)


def collect_parts(
    parts: Sequence[tuple[Simulator, RolloutActor]],
    horizon: int,
    episodes: int = 1,
    record_states: bool = False,
) -> Rollout:
    """:func:`collect` over a batch given as ``parts``, consecutive column blocks, each a
    simulator and the actor of its envs, pipelined (see the module docstring).

    With more than one part, the simulators must step in two phases
    (:func:`robometa.sim.steps_in_two_phases`), and calling the parts' actors in order must give
    exactly what one actor over the whole batch gives; the result is then that actor's
    :func:`collect` over one simulator of the whole batch, bit for bit.
    """
    specs = [sim.spec for sim, _ in parts]
    B, K, T = sum(sp.num_envs for sp in specs), int(episodes), int(horizon)
    L = K * T
    spec = specs[0]
    buf = _Buffers(B, K, T, spec.obs_dim, spec.act_dim, spec.state_dim, record_states)
    loop: list[_Part] = []
    for sim, actor in parts:
        start = loop[-1].cols.stop if loop else 0
        loop.append(_Part(sim, actor, slice(start, start + sim.spec.num_envs), buf))
    for part in loop:
        part.start()
    if len(loop) == 1:
        (part,) = loop
        for s in range(L):
            part.act(s)
            part.launch()
            part.finish(s)
            if not part.live:
                break
    else:
        try:
            _pipelined(loop, L)
        finally:
            for part in loop:  # after an error: let no worker write into the buffers later
                if part.future is not None:
                    part.future.exception()
    return _assemble(buf, sum(p.instabilities for p in loop))


def _pipelined(loop: list[_Part], L: int) -> None:
    """The parts' steps interleaved: part ``i``'s bookkeeping and next policy forward run
    while the physics of the part after it is under way; the worker runs the parts'
    physics in the order they were launched, with no pause while the main thread keeps up.

    The actor calls of a step go in part order. A part that is done has no physics and
    calls its actor only once the loop is known to go on to that step: when it or a part
    before it in this step is still running, else as soon as a later part turns out to be.
    """
    worker = _worker()
    for part in loop:
        part.act(0)
        part.launch(worker)
    for s in range(L - 1):
        going, waiting = False, []
        for part in loop:
            if part.live:
                part.finish(s)
            if not (part.live or going):
                waiting.append(part)  # done: acts once a later part shows the loop goes on
                continue
            going = True
            for idle in waiting:
                idle.act(s + 1)
            waiting.clear()
            part.act(s + 1)
            if part.live:
                part.launch(worker)
        if not going:
            return
    for part in loop:  # the last step (every trial ends by then)
        if part.live:
            part.finish(L - 1)


def _assemble(buf: _Buffers, instabilities: int) -> Rollout:
    K, T = buf.K, buf.T
    # Episode index of every step: the episodes that ended before it (K-1 on padding).
    end_buf = buf.end
    ep_buf = np.minimum(np.cumsum(end_buf, axis=0, dtype=np.int64) - end_buf.astype(np.int64), K - 1)
    # Padding carries no data: zero it so NaNs of a diverged env cannot leak.
    pad = buf.mask == 0
    for b in (buf.obs, buf.act, buf.rew, buf.logp):
        b[pad] = 0.0
    states = buf.states
    if states is not None:
        # After an episode's last step its rows repeat its last state.
        rows = np.minimum(np.arange(T + 1), buf.ep_length[:, :, None])
        states = np.take_along_axis(states, rows[:, :, :, None], axis=2)
    return Rollout(
        obs=buf.obs,
        actions=buf.act,
        rewards=buf.rew,
        log_probs=buf.logp,
        masks=buf.mask,
        episode=ep_buf,
        episode_ends=end_buf,
        terminated=buf.term,
        episode_returns=buf.ep_return,
        episode_lengths=buf.ep_length,
        success=buf.ep_success,
        reward_terms=buf.ep_terms,
        final_obs=buf.final_obs,
        final_metrics=buf.final_metrics,
        states=states,
        instabilities=instabilities,
        horizon=T,
    )
