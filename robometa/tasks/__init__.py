"""Task families: the registry that maps family names to their classes.

Families are looked up by name (``cheetah-vel``) or by gymnasium id
(``robometa/CheetahVel-v0``). Every registered family is also a gymnasium id: its
entry point is :class:`robometa.envs.MetaEnv`, named by a string, so registering
imports neither the env module nor the family's. The built-in families are
registered by module path and horizon and imported on first use, so
``import robometa`` registers every id without loading any family.

A family from your own package joins with :func:`register_family`; ``robometa
train --family NAME``, ``evaluate``, ``replay`` and ``gymnasium.make(env_id)`` then
work with it in the process that registered it.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any

from robometa.errors import RobometaError, choice_error
from robometa.tasks.base import FamilyInfo, StateLayout, Task, TaskFamily

ENV_ENTRY_POINT = "robometa.envs.meta_env:MetaEnv"


@dataclass(frozen=True)
class _Entry:
    env_id: str
    target: type[TaskFamily] | str  # the class, or "module:Class" imported on first use
    horizon: int  # gymnasium's max_episode_steps, known without importing the family


# family name -> its entry; built-ins first (the order `robometa tasks` lists)
_REGISTRY: dict[str, _Entry] = {}
_BUILTIN = [
    ("cheetah-vel", "robometa/CheetahVel-v0", "robometa.tasks.locomotion.cheetah:CheetahVel"),
    ("cheetah-dir", "robometa/CheetahDir-v0", "robometa.tasks.locomotion.cheetah:CheetahDir"),
    ("reach", "robometa/Reach-v0", "robometa.tasks.manipulation.families:Reach"),
    ("push", "robometa/Push-v0", "robometa.tasks.manipulation.families:Push"),
    ("pick-place", "robometa/PickPlace-v0", "robometa.tasks.manipulation.families:PickPlace"),
    ("manip-ml", "robometa/ManipML-v0", "robometa.tasks.manipulation.families:ManipML"),
    ("ant-dir", "robometa/AntDir-v0", "robometa.tasks.locomotion.ant:AntDir"),
    ("ant-goal", "robometa/AntGoal-v0", "robometa.tasks.locomotion.ant:AntGoal"),
    ("cheetah-params", "robometa/CheetahParams-v0", "robometa.tasks.locomotion.params:CheetahParams"),
    ("ant-params", "robometa/AntParams-v0", "robometa.tasks.locomotion.params:AntParams"),
    ("cheetah-terrain", "robometa/CheetahTerrain-v0", "robometa.tasks.locomotion.terrain_families:CheetahTerrain"),
    ("ant-terrain", "robometa/AntTerrain-v0", "robometa.tasks.locomotion.terrain_families:AntTerrain"),
]  # fmt: skip
BUILTIN_HORIZON = 200  # every built-in family's episode length (a test holds each class to it)


def _load(entry: _Entry) -> type[TaskFamily]:
    if isinstance(entry.target, str):
        module, name = entry.target.split(":")
        return getattr(importlib.import_module(module), name)
    return entry.target


def register_gymnasium_ids() -> None:
    """Register every registered family's gymnasium id that gymnasium lacks (idempotent)."""
    import gymnasium

    for name, entry in _REGISTRY.items():
        if entry.env_id not in gymnasium.registry:
            gymnasium.register(
                id=entry.env_id,
                entry_point=ENV_ENTRY_POINT,
                kwargs={"family": name},
                max_episode_steps=entry.horizon,
            )


