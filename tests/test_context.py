"""Context learners (``--algo context``): the aggregators' maths, causality, one pass
against one step at a time, the PPO loss, determinism, resume and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from test_new_learners_train import Stop, final_state, same, snapshot
from test_rl2 import _FallsOver
from test_rl2_train import TINY, _train

from robometa.algos.context import ContextLearner
from robometa.algos.context_config import ContextConfig
from robometa.algos.rl2 import RL2Actor, ppo_sequence_loss
from robometa.configs import resolve_config
from robometa.policies.context import (
    AGGREGATORS,
    ContextPolicy,
    ProductOfGaussians,
    kl_to_unit_gaussian,
    transition_features,
)
from robometa.policies.normalize import RunningMeanStd
from robometa.runs import RunDir, load_checkpoint
from robometa.sampling.trials import TrialSampler
from robometa.tasks import make_family
from robometa.trainer import Trainer

OBS, ACT = 5, 2
# One pass against one step at a time: float32 sums taken in another order.
TOL = {"rtol": 1e-5, "atol": 1e-5}


def _policy(aggregator: str, seed: int = 0) -> ContextPolicy:
    pol = ContextPolicy(OBS, ACT, aggregator, embedding=4, hidden=16, encoder_hidden=16, init_std=0.7)
    pol.reset_parameters(torch.Generator().manual_seed(seed))
    with torch.no_grad():  # a mean head that matters, so the context visibly moves the actions
        pol.mean_net[-1].weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(seed + 1))
    return pol


def _trial_inputs(B: int = 3, T: int = 6, K: int = 2, seed: int = 0) -> torch.Tensor:
    """Inputs of trials of K episodes of T steps: episode starts flagged, nothing before step 0."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, K * T, OBS + ACT + 2, generator=g)
    x[..., -1] = 0.0
    x[:, T::T, -1] = 1.0  # o_t starts episode 2, 3, ...
    x[:, 0, OBS:] = 0.0  # no previous action, reward or end at a trial's first step
    return x


# ------------------------------------------------------------------ aggregators


