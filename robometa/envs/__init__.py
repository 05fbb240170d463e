"""The gymnasium facade of the task families: ``MetaEnv`` behind ``robometa/<Name>-v<k>``.

The ids themselves are registered by :mod:`robometa.tasks` (every registered family
is one), so ``import robometa`` registers them without importing this package.
"""

from __future__ import annotations

from robometa.envs.meta_env import MetaEnv
from robometa.tasks import register_gymnasium_ids


def register_envs() -> None:
    """Register every family's gymnasium id that gymnasium lacks (idempotent;
    ``import robometa`` has done it already)."""
    register_gymnasium_ids()


__all__ = ["MetaEnv", "register_envs"]
