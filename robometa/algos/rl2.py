"""RL² (Duan et al., 2016): meta-RL as ordinary RL of a recurrent policy over trials.

The "fast" learner is the memory of a GRU / LSTM policy that sees
``(o_t, a_{t-1}, r_{t-1}, d_t)`` and keeps its hidden state across the K episodes of
a trial on one task; the "slow" learner is PPO (Schulman et al., 2017) maximizing
the discounted return of whole trials, as in the RL² baselines of ProMP (Rothfuss
et al., 2019) and Meta-World (Yu et al., 2019). One meta-iteration:

1. sample N trials of K episodes for each of M training tasks (fresh memory per
   trial) with the current policy and frozen normalizer statistics;
2. recompute the values over whole trials, scale the rewards by the running std
   of discounted trial returns, and compute GAE(gamma, lambda) on the trial clock,
   so advantages flow across the episode boundaries inside a trial (the value at
   an episode's last step bootstraps from the next episode's first step; only the
   trial's end is terminal, or, with ``bootstrap_trial_end``, a time limit
   bootstrapped with the value of its last state);
3. ``ppo_epochs`` passes of the clipped surrogate plus value loss over minibatches
   of whole trials, each a full backpropagation through its trials;
4. merge the batch into the observation and return statistics (used from the next
   iteration on, so sampling and learning within one iteration agree exactly).

The adaptation curve is the return (and success) of episode k = 1..K of held-out
trials; its ``steps`` count the episodes of experience before episode k (0..K-1),
the axis on which MAML's gradient steps are also drawn.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from robometa.algos.base import (
    EPISODE,
    AdaptationCurve,
    AdaptationData,
    IterationResult,
    MetaLearner,
    Stopwatch,
    term_metrics,
    throughput,
)
from robometa.algos.gae import discounted_returns, gae
from robometa.algos.rl2_config import RL2Config
from robometa.policies.normalize import RunningMeanStd
from robometa.policies.recurrent import (
    Hidden,
    RecurrentGaussianPolicy,
    assemble_inputs,
    previous_step_inputs,
)
from robometa.sampling.sampler import torch_threads
from robometa.sampling.trials import TrialBatch, TrialSampler
from robometa.tasks.base import Task, TaskFamily

# Offset of the minibatch-shuffling stream.
SHUFFLE_SEED_OFFSET = 2_000_003

# The parts of ppo_sequence_loss (and the gradient norm) that _update logs under fixed names.
PPO_PARTS = ("policy", "value", "entropy", "approx_kl", "clip_fraction", "grad_norm")


class RL2Actor:
    """A recurrent policy plus the normalizers that prepare its inputs.

    ``obs_norm`` holds observation statistics, ``reward_norm`` per-step reward
    statistics. Both the sampler (one step at a time) and the learner (whole trials) build
    inputs through :meth:`features`, so the two see identical numbers. With
    ``memory=False`` (:attr:`RL2Config.memory`) the previous action, reward and done
    inputs read 0 and :meth:`act` starts every step from the initial state.
    """

    def __init__(
        self,
        policy: RecurrentGaussianPolicy,
        obs_norm: RunningMeanStd | None = None,
        reward_norm: RunningMeanStd | None = None,
        memory: bool = True,
    ):
        self.policy, self.obs_norm, self.reward_norm = policy, obs_norm, reward_norm
        self.memory = memory

    def features(self, obs: Tensor, prev_action: Tensor, prev_reward: Tensor, done: Tensor) -> Tensor:
        """Normalized, assembled inputs: ``obs: (..., obs_dim)`` etc. -> ``(..., input_dim)``."""
        if self.obs_norm is not None:
            obs = self.obs_norm.normalize(obs)
        if self.reward_norm is not None:
            # Per-step scale (not the return scale of the value targets), so the
            # reward the policy reads stays O(1) whatever the horizon; no
            # centering, so "no reward yet" (0 at the trial's first step) stays 0.
            prev_reward = self.reward_norm.scale(prev_reward)
        if not self.memory:  # nothing of the steps before reaches the policy
            prev_action, prev_reward, done = (torch.zeros_like(t) for t in (prev_action, prev_reward, done))
        return assemble_inputs(obs, prev_action, prev_reward, done)

    def trial_features(self, batch: TrialBatch) -> Tensor:
        """Inputs of every step of every trial, ``(M * N, L, input_dim)``."""
        prev_a, prev_r, done = previous_step_inputs(batch.actions, batch.rewards, batch.episode_ends)
        x = self.features(batch.obs, prev_a, prev_r, done)
        return x.reshape(-1, *x.shape[2:])

    # ---- TrialActor protocol
    def initial_state(self, batch: int, device: torch.device) -> Hidden:
        return self.policy.initial_state(batch, device)

    def act(self, obs, prev_action, prev_reward, done, state, generator=None, deterministic=False):
        x = self.features(obs, prev_action, prev_reward, done)
        if not self.memory:
            state = self.policy.initial_state(obs.shape[0], obs.device)
        action, logp, _, state = self.policy.act(x, state, generator, deterministic)
        return action, logp, state


# ------------------------------------------------------------------ pure maths


def masked_mean(x: Tensor, masks: Tensor) -> Tensor:
    return (x * masks).sum() / masks.sum().clamp_min(1.0)


def ppo_sequence_loss(
    policy: RecurrentGaussianPolicy,
    inputs: Tensor,
    actions: Tensor,
    old_log_probs: Tensor,
    advantages: Tensor,
    returns: Tensor,
    masks: Tensor,
    clip_eps: float,
    value_coef: float,
    entropy_coef: float,
    outputs: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Clipped-surrogate PPO loss over whole trials, from fresh memory.

    ``inputs: (B, L, input_dim)``, ``actions: (B, L, act_dim)``, the rest ``(B, L)``.
    ``outputs``: the policy's ``(means, values)`` on ``inputs``, when the caller has
    already run it (``None``: run ``policy.sequence(inputs)`` here).
    Every term is a mean over valid steps (``masks == 1``). Returns the scalar loss
    and its parts (detached): ``policy``, ``value``, ``entropy``, ``approx_kl``,
    ``clip_fraction``.
    """
    mean, values = policy.sequence(inputs)[:2] if outputs is None else outputs
    dist = policy.distribution(mean)
    log_ratio = dist.log_prob(actions) - old_log_probs
    ratio = log_ratio.exp()
    surrogate = torch.minimum(ratio * advantages, ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * advantages)
    policy_loss = -masked_mean(surrogate, masks)
    value_loss = 0.5 * masked_mean((values - returns).square(), masks)
    entropy = masked_mean(dist.entropy(), masks)
    loss = policy_loss + value_coef * value_loss - entropy_coef * entropy
    with torch.no_grad():
        parts = {
            "policy": policy_loss.detach(),
            "value": value_loss.detach(),
            "entropy": entropy.detach(),
            # k3 estimator of KL(old || new) (Schulman, 2020): unbiased and >= 0.
            "approx_kl": masked_mean(ratio - 1.0 - log_ratio, masks),
            "clip_fraction": masked_mean(((ratio - 1.0).abs() > clip_eps).float(), masks),
        }
    return loss, parts


