"""SNAIL (Mishra et al., 2018) as a meta-RL learner: RL² with an attentive policy.

SNAIL meta-learns exactly as RL² does (:mod:`robometa.algos.rl2`): trials of K
episodes on one task, the policy reading ``(o_t, a_{t-1}, r_{t-1}, d_t)`` with its
memory carried across the episodes, PPO over whole trials with GAE on the trial
clock. Only the memory differs: instead of a GRU's hidden state the policy looks back
at every step of the trial with dilated causal convolutions and causal soft attention
(:class:`robometa.policies.snail.SNAILPolicy`). Sampling steps it incrementally from a
cache of the past; learning runs each trial in one causal pass.

It is a learner of its own, ``--algo snail`` (not an RL² option such as
``--algo rl2 --policy snail``), so that it has its own presets
(``robometa/configs/presets/snail/``), its own settings (:class:`SNAILConfig`) and
its own name in run directories, curves and reports. Checkpoints, resume,
``robometa evaluate`` and ``robometa replay`` are RL²'s; its curves are on the
episode axis.
"""

from __future__ import annotations

import torch

from robometa.algos.rl2 import RL2
from robometa.algos.snail_config import SNAILConfig
from robometa.policies.snail import SNAILPolicy

__all__ = ["SNAIL", "SNAILConfig"]


class SNAIL(RL2):
    """RL²'s learner (:class:`robometa.algos.rl2.RL2`) with a :class:`SNAILPolicy`.

    Args: as :class:`RL2`, with a :class:`SNAILConfig`.
    """

    name = "snail"
    config: SNAILConfig

    def make_policy(self, obs_dim: int, act_dim: int) -> torch.nn.Module:
        """A SNAIL policy whose TC blocks cover one training trial (``K * horizon`` steps)."""
        cfg = self.config
        return SNAILPolicy(
            obs_dim,
            act_dim,
            context=cfg.episodes_per_trial * self.horizon,
            layout=cfg.layout,
            hidden=cfg.hidden,
            tc_filters=cfg.tc_filters,
            key_size=cfg.key_size,
            value_size=cfg.value_size,
            init_std=cfg.init_std,
        )
