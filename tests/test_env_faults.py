"""Faults users found in the gymnasium facade, each pinned on every registered id.

- a seeded reset must not depend on how the task was set;
- observations (and whatever reads sensors) describe the state they come with;
- envs, families and tasks deep-copy and pickle, and copies run on independently;
- a simulation blow-up ends the episode with reward 0 and says so.
"""

from __future__ import annotations

import copy
import pickle

import gymnasium as gym
import numpy as np
import pytest

from robometa.tasks import env_ids, family_names, make_family
from robometa.tasks.locomotion.terrain_families import TerrainTask

IDS = env_ids()
# Family options that add sensors; the sensor test runs every family with these.
SENSOR_OPTIONS = {"cheetah-terrain": {"height_scan": True}, "ant-terrain": {"height_scan": True}}


def _actions(env, n, seed):
    low, high = env.action_space.low, env.action_space.high
    return np.random.default_rng(seed).uniform(low, high, (n, *env.action_space.shape))


# --------------------------------------------------------------- a. seeded resets


@pytest.mark.parametrize("env_id", IDS)
def test_seeded_reset_does_not_depend_on_how_the_task_was_set(env_id):
    task = make_family(env_id).split_tasks("test", seed=0, n=1)[0]  # not the default task
    via_options, _ = gym.make(env_id).reset(seed=0, options={"task": task.to_dict()})
    env = gym.make(env_id)
    before = copy.deepcopy(env.unwrapped.np_random.bit_generator.state)
    env.unwrapped.set_task(task)
    assert env.unwrapped.np_random.bit_generator.state == before  # set_task draws nothing
    via_set_task, _ = env.reset(seed=0)
    via_constructor, _ = gym.make(env_id, task=task).reset(seed=0)
    np.testing.assert_array_equal(via_options, via_set_task)
    np.testing.assert_array_equal(via_options, via_constructor)


def test_cheetah_vel_seeded_reset_is_halfcheetah_v5s():
    ours, _ = gym.make("robometa/CheetahVel-v0").reset(seed=0, options={"task": {"goal_velocity": 1.0}})
    theirs, _ = gym.make("HalfCheetah-v5").reset(seed=0)
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_allclose(ours[:3], [-0.0460, -0.0918, -0.0967], atol=5e-5)


# --------------------------------------------------------------- b. sensor timing


def test_height_scan_describes_the_returned_state():
    """The user's case: stairs, 100 random steps; the scan was one physics step late."""
    env = gym.make("robometa/CheetahTerrain-v0", height_scan=True).unwrapped
    env.set_task(TerrainTask("stairs", difficulty=0.7, seed=5))
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(100):
        obs, *_ = env.step(rng.uniform(-1, 1, 6))
        np.testing.assert_array_equal(obs[17:], env.set_state(env.state)[17:])


@pytest.mark.parametrize("name", family_names())
def test_step_results_describe_the_state_they_come_with(name):
    """After every step, what step() returned equals what set_state() of its state gives."""
    options = SENSOR_OPTIONS.get(name, {})
    env = gym.make(make_family(name).env_id, **options).unwrapped
    fam = env.family
    env.set_task(fam.split_tasks("train", seed=1, n=1)[0])
    env.reset(seed=3)
    for a in _actions(env, 15, seed=4):
        obs, _, terminated, _, info = env.step(a)
        sim = env._sim
        np.testing.assert_array_equal(obs, env.set_state(env.state))
        assert terminated == fam.terminated(sim.state, sim.sensordata, sim.params)[0]
        assert info.get("success", False) == (
            fam.has_success and fam.success(sim.state, sim.sensordata, sim.params)[0]
        )
        if terminated:
            break
    assert fam.layout.nsensordata > 0 or name not in SENSOR_OPTIONS


# --------------------------------------------------------------- c. copies


