"""Manipulation families: objects, splits, experts, batching, facade, bad input."""

from __future__ import annotations

import dataclasses
import math

import gymnasium as gym
import mujoco
import numpy as np
import pytest

from robometa.envs import MetaEnv
from robometa.errors import RobometaError
from robometa.eval.baselines import run_episodes as episodes
from robometa.sim.batch_sim import BatchSim
from robometa.tasks import make_family
from robometa.tasks.manipulation import robot
from robometa.tasks.manipulation.experts import expert_action
from robometa.tasks.manipulation.families import KINDS, ManipTask
from robometa.tasks.manipulation.objects import (
    SHAPES,
    SIZE_RANGES,
    ObjectSpec,
    add_object,
    sample_object,
)

FAMILIES = ("reach", "push", "pick-place", "manip-ml")


def one_task_per_shape(kind: str = "push", mass: float = 0.2) -> list[ManipTask]:
    """A task for every shape, sizes at the middle of their ranges, yaws that vary."""
    tasks = []
    for i, shape in enumerate(SHAPES):
        size = tuple((lo + hi) / 2 for lo, hi in SIZE_RANGES[shape])
        goal = (0.1, 0.45, 0.0) if kind == "push" else (0.1, 0.45, 0.2)
        tasks.append(
            ManipTask(
                kind, shape, size, mass, 0.6, (0.8, 0.2, 0.2), (-0.1 + 0.05 * i, 0.6), 0.7 * i - 1.4, goal
            )
        )
    return tasks


def run_episodes(family, tasks, seed, policy):
    """Success ``(B,)`` (any step) and final goal distance of one episode per task."""
    rng = np.random.default_rng(seed)

    def act(obs, state, params):
        if policy == "expert":
            return expert_action(family, state, params)
        return rng.uniform(-1.0, 1.0, size=(len(state), 4))

    out = episodes(family, tasks, act, seeds=seed)
    return out["success"], out["metrics"]["goal_distance"]


# ------------------------------------------------------------------ objects


def test_object_generation_is_deterministic_by_seed():
    a = [sample_object(np.random.default_rng(7)) for _ in range(3)]
    b = [sample_object(np.random.default_rng(7)) for _ in range(3)]
    assert a == b
    rng = np.random.default_rng(7)
    draws = [sample_object(rng) for _ in range(40)]
    assert len(set(draws)) == 40
    assert {o.shape for o in draws} == set(SHAPES)
    assert all(0.05 <= o.mass <= 0.5 and 0.4 <= o.friction <= 0.8 for o in draws)


def test_object_specs_build_into_the_model():
    spec = robot.scene_spec()
    obj = ObjectSpec("ellipsoid", (0.03, 0.025, 0.02), 0.3, 0.7, (0.1, 0.2, 0.9))
    add_object(spec, obj)
    model = spec.compile()
    geom = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "object_geom")
    assert model.geom_type[geom] == mujoco.mjtGeom.mjGEOM_ELLIPSOID
    np.testing.assert_allclose(model.geom_size[geom], obj.size)
    assert model.body_mass[model.geom_bodyid[geom]] == pytest.approx(0.3)
    assert model.geom_friction[geom][0] == pytest.approx(0.7)
    np.testing.assert_allclose(model.geom_rgba[geom], [0.1, 0.2, 0.9, 1.0])


def test_scene_matches_the_documented_robot_constants():
    model = robot.scene_spec().compile()
    tcp_acts = [
        mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, n) for n in ("tcp_x", "tcp_y", "tcp_z")
    ]
    np.testing.assert_allclose(model.actuator_actrange[tcp_acts, 0], robot.WORKSPACE_LOW)
    np.testing.assert_allclose(model.actuator_actrange[tcp_acts, 1], robot.WORKSPACE_HIGH)
    grip = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, "grip")
    assert model.actuator_gear[grip, 0] == -robot.GRIP_FORCE
    finger = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, "finger_l")
    assert 2 * model.jnt_range[finger, 1] == pytest.approx(robot.MAX_GAP)
    yaw, shoulder, elbow = robot.arm_ik(robot.HOME)
    data = mujoco.MjData(model)
    for name, value in zip(
        ("arm_yaw", "arm_shoulder", "arm_elbow", "tcp_x", "tcp_y", "tcp_z"),
        (yaw, shoulder, elbow, *robot.HOME),
    ):
        data.joint(name).qpos[0] = value
    mujoco.mj_forward(model, data)
    np.testing.assert_allclose(data.site("forearm_end").xpos, data.site("wrist").xpos, atol=1e-9)


