"""Simulation blow-ups end their episode, are counted, reach the learner's metrics, and
training goes on."""

from __future__ import annotations

import math

import numpy as np
import torch

from robometa.algos.maml import MAML
from robometa.algos.rl2 import RL2, RL2Actor
from robometa.configs.maml import MAMLTRPOConfig
from robometa.configs.rl2 import RL2Config
from robometa.policies import GaussianMLPPolicy
from robometa.policies.recurrent import RecurrentGaussianPolicy
from robometa.sampling import Sampler
from robometa.sampling.trials import TrialSampler
from robometa.tasks.locomotion.cheetah import CheetahVel

HORIZON = 40


class _BlowsUp(CheetahVel):
    """cheetah-vel with negative joint damping: every episode blows up within ~5 steps
    (with margin: at -10 one episode in six outlived the horizon on an AMD EPYC, where
    the same seeds blew up every one on a Xeon)."""

    def build_model(self, task):
        model = super().build_model(task)
        model.dof_damping[3:] = -30.0
        return model


def _policy(fam):
    torch.manual_seed(0)
    return GaussianMLPPolicy(fam.obs_dim, fam.layout.nu)


def test_sampler_ends_and_counts_blown_up_episodes():
    fam = _BlowsUp()
    sampler = Sampler(fam, device="cpu", seed=0)
    batch = sampler.sample(_policy(fam), fam.split_tasks("train", n=2), 3, horizon=HORIZON)
    assert sampler.pop_metrics()["sim/instabilities"] == 6.0  # every episode, once
    assert sampler.pop_metrics()["sim/instabilities"] == 0.0  # counted per call
    assert torch.all(batch.terminated.sum(-1) == 1) and torch.all(batch.lengths < HORIZON)
    last = (batch.lengths - 1).long().unsqueeze(-1)
    assert torch.all(batch.rewards.gather(-1, last) == 0.0)  # nothing from the jump


def test_trial_sampler_counts_every_blown_up_episode():
    fam = _BlowsUp()
    torch.manual_seed(0)
    actor = RL2Actor(RecurrentGaussianPolicy(fam.obs_dim, fam.layout.nu, hidden=8))
    sampler = TrialSampler(fam, device="cpu", seed=0)
    batch = sampler.sample_trials(actor, fam.split_tasks("train", n=2), 2, 3, horizon=HORIZON)
    assert sampler.pop_metrics()["sim/instabilities"] == 12.0  # 2 tasks x 2 trials x 3 episodes
    assert torch.all(batch.terminated.sum(-1) == 3)


def test_learners_log_instabilities_and_train_on():
    fam = _BlowsUp()
    tasks = fam.split_tasks("train", n=2)
    maml = MAML(
        fam,
        MAMLTRPOConfig(meta_batch_size=2, episodes_per_task=2, horizon=HORIZON, hidden=(8,), cg_iters=3),
        device="cpu",
    )
    rl2 = RL2(
        fam,
        RL2Config(
            meta_batch_size=2,
            trials_per_task=2,
            episodes_per_trial=2,
            horizon=HORIZON,
            hidden=8,
            ppo_epochs=1,
        ),
        device="cpu",
    )
    # MAML: pre- and post-adaptation batches of 2 x 2 episodes; RL2: 2 x 2 trials of 2.
    for algo, expected in ((maml, 8.0), (rl2, 8.0)):
        for _ in range(2):
            result = algo.iteration(tasks)
            assert result.metrics["sim/instabilities"] == expected
            assert all(math.isfinite(v) for v in result.metrics.values())
        assert all(np.isfinite(p.detach().numpy()).all() for p in algo.policy.parameters())
