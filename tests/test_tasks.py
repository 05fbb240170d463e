"""The task-family core: tasks, splits, standard definitions, bad input."""

from __future__ import annotations

import hashlib
import json
import math

import gymnasium as gym
import numpy as np
import pytest

from robometa.errors import RobometaError
from robometa.sim import BatchSim
from robometa.tasks import family_names, make_family
from robometa.tasks.locomotion.ant import AntDirTask, AntGoalTask
from robometa.tasks.locomotion.cheetah import DirectionTask, VelocityTask
from robometa.tasks.locomotion.params import AntParamsTask, CheetahParamsTask
from robometa.tasks.locomotion.terrain_families import TerrainTask


@pytest.mark.parametrize("name", family_names())
def test_splits_are_deterministic(name):
    fam = make_family(name)
    for split in ("train", "val", "test"):
        a = fam.split_tasks(split, seed=3)
        b = make_family(name).split_tasks(split, seed=3)
        assert a == b
        assert len(a) == fam.split_size(split)
    if fam.n_train > 2:  # cheetah-dir has only its two directions
        assert fam.split_tasks("train", seed=3) != fam.split_tasks("train", seed=4)
        assert fam.split_tasks("val", seed=3) != fam.split_tasks("val", seed=4)


@pytest.mark.parametrize("name", family_names())
def test_splits_lie_in_their_regions(name):
    """Held out means outside the training region: test tasks lie outside it, train and
    val tasks inside it, and val shares no task with test (nor is it the train list)."""
    fam = make_family(name)
    train, val, test = (fam.split_tasks(s, seed=0) for s in ("train", "val", "test"))
    many = {s: fam.split_tasks(s, seed=0, n=300) for s in ("train", "val", "test")}
    for t in train + val + many["train"] + many["val"]:
        assert fam.in_split(t, "train") and fam.in_split(t, "val"), t
    if not fam.has_heldout:  # cheetah-dir: two tasks, every split holds both
        assert {t.to_json() for t in train + val + test} == {t.to_json() for t in fam.split_tasks("train")}
        assert all(fam.in_split(t, "test") for t in test) and fam.heldout.startswith("none")
        return
    for t in test + many["test"]:
        assert not fam.in_split(t, "train") and not fam.in_split(t, "val") and fam.in_split(t, "test"), t
    keys = {s: {t.to_json() for t in many[s] + fam.split_tasks(s, seed=0)} for s in many}
    assert not keys["val"] & keys["test"]
    assert not keys["val"] & keys["train"] and val != train


# (family, tasks the train split could draw, tasks outside the training region):
# the documented held-out regions, edges included, checked against in_split.
REGIONS = [
    (
        "cheetah-vel",
        [VelocityTask(0.0), VelocityTask(0.19), VelocityTask(1.0), VelocityTask(2.0)],
        [VelocityTask(0.2), VelocityTask(0.25), VelocityTask(1.3), VelocityTask(1.75)],
    ),
    (
        "ant-dir",
        [AntDirTask(0.0), AntDirTask(math.radians(35)), AntDirTask(math.radians(180))],
        [AntDirTask(math.radians(45)), AntDirTask(math.radians(37)), AntDirTask(math.radians(320))],
    ),
    (
        "ant-goal",
        [AntGoalTask((1.0, 0.0)), AntGoalTask((0.0, -2.0)), AntGoalTask((0.0, 0.0))],
        [AntGoalTask((1.0, 1.0)), AntGoalTask((-1.0, -1.0)), AntGoalTask((-2.0, 2.0))],
    ),
    (
        "cheetah-params",
        [CheetahParamsTask(), CheetahParamsTask(mass_scale=1.5, crippled=("bshin",))],
        [
            CheetahParamsTask(mass_scale=1.6),
            CheetahParamsTask(gain_scale=0.6),
            CheetahParamsTask(crippled=("fthigh",)),
            CheetahParamsTask(crippled=("bthigh", "bshin")),
        ],
    ),
    (
        "ant-params",
        [AntParamsTask(), AntParamsTask(crippled=("hip_1", "ankle_1"))],
        [
            AntParamsTask(crippled=("hip_4", "ankle_4")),
            AntParamsTask(crippled=("hip_1",)),
            AntParamsTask(damping_scale=2.0),
        ],
    ),
    (
        "cheetah-terrain",
        [TerrainTask("rough", 0.0, 1), TerrainTask("stairs", 0.7, 2, 1.4)],
        [
            TerrainTask("stairs", 0.71, 2),
            TerrainTask("waves", 0.1, 3),
            TerrainTask("gaps", 0.0, 4),
            TerrainTask("rough", 0.3, 5, friction_scale=2.0),
        ],
    ),
]


