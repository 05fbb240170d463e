"""Every registered gymnasium id: make, reset, step, checkers, rendering."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from robometa.envs import MetaEnv
from robometa.errors import RobometaError
from robometa.tasks import env_ids, family_names, make_family

IDS = env_ids()


@pytest.mark.parametrize("env_id", IDS)
def test_make_reset_step(env_id):
    env = gym.make(env_id)
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    assert "task" in info
    for _ in range(10):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert np.all(np.isfinite(obs)) and env.observation_space.contains(obs)
        assert np.isfinite(reward)
        terms = [v for k, v in info.items() if k.startswith("reward_")]
        assert terms and reward == pytest.approx(sum(terms), abs=1e-9)
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()


@pytest.mark.parametrize("env_id", IDS)
def test_checkers(env_id):
    env = gym.make(env_id).unwrapped
    with warnings.catch_warnings():
        # Unbounded Box observations are the MuJoCo convention; the checkers warn.
        warnings.simplefilter("ignore", UserWarning)
        gym_check_env(env, skip_render_check=True)
        sb3_check_env(env, warn=False)


@pytest.mark.parametrize("env_id", IDS)
def test_time_limit_is_the_family_horizon(env_id):
    env = gym.make(env_id)
    assert env.spec.max_episode_steps == make_family(env_id).horizon


@pytest.mark.parametrize("env_id", IDS)
def test_task_api(env_id):
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    tasks = env.sample_tasks(3)
    assert len(tasks) == 3
    env.set_task(tasks[1])
    assert env.get_task() == tasks[1]
    env.set_task(tasks[2].to_dict())  # dicts (from JSON) are accepted too
    assert env.get_task() == tasks[2]


def test_reset_seed_is_deterministic():
    env = gym.make("robometa/CheetahVel-v0")
    a, _ = env.reset(seed=7)
    b, _ = env.reset(seed=7)
    c, _ = env.reset(seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.gl
def test_rgb_array_frames_change():
    env = gym.make("robometa/CheetahDir-v0", render_mode="rgb_array", width=64, height=48)
    env.reset(seed=0)
    first = env.render()
    assert first.shape == (48, 64, 3) and first.dtype == np.uint8 and first.std() > 0
    for _ in range(20):
        env.step(np.ones(6, dtype=np.float32))
    assert np.abs(env.render().astype(int) - first.astype(int)).mean() > 0
    env.close()


def test_bad_names_name_the_valid_choices():
    with pytest.raises(RobometaError, match="valid: .*cheetah-vel"):
        make_family("cheetah-fly")
    with pytest.raises(RobometaError, match="render_mode"):
        MetaEnv("cheetah-vel", render_mode="pixels")
    with pytest.raises(RobometaError, match="expects a VelocityTask"):
        MetaEnv("cheetah-vel").set_task(make_family("cheetah-dir").default_task())


def test_every_registered_family_is_its_own_gymnasium_id():
    import gymnasium

    from robometa.tasks import family_class

    for name in family_names():
        cls = family_class(name)
        assert cls.name == name
        assert gymnasium.spec(cls.env_id).kwargs["family"] == name
