"""Recurrent Gaussian policy with a value head, for memory-based meta-RL (RL²).

At control step ``t`` of a trial the cell reads ``x_t = [o_t, a_{t-1}, r_{t-1}, d_t]``:
the observation, the previous action and reward, and a flag that is 1 when ``o_t``
starts a new episode of the same trial (Duan et al., 2016, sec. 2.2). The hidden
state is carried across the episodes of one trial and starts from zeros at each
new trial, so everything the policy knows about the task is in that state.

Two heads read the cell's output: the mean of a diagonal Gaussian over actions
(with a state-independent log standard deviation) and a scalar value estimate.
The same weights run one step at a time while sampling (:meth:`step`) and over
whole trials while learning (:meth:`sequence`); both go through one
``torch.nn.GRU`` / ``torch.nn.LSTM`` module. On a CPU, a GRU's trials are
backpropagated by :func:`robometa.policies.gru_bptt.gru_sequence` (same forward,
gradients equal autograd's to float32 rounding, faster) unless ``fused_bptt``
is off.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Independent, Normal

from robometa.policies.gru_bptt import gru_sequence

CELLS = ("gru", "lstm")

# GRU hidden: (1, B, H); LSTM hidden: a (h, c) pair of (1, B, H) tensors.
Hidden = Tensor | tuple[Tensor, Tensor]


def assemble_inputs(obs: Tensor, prev_action: Tensor, prev_reward: Tensor, done: Tensor) -> Tensor:
    """The cell's input ``[obs, prev_action, prev_reward, done]`` along the last axis.

    ``obs: (..., obs_dim)``, ``prev_action: (..., act_dim)``, ``prev_reward, done: (...)``
    -> ``(..., obs_dim + act_dim + 2)``.
    """
    return torch.cat([obs, prev_action, prev_reward.unsqueeze(-1), done.unsqueeze(-1)], dim=-1)


def previous_step_inputs(
    actions: Tensor, rewards: Tensor, episode_ends: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Shift a trial's actions, rewards and episode ends one step later in time.

    ``actions: (..., L, act_dim)``, ``rewards, episode_ends: (..., L)`` -> the
    ``prev_action, prev_reward, done`` inputs of steps ``0..L-1`` (zeros at step 0,
    where the trial starts and nothing came before).
    """
    prev_a = torch.zeros_like(actions)
    prev_a[..., 1:, :] = actions[..., :-1, :]
    prev_r = torch.zeros_like(rewards)
    prev_r[..., 1:] = rewards[..., :-1]
    done = torch.zeros_like(episode_ends)
    done[..., 1:] = episode_ends[..., :-1]
    return prev_a, prev_r, done


class RecurrentGaussianPolicy(nn.Module):
    """GRU or LSTM actor-critic over RL² inputs.

    Args:
        obs_dim, act_dim: sizes of the observation and action.
        hidden: width of the recurrent state.
        cell: ``gru`` (default) or ``lstm``.
        init_std: initial standard deviation of every action dimension.
        fused_bptt: on a CPU, backpropagate through a GRU's sequences with
            :func:`~robometa.policies.gru_bptt.gru_sequence` instead of autograd's
            per-step graph (no effect with an LSTM, on a GPU, or without gradients).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: int = 64,
        cell: str = "gru",
        init_std: float = 1.0,
        fused_bptt: bool = True,
    ):
        super().__init__()
        if cell not in CELLS:
            from robometa.errors import choice_error

            raise choice_error("recurrent cell", cell, CELLS)
        self.obs_dim, self.act_dim, self.hidden, self.cell = obs_dim, act_dim, hidden, cell
        self.fused_bptt = fused_bptt
        self.input_dim = obs_dim + act_dim + 2
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(self.input_dim, hidden, batch_first=True)
        self.mean_head = nn.Linear(hidden, act_dim)
        self.value_head = nn.Linear(hidden, 1)
        self.log_std = nn.Parameter(torch.full((act_dim,), math.log(init_std)))

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Draw every weight from ``generator`` (PyTorch's default uniform ranges).

        A small mean head starts the policy near zero action, so early trials are
        dominated by the exploration noise rather than by a random bias.
        """
        bound = 1.0 / math.sqrt(self.hidden)
        with torch.no_grad():
            for p in self.rnn.parameters():
                p.uniform_(-bound, bound, generator=generator)
            for head, scale in ((self.mean_head, 0.01), (self.value_head, 1.0)):
                head.weight.uniform_(-bound * scale, bound * scale, generator=generator)
                head.bias.zero_()

    # ---------------------------------------------------------------- hidden state
    def initial_state(self, batch: int, device: torch.device | str | None = None) -> Hidden:
        """Zero hidden state of ``batch`` fresh trials."""
        z = torch.zeros(1, batch, self.hidden, device=device)
        return (z, z.clone()) if self.cell == "lstm" else z

    # ---------------------------------------------------------------- forward
    def sequence(self, inputs: Tensor, state: Hidden | None = None) -> tuple[Tensor, Tensor, Hidden]:
        """Run whole sequences: ``inputs: (B, L, input_dim)``.

        Returns the action means ``(B, L, act_dim)``, values ``(B, L)`` and the
        hidden state after step ``L-1``. ``state=None`` starts new trials.
        """
        if self.fused_bptt and self.cell == "gru" and inputs.device.type == "cpu" and torch.is_grad_enabled():
            out, state = gru_sequence(self.rnn, inputs, state)
        else:
            out, state = self.rnn(inputs, state)
        return self.mean_head(out), self.value_head(out).squeeze(-1), state

    def step(self, inputs: Tensor, state: Hidden) -> tuple[Tensor, Tensor, Hidden]:
        """One control step for a batch: ``inputs: (B, input_dim)``.

        Returns means ``(B, act_dim)``, values ``(B,)`` and the next hidden state.
        """
        mean, value, state = self.sequence(inputs.unsqueeze(1), state)
        return mean.squeeze(1), value.squeeze(1), state

    def distribution(self, mean: Tensor) -> Independent:
        """The Gaussian over actions with the given means ``(..., act_dim)``."""
        return Independent(Normal(mean, self.log_std.exp().expand_as(mean)), 1)

    def act(
        self,
        inputs: Tensor,
        state: Hidden,
        generator: torch.Generator | None = None,
        deterministic: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor, Hidden]:
        """Sample one step without gradient: ``inputs: (B, input_dim)``.

        Returns actions ``(B, act_dim)``, their log-probabilities ``(B,)``, values
        ``(B,)`` and the next hidden state.
        """
        with torch.no_grad():
            mean, value, state = self.step(inputs, state)
            dist = self.distribution(mean)
            if deterministic:
                action = mean
            else:
                noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
                action = mean + dist.base_dist.scale * noise
            return action, dist.log_prob(action), value, state
