"""Meta-LSTM for meta-RL: a learned coordinate-wise LSTM takes MAML's inner steps.

Ravi & Larochelle (2017, "Optimization as a Model for Few-Shot Learning", sec. 3.1)
observe that gradient descent is the cell update of an LSTM whose cell state is the
learner's weights. Per weight coordinate, at inner step t::

    f_t = sigmoid(w_f . x_t^f + b_f)
    i_t = sigmoid(w_i . x_t^i + b_i)
    theta_t = f_t * theta_{t-1} - i_t * grad_t

with ``x_t^f = [pre(grad_t), pre(L_t), theta_{t-1}, f_{t-1}]`` and ``x_t^i`` the same with
``i_{t-1}`` (``f_0 = i_0 = 0``): 6 inputs per gate. ``grad_t`` and ``L_t`` are the
task's inner policy-gradient loss (MAML's, :func:`robometa.algos.maml.inner_loss`) and
its gradient at ``theta_{t-1}``, and ``pre`` is the preprocessing of Andrychowicz et
al. (2016, appendix A): ``x -> (log|x| / p, sign x)`` if ``|x| >= e^-p``, else ``(-1,
e^p x)``, with p = 10. The gate weights ``w_f, w_i, b_f`` are shared by every
coordinate (the "coordinate-wise" LSTM of Andrychowicz et al.), so the optimizer has 15
numbers besides ``b_i``, which is one per policy weight (``per_weight_input_bias``)
or shared.

The LSTM's weights and the initial policy ``theta_0`` are the meta-parameters, trained
like MAML's through the inner steps (second order, or first order with
``first_order``: the inner gradients and losses are then constants), with MAML's TRPO
or PPO outer loop (``outer``), reused unchanged from :class:`robometa.algos.maml.MAML`.

Special cases: with ``w_f = w_i = 0``, ``b_f = +inf`` (``f = 1``) and a shared
``b_i = logit(alpha)`` the update is MAML's inner step with step size alpha
(``tests/test_meta_lstm.py`` checks it to the bit); with a per-weight ``b_i`` and the
same ``f = 1`` it is Meta-SGD (Li et al., 2017; ``learn_inner_lr`` on ``maml-*``):
one learned step size per weight, ``sigmoid(b_i)``, here confined to (0, 1) and
additionally free to depend on the gradient, the loss, the weight and the previous
gate, and to decay the weights through ``f``.

TRPO's Fisher: the Hessian of the mean KL of the adapted policies w.r.t. all
meta-parameters, by double backpropagation through the inner steps with their
gradients held constant (the first-order Jacobian of the adaptation); it only sets
the step's metric, the line search checks the true KL.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from robometa.algos.maml import MAML, _Chunk, inner_loss, mean_kl, surrogate, task_slice
from robometa.algos.meta_lstm_config import MetaLSTMConfig
from robometa.algos.trpo import flat
from robometa.policies import GaussianMLPPolicy
from robometa.sampling import EpisodeBatch
from robometa.tasks.base import Task, TaskFamily

Params = dict[str, Tensor]
Gates = dict[str, tuple[Tensor, Tensor]]  # name -> (f, i), each (M, *weight shape)


def preprocess(x: Tensor, p: float = 10.0) -> tuple[Tensor, Tensor]:
    """Andrychowicz et al. (2016), appendix A: ``x`` -> two tensors of its shape,
    ``(log|x| / p, sign x)`` where ``|x| >= e^-p`` and ``(-1, e^p x)`` elsewhere."""
    big = x.abs() >= math.exp(-p)
    magnitude = torch.where(big, x.abs().clamp_min(math.exp(-p)).log() / p, torch.full_like(x, -1.0))
    direction = torch.where(big, torch.sign(x), math.exp(p) * x)
    return magnitude, direction


class MetaLSTMOptimizer(nn.Module):
    """The coordinate-wise LSTM update of a policy's weights (see the module docstring).

    Args:
        shapes: every policy weight's name and shape, in the policy's order.
        inner_lr: initial input gate (``b_i = logit(inner_lr)``, ``w_i = 0``).
        forget_bias: initial ``b_f`` (``w_f = 0``).
        per_weight_input_bias: one ``b_i`` per policy weight, else one shared.
        p: the preprocessing's p.
    """

    def __init__(
        self,
        shapes: Mapping[str, torch.Size],
        inner_lr: float,
        forget_bias: float = 5.0,
        per_weight_input_bias: bool = True,
        p: float = 10.0,
    ):
        super().__init__()
        self.names = list(shapes)
        self.p = float(p)
        logit = math.log(inner_lr / (1.0 - inner_lr))
        self.w_f = nn.Parameter(torch.zeros(6))
        self.b_f = nn.Parameter(torch.tensor(float(forget_bias)))
        self.w_i = nn.Parameter(torch.zeros(6))
        self.per_weight = per_weight_input_bias
        # ParameterList, not ParameterDict: the policy's names hold dots
        bias_shapes = [tuple(shapes[n]) for n in self.names] if per_weight_input_bias else [()]
        self.b_i = nn.ParameterList([nn.Parameter(torch.full(s, logit)) for s in bias_shapes])

    def input_bias(self, k: int) -> Tensor:
        """``b_i`` of the k-th policy weight: its shape, or a scalar when shared."""
        return self.b_i[k] if self.per_weight else self.b_i[0]

    def step(
        self, params: Mapping[str, Tensor], grads: Mapping[str, Tensor], losses: Tensor, prev: Gates | None
    ) -> tuple[Params, Gates]:
        """One inner step of every task: ``params``, ``grads``: per-task weights and
        inner-loss gradients ``(M, *shape)``; ``losses: (M,)``; ``prev``: the previous
        step's gates (``None`` at the first step). Returns the new weights and gates."""
        l_mag, l_dir = preprocess(losses, self.p)
        new: Params = {}
        gates: Gates = {}
        for k, name in enumerate(self.names):
            theta, g = params[name], grads[name]
            view = (-1,) + (1,) * (theta.dim() - 1)
            g_mag, g_dir = preprocess(g, self.p)
            shared = [g_mag, g_dir, l_mag.view(view), l_dir.view(view), theta]
            f_prev, i_prev = (0.0, 0.0) if prev is None else prev[name]
            f = torch.sigmoid(sum(w * x for w, x in zip(self.w_f, [*shared, f_prev])) + self.b_f)
            i = torch.sigmoid(sum(w * x for w, x in zip(self.w_i, [*shared, i_prev])) + self.input_bias(k))
            new[name] = f * theta - i * g
            gates[name] = (f, i)
        return new, gates


