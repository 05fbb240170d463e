"""RL² pieces: input assembly, trials and memory, sequence PPO, normalizers."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from robometa.algos.gae import gae
from robometa.algos.rl2 import RL2, RL2Actor, ppo_sequence_loss
from robometa.configs.rl2 import RL2Config
from robometa.errors import RobometaError
from robometa.policies.normalize import RunningMeanStd
from robometa.policies.recurrent import RecurrentGaussianPolicy, assemble_inputs, previous_step_inputs
from robometa.sampling.trials import TrialSampler
from robometa.tasks import make_family
from robometa.tasks.locomotion.cheetah import CheetahVel


def _policy(fam, cell="gru", seed=0, hidden=8):
    pol = RecurrentGaussianPolicy(fam.obs_dim, fam.layout.nu, hidden=hidden, cell=cell)
    pol.reset_parameters(torch.Generator().manual_seed(seed))
    # A mean head that matters, so memory visibly changes the actions.
    with torch.no_grad():
        pol.mean_head.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(seed + 1))
    return pol


# ------------------------------------------------------------------ inputs


def test_input_assembly_order_and_shift():
    obs = torch.tensor([[1.0, 2.0, 3.0]])
    x = assemble_inputs(obs, torch.tensor([[4.0, 5.0]]), torch.tensor([6.0]), torch.tensor([1.0]))
    assert x.tolist() == [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 1.0]]

    actions = torch.arange(8.0).view(1, 4, 2)
    rewards = torch.tensor([[10.0, 11.0, 12.0, 13.0]])
    ends = torch.tensor([[0.0, 1.0, 0.0, 1.0]])
    prev_a, prev_r, done = previous_step_inputs(actions, rewards, ends)
    assert prev_a[0].tolist() == [[0, 0], [0, 1], [2, 3], [4, 5]]
    assert prev_r.tolist() == [[0.0, 10.0, 11.0, 12.0]]
    assert done.tolist() == [[0.0, 0.0, 1.0, 0.0]]  # step 2 starts episode 2


class _Recorder:
    """A TrialActor that records what it is given and counts steps in its memory."""

    def __init__(self, act_dim):
        self.act_dim, self.calls, self.fresh = act_dim, [], 0

    def initial_state(self, batch, device):
        self.fresh += 1
        return torch.zeros(batch)

    def act(self, obs, prev_action, prev_reward, done, state, generator=None, deterministic=False):
        self.calls.append(
            (obs.clone(), prev_action.clone(), prev_reward.clone(), done.clone(), state.clone())
        )
        action = torch.rand(obs.shape[0], self.act_dim, generator=generator) * 2 - 1
        return action, torch.zeros(obs.shape[0]), state + 1


def test_trials_feed_previous_step_and_keep_memory_across_episodes():
    fam = make_family("cheetah-vel")
    rec = _Recorder(fam.layout.nu)
    T, K = 4, 3
    batch = TrialSampler(fam, device="cpu", seed=0).sample_trials(rec, fam.split_tasks("train", n=2), 2, K, T)
    M, N, L = 2, 2, K * T
    assert batch.obs.shape == (M, N, L, fam.obs_dim) and batch.actions.shape == (M, N, L, fam.layout.nu)
    assert batch.episode_returns.shape == (M, N, K) and batch.success.shape == (M, N, K)
    assert len(rec.calls) == L and rec.fresh == 1
    for s, (obs, prev_a, prev_r, done, memory) in enumerate(rec.calls):
        assert torch.all(memory == s)  # memory carried through every step, across episodes
        np.testing.assert_array_equal(obs.view(M, N, -1).numpy(), batch.obs[:, :, s].numpy())
        if s == 0:
            assert not prev_a.any() and not prev_r.any() and not done.any()
            continue
        np.testing.assert_array_equal(prev_a.view(M, N, -1).numpy(), batch.actions[:, :, s - 1].numpy())
        np.testing.assert_array_equal(prev_r.view(M, N).numpy(), batch.rewards[:, :, s - 1].numpy())
        assert torch.all(done == float(s % T == 0))
    assert batch.episode[0, 0].tolist() == [k for k in range(K) for _ in range(T)]
    assert torch.all(batch.episode_ends.sum(-1) == K) and torch.all(batch.masks == 1)
    per_episode = batch.rewards.view(M, N, K, T).sum(-1)
    torch.testing.assert_close(batch.episode_returns, per_episode, rtol=1e-5, atol=1e-4)
    assert torch.all(batch.episode_lengths == T)
    # a second call starts fresh memory
    TrialSampler(fam, device="cpu", seed=0).sample_trials(rec, fam.split_tasks("train", n=1), 1, 1, 2)
    assert rec.fresh == 2 and torch.all(rec.calls[-2][4] == 0)


class _FallsOver(CheetahVel):
    """cheetah-vel whose episodes terminate after 3 steps."""

    def terminated(self, state, sensordata, params):
        return np.round(state[:, self.layout.time] / self.layout.dt).astype(int) >= 3


def test_terminated_episodes_restart_at_once_and_pad_the_tail():
    fam = _FallsOver()
    pol = _policy(fam)
    batch = TrialSampler(fam, device="cpu", seed=0).sample_trials(
        RL2Actor(pol), fam.split_tasks("train", n=1), 2, 2, horizon=6
    )
    assert batch.masks[0, 0].tolist() == [1.0] * 6 + [0.0] * 6
    assert batch.episode_ends[0, 0].tolist() == [0, 0, 1, 0, 0, 1] + [0] * 6
    assert batch.terminated.sum() == 4 and torch.all(batch.episode_lengths == 3)
    assert torch.all(batch.rewards[..., 6:] == 0) and torch.all(batch.obs[..., 6:, :] == 0)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_sampled_log_probs_match_a_whole_trial_recomputation(cell):
    """Memory flows through the whole trial (not reset per episode) and starts at zero per trial."""
    fam = make_family("cheetah-dir")
    pol = _policy(fam, cell)
    actor = RL2Actor(pol, RunningMeanStd((fam.obs_dim,)), RunningMeanStd(()))
    actor.obs_norm.update(torch.randn(50, fam.obs_dim, generator=torch.Generator().manual_seed(3)) * 2 + 1)
    actor.reward_norm.update(torch.randn(50, generator=torch.Generator().manual_seed(4)) * 5)
    T, K = 5, 2
    batch = TrialSampler(fam, device="cpu", seed=2).sample_trials(actor, fam.split_tasks("train"), 2, K, T)
    x = actor.trial_features(batch)
    with torch.no_grad():
        mean, _, _ = pol.sequence(x)
        lp = pol.distribution(mean).log_prob(batch.actions.view(x.shape[0], x.shape[1], -1))
        torch.testing.assert_close(lp, batch.log_probs.view(lp.shape), rtol=1e-5, atol=1e-5)
        # Resetting memory at the episode boundary would give other log-probs in episode 2.
        mean2, _, _ = pol.sequence(x[:, T:])
        lp2 = pol.distribution(mean2).log_prob(batch.actions.view(x.shape[0], x.shape[1], -1)[:, T:])
        assert (lp2 - lp[:, T:]).abs().max() > 1e-3


def test_trial_sampler_bad_arguments():
    fam = make_family("cheetah-dir")
    s = TrialSampler(fam, device="cpu")
    actor = RL2Actor(_policy(fam))
    with pytest.raises(RobometaError, match="at least one task"):
        s.sample_trials(actor, [], 1, 1)
    with pytest.raises(RobometaError, match="episodes_per_trial"):
        s.sample_trials(actor, fam.split_tasks("train"), 1, 0)
    with pytest.raises(RobometaError, match="recurrent cell"):
        RecurrentGaussianPolicy(3, 2, cell="rnn")


# ------------------------------------------------------------------ learning maths


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_sequence_ppo_loss_matches_step_by_step(cell):
    torch.manual_seed(0)
    pol = RecurrentGaussianPolicy(3, 2, hidden=5, cell=cell)
    pol.reset_parameters(torch.Generator().manual_seed(1))
    assert_sequence_loss_matches_steps(pol)


def assert_sequence_loss_matches_steps(pol, B=3, L=6):
    """``ppo_sequence_loss`` over whole trials equals a step-by-step recomputation via
    ``pol.step`` (loss, gradients and policy part); any RL² trial policy (SNAIL's too)."""
    act_dim = pol.log_std.shape[0]
    g = torch.Generator().manual_seed(2)
    inputs = torch.randn(B, L, pol.input_dim, generator=g)
    actions = torch.randn(B, L, act_dim, generator=g)
    old_lp = torch.randn(B, L, generator=g) * 0.1 - 3.0
    adv = torch.randn(B, L, generator=g)
    ret = torch.randn(B, L, generator=g)
    masks = torch.ones(B, L)
    masks[2, 4:] = 0.0
    clip, vc, ec = 0.2, 0.5, 0.01
    loss, parts = ppo_sequence_loss(pol, inputs, actions, old_lp, adv, ret, masks, clip, vc, ec)
    grads = torch.autograd.grad(loss, list(pol.parameters()))

    # Step-by-step recomputation, straight from the definitions.
    state = pol.initial_state(B)
    surr, vloss, ent, count = 0.0, 0.0, 0.0, masks.sum()
    for t in range(L):
        mean, value, state = pol.step(inputs[:, t], state)
        std = pol.log_std.exp()
        logp = (-0.5 * ((actions[:, t] - mean) / std) ** 2 - pol.log_std - 0.5 * np.log(2 * np.pi)).sum(-1)
        ratio = torch.exp(logp - old_lp[:, t])
        s = torch.minimum(ratio * adv[:, t], torch.clamp(ratio, 1 - clip, 1 + clip) * adv[:, t])
        surr = surr + (s * masks[:, t]).sum()
        vloss = vloss + (0.5 * (value - ret[:, t]) ** 2 * masks[:, t]).sum()
        ent = ent + ((pol.log_std + 0.5 * np.log(2 * np.pi * np.e)).sum() * masks[:, t]).sum()
    expected = -surr / count + vc * vloss / count - ec * ent / count
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads, torch.autograd.grad(expected, list(pol.parameters()))):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(parts["policy"], (-surr / count).detach(), rtol=1e-5, atol=1e-6)


