"""The maths of MAML-TRPO / MAML-PPO against hand computations and explicit matrices."""

from __future__ import annotations

import copy

import pytest
import torch
from toy_problems import make_batch, make_policy, random_adv

from robometa.algos import baselines
from robometa.algos.gae import discounted_returns, gae, normalize_per_task
from robometa.algos.maml import adapt, inner_loss, mean_kl, meta_fisher, surrogate
from robometa.algos.trpo import (
    backtracking_line_search,
    conjugate_gradient,
    fisher_vector_product,
    flat,
    natural_step,
    unflat,
)
from robometa.policies import GaussianMLPPolicy

# ------------------------------------------------------------------ GAE and baseline


def test_discounted_returns_and_gae_match_hand_computation():
    r = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    v = torch.tensor([[0.5, 1.0, 1.5], [0.5, 1.0, 1.5]])
    m = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])  # second episode ends after step 1
    g, lam = 0.9, 0.8
    R = discounted_returns(r * m, m, g)
    assert torch.allclose(R[0], torch.tensor([1 + 0.9 * 2 + 0.81 * 3, 2 + 0.9 * 3, 3.0]))
    assert torch.allclose(R[1], torch.tensor([1 + 0.9 * 2, 2.0, 0.0]))
    A = gae(r * m, v * m, m, g, lam)
    # full episode: d2 = 3 - 1.5; d1 = 2 + .9*1.5 - 1; d0 = 1 + .9*1 - .5
    d0, d1, d2 = 1 + 0.9 * 1.0 - 0.5, 2 + 0.9 * 1.5 - 1.0, 3 - 1.5
    assert torch.allclose(A[0], torch.tensor([d0 + 0.72 * d1 + 0.72**2 * d2, d1 + 0.72 * d2, d2]))
    # short episode: no value after its last step
    e0, e1 = 1 + 0.9 * 1.0 - 0.5, 2 - 1.0
    assert torch.allclose(A[1], torch.tensor([e0 + 0.72 * e1, e1, 0.0]))


def test_gae_lambda_one_is_returns_minus_values():
    gen = torch.Generator().manual_seed(1)
    r, v = torch.randn(2, 4, 7, generator=gen), torch.randn(2, 4, 7, generator=gen)
    m = torch.ones(2, 4, 7)
    assert torch.allclose(gae(r, v, m, 0.95, 1.0), discounted_returns(r, m, 0.95) - v, atol=1e-5)


def test_normalize_per_task_ignores_masked_steps():
    x = torch.tensor([[[1.0, 3.0, 100.0]], [[2.0, 4.0, 6.0]]])
    m = torch.tensor([[[1.0, 1.0, 0.0]], [[1.0, 1.0, 1.0]]])
    out = normalize_per_task(x, m)
    assert torch.allclose(out[0, 0], torch.tensor([-1.0, 1.0, 0.0]), atol=1e-6)
    assert abs(float(out[1].mean())) < 1e-6


def test_linear_baseline_recovers_exact_linear_targets_per_task():
    gen = torch.Generator().manual_seed(0)
    M, N, T = 2, 3, 20
    obs = torch.rand(M, N, T, 2, generator=gen, dtype=torch.float64)
    t = (torch.arange(T, dtype=torch.float64) / 100.0).view(1, 1, T)
    # Each task's returns are a different exact combination of the rllab features.
    y0 = 2.0 * obs[0, ..., 0] - obs[0, ..., 1] ** 2 + 5.0 * t[0] + 1.5
    y1 = -3.0 * obs[1, ..., 1] + 40.0 * t[0] ** 2 - 0.5
    y = torch.stack([y0, y1])
    masks = torch.ones(M, N, T, dtype=torch.float64)
    pred = baselines.fit_predict(obs, y, masks, reg_coeff=1e-10)
    assert torch.allclose(pred, y, atol=1e-5)


