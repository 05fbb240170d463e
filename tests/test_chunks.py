"""Chunked sampling in one process: a chunk's episodes depend on its own seeds only, so
however chunks are grouped (which is all that differs between this process and Ray
workers) the batch is the same bit for bit; one chunk is the plain sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from toy_problems import assert_same_batches

from robometa.algos.rl2 import RL2Actor
from robometa.errors import RobometaError
from robometa.policies import BoundActor, GaussianMLPPolicy
from robometa.policies.recurrent import RecurrentGaussianPolicy
from robometa.sampling import Sampler
from robometa.sampling.chunks import EpisodeActor, Request, chunk_grid, make_chunks, run_chunks, scatter
from robometa.sampling.rollout import collect
from robometa.sampling.trials import TrialSampler
from robometa.sim import make_simulator
from robometa.tasks import make_family

CPU = torch.device("cpu")


def _per_task_actor(fam, M: int) -> BoundActor:
    """A policy with different (adapted-like) weights for each of M tasks."""
    policy = GaussianMLPPolicy(fam.obs_dim, fam.layout.nu, (16,))
    gen = torch.Generator().manual_seed(1)
    params = {
        k: v.detach().expand(M, *v.shape) + 0.3 * torch.randn(M, *v.shape, generator=gen)
        for k, v in policy.named_parameters()
    }
    return BoundActor(policy, params, per_task=True)


def test_chunk_grid_cuts_by_tasks_then_by_envs():
    assert chunk_grid(5, 4, 1) == [(range(5), range(4))]
    assert chunk_grid(5, 4, 2) == [(range(0, 3), range(4)), (range(3, 5), range(4))]
    assert chunk_grid(2, 4, 4) == [(range(0, 1), r) for r in (range(2), range(2, 4))] + [
        (range(1, 2), r) for r in (range(2), range(2, 4))
    ]
    assert [len(e) for _, e in chunk_grid(2, 4, 3)] == [2, 2, 4]  # as many chunks as asked
    assert len(chunk_grid(2, 3, 100)) == 6  # never more than one chunk per env


def _recurrent_actor(fam) -> RL2Actor:
    policy = RecurrentGaussianPolicy(fam.obs_dim, fam.layout.nu, hidden=8)
    policy.reset_parameters(torch.Generator().manual_seed(0))
    return RL2Actor(policy)


@pytest.mark.parametrize("trials", [False, True], ids=["episodes", "trials"])
def test_chunk_groupings_give_the_same_episodes(trials):
    """The property Ray failover rests on: chunks run together or apart, in any order."""
    torch.manual_seed(0)
    fam = make_family("cheetah-vel")
    tasks = fam.split_tasks("train", n=3)
    actor = _recurrent_actor(fam) if trials else _per_task_actor(fam, 3)
    N, T = 4, 12
    grid = chunk_grid(3, N, 6)
    seeds = np.random.default_rng(0).integers(0, 2**31 - 1, size=3 * N)
    chunks = make_chunks(tasks, N, seeds, grid, list(range(100, 100 + len(grid))))
    request = Request(N, T, 2 if trials else 1, trials, False, True)

    def run(groups):
        parts = []
        for g in groups:
            out, _ = run_chunks(fam, actor, request, [chunks[i] for i in g], 3, CPU)
            parts.append((np.concatenate([chunks[i].rows(N) for i in g]), out))
        return scatter(parts, 3 * N)

    together = run([range(6)])
    for groups in ([[i] for i in range(6)], [[5, 1], [0, 2, 4], [3]]):
        apart = run(groups)
        for name in ("obs", "actions", "rewards", "log_probs", "masks", "states", "episode_returns"):
            np.testing.assert_array_equal(getattr(apart, name), getattr(together, name), err_msg=name)


def test_one_chunk_is_the_rollout_loop_on_the_samplers_own_streams():
    """``batch`` (one chunk) samples exactly what one simulator of the whole batch and
    the sampler's own action-noise generator give, call after call."""
    torch.manual_seed(0)
    fam = make_family("cheetah-vel")
    tasks = fam.split_tasks("train", n=3)
    actor = _per_task_actor(fam, 3)
    sampler = Sampler(fam, "cpu", seed=3)
    rng, gen = np.random.default_rng(3), torch.Generator().manual_seed(3)
    for _ in range(2):
        got = sampler.sample(actor, tasks, 2, horizon=10)
        sim = make_simulator(
            fam, [t for t in tasks for _ in range(2)], rng.integers(0, 2**31 - 1, size=6).tolist()
        )
        want = collect(sim, EpisodeActor(actor, 3, 2, CPU, gen, False), 10)
        assert torch.equal(got.actions, torch.from_numpy(np.moveaxis(want.actions, 0, 1)).view(3, 2, 10, -1))
        assert torch.equal(got.obs, torch.from_numpy(np.moveaxis(want.obs, 0, 1)).view(3, 2, 10, -1))
    assert torch.equal(sampler.state_dict()["torch_gen"], gen.get_state())


def test_chunks_are_reproducible_keep_each_envs_initial_state_and_draw_their_own_noise():
    fam = make_family("cheetah-vel")
    tasks = fam.split_tasks("train", n=3)
    policy = GaussianMLPPolicy(fam.obs_dim, fam.layout.nu, (16,), init_std=1.0)
    with torch.no_grad():
        policy.mean[-1].weight.zero_()
        policy.mean[-1].bias.zero_()
    actor = BoundActor(policy)  # zero mean, unit std: its actions are the noise itself
    a, b = (
        Sampler(fam, "cpu", seed=3, backend="batch/3").sample(actor, tasks, 2, horizon=10) for _ in range(2)
    )
    assert_same_batches(a, b)
    c = Sampler(fam, "cpu", seed=3).sample(actor, tasks, 2, horizon=10)
    assert torch.equal(a.obs[:, :, 0], c.obs[:, :, 0]) and not torch.equal(a.actions, c.actions)
    # three chunks of one task each, equally shaped: three different noise streams
    assert not torch.equal(a.actions[0], a.actions[1]) and not torch.equal(a.actions[1], a.actions[2])


def test_chunked_trials_keep_memory_per_env():
    fam = make_family("cheetah-vel")
    tasks = fam.split_tasks("train", n=2)
    actor = _recurrent_actor(fam)
    plain = TrialSampler(fam, "cpu", seed=4).sample_trials(actor, tasks, 2, 2, horizon=8)
    one = TrialSampler(fam, "cpu", seed=4, backend="batch/1").sample_trials(actor, tasks, 2, 2, horizon=8)
    assert_same_batches(plain, one)
    four = TrialSampler(fam, "cpu", seed=4, backend="batch/4").sample_trials(actor, tasks, 2, 2, horizon=8)
    assert four.obs.shape == plain.obs.shape and torch.equal(four.obs[:, :, 0], plain.obs[:, :, 0])


def test_backend_names_with_chunks_are_checked():
    fam = make_family("cheetah-vel")
    with pytest.raises(RobometaError, match=r"chunk count after '/' must be an integer >= 1"):
        Sampler(fam, "cpu", backend="batch/0")
    with pytest.raises(RobometaError, match="unknown simulator backend 'nope'"):
        Sampler(fam, "cpu", backend="nope/2")
    assert Sampler(fam, "cpu", backend="ray/8").act_dim == fam.layout.nu  # builds nothing, needs no Ray