def normalize_advantages(adv: Tensor, masks: Tensor, eps: float = 1e-8) -> Tensor:
    """Zero mean, unit std over all valid steps of the batch; padding stays 0."""
    mean = masked_mean(adv, masks)
    std = masked_mean((adv - mean).square(), masks).sqrt()
    return (adv - mean) / (std + eps) * masks


def episode_curve(batch: TrialBatch, split: str, has_success: bool) -> AdaptationCurve:
    """Return (and success) of episode k of the trials, averaged per task then over tasks."""
    per_task = batch.episode_returns.mean(dim=1)  # (M, K)
    K = batch.episodes_per_trial
    return AdaptationCurve(
        split=split,
        x=EPISODE,
        steps=list(range(K)),
        return_mean=[float(v) for v in per_task.mean(0)],
        return_std=[float(v) for v in per_task.std(0, unbiased=False)],
        success_mean=[float(v) for v in batch.success.mean(dim=(0, 1))] if has_success else None,
    )


def episode_rewards(batch: TrialBatch) -> Tensor:
    """Rewards moved from the trial clock to per-episode rows: ``(M, N, K, T)``, 0-padded."""
    M, N, L = batch.rewards.shape
    K, T = batch.episodes_per_trial, batch.horizon
    # Position of every step inside its episode: steps since the episode's first step.
    starts = torch.zeros_like(batch.episode_ends)
    starts[..., 1:] = batch.episode_ends[..., :-1]
    starts[..., 0] = 1.0
    first = torch.cummax(torch.where(starts > 0, torch.arange(L).expand(M, N, L), 0), dim=-1).values
    t = torch.arange(L).expand(M, N, L) - first
    out = torch.zeros(M, N, K, T, dtype=batch.rewards.dtype)
    valid = batch.masks > 0
    idx = valid.nonzero(as_tuple=True)
    out[idx[0], idx[1], batch.episode[valid], t[valid]] = batch.rewards[valid]
    return out