def _tiny(**kw):
    base = dict(meta_batch_size=2, trials_per_task=2, episodes_per_trial=2, horizon=5, hidden=8, ppo_epochs=2)
    base.update(kw)
    return RL2Config(**base)


def test_gae_runs_across_episode_boundaries_within_a_trial():
    fam = make_family("cheetah-dir")
    algo = RL2(fam, _tiny(normalize_reward=False), device="cpu", seed=0)
    batch = algo.sample(algo.sampler, fam.split_tasks("train"), 2)
    x = algo.actor.trial_features(batch)
    adv, ret = algo.targets(batch, x)
    with torch.no_grad():
        _, v, _ = algo.policy.sequence(x)
    r = batch.rewards.reshape(v.shape)
    gamma, lam = algo.config.gamma, algo.config.gae_lambda
    expect = torch.zeros_like(r)
    running = torch.zeros(r.shape[0])
    for t in reversed(range(r.shape[1])):  # one MDP per trial: only its end is terminal
        nxt = v[:, t + 1] if t + 1 < r.shape[1] else torch.zeros_like(running)
        running = r[:, t] + gamma * nxt - v[:, t] + gamma * lam * running
        expect[:, t] = running
    torch.testing.assert_close(adv, expect, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ret, adv + v, rtol=1e-5, atol=1e-5)
    assert torch.equal(gae(r, v, torch.ones_like(r), gamma, lam), adv)


