"""Chunks: one sampling request cut into pieces that each carry their own seeds.

A request asks for ``N`` envs (episodes, or trials of ``K`` episodes) of each of ``M``
tasks; env ``b = m * N + n`` runs task ``m``. A :class:`Chunk` is a block of it, a
range of tasks times a range of their envs (:func:`chunk_grid`), and carries all the
randomness its envs use:

* the initial-state seed of every env, drawn by the sampler for the whole request
  exactly as an unchunked sampler draws them (so each env starts from the same
  states however the request is cut);
* its action noise: with one chunk, the sampler's own action-noise stream (its state
  travels with the chunk and the advanced state comes back), so a single chunk *is*
  the unchunked sampler; with ``k > 1`` chunks, a fresh ``torch.Generator`` per chunk,
  seeded with ``k`` numbers drawn from the sampler's stream.

A chunk's episodes depend on nothing else: each env's trajectory depends only on its
task, seed and actions (BatchSim steps envs independently), and the policy is called
once per step *per chunk*, on that chunk's rows alone and with its own generator. So
chunks may share a simulator or not, run in this process or on any worker, in any
grouping, and be re-run after a failure: the episodes are the same bit for bit (on
the same CPU type and torch build). A sampler's results depend on how many chunks it
cuts a request into, never on how many workers run them.

:func:`run_chunks` runs a group of chunks through the one rollout loop
(:func:`~robometa.sampling.rollout.collect`): one simulator over all their envs, one
batched step per control step, one policy call per chunk. :func:`scatter` puts the
groups' columns back in request order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from robometa.sampling.rollout import PreviousStep, Rollout, RolloutActor, collect
from robometa.sim import make_simulator

NoiseSource = int | Tensor
"""A chunk's action noise: a seed (``int``) or the state of the stream it continues (``ByteTensor``)."""


@runtime_checkable
class TaskSliceable(Protocol):
    """An actor whose weights differ per task: the actor of tasks ``start:stop`` of its batch.

    Chunks that hold part of a request's tasks call it; an actor without it uses the
    same weights for every task and is shared by all chunks as it is.
    """

    def for_tasks(self, start: int, stop: int) -> Any: ...


# ------------------------------------------------------------------ the pieces


def split(n: int, parts: int) -> list[range]:
    """``range(n)`` cut into ``parts`` contiguous ranges, the first ``n % parts`` one longer."""
    size, extra = divmod(n, parts)
    out, start = [], 0
    for i in range(parts):
        stop = start + size + (1 if i < extra else 0)
        out.append(range(start, stop))
        start = stop
    return out


def chunk_grid(num_tasks: int, copies: int, chunks: int) -> list[tuple[range, range]]:
    """The blocks ``(tasks, envs)`` of ``num_tasks x copies`` envs cut into
    ``min(chunks, num_tasks * copies)`` blocks, ordered task-major as the request's envs.

    ``chunks <= num_tasks``: groups of whole tasks. More chunks than tasks: every task
    alone, its ``copies`` envs cut into ``chunks // num_tasks`` ranges, one more for the
    first ``chunks % num_tasks`` tasks (never more ranges than envs).
    """
    if chunks <= num_tasks:
        return [(t, range(copies)) for t in split(num_tasks, chunks)]
    per_task, extra = divmod(chunks, num_tasks)
    return [
        (range(m, m + 1), e)
        for m in range(num_tasks)
        for e in split(copies, min(copies, per_task + (1 if m < extra else 0)))
    ]


@dataclass(frozen=True)
class Chunk:
    """A block of a request: its tasks ``tasks`` (indices into the request's), the env
    indices ``envs`` within each of them, and the randomness of its envs."""

    tasks: range
    envs: range
    task_records: tuple[Any, ...]  # the tasks themselves, one per index in ``tasks``
    seeds: tuple[int, ...]  # initial-state seed of each env, task-major: (len(tasks) * len(envs),)
    noise: NoiseSource

    @property
    def num_envs(self) -> int:
        return len(self.tasks) * len(self.envs)

    def rows(self, copies: int) -> np.ndarray:
        """Its envs' indices ``(num_envs,)`` in a request of ``copies`` envs per task, task-major."""
        return (np.asarray(self.tasks)[:, None] * copies + np.asarray(self.envs)[None, :]).reshape(-1)


