"""Ray for robometa: joining a runtime, and a pool of worker actors that survives their deaths.

Ray is an optional extra (``pip install 'robometa[ray]'``); nothing here imports it
before it is needed, and a missing Ray is a one-line :class:`RobometaError`.

:func:`connect` starts a local Ray runtime (``address=None``: this machine's CPUs,
no dashboard) or joins a running cluster (``"auto"``: the one this machine belongs
to, or ``HOST:PORT`` of its head, as ``ray start --head`` prints it; ``ray://HOST:PORT``
through Ray Client). An address that cannot be reached fails within seconds, with
one line, rather than after Ray's own minutes of retries.

:class:`WorkerPool` keeps ``size`` actors of one class, each holding
``cpus_per_worker`` CPUs, spread over the cluster's nodes. :meth:`WorkerPool.map`
runs one call per item of work on whichever worker is free; when a worker dies (its
process killed, its node lost) the pool logs it, starts a replacement wherever the
cluster has room, and hands the dead worker's item to the next free worker. It gives
up only when no worker is running and none comes back within ``timeout_s``: a
:class:`WorkersLost` error, one line.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from robometa.errors import RobometaError

log = logging.getLogger(__name__)

RAY_EXTRA = "pip install 'robometa[ray]'"
REACH_TIMEOUT_S = 5.0  # seconds to open a TCP connection to a cluster's head
START_WAIT_S = 60.0  # seconds the workers of a new pool have to come up, at least


class WorkersLost(RobometaError):
    """No Ray worker is left to sample with and the cluster gave none back in time."""


def import_ray() -> Any:
    """The ``ray`` module, or a :class:`RobometaError` naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise RobometaError(f"sampling on Ray needs the ray package: {RAY_EXTRA}") from None
    return ray


@dataclass(frozen=True)
class RaySettings:
    """Where Ray workers run and how many; none of it changes what is sampled."""

    address: str | None = None
    """``None``: start a local Ray runtime; ``auto``: join the cluster this machine is
    part of; ``HOST:PORT``: join the cluster whose head is there (``ray://HOST:PORT``:
    through Ray Client)."""
    workers: int = 0
    """Worker actors; 0: as many as the runtime's CPUs hold (``cpus // cpus_per_worker``)."""
    cpus_per_worker: float = 1.0
    """CPUs each worker reserves (and MuJoCo threads it steps with, rounded down, at least 1)."""
    timeout_s: float = 120.0
    """Seconds to wait for a worker when none is running: for a new pool's workers (at
    least a minute: they import torch and MuJoCo first), and for a replacement when
    every worker was lost (it must start within it)."""

    def problems(self) -> list[str]:
        """What is wrong with the values, one line each."""
        out = []
        if self.workers < 0:
            out.append(f"ray_workers must be >= 0, got {self.workers}")
        if self.cpus_per_worker <= 0:
            out.append(f"ray_cpus_per_worker must be > 0, got {self.cpus_per_worker}")
        if self.timeout_s <= 0:
            out.append(f"ray_timeout_s must be > 0, got {self.timeout_s}")
        if self.address is not None and self.address != "auto":
            try:
                _host_port(self.address)
            except RobometaError as exc:
                out.append(str(exc))
        return out


def _host_port(address: str) -> tuple[str, int]:
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RobometaError(f"ray address must be auto, HOST:PORT or ray://HOST:PORT, got {address!r}")
    return host, int(port)


def _check_reachable(address: str) -> None:
    host, port = _host_port(address)
    try:
        socket.create_connection((host, port), timeout=REACH_TIMEOUT_S).close()
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise RobometaError(
            f"cannot reach a Ray cluster at {address!r} ({why}); start one with `ray start --head` "
            "and give the address it prints"
        ) from None


def _local_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def connect(settings: RaySettings) -> Any:
    """Start or join Ray as ``settings`` say (a process already connected stays so); returns ``ray``."""
    problems = settings.problems()
    if problems:
        raise RobometaError(problems[0])
    ray = import_ray()
    if settings.address not in (None, "auto"):
        _check_reachable(settings.address)
    if ray.is_initialized():
        return ray
    common = {"log_to_driver": False, "logging_level": logging.WARNING}
    if settings.address is None:
        need = settings.workers * settings.cpus_per_worker
        ray.init(
            address="local", num_cpus=max(_local_cpus(), int(need + 0.999)), include_dashboard=False, **common
        )
        return ray
    try:
        ray.init(address=settings.address, **common)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise RobometaError(f"cannot join the Ray cluster at {settings.address!r}: {first}") from None
    return ray


def worker_lost_errors(ray: Any) -> tuple[type[BaseException], ...]:
    """Exceptions that mean a worker (or what it returned) is gone, not that its code failed."""
    ex = ray.exceptions
    return (
        ex.RayActorError,
        ex.WorkerCrashedError,
        ex.NodeDiedError,
        ex.ObjectLostError,
        ex.ActorUnschedulableError,
    )


