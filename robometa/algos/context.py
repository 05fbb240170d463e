"""Context learners: RL²'s trials and PPO with a policy conditioned on a task embedding.

Where RL² (Duan et al., 2016) keeps a recurrent memory, the policy here embeds every
transition of the trial so far and aggregates the embeddings into a task embedding
``z`` that conditions the actor and the critic
(:class:`robometa.policies.context.ContextPolicy`): their mean (``mean``, Prototypical
Networks, Snell et al., 2017), soft attention from the current observation
(``attention``, Matching Networks, Vinyals et al., 2016), or PEARL's product of
Gaussians (``pog``, Rakelly et al., 2019).

Everything else is :class:`~robometa.algos.rl2.RL2`'s: trials of K episodes per task,
normalizers, GAE on the trial clock, PPO over minibatches of whole trials (one pass
per minibatch, no backpropagation through time), checkpoints, and the adaptation
curve on the ``episode`` axis. With ``pog`` the loss of every minibatch also holds
``kl_weight`` times the KL of the task posterior from its unit Gaussian prior,
averaged over the trials' valid steps and logged as ``loss/kl_prior``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from robometa.algos.context_config import ContextConfig
from robometa.algos.rl2 import RL2, masked_mean
from robometa.policies.context import ContextPolicy


class ContextLearner(RL2):
    """A context-conditioned policy trained by RL²'s PPO over trials (config:
    :class:`ContextConfig`; arguments as :class:`~robometa.algos.rl2.RL2`)."""

    name = "context"
    config: ContextConfig
    policy: ContextPolicy

    def make_policy(self, obs_dim: int, act_dim: int) -> torch.nn.Module:
        cfg = self.config
        return ContextPolicy(
            obs_dim,
            act_dim,
            aggregator=cfg.aggregator,
            embedding=cfg.embedding,
            hidden=cfg.hidden,
            encoder_hidden=cfg.encoder_hidden,
            layers=cfg.layers,
            init_std=cfg.init_std,
        )

    def minibatch_loss(
        self,
        inputs: Tensor,
        actions: Tensor,
        old_log_probs: Tensor,
        advantages: Tensor,
        returns: Tensor,
        masks: Tensor,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """PPO's loss, plus ``kl_weight`` times the masked mean KL of the posterior (``pog``)."""
        means, values, kl, _ = self.policy.trial_outputs(inputs)
        loss, parts = super().minibatch_loss(
            inputs, actions, old_log_probs, advantages, returns, masks, outputs=(means, values)
        )
        if kl is not None:
            kl_prior = masked_mean(kl, masks)
            loss = loss + self.config.kl_weight * kl_prior
            parts["kl_prior"] = kl_prior.detach()
        return loss, parts