def test_linear_baseline_matches_hand_solved_ridge_regression():
    gen = torch.Generator().manual_seed(3)
    obs = torch.randn(1, 2, 6, 1, generator=gen, dtype=torch.float64) * 20  # some clipped at 10
    y = torch.randn(1, 2, 6, generator=gen, dtype=torch.float64)
    masks = torch.ones(1, 2, 6, dtype=torch.float64)
    masks[0, 1, 4:] = 0
    o = obs.clamp(-10, 10).reshape(-1)
    al = (torch.arange(6, dtype=torch.float64) / 100).repeat(2)
    X = torch.stack([o, o**2, al, al**2, al**3, torch.ones_like(o)], 1)
    keep = masks.reshape(-1) > 0
    Xk, yk = X[keep], y.reshape(-1)[keep]
    w = torch.linalg.solve(Xk.T @ Xk + 1e-5 * torch.eye(6, dtype=torch.float64), Xk.T @ yk)
    expected = (X @ w) * masks.reshape(-1)
    pred = baselines.fit_predict(obs, y, masks)
    assert torch.allclose(pred.reshape(-1), expected, atol=1e-8)


# ------------------------------------------------------------------ inner step


def test_functional_inner_step_equals_manual_update_of_copied_module():
    policy = make_policy()
    batch = make_batch(M=2, N=3, T=4, seed=1)
    adv = random_adv(batch, 2)
    alpha = 0.3
    adapted = adapt(policy, dict(policy.named_parameters()), alpha, [batch], [adv], create_graph=False)[0]
    for m in range(2):
        clone = copy.deepcopy(policy)
        logp = clone.distribution(batch.obs[m]).log_prob(batch.actions[m])
        loss = -(logp * adv[m] * batch.masks[m]).sum() / batch.masks[m].sum()
        loss.backward()
        with torch.no_grad():
            for p in clone.parameters():
                p -= alpha * p.grad
        for name, p in clone.named_parameters():
            assert torch.allclose(adapted[name][m], p, atol=1e-12), name


def test_per_task_forward_equals_each_task_module_with_its_own_weights():
    gen = torch.Generator().manual_seed(3)
    policy = GaussianMLPPolicy(3, 2, hidden=(5, 4), activation="elu").double()
    params = {
        n: torch.randn(4, *p.shape, generator=gen, dtype=torch.float64) for n, p in policy.named_parameters()
    }
    obs = torch.randn(4, 2, 6, 3, generator=gen, dtype=torch.float64)
    mean, log_std = policy.mean_log_std(obs, params, per_task=True)
    assert mean.shape == (4, 2, 6, 2) and log_std.shape == (4, 1, 1, 2)
    for m in range(4):
        clone = copy.deepcopy(policy)
        clone.load_state_dict({n: v[m] for n, v in params.items()})
        want_mean, want_log_std = clone(obs[m])
        assert torch.allclose(mean[m], want_mean, atol=1e-12)
        assert torch.equal(log_std[m, 0, 0], want_log_std)


def test_learned_step_sizes_scale_each_weight():
    policy = make_policy()
    batch = make_batch(M=1, N=2, T=3, seed=4)
    adv = random_adv(batch, 5)
    theta = dict(policy.named_parameters())
    lrs = {k: torch.full_like(v, 0.1) for k, v in theta.items()}
    lrs["log_std"] = torch.tensor([0.0, 0.2], dtype=torch.float64)
    a = adapt(policy, theta, lrs, [batch], [adv], create_graph=False)[0]
    b = adapt(policy, theta, 0.1, [batch], [adv], create_graph=False)[0]
    assert torch.allclose(a["mean.0.weight"], b["mean.0.weight"])
    assert torch.equal(a["log_std"][0, 0], theta["log_std"][0])  # step size 0 leaves it
    assert not torch.allclose(a["log_std"][0, 1], b["log_std"][0, 1])


# ------------------------------------------------------------------ meta-gradient


def _one_step_problem():
    """A policy, a pre-update batch and a post-update batch with their advantages."""
    pre = make_batch(M=2, N=3, T=4, seed=10)
    post = make_batch(M=2, N=3, T=4, seed=12)
    return make_policy(), pre, random_adv(pre, 11), post, random_adv(post, 13)


def _meta_objective(policy, pre, pre_adv, post, post_adv, first_order: bool):
    params = adapt(policy, dict(policy.named_parameters()), 0.5, [pre], [pre_adv], not first_order)[-1]
    return surrogate(policy, params, post, post_adv)[0]