@dataclass(frozen=True)
class Request:
    """What every chunk of one sampling call shares."""

    copies: int  # N: envs per task of the whole request
    horizon: int  # T: control steps per episode
    episodes: int  # K: episodes per env (a trial); 1 for plain episodes
    trials: bool  # the actor keeps memory across a trial (TrialActor), else an episode Actor
    deterministic: bool  # mean actions, no noise
    record_states: bool


def make_chunks(
    tasks: Sequence[Any],
    copies: int,
    seeds: Sequence[int],
    grid: Sequence[tuple[range, range]],
    noise: Sequence[NoiseSource],
) -> list[Chunk]:
    """The chunks of a request of ``copies`` envs per task: ``seeds`` one per env of the
    request (task-major), ``noise`` one per block of ``grid``."""
    seeds = np.asarray(seeds).reshape(len(tasks), copies)
    return [
        Chunk(
            t,
            e,
            tuple(tasks[m] for m in t),
            tuple(int(s) for s in seeds[t.start : t.stop, e.start : e.stop].reshape(-1)),
            z,
        )
        for (t, e), z in zip(grid, noise)
    ]


# ------------------------------------------------------------------ actors the rollout loop sees


class EpisodeActor:
    """An episode ``Actor`` (``act(obs (M, N, obs_dim), generator, deterministic)``) seen by
    :func:`collect`: ``B = M * N`` envs, no memory; observations float32 on ``device``."""

    def __init__(
        self, actor: Any, M: int, N: int, device: torch.device, gen: torch.Generator, deterministic: bool
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


class TrialActor:
    """A ``TrialActor`` (recurrent, memory across a trial's episodes) seen by :func:`collect`:
    torch in and out on ``device``, memory carried."""

    def __init__(self, actor: Any, device: torch.device, gen: torch.Generator, deterministic: bool):
        self.actor, self.device, self.gen, self.deterministic = actor, device, gen, deterministic

    def initial_memory(self, num_envs: int) -> Any:
        return self.actor.initial_state(num_envs, self.device)

    def act(self, obs: np.ndarray, memory: Any, prev: PreviousStep) -> tuple[np.ndarray, np.ndarray, Any]:
        dev = self.device
        action, logp, memory = self.actor.act(
            torch.from_numpy(obs.astype(np.float32)).to(dev),
            torch.from_numpy(prev.action).to(dev),
            torch.from_numpy(prev.reward).to(dev),
            torch.from_numpy(prev.done).to(dev),
            memory,
            self.gen,
            self.deterministic,
        )
        # float32 as stored: learning recomputes the policy inputs bit-identically.
        return action.cpu().numpy().astype(np.float32, copy=False), logp.cpu().numpy(), memory


class _Stacked:
    """Several chunks' actors over consecutive rows of one simulator: one call each per step."""

    def __init__(self, parts: Sequence[RolloutActor], sizes: Sequence[int]):
        self.parts = list(parts)
        ends = np.cumsum(sizes)
        self.rows = [slice(int(e - n), int(e)) for e, n in zip(ends, sizes)]

    def initial_memory(self, num_envs: int) -> list[Any]:
        return [p.initial_memory(r.stop - r.start) for p, r in zip(self.parts, self.rows)]

    def act(
        self, obs: np.ndarray, memory: list[Any], prev: PreviousStep
    ) -> tuple[np.ndarray, np.ndarray, list[Any]]:
        actions, logps, memories = [], [], []
        for part, r, mem in zip(self.parts, self.rows, memory):
            a, logp, mem = part.act(obs[r], mem, PreviousStep(prev.action[r], prev.reward[r], prev.done[r]))
            actions.append(a)
            logps.append(np.zeros(r.stop - r.start, dtype=np.float32) if logp is None else logp)
            memories.append(mem)
        return np.concatenate(actions), np.concatenate(logps), memories


def generator(noise: NoiseSource, device: torch.device) -> torch.Generator:
    """The action-noise generator of a chunk, on ``device``."""
    gen = torch.Generator(device=device)
    if isinstance(noise, Tensor):
        gen.set_state(noise)
    else:
        gen.manual_seed(int(noise))
    return gen


def chunk_actor(actor: Any, chunk: Chunk, num_tasks: int) -> Any:
    """The actor of ``chunk``'s tasks: sliced when it has per-task weights and the chunk
    holds part of the request's ``num_tasks`` tasks."""
    if isinstance(actor, TaskSliceable) and len(chunk.tasks) < num_tasks:
        return actor.for_tasks(chunk.tasks.start, chunk.tasks.stop)
    return actor


# ------------------------------------------------------------------ running and gathering


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Torch intra-op threads set to ``n`` inside the block (``None``: leave), restored after."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def run_chunks(
    family: Any,
    actor: Any,
    request: Request,
    chunks: Sequence[Chunk],
    num_tasks: int,
    device: torch.device,
    nthread: int | None = None,
    sim_backend: str = "batch",
) -> tuple[Rollout, list[Tensor]]:
    """Run ``chunks`` of a request over ``num_tasks`` tasks together, policy on ``device``.

    One simulator (backend ``sim_backend``) holds all their envs, chunk after chunk;
    :func:`collect` steps it and calls each chunk's actor on that chunk's rows. Returns
    the :class:`Rollout` of those envs (columns in chunk order) and every chunk's final
    generator state (for the chunk that continues the sampler's stream, its new state).
    """
    env_tasks = [task for c in chunks for task in c.task_records for _ in c.envs]
    seeds = [s for c in chunks for s in c.seeds]
    sim = make_simulator(family, env_tasks, seeds, nthread, sim_backend)
    gens = [generator(c.noise, device) for c in chunks]
    parts: list[RolloutActor] = []
    for c, gen in zip(chunks, gens):
        a = chunk_actor(actor, c, num_tasks)
        if request.trials:
            parts.append(TrialActor(a, device, gen, request.deterministic))
        else:
            parts.append(EpisodeActor(a, len(c.tasks), len(c.envs), device, gen, request.deterministic))
    loop_actor = parts[0] if len(parts) == 1 else _Stacked(parts, [c.num_envs for c in chunks])
    out = collect(sim, loop_actor, request.horizon, request.episodes, request.record_states)
    return out, [g.get_state() for g in gens]


