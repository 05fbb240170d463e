"""SNAIL actor-critic (Mishra et al., 2018): temporal convolutions and causal attention over a trial.

A Simple Neural AttentIve meta-Learner reads the same per-step inputs as RL²'s
recurrent policy, ``x_t = [o_t, a_{t-1}, r_{t-1}, d_t]``
(:func:`robometa.policies.recurrent.assemble_inputs`), but instead of squeezing the
trial into a hidden state it looks back at every step of the trial so far:

* a linear embedding of ``x_t`` (``hidden`` units, tanh) starts each step's feature
  vector ``z_t``;
* a **TC block** (temporal convolution) is a stack of dense layers with dilations
  1, 2, 4, ..., 2^(n-1), ``n = ceil(log2 C)`` for a context of ``C`` steps (the training
  trial, ``K`` episodes of ``T`` steps), so that its receptive field ``2^n`` covers the
  whole trial. A dense layer with dilation ``d`` is a causal convolution of kernel 2,
  i.e. an affine map of ``[z_{t-d}, z_t]`` (zeros before the trial's first step), to
  ``2 * filters`` channels ``(f, g)``, gated as ``tanh(f) * sigmoid(g)``; its
  ``filters`` outputs are concatenated to its input (dense connections);
* an **attention block** is single-head causal soft attention: query, key and value
  are affine maps of ``z_t`` (key size ``key_size``, value size ``value_size``), the
  logits ``q_t . k_s / sqrt(key_size)`` over steps ``s <= t`` go through a softmax,
  and the read ``sum_s p_ts v_s`` is concatenated to the input;
* two linear heads read the final ``z_t``: the mean of a diagonal Gaussian over
  actions (state-independent ``log_std``, as RL²'s) and a scalar value.

The blocks are those of the paper (sec. 3, and the pseudo-code of DenseBlock, TCBlock
and AttentionBlock in its appendix). Its RL agents (appendix, RL experiments)
interleave TC blocks over the whole trial (``T`` = the trial length, e.g. 2 episodes
of 250 steps for visual navigation) with attention blocks, e.g. for navigation a
policy of ``TCBlock(T, 32), AttentionBlock(16, 16), TCBlock(T, 32),
AttentionBlock(16, 16)`` and a separate value network ``TCBlock(T, 16), TCBlock(T,
16)``. The defaults here (``layout = tc, attention, tc, attention``, 32 filters, key
and value size 16) follow that agent. Deviations, and why:

* one trunk feeds both heads (as RL²'s GRU does here) instead of a separate value
  network: half the compute on a small CPU, and PPO's value loss trains it;
* the input embedding is one tanh layer (the navigation agent's is a CNN over pixels);
* the quick preset (``robometa/configs/presets/snail/quick.yaml``) halves the filters
  to 16 so that a run fits a few minutes on a 2-core CPU.

**Two ways to run it, same numbers.** :meth:`SNAILPolicy.sequence` computes whole
trials in one causal pass (training: every step of every trial at once, convolutions
as shifted matrix products and attention with a causal mask).
:meth:`SNAILPolicy.step` computes one step from a :class:`SNAILState` that caches
what the past contributes: the keys and values of every attention block for every
step so far, and the feature vectors ``z_s`` of the last ``2^(n-1)`` steps (the
largest dilation; since every block concatenates onto its input, the input of any
dense layer at step ``s`` is a prefix of ``z_s``, so these hold the last ``d``
inputs of every causal convolution). A step then costs O(t) (attention over the
``t`` cached keys; each convolution reads one cached vector) rather than recomputing
the whole prefix, O(t^2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robometa.errors import choice_error
from robometa.policies.recurrent import RecurrentGaussianPolicy

BLOCKS = ("tc", "attention")


def tc_depth(context: int) -> int:
    """Dense layers of a TC block covering ``context`` steps: ``ceil(log2 context)``, at least 1."""
    return max(1, math.ceil(math.log2(max(int(context), 1))))


class SNAILState(NamedTuple):
    """What the past of ``B`` trials contributes to the next step (all ``(B, ...)``).

    ``history``: the feature vectors ``z_s`` ``(B, width)`` of the last (up to) ``2^(n-1)``
    steps, oldest first; ``keys`` / ``values``: per attention block, ``(B, t, key_size)``
    and ``(B, t, value_size)`` for the ``t`` steps so far. Never changed in place: a
    step returns a new state.
    """

    history: tuple[Tensor, ...]
    keys: tuple[Tensor, ...]
    values: tuple[Tensor, ...]


class DenseLayer(nn.Module):
    """Causal convolution of kernel 2 and dilation ``dilation`` with a gated activation.

    Reads ``[x_{t-d}, x_t]`` (``(..., 2 * in_width)``) and returns
    ``tanh(f) * sigmoid(g)``, ``(..., filters)``; the caller concatenates it to ``x_t``.
    """

    def __init__(self, in_width: int, filters: int, dilation: int):
        super().__init__()
        self.in_width, self.filters, self.dilation = in_width, filters, dilation
        self.conv = nn.Linear(2 * in_width, 2 * filters)

    def forward(self, past: Tensor, now: Tensor) -> Tensor:
        """One step: ``past = x_{t-d}``, ``now = x_t``, each ``(B, in_width)``."""
        return gate(self.conv(torch.cat([past, now], dim=-1)))

    def sequence(self, x: Tensor) -> Tensor:
        """Every step of ``x: (B, L, in_width)`` at once (zeros before step 0).

        Both taps are applied to every step in one product, then the past tap's
        ``2 * filters`` channels are shifted ``d`` steps later: cheaper than shifting
        and concatenating the ``in_width`` inputs.
        """
        c, d = self.in_width, self.dilation
        w = self.conv.weight  # (2 * filters, 2 * in_width): [past tap | current tap]
        now, past = F.linear(x, torch.cat([w[:, c:], w[:, :c]])).chunk(2, dim=-1)
        past = F.pad(past, (0, 0, d, 0))[:, : x.shape[1]]
        return gate(now + past + self.conv.bias)


def gate(pre: Tensor) -> Tensor:
    """The gated activation ``tanh(f) * sigmoid(g)`` of ``pre = [f, g]`` along the last axis."""
    f, g = pre.chunk(2, dim=-1)
    return torch.tanh(f) * torch.sigmoid(g)


class AttentionLayer(nn.Module):
    """Single-head causal soft attention: query / key / value projections of the input."""

    def __init__(self, in_width: int, key_size: int, value_size: int):
        super().__init__()
        self.in_width, self.key_size, self.value_size = in_width, key_size, value_size
        self.query = nn.Linear(in_width, key_size)
        self.key = nn.Linear(in_width, key_size)
        self.value = nn.Linear(in_width, value_size)


class SNAILPolicy(nn.Module):
    """SNAIL actor-critic over RL² inputs, with RL²'s policy interface.

    Args:
        obs_dim, act_dim: sizes of the observation and action.
        context: steps the TC blocks cover (the training trial, ``K * T``); longer
            trials still run (attention sees all of them, convolutions the last ``2^n``).
        layout: the blocks in order, each ``"tc"`` or ``"attention"``.
        hidden: width of the input embedding.
        tc_filters: channels each dense layer of a TC block adds.
        key_size, value_size: of every attention block.
        init_std: initial standard deviation of every action dimension.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        context: int,
        layout: Sequence[str] = ("tc", "attention", "tc", "attention"),
        hidden: int = 32,
        tc_filters: int = 32,
        key_size: int = 16,
        value_size: int = 16,
        init_std: float = 1.0,
    ):
        super().__init__()
        for block in layout:
            if block not in BLOCKS:
                raise choice_error("SNAIL block", block, BLOCKS)
        self.obs_dim, self.act_dim, self.hidden = obs_dim, act_dim, hidden
        self.input_dim = obs_dim + act_dim + 2
        self.context, self.layout = int(context), tuple(layout)
        self.embed = nn.Linear(self.input_dim, hidden)
        layers: list[nn.Module] = []
        width = hidden
        for block in self.layout:
            if block == "tc":
                for i in range(tc_depth(self.context)):
                    layers.append(DenseLayer(width, tc_filters, 2**i))
                    width += tc_filters
            else:
                layers.append(AttentionLayer(width, key_size, value_size))
                width += value_size
        self.layers = nn.ModuleList(layers)
        self.width = width
        dilations = [m.dilation for m in layers if isinstance(m, DenseLayer)]
        self.max_dilation = max(dilations, default=0)
        self.mean_head = nn.Linear(width, act_dim)
        self.value_head = nn.Linear(width, 1)
        self.log_std = nn.Parameter(torch.full((act_dim,), math.log(init_std)))

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Draw every weight from ``generator``: PyTorch's default range ``1/sqrt(fan_in)``.

        As for RL²'s policy, the mean head starts 100 times smaller (near-zero actions,
        exploration by the noise) and the heads' biases at zero.
        """
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    bound = 1.0 / math.sqrt(module.in_features)
                    if module is self.mean_head:
                        bound *= 0.01
                    module.weight.uniform_(-bound, bound, generator=generator)
                    if module is self.mean_head or module is self.value_head:
                        module.bias.zero_()
                    else:
                        module.bias.uniform_(-bound, bound, generator=generator)

    # ---------------------------------------------------------------- state
    def initial_state(self, batch: int, device: torch.device | str | None = None) -> SNAILState:
        """The empty past of ``batch`` fresh trials."""
        dtype = self.log_std.dtype
        attention = [m for m in self.layers if isinstance(m, AttentionLayer)]
        return SNAILState(
            history=(),
            keys=tuple(torch.zeros(batch, 0, m.key_size, device=device, dtype=dtype) for m in attention),
            values=tuple(torch.zeros(batch, 0, m.value_size, device=device, dtype=dtype) for m in attention),
        )

    # ---------------------------------------------------------------- forward
    def sequence(self, inputs: Tensor, state: SNAILState | None = None) -> tuple[Tensor, Tensor, SNAILState]:
        """Run whole sequences: ``inputs: (B, L, input_dim)``.

        Returns the action means ``(B, L, act_dim)``, values ``(B, L)`` and the state
        after step ``L-1``. ``state=None`` starts new trials, in one causal pass;
        a given state is continued step by step (:meth:`step`).
        """
        if state is not None:
            means, values = [], []
            for t in range(inputs.shape[1]):
                mean, value, state = self.step(inputs[:, t], state)
                means.append(mean)
                values.append(value)
            return torch.stack(means, 1), torch.stack(values, 1), state
        L = inputs.shape[1]
        z = torch.tanh(self.embed(inputs))
        keys, values = [], []
        for layer in self.layers:
            if isinstance(layer, DenseLayer):
                out = layer.sequence(z)
            else:
                q, k, v = layer.query(z), layer.key(z), layer.value(z)
                out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                keys.append(k)
                values.append(v)
            z = torch.cat([z, out], dim=-1)
        history = tuple(z.unbind(1)[max(0, L - self.max_dilation) :]) if self.max_dilation else ()
        state = SNAILState(history, tuple(keys), tuple(values))
        return self.mean_head(z), self.value_head(z).squeeze(-1), state

    def step(self, inputs: Tensor, state: SNAILState) -> tuple[Tensor, Tensor, SNAILState]:
        """One control step for a batch: ``inputs: (B, input_dim)``, O(t) at step t.

        Returns means ``(B, act_dim)``, values ``(B,)`` and the next state (``state``
        itself is left as it was).
        """
        z = torch.tanh(self.embed(inputs))
        history = state.history
        keys, values = list(state.keys), list(state.values)
        a = 0
        for layer in self.layers:
            if isinstance(layer, DenseLayer):
                d = layer.dilation
                if len(history) >= d:
                    past = history[-d][:, : layer.in_width]
                else:  # before the trial's first step
                    past = z.new_zeros(z.shape[0], layer.in_width)
                out = layer(past, z)
            else:
                q = layer.query(z)
                keys[a] = torch.cat([keys[a], layer.key(z).unsqueeze(1)], dim=1)
                values[a] = torch.cat([values[a], layer.value(z).unsqueeze(1)], dim=1)
                out = F.scaled_dot_product_attention(q.unsqueeze(1), keys[a], values[a]).squeeze(1)
                a += 1
            z = torch.cat([z, out], dim=-1)
        if self.max_dilation:
            history = (*history[max(0, len(history) + 1 - self.max_dilation) :], z)
        state = SNAILState(history, tuple(keys), tuple(values))
        return self.mean_head(z), self.value_head(z).squeeze(-1), state

    # The Gaussian over actions and one-step sampling are RL²'s, unchanged: both only
    # use ``log_std`` and :meth:`step`.
    distribution = RecurrentGaussianPolicy.distribution
    act = RecurrentGaussianPolicy.act