@pytest.mark.parametrize("name,inside,outside", REGIONS, ids=[r[0] for r in REGIONS])
def test_in_split_is_the_documented_region(name, inside, outside):
    fam = make_family(name)
    for t in inside:
        assert fam.in_split(t, "train") and fam.in_split(t, "val") and not fam.in_split(t, "test"), t
    for t in outside:
        assert not fam.in_split(t, "train") and not fam.in_split(t, "val") and fam.in_split(t, "test"), t
    with pytest.raises(RobometaError, match="unknown split 'dev'"):
        fam.in_split(inside[0], "dev")
    with pytest.raises(RobometaError, match="expects a"):
        fam.in_split(DirectionTask(1), "train")


# sha256 (first 12 hex digits) of the JSON task lists split_tasks(split, seed=0) gave
# before the val split existed: adding a split must not move another split's tasks.
TRAIN_TEST_DIGESTS = {
    "cheetah-vel": ("7d83d9a58986", "b8cd7164e7a5"),
    "cheetah-dir": ("87c9cf98cd2c", "87c9cf98cd2c"),
    "reach": ("656b6618c7f9", "8766ace1aade"),
    "push": ("c8e190a539b6", "01406b30980f"),
    "pick-place": ("90e952270e20", "4a7d91ac7b83"),
    "manip-ml": ("34df444bbaac", "c7ef58ad52d7"),
    "ant-dir": ("c224ac822775", "0a822fd5beec"),
    "ant-goal": ("7428e0ace072", "2485a40da58f"),
    "cheetah-params": ("f1cf6e787105", "c7c281ed54d5"),
    "ant-params": ("78177930a86b", "9d0bca3ea778"),
    "cheetah-terrain": ("93ee40e44744", "4739717f7a47"),
    "ant-terrain": ("93ee40e44744", "4739717f7a47"),
}


@pytest.mark.parametrize("name", family_names())
def test_train_and_test_lists_are_unchanged(name):
    fam = make_family(name)
    digests = tuple(
        hashlib.sha256(json.dumps([t.to_json() for t in fam.split_tasks(s, seed=0)]).encode()).hexdigest()[
            :12
        ]
        for s in ("train", "test")
    )
    assert digests == TRAIN_TEST_DIGESTS[name]


def test_cheetah_vel_test_split_is_a_heldout_region():
    fam = make_family("cheetah-vel")
    train = fam.split_tasks("train", n=2000)
    test = fam.split_tasks("test", n=500)
    bands = fam.test_bands
    assert not any(lo <= t.goal_velocity <= hi for t in train for lo, hi in bands)
    assert all(any(lo <= t.goal_velocity <= hi for lo, hi in bands) for t in test)
    v = [t.goal_velocity for t in train]
    assert min(v) < 0.1 and max(v) > 1.9  # train still spans [0, 2]


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
    with pytest.raises(RobometaError, match="unknown split 'dev'; valid: train, val, test"):
        make_family("cheetah-vel").split_tasks("dev")
    with pytest.raises(RobometaError, match="ctrl_cost_weight"):
        make_family("cheetah-vel", ctrl_cost_weight=-1)
    with pytest.raises(
        RobometaError, match="unknown option 'colour' for family cheetah-vel; valid: ctrl_cost_weight"
    ):
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


@pytest.mark.parametrize("name", family_names())
def test_step_outcome_is_what_the_separate_methods_give(name):
    """The simulator's one call per step (which a family may override to share work)
    returns, bit for bit, the reward terms, termination, success and metrics that the
    family's own methods give for the same step, at every step of episodes that reach
    success (the scripted expert's, where the family has one) or random ones."""
    fam = make_family(name)
    rng = np.random.default_rng(0)
    tasks = fam.split_tasks("test", seed=0)[:6]
    sim = BatchSim(fam, tasks, seeds=0)
    sim.reset()
    seen_success = np.zeros(len(tasks), dtype=bool)
    for _ in range(150 if fam.has_expert else 20):
        prev = sim.state.copy()
        if fam.has_expert:
            action = fam.expert_action(sim.state, sim.params)
        else:
            action = rng.uniform(-1, 1, (len(tasks), sim.layout.nu))
        sim.step(action)
        args = (prev, sim.state, sim.sensordata, sim.clip(action), sim.params)
        terms, terminated, success, metrics = fam.step_outcome(*args)
        want_terms = fam.reward_terms(*args)
        assert list(terms) == list(want_terms) and terms
        for k in terms:
            np.testing.assert_array_equal(terms[k], want_terms[k], err_msg=k)
        np.testing.assert_array_equal(terminated, fam.terminated(sim.state, sim.sensordata, sim.params))
        np.testing.assert_array_equal(success, fam.success(sim.state, sim.sensordata, sim.params))
        want_metrics = fam.metrics(prev, sim.state, sim.params)
        assert list(metrics) == list(want_metrics)
        for k in metrics:
            np.testing.assert_array_equal(metrics[k], want_metrics[k], err_msg=k)
        seen_success |= success
    if fam.has_expert:  # the steps compared include successes
        assert seen_success.any()
