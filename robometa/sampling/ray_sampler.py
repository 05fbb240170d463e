"""Sampling on Ray: CPU workers that each run the policy over their share of the envs.

The ``ray`` sampling backend (:mod:`robometa.sampling.backends`). A request (one
``Sampler.sample`` or ``TrialSampler.sample_trials`` call) is cut into chunks that
carry their own seeds (:mod:`robometa.sampling.chunks`); per request:

1. the learner puts the actor (the policy with its weights: the meta-policy, or every
   task's adapted weights), moved to the CPU, in Ray's object store once; the task
   family goes there once per pool, and each worker keeps it with its model cache;
2. the chunks are dealt in contiguous groups, one per running worker; a worker builds
   one :class:`~robometa.sim.BatchSim` over its group's envs and runs the one rollout
   loop, :func:`~robometa.sampling.rollout.collect`, with one policy call per chunk and
   control step, on its CPU share (torch on one thread, MuJoCo on
   ``cpus_per_worker`` threads), and returns numpy arrays;
3. the learner gathers the groups and puts their columns back in request order.

So per control step nothing crosses the network: per request the weights go out
once and the episodes come back once.

Failures: a worker that dies mid-request (process killed, node lost) is replaced
wherever the cluster has room, and its group is re-run by the next free worker
(a survivor, or the replacement); its chunks carry their seeds, so the re-run returns
the same episodes. Each replacement counts in ``sim/worker_restarts`` (the learner's
iteration metrics, hence TensorBoard) and logs a warning line. When no worker is
left and none comes back within ``timeout_s``, sampling raises
:class:`~robometa.sim.ray_pool.WorkersLost` (one line; the trainer stops after its
last checkpoint).

The pool is one per process: :func:`start` starts (or joins) Ray and its workers,
:func:`runner` is what the backend name ``ray`` resolves to (starting a local
runtime with default settings if nothing was started), :func:`shutdown` stops both.
"""

from __future__ import annotations

import io
import itertools
import logging
import pickle
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from robometa.sampling.backends import RunResult, SamplerContext
from robometa.sampling.chunks import Chunk, Request, run_chunks, scatter, split, torch_threads
from robometa.sampling.rollout import Rollout
from robometa.sim import SimSpec, StepResult, make_simulator, register_simulator
from robometa.sim.ray_pool import (
    RaySettings,
    WorkerPool,
    WorkersLost,
    connect,
    import_ray,
    worker_lost_errors,
)

log = logging.getLogger(__name__)

_CPU = torch.device("cpu")


def actor_bytes(actor: Any) -> tuple[bytes, bytes]:
    """``actor`` (a policy with its weights, or any object holding tensors) serialized for
    the workers, as two parts: its structure, pickled by Ray's cloudpickle with every
    tensor left out (a reference in its place), and the tensors themselves, saved by
    ``torch.save`` so that they load with ``weights_only=True`` (:func:`load_actor`)."""
    ray = import_ray()
    tensors: list[torch.Tensor] = []
    index: dict[int, int] = {}  # id of a tensor -> its place in ``tensors`` (shared ones once)

    class TensorsApart(ray.cloudpickle.CloudPickler):
        def persistent_id(self, obj: Any) -> Any:
            if not isinstance(obj, torch.Tensor):
                return None
            if id(obj) not in index:
                index[id(obj)] = len(tensors)
                tensors.append(obj.detach())
            return ("tensor", index[id(obj)], isinstance(obj, torch.nn.Parameter), obj.requires_grad)

    structure, weights = io.BytesIO(), io.BytesIO()
    TensorsApart(structure).dump(actor)
    torch.save(tensors, weights)
    return structure.getvalue(), weights.getvalue()