# ------------------------------------------------------------------ the learner


class RL2(MetaLearner):
    """RL² with a PPO outer loop on one task family.

    Args:
        family: the task family.
        config: :class:`RL2Config`.
        device: where the policy and the learner run.
        seed: seeds weights, sampling and shuffling (evaluation samples on streams of
            its own seed: :meth:`adaptation_data`).
        sampler_threads: MuJoCo rollout threads (``None``: all cores).
        backend: the simulator backend the samplers use (:func:`robometa.sim.simulator_names`).
    """

    name = "rl2"
    curve_x = EPISODE  # adaptation is measured per episode of a trial

    def __init__(
        self,
        family: TaskFamily,
        config: RL2Config,
        device: str | torch.device = "cpu",
        seed: int = 0,
        sampler_threads: int | None = None,
        backend: str = "batch",
    ):
        self.family = family
        self.config = config
        self.sampler = TrialSampler(family, device, seed=seed, nthread=sampler_threads, backend=backend)
        self.device = self.sampler.device
        self.horizon = config.horizon or family.horizon

        policy = self.make_policy(family.obs_dim, self.sampler.act_dim)
        policy.reset_parameters(torch.Generator().manual_seed(int(seed)))
        self.policy = policy.to(self.device)
        self.obs_norm = RunningMeanStd((family.obs_dim,)) if config.normalize_obs else None
        # Per-step rewards (the policy's reward input) and discounted trial returns
        # (the scale of the value targets) have very different spreads.
        self.reward_norm = RunningMeanStd(()) if config.normalize_reward else None
        self.return_norm = RunningMeanStd(()) if config.normalize_reward else None
        self.actor = RL2Actor(self.policy, self.obs_norm, self.reward_norm, memory=config.memory)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=config.lr)
        self.shuffle = torch.Generator().manual_seed(int(seed) + SHUFFLE_SEED_OFFSET)

    def make_policy(self, obs_dim: int, act_dim: int) -> torch.nn.Module:
        """The trial policy this learner trains (weights drawn afterwards by the caller).

        Any module with the interface of :class:`RecurrentGaussianPolicy` fits:
        ``reset_parameters(generator)``, ``initial_state(batch, device)``,
        ``sequence(inputs, state=None) -> (means, values, state)`` over whole trials
        (``inputs: (B, L, obs_dim + act_dim + 2)``), ``act(...)`` one step at a time,
        ``distribution(means)`` and a ``log_std`` parameter. Learners that differ from
        RL² only in the policy (SNAIL, the context learners) override this.
        """
        cfg = self.config
        return RecurrentGaussianPolicy(obs_dim, act_dim, cfg.hidden, cfg.cell, cfg.init_std, cfg.fused_bptt)

    @property
    def trained_steps(self) -> int:
        """Episodes before the last one of a training trial (``episodes_per_trial - 1``)."""
        return int(self.config.episodes_per_trial) - 1

    def multitask_config(self) -> RL2Config:
        """The same settings without memory (:attr:`RL2Config.memory`): one policy of the
        current observation trained by the same PPO on the same trials of the training
        tasks. It has nothing to adapt with, so its episodes 2..K only resample episode 1."""
        return dataclasses.replace(self.config, memory=False)

    # ---------------------------------------------------------------- sampling
    def sample(self, sampler: TrialSampler, tasks: Sequence[Task], episodes: int) -> TrialBatch:
        cfg = self.config
        return sampler.sample_trials(self.actor, tasks, cfg.trials_per_task, episodes, self.horizon).to(
            self.device
        )

    def adaptation_data(
        self,
        tasks: Sequence[Task],
        steps: int,
        seed: int,
        record_states: bool = False,
        trials_per_task: int | None = None,
    ) -> AdaptationData:
        """Trials of ``steps + 1`` episodes on every task, no learning (the adaptation protocol).

        ``trials_per_task`` trials (default: the training setting) per task, each on
        fresh memory, on the streams of evaluation seed ``seed``; step k is episode
        k+1 (``returns`` / ``success``: its mean over each task's trials), and with
        ``record_states`` the states and rewards are every episode of each task's
        first trial.
        """
        sampler = self.evaluation_sampler(seed)
        batch = sampler.sample_trials(
            self.actor,
            tasks,
            trials_per_task or self.config.trials_per_task,
            steps + 1,
            self.horizon,
            record_states=record_states,
        )
        recorded = {}
        if record_states:
            recorded["states"] = batch.states[:, 0].transpose(0, 1).numpy()
            recorded["rewards"] = episode_rewards(batch)[:, 0].transpose(0, 1).numpy()
        return AdaptationData(
            x=self.curve_x,
            episodes_per_step=1,
            returns=batch.episode_returns.mean(1).double().numpy(),
            success=batch.success.mean(1).double().numpy() if self.family.has_success else None,
            **recorded,
        )

    # ---------------------------------------------------------------- one meta-iteration
    def iteration(self, tasks: Sequence[Task]) -> IterationResult:
        cfg = self.config
        watch = Stopwatch()
        with watch("sampling"):
            batch = self.sample(self.sampler, tasks, cfg.episodes_per_trial)
        # Same thread cap as sampling: the per-step ops of a small recurrent net gain
        # nothing from torch's intra-op pool, which stalls when cores are contended
        # (measured 10x slower backpropagation through trials with 2 threads on 2 busy cores).
        with watch("outer"), torch_threads(self.sampler.torch_threads):
            metrics = self._update(batch)
        seconds = watch.seconds
        self._update_statistics(batch)
        env_steps = batch.env_steps
        metrics.update(
            {
                "train/entropy": self.entropy,
                "train/policy_std": float(self.policy.log_std.detach().exp().mean()),
                "train/reward_scale": 1.0 if self.return_norm is None else float(1.0 / self.return_norm.std),
                "train/trial_return": float(batch.episode_returns.sum(-1).mean()),
                "time/sampling": seconds["sampling"],
                "time/outer": seconds["outer"],
                **throughput(seconds["sampling"], seconds["outer"], env_steps),
            }
        )
        metrics.update(self.sampler.pop_metrics())  # sim/instabilities
        K = batch.episodes_per_trial
        metrics.update(
            term_metrics(EPISODE, [{n: v[..., k] for n, v in batch.reward_terms.items()} for k in range(K)])
        )
        curve = episode_curve(batch, "train", self.family.has_success)
        return IterationResult(curve=curve, metrics=metrics, env_steps=env_steps)

    def targets(self, batch: TrialBatch, inputs: Tensor) -> tuple[Tensor, Tensor]:
        """GAE advantages and value targets on the trial clock, each ``(M * N, L)``."""
        cfg = self.config
        masks = batch.masks.reshape(inputs.shape[:2])
        rewards = batch.rewards.reshape(inputs.shape[:2])
        if self.return_norm is not None:
            rewards = self.return_norm.scale(rewards) * masks
        values = self.values(inputs) * masks
        if cfg.bootstrap_trial_end:
            # The trial's last valid step, unless its episode terminated; V(s_L) is
            # not observed, so the last state's own value stands in for it.
            next_masks = torch.cat([masks[:, 1:], torch.zeros_like(masks[:, :1])], dim=1)
            last = masks * (1.0 - next_masks) * (1.0 - batch.terminated.reshape(masks.shape))
            rewards = rewards + cfg.gamma * values * last
        adv = gae(rewards, values, masks, cfg.gamma, cfg.gae_lambda)
        return adv, adv + values

    def values(self, inputs: Tensor) -> Tensor:
        """Value estimates ``(B, L)`` of every step of ``inputs: (B, L, input_dim)``, without
        gradient: over whole trials from fresh memory, or each step on its own without
        memory (:attr:`RL2Config.memory`)."""
        with torch.no_grad():
            if self.config.memory:
                return self.policy.sequence(inputs)[1]
            return self.policy.sequence(inputs.reshape(-1, 1, inputs.shape[-1]))[1].reshape(inputs.shape[:2])

    def minibatch_loss(
        self,
        inputs: Tensor,
        actions: Tensor,
        old_log_probs: Tensor,
        advantages: Tensor,
        returns: Tensor,
        masks: Tensor,
        outputs: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss of one minibatch of whole trials and its detached parts (shapes and
        ``outputs`` as in :func:`ppo_sequence_loss`). RL²'s is PPO's; a subclass may add
        terms, each reported as a part of its own name (logged as ``loss/<name>``)."""
        cfg = self.config
        return ppo_sequence_loss(
            self.policy,
            inputs,
            actions,
            old_log_probs,
            advantages,
            returns,
            masks,
            cfg.clip_eps,
            cfg.value_coef,
            cfg.entropy_coef,
            outputs=outputs,
        )

    def _update(self, batch: TrialBatch) -> dict[str, float]:
        cfg = self.config
        inputs = self.actor.trial_features(batch)
        B = inputs.shape[0]
        flat = {
            "actions": batch.actions.reshape(B, *batch.actions.shape[2:]),
            "old_log_probs": batch.log_probs.reshape(B, -1),
            "masks": batch.masks.reshape(B, -1),
        }
        adv, returns = self.targets(batch, inputs)
        flat["advantages"] = normalize_advantages(adv, flat["masks"])
        flat["returns"] = returns
        if not cfg.memory:
            # Without memory every step stands alone: sequences of one step, and PPO's
            # minibatches are of steps instead of whole trials.
            inputs = inputs.reshape(-1, 1, inputs.shape[-1])
            B = inputs.shape[0]
            flat = {k: v.reshape(B, 1, *v.shape[2:]) for k, v in flat.items()}
        sums: dict[str, float] = {}
        n_steps = 0
        first_loss = None
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(B, generator=self.shuffle).to(self.device)
            for idx in order.tensor_split(cfg.minibatches):
                mb = {k: v[idx] for k, v in flat.items()}
                loss, parts = self.minibatch_loss(inputs[idx], **mb)
                self.optimizer.zero_grad()
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                if first_loss is None:
                    first_loss = float(loss.detach())
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                sums["grad_norm"] = sums.get("grad_norm", 0.0) + float(grad_norm)
                n_steps += 1
        with torch.no_grad():
            _, values, _ = self.policy.sequence(inputs)
            m, returns = flat["masks"], flat["returns"]
            resid = masked_mean((returns - values).square(), m)
            var = masked_mean((returns - masked_mean(returns, m)).square(), m)
        avg = {k: v / n_steps for k, v in sums.items()}
        # Terms a subclass's minibatch_loss adds are logged as loss/<name>.
        extra = {f"loss/{k}": v for k, v in avg.items() if k not in PPO_PARTS}
        return {
            "loss/policy": avg["policy"],
            "loss/value": avg["value"],
            "loss/entropy": avg["entropy"],
            "loss/first_minibatch": float(first_loss),
            "train/kl": avg["approx_kl"],
            "train/clip_fraction": avg["clip_fraction"],
            "train/grad_norm": avg["grad_norm"],
            "train/explained_variance": float(1.0 - resid / var.clamp_min(1e-12)),
            **extra,
        }

    def _update_statistics(self, batch: TrialBatch) -> None:
        if self.obs_norm is not None:
            self.obs_norm.update(batch.obs, batch.masks)
        if self.reward_norm is not None:
            self.reward_norm.update(batch.rewards, batch.masks)
        if self.return_norm is not None:
            returns = discounted_returns(batch.rewards, batch.masks, self.config.gamma)
            self.return_norm.update(returns, batch.masks)

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "policy": {k: v.detach().cpu().clone() for k, v in self.policy.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "obs_norm": None if self.obs_norm is None else self.obs_norm.state_dict(),
            "reward_norm": None if self.reward_norm is None else self.reward_norm.state_dict(),
            "return_norm": None if self.return_norm is None else self.return_norm.state_dict(),
            "sampler": self.sampler.state_dict(),
            "shuffle": self.shuffle.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        for norm, key in (
            (self.obs_norm, "obs_norm"),
            (self.reward_norm, "reward_norm"),
            (self.return_norm, "return_norm"),
        ):
            if norm is not None:
                norm.load_state_dict(state[key])
        # Checkpoints from before evaluation used fresh seeded streams also hold an
        # "eval_sampler"; nothing samples with it any more.
        self.sampler.load_state_dict(state["sampler"])
        self.shuffle.set_state(state["shuffle"])

    @property
    def entropy(self) -> float:
        """Entropy of the action Gaussian in nats (state-independent)."""
        return float((self.policy.log_std.detach() + 0.5 * math.log(2 * math.pi * math.e)).sum())
