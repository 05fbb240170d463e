"""Context-conditioned actor-critic: the task embedding comes from the transitions seen so far.

The policy reads RL²'s inputs (:mod:`robometa.policies.recurrent`): at step ``t`` of a
trial ``x_t = [o_t, a_{t-1}, r_{t-1}, d_t]``, ``d_t = 1`` when ``o_t`` starts a new
episode of the trial. Instead of a recurrent memory it keeps the *context*: the
transitions of the trial so far, from the current episode and the earlier ones.

**Transitions.** Consecutive inputs ``x_{t-1}, x_t`` give the transition
``c_t = (o_{t-1}, a_{t-1}, r_{t-1}, o_t, 0)``, completed before step ``t`` acts. When
``d_t = 1`` the env was reset at once after ``a_{t-1}``, so the previous episode's final
next state was never observed: that transition is *kept*, with its next state zeroed
and the end flag set, ``c_t = (o_{t-1}, a_{t-1}, r_{t-1}, 0, 1)``, because the reward
of an episode's last step still tells about the task. Step 0 of a trial has no
transition, so the context of step ``t`` is ``{c_1, ..., c_t}``: ``t`` transitions.
Observations and rewards are the normalized ones the policy reads.

**Encoder and aggregators.** An MLP embeds every transition, ``e_i = f(c_i)``; an
aggregator turns the context's embeddings into the task embedding ``z_t``:

* ``mean`` — the prototype of the context, ``z_t = (1/t) sum_i e_i`` (Prototypical
  Networks, Snell et al., 2017);
* ``attention`` — soft attention from the current observation over the context, the
  matching of Matching Networks (Vinyals et al., 2016): query ``q_t = W_q o_t``, keys
  ``W_k e_i``, values ``W_v e_i``, ``z_t = sum_i softmax_i(q_t . k_i / sqrt(dim)) v_i``
  (scaled dot-product similarity, Vaswani et al., 2017, where Matching Networks use the
  cosine);
* ``pog`` — a product of Gaussians (PEARL, Rakelly et al., 2019): every transition gives
  a Gaussian factor ``N(mu_i, diag(s_i^2))`` (``s_i^2 = softplus(.)``, floored at
  ``1e-7`` as in PEARL); their product with the unit Gaussian prior ``N(0, I)`` is the
  task posterior, precision ``1 + sum_i 1/s_i^2``, mean
  ``(sum_i mu_i / s_i^2) / precision``. PEARL's code multiplies the factors only; the
  prior factor here makes the empty context's posterior the prior.

All three are invariant to the order of the context. With an empty context (step 0 of
a trial) ``z = 0``: the zero vector for ``mean`` and ``attention``, the prior's mean
for ``pog``.

**pog: which z the policy reads.** PEARL samples ``z`` from the posterior. An on-policy
learner needs ``pi_old(a | inputs)`` again when it learns, and the trial sampler
records actions and their log-probabilities but not a latent sample: memories are
created per chunk of envs, possibly on other processes (Ray workers), so per-trial
latent noise could not be replayed. Here the policy and the value read the posterior
*mean*, a deterministic function of the context, so the learner's likelihood ratios
are exact on every sampling backend; nothing is sampled but the action. The
posterior's variance still acts: it weights every transition's vote in the mean, and
the learner adds ``kl_weight * KL(posterior || N(0, I))`` (averaged over the trials'
steps, :meth:`ContextPolicy.trial_outputs`) to PPO's loss, PEARL's information
bottleneck.

**Policy and value.** Two MLPs of ``[o_t, z_t]``: the mean of a diagonal Gaussian over
actions (state-independent log standard deviation) and a scalar value. Activations are
tanh throughout.

**One pass or one step.** :meth:`ContextPolicy.sequence` computes whole trials in one
pass of tensor operations with causal masking (``z_t`` uses the transitions completed
before step ``t`` only): cumulative sums for ``mean`` and ``pog`` (``O(L)``), a causally
masked ``(L, L)`` attention for ``attention`` (``O(L^2)``). It accepts a state, so
:meth:`ContextPolicy.step` is the same code on one step: the state carries the
previous observation and the running sums (``mean``: sum and count of embeddings;
``pog``: sums of precisions and of precision-weighted means) or the cached keys and
values (``attention``), and sampling is incremental.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from robometa.policies.recurrent import RecurrentGaussianPolicy

AGGREGATORS = ("mean", "attention", "pog")

MIN_VARIANCE = 1e-7  # floor of a pog factor's variance (PEARL's clamp)

ContextState = dict[str, Tensor]
"""The policy's memory of ``B`` trials: ``prev_obs (B, obs_dim)``, ``started (B,)`` (1.0
once a step was taken) and the aggregator's own entries (see each aggregator)."""


