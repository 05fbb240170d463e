"""BatchSim: agreement with the facade, independence from batch composition."""

from __future__ import annotations

import copy
import os
import pickle

import numpy as np
import pytest

from robometa.errors import RobometaError
from robometa.sim import BatchSim, Simulator, action_size, make_simulator
from robometa.sim.batch_sim import rollout_pool
from robometa.tasks import family_names, make_family
from robometa.tasks.locomotion.cheetah import CheetahVel, cheetah_spec, compile_cheetah


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


class _TwoSignatures(CheetahVel):
    """cheetah-vel whose fast tasks carry an extra site: two size signatures, two groups."""

    def model_key(self, task):
        return task.goal_velocity > 1.0

    def build_model(self, task):
        spec = cheetah_spec()
        if task.goal_velocity > 1.0:
            spec.worldbody.add_site(name="marker", pos=[0.0, 0.0, 2.0])
        return compile_cheetah(spec)


def _two_group_tasks(fam):
    tasks = [fam.task_cls(v) for v in (0.5, 1.5, 0.6, 1.6, 0.7)]
    return tasks


@pytest.mark.parametrize(
    "family", [make_family("cheetah-vel"), _TwoSignatures()], ids=["one_group", "two_groups"]
)
def test_inactive_envs_stay_put_and_active_ones_step_as_alone(family):
    tasks = _two_group_tasks(family)
    seeds = [5, 6, 7, 8, 9]
    sim = BatchSim(family, tasks, seeds=seeds, nthread=2)
    assert len(sim._groups) == (2 if isinstance(family, _TwoSignatures) else 1)
    alone = [BatchSim(family, [t], seeds=[s], nthread=0) for t, s in zip(tasks, seeds)]
    obs = sim.reset()
    for a in alone:
        a.reset()
    rng = np.random.default_rng(0)
    acts = _actions(family, 5, 12)
    for t, action in enumerate(acts):
        active = rng.uniform(size=5) < 0.5
        active[t % 5] = True  # never an empty step
        active[(t + 2) % 5] = False  # never a full one
        before = sim.state.copy()
        r = sim.step(action, active=active)
        for i in range(5):
            if active[i]:
                ri = alone[i].step(action[i : i + 1])
                np.testing.assert_array_equal(r.obs[i], ri.obs[0])
                np.testing.assert_array_equal(sim.state[i], alone[i].state[0])
                assert r.reward[i] == ri.reward[0]
            else:
                np.testing.assert_array_equal(sim.state[i], before[i])
                np.testing.assert_array_equal(r.obs[i], obs[i])
                assert r.reward[i] == 0.0 and all(v[i] == 0.0 for v in r.terms.values())
                assert r.metrics["x_velocity"][i] == 0.0
                assert not (r.terminated[i] or r.success[i] or r.unstable[i])
        obs = r.obs
    with pytest.raises(RobometaError, match=r"active must be a boolean array of shape \(5,\)"):
        sim.step(acts[0], active=np.ones(4, dtype=bool))


# Inside the documented ranges; under these bang-bang actions MuJoCo resets the
# simulation mid-step at step 159 (time 7.95 s -> 0.01 s, x 265.7 m -> 0).
UNSTABLE_TASK = {"mass_scale": 0.4, "damping_scale": 0.4, "friction_scale": 0.4, "gain_scale": 2.5}


def test_a_blow_up_is_flagged_terminated_and_worth_nothing():
    fam = make_family("cheetah-params")
    tasks = [fam.task_from_dict(UNSTABLE_TASK), fam.default_task()]
    sim = BatchSim(fam, tasks, seeds=[2, 3], nthread=0)
    sim.reset()
    rng = np.random.default_rng(2)
    for t in range(160):
        r = sim.step(np.stack([rng.choice([-1, 1], 6), np.zeros(6)]))
        assert list(r.unstable) == [t == 159, False], t
    assert sim.instabilities == 1
    assert list(r.terminated) == [True, False]
    assert r.reward[0] == 0.0 and r.reward[1] != 0.0
    assert all(v[0] == 0.0 for v in r.terms.values())
    assert all(v[0] == 0.0 for v in r.metrics.values())
    assert sim.state[0, sim.layout.time] == pytest.approx(0.01)  # MuJoCo's reset, mid-step


