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

Chunks overlap nothing by themselves: their policy calls and the batched physics step
follow each other. Overlap is :func:`run_chunks`'s ``pipeline``: the envs are cut in two
parts, each with its own simulator, and the loop runs one part's physics (on all the
simulator's threads) from a worker thread while the main thread runs the other's policy
(:func:`~robometa.sampling.rollout.collect_parts`). The cut must leave the results
unchanged (:func:`split_actor`): between chunks it does by construction; inside one
chunk, whose action noise is one draw per step for all its envs, it is taken only where a
check shows that the two parts' calls, one after the other on the same generator, give
the whole chunk's actions, log-probabilities and generator state bit for bit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from robometa.sampling.rollout import PreviousStep, Rollout, RolloutActor, collect, collect_parts
from robometa.sim import make_simulator, steps_in_two_phases
from robometa.sim.batch_sim import default_nthread

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

    def split(self, cut: int, gen: torch.Generator | None = None) -> tuple[EpisodeActor, EpisodeActor] | None:
        """Actors of rows ``[0, cut)`` and ``[cut, B)`` sharing generator ``gen`` (default:
        this one's): a cut between tasks, or inside the task when there is one; else ``None``.
        Whether calling them in turn equals calling this one is :func:`split_actor`'s check."""
        M, N, gen = self.M, self.N, self.gen if gen is None else gen
        if cut % N == 0 and 0 < cut < M * N:
            c = cut // N
            return (
                EpisodeActor(_task_actor(self.actor, 0, c, M), c, N, self.device, gen, self.deterministic),
                EpisodeActor(
                    _task_actor(self.actor, c, M, M), M - c, N, self.device, gen, self.deterministic
                ),
            )
        if M == 1 and 0 < cut < N:
            return (
                EpisodeActor(self.actor, 1, cut, self.device, gen, self.deterministic),
                EpisodeActor(self.actor, 1, N - cut, self.device, gen, self.deterministic),
            )
        return None


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

    def split(self, cut: int) -> tuple[RolloutActor, RolloutActor]:
        """The chunks before row ``cut`` (a boundary between them) and those after."""
        j = [r.stop for r in self.rows].index(cut) + 1
        sizes = [r.stop - r.start for r in self.rows]

        def stack(parts: list[RolloutActor], n: list[int]) -> RolloutActor:
            return parts[0] if len(parts) == 1 else _Stacked(parts, n)

        return stack(self.parts[:j], sizes[:j]), stack(self.parts[j:], sizes[j:])

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


def _task_actor(actor: Any, start: int, stop: int, num_tasks: int) -> Any:
    """The actor of tasks ``start:stop`` of ``num_tasks``: sliced when it has per-task weights."""
    if isinstance(actor, TaskSliceable) and stop - start < num_tasks:
        return actor.for_tasks(start, stop)
    return actor


def chunk_actor(actor: Any, chunk: Chunk, num_tasks: int) -> Any:
    """The actor of ``chunk``'s tasks: sliced when it has per-task weights and the chunk
    holds part of the request's ``num_tasks`` tasks."""
    return _task_actor(actor, chunk.tasks.start, chunk.tasks.stop, num_tasks)


# ------------------------------------------------------------------ pipelining

MIN_PART = 8  # envs in each part of a pipelined batch, at least
_NOISE_BLOCK = 16  # torch's CPU normal sampler transforms its draws in blocks of 16 values
_TRIES = 3  # cuts inside a chunk checked, at most


def pipelining(pipeline: bool | None, device: torch.device, nthread: int | None) -> bool:
    """Whether to try cutting a batch in two pipelined parts.

    ``pipeline``: ``False`` never, ``True`` wherever the batch can be cut, ``None`` (auto)
    where the policy runs on the CPU and the simulator may use two threads or more
    (``nthread``, ``None`` meaning all cores): with one, the main thread's work and the
    physics would only take turns on the same core.
    """
    if pipeline is not None:
        return bool(pipeline)
    threads = default_nthread() if nthread is None else int(nthread)
    return device.type == "cpu" and threads >= 2


class PipelineChoice:
    """A sampler's ``pipeline=None`` (auto): pipelined or plain, whichever is faster here.

    Both give the same episodes, so the choice is only one of speed, and that depends on
    the machine: the overlap pays where cores are idle, while on a machine that other jobs
    keep busy the pipeline's extra calls may cost more than it saves. So the sampler times
    its own requests, per request shape: the first runs plain, the second pipelined, the
    next ones whichever has the lower running mean of seconds per env-step, and every
    :attr:`PROBE`-th one the other way again, to follow a machine whose load changes.
    """

    PROBE = 8

    def __init__(self) -> None:
        self._stats: dict[Any, list[Any]] = {}  # shape -> [plain s/step, pipelined s/step, requests]

    def pick(self, shape: Any) -> bool:
        """Whether the next request of this shape runs pipelined."""
        stats = self._stats.setdefault(shape, [None, None, 0])
        plain, piped, n = stats
        stats[2] = n + 1
        if plain is None or piped is None:
            return plain is not None
        return (piped < plain) != (n % self.PROBE == 0)

    def record(self, shape: Any, pipelined: bool, seconds_per_step: float) -> None:
        """How long a request of this shape took, per env-step, the way it ran."""
        stats = self._stats.setdefault(shape, [None, None, 0])
        old = stats[int(pipelined)]
        stats[int(pipelined)] = seconds_per_step if old is None else 0.5 * (old + seconds_per_step)