@pytest.mark.parametrize("env_id", IDS)
def test_env_copies_run_on_bit_identically_and_independently(env_id):
    env = gym.make(env_id)
    env.reset(seed=1)
    for a in _actions(env, 5, seed=2):
        env.step(a)
    state = env.unwrapped.state
    copies = [copy.deepcopy(env), pickle.loads(pickle.dumps(env))]
    actions = _actions(env, 50, seed=3)
    runs = []
    for c in copies:  # the copies first: they must not move the original
        runs.append([c.step(a)[:2] for a in actions])
        np.testing.assert_array_equal(env.unwrapped.state, state)
    runs.append([env.step(a)[:2] for a in actions])
    for run in runs[:2]:
        for (obs, reward), (obs_ref, reward_ref) in zip(run, runs[2]):
            np.testing.assert_array_equal(obs, obs_ref)
            assert reward == reward_ref
    # Each copy has its own random stream, in the state the original's was in.
    first = [c.reset()[0] for c in copies]
    ref, _ = env.reset()
    for obs in first:
        np.testing.assert_array_equal(obs, ref)


@pytest.mark.gl
def test_a_copy_renders_with_its_own_renderer():
    env = gym.make("robometa/CheetahDir-v0", render_mode="rgb_array", width=32, height=24)
    env.reset(seed=0)
    frame = env.render()
    twin = copy.deepcopy(env)
    assert twin.unwrapped._renderer is None and env.unwrapped._renderer is not None
    np.testing.assert_array_equal(twin.render(), frame)
    np.testing.assert_array_equal(env.render(), frame)
    twin.close()
    env.close()


@pytest.mark.parametrize("name", family_names())
def test_families_and_tasks_pickle(name):
    fam = make_family(name, **SENSOR_OPTIONS.get(name, {}))
    tasks = fam.split_tasks("train", seed=0, n=2)
    fam.model(tasks[0])  # with a model in its cache
    again = pickle.loads(pickle.dumps(fam))
    assert pickle.loads(pickle.dumps(tasks)) == tasks
    assert again.obs_dim == fam.obs_dim and again.layout == fam.layout
    assert again.model(tasks[1]).nq == fam.model(tasks[1]).nq


# --------------------------------------------------------------- d. blow-ups

# Inside the documented ranges (every scale in [1/2.5, 2.5]); under bang-bang actions
# MuJoCo resets this cheetah mid-step at step 159 (time 7.95 s -> 0.01 s).
UNSTABLE_TASK = {"mass_scale": 0.4, "damping_scale": 0.4, "friction_scale": 0.4, "gain_scale": 2.5}


@pytest.mark.parametrize("how", ["options", "set_task"])
def test_a_blow_up_ends_the_episode_with_zero_reward(how):
    env = gym.make("robometa/CheetahParams-v0")
    if how == "options":
        env.reset(seed=2, options={"task": UNSTABLE_TASK})
    else:
        env.unwrapped.set_task(UNSTABLE_TASK)
        env.reset(seed=2)
    rng = np.random.default_rng(2)
    for t in range(160):
        obs, reward, terminated, truncated, info = env.step(rng.choice([-1, 1], 6))
        assert info["instability"] == terminated == (t == 159), t
    assert reward == 0.0
    assert all(v == 0.0 for k, v in info.items() if k.startswith("reward_"))
    assert info["x_velocity"] == 0.0  # no diagnostics from the jump either
    assert np.all(np.isfinite(obs)) and not truncated
    # The episode can start over.
    obs, _ = env.reset(seed=2)
    _, _, terminated, _, info = env.step(np.zeros(6))
    assert not terminated and not info["instability"]


def test_a_pickled_family_ships_its_options_not_its_compiled_models():
    """Ray workers receive families; the model caches are rebuilt there from the tasks."""
    import pickle

    from robometa.tasks import family_names, make_family

    for name in family_names():
        fam = make_family(name)
        tasks = fam.split_tasks("train", n=3)
        models = [fam.model(t) for t in tasks]
        blob = pickle.dumps(fam)
        assert len(blob) < 20_000, (name, len(blob))
        copy = pickle.loads(blob)
        for t, m in zip(tasks, models):
            c = copy.model(t)
            for field in ("body_mass", "dof_damping", "geom_friction", "actuator_gear", "hfield_data"):
                assert np.array_equal(getattr(c, field), getattr(m, field)), (name, field)
