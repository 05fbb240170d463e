"""Shared fixtures: CPU-only, deterministic, no RNG state leaking between tests."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import robometa  # noqa: F401  (registers the gymnasium ids; picks the offscreen GL backend)


def pytest_collection_modifyitems(config, items):
    """Skip ``gl`` tests where MuJoCo cannot render: no display and no EGL / OSMesa library."""
    if os.environ.get("MUJOCO_GL") or os.environ.get("DISPLAY"):
        return
    skip = pytest.mark.skip(
        reason="needs a display or EGL / OSMesa for offscreen rendering (.ci/run installs them)"
    )
    for item in items:
        if item.get_closest_marker("gl"):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolate_rng():
    """Tests must pass their own seeds; restore global RNG state after each one."""
    np_state = np.random.get_state()
    torch_state = torch.random.get_rng_state()
    threads = torch.get_num_threads()
    yield
    np.random.set_state(np_state)
    torch.random.set_rng_state(torch_state)
    torch.set_num_threads(threads)


def _assert_facade_agrees(family, tasks, seeds, actions, nthread=2, **env_kwargs):
    """Step ``tasks`` together in one BatchSim and each alone in the gymnasium facade
    (same seed, same actions ``(steps, B, nu)``): observations and rewards are identical.
    Returns the BatchSim, for checks of its own."""
    import gymnasium as gym

    from robometa.sim import BatchSim

    sim = BatchSim(family, tasks, seeds=seeds, nthread=nthread)
    obs, rewards = [sim.reset()], []
    for a in actions:
        r = sim.step(a)
        obs.append(r.obs)
        rewards.append(r.reward)
    for i, (task, seed) in enumerate(zip(tasks, seeds)):
        env = gym.make(family.env_id, **env_kwargs).unwrapped
        env.set_task(task)
        o, _ = env.reset(seed=seed)
        np.testing.assert_array_equal(o, obs[0][i])
        for t, a in enumerate(actions):
            o, rew, term, _, _ = env.step(a[i])
            np.testing.assert_array_equal(o, obs[t + 1][i])
            assert rew == rewards[t][i]
            if term:
                break
    return sim


@pytest.fixture
def assert_facade_agrees():
    """The facade-equals-BatchSim check, shared by the generic and the family tests."""
    return _assert_facade_agrees