def test_second_order_meta_gradient_matches_finite_differences_and_first_order_differs():
    policy, pre, pre_adv, post, post_adv = _one_step_problem()
    params = list(policy.parameters())

    loss = _meta_objective(policy, pre, pre_adv, post, post_adv, first_order=False)
    g2 = flat(torch.autograd.grad(loss, params))
    loss = _meta_objective(policy, pre, pre_adv, post, post_adv, first_order=True)
    g1 = flat(torch.autograd.grad(loss, params))

    x0 = flat([p.detach() for p in params]).clone()
    eps = 1e-6
    fd = torch.zeros_like(x0)
    for i in range(x0.numel()):
        vals = []
        for sign in (1.0, -1.0):
            x = x0.clone()
            x[i] += sign * eps
            with torch.no_grad():
                for p, v in zip(params, unflat(x, params)):
                    p.copy_(v)
            vals.append(
                float(_meta_objective(policy, pre, pre_adv, post, post_adv, first_order=False).detach())
            )
        fd[i] = (vals[0] - vals[1]) / (2 * eps)
    assert torch.allclose(g2, fd, atol=1e-6, rtol=1e-5)
    assert (g1 - g2).norm() > 1e-3 * g2.norm()  # the second-order terms matter here


def test_lvc_takes_the_same_inner_step_and_adds_the_score_outer_product_to_the_meta_gradient():
    """ProMP's LVC inner loss: phi bit-identical to MAML's; the meta-gradient differs by
    exactly alpha * sum_m mean_t A_t s_t (s_t . dO/dphi_m), s_t = grad log pi(a_t|s_t)."""
    policy, pre, pre_adv, post, post_adv = _one_step_problem()
    theta = dict(policy.named_parameters())
    params, alpha = list(theta.values()), 0.5
    phis, grads = {}, {}
    for objective in ("vpg", "lvc"):
        phis[objective] = adapt(policy, theta, alpha, [pre], [pre_adv], True, objective=objective)[-1]
        outer = surrogate(policy, phis[objective], post, post_adv)[0]
        grads[objective] = flat(torch.autograd.grad(outer, params))
    assert all(torch.equal(phis["vpg"][k], phis["lvc"][k]) for k in theta)

    phi = {k: v.detach().requires_grad_() for k, v in phis["vpg"].items()}
    v = torch.autograd.grad(surrogate(policy, phi, post, post_adv)[0], list(phi.values()))
    expected = torch.zeros_like(grads["vpg"])
    M, N, T = pre.masks.shape
    for m in range(M):
        v_m = flat([x[m] for x in v])
        n_m = pre.masks[m].sum()
        for i in range(N):
            for t in range(T):
                if pre.masks[m, i, t] == 0:
                    continue
                logp = policy.distribution(pre.obs[m, i, t]).log_prob(pre.actions[m, i, t])
                score = flat(torch.autograd.grad(logp, params))
                expected += alpha * pre_adv[m, i, t] * score * (score @ v_m) / n_m
    assert torch.allclose(grads["lvc"] - grads["vpg"], expected, atol=1e-10, rtol=1e-8)
    assert expected.norm() > 1e-2 * grads["vpg"].norm()  # the term matters here


def test_meta_fisher_under_lvc_matches_explicit_kl_hessian_through_adaptation():
    policy = make_policy()
    pre = [make_batch(M=2, N=3, T=4, seed=20)]
    pre_adv = [random_adv(pre[0], 30)]
    post = make_batch(M=2, N=3, T=4, seed=22)
    theta = dict(policy.named_parameters())

    def adapted_moments():
        phi = adapt(policy, theta, 0.5, pre, pre_adv, True, objective="lvc")[-1]
        mean, log_std = policy.mean_log_std(post.obs, phi, per_task=True)
        return mean, log_std.exp()

    old = tuple(t.detach() for t in adapted_moments())
    H = _explicit_hessian(mean_kl(old, *adapted_moments(), post.masks), list(theta.values()))
    fvp = meta_fisher(policy, theta, 0.5, pre, pre_adv, post, False, damping=0.1, objective="lvc")
    vpg = meta_fisher(policy, theta, 0.5, pre, pre_adv, post, False, damping=0.1)
    v = torch.randn(H.shape[0], generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert torch.allclose(fvp(v), H @ v + 0.1 * v, atol=1e-9, rtol=1e-7)
    assert not torch.allclose(fvp(v), vpg(v), rtol=1e-4)


# ------------------------------------------------------------------ trust region


def test_conjugate_gradient_solves_small_spd_system():
    gen = torch.Generator().manual_seed(0)
    B = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    A = B @ B.T + 0.5 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, generator=gen, dtype=torch.float64)
    x = conjugate_gradient(lambda v: A @ v, b, iters=20)
    assert torch.allclose(x, torch.linalg.solve(A, b), atol=1e-8)


