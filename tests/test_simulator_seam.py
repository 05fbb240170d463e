"""The Simulator seam: a toy numpy backend, registered here, runs through the samplers
and a MAML-TRPO and an RL² iteration without any MuJoCo."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from robometa.algos.maml import MAML
from robometa.algos.rl2 import RL2, RL2Actor
from robometa.configs.maml import MAMLTRPOConfig
from robometa.configs.rl2 import RL2Config
from robometa.errors import RobometaError
from robometa.eval.baselines import run_episodes
from robometa.policies import GaussianMLPPolicy
from robometa.policies.recurrent import RecurrentGaussianPolicy
from robometa.sampling import Sampler
from robometa.sampling.trials import TrialSampler
from robometa.sim import SimSpec, Simulator, StepResult, make_simulator, register_simulator

DT = 0.1  # s per control step
BOUND = 0.4  # m: leaving the square |x|, |y| < BOUND ends the episode
GOAL_RADIUS = 0.15  # m: success within this distance of the goal


@dataclass(frozen=True)
class PointTask:
    goal: tuple[float, float]  # m


class PointFamily:
    """Reach a goal in the plane with a point mass; the goal is not observed."""

    name = "point-goal"
    horizon = 20
    obs_dim = 4  # position (m), velocity (m/s)
    has_success = True

    def split_tasks(self, split: str, seed: int = 0, n: int = 4) -> list[PointTask]:
        rng = np.random.default_rng([seed, 0 if split == "train" else 1])
        return [PointTask(tuple(g)) for g in rng.uniform(-0.3, 0.3, size=(n, 2)).tolist()]

    def task_params(self, tasks) -> np.ndarray:
        return np.array([t.goal for t in tasks], dtype=np.float64)


class PointSim:
    """B point masses in numpy. State row: time (s), position (2, m), velocity (2, m/s);
    action: acceleration (2, m/s²) in [-1, 1]; reward: minus the distance to the goal."""

    def __init__(self, family: PointFamily, tasks, seeds, nthread=None):
        self.B = len(tasks)
        self.goal = family.task_params(tasks)
        seeds = [seeds + i for i in range(self.B)] if isinstance(seeds, int) else list(seeds)
        self.rngs = [np.random.default_rng(s) for s in seeds]
        bound = np.ones((self.B, 2))
        self.spec = SimSpec(self.B, 4, 2, 5, True, -bound, bound)
        self.state = np.zeros((self.B, 5))
        self.instabilities = 0

    def _obs(self) -> np.ndarray:
        return self.state[:, 1:].copy()

    def reset(self, mask=None):
        for i in np.flatnonzero(np.ones(self.B, bool) if mask is None else mask):
            self.state[i] = [0.0, *self.rngs[i].uniform(-0.05, 0.05, 2), 0.0, 0.0]
        return self._obs()

    def set_state(self, state, mask=None):
        self.state[np.ones(self.B, bool) if mask is None else mask] = state
        return self._obs()

    def step(self, action, active=None) -> StepResult:
        live = np.ones(self.B, bool) if active is None else np.asarray(active, bool)
        a = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        new = self.state.copy()
        new[:, 3:] += DT * a
        new[:, 1:3] += DT * new[:, 3:]
        new[:, 0] += DT
        self.state[live] = new[live]
        distance = np.linalg.norm(self.state[:, 1:3] - self.goal, axis=1)
        terms = {
            "distance": np.where(live, -distance, 0.0),
            "ctrl": np.where(live, -0.01 * (a**2).sum(1), 0.0),
        }
        return StepResult(
            obs=self._obs(),
            reward=terms["distance"] + terms["ctrl"],
            terms=terms,
            terminated=live & (np.abs(self.state[:, 1:3]) > BOUND).any(1),
            success=live & (distance < GOAL_RADIUS),
            metrics={"distance": distance},
            unstable=np.zeros(self.B, bool),
        )


register_simulator("point", PointSim, act_dim=lambda family: 2)


def test_the_toy_backend_satisfies_the_protocol():
    fam = PointFamily()
    sim = make_simulator(fam, fam.split_tasks("train", n=3), seeds=0, backend="point")
    assert isinstance(sim, Simulator) and sim.spec.num_envs == 3


def test_the_sampler_runs_a_toy_backend_with_its_bookkeeping():
    fam = PointFamily()
    tasks = fam.split_tasks("train", n=4)
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(fam.obs_dim, 2, init_std=3.0)
    sampler = Sampler(fam, "cpu", seed=0, backend="point")
    assert sampler.act_dim == 2
    batch = sampler.sample(policy, tasks, 5, record_states=True)
    M, N, T = 4, 5, fam.horizon
    assert batch.obs.shape == (M, N, T, 4) and batch.states.shape == (M, N, T + 1, 5)
    lengths = batch.lengths.long()
    assert lengths.min() < lengths.max() == T  # some episodes leave the square early
    assert torch.all(batch.terminated.sum(-1) == (lengths < T).float())
    # rewards from the recorded states, up to each episode's end; then it stands still
    goal = torch.tensor([t.goal for t in tasks], dtype=torch.float64)[:, None, None]
    pos = batch.states[..., 1:3]
    distance = (pos[:, :, 1:] - goal).norm(dim=-1)
    valid = batch.masks.bool()
    torch.testing.assert_close(batch.reward_terms["distance"], -(distance * valid).sum(-1).float())
    for m in range(M):
        for n in range(N):
            last = batch.states[m, n, lengths[m, n]]
            assert torch.all(batch.states[m, n, lengths[m, n] :] == last)
    # success: any step within reach of the goal, episode over or not
    reached = ((distance < GOAL_RADIUS) & valid).any(-1)
    assert torch.equal(batch.success, reached.float())


def test_maml_trpo_iterates_on_a_toy_backend():
    fam = PointFamily()
    tasks = fam.split_tasks("train", n=2)
    maml = MAML(
        fam,
        MAMLTRPOConfig(meta_batch_size=2, episodes_per_task=4, horizon=10, hidden=(8,), cg_iters=3),
        device="cpu",
        backend="point",
    )
    assert maml.policy.mean[-1].out_features == 2  # the backend's action size
    before = [p.detach().clone() for p in maml.policy.parameters()]
    result = maml.iteration(tasks)
    assert result.env_steps > 0 and all(math.isfinite(v) for v in result.metrics.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, maml.policy.parameters()))
    assert len(maml.adaptation_curve(fam.split_tasks("test", n=2), 1).return_mean) == 2


def test_rl2_iterates_on_a_toy_backend():
    fam = PointFamily()
    tasks = fam.split_tasks("train", n=2)
    rl2 = RL2(
        fam,
        RL2Config(
            meta_batch_size=2, trials_per_task=2, episodes_per_trial=2, horizon=10, hidden=8, ppo_epochs=1
        ),
        device="cpu",
        backend="point",
    )
    result = rl2.iteration(tasks)
    assert result.env_steps > 0 and all(math.isfinite(v) for v in result.metrics.values())


def test_trials_on_a_toy_backend_judge_each_episode_on_its_own():
    """Success and returns per episode of a trial, from that episode's own steps."""
    fam = PointFamily()
    tasks = fam.split_tasks("train", n=4)
    policy = RecurrentGaussianPolicy(fam.obs_dim, 2, hidden=8, init_std=2.0)
    policy.reset_parameters(torch.Generator().manual_seed(0))
    batch = TrialSampler(fam, "cpu", seed=1, backend="point").sample_trials(
        RL2Actor(policy), tasks, 6, 2, record_states=True
    )
    assert torch.all(batch.episode_ends.sum(-1) == 2)  # both episodes of every trial ended
    goal = torch.tensor([t.goal for t in tasks], dtype=torch.float64)[:, None, None, None]
    distance = (batch.states[..., 1:, 1:3] - goal).norm(dim=-1)  # (M, N, K, T)
    valid = torch.arange(fam.horizon) < batch.episode_lengths[..., None]
    reached = ((distance < GOAL_RADIUS) & valid).any(-1).float()
    assert torch.equal(batch.success, reached)
    assert torch.any((reached[..., 0] == 1) & (reached[..., 1] == 0))  # the premise: not carried over
    own = [(batch.rewards * batch.masks * (batch.episode == k)).sum(-1) for k in range(2)]
    torch.testing.assert_close(batch.episode_returns, torch.stack(own, -1))


def test_run_episodes_drives_a_toy_backend_with_numpy_actions():
    """Baselines and experts: a plain function of (obs, state, params) through the same loop."""
    fam = PointFamily()
    tasks = fam.split_tasks("test", n=5)

    def expert(obs, state, params):  # accelerate toward the goal, damped (m/s²)
        return 4.0 * (params - state[:, 1:3]) - 3.0 * state[:, 3:5]

    out = run_episodes(fam, tasks, expert, seeds=3, backend="point")
    assert out["success"].all() and (out["returns"] < 0).all()
    assert ((out["metrics"]["distance"] > 0) & (out["metrics"]["distance"] < GOAL_RADIUS)).all()  # last step


def test_backend_names_are_checked():
    fam = PointFamily()
    with pytest.raises(RobometaError, match=r"unknown simulator backend 'nope'; valid: batch, point"):
        Sampler(fam, "cpu", backend="nope")
    with pytest.raises(RobometaError, match="'point' is already registered"):
        register_simulator("point", lambda *args: None, act_dim=lambda family: 2)