def _clone(gen: torch.Generator) -> torch.Generator:
    twin = torch.Generator(device=gen.device)
    twin.set_state(gen.get_state())
    return twin


def split_actor(
    actor: RolloutActor, num_envs: int, obs_dim: int
) -> tuple[RolloutActor, RolloutActor, int] | None:
    """``actor`` (the rollout loop's, over ``num_envs`` envs) cut into the actors of rows
    ``[0, cut)`` and ``[cut, num_envs)``, such that calling them in turn gives exactly what
    ``actor`` gives; ``None`` where no cut with :data:`MIN_PART` envs on each side does.

    Several chunks are cut at the chunk boundary nearest the middle (chunks are independent,
    whatever their actors). One :class:`EpisodeActor` is cut between tasks (or inside its
    one task) where a check on random observations finds the two calls, on a copy of the
    generator, giving its actions, log-probabilities and final generator state bit for bit:
    that depends on the policy's arithmetic and on how torch draws normal noise in pieces,
    both fixed by the shapes. Trial actors (memory) are not cut inside a chunk.
    """
    if isinstance(actor, _Stacked):
        cuts = [r.stop for r in actor.rows[:-1] if MIN_PART <= r.stop <= num_envs - MIN_PART]
        if not cuts:
            return None
        cut = min(cuts, key=lambda c: abs(2 * c - num_envs))
        return (*actor.split(cut), cut)
    if not isinstance(actor, EpisodeActor) or num_envs < 2 * MIN_PART:
        return None
    probe = np.random.default_rng(0).standard_normal((num_envs, obs_dim))
    none = PreviousStep(np.zeros((num_envs, 0), np.float32), np.zeros(num_envs), np.zeros(num_envs))
    whole_gen = _clone(actor.gen)
    whole = EpisodeActor(actor.actor, actor.M, actor.N, actor.device, whole_gen, actor.deterministic)
    want_a, want_logp, _ = whole.act(probe, None, none)
    act_dim = want_a.shape[1]
    step = actor.N if actor.M > 1 else 1
    cuts = [c for c in range(step, num_envs, step) if MIN_PART <= c <= num_envs - MIN_PART]
    # Cuts at a block boundary of the noise first: only an ordering, the check decides.
    cuts.sort(key=lambda c: ((c * act_dim) % _NOISE_BLOCK != 0, abs(2 * c - num_envs)))
    for cut in cuts[:_TRIES]:
        gen = _clone(actor.gen)
        pair = actor.split(cut, gen)
        if pair is None:
            continue
        a1, logp1, _ = pair[0].act(probe[:cut], None, none)
        a2, logp2, _ = pair[1].act(probe[cut:], None, none)
        if (
            np.array_equal(np.concatenate([a1, a2]), want_a)
            and np.array_equal(np.concatenate([logp1, logp2]), want_logp)
            and torch.equal(gen.get_state(), whole_gen.get_state())
        ):
            first, second = actor.split(cut)  # type: ignore[misc]
            return first, second, cut
    return None


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
    pipeline: bool | None = False,
) -> tuple[Rollout, list[Tensor]]:
    """Run ``chunks`` of a request over ``num_tasks`` tasks together, policy on ``device``.

    One simulator (backend ``sim_backend``) holds all their envs, chunk after chunk;
    :func:`collect` steps it and calls each chunk's actor on that chunk's rows. Returns
    the :class:`Rollout` of those envs (columns in chunk order) and every chunk's final
    generator state (for the chunk that continues the sampler's stream, its new state).

    ``pipeline`` (see :func:`pipelining`; off by default): where the backend steps in two
    phases and :func:`split_actor` finds an exact cut, two simulators, one per part, stepped
    by :func:`~robometa.sampling.rollout.collect_parts`; the same results, bit for bit.
    """
    env_tasks = [task for c in chunks for task in c.task_records for _ in c.envs]
    seeds = [s for c in chunks for s in c.seeds]
    gens = [generator(c.noise, device) for c in chunks]
    parts: list[RolloutActor] = []
    for c, gen in zip(chunks, gens):
        a = chunk_actor(actor, c, num_tasks)
        if request.trials:
            parts.append(TrialActor(a, device, gen, request.deterministic))
        else:
            parts.append(EpisodeActor(a, len(c.tasks), len(c.envs), device, gen, request.deterministic))
    loop_actor = parts[0] if len(parts) == 1 else _Stacked(parts, [c.num_envs for c in chunks])
    cut = None
    if pipelining(pipeline, device, nthread) and steps_in_two_phases(sim_backend):
        cut = split_actor(loop_actor, len(env_tasks), family.obs_dim)
    if cut is None:
        sim = make_simulator(family, env_tasks, seeds, nthread, sim_backend)
        out = collect(sim, loop_actor, request.horizon, request.episodes, request.record_states)
    else:
        first, second, c = cut
        sims = [
            make_simulator(family, env_tasks[:c], seeds[:c], nthread, sim_backend),
            make_simulator(family, env_tasks[c:], seeds[c:], nthread, sim_backend),
        ]
        out = collect_parts(
            list(zip(sims, (first, second))), request.horizon, request.episodes, request.record_states
        )
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