def mlp(in_dim: int, hidden: int, layers: int, out_dim: int) -> nn.Sequential:
    """``layers`` tanh hidden layers of ``hidden`` units, then a linear output layer."""
    mods: list[nn.Module] = []
    width = in_dim
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.Tanh()]
        width = hidden
    mods.append(nn.Linear(width, out_dim))
    return nn.Sequential(*mods)


def transition_features(prev_obs: Tensor, inputs: Tensor, obs_dim: int, act_dim: int) -> Tensor:
    """The transitions completed before every step: ``(o_{t-1}, a_{t-1}, r_{t-1}, o_t, d_t)``.

    ``prev_obs: (B, L, obs_dim)`` holds ``o_{t-1}``, ``inputs: (B, L, obs_dim + act_dim + 2)``
    ``x_t``. Where ``d_t = 1`` the next state ``o_t`` starts a new episode and is zeroed
    (the previous episode's final state was not observed). Returns
    ``(B, L, 2 * obs_dim + act_dim + 2)``.
    """
    obs = inputs[..., :obs_dim]
    done = inputs[..., obs_dim + act_dim + 1 :]
    action_reward = inputs[..., obs_dim : obs_dim + act_dim + 1]
    return torch.cat([prev_obs, action_reward, obs * (1.0 - done), done], dim=-1)


# ------------------------------------------------------------------ aggregators
#
# Each maps embeddings ``e: (B, L, enc_dim)`` of the transitions completed before steps
# 0..L-1, their weights ``w: (B, L)`` (1 for a transition, 0 where there is none) and the
# queries ``obs: (B, L, obs_dim)`` to ``z: (B, L, dim)``, where ``z_t`` aggregates the
# state's context and the transitions ``i <= t``; it also returns the next state.


