"""Reptile for meta-RL (Nichol, Achiam & Schulman, 2018, algorithm 2, batched version).

One meta-iteration on M tasks:

1. for every task, k inner policy-gradient steps from the meta-parameters ``theta``:
   sample N fresh episodes with the task's current weights ``phi_j`` (``phi_0 =
   theta``), fit the per-task linear baseline, and step ``phi_{j+1} = phi_j - alpha *
   grad L_inner(phi_j)`` -- MAML's inner step (:func:`robometa.algos.maml.inner_gradient`
   on MAML's inner loss), all M tasks at once on weights with a leading task axis;
2. outer update, first order and without any backward pass through the inner loop::

       theta <- theta + epsilon * mean_i(phi_k^i - theta)

   (:func:`reptile_step`), or an Adam step at learning rate epsilon on the "gradient"
   ``theta - mean_i(phi_k^i)``; epsilon optionally annealed linearly to 0 as in the
   paper.

With k = 1 the update is ``-epsilon * alpha * mean_i grad L_i(theta)``: plain
multi-task policy gradient, the paper's "joint training" (sec. 5); that is this
learner's multi-task baseline. Evaluation adapts exactly as training does (k inner
steps on fresh episodes), so its curves share MAML's axis (``adapt_step``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from robometa.algos.base import (
    AdaptationData,
    IterationResult,
    Stopwatch,
    term_metrics,
    throughput,
)
from robometa.algos.maml import GradientLearner, advantages, inner_gradient, learner_mode
from robometa.algos.reptile_config import ReptileConfig
from robometa.algos.trpo import flat
from robometa.policies import BoundActor
from robometa.sampling import EpisodeBatch, Sampler
from robometa.tasks.base import Task, TaskFamily

Params = dict[str, Tensor]


def reptile_step(theta: Mapping[str, Tensor], adapted: Mapping[str, Tensor], outer_lr: float) -> Params:
    """``theta + outer_lr * mean_i(adapted_i - theta)``, the Reptile outer update.

    ``theta``: shared weights (no task axis); ``adapted``: every task's weights after
    the inner steps, each tensor ``(M, *theta[name].shape)``.
    """
    return {n: theta[n] + outer_lr * (adapted[n] - theta[n]).mean(0) for n in theta}


def linear_decay(outer_lr: float, iteration: int, decay_iterations: int | None) -> float:
    """epsilon at meta-iteration ``iteration`` (0-based): ``outer_lr * (1 - iteration /
    decay_iterations)``, floored at 0; constant when ``decay_iterations`` is ``None``."""
    if decay_iterations is None:
        return float(outer_lr)
    return float(outer_lr) * max(0.0, 1.0 - iteration / decay_iterations)


class Reptile(GradientLearner):
    """Reptile with policy-gradient inner steps on one task family.

    Args:
        family: the task family.
        config: :class:`ReptileConfig`.
        device: where the policy and the learner run.
        seed: seeds weights and sampling (evaluation samples on streams of its own seed).
        sampler_threads: MuJoCo rollout threads (``None``: all cores).
        learner_threads: torch threads of the inner loop on CPU (``None``: torch's setting).
        backend: the simulator backend the samplers use.
    """

    name = "reptile"

    def __init__(
        self,
        family: TaskFamily,
        config: ReptileConfig,
        device: str | torch.device = "cpu",
        seed: int = 0,
        sampler_threads: int | None = None,
        learner_threads: int | None = 1,
        backend: str = "batch",
    ):
        self.setup(family, config, device, seed, sampler_threads, learner_threads, backend)
        self.optimizer = (
            torch.optim.Adam(self.policy.parameters(), lr=config.outer_lr)
            if config.outer_optimizer == "adam"
            else None
        )
        self.iterations_done = 0  # drives the annealing of epsilon

    @property
    def outer_lr(self) -> float:
        """epsilon of the next meta-iteration."""
        cfg = self.config
        return linear_decay(cfg.outer_lr, self.iterations_done, cfg.outer_lr_decay_iterations)

    # ---------------------------------------------------------------- the inner loop
    def _rollouts(
        self, sampler: Sampler, tasks: Sequence[Task], steps: int, watch: Stopwatch, sample_last: bool
    ) -> tuple[list[EpisodeBatch], Params]:
        """Batches sampled with ``phi_0 .. phi_{steps-1}`` (and ``phi_steps`` when
        ``sample_last``), and every task's weights ``phi_steps``, each ``(M, ...)``."""
        cfg = self.config
        M = len(tasks)
        phi: Params = {
            n: v.detach().unsqueeze(0).expand(M, *v.shape) for n, v in self.policy.named_parameters()
        }
        actor = BoundActor(self.policy, None)
        batches: list[EpisodeBatch] = []
        for k in range(steps + int(sample_last)):
            with watch("sampling"):
                batch = sampler.sample(actor, tasks, cfg.episodes_per_task, self.horizon).to(self.device)
            batches.append(batch)
            if k == steps:
                break
            with watch("inner"), torch.enable_grad(), learner_mode(self.learner_threads):
                adv = advantages(batch, cfg.gamma, cfg.gae_lambda)
                grads = inner_gradient(self.policy, phi, batch, adv)
                phi = {n: (p - cfg.inner_lr * grads[n]).detach() for n, p in phi.items()}
            actor = BoundActor(self.policy, phi, per_task=True)
        return batches, phi

    def _adaptation_rollouts(self, sampler: Sampler, tasks: Sequence[Task], steps: int) -> list[EpisodeBatch]:
        """``steps`` inner steps as in training, and the episodes of ``phi_steps`` too."""
        return self._rollouts(sampler, tasks, steps, Stopwatch(), sample_last=True)[0]

    # ---------------------------------------------------------------- one meta-iteration
    def iteration(self, tasks: Sequence[Task]) -> IterationResult:
        """k inner steps per task, then the Reptile update. The curve holds steps
        0..k-1: the batches the inner steps used (phi_k itself is never sampled)."""
        cfg = self.config
        watch = Stopwatch()
        batches, phi = self._rollouts(self.sampler, tasks, cfg.inner_steps, watch, sample_last=False)
        eps = self.outer_lr
        with watch("outer"), torch.no_grad():
            theta = {n: p.detach().clone() for n, p in self.policy.named_parameters()}
            if self.optimizer is None:
                new = reptile_step(theta, phi, eps)
                for n, p in self.policy.named_parameters():
                    p.copy_(new[n])
            else:
                for group in self.optimizer.param_groups:
                    group["lr"] = eps
                for n, p in self.policy.named_parameters():
                    p.grad = theta[n] - phi[n].mean(0)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            delta = flat([phi[n].mean(0) - theta[n] for n in theta])
            moved = flat([p - theta[n] for n, p in self.policy.named_parameters()])
            log_std = self.policy.log_std
            entropy = float((log_std + 0.5 * math.log(2 * math.pi * math.e)).sum())
        self.merge_obs_statistics(batches)
        self.iterations_done += 1
        seconds = watch.seconds
        env_steps = sum(b.env_steps for b in batches)
        metrics = {
            "train/entropy": entropy,
            "train/policy_std": float(log_std.detach().exp().mean()),
            "train/inner_lr": float(cfg.inner_lr),
            "train/outer_lr": eps,
            "train/grad_norm": float(delta.norm()),
            "train/update_norm": float(moved.norm()),
            "time/sampling": seconds["sampling"],
            "time/inner": seconds["inner"],
            "time/outer": seconds["outer"],
            **throughput(seconds["sampling"], seconds["inner"] + seconds["outer"], env_steps),
        }
        metrics.update(self.sampler.pop_metrics())  # sim/instabilities
        metrics.update(term_metrics(self.curve_x, [b.reward_terms for b in batches]))
        curve = AdaptationData.from_episodes(self.curve_x, batches, self.family.has_success).curve("train")
        return IterationResult(curve=curve, metrics=metrics, env_steps=env_steps)

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "policy": {k: v.detach().cpu().clone() for k, v in self.policy.state_dict().items()},
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
            "sampler": self.sampler.state_dict(),
            "iterations_done": int(self.iterations_done),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        self.iterations_done = int(state["iterations_done"])

    def multitask_config(self) -> ReptileConfig:
        """One inner step and a constant epsilon: plain multi-task policy gradient on the
        training tasks (the paper's joint training), fine-tuned at evaluation by the
        learner's k inner steps."""
        return dataclasses.replace(self.config, inner_steps=1, outer_lr_decay_iterations=None)

    def multitask_iteration_factor(self) -> int:
        """``inner_steps``: an iteration samples a batch for each of its k inner steps
        (phi_k itself is never sampled); the baseline's one inner step samples one."""
        return int(self.config.inner_steps)