class WorkerPool:
    """``size`` Ray actors of ``cls`` (built as ``cls(*args)``), replaced when they die.

    Args:
        cls: the worker class (a plain class; the pool makes it a Ray actor). It must
            have a ``ping()`` method that returns once the worker is ready.
        args: its constructor arguments.
        size: workers (0: as many as the cluster's CPUs hold).
        cpus_per_worker: CPUs each reserves.
        timeout_s: how long :meth:`map` waits when no worker is running (the start waits
            at least ``START_WAIT_S``).
        what: what the workers do, for messages ("sampler workers").
    """

    def __init__(
        self,
        cls: type,
        args: Sequence[Any],
        size: int,
        cpus_per_worker: float,
        timeout_s: float,
        what: str = "workers",
    ):
        self.ray = import_ray()
        self.cpus, self.timeout_s, self.what = float(cpus_per_worker), float(timeout_s), what
        if size <= 0:
            size = max(1, int(self.ray.cluster_resources().get("CPU", 1) // self.cpus))
        self.size = size
        self._actor_cls = self.ray.remote(cls).options(
            num_cpus=self.cpus, scheduling_strategy="SPREAD", max_restarts=0
        )
        self._args = tuple(args)
        self.restarts = 0  # workers replaced since the pool started
        self.handles: list[Any] = [None] * size
        self._starting: dict[Any, int] = {}  # ping of a worker being placed -> its slot
        self._live: list[int] = []  # slots whose worker answered, free or busy
        for slot in range(size):
            self._start(slot)
        self._await_start()

    # ---------------------------------------------------------------- workers
    def _start(self, slot: int) -> None:
        handle = self._actor_cls.remote(*self._args)
        self.handles[slot] = handle
        self._starting[handle.ping.remote()] = slot

    def _await_start(self) -> None:
        # A worker imports torch and MuJoCo before it answers: never less than START_WAIT_S.
        deadline = time.monotonic() + max(self.timeout_s, START_WAIT_S)
        while self._starting and time.monotonic() < deadline:
            self._poll_starting(max(0.0, deadline - time.monotonic()))
        if len(self._live) < self.size:
            cpus = self.ray.cluster_resources().get("CPU", 0)
            self.close()
            raise WorkersLost(
                f"the Ray cluster started {len(self._live)} of {self.size} {self.what} workers within "
                f"{max(self.timeout_s, START_WAIT_S):g} s (each needs {self.cpus:g} CPU, the cluster has "
                f"{cpus:g}); ask for fewer"
            )

    def _poll_starting(self, timeout: float) -> list[int]:
        """Wait up to ``timeout`` s for workers being placed; returns the slots that came up."""
        if not self._starting:
            return []
        ready, _ = self.ray.wait(list(self._starting), num_returns=1, timeout=timeout)
        up = []
        for ref in ready:
            slot = self._starting.pop(ref)
            try:
                self.ray.get(ref)
            except worker_lost_errors(self.ray) as exc:
                log.warning(
                    "a replacement Ray %s worker died while starting (%s); starting another",
                    self.what,
                    _why(exc),
                )
                self._start(slot)
                continue
            self._live.append(slot)
            up.append(slot)
        return up

    def _lost(self, slot: int, exc: BaseException, what_was_lost: str) -> None:
        self.restarts += 1
        self._live.remove(slot)
        log.warning(
            "Ray %s worker %d died (%s); %s re-run on another worker, a replacement is starting",
            self.what,
            slot,
            _why(exc),
            what_was_lost,
        )
        self.ray.kill(self.handles[slot], no_restart=True)
        self._start(slot)

    def live_handles(self) -> list[Any]:
        """The workers running now, for calls of the caller's own (no failover)."""
        return [self.handles[s] for s in self._live]

    @property
    def live(self) -> int:
        """Workers running now (answering calls)."""
        return len(self._live)

    # ---------------------------------------------------------------- work
    def map(
        self, call: Callable[[Any, Any], Any], items: Sequence[Any], describe: Callable[[Any], str]
    ) -> list[Any]:
        """``[ray.get(call(worker, item)) for item in items]``, each item on a free worker.

        ``call(handle, item)`` submits one actor call and returns its ``ObjectRef``; an
        item whose worker dies is re-run on the next free worker (``describe(item)``
        names it in the log). Raises :class:`WorkersLost` when no worker is running and
        none came back within ``timeout_s``.
        """
        ray = self.ray
        results: list[Any] = [None] * len(items)
        todo = deque(range(len(items)))
        running: dict[Any, tuple[int, int]] = {}  # ObjectRef -> (slot, item)
        free = [s for s in self._live]
        waited_since: float | None = None
        while todo or running:
            while todo and free:
                slot, i = free.pop(0), todo.popleft()
                running[call(self.handles[slot], items[i])] = (slot, i)
            if running:
                waited_since = None
                ready, _ = ray.wait(list(running), num_returns=1, timeout=0.2 if self._starting else None)
                for ref in ready:
                    slot, i = running.pop(ref)
                    try:
                        results[i] = ray.get(ref)
                    except worker_lost_errors(ray) as exc:
                        self._lost(slot, exc, describe(items[i]))
                        todo.appendleft(i)
                        continue
                    free.append(slot)
            else:  # work left and no worker running: wait for replacements
                waited_since = waited_since or time.monotonic()
                left = self.timeout_s - (time.monotonic() - waited_since)
                if left <= 0 or not self._starting:
                    raise WorkersLost(
                        f"no Ray {self.what} worker is left and the cluster gave none back within "
                        f"{self.timeout_s:g} s (each needs {self.cpus:g} CPU); stopping (a run resumes from its "
                        "last checkpoint with robometa train --resume)"
                    )
                free += self._poll_starting(min(left, 1.0))
                continue
            free += self._poll_starting(0.0)
        return results

    def close(self) -> None:
        """Stop every worker of the pool."""
        for handle in self.handles:
            if handle is not None:
                self.ray.kill(handle, no_restart=True)
        self.handles = [None] * self.size
        self._starting.clear()
        self._live.clear()


def _why(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