class MeanAggregator(nn.Module):
    """Prototype: the mean of the context's embeddings (Snell et al., 2017); 0 when empty.

    State: ``sum (B, dim)``, ``count (B,)``.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = self.enc_dim = dim

    def initial_state(self, batch: int, device: torch.device | str | None) -> ContextState:
        return {
            "sum": torch.zeros(batch, self.dim, device=device),
            "count": torch.zeros(batch, device=device),
        }

    def forward(
        self, e: Tensor, w: Tensor, obs: Tensor, state: ContextState
    ) -> tuple[Tensor, dict[str, Tensor], ContextState]:
        total = state["sum"].unsqueeze(1) + torch.cumsum(e * w.unsqueeze(-1), dim=1)
        count = state["count"].unsqueeze(1) + torch.cumsum(w, dim=1)
        z = total / count.clamp_min(1.0).unsqueeze(-1)
        return z, {}, {"sum": total[:, -1], "count": count[:, -1]}


class AttentionAggregator(nn.Module):
    """Matching: soft attention from the observation over the context (Vinyals et al., 2016).

    One head of scaled dot-product attention; 0 when the context is empty. State: the
    cached ``keys, values (B, C, dim)`` of the ``C`` transitions so far and their
    ``valid (B, C)`` weights.
    """

    def __init__(self, obs_dim: int, dim: int):
        super().__init__()
        self.dim = self.enc_dim = dim
        self.query = nn.Linear(obs_dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)

    def initial_state(self, batch: int, device: torch.device | str | None) -> ContextState:
        empty = torch.zeros(batch, 0, self.dim, device=device)
        return {"keys": empty, "values": empty.clone(), "valid": torch.zeros(batch, 0, device=device)}

    def forward(
        self, e: Tensor, w: Tensor, obs: Tensor, state: ContextState
    ) -> tuple[Tensor, dict[str, Tensor], ContextState]:
        keys = torch.cat([state["keys"], self.key(e)], dim=1)  # (B, C + L, dim)
        values = torch.cat([state["values"], self.value(e)], dim=1)
        valid = torch.cat([state["valid"], w], dim=1)  # (B, C + L)
        C, L = state["keys"].shape[1], e.shape[1]
        # Step t sees the cached transitions and the new ones up to itself.
        causal = torch.ones(L, C + L, dtype=torch.bool, device=e.device)
        causal[:, C:] = torch.ones(L, L, dtype=torch.bool, device=e.device).tril()
        allowed = causal.unsqueeze(0) & (valid > 0).unsqueeze(1)  # (B, L, C + L)
        scores = self.query(obs) @ keys.transpose(1, 2) / math.sqrt(self.dim)
        # A finite fill, not -inf: a row with nothing to attend to stays finite (uniform
        # weights), and is zeroed below with no gradient.
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        z = torch.softmax(scores, dim=-1) @ values
        z = z * allowed.any(dim=-1, keepdim=True)
        return z, {}, {"keys": keys, "values": values, "valid": valid}


class ProductOfGaussians(nn.Module):
    """PEARL's task posterior: the unit Gaussian prior times one Gaussian factor per transition.

    The encoder gives every transition ``(mu_i, raw_i)``, each ``dim`` wide; the factor's
    variance is ``softplus(raw_i)`` (at least :data:`MIN_VARIANCE`). The posterior at
    step ``t`` has precision ``1 + sum_i 1/s_i^2`` and mean
    ``(sum_i mu_i / s_i^2) / precision``; ``z_t`` is that mean (see the module docstring
    for why not a sample). The extra outputs are the posterior ``mean`` and ``variance``
    ``(B, L, dim)``. State: the running sums ``precision (B, dim)`` (factors only, without
    the prior's 1) and ``weighted (B, dim)`` (of ``mu_i / s_i^2``).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.enc_dim = 2 * dim

    def initial_state(self, batch: int, device: torch.device | str | None) -> ContextState:
        zeros = torch.zeros(batch, self.dim, device=device)
        return {"precision": zeros, "weighted": zeros.clone()}

    def factors(self, e: Tensor) -> tuple[Tensor, Tensor]:
        """Means and variances ``(..., dim)`` of the transitions' factors, from ``e: (..., 2 dim)``."""
        mu, raw = e.split(self.dim, dim=-1)
        return mu, nn.functional.softplus(raw).clamp_min(MIN_VARIANCE)

    def forward(
        self, e: Tensor, w: Tensor, obs: Tensor, state: ContextState
    ) -> tuple[Tensor, dict[str, Tensor], ContextState]:
        mu, var = self.factors(e)
        precision = w.unsqueeze(-1) / var
        total_precision = state["precision"].unsqueeze(1) + torch.cumsum(precision, dim=1)
        weighted = state["weighted"].unsqueeze(1) + torch.cumsum(precision * mu, dim=1)
        posterior_precision = 1.0 + total_precision  # the prior N(0, I) contributes 1
        mean = weighted / posterior_precision
        extra = {"mean": mean, "variance": 1.0 / posterior_precision}
        return mean, extra, {"precision": total_precision[:, -1], "weighted": weighted[:, -1]}


def kl_to_unit_gaussian(mean: Tensor, variance: Tensor) -> Tensor:
    """``KL(N(mean, diag(variance)) || N(0, I))`` over the last axis: ``(..., dim) -> (...)``."""
    return 0.5 * (variance + mean.square() - 1.0 - variance.log()).sum(-1)


# ------------------------------------------------------------------ the policy


class ContextPolicy(nn.Module):
    """Actor-critic conditioned on a task embedding of the trial's transitions so far.

    Same interface as :class:`~robometa.policies.recurrent.RecurrentGaussianPolicy`
    (``reset_parameters``, ``initial_state``, ``sequence``, ``step``, ``act``,
    ``distribution``, ``log_std``), so the RL² learner trains it unchanged.

    Args:
        obs_dim, act_dim: sizes of the observation and action.
        aggregator: ``mean`` | ``attention`` | ``pog``.
        embedding: size of the task embedding ``z``.
        hidden: width of the policy and value MLPs' hidden layers.
        encoder_hidden: width of the transition encoder's hidden layers.
        layers: hidden layers of each MLP.
        init_std: initial standard deviation of every action dimension.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        aggregator: str = "mean",
        embedding: int = 8,
        hidden: int = 64,
        encoder_hidden: int = 64,
        layers: int = 2,
        init_std: float = 1.0,
    ):
        super().__init__()
        if aggregator not in AGGREGATORS:
            from robometa.errors import choice_error

            raise choice_error("aggregator", aggregator, AGGREGATORS)
        self.obs_dim, self.act_dim, self.aggregator_name = obs_dim, act_dim, aggregator
        self.input_dim = obs_dim + act_dim + 2
        self.transition_dim = 2 * obs_dim + act_dim + 2
        self.aggregator: MeanAggregator | AttentionAggregator | ProductOfGaussians
        if aggregator == "mean":
            self.aggregator = MeanAggregator(embedding)
        elif aggregator == "attention":
            self.aggregator = AttentionAggregator(obs_dim, embedding)
        else:
            self.aggregator = ProductOfGaussians(embedding)
        self.encoder = mlp(self.transition_dim, encoder_hidden, layers, self.aggregator.enc_dim)
        self.mean_net = mlp(obs_dim + embedding, hidden, layers, act_dim)
        self.value_net = mlp(obs_dim + embedding, hidden, layers, 1)
        self.log_std = nn.Parameter(torch.full((act_dim,), math.log(init_std)))

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Draw every weight from ``generator`` (PyTorch's default uniform ranges).

        Output biases start at 0 and the mean's output layer small, so early trials are
        dominated by the exploration noise rather than by a random bias.
        """
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    bound = 1.0 / math.sqrt(module.in_features)
                    module.weight.uniform_(-bound, bound, generator=generator)
                    module.bias.uniform_(-bound, bound, generator=generator)
            for net, scale in ((self.mean_net, 0.01), (self.value_net, 1.0)):
                net[-1].weight.mul_(scale)
                net[-1].bias.zero_()

    # ---------------------------------------------------------------- memory
    def initial_state(self, batch: int, device: torch.device | str | None = None) -> ContextState:
        """The empty context of ``batch`` fresh trials."""
        return {
            "prev_obs": torch.zeros(batch, self.obs_dim, device=device),
            "started": torch.zeros(batch, device=device),
            **self.aggregator.initial_state(batch, device),
        }

    # ---------------------------------------------------------------- forward
    def task_embedding(self, transitions: Tensor, obs: Tensor) -> Tensor:
        """``z`` of a whole context: ``transitions: (B, N, transition_dim)``, ``obs: (B, obs_dim)``
        (the attention query) -> ``(B, embedding)``; order-free in the ``N`` transitions."""
        B, N = transitions.shape[:2]
        e = self.encoder(transitions)
        w = torch.ones(B, N, device=transitions.device)
        query = obs.unsqueeze(1).expand(B, N, obs.shape[-1])
        z, _, _ = self.aggregator(e, w, query, self.aggregator.initial_state(B, transitions.device))
        return z[:, -1]

    def heads(self, obs: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """Action means ``(..., act_dim)`` and values ``(...)`` of ``obs: (..., obs_dim)`` under ``z``."""
        h = torch.cat([obs, z], dim=-1)
        return self.mean_net(h), self.value_net(h).squeeze(-1)

    def trial_outputs(
        self, inputs: Tensor, state: ContextState | None = None
    ) -> tuple[Tensor, Tensor, Tensor | None, ContextState]:
        """Whole sequences in one pass: ``inputs: (B, L, input_dim)``.

        Returns the action means ``(B, L, act_dim)``, values ``(B, L)``, the KL of the task
        posterior from its prior at every step ``(B, L)`` (``pog``; ``None`` for the
        others) and the state after step ``L-1``. ``state=None`` starts new trials.
        """
        B, L = inputs.shape[:2]
        if state is None:
            state = self.initial_state(B, inputs.device)
        obs = inputs[..., : self.obs_dim]
        prev_obs = torch.cat([state["prev_obs"].unsqueeze(1), obs[:, :-1]], dim=1)
        # A transition precedes every step but a trial's first.
        w = torch.cat([state["started"].unsqueeze(1), inputs.new_ones(B, L - 1)], dim=1)
        e = self.encoder(transition_features(prev_obs, inputs, self.obs_dim, self.act_dim))
        own = {k: v for k, v in state.items() if k not in ("prev_obs", "started")}
        z, extra, own = self.aggregator(e, w, obs, own)
        means, values = self.heads(obs, z)
        kl = kl_to_unit_gaussian(extra["mean"], extra["variance"]) if "variance" in extra else None
        new_state = {"prev_obs": obs[:, -1], "started": inputs.new_ones(B), **own}
        return means, values, kl, new_state

    def sequence(
        self, inputs: Tensor, state: ContextState | None = None
    ) -> tuple[Tensor, Tensor, ContextState]:
        """Run whole sequences: ``inputs: (B, L, input_dim)``.

        Returns the action means ``(B, L, act_dim)``, values ``(B, L)`` and the state
        after step ``L-1``. ``state=None`` starts new trials.
        """
        means, values, _, state = self.trial_outputs(inputs, state)
        return means, values, state

    def step(self, inputs: Tensor, state: ContextState) -> tuple[Tensor, Tensor, ContextState]:
        """One control step for a batch: ``inputs: (B, input_dim)``.

        Returns means ``(B, act_dim)``, values ``(B,)`` and the next state.
        """
        mean, value, state = self.sequence(inputs.unsqueeze(1), state)
        return mean.squeeze(1), value.squeeze(1), state

    # The action Gaussian and one sampled step are RL²'s policy's (same heads, same noise draw).
    distribution = RecurrentGaussianPolicy.distribution
    act = RecurrentGaussianPolicy.act