def _explicit_hessian(scalar, params):
    g = flat(torch.autograd.grad(scalar, params, create_graph=True))
    rows = [flat(torch.autograd.grad(g[i], params, retain_graph=True)) for i in range(g.numel())]
    return torch.stack(rows)


def test_fisher_vector_product_matches_explicit_matrix_on_tiny_net():
    policy = make_policy()
    post = make_batch(M=1, N=4, T=5, seed=3)
    params = list(policy.parameters())
    dist = policy.distribution(post.obs)
    old = (dist.base_dist.loc.detach(), dist.base_dist.scale.detach())
    kl = mean_kl(old, dist.base_dist.loc, dist.base_dist.scale, post.masks)
    H = _explicit_hessian(kl, params)
    fvp = fisher_vector_product(kl, params, damping=0.1)
    v = torch.randn(H.shape[0], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.allclose(fvp(v), H @ v + 0.1 * v, atol=1e-10)


@pytest.mark.parametrize(
    "first_order, steps, learned_lr",
    [(False, 1, False), (True, 1, False), (False, 2, False), (False, 1, True), (True, 2, True)],
)
def test_meta_fisher_matches_explicit_kl_hessian_through_adaptation(first_order, steps, learned_lr):
    """J^T F J by Hessian-vector products equals the KL's Hessian w.r.t. the meta-parameters."""
    policy = make_policy()
    pre = [make_batch(M=2, N=3, T=4, seed=20 + k) for k in range(steps)]
    pre_adv = [random_adv(b, 30 + k) for k, b in enumerate(pre)]
    post = make_batch(M=2, N=3, T=4, seed=22)
    theta = dict(policy.named_parameters())
    gen = torch.Generator().manual_seed(4)
    lrs = (
        {
            k: (0.3 + 0.4 * torch.rand(v.shape, generator=gen, dtype=torch.float64)).requires_grad_()
            for k, v in theta.items()
        }
        if learned_lr
        else 0.5
    )
    meta = [*theta.values(), *(lrs.values() if learned_lr else [])]

    def adapted_moments():
        phi = adapt(policy, theta, lrs, pre, pre_adv, not first_order)[-1]
        mean, log_std = policy.mean_log_std(post.obs, phi, per_task=True)
        return mean, log_std.exp()

    old = tuple(t.detach() for t in adapted_moments())
    # Explicit: Hessian of KL(old || adapted(theta, lrs)) w.r.t. the meta-parameters, through the inner steps.
    H = _explicit_hessian(mean_kl(old, *adapted_moments(), post.masks), meta)
    fvp = meta_fisher(policy, theta, lrs, pre, pre_adv, post, first_order, damping=0.1)
    for _ in range(3):
        v = torch.randn(H.shape[0], generator=gen, dtype=torch.float64)
        assert torch.allclose(fvp(v), H @ v + 0.1 * v, atol=1e-9, rtol=1e-7)


def test_natural_step_hits_the_kl_limit_of_the_quadratic_model():
    A = torch.diag(torch.tensor([1.0, 4.0, 9.0], dtype=torch.float64))
    g = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    step = natural_step(lambda v: A @ v, g, max_kl=0.01, cg_iters=10)
    assert abs(0.5 * float(step @ A @ step) - 0.01) < 1e-10
    assert float(g @ step) < 0  # descends the loss


def test_natural_step_reads_sFs_from_the_gradient_for_any_number_of_cg_iterations():
    """CG from 0 leaves its residual orthogonal to its iterate, so s'As = g's exactly,
    converged or not; natural_step relies on it to skip one Fisher-vector product."""
    gen = torch.Generator().manual_seed(2)
    B = torch.randn(30, 30, generator=gen, dtype=torch.float64)
    A = B @ B.T + 0.1 * torch.eye(30, dtype=torch.float64)
    g = torch.randn(30, generator=gen, dtype=torch.float64)
    for iters in (1, 3, 7):  # far from converged on a 30-dim, ill-conditioned system
        s = conjugate_gradient(lambda v: A @ v, g, iters)
        assert abs(float(s @ A @ s - g @ s)) < 1e-10 * float(g @ s)
        step = natural_step(lambda v: A @ v, g, max_kl=0.01, cg_iters=iters)
        assert abs(0.5 * float(step @ A @ step) - 0.01) < 1e-10


def test_line_search_respects_kl_limit():
    x0 = torch.zeros(3, dtype=torch.float64)
    full = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)

    def evaluate(x):  # loss falls along the step, KL grows quadratically
        return -float(x.sum()), float((x**2).sum())

    x, res = backtracking_line_search(
        evaluate, x0, full, 0.0, max_kl=0.3, backtrack_ratio=0.8, max_backtracks=15
    )
    assert res.accepted and res.kl <= 0.3
    assert res.backtracks > 0 and float((x**2).sum()) <= 0.3
    # the previous (larger) candidate violated the limit: the search stopped at the first feasible one
    assert float(((x / 0.8) ** 2).sum()) > 0.3
    # nothing feasible: parameters are left unchanged
    x, res = backtracking_line_search(lambda x: (1.0, 0.0), x0, full, 0.0, max_kl=0.3, max_backtracks=4)
    assert not res.accepted and torch.equal(x, x0)


