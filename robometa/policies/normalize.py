"""Running mean / variance of a stream of samples, for input and reward normalization.

Statistics are merged batch by batch with the parallel-variance formula of Chan,
Golub and LeVeque (1979), in float64, and travel in checkpoints as plain tensors
(:meth:`RunningMeanStd.state_dict`), so a resumed or evaluated policy sees exactly
the normalization it was trained with.
"""

from __future__ import annotations

import torch
from torch import Tensor

from robometa.errors import RobometaError


class RunningMeanStd:
    """Mean and variance over everything passed to :meth:`update`, per feature.

    Args:
        shape: feature shape (``()`` for scalars).
        eps: added to the variance before the square root.
        clip: normalized values are clipped to ``[-clip, clip]``.
    """

    def __init__(self, shape: tuple[int, ...] = (), eps: float = 1e-8, clip: float = 10.0):
        self.shape = tuple(shape)
        self.eps, self.clip = eps, clip
        self.mean = torch.zeros(self.shape, dtype=torch.float64)
        self.var = torch.ones(self.shape, dtype=torch.float64)
        self.count = 0.0

    def update(self, x: Tensor, mask: Tensor | None = None) -> None:
        """Merge the samples ``x: (..., *shape)`` (rows where ``mask: (...)`` is 1)."""
        x = x.detach().to("cpu", torch.float64).reshape(-1, *self.shape)
        if mask is not None:
            x = x[mask.detach().to("cpu").reshape(-1) > 0]
        n = x.shape[0]
        if n == 0:
            return
        b_mean = x.mean(0)
        b_var = x.var(0, unbiased=False)
        total = self.count + n
        delta = b_mean - self.mean
        m2 = self.var * self.count + b_var * n + delta.square() * self.count * n / total
        self.mean = self.mean + delta * n / total
        self.var = m2 / total
        self.count = float(total)

    @property
    def std(self) -> Tensor:
        return (self.var + self.eps).sqrt()

    def normalize(self, x: Tensor) -> Tensor:
        """``(x - mean) / std``, clipped; same shape and dtype as ``x``."""
        mean, std = self.mean.to(x.device, x.dtype), self.std.to(x.device, x.dtype)
        return ((x - mean) / std).clamp(-self.clip, self.clip)

    def scale(self, x: Tensor) -> Tensor:
        """``x / std`` without centering (rewards keep their sign), clipped."""
        return (x / self.std.to(x.device, x.dtype)).clamp(-self.clip, self.clip)

    def state_dict(self) -> dict[str, Tensor | float]:
        return {"mean": self.mean.clone(), "var": self.var.clone(), "count": self.count}

    def load_state_dict(self, state: dict[str, Tensor | float]) -> None:
        mean, var = state["mean"], state["var"]
        if tuple(mean.shape) != self.shape or tuple(var.shape) != self.shape:
            raise RobometaError(
                f"normalizer statistics have shape {tuple(mean.shape)}, expected {self.shape}"
            )
        self.mean = mean.to(torch.float64).clone()
        self.var = var.to(torch.float64).clone()
        self.count = float(state["count"])
