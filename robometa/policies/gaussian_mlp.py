"""Gaussian MLP policy, evaluable with explicit (fast) weights.

The mean is an MLP (default 2x100, the MAML paper's sizes, with tanh where the paper
used ReLU); the log standard
deviation is a state-independent parameter vector. Every forward can run with the
module's own parameters or with an explicit parameter dict through
``torch.func.functional_call``, so MAML can differentiate through adapted weights;
with per-task parameter dicts (leading task axis) every layer is one batched matrix
product over the tasks, so one call serves a whole meta-batch. Those products may run
in bfloat16 (``matmul_dtype``), which CPUs with AMX and GPUs compute several times
faster than float32.

With ``normalize_obs`` the policy standardizes its input by running statistics it
holds as buffers (so they travel in its ``state_dict``, hence in checkpoints), before
every forward: explicit weights, per-task weights and sampling all see the same
input. The statistics are not parameters (no gradient flows to them); the learner
merges new observations with :meth:`GaussianMLPPolicy.update_obs_statistics`
between its updates, never inside one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Independent, Normal
from torch.func import functional_call

from robometa.policies.normalize import RunningMeanStd

Params = Mapping[str, Tensor]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


class GaussianMLPPolicy(nn.Module):
    """``pi(a | s) = N(mlp(s), diag(exp(log_std))^2)``.

    Args:
        obs_dim, act_dim: sizes.
        hidden: hidden layer widths.
        activation: ``tanh`` | ``relu`` | ``elu``.
        init_std: initial standard deviation of every action dimension.
        normalize_obs: standardize observations, ``clamp((obs - mean) / std, -10, 10)``,
            by the statistics of :meth:`update_obs_statistics` (the identity, clamped,
            until the first update).
    """

    OBS_CLIP = 10.0
    """Normalized observations are clipped to ``[-OBS_CLIP, OBS_CLIP]`` (as RL²'s)."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (100, 100),
        activation: str = "tanh",
        init_std: float = 1.0,
        normalize_obs: bool = False,
    ):
        super().__init__()
        if activation not in _ACTIVATIONS:
            from robometa.errors import choice_error

            raise choice_error("activation", activation, _ACTIVATIONS)
        self.obs_dim, self.act_dim = obs_dim, act_dim
        layers: list[nn.Module] = []
        width = obs_dim
        for h in hidden:
            layers += [nn.Linear(width, h), _ACTIVATIONS[activation]()]
            width = h
        layers.append(nn.Linear(width, act_dim))
        self.mean = nn.Sequential(*layers)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(torch.log(torch.tensor(init_std)))))
        self.normalize_obs = bool(normalize_obs)
        if self.normalize_obs:
            # Running statistics (float64, merged as RunningMeanStd merges them) and
            # what the forward applies, derived from them (float32, updated in place so
            # that compiled passes read the new values).
            self.register_buffer("obs_mean", torch.zeros(obs_dim, dtype=torch.float64))
            self.register_buffer("obs_var", torch.ones(obs_dim, dtype=torch.float64))
            self.register_buffer("obs_count", torch.zeros((), dtype=torch.float64))
            self.register_buffer("obs_shift", torch.zeros(obs_dim))
            self.register_buffer("obs_inv_std", torch.ones(obs_dim))

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """``obs: (..., obs_dim)`` -> mean ``(..., act_dim)``, log_std ``(act_dim,)``."""
        return self.mean(self.normalized(obs)), self.log_std

    def normalized(self, obs: Tensor) -> Tensor:
        """What the MLP reads: ``obs`` standardized with ``normalize_obs``, else ``obs`` itself."""
        if not self.normalize_obs:
            return obs
        return ((obs - self.obs_shift) * self.obs_inv_std).clamp(-self.OBS_CLIP, self.OBS_CLIP)

    @torch.no_grad()
    def update_obs_statistics(self, obs: Tensor, mask: Tensor | None = None) -> None:
        """Merge observations ``obs: (..., obs_dim)`` (the rows where ``mask: (...)`` is
        1, e.g. an :class:`~robometa.sampling.EpisodeBatch`'s ``obs`` and ``masks``) into
        the running statistics the forward standardizes by.

        Raises ``RuntimeError`` when the policy was built without ``normalize_obs``.
        """
        if not self.normalize_obs:
            raise RuntimeError("update_obs_statistics needs a policy built with normalize_obs=True")
        stats = RunningMeanStd((self.obs_dim,))
        stats.load_state_dict(
            {"mean": self.obs_mean.cpu(), "var": self.obs_var.cpu(), "count": float(self.obs_count)}
        )
        stats.update(obs, mask)
        self.obs_mean.copy_(stats.mean)
        self.obs_var.copy_(stats.var)
        self.obs_count.fill_(stats.count)
        self.obs_shift.copy_(stats.mean)
        self.obs_inv_std.copy_(1.0 / stats.std)

    def mean_log_std(
        self,
        obs: Tensor,
        params: Params | None = None,
        per_task: bool = False,
        matmul_dtype: torch.dtype | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Mean ``(..., act_dim)`` and log-std broadcastable to it.

        ``params=None`` uses the module's parameters. ``per_task=True`` means every
        tensor in ``params`` has a leading task axis M matching ``obs: (M, ...)``;
        only then may ``matmul_dtype`` (e.g. ``torch.bfloat16``) set the precision of
        the layers' matrix products (see :meth:`_per_task_forward`).
        """
        if matmul_dtype is not None and not (per_task and params is not None):
            raise ValueError("matmul_dtype needs per-task params")
        if params is None:
            return self(obs)
        if per_task:
            return self._per_task_forward(obs, params, matmul_dtype)
        return functional_call(self, dict(params), (obs,))

    def _per_task_forward(
        self, obs: Tensor, params: Params, matmul_dtype: torch.dtype | None = None
    ) -> tuple[Tensor, Tensor]:
        """The MLP with per-task weights: one ``baddbmm`` per layer over the task axis.

        Equal to ``vmap(functional_call)`` over tasks, but the bias add is fused into
        the batched matrix product, which saves a pass over every activation tensor
        in the forward and in each (higher-order) backward (a second-order
        meta-gradient at the paper's batch sizes: 3.1-3.3 s against 3.4-3.5 s).

        With ``matmul_dtype`` every product (and, through autograd, every product of
        the backward passes) takes its inputs rounded to that dtype and accumulates
        in float32; its output, rounded to ``matmul_dtype``, is cast back to the
        dtype of ``obs`` before the activation, so only the products lose precision
        (bfloat16: 8 significant bits, relative rounding error 2^-9 per value).
        """
        M = obs.shape[0]
        x = self.normalized(obs).reshape(M, -1, obs.shape[-1])
        for i, layer in enumerate(self.mean):
            if isinstance(layer, nn.Linear):
                w, b = params[f"mean.{i}.weight"], params[f"mean.{i}.bias"]
                if matmul_dtype is None:
                    x = torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))
                else:
                    low = torch.baddbmm(
                        b.unsqueeze(1).to(matmul_dtype),
                        x.to(matmul_dtype),
                        w.transpose(1, 2).to(matmul_dtype),
                    )
                    x = low.to(obs.dtype)
            else:
                x = layer(x)
        mean = x.reshape(*obs.shape[:-1], x.shape[-1])
        log_std = params["log_std"]
        return mean, log_std.view(M, *([1] * (mean.dim() - 2)), -1)

    def log_prob(
        self,
        obs: Tensor,
        actions: Tensor,
        params: Params | None = None,
        per_task: bool = False,
        matmul_dtype: torch.dtype | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``log pi(actions | obs)`` ``(...)``, with the mean ``(..., act_dim)`` and the
        log-std (broadcastable to it) it came from; arguments as in :meth:`mean_log_std`."""
        mean, log_std = self.mean_log_std(obs, params, per_task, matmul_dtype)
        return gaussian_log_prob(actions, mean, log_std), mean, log_std

    def distribution(self, obs: Tensor, params: Params | None = None, per_task: bool = False) -> Independent:
        """The action distribution at ``obs`` (see :meth:`mean_log_std` for ``params``)."""
        mean, log_std = self.mean_log_std(obs, params, per_task)
        # No argument validation: its support checks cost ~20% of a forward on big batches.
        return Independent(
            Normal(mean, log_std.exp().expand_as(mean), validate_args=False), 1, validate_args=False
        )

    def act(
        self,
        obs: Tensor,
        generator: torch.Generator | None = None,
        deterministic: bool = False,
        params: Params | None = None,
        per_task: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """Sample actions and their log-probabilities (no gradient).

        ``obs: (M, N, obs_dim)`` -> actions ``(M, N, act_dim)``, log_probs ``(M, N)``.
        """
        with torch.no_grad():
            # The Gaussian log-density written out: once per control step, building a
            # torch.distributions object costs more than the arithmetic.
            mean, log_std = self.mean_log_std(obs, params, per_task)
            log_std = log_std.expand_as(mean)
            if deterministic:
                noise = torch.zeros_like(mean)
            else:
                noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            action = mean + log_std.exp() * noise
            log_prob = (-0.5 * noise.square() - log_std - _HALF_LOG_2PI).sum(-1)
            return action, log_prob


def gaussian_log_prob(actions: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """``log N(actions; mean, diag(exp(log_std))^2)``: ``(..., act_dim)`` -> ``(...)``.

    ``log_std`` broadcasts against ``mean`` (``(M, 1, 1, act_dim)`` for per-task
    weights), so its terms cost one value per task, not one per step: the learner's
    forward and backward passes touch every ``(..., act_dim)`` tensor fewer times
    than ``Normal(mean, std.expand_as(mean)).log_prob``, which builds ``std``,
    ``std**2`` and ``log(std)`` at full size.
    """
    z = (actions - mean) * torch.exp(-log_std)
    return -0.5 * (z * z).sum(-1) - (log_std.sum(-1) + mean.shape[-1] * _HALF_LOG_2PI)


class BoundActor:
    """A policy bound to explicit parameters: what the sampler calls once per step.

    ``params`` with a leading task axis (``per_task=True``) gives every task of the
    meta-batch its own (adapted) weights.
    """

    def __init__(self, policy: GaussianMLPPolicy, params: Params | None = None, per_task: bool = False):
        self.policy, self.params, self.per_task = policy, params, per_task

    def act(self, obs: Tensor, generator: torch.Generator | None = None, deterministic: bool = False):
        return self.policy.act(obs, generator, deterministic, self.params, self.per_task)

    def for_tasks(self, start: int, stop: int) -> BoundActor:
        """The actor of tasks ``start:stop`` of the batch (a sampling chunk's): per-task
        weights sliced (views), shared weights as they are."""
        if not self.per_task or self.params is None:
            return self
        return BoundActor(self.policy, {k: v[start:stop] for k, v in self.params.items()}, True)
