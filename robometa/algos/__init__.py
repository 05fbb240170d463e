"""Meta-learning algorithms, looked up by name.

Adding a learner means one line in ``_REGISTRY``: its name, its config class and
its constructor ``(family, config, device, seed) -> Algorithm``.
"""

from __future__ import annotations

import importlib
from typing import Any

from robometa.algos.base import AdaptationCurve, Algorithm, IterationResult
from robometa.errors import choice_error

# algorithm name -> ("module:ConfigClass", "module:AlgorithmClass")
_REGISTRY: dict[str, tuple[str, str]] = {
    "maml-trpo": ("robometa.configs.maml:MAMLTRPOConfig", "robometa.algos.maml:MAML"),
    "maml-ppo": ("robometa.configs.maml:MAMLPPOConfig", "robometa.algos.maml:MAML"),
    "rl2": ("robometa.configs.rl2:RL2Config", "robometa.algos.rl2:RL2"),
}


def _load(target: str) -> Any:
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def algorithm_names() -> list[str]:
    return list(_REGISTRY)


def config_class(name: str) -> type:
    """The frozen config dataclass of an algorithm."""
    if name not in _REGISTRY:
        raise choice_error("algorithm", name, algorithm_names())
    return _load(_REGISTRY[name][0])


def make_algorithm(name: str, family: Any, config: Any, device: Any = "cpu", seed: int = 0) -> Algorithm:
    """Build an algorithm by name for a task family."""
    if name not in _REGISTRY:
        raise choice_error("algorithm", name, algorithm_names())
    return _load(_REGISTRY[name][1])(family, config, device=device, seed=seed)


__all__ = [
    "AdaptationCurve",
    "Algorithm",
    "IterationResult",
    "algorithm_names",
    "config_class",
    "make_algorithm",
]