def test_objects_start_without_penetration_and_rest_still():
    family = make_family("push")
    tasks = one_task_per_shape()
    sim = BatchSim(family, tasks, seeds=0)
    sim.reset()
    for i, task in enumerate(tasks):
        model, data = sim.data_for(i)
        obj_geom = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "object_geom")
        table = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "table_top")
        gap = mujoco.mj_geomDistance(model, data, obj_geom, table, 0.1, None)
        assert abs(gap) < 1e-6, f"{task.shape} starts {gap} m from the table"
    start = family.parts(sim.state)["obj"].copy()
    for _ in range(family.horizon):
        sim.step(np.zeros((sim.B, 4)))
    parts = family.parts(sim.state)
    moved = np.linalg.norm(parts["obj"] - start, axis=1)
    assert np.all(moved < 2e-3), dict(zip(SHAPES, moved))
    assert np.all(np.linalg.norm(parts["obj_vel"], axis=1) < 1e-3)


def test_all_shapes_share_one_rollout_group_and_match_single_env_runs():
    family = make_family("pick-place")
    tasks = one_task_per_shape("pick-place")
    seeds = [11, 12, 13, 14, 15]
    batch = BatchSim(family, tasks, seeds=seeds)
    assert len(batch._groups) == 1  # every shape has the same size signature
    envs = [MetaEnv(family, task=t) for t in tasks]
    obs = batch.reset()
    for env, seed, o in zip(envs, seeds, obs):
        np.testing.assert_array_equal(env.reset(seed=seed)[0], o)
    for _ in range(60):
        action = expert_action(family, batch.state, batch.params)
        r = batch.step(action)
        for i, env in enumerate(envs):
            o, reward, _, _, info = env.step(action[i])
            np.testing.assert_allclose(o, r.obs[i], rtol=0, atol=1e-9)
            assert reward == pytest.approx(r.reward[i], abs=1e-9)
            assert info["success"] == r.success[i]
    assert np.all(np.isfinite(batch.state))


# ------------------------------------------------------------------ splits


@pytest.mark.parametrize("name", FAMILIES)
def test_splits_are_deterministic_and_disjoint(name):
    family = make_family(name)
    train, test = family.split_tasks("train", seed=3), family.split_tasks("test", seed=3)
    assert train == family.split_tasks("train", seed=3)
    assert test == family.split_tasks("test", seed=3)
    assert train != family.split_tasks("train", seed=4)
    assert not set(train) & set(test)
    assert len(train) == family.n_train and len(test) == family.n_test


@pytest.mark.parametrize("name", ["reach", "push", "pick-place"])
def test_ml1_splits_hold_out_shapes_masses_and_goals(name):
    family = make_family(name)
    train, test = family.split_tasks("train"), family.split_tasks("test")
    assert {t.kind for t in train + test} == {name}
    assert {t.shape for t in train} == {"box", "cylinder", "sphere"}
    assert {t.shape for t in test} == {"capsule", "ellipsoid"}
    assert max(t.mass for t in train) <= 0.3 <= min(t.mass for t in test)
    assert all(family.in_split(t, "train") for t in train)
    assert not any(family.in_split(t, "train") for t in test)
    # Each held-out property alone takes a training task out of the training region:
    # a goal x in a band |x| in [0.075, 0.125] m (edges included), a heavier object.
    task = next(t for t in train if abs(t.goal[0]) < 0.05)
    for x in (0.075, 0.1, 0.125, -0.075, -0.125):
        assert not family.in_split(dataclasses.replace(task, goal=(x, *task.goal[1:])), "train"), x
    for x in (0.07, 0.13, -0.2):
        assert family.in_split(dataclasses.replace(task, goal=(x, *task.goal[1:])), "train"), x
    assert not family.in_split(dataclasses.replace(task, mass=0.4), "train")
    if name == "reach":  # goals keep clear of the object
        assert all(math.dist(t.goal[:2], t.object_xy) >= 0.1 for t in train + test)


