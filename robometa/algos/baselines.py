"""The linear feature baseline of the MAML and ProMP papers, fitted per task.

A least-squares fit of discounted returns on hand-made features of the observation
and the time step (Duan et al., 2016, rllab ``LinearFeatureBaseline``; used by Finn
et al., 2017 and Rothfuss et al., 2019): ``[o, o^2, t/100, (t/100)^2, (t/100)^3, 1]``
with ``o`` the observation clipped to [-10, 10]. Every task of a meta-batch gets its
own fit, all solved in one batched ridge regression.
"""

from __future__ import annotations

import torch
from torch import Tensor

REG_COEFF = 1e-5  # ridge coefficient of the rllab baseline, raised x10 on failure
MAX_RETRIES = 5


def linear_features(obs: Tensor) -> Tensor:
    """``obs: (M, N, T, D)`` -> features ``(M, N, T, 2D + 4)`` in float64."""
    obs = obs.to(torch.float64).clamp(-10.0, 10.0)
    T = obs.shape[2]
    al = (torch.arange(T, dtype=torch.float64, device=obs.device) / 100.0).view(1, 1, T, 1)
    al = al.expand(*obs.shape[:3], 1)
    return torch.cat([obs, obs**2, al, al**2, al**3, torch.ones_like(al)], dim=-1)


def fit_predict(obs: Tensor, targets: Tensor, masks: Tensor, reg_coeff: float = REG_COEFF) -> Tensor:
    """Fit one linear baseline per task and predict on the same steps.

    ``obs: (M, N, T, D)``, ``targets, masks: (M, N, T)`` -> predictions ``(M, N, T)``
    in the dtype of ``targets``; steps with ``masks == 0`` are ignored by the fit and
    predicted as 0.
    """
    M = obs.shape[0]
    feats = linear_features(obs) * masks.to(torch.float64).unsqueeze(-1)
    X = feats.reshape(M, -1, feats.shape[-1])
    y = (targets.to(torch.float64) * masks).reshape(M, -1, 1)
    xtx = X.transpose(1, 2) @ X
    xty = X.transpose(1, 2) @ y
    eye = torch.eye(X.shape[-1], dtype=torch.float64, device=X.device)
    reg = reg_coeff
    for _ in range(MAX_RETRIES):
        try:
            w = torch.linalg.solve(xtx + reg * eye, xty)
        except RuntimeError:  # singular: raise the ridge term, as rllab does
            w = None
        if w is not None and torch.isfinite(w).all():
            break
        reg *= 10.0
    else:
        w = torch.zeros_like(xty)
    pred = (feats @ w.unsqueeze(1)).squeeze(-1)
    return (pred * masks).to(targets.dtype)
