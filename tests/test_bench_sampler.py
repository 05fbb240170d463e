"""scripts/bench_sampler.py's ceiling simulates the sampler's own work, open loop."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
import torch
from toy_problems import load_script

from robometa.policies import GaussianMLPPolicy
from robometa.tasks import make_family

bench = load_script("bench_sampler")


@pytest.mark.parametrize("name", ["push", "cheetah-vel"])
def test_the_ceiling_replays_the_samplers_trajectories(name):
    """Open loop from the recorded initial states with the recorded (clipped) actions
    retraces the closed-loop episodes: the ceiling times the same physics, not another
    scene (from mj_resetData, push's object would start inside other geometry)."""
    fam = make_family(name)
    tasks = fam.split_tasks("train", seed=0, n=2)
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(fam.obs_dim, fam.layout.nu)
    T, fs = 4, fam.frame_skip
    models, state0, ctrl, batch = bench.recorded_work(fam, tasks, 2, T, policy, seed=0)
    B = len(models)
    assert ctrl.shape == (B, T * fs, fam.layout.nu)
    recorded = batch.states.reshape(B, T + 1, -1).double().numpy()
    np.testing.assert_array_equal(state0, recorded[:, 0])
    data = mujoco.MjData(models[0])
    for b, model in enumerate(models):
        mujoco.mj_setState(model, data, state0[b], mujoco.mjtState.mjSTATE_FULLPHYSICS)
        for t in range(T):
            data.ctrl[:] = ctrl[b, t * fs]
            for _ in range(fs):
                mujoco.mj_step(model, data)
            got = np.empty(fam.layout.nstate)
            mujoco.mj_getState(model, data, got, mujoco.mjtState.mjSTATE_FULLPHYSICS)
            np.testing.assert_allclose(got, recorded[b, t + 1], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["push", "ant-dir"])
def test_the_per_step_replay_is_the_samplers_physics(name):
    """The closed-loop bound (a') steps the sampler's own physics: one rollout call per
    control step from the recorded states and actions ends every env exactly (bit for
    bit) where the sampler's episode ended, the envs that terminated early included."""
    fam = make_family(name)
    tasks = fam.split_tasks("train", seed=0, n=2)
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(fam.obs_dim, fam.layout.nu)
    T = 40
    models, state0, ctrl, batch = bench.recorded_work(fam, tasks, 4, T, policy, seed=0)
    B = len(models)
    lengths = batch.masks.reshape(B, T).sum(1).numpy().astype(int)
    if name == "ant-dir":
        assert (lengths < T).any()  # some episodes end early: those envs must stop stepping
    pool = bench.rollout_pool(2)
    datas = [mujoco.MjData(models[0]) for _ in range(2)]
    steps, last = bench.replay_per_step(fam, models, state0, ctrl, lengths, pool, datas)
    assert steps == lengths.sum()
    recorded = batch.states.reshape(B, T + 1, -1).double().numpy()
    np.testing.assert_array_equal(last, recorded[np.arange(B), lengths])


def test_the_phase_split_times_every_control_step_and_restores_the_classes():
    """The plain loop's phase timers see each control step once (one physics call per
    step, one actor call per step), the phases add up to the loop's wall time, and the
    wrapped methods are the library's own again afterwards."""
    fam = make_family("cheetah-vel")
    tasks = fam.split_tasks("train", seed=0, n=2)
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(fam.obs_dim, fam.layout.nu)
    before = {k: cls.__dict__[name] for k, (cls, name) in bench.PHASES.items()}
    out = bench.phase_split(fam, tasks, 3, 7, policy, seed=0)()
    assert {k: cls.__dict__[name] for k, (cls, name) in bench.PHASES.items()} == before
    assert out["control_steps"] == 7 and out["env_steps"] == 2 * 3 * 7
    ms = out["ms_per_control_step"]
    assert set(ms) == set(bench.PHASES) | {"bookkeeping"}
    assert all(ms[k] > 0 for k in ("actor", "stage", "physics", "results", "resets"))
    assert abs(sum(ms.values()) * out["control_steps"] - 1e3 * out["wall_s"]) < 1e-6