def test_inner_loss_is_per_task():
    policy = make_policy()
    batch = make_batch(M=3, N=2, T=3, seed=5)
    adv = random_adv(batch, 6)
    theta = {k: v.detach().unsqueeze(0).expand(3, *v.shape) for k, v in policy.named_parameters()}
    losses = inner_loss(policy, theta, batch, adv)
    assert losses.shape == (3,)
    single = inner_loss(policy, {k: v[:1] for k, v in theta.items()}, batch.task(1), adv[1:2])
    assert torch.allclose(losses[1], single[0])


def test_zero_inner_steps_is_multitask_training():
    """inner_steps=0: the outer step trains the shared policy on pre-update episodes."""
    import torch

    from robometa.algos import make_algorithm
    from robometa.configs.maml import MAMLTRPOConfig
    from robometa.tasks import make_family

    fam = make_family("cheetah-vel")
    cfg = MAMLTRPOConfig(meta_batch_size=2, episodes_per_task=2, horizon=6, inner_steps=0)
    algo = make_algorithm("maml-trpo", fam, cfg, "cpu", 0)
    before = [p.detach().clone() for p in algo.policy.parameters()]
    result = algo.iteration(fam.split_tasks("train", n=2))
    assert result.curve.steps == [0]
    assert result.metrics["train/kl"] <= cfg.max_kl * 1.0001
    assert any(not torch.equal(a, b) for a, b in zip(before, algo.policy.parameters()))
    assert (
        "learn_inner_lr needs inner_steps >= 1"
        in MAMLTRPOConfig(inner_steps=0, learn_inner_lr=True).validate()[0]
    )


@pytest.mark.parametrize("normalize", [True, False])
def test_inner_advantages_are_raw_only_when_asked_and_the_outer_ones_always_standardized(normalize):
    """normalize_inner_advantages=false: the inner step adapts on the GAE advantages in
    the reward's units (so its length follows the reward's differences), while the
    post-update batch that feeds the outer loss stays standardized per task."""
    from robometa.algos import make_algorithm
    from robometa.algos.gae import discounted_returns, gae
    from robometa.algos.maml import Stopwatch
    from robometa.configs.maml import MAMLTRPOConfig
    from robometa.tasks import make_family

    fam = make_family("cheetah-vel")
    cfg = MAMLTRPOConfig(
        meta_batch_size=2, episodes_per_task=3, horizon=8, inner_steps=2, normalize_inner_advantages=normalize
    )
    algo = make_algorithm("maml-trpo", fam, cfg, "cpu", 0)
    tasks = fam.split_tasks("train", n=2)
    batches, advs = algo._rollouts(algo.sampler, tasks, 2, 3, Stopwatch())
    assert len(advs) == 3
    for k, (b, a) in enumerate(zip(batches, advs)):
        returns = discounted_returns(b.rewards, b.masks, cfg.gamma)
        raw = gae(
            b.rewards, baselines.fit_predict(b.obs, returns, b.masks), b.masks, cfg.gamma, cfg.gae_lambda
        )
        expect = normalize_per_task(raw, b.masks) if (normalize or k == 2) else raw * b.masks
        torch.testing.assert_close(a, expect)
    if not normalize:  # raw: not unit scale (cheetah-vel's rewards are not)
        assert not torch.allclose(advs[0].std(), torch.tensor(1.0), atol=0.2)
