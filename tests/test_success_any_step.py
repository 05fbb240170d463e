"""Episode success is "the criterion held at any step" (Meta-World's protocol), in both samplers.

A scripted reach policy drives the gripper to the goal and then straight back out,
so every episode succeeds in its middle and has lost success by its last step. Taking
success from the last step only would report 0 for all of them.
"""

from __future__ import annotations

import numpy as np
import torch

from robometa.algos.rl2 import RL2
from robometa.configs.rl2 import RL2Config
from robometa.sampling import Sampler
from robometa.sampling.trials import TrialSampler
from robometa.tasks import make_family

HORIZON = 80  # ~25 steps to reach at 1 cm per step, the rest to leave


def reach_then_leave(tcp: torch.Tensor, goal: torch.Tensor, leaving: torch.Tensor):
    """Actions ``(B, 4)``: TCP velocity toward the goal until within 2 cm, then away
    from it; gripper open. ``tcp, goal: (B, 3)`` m, ``leaving: (B,)`` bool."""
    to_goal = goal - tcp
    leaving = leaving | (to_goal.norm(dim=-1) < 0.02)
    velocity = torch.clamp(20.0 * torch.where(leaving[:, None], -to_goal, to_goal), -1.0, 1.0)
    return torch.cat([velocity, -torch.ones(len(tcp), 1)], dim=-1), leaving


class EpisodeActor:
    """The :class:`~robometa.sampling.Sampler` actor of one sample call (obs ``(M, N, 20)``)."""

    def __init__(self, goals: torch.Tensor):
        self.goals, self.leaving = goals, None

    def act(self, obs, generator=None, deterministic=False):
        M, N, _ = obs.shape
        if self.leaving is None:
            self.leaving = torch.zeros(M * N, dtype=torch.bool)
        goal = self.goals.repeat_interleave(N, dim=0)
        action, self.leaving = reach_then_leave(obs.reshape(M * N, -1)[:, :3], goal, self.leaving)
        return action.view(M, N, 4), torch.zeros(M, N)


class TrialActor:
    """The same policy as a trial actor: its memory (leaving or not) restarts with each episode."""

    def __init__(self, goals: torch.Tensor, trials: int):
        self.goals, self.trials = goals, trials

    def initial_state(self, batch, device):
        return torch.zeros(batch, dtype=torch.bool)

    def act(self, obs, prev_action, prev_reward, done, state, generator=None, deterministic=False):
        leaving = state & (done == 0)  # done: this step starts a new episode
        goal = self.goals.repeat_interleave(self.trials, dim=0)
        action, leaving = reach_then_leave(obs[:, :3], goal, leaving)
        return action, torch.zeros(len(obs)), leaving


def _setup(n_tasks=3):
    family = make_family("reach")
    tasks = family.split_tasks("train", seed=0, n=n_tasks)
    goals = torch.tensor([t.goal for t in tasks], dtype=torch.float32)
    return family, tasks, goals


def _succeeds_at_end(family, tasks, last_states: np.ndarray, copies: int) -> np.ndarray:
    params = np.repeat(family.task_params(tasks), copies, axis=0)
    rows = last_states.reshape(len(params), -1)
    return family.success(rows, np.zeros((len(rows), 0)), params)


def test_episode_sampler_counts_success_at_any_step():
    family, tasks, goals = _setup()
    batch = Sampler(family, "cpu", seed=0).sample(EpisodeActor(goals), tasks, 2, HORIZON, record_states=True)
    # the premise: no episode ends in success, each had successful steps on the way
    assert not _succeeds_at_end(family, tasks, batch.states[:, :, -1].numpy(), 2).any()
    assert (batch.reward_terms["success"] >= 5).all()
    assert batch.success.tolist() == [[1.0, 1.0]] * 3


def test_trial_sampler_counts_success_at_any_step_of_every_episode():
    family, tasks, goals = _setup()
    batch = TrialSampler(family, "cpu", seed=0).sample_trials(
        TrialActor(goals, 2), tasks, 2, 3, HORIZON, record_states=True
    )
    assert (batch.episode_lengths == HORIZON).all()  # no episode ended early
    last = batch.states[:, :, :, -1].numpy()  # (M, N, K, nstate)
    assert not _succeeds_at_end(family, tasks, last, 2 * 3).any()
    assert batch.success.shape == (3, 2, 3) and (batch.success == 1.0).all()


def test_a_policy_that_never_reaches_never_succeeds():
    family, tasks, _ = _setup()

    class Still:
        def act(self, obs, generator=None, deterministic=False):
            return torch.zeros(*obs.shape[:2], 4), torch.zeros(obs.shape[:2])

    assert (Sampler(family, "cpu", seed=0).sample(Still(), tasks, 2, 30).success == 0).all()


def test_rl2_reports_success_on_families_that_have_it():
    family, tasks, _ = _setup(n_tasks=2)
    cfg = RL2Config(
        meta_batch_size=2,
        trials_per_task=1,
        episodes_per_trial=2,
        horizon=5,
        hidden=8,
        ppo_epochs=1,
        minibatches=1,
    )
    algo = RL2(family, cfg, device="cpu", seed=0, sampler_threads=0)
    data = algo.adaptation_data(tasks, 1, seed=0)
    assert data.success is not None and data.success.shape == (2, 2)
    assert algo.adaptation_curve(tasks, 1, "val").success_mean is not None
    assert algo.iteration(tasks).curve.success_mean is not None