def test_batch_sim_pickles_and_copies():
    fam = _TwoSignatures()
    sim = BatchSim(fam, _two_group_tasks(fam), seeds=3, nthread=2)
    sim.reset()
    acts = _actions(fam, 5, 13)
    for a in acts[:3]:
        sim.step(a)
    state = sim.state.copy()
    copies = [copy.deepcopy(sim), pickle.loads(pickle.dumps(sim))]
    for c in copies:
        assert c._pool is rollout_pool(2)  # the process's own pool, not a shipped one
        assert all("datas" not in g.__getstate__() for g in c._groups)  # scratch is rebuilt
        c.step(acts[3])  # copies step without moving the original
        np.testing.assert_array_equal(sim.state, state)
        c.set_state(state)
    later = [sim.step(a) for a in acts[3:]]
    for c in copies:
        for a, ref in zip(acts[3:], later):
            np.testing.assert_array_equal(c.step(a).obs, ref.obs)
        c.reset()  # each copy has its own streams, where the original's were
    np.testing.assert_array_equal(copies[0].state, copies[1].state)
    np.testing.assert_array_equal(sim.reset(), copies[0].observe())


def test_only_families_with_sensors_pay_for_the_sensor_step():
    """Sensors need one more physics step per control step; other families keep ``frame_skip``."""
    plain, scan = make_family("cheetah-terrain"), make_family("cheetah-terrain", height_scan=True)
    for fam, extra in ((plain, 0), (scan, 1)):
        sim = BatchSim(fam, fam.split_tasks("train", n=2), seeds=0)
        assert [g.nstep for g in sim._groups] == [fam.frame_skip + extra]


def test_reset_to_reference_draws_nothing():
    fam = make_family("ant-dir")
    sim = BatchSim(fam, fam.split_tasks("train", n=2), seeds=4)
    streams = [r.bit_generator.state for r in sim.rngs]
    sim.reset_to_reference()
    assert [r.bit_generator.state for r in sim.rngs] == streams
    model = sim.models[0]
    np.testing.assert_array_equal(sim.state[:, sim.layout.qpos], np.stack([model.qpos0] * 2))
    assert not sim.state[:, sim.layout.qvel].any()


def test_batch_sim_is_the_batch_backend_of_the_simulator_seam():
    fam = make_family("cheetah-terrain", height_scan=True)
    sim = make_simulator(fam, fam.split_tasks("train", n=3), seeds=0)
    assert isinstance(sim, BatchSim) and isinstance(sim, Simulator)
    spec = sim.spec
    assert (spec.num_envs, spec.obs_dim, spec.act_dim, spec.state_dim) == (
        3,
        fam.obs_dim,
        6,
        fam.layout.nstate,
    )
    assert action_size(fam) == 6 and not spec.has_success
    np.testing.assert_array_equal(spec.action_low, np.full((3, 6), -1.0))
    np.testing.assert_array_equal(spec.action_high, np.full((3, 6), 1.0))


def _steps_in_child(fam, tasks, acts, out):
    sim = BatchSim(fam, tasks, seeds=[1, 2, 3, 4], nthread=2)
    sim.reset()
    out.put([sim.step(a).obs for a in acts])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_steps_with_its_own_rollout_threads():
    """The parent's multi-threaded rollout pool does not survive a fork (its threads stay
    behind): a child that used the parent's copy would wait for them forever; it builds its own."""
    import multiprocessing

    fam = make_family("cheetah-vel")
    tasks = fam.split_tasks("train", seed=0, n=4)
    acts = _actions(fam, 4, 5)
    parent = BatchSim(fam, tasks, seeds=[1, 2, 3, 4], nthread=2)  # the pool exists and has run
    parent.reset()
    want = [parent.step(a).obs for a in acts]
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_steps_in_child, args=(fam, tasks, acts, out))
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
        child.join()
    assert child.exitcode == 0, "the forked child hung or failed"
    for w, g in zip(want, out.get(timeout=5), strict=True):
        np.testing.assert_array_equal(g, w)