def test_bootstrap_trial_end_adds_the_last_value_and_spares_terminations():
    fam = make_family("cheetah-dir")
    plain = RL2(fam, _tiny(normalize_reward=False), device="cpu", seed=0)
    boot = RL2(fam, _tiny(normalize_reward=False, bootstrap_trial_end=True), device="cpu", seed=0)
    batch = plain.sample(plain.sampler, fam.split_tasks("train"), 2)
    x = plain.actor.trial_features(batch)
    adv0, _ = plain.targets(batch, x)
    adv1, ret1 = boot.targets(batch, x)
    with torch.no_grad():
        _, v, _ = plain.policy.sequence(x)
    gamma, lam = plain.config.gamma, plain.config.gae_lambda
    L = v.shape[1]
    # gamma V(s_last) enters at the last step and flows back with (gamma lambda)^k
    decay = (gamma * lam) ** torch.arange(L - 1, -1, -1, dtype=v.dtype)
    torch.testing.assert_close(adv1 - adv0, gamma * v[:, -1:] * decay, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ret1, adv1 + v, rtol=1e-5, atol=1e-5)
    # a trial whose last episode terminated is not bootstrapped
    fam = _FallsOver()
    plain = RL2(fam, _tiny(normalize_reward=False), device="cpu", seed=0)
    boot = RL2(fam, _tiny(normalize_reward=False, bootstrap_trial_end=True), device="cpu", seed=0)
    batch = plain.sample(plain.sampler, fam.split_tasks("train", n=2), 2)
    x = plain.actor.trial_features(batch)
    torch.testing.assert_close(boot.targets(batch, x)[0], plain.targets(batch, x)[0])


