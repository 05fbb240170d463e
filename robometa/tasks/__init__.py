"""Task families: the registry that maps family names to their classes.

Families are looked up by name (``cheetah-vel``) or by gymnasium id
(``robometa/CheetahVel-v0``). Adding a family means adding one line to
``_REGISTRY``; the gymnasium ids, ``robometa tasks`` and the benchmarks follow.
"""

from __future__ import annotations

import importlib
from typing import Any

from robometa.errors import choice_error
from robometa.tasks.base import FamilyInfo, StateLayout, Task, TaskFamily

# family name -> (gymnasium id, "module:Class")
_REGISTRY: dict[str, tuple[str, str]] = {
    "cheetah-vel": ("robometa/CheetahVel-v0", "robometa.tasks.locomotion.cheetah:CheetahVel"),
    "cheetah-dir": ("robometa/CheetahDir-v0", "robometa.tasks.locomotion.cheetah:CheetahDir"),
    "reach": ("robometa/Reach-v0", "robometa.tasks.manipulation.families:Reach"),
    "push": ("robometa/Push-v0", "robometa.tasks.manipulation.families:Push"),
    "pick-place": ("robometa/PickPlace-v0", "robometa.tasks.manipulation.families:PickPlace"),
    "manip-ml": ("robometa/ManipML-v0", "robometa.tasks.manipulation.families:ManipML"),
    "ant-dir": ("robometa/AntDir-v0", "robometa.tasks.locomotion.ant:AntDir"),
    "ant-goal": ("robometa/AntGoal-v0", "robometa.tasks.locomotion.ant:AntGoal"),
    "cheetah-params": ("robometa/CheetahParams-v0", "robometa.tasks.locomotion.params:CheetahParams"),
    "ant-params": ("robometa/AntParams-v0", "robometa.tasks.locomotion.params:AntParams"),
    "cheetah-terrain": (
        "robometa/CheetahTerrain-v0",
        "robometa.tasks.locomotion.terrain_families:CheetahTerrain",
    ),
    "ant-terrain": ("robometa/AntTerrain-v0", "robometa.tasks.locomotion.terrain_families:AntTerrain"),
}


def family_names() -> list[str]:
    return list(_REGISTRY)


def env_ids() -> list[str]:
    return [env_id for env_id, _ in _REGISTRY.values()]


def family_class(name: str) -> type[TaskFamily]:
    """The class of a family, by family name or gymnasium id."""
    for fam, (env_id, target) in _REGISTRY.items():
        if name in (fam, env_id):
            module, cls = target.split(":")
            return getattr(importlib.import_module(module), cls)
    raise choice_error("task family", name, family_names())


def make_family(name: str, **kwargs: Any) -> TaskFamily:
    """Instantiate a family by name or gymnasium id, with its keyword options."""
    cls = family_class(name)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        from robometa.errors import RobometaError

        raise RobometaError(f"bad option for family {name!r}: {exc}") from None


__all__ = [
    "FamilyInfo",
    "StateLayout",
    "Task",
    "TaskFamily",
    "env_ids",
    "family_class",
    "family_names",
    "make_family",
]