def load_actor(blob: tuple[bytes, bytes]) -> Any:
    """The actor :func:`actor_bytes` serialized, its tensors on the CPU.

    The tensors load with ``torch.load(weights_only=True)``; the structure around them
    is unpickled as Ray unpickles every task argument (it is the learner's own
    in-memory object, shipped to its own workers within one run). Parameters come
    back as parameters, with their ``requires_grad``; a tensor the actor held twice
    comes back as one object.
    """
    structure, weights = blob
    tensors = torch.load(io.BytesIO(weights), map_location=_CPU, weights_only=True)
    made: dict[int, torch.Tensor] = {}

    class TensorsBack(pickle.Unpickler):
        def persistent_load(self, pid: Any) -> torch.Tensor:
            _, i, is_parameter, requires_grad = pid
            if i not in made:
                t = tensors[i]
                made[i] = (
                    torch.nn.Parameter(t, requires_grad) if is_parameter else t.requires_grad_(requires_grad)
                )
            return made[i]

    return TensorsBack(io.BytesIO(structure)).load()


class SamplerWorker:
    """One Ray worker: runs groups of chunks on its CPU share. Built by the pool."""

    def __init__(self, cpus: float):
        torch.set_num_threads(1)
        # MuJoCo threads: the worker's CPUs; a single CPU steps on the calling thread.
        self.nthread = int(cpus) if cpus >= 2 else 0
        self.families: dict[str, Any] = {}
        self.actor_key: str | None = None
        self.actor: Any = None
        self.sim: Any = None  # RaySim's share of the envs, between its calls

    def ping(self) -> str:
        """The id of the Ray node this worker runs on (answers once the worker is up)."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def _family(self, key: str, ref: list[Any]) -> Any:
        if key not in self.families:
            import ray

            self.families[key] = ray.get(ref[0])
        return self.families[key]

    def run(
        self,
        family_key: str,
        family_ref: list[Any],
        actor_key: str,
        actor_blob: tuple[bytes, bytes],
        request: Request,
        chunks: list[Chunk],
        num_tasks: int,
    ) -> tuple[Rollout, list[torch.Tensor], float]:
        """``chunks`` of a request over ``num_tasks`` tasks, run together: their rollout
        (columns in chunk order), each chunk's final generator state, and the seconds
        the worker spent on it."""
        t0 = time.perf_counter()
        family = self._family(family_key, family_ref)
        if actor_key != self.actor_key:
            self.actor_key, self.actor = actor_key, load_actor(actor_blob)
        with torch_threads(1):
            rollout, states = run_chunks(
                family, self.actor, request, chunks, num_tasks, _CPU, self.nthread, "batch"
            )
        return rollout, states, time.perf_counter() - t0

    # ---- for RaySim: the envs stay here between calls, the policy is the caller's
    def sim_open(self, family_key: str, family_ref: list[Any], tasks: list[Any], seeds: Any) -> SimSpec:
        self.sim = make_simulator(self._family(family_key, family_ref), tasks, seeds, self.nthread, "batch")
        return self.sim.spec

    def sim_reset(self, mask: np.ndarray | None) -> np.ndarray:
        return self.sim.reset(mask)

    def sim_step(self, action: np.ndarray, active: np.ndarray | None) -> tuple[StepResult, int]:
        return self.sim.step(action, active), self.sim.instabilities

    def sim_set_state(self, state: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        return self.sim.set_state(state, mask)

    def sim_state(self) -> np.ndarray:
        return self.sim.state


@dataclass
class _Family:
    family: Any  # held, so that its id stays its own
    key: str
    ref: Any  # ObjectRef


class RayRunner:
    """The ``ray`` backend's :class:`~robometa.sampling.backends.ChunkRunner`: a pool of
    :class:`SamplerWorker` actors. Build it with :func:`start`."""

    sim_backend = "batch"

    def __init__(self, settings: RaySettings):
        self.settings = settings
        self.ray = connect(settings)
        self.pool = WorkerPool(
            SamplerWorker,
            (settings.cpus_per_worker,),
            settings.workers,
            settings.cpus_per_worker,
            settings.timeout_s,
            what="sampler",
        )
        self._families: dict[int, _Family] = {}
        self._keys = itertools.count()
        # Seconds of the last request: serializing and putting the actor ("broadcast"),
        # from the first call to the last result ("round_trip"), the longest a worker
        # computed ("worker"), and putting the columns in order ("gather").
        self.timings: dict[str, float] = {}

    def default_chunks(self, num_tasks: int, copies: int) -> int:
        """One chunk per worker of the pool (as it was started, whatever has died since):
        the largest chunks that keep every worker busy. Name the count in the backend
        (``ray/K``) to make the episodes independent of the pool's size."""
        return self.pool.size

    def policy_device(self, sampler_device: torch.device) -> torch.device:
        return _CPU

    def _family(self, family: Any) -> _Family:
        entry = self._families.get(id(family))
        if entry is None:
            entry = _Family(family, f"family-{next(self._keys)}", self.ray.put(family))
            self._families[id(family)] = entry
        return entry

    def run(
        self,
        family: Any,
        actor: Any,
        request: Request,
        chunks: list[Chunk],
        num_tasks: int,
        context: SamplerContext,
    ) -> RunResult:
        t0 = time.perf_counter()
        fam = self._family(family)
        actor_key = f"actor-{next(self._keys)}"
        blob = self.ray.put(actor_bytes(actor))  # once per request, whatever the workers
        t1 = time.perf_counter()
        groups = split(len(chunks), max(1, min(len(chunks), self.pool.live or self.pool.size)))

        def call(handle: Any, group: range) -> Any:
            part = [chunks[i] for i in group]
            return handle.run.remote(fam.key, [fam.ref], actor_key, blob, request, part, num_tasks)

        def describe(group: range) -> str:
            return f"its chunks {group.start}..{group.stop - 1} of {len(chunks)}"

        before = self.pool.restarts
        outputs = self.pool.map(call, groups, describe)
        t2 = time.perf_counter()
        parts, noise = [], []
        for group, (rollout, states, _) in zip(groups, outputs):
            parts.append((np.concatenate([chunks[i].rows(request.copies) for i in group]), rollout))
            noise += states
        rollout = scatter(parts, num_tasks * request.copies, copy=True)  # Ray's arrays are read-only
        self.timings = {
            "broadcast": t1 - t0,
            "round_trip": t2 - t1,
            "worker": max(seconds for _, _, seconds in outputs),
            "gather": time.perf_counter() - t2,
        }
        return RunResult(rollout, noise, self.pool.restarts - before)

    def close(self) -> None:
        self.pool.close()


