"""Reptile's outer update against the formula, by hand and through a learner's iteration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robometa.algos import make_algorithm
from robometa.algos.maml import advantages, inner_gradient
from robometa.algos.reptile import linear_decay, reptile_step
from robometa.configs import resolve_config
from robometa.policies import BoundActor
from robometa.tasks import make_family


def test_reptile_step_matches_hand_computation():
    theta = {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor(0.5)}
    adapted = {  # two tasks after their inner steps
        "w": torch.tensor([[2.0, 2.0], [0.0, 4.0]]),
        "b": torch.tensor([1.5, -0.5]),
    }
    new = reptile_step(theta, adapted, outer_lr=0.5)
    # mean_i(theta_i - theta) = ([1, 0] + [-1, 2]) / 2 = [0, 1] and (1 - 1) / 2 = 0
    assert torch.equal(new["w"], torch.tensor([1.0, 2.5]))
    assert torch.equal(new["b"], torch.tensor(0.5))


def test_linear_decay_anneals_epsilon_to_zero():
    assert [linear_decay(1.0, i, 4) for i in range(6)] == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    assert linear_decay(0.3, 10, None) == 0.3


def _learner(*extra: str, seed: int = 3):
    cfg = resolve_config(
        algo="reptile",
        overrides=["meta_batch_size=2", "episodes_per_task=2", "horizon=6", "hidden=[8]", *extra],
    )
    family = make_family(cfg.family)
    return make_algorithm("reptile", family, cfg.algo_params, "cpu", seed=seed), family, cfg.algo_params


@pytest.mark.parametrize("outer_lr", [1.0, 0.3])
def test_iteration_applies_the_reptile_update_two_tasks_one_inner_step(outer_lr):
    """theta' = theta + eps * mean_i(theta_i - theta) with theta_i = theta - alpha * g_i,
    g_i the policy gradient on task i's episodes sampled with theta."""
    learner, family, cfg = _learner("inner_steps=1", f"outer_lr={outer_lr}", "inner_lr=0.05")
    twin, _, _ = _learner("inner_steps=1", f"outer_lr={outer_lr}", "inner_lr=0.05")  # same sampling streams
    tasks = family.sample_tasks(2, np.random.default_rng(0), "train")
    theta = {n: p.detach().clone() for n, p in learner.policy.named_parameters()}

    batch = twin.sampler.sample(BoundActor(twin.policy, None), tasks, cfg.episodes_per_task, twin.horizon)
    per_task = {n: v.unsqueeze(0).expand(2, *v.shape) for n, v in theta.items()}
    g = inner_gradient(twin.policy, per_task, batch, advantages(batch, cfg.gamma, cfg.gae_lambda))
    theta_i = {n: per_task[n] - 0.05 * g[n] for n in theta}
    expected = {
        n: theta[n] + outer_lr * ((theta_i[n][0] - theta[n]) + (theta_i[n][1] - theta[n])) / 2 for n in theta
    }

    metrics = learner.iteration(tasks).metrics
    for n, p in learner.policy.named_parameters():
        torch.testing.assert_close(p.detach(), expected[n], rtol=1e-6, atol=1e-7)
    assert not torch.equal(expected["log_std"], theta["log_std"])  # the update moved the weights
    assert metrics["train/outer_lr"] == outer_lr


def test_adam_outer_step_uses_theta_minus_mean_adapted_as_gradient():
    adam, family, _ = _learner("inner_steps=2", "outer_optimizer=adam", "outer_lr=0.01")
    sgd, _, _ = _learner("inner_steps=2", "outer_lr=1.0")  # epsilon = 1: theta' = mean_i(theta_i)
    tasks = family.sample_tasks(2, np.random.default_rng(1), "train")
    theta = {n: p.detach().clone() for n, p in adam.policy.named_parameters()}
    adam.iteration(tasks)
    sgd.iteration(tasks)
    mean_adapted = dict(sgd.policy.named_parameters())
    for n, p in adam.policy.named_parameters():
        g = theta[n] - mean_adapted[n].detach()
        # Adam's first step: lr * m_hat / (sqrt(v_hat) + eps) = lr * g / (|g| + 1e-8)
        torch.testing.assert_close(p.detach(), theta[n] - 0.01 * g / (g.abs() + 1e-8), rtol=1e-5, atol=1e-7)


def test_evaluation_adapts_as_training_does():
    learner, family, _ = _learner("inner_steps=2")
    tasks = family.sample_tasks(2, np.random.default_rng(2), "test")
    data = learner.adaptation_data(tasks, learner.trained_steps, seed=0)
    assert data.x == "adapt_step" and data.returns.shape == (2, 3)
    again = learner.adaptation_data(tasks, learner.trained_steps, seed=0)
    assert np.array_equal(data.returns, again.returns)