_PER_STEP = ("obs", "actions", "rewards", "log_probs", "masks", "episode", "episode_ends", "terminated")
_PER_ENV = ("episode_returns", "episode_lengths", "success", "final_obs", "states")


def scatter(parts: Sequence[tuple[np.ndarray, Rollout]], num_envs: int, copy: bool = False) -> Rollout:
    """One :class:`Rollout` of ``num_envs`` envs from groups' rollouts and their env indices.

    ``parts[i] = (rows, rollout)``: the rollout's column ``j`` is env ``rows[j]``. A
    single group holding every env in order is returned as it is, unless ``copy``
    (for arrays that are not the caller's to keep, e.g. read-only ones from Ray).
    """
    if not copy and len(parts) == 1 and np.array_equal(parts[0][0], np.arange(num_envs)):
        return parts[0][1]
    first = parts[0][1]
    out: dict[str, Any] = {}
    for name in _PER_STEP:
        v = getattr(first, name)
        buf = np.zeros((v.shape[0], num_envs, *v.shape[2:]), dtype=v.dtype)
        for rows, r in parts:
            buf[:, rows] = getattr(r, name)
        out[name] = buf
    for name in _PER_ENV:
        v = getattr(first, name)
        if v is None:
            out[name] = None
            continue
        buf = np.zeros((num_envs, *v.shape[1:]), dtype=v.dtype)
        for rows, r in parts:
            buf[rows] = getattr(r, name)
        out[name] = buf
    for name in ("reward_terms", "final_metrics"):
        merged: dict[str, np.ndarray] = {}
        for rows, r in parts:
            for k, v in getattr(r, name).items():
                merged.setdefault(k, np.zeros((num_envs, *v.shape[1:]), dtype=v.dtype))[rows] = v
        out[name] = merged
    out["instabilities"] = sum(r.instabilities for _, r in parts)
    out["horizon"] = first.horizon
    assert set(out) == {f.name for f in fields(Rollout)}
    return Rollout(**out)
