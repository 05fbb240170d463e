"""BatchSim: agreement with the facade, independence from batch composition."""

from __future__ import annotations

import numpy as np
import pytest

from robometa.errors import RobometaError
from robometa.sim import BatchSim
from robometa.tasks import family_names, make_family


def _actions(fam, n_env, steps, seed=0):
    lo = fam.model(fam.default_task()).actuator_ctrlrange[:, 0]
    hi = fam.model(fam.default_task()).actuator_ctrlrange[:, 1]
    return np.random.default_rng(seed).uniform(lo * 1.2, hi * 1.2, (steps, n_env, len(lo)))


@pytest.mark.parametrize("name", family_names())
def test_facade_and_batchsim_agree(name, assert_facade_agrees):
    """Same task, seed and actions: identical observations and rewards."""
    fam = make_family(name)
    tasks = fam.split_tasks("test", seed=0, n=3)
    assert_facade_agrees(fam, tasks, [11, 12, 13], _actions(fam, len(tasks), 25))


def test_env_does_not_depend_on_its_batch():
    fam = make_family("cheetah-vel")
    tasks = fam.split_tasks("train", seed=0, n=5)
    big = BatchSim(fam, tasks, seeds=[1, 2, 3, 4, 5], nthread=2)
    small = BatchSim(fam, tasks[2:3], seeds=[3], nthread=0)
    big.reset(), small.reset()
    acts = _actions(fam, 5, 10)
    for a in acts:
        rb, rs = big.step(a), small.step(a[2:3])
        np.testing.assert_array_equal(rb.obs[2], rs.obs[0])


def test_partial_reset_only_touches_masked_envs():
    fam = make_family("cheetah-vel")
    sim = BatchSim(fam, fam.split_tasks("train", n=4), seeds=0)
    sim.reset()
    for a in _actions(fam, 4, 5):
        sim.step(a)
    before = sim.state.copy()
    sim.reset(mask=np.array([False, True, False, False]))
    np.testing.assert_array_equal(sim.state[[0, 2, 3]], before[[0, 2, 3]])
    assert not np.array_equal(sim.state[1], before[1])


def test_actions_are_clipped_to_ctrlrange():
    fam = make_family("cheetah-dir")
    task = fam.default_task()
    a, b = BatchSim(fam, [task], seeds=0), BatchSim(fam, [task], seeds=0)
    a.reset(), b.reset()
    ra, rb = a.step(np.full((1, 6), 5.0)), b.step(np.full((1, 6), 1.0))
    np.testing.assert_array_equal(ra.obs, rb.obs)
    assert ra.terms["ctrl"][0] == rb.terms["ctrl"][0] == pytest.approx(-0.05 * 6)


def test_set_state_replays_exactly():
    fam = make_family("cheetah-vel")
    sim = BatchSim(fam, fam.split_tasks("train", n=2), seeds=0)
    sim.reset()
    acts = _actions(fam, 2, 8)
    for a in acts[:4]:
        sim.step(a)
    saved = sim.state.copy()
    later = [sim.step(a).obs for a in acts[4:]]
    sim.set_state(saved)
    again = [sim.step(a).obs for a in acts[4:]]
    np.testing.assert_array_equal(np.array(later), np.array(again))


def test_bad_construction():
    fam = make_family("cheetah-vel")
    with pytest.raises(RobometaError, match="at least one task"):
        BatchSim(fam, [])
    with pytest.raises(RobometaError, match="got 1 seeds for 2 envs"):
        BatchSim(fam, fam.split_tasks("train", n=2), seeds=[1])
    with pytest.raises(RobometaError, match="expects a VelocityTask"):
        BatchSim(fam, [make_family("cheetah-dir").default_task()])