def test_manip_ml_holds_out_the_pick_place_kind():
    family = make_family("manip-ml")
    train, test = family.split_tasks("train"), family.split_tasks("test")
    assert {t.kind for t in train} == {"reach", "push"}
    assert {t.kind for t in test} == {"pick-place"}
    assert {t.shape for t in train} == set(SHAPES)
    assert family.term_names == ("reach", "success", "place", "lift")
    assert all(family.in_split(t, "train") for t in train)
    assert all(family.in_split(t, "test") and not family.in_split(t, "val") for t in test)


@pytest.mark.parametrize(
    "name,env_id",
    [
        ("reach", "robometa/Reach-v0"),
        ("push", "robometa/Push-v0"),
        ("pick-place", "robometa/PickPlace-v0"),
        ("manip-ml", "robometa/ManipML-v0"),
    ],
)
def test_gymnasium_ids_make_their_family(name, env_id):
    env = gym.make(env_id)
    assert env.spec.max_episode_steps == 200
    meta = env.unwrapped
    assert meta.family.name == name and make_family(env_id).name == name
    kinds = {t.kind for t in meta.sample_tasks(8, "test")}
    assert kinds == ({"pick-place"} if name == "manip-ml" else {name})
    env.close()


# ------------------------------------------------------------------ experts


@pytest.mark.parametrize("name", FAMILIES)
def test_expert_solves_train_and_test_tasks_and_random_does_not(name):
    family = make_family(name)
    for split in ("train", "test"):
        tasks = family.split_tasks(split, seed=0, n=12)
        success, distance = run_episodes(family, tasks, 5, "expert")
        assert success.mean() >= 0.9, (split, distance)
    success, _ = run_episodes(family, family.split_tasks("train", seed=0, n=12), 5, "random")
    assert success.mean() <= 0.2


def test_arm_follows_the_gripper():
    family = make_family("pick-place")
    task = family.split_tasks("train", n=1)[0]
    sim = BatchSim(family, [task], seeds=0)
    sim.reset()
    for _ in range(80):
        sim.step(expert_action(family, sim.state, sim.params))
    model, data = sim.data_for(0)
    gap = data.site("forearm_end").xpos - data.site("wrist").xpos
    assert np.linalg.norm(gap) < 5e-3
    tcp = family.parts(sim.state)["tcp"][0]
    np.testing.assert_allclose(data.site("tcp").xpos, tcp, atol=1e-12)


# ------------------------------------------------------------------ pure functions


def test_success_and_reward_terms_follow_the_documented_thresholds():
    family = make_family("pick-place")
    task = one_task_per_shape("pick-place")[0]
    model = family.model(task)
    state = family.initial_state(model, task, np.random.default_rng(0))[None]
    params = family.task_params([task])
    obj = family.addr.obj_qpos
    lay = family.layout
    terms = family.reward_terms(state, state, np.zeros((1, 0)), np.zeros((1, 4)), params)
    assert set(terms) == {"reach", "lift", "place", "success"}
    assert terms["success"][0] == 0.0 and terms["lift"][0] == pytest.approx(0.0)
    goal = np.array(task.goal)
    for offset, expected in ((0.069, True), (0.071, False)):
        moved = state.copy()
        moved[0, lay.qpos.start + obj : lay.qpos.start + obj + 3] = goal + (offset, 0.0, 0.0)
        assert bool(family.success(moved, np.zeros((1, 0)), params)[0]) is expected
    assert set(make_family("reach").term_names) == {"reach", "success"}
    assert set(make_family("push").term_names) == {"reach", "place", "success"}


@pytest.mark.parametrize("kind,threshold", [("reach", 0.05), ("push", 0.05)])
def test_reach_and_push_succeed_within_their_documented_distance(kind, threshold):
    """reach: the TCP within 0.05 m of the goal; push: the object's xy within 0.05 m (any height)."""
    family = make_family(kind)
    task = family.split_tasks("train", n=1)[0]
    state = family.initial_state(family.model(task), task, np.random.default_rng(0))[None]
    params = family.task_params([task])
    q = family.layout.qpos.start
    moved_part = family.addr.tcp_qpos if kind == "reach" else np.arange(3) + family.addr.obj_qpos
    goal = np.array(task.goal)
    for offset, expected in ((threshold - 0.001, True), (threshold + 0.001, False)):
        moved = state.copy()
        moved[0, q + moved_part] = goal + (0.0, offset, 0.05 if kind == "push" else 0.0)
        assert bool(family.success(moved, np.zeros((1, 0)), params)[0]) is expected, offset