def test_running_mean_std_merges_batches_and_round_trips():
    g = torch.Generator().manual_seed(0)
    data = torch.randn(100, 3, generator=g) * torch.tensor([1.0, 2.0, 3.0]) + 5
    rms = RunningMeanStd((3,))
    for chunk in data.split([10, 35, 55]):
        rms.update(chunk)
    torch.testing.assert_close(rms.mean, data.double().mean(0))
    torch.testing.assert_close(rms.var, data.double().var(0, unbiased=False))
    masked = RunningMeanStd((3,))
    masked.update(torch.cat([data, torch.full((5, 3), 1e6)]), torch.cat([torch.ones(100), torch.zeros(5)]))
    torch.testing.assert_close(masked.mean, rms.mean)
    other = RunningMeanStd((3,))
    other.load_state_dict(rms.state_dict())
    x = torch.randn(4, 3, generator=g)
    torch.testing.assert_close(other.normalize(x), rms.normalize(x))
    with pytest.raises(RobometaError, match="shape"):
        RunningMeanStd((2,)).load_state_dict(rms.state_dict())


def test_config_validation_names_the_problem():
    assert _tiny().validate() == []
    assert any("cell" in p for p in _tiny(cell="rnn").validate())
    assert any("minibatches" in p for p in _tiny(minibatches=9).validate())
    assert any("episodes_per_trial" in p for p in _tiny(episodes_per_trial=0).validate())


def test_adaptation_data_for_evaluate_and_replay():
    fam = _FallsOver()  # episodes of 3 steps within a horizon of 5: exercises the padding
    algo = RL2(fam, _tiny(), device="cpu", seed=0)
    tasks = fam.split_tasks("test", n=2)
    data = algo.adaptation_data(tasks, 2, seed=1, record_states=True)
    assert data.x == "episode" and data.episodes_per_step == 1 and data.success is None
    assert data.returns.shape == (2, 3)
    states, rewards = data.states, data.rewards
    assert states.shape == (3, 2, 6, fam.layout.nstate) and rewards.shape == (3, 2, 5)
    lay = fam.layout
    times = np.round(states[..., lay.time] / lay.dt).astype(int)
    # a reset state, 3 steps, then the last state again (the env stands still in a replay)
    assert np.all(times[..., :4] == np.arange(4)) and np.all(states[..., 4:, :] == states[..., 3:4, :])
    assert np.all(rewards[..., 3:] == 0)
    # rewards recomputed from the recorded physics: forward velocity term of cheetah-vel
    v = np.diff(states[..., :4, lay.qpos.start], axis=-1) / lay.dt
    goal = np.array([t.goal_velocity for t in tasks])[None, :, None]
    assert np.all(rewards[..., :3] <= -np.abs(v - goal) + 1e-4)
    again = algo.adaptation_data(tasks, 2, seed=1)
    np.testing.assert_array_equal(again.returns, data.returns)


