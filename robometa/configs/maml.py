"""The MAML learners' settings, where older code imports them from.

They live beside the learner, in :mod:`robometa.algos.maml_config`: an algorithm's
settings belong to the algorithm, and ``configs`` sits above ``algos``.
"""

from robometa.algos.maml_config import MAMLConfig, MAMLPPOConfig, MAMLTRPOConfig

__all__ = ["MAMLConfig", "MAMLPPOConfig", "MAMLTRPOConfig"]