def test_goal_is_hidden_unless_asked_for():
    hidden, shown = make_family("push"), make_family("push", observe_goal=True)
    assert hidden.obs_dim == 20 and shown.obs_dim == 23
    task = hidden.split_tasks("train", n=1)[0]
    sim = BatchSim(shown, [task], seeds=0)
    np.testing.assert_allclose(sim.reset()[0, -3:], task.goal)


def test_task_json_round_trip():
    family = make_family("manip-ml")
    for task in family.split_tasks("train", n=5):
        again = family.task_from_dict(__import__("json").loads(task.to_json()))
        assert again == task and hash(again) == hash(task)


# ------------------------------------------------------------------ bad input


def test_bad_objects_name_the_valid_choices_and_ranges():
    with pytest.raises(RobometaError, match="valid: box, cylinder, sphere, capsule, ellipsoid"):
        ObjectSpec("torus", (0.02,), 0.1, 0.5)
    with pytest.raises(RobometaError, match=r"box size\[0\] must be in \[0.018, 0.028\]"):
        ObjectSpec("box", (0.2, 0.02, 0.02), 0.1, 0.5)
    with pytest.raises(RobometaError, match="a sphere has 1 size value"):
        ObjectSpec("sphere", (0.02, 0.02), 0.1, 0.5)
    with pytest.raises(RobometaError, match=r"mass \(kg\) must be in \[0.02, 1.0\]"):
        ObjectSpec("sphere", (0.02,), 5.0, 0.5)
    with pytest.raises(RobometaError, match=r"friction must be in \[0.3, 1.5\]"):
        ObjectSpec("sphere", (0.02,), 0.1, 9.0)


def test_bad_tasks_name_the_valid_ranges():
    good = one_task_per_shape("pick-place")[0].to_dict()
    with pytest.raises(RobometaError, match=r"pick-place goal z \(m\) must be in \[0.12, 0.28\]"):
        ManipTask.from_dict({**good, "goal": [0.0, 0.5, 0.5]})
    with pytest.raises(RobometaError, match=r"goal x \(m\) must be in \[-0.25, 0.25\]"):
        ManipTask.from_dict({**good, "goal": [2.0, 0.5, 0.2]})
    with pytest.raises(RobometaError, match=r"push goal z \(m\) must be in \[0.0, 0.0\]"):
        ManipTask.from_dict({**good, "kind": "push"})
    with pytest.raises(RobometaError, match=r"object y \(m\) must be in \[0.35, 0.75\]"):
        ManipTask.from_dict({**good, "object_xy": [0.0, 0.1]})
    with pytest.raises(RobometaError, match="valid: " + ", ".join(KINDS)):
        ManipTask.from_dict({**good, "kind": "stack"})
    with pytest.raises(RobometaError, match=r"object_yaw \(rad\) must be in"):
        ManipTask.from_dict({**good, "object_yaw": 2 * math.pi})
    with pytest.raises(RobometaError, match="valid: reach"):
        make_family("reach").model(ManipTask.from_dict(good))
    with pytest.raises(RobometaError, match=r"reset_noise_scale must be in \[0.0, 0.05\]"):
        make_family("reach", reset_noise_scale=1.0)


def test_squared_reach_reward_is_minus_the_squared_distance_over_its_reference():
    """reach_reward='squared': the reach term is -d**2 / 0.1 (m) where 'distance' gives
    -d, at the same states; the other terms do not change; a bad value is an error."""
    from robometa.errors import RobometaError

    for kind in ("reach", "push"):
        lin, sq = make_family(kind), make_family(kind, reach_reward="squared")
        task = lin.split_tasks("train", n=1)[0]
        state = lin.initial_state(lin.model(task), task, np.random.default_rng(0))[None]
        params = lin.task_params([task])
        a = lin.reward_terms(state, state, np.zeros((1, 0)), np.zeros((1, 4)), params)
        b = sq.reward_terms(state, state, np.zeros((1, 0)), np.zeros((1, 4)), params)
        d = -a["reach"][0]
        assert d > 0.05
        assert b["reach"][0] == pytest.approx(-(d**2) / 0.1)
        assert {k: v for k, v in a.items() if k != "reach"} == {k: v for k, v in b.items() if k != "reach"}
    with pytest.raises(RobometaError, match="reach_reward.*distance, squared"):
        make_family("reach", reach_reward="quadratic")
