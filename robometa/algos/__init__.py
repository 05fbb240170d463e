"""Meta-learning algorithms, looked up by name.

A learner is a name, a frozen config dataclass and a class satisfying
:class:`Algorithm`, built as ``algo_cls(family, config, device=..., seed=...)``.
The built-in ones are registered here by module path (imported when first used);
a learner from your own package joins with :func:`register_algorithm`, after which
``robometa train --algo NAME``, ``evaluate`` and ``replay`` drive it like the
built-in ones (in the process that registered it).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from robometa.algos.base import (
    AdaptationCurve,
    AdaptationData,
    Algorithm,
    IterationResult,
    MetaLearner,
    Stopwatch,
    throughput,
)
from robometa.errors import RobometaError, choice_error

# algorithm name -> (config class, algorithm class), each a class or "module:Class"
_REGISTRY: dict[str, tuple[type | str, type | str]] = {
    "maml-trpo": ("robometa.algos.maml_config:MAMLTRPOConfig", "robometa.algos.maml:MAML"),
    "maml-ppo": ("robometa.algos.maml_config:MAMLPPOConfig", "robometa.algos.maml:MAML"),
    "rl2": ("robometa.algos.rl2_config:RL2Config", "robometa.algos.rl2:RL2"),
    "snail": ("robometa.algos.snail_config:SNAILConfig", "robometa.algos.snail:SNAIL"),
    "reptile": ("robometa.algos.reptile_config:ReptileConfig", "robometa.algos.reptile:Reptile"),
    "meta-lstm": ("robometa.algos.meta_lstm_config:MetaLSTMConfig", "robometa.algos.meta_lstm:MetaLSTM"),
    "context": ("robometa.algos.context_config:ContextConfig", "robometa.algos.context:ContextLearner"),
}

_NEEDED_CONFIG_FIELDS = ("meta_batch_size", "horizon")


def _load(target: type | str) -> Any:
    if not isinstance(target, str):
        return target
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def register_algorithm(name: str, config_cls: type, algo_cls: type) -> None:
    """Make a learner available by ``name`` to the trainer, ``evaluate`` and ``replay``.

    ``config_cls``: a frozen dataclass whose fields are the learner's settings (typed
    ``int``, ``float``, ``bool``, ``str``, ``tuple[...]`` or ``X | None``, so that
    YAML and ``key=value`` overrides are checked against them), with at least
    ``meta_batch_size`` and ``horizon``, and optionally ``validate() -> list[str]``.
    ``algo_cls(family, config, device=..., seed=...)`` must satisfy
    :class:`Algorithm`. Registering another learner under a taken name raises
    :class:`RobometaError`; registering the same classes again does nothing.
    """
    import dataclasses

    if not isinstance(name, str) or not name or any(c.isspace() or c in "/=" for c in name):
        raise RobometaError(f"algorithm name must be a non-empty word without '/' or '=', got {name!r}")
    if not (isinstance(config_cls, type) and dataclasses.is_dataclass(config_cls)):
        raise RobometaError(f"config_cls of algorithm {name!r} must be a dataclass, got {config_cls!r}")
    fields = {f.name for f in dataclasses.fields(config_cls)}
    missing = [f for f in _NEEDED_CONFIG_FIELDS if f not in fields]
    if missing:
        raise RobometaError(f"config_cls of algorithm {name!r} lacks the field(s) {', '.join(missing)}")
    if not isinstance(algo_cls, type):
        raise RobometaError(f"algo_cls of algorithm {name!r} must be a class, got {algo_cls!r}")
    old = _REGISTRY.get(name)
    if old is not None and (_load(old[0]), _load(old[1])) != (config_cls, algo_cls):
        raise RobometaError(f"algorithm {name!r} is already registered")
    _REGISTRY[name] = (config_cls, algo_cls)


def algorithm_names() -> list[str]:
    return list(_REGISTRY)


def config_class(name: str) -> type:
    """The frozen config dataclass of an algorithm."""
    if name not in _REGISTRY:
        raise choice_error("algorithm", name, algorithm_names())
    return _load(_REGISTRY[name][0])


def algorithm_class(name: str) -> type:
    """The class of an algorithm."""
    if name not in _REGISTRY:
        raise choice_error("algorithm", name, algorithm_names())
    return _load(_REGISTRY[name][1])


def make_algorithm(
    name: str, family: Any, config: Any, device: Any = "cpu", seed: int = 0, backend: str = "batch"
) -> Algorithm:
    """Build an algorithm by name for a task family; ``backend``: the sampling backend
    (:mod:`robometa.sampling.backends`), passed as ``backend=`` only when not the default."""
    cls = algorithm_class(name)
    extra = {} if backend == "batch" else {"backend": backend}
    if extra and "backend" not in inspect.signature(cls).parameters:
        raise RobometaError(
            f"algorithm {name!r} cannot sample on another backend than 'batch' (got {backend!r})"
        )
    algo = cls(family, config, device=device, seed=seed, **extra)
    if not isinstance(algo, Algorithm):  # a learner's bug, not a user's mistake
        members = set(Algorithm.__annotations__) | {m for m in vars(Algorithm) if not m.startswith("_")}
        missing = [m for m in members if not hasattr(algo, m)]
        raise TypeError(f"{type(algo).__name__} (algorithm {name!r}) lacks {', '.join(sorted(missing))}")
    return algo


__all__ = [
    "AdaptationCurve",
    "AdaptationData",
    "Algorithm",
    "IterationResult",
    "MetaLearner",
    "Stopwatch",
    "algorithm_class",
    "algorithm_names",
    "config_class",
    "make_algorithm",
    "register_algorithm",
    "throughput",
]