_RUNNER: RayRunner | None = None


def start(settings: RaySettings | None = None) -> RayRunner:
    """Start (or join) Ray and the process's sampler workers as ``settings`` say.

    A pool already running with the same settings is kept; other settings replace it.
    """
    global _RUNNER
    settings = settings or RaySettings()
    if _RUNNER is not None and not _RUNNER.ray.is_initialized():
        _RUNNER = None  # Ray was shut down under it: its workers are gone
    if _RUNNER is not None and _RUNNER.settings == settings:
        return _RUNNER
    if _RUNNER is not None:
        _RUNNER.close()
        _RUNNER = None
    _RUNNER = RayRunner(settings)
    log.info("sampling on %d Ray workers", _RUNNER.pool.size)
    return _RUNNER


def runner() -> RayRunner:
    """The process's Ray runner (what backend ``ray`` names), started with default settings if none is."""
    return _RUNNER if _RUNNER is not None else start()


def shutdown() -> None:
    """Stop the sampler workers and disconnect from Ray."""
    global _RUNNER
    if _RUNNER is not None:
        _RUNNER.close()
        _RUNNER = None
    ray = import_ray()
    if ray.is_initialized():
        ray.shutdown()


# ------------------------------------------------------------------ the policy on the learner


class RaySim:
    """Simulator backend ``ray-step``: the envs live on the Ray workers, the policy stays
    with the sampler (on its device); every control step sends each worker its rows of
    the actions and gathers its rows of the :class:`~robometa.sim.StepResult`.

    The same episodes as the ``batch`` backend, bit for bit, whatever the worker count
    (envs step independently; the sampler draws the noise for the whole batch), at the
    price of one round trip to every worker per control step: it pays where the
    policy needs the learner's GPU (a large network) and the network is fast. A
    worker lost mid-request cannot be rebuilt here (its envs' states are gone):
    sampling stops with :class:`~robometa.sim.ray_pool.WorkersLost`; the ``ray``
    backend re-runs lost work instead.

    Args follow :data:`robometa.sim.SimulatorFactory`; ``nthread`` is ignored (each
    worker steps with its ``cpus_per_worker`` threads).
    """

    def __init__(self, family: Any, tasks: Any, seeds: Any, nthread: int | None = None):
        run = runner()
        self._ray = run.ray
        B = len(tasks)
        if seeds is None or isinstance(seeds, (int, np.integer)):
            seeds = [None] * B if seeds is None else [int(seeds) + i for i in range(B)]
        handles = run.pool.live_handles()
        self._parts = [(handles[i], rows) for i, rows in enumerate(split(B, min(B, len(handles))))]
        fam = run._family(family)
        specs = self._gather(
            [
                h.sim_open.remote(fam.key, [fam.ref], [tasks[j] for j in r], [seeds[j] for j in r])
                for h, r in self._parts
            ]
        )
        first = specs[0]
        self.spec = SimSpec(
            num_envs=B,
            obs_dim=first.obs_dim,
            act_dim=first.act_dim,
            state_dim=first.state_dim,
            has_success=first.has_success,
            action_low=np.concatenate([s.action_low for s in specs]),
            action_high=np.concatenate([s.action_high for s in specs]),
        )
        self.instabilities = 0

    def _gather(self, refs: list[Any]) -> list[Any]:
        try:
            return self._ray.get(refs)
        except worker_lost_errors(self._ray) as exc:
            raise WorkersLost(
                f"a Ray worker of the ray-step backend died ({type(exc).__name__}); its envs' states are lost: "
                "sample with the ray backend, which re-runs lost work"
            ) from None

    def _rows(self, x: np.ndarray | None, r: range) -> np.ndarray | None:
        return None if x is None else x[r.start : r.stop]

    @property
    def state(self) -> np.ndarray:
        return np.concatenate(self._gather([h.sim_state.remote() for h, _ in self._parts]))

    def reset(self, mask: np.ndarray | None = None) -> np.ndarray:
        return np.concatenate(self._gather([h.sim_reset.remote(self._rows(mask, r)) for h, r in self._parts]))

    def set_state(self, state: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        if mask is None:
            refs = [h.sim_set_state.remote(state[r.start : r.stop], None) for h, r in self._parts]
        else:
            mask = np.asarray(mask, dtype=bool)
            ends = np.cumsum([np.count_nonzero(mask[r.start : r.stop]) for _, r in self._parts])
            refs = [
                h.sim_set_state.remote(
                    state[end - np.count_nonzero(mask[r.start : r.stop]) : end], mask[r.start : r.stop]
                )
                for (h, r), end in zip(self._parts, ends)
            ]
        return np.concatenate(self._gather(refs))

    def step(self, action: np.ndarray, active: np.ndarray | None = None) -> StepResult:
        action = np.asarray(action, dtype=np.float64)
        outs = self._gather(
            [h.sim_step.remote(action[r.start : r.stop], self._rows(active, r)) for h, r in self._parts]
        )
        self.instabilities = sum(n for _, n in outs)
        results = [r for r, _ in outs]

        def cat(name: str) -> np.ndarray:
            return np.concatenate([getattr(r, name) for r in results])

        def cat_dict(name: str) -> dict[str, np.ndarray]:
            return {
                k: np.concatenate([getattr(r, name)[k] for r in results]) for k in getattr(results[0], name)
            }

        return StepResult(
            obs=cat("obs"),
            reward=cat("reward"),
            terms=cat_dict("terms"),
            terminated=cat("terminated"),
            success=cat("success"),
            metrics=cat_dict("metrics"),
            unstable=cat("unstable"),
        )


register_simulator("ray-step", RaySim, act_dim=lambda family: family.layout.nu)
