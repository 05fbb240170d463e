"""Trust-region maths: conjugate gradient, Fisher-vector products, line search.

TRPO (Schulman et al., 2015) takes the natural-gradient step ``s = F^-1 g`` found by
conjugate gradient on Fisher-vector products, scales it so that the quadratic KL
model equals ``max_kl``, then backtracks until the true surrogate improves and the
true KL stays within ``max_kl``. The defaults below (10 CG iterations, damping
1e-5, backtrack ratio 0.8, 15 backtracks) are those of rllab's
``ConjugateGradientOptimizer`` used by the MAML paper's code.

Parameters are handled as lists of tensors; ``flat`` / ``unflat`` convert.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


def flat(tensors: Sequence[Tensor]) -> Tensor:
    """Concatenate tensors into one vector ``(P,)``."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflat(vector: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """Split a ``(P,)`` vector into tensors shaped like ``like``."""
    out, i = [], 0
    for t in like:
        out.append(vector[i : i + t.numel()].view_as(t))
        i += t.numel()
    return out


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor], b: Tensor, iters: int = 10, residual_tol: float = 1e-10
) -> Tensor:
    """Approximately solve ``A x = b`` for symmetric positive-definite ``A``.

    ``matvec(v) = A v``; ``b: (P,)``. Stops after ``iters`` products or when the
    squared residual falls below ``residual_tol``.
    """
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = r @ r
    for _ in range(iters):
        if rr <= residual_tol:
            break
        Ap = matvec(p)
        alpha = rr / (p @ Ap)
        x = x + alpha * p
        r = r - alpha * Ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def fisher_vector_product(
    kl: Tensor, params: Sequence[Tensor], damping: float = 1e-5
) -> Callable[[Tensor], Tensor]:
    """``v -> (H + damping I) v`` with ``H`` the Hessian of ``kl`` w.r.t. ``params``.

    At the current parameters (where the KL to the old policy is 0 with zero
    gradient) this Hessian is the Fisher information matrix. The gradient graph is
    built once and reused by every product.
    """
    grads = torch.autograd.grad(kl, params, create_graph=True)
    flat_grad = flat(grads)

    def fvp(v: Tensor) -> Tensor:
        hv = torch.autograd.grad(flat_grad @ v, params, retain_graph=True)
        return flat(hv) + damping * v

    return fvp


@dataclass(frozen=True)
class LineSearchResult:
    """Outcome of a backtracking line search."""

    accepted: bool  # a step was taken
    step_fraction: float  # fraction of the full step taken (0 if rejected)
    backtracks: int  # candidates rejected before acceptance
    loss: float  # surrogate loss after the search (before it if rejected)
    kl: float  # KL at the accepted parameters (0 if rejected)


def backtracking_line_search(
    evaluate: Callable[[Tensor], tuple[float, float]],
    x0: Tensor,
    full_step: Tensor,
    loss0: float,
    max_kl: float,
    backtrack_ratio: float = 0.8,
    max_backtracks: int = 15,
) -> tuple[Tensor, LineSearchResult]:
    """Shrink ``full_step`` until the loss decreases and the KL is within ``max_kl``.

    ``evaluate(x) -> (loss, kl)`` at flat parameters ``x: (P,)``. Returns the new
    parameters (``x0`` if no candidate passed) and a :class:`LineSearchResult`.
    """
    for k in range(max_backtracks):
        fraction = backtrack_ratio**k
        x = x0 + fraction * full_step
        loss, kl = evaluate(x)
        if math.isfinite(loss) and math.isfinite(kl) and loss < loss0 and kl <= max_kl:
            return x, LineSearchResult(True, fraction, k, loss, kl)
    return x0, LineSearchResult(False, 0.0, max_backtracks, loss0, 0.0)


def natural_step(fvp: Callable[[Tensor], Tensor], grad: Tensor, max_kl: float, cg_iters: int = 10) -> Tensor:
    """The full TRPO step for loss gradient ``grad: (P,)``: ``-sqrt(2 max_kl / s'Fs) s``, ``s = F^-1 g``.

    ``s'Fs`` is taken as ``g's``, with no further Fisher-vector product: conjugate
    gradient from 0 leaves a residual ``r = g - Fs`` orthogonal to the Krylov space
    that holds ``s``, so ``s'Fs = s'g - s'r = s'g`` after any number of iterations
    (exactly in exact arithmetic, ``tests/test_maml_math.py``; on a paper-size meta-batch
    in float32 the two differed by 1e-7 relative). That saves 1 of ``cg_iters + 1`` products.
    """
    s = conjugate_gradient(fvp, grad, cg_iters)
    shs = s @ grad
    scale = torch.sqrt(2.0 * max_kl / shs.clamp_min(1e-12))
    return -scale * s


def gaussian_kl(mean_p: Tensor, std_p: Tensor, mean_q: Tensor, std_q: Tensor) -> Tensor:
    """``KL(N(mean_p, std_p) || N(mean_q, std_q))`` of diagonal Gaussians, summed over the last axis."""
    var_p, var_q = std_p**2, std_q**2
    kl = torch.log(std_q / std_p) + (var_p + (mean_p - mean_q) ** 2) / (2.0 * var_q) - 0.5
    return kl.sum(-1)
