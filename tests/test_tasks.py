"""The task-family core: tasks, splits, standard definitions, bad input."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from robometa.errors import RobometaError
from robometa.sim import BatchSim
from robometa.tasks import family_names, make_family
from robometa.tasks.locomotion.cheetah import DirectionTask, VelocityTask


@pytest.mark.parametrize("name", family_names())
def test_splits_are_deterministic(name):
    fam = make_family(name)
    for split in ("train", "test"):
        a = fam.split_tasks(split, seed=3)
        b = make_family(name).split_tasks(split, seed=3)
        assert a == b
        assert len(a) == (fam.n_train if split == "train" else fam.n_test)
    if fam.n_train > 2:  # cheetah-dir has only its two directions
        assert fam.split_tasks("train", seed=3) != fam.split_tasks("train", seed=4)


@pytest.mark.parametrize("name", [n for n in family_names() if n != "cheetah-dir"])
def test_splits_are_disjoint(name):
    fam = make_family(name)
    train = {t.to_json() for t in fam.split_tasks("train", seed=0, n=500)}
    test = {t.to_json() for t in fam.split_tasks("test", seed=0, n=200)}
    assert not train & test


def test_cheetah_vel_test_split_is_a_heldout_region():
    fam = make_family("cheetah-vel")
    train = np.array([t.goal_velocity for t in fam.split_tasks("train", n=2000)])
    test = np.array([t.goal_velocity for t in fam.split_tasks("test", n=500)])
    assert not fam._in_test(train).any()
    assert fam._in_test(test).all()
    assert train.min() < 0.1 and train.max() > 1.9  # train still spans [0, 2]


@pytest.mark.parametrize("name", family_names())
def test_task_json_roundtrip(name):
    fam = make_family(name)
    for task in fam.split_tasks("test", seed=1)[:5]:
        again = fam.task_from_dict(json.loads(task.to_json()))
        assert again == task


def test_malformed_task_parameters():
    with pytest.raises(RobometaError, match=r"goal_velocity must be in \[0.0, 2.0\]"):
        VelocityTask(3.5)
    with pytest.raises(RobometaError, match="goal_velocity must be a number"):
        VelocityTask("fast")
    with pytest.raises(RobometaError, match="direction must be 1 or -1"):
        DirectionTask(0)
    with pytest.raises(RobometaError, match="unknown VelocityTask field 'speed'; valid: goal_velocity"):
        make_family("cheetah-vel").task_from_dict({"speed": 1.0})
    with pytest.raises(RobometaError, match="malformed DirectionTask"):
        make_family("cheetah-dir").task_from_dict({})
    with pytest.raises(RobometaError, match="unknown split 'val'; valid: train, test"):
        make_family("cheetah-vel").split_tasks("val")
    with pytest.raises(RobometaError, match="ctrl_cost_weight"):
        make_family("cheetah-vel", ctrl_cost_weight=-1)
    with pytest.raises(RobometaError, match="bad option"):
        make_family("cheetah-vel", colour="red")


def _rollout(name, task, actions, seed=0):
    env = gym.make(make_family(name).env_id).unwrapped
    env.set_task(task)
    env.reset(seed=seed)
    out = [env.step(a)[1:] for a in actions]
    rewards = np.array([r for r, *_ in out])
    infos = [info for *_, info in out]
    return rewards, infos


@pytest.mark.parametrize(
    "name,tasks",
    [
        ("cheetah-vel", [VelocityTask(0.3), VelocityTask(1.7)]),
        ("cheetah-dir", [DirectionTask(1), DirectionTask(-1)]),
    ],
)
def test_set_task_changes_reward_of_same_trajectory(name, tasks):
    actions = np.random.default_rng(0).uniform(-1, 1, (30, 6))
    r0, i0 = _rollout(name, tasks[0], actions)
    r1, i1 = _rollout(name, tasks[1], actions)
    # same physics (the task only changes the reward) ...
    assert [i["x_position"] for i in i0] == [i["x_position"] for i in i1]
    # ... different reward
    assert np.abs(r0 - r1).max() > 1e-3
    for rewards, infos in ((r0, i0), (r1, i1)):
        for r, info in zip(rewards, infos):
            assert r == pytest.approx(info["reward_forward"] + info["reward_ctrl"], abs=1e-12)


def test_cheetah_matches_gymnasium_halfcheetah_v5():
    """Same initial state, observations and forward velocity as gymnasium's HalfCheetah-v5."""
    ref = gym.make("HalfCheetah-v5")
    ref_obs, _ = ref.reset(seed=11)
    env = gym.make("robometa/CheetahDir-v0").unwrapped
    env.set_task(DirectionTask(1))
    obs, _ = env.reset(seed=11)
    np.testing.assert_array_equal(obs, ref_obs)
    rng = np.random.default_rng(1)
    for _ in range(40):
        a = rng.uniform(-1, 1, 6)
        ref_obs, _, _, _, ref_info = ref.step(a)
        obs, reward, _, _, info = env.step(a)
        # rollout starts each control step from a zero warm start, gymnasium from the
        # previous one: identical up to solver tolerance.
        np.testing.assert_allclose(obs, ref_obs, atol=1e-6)
        assert info["x_velocity"] == pytest.approx(ref_info["x_velocity"], abs=1e-6)
        # MAML's cheetah-dir reward: v_x - 0.05 |a|^2
        assert reward == pytest.approx(ref_info["x_velocity"] - 0.05 * np.sum(a**2), abs=1e-6)


def test_cheetah_vel_reward_definition():
    fam = make_family("cheetah-vel")
    sim = BatchSim(fam, [VelocityTask(0.5), VelocityTask(1.5)], seeds=0)
    sim.reset()
    a = np.full((2, 6), 0.5)
    r = sim.step(a)
    v = r.metrics["x_velocity"]
    np.testing.assert_allclose(r.terms["forward"], -np.abs(v - np.array([0.5, 1.5])))
    np.testing.assert_allclose(r.terms["ctrl"], -0.05 * 6 * 0.25)
