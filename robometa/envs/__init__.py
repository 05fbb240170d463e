"""Gymnasium registration: every family becomes ``robometa/<Name>-v<k>``."""

from __future__ import annotations

import gymnasium as gym

from robometa.envs.meta_env import MetaEnv
from robometa.tasks import _REGISTRY, family_class


def register_envs() -> None:
    """Register each family's id with gymnasium (idempotent)."""
    for name, (env_id, _) in _REGISTRY.items():
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point="robometa.envs.meta_env:MetaEnv",
            kwargs={"family": name},
            max_episode_steps=family_class(name).horizon,
        )


__all__ = ["MetaEnv", "register_envs"]
