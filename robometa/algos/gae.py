"""Discounted returns and generalized advantage estimation over masked episodes.

Every function takes tensors whose last axis is time, ``(..., T)``, with ``masks``
equal to 1 while an episode runs (its last step included) and 0 afterwards, the
layout of :class:`robometa.sampling.EpisodeBatch`.

Episodes cut by the horizon are not bootstrapped (the value after the last step is
0), as in the rllab / ProMP code of the MAML and ProMP papers.
"""

from __future__ import annotations

import torch
from torch import Tensor


def discounted_returns(rewards: Tensor, masks: Tensor, gamma: float) -> Tensor:
    """``R_t = sum_{l>=0} gamma^l r_{t+l}`` within each episode; ``(..., T)`` -> ``(..., T)``."""
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[..., 0])
    for t in range(rewards.shape[-1] - 1, -1, -1):
        running = (rewards[..., t] + gamma * running) * masks[..., t]
        out[..., t] = running
    return out


def gae(rewards: Tensor, values: Tensor, masks: Tensor, gamma: float, lam: float) -> Tensor:
    """GAE(gamma, lambda) advantages (Schulman et al., 2016), ``(..., T)``.

    ``values: (..., T)`` are baseline predictions at each step's observation.
    ``delta_t = r_t + gamma V_{t+1} - V_t`` with ``V_{t+1} = 0`` after an episode's
    last step; ``A_t = delta_t + gamma lambda A_{t+1}``.
    """
    T = rewards.shape[-1]
    next_values = torch.zeros_like(values)
    next_values[..., :-1] = values[..., 1:] * masks[..., 1:]
    deltas = (rewards + gamma * next_values - values) * masks
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[..., 0])
    for t in range(T - 1, -1, -1):
        running = (deltas[..., t] + gamma * lam * running) * masks[..., t]
        out[..., t] = running
    return out


def normalize_per_task(x: Tensor, masks: Tensor, eps: float = 1e-8) -> Tensor:
    """Zero-mean, unit-std over the valid steps of each task: ``x, masks: (M, N, T)``."""
    count = masks.sum(dim=(1, 2), keepdim=True).clamp_min(1.0)
    mean = (x * masks).sum(dim=(1, 2), keepdim=True) / count
    var = (((x - mean) * masks) ** 2).sum(dim=(1, 2), keepdim=True) / count
    return (x - mean) / (var.sqrt() + eps) * masks