def inner_gradient_and_loss(
    policy: GaussianMLPPolicy,
    params: Mapping[str, Tensor],
    batch: EpisodeBatch,
    adv: Tensor,
    matmul_dtype: torch.dtype | None = None,
) -> tuple[Params, Tensor]:
    """Every task's inner-loss gradient at its own weights and the loss ``(M,)``
    (:func:`robometa.algos.maml.inner_gradient`, with the loss kept)."""

    def loss(p: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        per_task = inner_loss(policy, p, batch, adv, matmul_dtype)
        return per_task.sum(), per_task  # tasks are independent

    return torch.func.grad(loss, has_aux=True)(dict(params))


def adapt_lstm(
    policy: GaussianMLPPolicy,
    theta: Mapping[str, Tensor],
    lstm: MetaLSTMOptimizer,
    batches: Sequence[EpisodeBatch],
    advs: Sequence[Tensor],
    first_order: bool,
    num_tasks: int | None = None,
    matmul_dtype: torch.dtype | None = None,
) -> tuple[list[Params], Gates | None]:
    """The inner loop with the LSTM's update, all tasks at once (like MAML's ``adapt``).

    ``theta``: shared weights (no task axis); ``batches[k]`` sampled with the weights
    after k steps. Returns the per-task weights after each step (leading task axis M)
    and the last step's gates. ``first_order``: the inner gradients and losses are
    constants (only the LSTM's own operations reach the meta-parameters' graph).
    """
    M = batches[0].num_tasks if batches else int(num_tasks)
    params: Params = {name: v.unsqueeze(0).expand(M, *v.shape) for name, v in theta.items()}
    out, gates = [], None
    for batch, adv in zip(batches, advs):
        at = {k: v.detach() for k, v in params.items()} if first_order else params
        grads, losses = inner_gradient_and_loss(policy, at, batch, adv, matmul_dtype)
        if first_order:
            grads, losses = {k: v.detach() for k, v in grads.items()}, losses.detach()
        params, gates = lstm.step(params, grads, losses, gates)
        out.append(params)
    return out or [params], gates


def lstm_meta_loss(
    policy: GaussianMLPPolicy,
    theta: Mapping[str, Tensor],
    lstm: MetaLSTMOptimizer,
    pre: Sequence[EpisodeBatch],
    pre_advs: Sequence[Tensor],
    post: EpisodeBatch,
    post_adv: Tensor,
    first_order: bool,
    clip_eps: float | None = None,
    matmul_dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Adapt ``theta`` on ``pre`` with the LSTM, then MAML's :func:`surrogate` on ``post``:
    (loss, means ``(M, N, T, act_dim)``, stds ``(M, 1, 1, act_dim)``)."""
    phi = adapt_lstm(policy, theta, lstm, pre, pre_advs, first_order, post.num_tasks, matmul_dtype)[0][-1]
    return surrogate(policy, phi, post, post_adv, clip_eps, matmul_dtype)


class MetaLSTM(MAML):
    """Meta-LSTM on one task family: :class:`MAML` with the LSTM's inner update.

    Arguments as :class:`MAML`'s, with a :class:`MetaLSTMConfig`. The outer loop
    (``config.outer``) is MAML's own TRPO or PPO update over ``theta`` and the LSTM.
    """

    def __init__(
        self,
        family: TaskFamily,
        config: MetaLSTMConfig,
        device: str | torch.device = "cpu",
        seed: int = 0,
        sampler_threads: int | None = None,
        learner_threads: int | None = 1,
        backend: str = "batch",
    ):
        self.inner_optimizer: MetaLSTMOptimizer | None = None  # built once the policy exists
        super().__init__(family, config, device, seed, sampler_threads, learner_threads, backend)
        self.name = "meta-lstm"
        self.outer = config.outer
        shapes = {n: p.shape for n, p in self.policy.named_parameters()}
        self.inner_optimizer = MetaLSTMOptimizer(
            shapes, config.inner_lr, config.forget_bias, config.per_weight_input_bias, config.preprocess_p
        ).to(self.device)
        self.optimizer = (
            torch.optim.Adam(self.meta_parameters(), lr=config.outer_lr) if self.outer == "ppo" else None
        )
        self._gate_means = (float("nan"), float(config.inner_lr))

    def meta_parameters(self) -> list[Tensor]:
        """Policy weights, then the LSTM's (not with zero inner steps: it is never used)."""
        params = list(self.policy.parameters())
        if self.inner_optimizer is not None and self.config.inner_steps > 0:
            params += list(self.inner_optimizer.parameters())
        return params

    def _adapted(self, theta: Params, lrs, batches: Sequence[EpisodeBatch], advs: Sequence[Tensor]) -> Params:
        """Every task's weights after the LSTM's inner steps, for sampling (``lrs`` unused)."""
        assert self.inner_optimizer is not None
        M = batches[0].num_tasks
        size = self.task_chunk or M
        parts, f_sum, i_sum, n = [], 0.0, 0.0, 0
        with torch.no_grad():  # torch.func.grad still differentiates inside
            for a in range(0, M, size):
                phis, gates = adapt_lstm(
                    self.policy,
                    theta,
                    self.inner_optimizer,
                    [task_slice(b, a, min(a + size, M)) for b in batches],
                    [v[a : a + size] for v in advs],
                    first_order=True,
                )
                parts.append(phis[-1])
                assert gates is not None
                for f, i in gates.values():
                    f_sum, i_sum, n = f_sum + float(f.sum()), i_sum + float(i.sum()), n + f.numel()
        self._gate_means = (f_sum / n, i_sum / n)
        return {k: torch.cat([q[k] for q in parts]).detach() for k in parts[0]}

    def _objective(self, c: _Chunk, first_order: bool, clip_eps: float | None = None):
        """:func:`lstm_meta_loss` of the chunk's tasks at the current meta-parameters."""
        assert self.inner_optimizer is not None
        return lstm_meta_loss(
            self.policy,
            self.theta(),
            self.inner_optimizer,
            c.pre,
            c.pre_advs,
            c.post,
            c.post_adv,
            first_order,
            clip_eps,
            self._matmul_dtype,
        )

    def _fisher_vector_product(self, pre, pre_advs, post, post_adv) -> Callable[[Tensor], Tensor]:
        """``v -> (F + damping I) v`` on the first ``fisher_subsample`` of the tasks: the
        Hessian of the adapted policies' mean KL w.r.t. every meta-parameter at the
        current ones, by double backpropagation through first-order inner steps."""
        cfg = self.config
        k = max(1, round(cfg.fisher_subsample * post.num_tasks))
        c = _Chunk.of(pre, pre_advs, post, post_adv, 0, k)
        meta = self.meta_parameters()
        with torch.no_grad():
            _, mean0, std0 = self._objective(c, first_order=True)
        _, mean, std = self._objective(c, first_order=True)
        kl = mean_kl((mean0, std0), mean, std, c.post.masks)
        grad = flat(torch.autograd.grad(kl, meta, create_graph=True))

        def fvp(v: Tensor) -> Tensor:
            return flat(torch.autograd.grad(grad @ v, meta, retain_graph=True)) + cfg.cg_damping * v

        return fvp

    def iteration(self, tasks: Sequence[Task]):
        """MAML's meta-iteration; ``train/inner_lr`` is the mean input gate of the
        iteration's last inner step (its effective step size), ``train/forget_gate``
        the mean forget gate."""
        result = super().iteration(tasks)
        if self.config.inner_steps > 0:
            result.metrics["train/forget_gate"], result.metrics["train/inner_lr"] = self._gate_means
        return result

    def state_dict(self) -> dict[str, Any]:
        assert self.inner_optimizer is not None
        state = super().state_dict()
        state["inner_optimizer"] = {
            k: v.detach().cpu().clone() for k, v in self.inner_optimizer.state_dict().items()
        }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert self.inner_optimizer is not None
        super().load_state_dict(state)
        # With zero inner steps (the multi-task baseline) the LSTM was never trained: it
        # stays at this config's initialization, so a changed inner_lr takes effect.
        if self.config.inner_steps > 0:
            self.inner_optimizer.load_state_dict(state["inner_optimizer"])

    def multitask_config(self) -> MetaLSTMConfig:
        """Zero inner steps: multi-task TRPO / PPO of one policy, fine-tuned at evaluation
        by the LSTM at its initialization (f = sigmoid(forget_bias), i = inner_lr)."""
        return dataclasses.replace(self.config, inner_steps=0)
