"""The MAML learner's fast paths against the plain computation they replace.

Exact ones (chunked adaptation for sampling, the explicit Gaussian log-density,
compiled passes) must agree to float32 rounding; bfloat16 matrix products must
stay within the tolerances their settings document.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal

from robometa.algos import make_algorithm
from robometa.algos.maml import (
    adapt,
    compiled,
    compiler_available,
    inner_gradient,
    kl_gradient,
    meta_fisher,
    meta_loss,
    precision_dtype,
    surrogate,
)
from robometa.algos.maml_config import MAMLPPOConfig, MAMLTRPOConfig
from robometa.algos.trpo import flat
from robometa.policies import GaussianMLPPolicy
from robometa.policies.gaussian_mlp import gaussian_log_prob
from robometa.sampling import EpisodeBatch
from robometa.tasks import make_family


def make_problem(seed: int, M: int = 3, N: int = 4, T: int = 50):
    """A float32 2x64 tanh policy and pre/post batches sampled from it, with random advantages."""
    gen = torch.Generator().manual_seed(seed)
    policy = GaussianMLPPolicy(17, 6, (64, 64))
    with torch.no_grad():
        for p in policy.parameters():
            scale = 0.3 if p.dim() == 1 else p.shape[-1] ** -0.5
            p.copy_(scale * torch.randn(p.shape, generator=gen))

    def batch() -> EpisodeBatch:
        obs = torch.randn(M, N, T, 17, generator=gen)
        with torch.no_grad():
            mean, log_std = policy(obs)
            actions = mean + log_std.exp() * torch.randn(mean.shape, generator=gen)
            log_probs = gaussian_log_prob(actions, mean, log_std)
        zeros = torch.zeros(M, N, T)
        masks = torch.ones(M, N, T)
        masks[0, 1, T // 2 :] = 0.0  # one episode ends early
        return EpisodeBatch(
            obs=obs * masks[..., None],
            actions=actions * masks[..., None],
            rewards=zeros,
            log_probs=log_probs * masks,
            masks=masks,
            terminated=zeros,
            final_obs=torch.zeros(M, N, 17),
            success=torch.zeros(M, N),
        )

    pre, post = batch(), batch()
    advs = [torch.randn(M, N, T, generator=gen) * b.masks for b in (pre, post)]
    return policy, pre, advs[0], post, advs[1]


def meta_gradient(policy, pre, pre_adv, post, post_adv, matmul_dtype=None, fn=meta_loss) -> torch.Tensor:
    theta = dict(policy.named_parameters())
    loss = fn(policy, theta, 0.1, [pre], [pre_adv], post, post_adv, False, None, matmul_dtype)[0]
    return flat(torch.autograd.grad(loss, list(theta.values())))


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


# ------------------------------------------------------------------ exact


def test_gaussian_log_prob_equals_torch_normal():
    gen = torch.Generator().manual_seed(0)
    mean = torch.randn(3, 4, 5, 6, generator=gen)
    log_std = torch.randn(3, 1, 1, 6, generator=gen)
    actions = torch.randn(3, 4, 5, 6, generator=gen)
    want = Independent(Normal(mean, log_std.exp().expand_as(mean)), 1).log_prob(actions)
    torch.testing.assert_close(gaussian_log_prob(actions, mean, log_std), want, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("algo", ["maml-trpo", "maml-ppo"])
def test_adaptation_for_sampling_in_task_chunks_equals_one_pass(algo):
    """The weights the post-update episodes are sampled with must not depend on the grouping."""
    family = make_family("cheetah-vel")
    cls = MAMLTRPOConfig if algo == "maml-trpo" else MAMLPPOConfig
    cfg = cls(
        meta_batch_size=5, episodes_per_task=2, horizon=8, hidden=(16,), learn_inner_lr=algo == "maml-ppo"
    )
    learner = make_algorithm(algo, family, cfg, "cpu", seed=1)
    tasks = family.sample_tasks(5, np.random.default_rng(0), "train")
    from robometa.algos.base import Stopwatch

    batches, advs = learner._rollouts(learner.sampler, tasks, 0, 2, Stopwatch())
    theta = {k: v.detach() for k, v in learner.theta().items()}
    lrs = learner._step_sizes(detach=True)
    learner.task_chunk = None
    one_pass = learner._adapted(theta, lrs, batches, advs)
    learner.task_chunk = 2
    chunked = learner._adapted(theta, lrs, batches, advs)
    for name in one_pass:
        torch.testing.assert_close(chunked[name], one_pass[name], rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------ bfloat16


@pytest.mark.parametrize("seed", [0, 1])
def test_bfloat16_meta_gradient_within_3_percent_of_float32(seed):
    """``matmul_precision=bfloat16``: 0.8-1.3% relative error here (0.55% at the paper's batch)."""
    problem = make_problem(seed)
    g32 = meta_gradient(*problem)
    g16 = meta_gradient(*problem, matmul_dtype=torch.bfloat16)
    assert 1e-4 < rel(g16, g32) < 3e-2  # rounded (not silently float32), yet close


@pytest.mark.parametrize("seed", [0, 1])
def test_bfloat16_fisher_vector_product_within_1_percent_of_float32(seed):
    """``fisher_precision=bfloat16``: 0.2-0.3% relative error here."""
    policy, pre, pre_adv, post, _ = make_problem(seed)
    theta = dict(policy.named_parameters())
    v = torch.randn(sum(p.numel() for p in theta.values()), generator=torch.Generator().manual_seed(seed))
    f32 = meta_fisher(policy, theta, 0.1, [pre], [pre_adv], post, False, 1e-5)(v)
    f16 = meta_fisher(policy, theta, 0.1, [pre], [pre_adv], post, False, 1e-5, torch.bfloat16)(v)
    assert 1e-5 < rel(f16, f32) < 1e-2


def test_auto_precision_is_bfloat16_only_on_a_cpu_with_amx():
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    assert precision_dtype("auto", torch.device("cpu")) == (torch.bfloat16 if amx else None)
    assert precision_dtype("auto", torch.device("cuda")) is None
    assert precision_dtype("float32", torch.device("cpu")) is None
    assert precision_dtype("bfloat16", torch.device("cuda")) == torch.bfloat16


def test_precision_settings_are_validated():
    assert "unknown matmul_precision 'fp8'" in MAMLPPOConfig(matmul_precision="fp8").validate()[0]
    assert "unknown fisher_precision 'half'" in MAMLTRPOConfig(fisher_precision="half").validate()[0]
    with pytest.raises(ValueError, match="per-task"):
        GaussianMLPPolicy(3, 2).mean_log_std(torch.zeros(1, 3), matmul_dtype=torch.bfloat16)


# ------------------------------------------------------------------ torch.compile (slow: compiles)

needs_compiler = pytest.mark.skipif(not compiler_available(), reason="torch.compile needs a C++ compiler")


@pytest.mark.slow
@needs_compiler
def test_compiled_meta_gradient_and_fisher_equal_uncompiled():
    """Compiled passes reorder float32 arithmetic (and use an exp-based tanh): 1e-5 relative."""
    policy, pre, pre_adv, post, post_adv = make_problem(0)
    eager = meta_gradient(policy, pre, pre_adv, post, post_adv)
    fast = meta_gradient(policy, pre, pre_adv, post, post_adv, fn=compiled(meta_loss))
    assert rel(fast, eager) < 1e-5
    theta = dict(policy.named_parameters())
    v = torch.randn(eager.shape, generator=torch.Generator().manual_seed(0))
    f_eager = meta_fisher(policy, theta, 0.1, [pre], [pre_adv], post, False, 1e-5)(v)
    fns = (compiled(inner_gradient), compiled(kl_gradient))
    f_fast = meta_fisher(policy, theta, 0.1, [pre], [pre_adv], post, False, 1e-5, None, fns)(v)
    assert rel(f_fast, f_eager) < 1e-5
    with torch.no_grad():  # the line search's pass: no graph, same loss
        loss = compiled(meta_loss)(policy, theta, 0.1, [pre], [pre_adv], post, post_adv, True)[0]
    phi = adapt(policy, theta, 0.1, [pre], [pre_adv], create_graph=False)[-1]
    torch.testing.assert_close(loss, surrogate(policy, phi, post, post_adv)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@needs_compiler
@pytest.mark.parametrize("algo", ["maml-trpo", "maml-ppo"])
def test_compiled_learner_updates_like_uncompiled_and_repeats_itself(algo):
    """One meta-update from the same episodes moves the weights as uncompiled (1e-5
    relative; measured ~1e-6), and the same seed twice gives the same weights. Later
    iterations are not compared: sampling with weights that differ by rounding
    gives different episodes."""
    family = make_family("cheetah-vel")
    cls = MAMLTRPOConfig if algo == "maml-trpo" else MAMLPPOConfig
    tasks = family.sample_tasks(4, np.random.default_rng(0), "train")
    updates, finals = {}, {}
    for name, compile_learner in (("eager", False), ("compiled", True), ("again", True)):
        cfg = cls(
            meta_batch_size=4, episodes_per_task=2, horizon=10, hidden=(16,), compile_learner=compile_learner
        )
        learner = make_algorithm(algo, family, cfg, "cpu", seed=3)
        learner.task_chunk = 2
        x0 = flat([p.detach() for p in learner.meta_parameters()]).clone()
        learner.iteration(tasks)
        updates[name] = flat([p.detach() for p in learner.meta_parameters()]) - x0
        learner.iteration(tasks)
        finals[name] = flat([p.detach() for p in learner.meta_parameters()])
    assert updates["eager"].norm() > 0
    assert rel(updates["compiled"], updates["eager"]) < 1e-5
    assert torch.equal(finals["compiled"], finals["again"])
