"""Pipelined sampling (two parts, physics of one on a worker thread while the other's
policy runs) gives exactly the plain loop's batches: same actions, noise, observations,
rewards, episode ends and recorded states, and the same action-noise stream afterwards."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from toy_problems import BlowsUpCheetah, assert_same_batches

from robometa.algos.rl2 import RL2Actor
from robometa.policies import BoundActor, GaussianMLPPolicy
from robometa.policies.recurrent import RecurrentGaussianPolicy
from robometa.sampling import Sampler, chunks
from robometa.sampling.chunks import EpisodeActor, PipelineChoice, pipelining, split_actor
from robometa.sampling.rollout import PreviousStep, collect, collect_parts
from robometa.sampling.trials import TrialSampler
from robometa.sim import make_simulator
from robometa.tasks import make_family
from robometa.tasks.locomotion.cheetah import CheetahVel

CPU = torch.device("cpu")


class _EndsByTask(CheetahVel):
    """cheetah-vel whose episodes terminate after ``4 + 20 * goal_velocity`` steps (0-44)."""

    def terminated(self, state, sensordata, params):
        steps = np.round(state[:, self.layout.time] / self.layout.dt)
        return steps >= 4 + np.round(20 * params[:, 0])


class _RowActor:
    """Deterministic and row by row, with memory: its rows split exactly."""

    def __init__(self, obs_dim, act_dim):
        self.W = np.random.default_rng(0).normal(0.0, 1.0, (obs_dim + 2, act_dim))

    def initial_memory(self, num_envs):
        return np.zeros(num_envs)

    def act(self, obs, memory, prev: PreviousStep):
        x = np.concatenate([obs, np.sin(memory)[:, None], prev.reward[:, None] * (1 - prev.done[:, None])], 1)
        return 1.5 * np.tanh(x @ self.W), -np.abs(x).sum(1), memory + 1


@pytest.mark.parametrize(
    ("family", "K", "cuts", "uneven"),
    [
        (make_family("ant-dir"), 2, [5], True),
        (BlowsUpCheetah(), 2, [2, 7], True),
        (make_family("push"), 1, [4], False),
    ],
    ids=["ant-dir-trials", "blow-ups-three-parts", "push"],
)
def test_collect_parts_equals_collect(family, K, cuts, uneven):
    """The loop over parts fills every field of the rollout exactly as over one simulator."""
    tasks = [t for t in family.split_tasks("train", n=5) for _ in range(2)]
    seeds = list(range(21, 31))
    whole = make_simulator(family, tasks, seeds)
    spec = whole.spec
    want = collect(whole, _RowActor(spec.obs_dim, spec.act_dim), 40, K, record_states=True)
    edges = [0, *cuts, len(tasks)]
    parts = [
        (make_simulator(family, tasks[a:b], seeds[a:b]), _RowActor(spec.obs_dim, spec.act_dim))
        for a, b in zip(edges, edges[1:])
    ]
    got = collect_parts(parts, 40, K, record_states=True)
    for name, value in vars(want).items():
        if isinstance(value, dict):
            assert got.__dict__[name].keys() == value.keys(), name
            for k, v in value.items():
                np.testing.assert_array_equal(got.__dict__[name][k], v, err_msg=f"{name}/{k}", strict=True)
        elif isinstance(value, np.ndarray):
            np.testing.assert_array_equal(got.__dict__[name], value, err_msg=name, strict=True)
        else:
            assert got.__dict__[name] == value, name
    assert (want.episode_lengths.min() < want.episode_lengths.max()) == uneven  # early terminations


@pytest.fixture
def parts_used(monkeypatch):
    """The part sizes of every pipelined loop run (empty: none was)."""
    used: list[list[int]] = []
    real = chunks.collect_parts

    def spy(parts, *args, **kwargs):
        used.append([sim.spec.num_envs for sim, _ in parts])
        return real(parts, *args, **kwargs)

    monkeypatch.setattr(chunks, "collect_parts", spy)
    return used


def _sample_both(make, run):
    """``run(sampler)`` twice per sampler (the second continues the stream), plain and pipelined."""
    out = {}
    for pipeline in (False, True):
        sampler = make(pipeline)
        out[pipeline] = [run(sampler), run(sampler), sampler.state_dict()]
    return out


@pytest.mark.parametrize(
    ("name", "M", "N", "T", "per_task", "deterministic"),
    [
        ("cheetah-vel", 4, 4, 30, False, False),
        ("push", 4, 4, 25, True, False),
        ("ant-dir", 4, 5, 100, False, False),
        ("ant-dir", 4, 5, 60, True, True),
    ],
    ids=["cheetah-vel", "push-per-task-weights", "ant-dir-early-terminations", "ant-dir-deterministic"],
)
def test_pipelined_episodes_equal_the_plain_loop(name, M, N, T, per_task, deterministic, parts_used):
    fam = make_family(name)
    tasks = fam.split_tasks("train", n=M)
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(fam.obs_dim, fam.layout.nu, (32, 32))
    params = None
    if per_task:
        gen = torch.Generator().manual_seed(1)
        params = {
            k: v.detach().expand(M, *v.shape) + 0.1 * torch.randn(M, *v.shape, generator=gen)
            for k, v in policy.named_parameters()
        }
    actor = BoundActor(policy, params, per_task)
    out = _sample_both(
        lambda pipeline: Sampler(fam, "cpu", seed=7, pipeline=pipeline),
        lambda s: s.sample(actor, tasks, N, horizon=T, deterministic=deterministic, record_states=True),
    )
    assert len(parts_used) == 2 and sum(parts_used[0]) == M * N  # both pipelined samples were cut
    for plain, piped in zip(out[False][:2], out[True][:2]):
        assert_same_batches(plain, piped)
    assert torch.equal(out[False][2]["torch_gen"], out[True][2]["torch_gen"])
    assert not torch.equal(out[True][0].obs, out[True][1].obs)
    if name == "ant-dir" and not deterministic:
        lengths = out[True][0].lengths.flatten()
        assert lengths.min() < lengths.max()  # early, uneven terminations


@pytest.mark.parametrize(
    "first_ends_first", [True, False], ids=["first-part-ends-first", "second-part-ends-first"]
)
def test_a_part_that_is_done_keeps_drawing_its_noise(first_ends_first, parts_used):
    """One part's episodes all end well before the other's: its actor is still called
    (the whole-batch actor would draw its noise), in part order, and not past the end."""
    fam = _EndsByTask()
    tasks = fam.split_tasks("train", n=4)
    slow = sorted(tasks, key=lambda t: t.goal_velocity)
    ordered = slow if first_ends_first else slow[::-1]
    policy = GaussianMLPPolicy(fam.obs_dim, fam.layout.nu, (16,))
    out = _sample_both(
        lambda pipeline: Sampler(fam, "cpu", seed=3, pipeline=pipeline),
        lambda s: s.sample(BoundActor(policy), ordered, 4, horizon=50),
    )
    assert parts_used and parts_used[0] == [8, 8]
    lengths = out[True][0].lengths.view(2, 8)  # the two parts' envs
    ends = lengths.max(dim=1).values
    assert (ends[0] < ends[1]) == first_ends_first and ends.min() < ends.max()
    for plain, piped in zip(out[False][:2], out[True][:2]):
        assert_same_batches(plain, piped)
    assert torch.equal(out[False][2]["torch_gen"], out[True][2]["torch_gen"])


def test_chunked_trials_pipeline_between_chunks(parts_used):
    """Trials (memory carried across episodes) are cut only between chunks, which are
    independent by construction; ant-dir trials end unevenly."""
    fam = make_family("ant-dir")
    tasks = fam.split_tasks("train", n=4)
    policy = RecurrentGaussianPolicy(fam.obs_dim, fam.layout.nu, hidden=8)
    policy.reset_parameters(torch.Generator().manual_seed(0))
    actor = RL2Actor(policy)
    out = _sample_both(
        lambda pipeline: TrialSampler(fam, "cpu", seed=4, backend="batch/4", pipeline=pipeline),
        lambda s: s.sample_trials(actor, tasks, 4, 2, horizon=40),
    )
    assert parts_used and parts_used[0] == [8, 8]
    for plain, piped in zip(out[False][:2], out[True][:2]):
        assert_same_batches(plain, piped)
    # One chunk of trials is not cut (its memory and noise are one actor's).
    parts_used.clear()
    TrialSampler(fam, "cpu", seed=4, pipeline=True).sample_trials(actor, tasks, 4, 2, horizon=5)
    assert not parts_used


class _BatchMean:
    """An actor whose actions depend on the whole batch: no cut can be exact."""

    def act(self, obs, generator=None, deterministic=False):
        a = (obs - obs.mean(dim=(0, 1), keepdim=True))[..., :6]
        return a, a.sum(-1)


def test_inexact_cuts_are_refused_and_sampling_falls_back(parts_used):
    fam = make_family("cheetah-vel")
    actor = EpisodeActor(_BatchMean(), 4, 4, CPU, torch.Generator().manual_seed(0), False)
    assert split_actor(actor, 16, fam.obs_dim) is None
    tasks = fam.split_tasks("train", n=4)
    a = Sampler(fam, "cpu", seed=1, pipeline=True).sample(_BatchMean(), tasks, 4, horizon=6)
    b = Sampler(fam, "cpu", seed=1, pipeline=False).sample(_BatchMean(), tasks, 4, horizon=6)
    assert not parts_used
    assert_same_batches(a, b)
    # An exact cut of a Gaussian policy lies on a block boundary of its noise draw.
    policy = GaussianMLPPolicy(fam.obs_dim, 6, (16,))
    cut = split_actor(EpisodeActor(BoundActor(policy), 20, 1, CPU, torch.Generator(), False), 20, fam.obs_dim)
    assert cut is not None and cut[2] * 6 % 16 == 0


def test_pipeline_setting():
    assert not pipelining(None, CPU, 1)  # one thread: nothing to overlap with
    assert not pipelining(None, CPU, 0)
    assert pipelining(None, CPU, 2)
    assert not pipelining(None, torch.device("cuda"), 8)  # auto: CPU policies only
    assert not pipelining(False, CPU, 8)
    assert pipelining(True, CPU, 1)


def test_auto_times_both_ways_and_keeps_the_faster(parts_used):
    choice = PipelineChoice()
    shape = (16, 10, 1, False, 1)
    picks = []
    for _ in range(2 * PipelineChoice.PROBE + 1):
        piped = choice.pick(shape)
        picks.append(piped)
        choice.record(shape, piped, 1.0 if piped else 2.0)  # pipelined is faster here
    assert picks[:2] == [False, True]
    assert [i for i, p in enumerate(picks) if not p] == [0, PipelineChoice.PROBE, 2 * PipelineChoice.PROBE]
    assert choice.pick((8, 10, 1, False, 1)) is False  # another shape starts over
    # The sampler's auto setting: same episodes whichever way each request ran.
    fam = make_family("cheetah-vel")
    tasks = fam.split_tasks("train", n=4)
    policy = GaussianMLPPolicy(fam.obs_dim, fam.layout.nu, (16,))
    auto = Sampler(fam, "cpu", seed=2, nthread=2)  # two MuJoCo threads: auto may pipeline
    plain = Sampler(fam, "cpu", seed=2, nthread=2, pipeline=False)
    for _ in range(3):
        assert_same_batches(
            auto.sample(BoundActor(policy), tasks, 4, horizon=8),
            plain.sample(BoundActor(policy), tasks, 4, horizon=8),
        )
    assert len(parts_used) >= 1  # the second request ran pipelined
    assert torch.equal(auto.state_dict()["torch_gen"], plain.state_dict()["torch_gen"])


def _sample_in_child(fam, tasks, policy, want, out):
    got = Sampler(fam, "cpu", seed=1, nthread=2, pipeline=True).sample(
        BoundActor(policy), tasks, 4, horizon=5
    )
    out.put(torch.equal(got.actions, want))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_samples_with_its_own_threads():
    """The parent's MuJoCo pools and physics worker do not survive a fork; the child makes its own."""
    import multiprocessing

    fam = make_family("cheetah-vel")
    tasks = fam.split_tasks("train", n=4)
    policy = GaussianMLPPolicy(fam.obs_dim, fam.layout.nu, (16,))
    want = Sampler(fam, "cpu", seed=1, nthread=2, pipeline=True).sample(
        BoundActor(policy), tasks, 4, horizon=5
    )
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_sample_in_child, args=(fam, tasks, policy, want.actions, out))
    child.start()
    child.join(120)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0 and out.get(timeout=5)
