"""Sampler: shapes, masks and returns on a tiny batch; determinism; per-task weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robometa.algos.rl2 import RL2Actor
from robometa.errors import RobometaError
from robometa.policies import BoundActor, GaussianMLPPolicy
from robometa.policies.recurrent import RecurrentGaussianPolicy
from robometa.sampling import Sampler
from robometa.sampling.trials import TrialSampler
from robometa.sim import BatchSim
from robometa.tasks import make_family
from robometa.tasks.locomotion.cheetah import CheetahVel


def _policy(fam, seed=0):
    torch.manual_seed(seed)
    return GaussianMLPPolicy(fam.obs_dim, fam.layout.nu)


def test_shapes_masks_returns():
    fam = make_family("cheetah-vel")
    tasks = fam.split_tasks("train", n=3)
    batch = Sampler(fam, device="cpu", seed=0).sample(_policy(fam), tasks, 2, horizon=7, record_states=True)
    M, N, T = 3, 2, 7
    assert batch.obs.shape == (M, N, T, 17)
    assert batch.actions.shape == (M, N, T, 6)
    for name in ("rewards", "log_probs", "masks", "terminated"):
        assert getattr(batch, name).shape == (M, N, T)
    assert batch.final_obs.shape == (M, N, 17)
    assert batch.success.shape == (M, N)
    assert batch.states.shape == (M, N, T + 1, fam.layout.nstate)
    assert torch.all(batch.masks == 1)  # cheetahs never terminate
    assert batch.env_steps == M * N * T
    torch.testing.assert_close(batch.returns, batch.rewards.sum(-1))
    total_terms = sum(batch.reward_terms.values())
    torch.testing.assert_close(total_terms, batch.returns, rtol=1e-5, atol=1e-4)
    assert batch.tasks == tasks
    # env b runs task b // N: rewards of the two episodes of task m use its goal
    for m, task in enumerate(tasks):
        st = batch.states[m, 0].numpy()
        x = st[:, fam.layout.qpos.start]
        v = np.diff(x) / fam.layout.dt
        a = np.clip(batch.actions[m, 0].numpy(), -1, 1)
        expect = -np.abs(v - task.goal_velocity) - 0.05 * (a**2).sum(-1)
        np.testing.assert_allclose(batch.rewards[m, 0].numpy(), expect, rtol=1e-5, atol=1e-5)


def test_log_probs_are_those_of_the_policy():
    fam = make_family("cheetah-dir")
    pol = _policy(fam)
    batch = Sampler(fam, device="cpu", seed=1).sample(pol, fam.split_tasks("train"), 2, horizon=5)
    with torch.no_grad():
        lp = pol.distribution(batch.obs).log_prob(batch.actions)
    torch.testing.assert_close(lp, batch.log_probs, rtol=1e-5, atol=1e-5)


def test_same_seed_same_episodes_and_resume_of_the_stream():
    fam = make_family("cheetah-vel")
    tasks = fam.split_tasks("train", n=2)
    pol = _policy(fam)
    a, b = Sampler(fam, device="cpu", seed=5), Sampler(fam, device="cpu", seed=5)
    x1, y1 = a.sample(pol, tasks, 2, horizon=6), b.sample(pol, tasks, 2, horizon=6)
    torch.testing.assert_close(x1.obs, y1.obs, rtol=0, atol=0)
    torch.testing.assert_close(x1.actions, y1.actions, rtol=0, atol=0)
    state = a.state_dict()
    x2 = a.sample(pol, tasks, 2, horizon=6)
    c = Sampler(fam, device="cpu", seed=999)
    c.load_state_dict(state)
    torch.testing.assert_close(c.sample(pol, tasks, 2, horizon=6).actions, x2.actions, rtol=0, atol=0)
    assert not torch.equal(x1.actions, x2.actions)


def test_per_task_weights():
    """BoundActor with a leading task axis gives each task its own policy."""
    fam = make_family("cheetah-vel")
    pol = _policy(fam)
    params = {k: torch.stack([v.detach(), v.detach() * 0]) for k, v in pol.named_parameters()}
    batch = Sampler(fam, device="cpu", seed=0).sample(
        BoundActor(pol, params, per_task=True),
        fam.split_tasks("train", n=2),
        2,
        horizon=4,
        deterministic=True,
    )
    assert torch.all(batch.actions[1] == 0)  # zero weights -> zero mean action
    assert torch.any(batch.actions[0] != 0)
    with torch.no_grad():
        expected = pol.distribution(batch.obs[0]).mean
    torch.testing.assert_close(batch.actions[0], expected)


class _FallsOver(CheetahVel):
    """cheetah-vel that terminates at step 3 of every episode (tests masking)."""

    def terminated(self, state, sensordata, params):
        return np.round(state[:, self.layout.time] / self.layout.dt).astype(int) >= 3


def test_terminated_envs_are_masked():
    fam = _FallsOver()
    batch = Sampler(fam, device="cpu", seed=0).sample(
        _policy(fam), fam.split_tasks("train", n=2), 2, horizon=6
    )
    expected = torch.tensor([1, 1, 1, 0, 0, 0], dtype=torch.float32)
    assert torch.all(batch.masks == expected)
    assert torch.all(batch.terminated[..., 2] == 1) and batch.terminated.sum() == 4
    assert torch.all(batch.rewards[..., 3:] == 0) and torch.all(batch.obs[..., 3:, :] == 0)
    assert torch.all(batch.lengths == 3)


def test_bad_arguments():
    fam = make_family("cheetah-vel")
    s = Sampler(fam, device="cpu")
    with pytest.raises(RobometaError, match="at least one task"):
        s.sample(_policy(fam), [], 1)
    with pytest.raises(RobometaError, match="episodes_per_task"):
        s.sample(_policy(fam), fam.split_tasks("train", n=1), 0)


def test_device_errors_name_the_choices():
    fam = make_family("cheetah-vel")
    with pytest.raises(RobometaError, match="valid: auto, cpu, cuda, cuda:N"):
        Sampler(fam, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RobometaError, match="not available"):
            Sampler(fam, device="cuda")


def test_one_sample_builds_one_simulator_with_one_group_per_model_signature(monkeypatch):
    """All envs of a sample() share one batched simulator, one rollout group per size signature."""
    from robometa.tasks.base import model_signature

    built = []
    init = BatchSim.__init__

    def spy(self, *args, **kwargs):
        init(self, *args, **kwargs)
        built.append(self)

    monkeypatch.setattr(BatchSim, "__init__", spy)
    for name in ("reach", "cheetah-terrain"):
        built.clear()
        fam = make_family(name)
        tasks = fam.split_tasks("train", n=4)
        Sampler(fam, device="cpu", seed=0).sample(_policy(fam), tasks, 2, horizon=3)
        assert len(built) == 1 and built[0].B == 8
        assert len(built[0]._groups) == len({model_signature(fam.model(t)) for t in tasks})


def test_terminated_envs_are_not_simulated_and_nothing_else_changes(monkeypatch):
    """ant-dir episodes end early; stepping only live envs gives the very same batch."""
    fam = make_family("ant-dir")
    tasks = fam.split_tasks("train", n=4)
    pol = _policy(fam)
    stepped = []
    step = BatchSim.step

    def counting_step(self, action, active=None):
        stepped.append(self.B if active is None else int(np.count_nonzero(active)))
        return step(self, action, active)

    monkeypatch.setattr(BatchSim, "step", counting_step)
    masked = Sampler(fam, device="cpu", seed=0).sample(pol, tasks, 3, horizon=100, record_states=True)
    live_steps = stepped.copy()
    monkeypatch.setattr(BatchSim, "step", lambda self, action, active=None: step(self, action))
    full = Sampler(fam, device="cpu", seed=0).sample(pol, tasks, 3, horizon=100, record_states=True)

    lengths = masked.lengths.flatten()
    assert lengths.min() < lengths.max() and (lengths < 100).float().mean() > 0.5  # early, uneven ends
    assert sum(live_steps) == masked.env_steps < len(live_steps) * 12  # dead envs were skipped
    for name in ("obs", "actions", "rewards", "log_probs", "masks", "terminated", "final_obs", "success"):
        torch.testing.assert_close(getattr(masked, name), getattr(full, name), rtol=0, atol=0)
    for k in full.reward_terms:
        torch.testing.assert_close(masked.reward_terms[k], full.reward_terms[k], rtol=0, atol=0)
    # States agree up to each episode's end; a masked env then keeps its last state
    # (until the last episode ends and sampling stops).
    M, N, _ = masked.masks.shape
    last = int(lengths.max())
    for m in range(M):
        for n in range(N):
            L = int(masked.lengths[m, n])
            torch.testing.assert_close(
                masked.states[m, n, : L + 1], full.states[m, n, : L + 1], rtol=0, atol=0
            )
            assert torch.all(masked.states[m, n, L + 1 : last + 1] == masked.states[m, n, L])


def test_finished_trials_are_not_simulated_and_nothing_else_changes(monkeypatch):
    """Trials of ant-dir end at different times; stepping only running ones changes nothing."""
    fam = make_family("ant-dir")
    tasks = fam.split_tasks("train", n=3)
    torch.manual_seed(0)
    actor = RL2Actor(RecurrentGaussianPolicy(fam.obs_dim, fam.layout.nu, hidden=8))
    step = BatchSim.step
    masked = TrialSampler(fam, device="cpu", seed=0).sample_trials(actor, tasks, 2, 2, horizon=60)
    monkeypatch.setattr(BatchSim, "step", lambda self, action, active=None: step(self, action))
    full = TrialSampler(fam, device="cpu", seed=0).sample_trials(actor, tasks, 2, 2, horizon=60)
    ends = masked.masks.sum(-1)
    assert ends.min() < ends.max()  # trials end unevenly: some wait for others
    for name, value in vars(full).items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(getattr(masked, name), value, rtol=0, atol=0)