def register_family(name: str, env_id: str, cls: type[TaskFamily]) -> None:
    """Make a task family available by ``name`` and as gymnasium id ``env_id``.

    ``cls``: a :class:`TaskFamily` subclass constructible with keyword options only
    (``cls(**options)``; they are its ``family_options``). Its ``name`` and
    ``env_id`` class attributes are set to the given ones unless the class itself
    defines them (then they must agree). ``env_id`` is registered with gymnasium (``MetaEnv`` over the
    family, ``max_episode_steps`` its ``horizon``). A taken name or id raises
    :class:`RobometaError`; registering the same class again does nothing.
    """
    if not (isinstance(cls, type) and issubclass(cls, TaskFamily)):
        raise RobometaError(f"family {name!r} must be a TaskFamily subclass, got {cls!r}")
    if not isinstance(name, str) or not name or any(c.isspace() or c in "/=" for c in name):
        raise RobometaError(f"family name must be a non-empty word without '/' or '=', got {name!r}")
    if not isinstance(env_id, str) or "/" not in env_id or not env_id.rsplit("-v", 1)[-1].isdigit():
        raise RobometaError(
            f"gymnasium id of family {name!r} must look like 'namespace/Name-v0', got {env_id!r}"
        )
    for attr, value in (("name", name), ("env_id", env_id)):
        have = cls.__dict__.get(attr)  # an inherited one names the parent family, not this one
        if have is not None and have != value:
            raise RobometaError(f"{cls.__name__}.{attr} is {have!r}, but it is being registered as {value!r}")
    old = _REGISTRY.get(name)
    if old is not None:
        if _load(old) is cls:
            return
        raise RobometaError(f"family {name!r} is already registered")
    for other, entry in _REGISTRY.items():
        if entry.env_id == env_id:
            raise RobometaError(f"gymnasium id {env_id!r} is already family {other!r}")
    import gymnasium

    if env_id in gymnasium.registry:
        raise RobometaError(f"gymnasium id {env_id!r} is already registered (not by robometa)")
    cls.name, cls.env_id = name, env_id
    _REGISTRY[name] = _Entry(env_id, cls, int(cls.horizon))
    register_gymnasium_ids()


def family_names() -> list[str]:
    return list(_REGISTRY)


def env_ids() -> list[str]:
    return [entry.env_id for entry in _REGISTRY.values()]


def family_class(name: str) -> type[TaskFamily]:
    """The class of a family, by family name or gymnasium id."""
    for fam, entry in _REGISTRY.items():
        if name in (fam, entry.env_id):
            return _load(entry)
    raise choice_error("task family", name, family_names())


def family_options(name: str) -> list[str]:
    """The keyword options a family takes (``make_family(name, **options)``, the
    ``family_options`` of a run), read from its ``__init__`` and those it forwards
    ``**kwargs`` to."""
    options: list[str] = []
    for klass in family_class(name).__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        forwards = False
        for p in list(inspect.signature(init).parameters.values())[1:]:
            if p.kind is inspect.Parameter.VAR_KEYWORD:
                forwards = True
            elif p.kind is not inspect.Parameter.VAR_POSITIONAL and p.name not in options:
                options.append(p.name)
        if not forwards:
            break
    return options


def make_family(name: str, **options: Any) -> TaskFamily:
    """Instantiate a family by name or gymnasium id, with its keyword options.

    An option the family does not take raises :class:`RobometaError` naming the
    valid ones; bad values raise the family's own one-line error.
    """
    cls = family_class(name)
    valid = family_options(name)
    for key in options:
        if key not in valid:
            raise RobometaError(
                f"unknown option {key!r} for family {cls.name}; valid: {', '.join(valid) or 'none'}"
            )
    try:
        return cls(**options)
    except TypeError as exc:
        raise RobometaError(f"bad option for family {name!r}: {exc}") from None


for _name, _env_id, _target in _BUILTIN:
    _REGISTRY[_name] = _Entry(_env_id, _target, BUILTIN_HORIZON)
register_gymnasium_ids()

__all__ = [
    "FamilyInfo",
    "StateLayout",
    "Task",
    "TaskFamily",
    "env_ids",
    "family_class",
    "family_names",
    "family_options",
    "make_family",
    "register_family",
    "register_gymnasium_ids",
]
