"""Sampling backends: where a sampler's episodes are simulated, named by one string.

A sampler (and so every learner) takes a backend *name*, ``BASE`` or ``BASE/K``:

* ``BASE`` a simulator backend (:func:`robometa.sim.simulator_names`, e.g. ``batch``):
  the envs are stepped in this process, the policy runs on the sampler's device;
  or a *chunk runner* registered with :func:`register_runner`, e.g. ``ray``: Ray
  workers, each stepping its share of the envs with its own copy of the policy
  (:mod:`robometa.sampling.ray_sampler`).
* ``K`` the chunks every request is cut into (:mod:`robometa.sampling.chunks`);
  without it, the base's default: 1 in this process (the whole batch, exactly the
  plain sampler), one per worker for ``ray``. With ``K`` given, results depend on
  ``K``, never on how many workers run the chunks: ``batch/K`` reproduces ``ray/K``
  bit for bit in one process.

A runner is looked up on every request, so a Ray pool started (or restarted) after
a learner was built is the one that samples.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from robometa.errors import RobometaError
from robometa.sampling.chunks import Chunk, Request, run_chunks, scatter, torch_threads
from robometa.sampling.rollout import Rollout
from robometa.sim import action_size, check_backend, simulator_names
from robometa.sim.ray_pool import RaySettings


@dataclass
class RunResult:
    """What a runner hands back for one request."""

    rollout: Rollout  # every env of the request, in request order
    noise: list[torch.Tensor]  # every chunk's final action-noise generator state
    worker_restarts: int = 0  # workers that died and were replaced while running it


class ChunkRunner(Protocol):
    """Runs the chunks of sampling requests somewhere (workers, processes, machines)."""

    sim_backend: str  # the simulator backend the chunks are stepped with

    def default_chunks(self, num_tasks: int, copies: int) -> int:
        """Chunks of a request when its backend name gives none."""

    def policy_device(self, sampler_device: torch.device) -> torch.device:
        """Where the chunks' policy runs (its action noise comes from a generator there)."""

    def run(
        self,
        family: Any,
        actor: Any,
        request: Request,
        chunks: Sequence[Chunk],
        num_tasks: int,
        context: SamplerContext,
    ) -> RunResult:
        """Run every chunk of a request over ``num_tasks`` tasks; a chunk run twice gives the same data."""


@dataclass(frozen=True)
class SamplerContext:
    """The sampler's settings a runner may use."""

    device: torch.device  # the sampler's device
    nthread: int | None  # MuJoCo threads of a simulator in this process
    torch_threads: int | None  # torch threads while sampling in this process (None: leave)
    pipeline: bool | None = None  # overlap policy and physics in this process (None: auto; see chunks)


class InProcess:
    """The chunks of a request in this process, all in one simulator of backend ``sim_backend``."""

    def __init__(self, sim_backend: str = "batch"):
        self.sim_backend = sim_backend

    def default_chunks(self, num_tasks: int, copies: int) -> int:
        return 1

    def policy_device(self, sampler_device: torch.device) -> torch.device:
        return sampler_device

    def run(
        self,
        family: Any,
        actor: Any,
        request: Request,
        chunks: Sequence[Chunk],
        num_tasks: int,
        context: SamplerContext,
    ) -> RunResult:
        with torch_threads(context.torch_threads):
            out, noise = run_chunks(
                family,
                actor,
                request,
                chunks,
                num_tasks,
                context.device,
                context.nthread,
                self.sim_backend,
                context.pipeline,
            )
        rows = np.concatenate([c.rows(request.copies) for c in chunks])
        return RunResult(scatter([(rows, out)], num_tasks * request.copies), noise)


@dataclass(frozen=True)
class _Runner:
    factory: Callable[[], ChunkRunner] | str  # or "module:function", imported when first used
    sim_backend: str  # what its chunks are stepped with (known without building the runner)


_RUNNERS: dict[str, _Runner] = {"ray": _Runner("robometa.sampling.ray_sampler:runner", "batch")}
# simulator backends registered by a module imported when first named
_LAZY_SIMULATORS = {"ray-step": "robometa.sampling.ray_sampler"}


def register_runner(name: str, factory: Callable[[], ChunkRunner], sim_backend: str = "batch") -> None:
    """Make ``factory()`` (called on every request) the runner of backend ``name``;
    ``sim_backend``: the simulator backend its chunks are stepped with."""
    new = _Runner(factory, sim_backend)
    if name in simulator_names() or "/" in name or _RUNNERS.get(name, new) != new:
        raise RobometaError(f"sampling backend {name!r} is already registered")
    _RUNNERS[name] = new


def parse_backend(name: str) -> tuple[str, int | None]:
    """``"ray/8"`` -> ``("ray", 8)``, ``"batch"`` -> ``("batch", None)``; the base is checked."""
    base, sep, count = str(name).partition("/")
    chunks = None
    if sep:
        try:
            chunks = int(count)
        except ValueError:
            chunks = 0
        if chunks < 1:
            raise RobometaError(f"backend {name!r}: the chunk count after '/' must be an integer >= 1")
    if base not in _RUNNERS:
        if base in _LAZY_SIMULATORS and base not in simulator_names():
            importlib.import_module(_LAZY_SIMULATORS[base])
        check_backend(base)
    return base, chunks


def check_sampling_backend(name: str) -> str:
    """``name`` if it names a backend (see the module docstring), else a :class:`RobometaError`."""
    parse_backend(name)
    return name


def runner(name: str) -> tuple[ChunkRunner, int | None]:
    """The runner of backend ``name`` and its chunk count (``None``: the runner's default)."""
    base, chunks = parse_backend(name)
    entry = _RUNNERS.get(base)
    if entry is None:
        return InProcess(base), chunks
    target = entry.factory
    if isinstance(target, str):
        module, attr = target.split(":")
        target = getattr(importlib.import_module(module), attr)
    return target(), chunks


def simulator_backend(name: str) -> str:
    """The simulator backend that steps backend ``name``'s envs."""
    base, _ = parse_backend(name)
    return _RUNNERS[base].sim_backend if base in _RUNNERS else base


def backend_action_size(family: Any, name: str) -> int:
    """Action size of ``family``'s envs under sampling backend ``name``."""
    return action_size(family, simulator_backend(name))


def start_backend(name: str, ray: RaySettings | None = None) -> str:
    """Make backend ``name`` ready to sample and return it: for ``ray``, start (or join)
    Ray and the process's sampler workers as ``ray`` says (``None``: a local runtime,
    one worker per CPU). User mistakes (no Ray installed, an unreachable address) raise
    :class:`RobometaError` before anything samples."""
    base, _ = parse_backend(name)
    if base == "ray":
        from robometa.sampling import ray_sampler

        ray_sampler.start(ray)
    return name