# ------------------------------------------------------------------ without memory (the multi-task baseline)


def _memoryless_learner(fam, seed=0):
    cfg = RL2Config(
        meta_batch_size=2, trials_per_task=2, episodes_per_trial=2, horizon=5, hidden=8, memory=False
    )
    learner = RL2(fam, cfg, seed=seed)
    with torch.no_grad():  # a mean head that matters, as in _policy
        learner.policy.mean_head.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(seed + 1))
    return learner


def test_without_memory_each_step_sees_only_its_observation():
    """memory=False: the sampled log-probs are those of every step alone, from the initial
    state and with the previous action, reward and done inputs at 0, and the learner's
    values at a step ignore every other step of the trial."""
    fam = make_family("cheetah-dir")
    learner = _memoryless_learner(fam)
    with_memory = RL2(fam, replace(learner.config, memory=True))
    assert with_memory.multitask_config() == learner.config  # the baseline: the same, without memory
    batch = learner.sample(learner.sampler, fam.split_tasks("train", n=2), 2)
    x = learner.actor.trial_features(batch)
    obs_dim = fam.obs_dim
    assert torch.all(x[..., obs_dim:] == 0)  # previous action, reward and done all read 0
    pol = learner.policy
    with torch.no_grad():
        mean, _, _ = pol.sequence(x.reshape(-1, 1, x.shape[-1]))  # every step on its own
        lp = pol.distribution(mean.reshape(*x.shape[:2], -1)).log_prob(batch.actions.view(*x.shape[:2], -1))
    torch.testing.assert_close(lp, batch.log_probs.view(lp.shape), rtol=1e-5, atol=1e-5)
    # The same trials run with memory give other log-probs: the test can tell.
    with torch.no_grad():
        mean_mem, _, _ = pol.sequence(x)
        lp_mem = pol.distribution(mean_mem).log_prob(batch.actions.view(*x.shape[:2], -1))
    assert (lp_mem - lp).abs().max() > 1e-3
    # Values at step t do not move when every other step of the trial is scrambled.
    v = learner.values(x)
    scrambled = x.clone()
    scrambled[:, :3] = torch.randn(scrambled[:, :3].shape, generator=torch.Generator().manual_seed(5))
    v2 = learner.values(scrambled)
    torch.testing.assert_close(v2[:, 3:], v[:, 3:])
    assert (v2[:, :3] - v[:, :3]).abs().max() > 1e-4


def test_without_memory_ppo_updates_on_single_steps(monkeypatch):
    """PPO without memory takes minibatches of one-step sequences (every valid step of the
    iteration once per epoch), and it changes the policy."""
    fam = make_family("cheetah-dir")
    learner = _memoryless_learner(fam)
    seen = []
    loss = learner.minibatch_loss

    def recording(inputs, *args, **kwargs):
        seen.append(tuple(inputs.shape))
        return loss(inputs, *args, **kwargs)

    monkeypatch.setattr(learner, "minibatch_loss", recording)
    before = {k: v.clone() for k, v in learner.policy.state_dict().items()}
    result = learner.iteration(fam.split_tasks("train", n=2))
    cfg = learner.config
    steps = cfg.meta_batch_size * cfg.trials_per_task * cfg.episodes_per_trial * cfg.horizon
    assert len(seen) == cfg.ppo_epochs * cfg.minibatches
    assert all(shape[1] == 1 for shape in seen)  # sequences of one step: no memory to learn through
    assert sum(shape[0] for shape in seen) == cfg.ppo_epochs * steps
    after = learner.policy.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert np.isfinite(result.metrics["loss/first_minibatch"])