@pytest.mark.parametrize("aggregator", AGGREGATORS)
def test_task_embedding_is_invariant_to_the_order_of_the_context(aggregator):
    pol = _policy(aggregator)
    g = torch.Generator().manual_seed(1)
    transitions = torch.randn(2, 7, pol.transition_dim, generator=g)
    obs = torch.randn(2, OBS, generator=g)
    perm = torch.randperm(7, generator=g)
    with torch.no_grad():
        z = pol.task_embedding(transitions, obs)
        z_perm = pol.task_embedding(transitions[:, perm], obs)
        torch.testing.assert_close(z_perm, z, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(pol.heads(obs, z_perm)[0], pol.heads(obs, z)[0], rtol=1e-6, atol=1e-6)
        # ...and it reads the context: another transition moves it
        other = transitions.clone()
        other[:, 3] += 1.0
        assert (pol.task_embedding(other, obs) - z).abs().max() > 1e-3


def test_mean_and_attention_follow_their_definitions():
    g = torch.Generator().manual_seed(2)
    transitions = torch.randn(2, 5, 2 * OBS + ACT + 2, generator=g)
    obs = torch.randn(2, OBS, generator=g)
    with torch.no_grad():
        mean = _policy("mean")
        torch.testing.assert_close(mean.task_embedding(transitions, obs), mean.encoder(transitions).mean(1))
        att = _policy("attention")
        agg, e = att.aggregator, att.encoder(transitions)
        scores = torch.einsum("bd,bnd->bn", agg.query(obs), agg.key(e)) / math.sqrt(agg.dim)
        expected = torch.einsum("bn,bnd->bd", scores.softmax(-1), agg.value(e))
        torch.testing.assert_close(att.task_embedding(transitions, obs), expected)


def test_product_of_gaussians_matches_the_closed_form_on_two_transitions():
    pog = ProductOfGaussians(2)
    mu = torch.tensor([[1.0, 0.5], [-2.0, 3.0]])  # two transitions' factor means
    var = torch.tensor([[0.5, 4.0], [2.0, 0.25]])  # ...and variances
    raw = torch.log(torch.expm1(var))  # softplus(raw) = var
    e = torch.cat([mu, raw], dim=-1).view(1, 2, 4)
    # steps 0, 1, 2 of a trial: no transition yet, then the first, then both
    e = torch.cat([torch.zeros(1, 1, 4), e], dim=1)
    w = torch.tensor([[0.0, 1.0, 1.0]])
    z, post, state = pog(e, w, torch.zeros(1, 3, 1), pog.initial_state(1, "cpu"))
    precision = 1.0 + 1.0 / var[0] + 1.0 / var[1]  # prior precision + the factors'
    mean = (mu[0] / var[0] + mu[1] / var[1]) / precision  # precision-weighted (prior mean 0)
    torch.testing.assert_close(post["variance"][0, 2], 1.0 / precision)
    torch.testing.assert_close(post["mean"][0, 2], mean)
    torch.testing.assert_close(z[0, 2], mean)  # the policy reads the posterior mean
    torch.testing.assert_close(post["variance"][0, 1], 1.0 / (1.0 + 1.0 / var[0]))
    # an empty context is the prior N(0, I)
    assert torch.equal(z[0, 0], torch.zeros(2)) and torch.equal(post["variance"][0, 0], torch.ones(2))
    torch.testing.assert_close(state["precision"][0], precision - 1.0)
    # the KL the loss adds, against torch's
    kl = torch.distributions.kl_divergence(
        torch.distributions.Normal(post["mean"], post["variance"].sqrt()),
        torch.distributions.Normal(0.0, 1.0),
    ).sum(-1)
    torch.testing.assert_close(kl_to_unit_gaussian(post["mean"], post["variance"]), kl)
    assert kl[0, 0] == 0.0


def test_transitions_of_a_trial_and_the_empty_context_at_its_start():
    x = _trial_inputs(B=1, T=3)
    prev_obs = torch.cat([torch.zeros(1, 1, OBS), x[:, :-1, :OBS]], dim=1)
    c = transition_features(prev_obs, x, OBS, ACT)
    assert c.shape == (1, 6, 2 * OBS + ACT + 2)
    # step 2 acts after (o_1, a_1, r_1, o_2), an ordinary transition
    assert torch.equal(c[0, 2], torch.cat([x[0, 1, :OBS], x[0, 2, OBS:-1], x[0, 2, :OBS], torch.zeros(1)]))
    # step 3 starts episode 2: the last transition of episode 1 has no next state, and says so
    assert torch.equal(c[0, 3], torch.cat([x[0, 2, :OBS], x[0, 3, OBS:-1], torch.zeros(OBS), torch.ones(1)]))
    for aggregator in AGGREGATORS:  # nothing before step 0: z = 0 (pog: the prior's mean)
        pol = _policy(aggregator)
        with torch.no_grad():
            means, values, _ = pol.sequence(x)
            m0, v0 = pol.heads(x[:, 0, :OBS], torch.zeros(1, 4))
        torch.testing.assert_close(means[:, 0], m0, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(values[:, 0], v0, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ causality, one pass vs one step


@pytest.mark.parametrize("aggregator", AGGREGATORS)
def test_output_at_step_t_does_not_depend_on_later_inputs(aggregator):
    pol, x = _policy(aggregator), _trial_inputs()
    with torch.no_grad():
        means, values, _ = pol.sequence(x)
        for t in (0, 4, 6, 9):  # 6 starts episode 2
            later = x.clone()
            later[:, t + 1 :] = torch.randn(
                later[:, t + 1 :].shape, generator=torch.Generator().manual_seed(t)
            )
            m2, v2, _ = pol.sequence(later)
            assert torch.equal(m2[:, : t + 1], means[:, : t + 1]) and torch.equal(
                v2[:, : t + 1], values[:, : t + 1]
            )
            assert (m2[:, t + 1 :] - means[:, t + 1 :]).abs().max() > 1e-3
        # the context of episode 2 holds episode 1's transitions (memory is per trial, not per episode)
        earlier = x.clone()
        earlier[:, 2, :OBS] += 1.0
        assert (pol.sequence(earlier)[0][:, 8:] - means[:, 8:]).abs().min() > 0


@pytest.mark.parametrize("aggregator", AGGREGATORS)
def test_step_by_step_equals_one_pass_across_an_episode_boundary(aggregator):
    pol, x = _policy(aggregator), _trial_inputs(T=7)
    with torch.no_grad():
        means, values, final = pol.sequence(x)
        state = pol.initial_state(x.shape[0])
        for t in range(x.shape[1]):
            m, v, state = pol.step(x[:, t], state)
            torch.testing.assert_close(m, means[:, t], **TOL)
            torch.testing.assert_close(v, values[:, t], **TOL)
        # ...and in two chunks, the state carried between them
        _, _, half = pol.sequence(x[:, :5])
        m2, v2, state2 = pol.sequence(x[:, 5:], half)
        torch.testing.assert_close(m2, means[:, 5:], **TOL)
        torch.testing.assert_close(v2, values[:, 5:], **TOL)
    for key in final:
        torch.testing.assert_close(state[key], final[key], **TOL)
        torch.testing.assert_close(state2[key], final[key], **TOL)


@pytest.mark.parametrize("aggregator", AGGREGATORS)
def test_sampled_log_probs_match_a_whole_trial_recomputation(aggregator):
    """Through the real trial sampler (normalized inputs, terminations, padding)."""
    fam = _FallsOver()  # episodes of 3 steps inside a horizon of 5: resets mid-trial and a padded tail
    pol = ContextPolicy(fam.obs_dim, fam.layout.nu, aggregator, embedding=4, hidden=16, encoder_hidden=16)
    pol.reset_parameters(torch.Generator().manual_seed(0))
    actor = RL2Actor(pol, RunningMeanStd((fam.obs_dim,)), RunningMeanStd(()))
    actor.obs_norm.update(torch.randn(50, fam.obs_dim, generator=torch.Generator().manual_seed(3)) * 2 + 1)
    actor.reward_norm.update(torch.randn(50, generator=torch.Generator().manual_seed(4)) * 5)
    batch = TrialSampler(fam, device="cpu", seed=2).sample_trials(
        actor, fam.split_tasks("train", n=2), 2, 3, 5
    )
    x = actor.trial_features(batch)
    masks = batch.masks.view(x.shape[:2])
    assert masks[0].tolist() == [1.0] * 9 + [0.0] * 6
    with torch.no_grad():
        mean, _, _ = pol.sequence(x)
        lp = pol.distribution(mean).log_prob(batch.actions.view(*x.shape[:2], -1))
    torch.testing.assert_close(lp * masks, batch.log_probs.view(lp.shape), **TOL)


# ------------------------------------------------------------------ the loss


@pytest.mark.parametrize("aggregator", AGGREGATORS)
def test_sequence_ppo_loss_matches_step_by_step(aggregator):
    fam = make_family("cheetah-dir")
    cfg = ContextConfig(meta_batch_size=2, hidden=8, encoder_hidden=8, embedding=3, aggregator=aggregator)
    algo = ContextLearner(fam, cfg, device="cpu", seed=1, sampler_threads=0)
    pol = algo.policy
    B, L = 3, 8
    g = torch.Generator().manual_seed(2)
    inputs = torch.randn(B, L, pol.input_dim, generator=g)
    inputs[..., -1] = 0.0
    inputs[:, 4, -1] = 1.0
    actions = torch.randn(B, L, pol.act_dim, generator=g)
    old_lp = torch.randn(B, L, generator=g) * 0.1 - 8.0
    adv, ret = torch.randn(B, L, generator=g), torch.randn(B, L, generator=g)
    masks = torch.ones(B, L)
    masks[2, 6:] = 0.0
    loss, parts = algo.minibatch_loss(inputs, actions, old_lp, adv, ret, masks)
    grads = torch.autograd.grad(loss, list(pol.parameters()))

    # Step by step, from the definitions.
    clip, vc, kw = cfg.clip_eps, cfg.value_coef, cfg.kl_weight
    state = pol.initial_state(B)
    surr, vloss, kl_sum, count = 0.0, 0.0, 0.0, masks.sum()
    for t in range(L):
        mean, value, kl, state = pol.trial_outputs(inputs[:, t : t + 1], state)
        std = pol.log_std.exp()
        logp = (-0.5 * ((actions[:, t] - mean[:, 0]) / std) ** 2 - pol.log_std - 0.5 * np.log(2 * np.pi)).sum(
            -1
        )
        ratio = torch.exp(logp - old_lp[:, t])
        s = torch.minimum(ratio * adv[:, t], torch.clamp(ratio, 1 - clip, 1 + clip) * adv[:, t])
        surr = surr + (s * masks[:, t]).sum()
        vloss = vloss + (0.5 * (value[:, 0] - ret[:, t]) ** 2 * masks[:, t]).sum()
        if kl is not None:
            kl_sum = kl_sum + (kl[:, 0] * masks[:, t]).sum()
    expected = -surr / count + vc * vloss / count + kw * kl_sum / count  # entropy_coef is 0
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads, torch.autograd.grad(expected, list(pol.parameters()))):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert ("kl_prior" in parts) == (aggregator == "pog")
    if aggregator == "pog":
        torch.testing.assert_close(parts["kl_prior"], (kl_sum / count).detach(), rtol=1e-5, atol=1e-6)
        assert parts["kl_prior"] > 0
    # the PPO part is RL²'s function, given the outputs or running the policy itself
    plain, _ = ppo_sequence_loss(pol, inputs, actions, old_lp, adv, ret, masks, clip, vc, 0.0)
    torch.testing.assert_close(plain, -surr / count + vc * vloss / count, rtol=1e-5, atol=1e-6)


def test_config_validation_names_the_problem():
    assert ContextConfig().validate() == []
    assert ContextConfig(aggregator="max").validate() == [
        "unknown aggregator 'max'; valid: mean, attention, pog"
    ]
    assert ContextConfig(cell="lstm").validate() == [
        "cell is RL²'s recurrent cell; the context learners have none (got 'lstm')"
    ]
    assert ContextConfig(embedding=0, kl_weight=-1.0).validate() == [
        "embedding must be >= 1, got 0",
        "kl_weight must be >= 0, got -1.0",
    ]


# ------------------------------------------------------------------ training runs

ONE = [*TINY, "iterations=1"]  # the quick preset, cut to one tiny iteration
RUN = [*TINY, "iterations=2", "device=cpu", "encoder_hidden=8", "embedding=3"]


def _config(aggregator: str, *extra: str):
    return resolve_config(algo="context", overrides=[*RUN, f"aggregator={aggregator}", *extra])


@pytest.mark.parametrize("aggregator", ["mean", "pog"])
def test_same_seed_twice_identical_other_seed_differs(aggregator, tmp_path):
    for run, seed in (("a", 0), ("b", 0), ("c", 1)):
        Trainer.create(_config(aggregator, f"seed={seed}"), tmp_path / run).train()
    a, b, c = (final_state(tmp_path / r) for r in "abc")
    assert same(a, b) and not same(a["policy"], c["policy"])
    assert Trainer.resume(tmp_path / "a").curves() == Trainer.resume(tmp_path / "b").curves()


@pytest.mark.parametrize("aggregator", ["attention", "pog"])
def test_stop_and_resume_equals_uninterrupted(aggregator, tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    Trainer.create(_config(aggregator, "iterations=3"), full).train()

    def stop_after_two(progress):
        if progress.iteration == 1:
            raise Stop  # like a kill after the second iteration's checkpoint

    with pytest.raises(Stop):
        Trainer.create(_config(aggregator, "iterations=3"), cut).train(callback=stop_after_two)
    assert load_checkpoint(RunDir(cut).latest)["iteration"] == 2
    Trainer.resume(cut).train()
    assert same(final_state(full), final_state(cut))
    assert Trainer.resume(full).curves() == Trainer.resume(cut).curves()


@pytest.mark.parametrize("aggregator", AGGREGATORS)
def test_one_iteration_of_each_aggregator_logs_its_curves(aggregator, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / aggregator
    assert _train(["--algo", "context", "--aggregator", aggregator, "--run-dir", str(run), *ONE]) == 0
    assert f"aggregator: {aggregator}" in (run / "config.yaml").read_text()
    curves = [json.loads(line) for line in (run / "curves.jsonl").read_text().splitlines()]
    assert [(c["split"], c["x"], len(c["steps"])) for c in curves] == [
        ("val", "episode", 2),
        ("test", "episode", 2),
    ]
    ea = EventAccumulator(str(run))
    ea.Reload()
    scalars = set(ea.Tags()["scalars"])
    for split in ("adapt", "adapt_val", "adapt_test"):
        assert {f"{split}/return/episode_1", f"{split}/return/episode_2"} <= scalars, split
    assert ("loss/kl_prior" in scalars) == (aggregator == "pog")


def test_aggregator_with_another_algorithm_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys):
    run = tmp_path / "never"
    (tmp_path / "rl2.yaml").write_text("algo: rl2\n")
    for argv in (["--algo", "rl2", *ONE], [], ["--config", str(tmp_path / "rl2.yaml")]):
        code = _train([*argv, "--aggregator", "pog", "--run-dir", str(run)])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "--aggregator goes with --algo context" in err, err
        assert not run.exists()
    # a run's aggregator stays what it was trained with
    assert _train(["--algo", "context", "--aggregator", "mean", "--run-dir", str(run), *ONE]) == 0
    before = snapshot(run)
    capsys.readouterr()
    assert _train(["--resume", str(run), "--aggregator", "pog"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot change 'aggregator' when resuming" in err, err
    assert snapshot(run) == before


@pytest.mark.gl
def test_evaluate_and_replay_a_context_run(tmp_path, capsys):
    from robometa.cli import main

    run = tmp_path / "pog"
    assert _train(["--algo", "context", "--aggregator", "pog", "--run-dir", str(run), *ONE]) == 0
    code = main(["evaluate", str(run), "--seeds", "0", "--tasks", "2"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "episode 2" in out
    code = main(["replay", str(run), "--gif", str(tmp_path / "r.gif"), "--width", "32", "--height", "24"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "r.gif").stat().st_size > 0


def test_readme_describes_the_presets_as_they_are():
    from pathlib import Path

    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    quick_cfg, rl2 = resolve_config(algo="context"), resolve_config(algo="rl2")
    quick, paper = quick_cfg.algo_params, resolve_config(algo="context", preset="paper").algo_params
    assert quick.encoder_hidden == quick.hidden
    assert paper.kl_weight == 0.1 and quick.kl_weight < paper.kl_weight  # PEARL's; quick's is measured
    assert quick_cfg.iterations == rl2.iterations  # equal experience with RL²
    assert resolve_config(algo="context", family="push").algo_params.horizon is None  # the family's 200
    for claim in (
        f"{quick.meta_batch_size} tasks × {quick.trials_per_task} trials of {quick.episodes_per_trial} "
        f"episodes of {quick.horizon} steps",
        f"MLPs of {quick.layers} × {quick.hidden} tanh units, an {quick.embedding}-dimensional z and "
        f"RL²'s {rl2.iterations} iterations",
        f"a {paper.embedding}-dimensional z, an encoder of {paper.layers} × {paper.encoder_hidden} units, "
        f"policy and value of {paper.layers} × {paper.hidden}",
        f"PEARL's {paper.kl_weight:g} in the `paper` preset, {quick.kl_weight:g} in `quick`",
    ):
        assert claim in readme, claim
