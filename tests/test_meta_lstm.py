"""Meta-LSTM's inner update against MAML's / Meta-SGD's step, and its meta-gradient
against finite differences."""

from __future__ import annotations

import math

import pytest
import torch
from toy_problems import make_batch, random_adv
from toy_problems import make_policy as _make_policy

from robometa.algos.maml import adapt
from robometa.algos.meta_lstm import MetaLSTMOptimizer, adapt_lstm, lstm_meta_loss, preprocess
from robometa.algos.trpo import flat, unflat
from robometa.policies import GaussianMLPPolicy


def make_policy(seed: int = 0) -> GaussianMLPPolicy:
    return _make_policy(seed, hidden=(4,))


def make_lstm(policy, inner_lr=0.1, per_weight=False, seed=None) -> MetaLSTMOptimizer:
    shapes = {n: p.shape for n, p in policy.named_parameters()}
    lstm = MetaLSTMOptimizer(shapes, inner_lr, forget_bias=5.0, per_weight_input_bias=per_weight).double()
    if seed is not None:  # generic gates: every weight nonzero
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in lstm.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    return lstm


def test_preprocessing_follows_andrychowicz_appendix_a():
    mag, direction = preprocess(torch.tensor([2.0, -1e-3, 1e-6, -1e-6, 0.0]), p=10.0)
    big = torch.tensor([math.log(2.0) / 10, math.log(1e-3) / 10, -1.0, -1.0, -1.0])
    torch.testing.assert_close(mag, big)
    torch.testing.assert_close(
        direction, torch.tensor([1.0, -1.0, math.exp(10) * 1e-6, -math.exp(10) * 1e-6, 0.0])
    )


@pytest.mark.parametrize("per_weight", [False, True])
def test_gates_fixed_to_one_and_alpha_reproduce_maml_and_meta_sgd_exactly(per_weight):
    """w_f = w_i = 0, b_f = +inf (f = 1), b_i = logit(alpha): the LSTM step is MAML's
    ``phi - alpha * grad``; with a per-weight b_i it is Meta-SGD's ``phi - alpha_w * grad``."""
    policy = make_policy()
    theta = dict(policy.named_parameters())
    lstm = make_lstm(policy, inner_lr=0.1, per_weight=per_weight)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        lstm.b_f.fill_(math.inf)
        for b in lstm.b_i:
            b.add_(0.5 * torch.randn(b.shape, generator=gen, dtype=torch.float64))
    alphas = {n: torch.sigmoid(lstm.input_bias(k)).expand_as(theta[n]) for k, n in enumerate(lstm.names)}
    batches = [make_batch(3, 2, 5, seed=s) for s in (1, 2)]
    advs = [random_adv(b, 10 + i) for i, b in enumerate(batches)]

    ours, gates = adapt_lstm(policy, theta, lstm, batches, advs, first_order=False)
    maml = adapt(policy, theta, alphas, batches, advs, create_graph=True)
    for k in range(2):
        for n in theta:
            assert torch.equal(ours[k][n], maml[k][n]), (k, n)
    assert all(torch.equal(f, torch.ones_like(f)) for f, _ in gates.values())


def test_meta_gradient_matches_finite_differences():
    """Second order, two inner steps, every gate input live: d(surrogate) / d(theta, LSTM)."""
    policy = make_policy(1)
    lstm = make_lstm(policy, inner_lr=0.2, per_weight=True, seed=4)
    theta0 = {n: p.detach().clone() for n, p in policy.named_parameters()}
    pre = [make_batch(2, 2, 4, seed=s) for s in (3, 4)]
    pre_advs = [random_adv(b, 20 + i) for i, b in enumerate(pre)]
    post = make_batch(2, 2, 4, seed=5, policy=policy)
    post_adv = random_adv(post, 30)
    names = list(theta0)
    lstm_params = list(lstm.parameters())

    def loss_at(x: torch.Tensor) -> torch.Tensor:
        parts = unflat(x, [*theta0.values(), *lstm_params])
        theta = dict(zip(names, parts[: len(names)]))
        with torch.no_grad():
            for p, v in zip(lstm_params, parts[len(names) :]):
                p.copy_(v)
        return lstm_meta_loss(policy, theta, lstm, pre, pre_advs, post, post_adv, first_order=False)[0]

    x0 = flat([*theta0.values(), *[p.detach().clone() for p in lstm_params]])
    theta = {n: v.clone().requires_grad_() for n, v in theta0.items()}
    loss = lstm_meta_loss(policy, theta, lstm, pre, pre_advs, post, post_adv, first_order=False)[0]
    grad = flat(torch.autograd.grad(loss, [*theta.values(), *lstm_params]))
    gen = torch.Generator().manual_seed(7)
    for _ in range(3):
        v = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
        h = 1e-6
        fd = (loss_at(x0 + h * v) - loss_at(x0 - h * v)) / (2 * h)
        torch.testing.assert_close(grad @ v, fd, rtol=1e-5, atol=1e-8)
    assert grad[len(flat(list(theta0.values()))) :].abs().sum() > 0  # the LSTM gets a gradient
