"""RL²'s settings, where older code imports them from.

They live beside the learner, in :mod:`robometa.algos.rl2_config`: an algorithm's
settings belong to the algorithm, and ``configs`` sits above ``algos``.
"""

from robometa.algos.rl2_config import RL2Config

__all__ = ["RL2Config"]
