"""MAML for policy gradients (Finn et al., 2017) with a TRPO or PPO meta-update.

One meta-iteration on M tasks:

1. sample N episodes per task with the meta-policy ``theta`` (adaptation step 0);
2. K times: fit the per-task linear baseline, take a vanilla policy-gradient step
   ``phi <- phi - alpha * grad L_inner(phi)`` for every task at once (the weights
   carry a leading task axis and each layer is one batched matrix product, so the
   M inner steps are one computation), and sample N episodes with the adapted
   weights;
3. meta-update ``theta`` on the post-adaptation episodes, differentiating through
   the K inner steps (second order, or first order if asked):

   * ``maml-trpo``: natural-gradient step on the importance-weighted surrogate, the
     Fisher being the Hessian of the mean KL between the adapted policies before
     and after the update; backtracking line search that re-adapts, re-evaluates
     the surrogate and enforces ``max_kl``;
   * ``maml-ppo``: several Adam epochs on PPO's clipped surrogate of the adapted
     policies, with ProMP's clip / epochs / learning rate (Rothfuss et al., 2019).
     It is not ProMP: the inner step stays MAML's score-function gradient (ProMP
     uses its LVC objective there) and the inner update carries no KL penalty.

Inner loss per task: ``-mean_t log pi_phi(a_t|s_t) A_t`` over valid steps, with
advantages from GAE(gamma, lambda) on the per-task linear baseline, normalized per
task (as the MAML code does). With ``learn_inner_lr`` every weight gets its own
learned step size (Meta-SGD, Li et al., 2017), meta-trained with ``theta``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from robometa.algos import baselines
from robometa.algos.base import AdaptationCurve, IterationResult
from robometa.algos.gae import discounted_returns, gae, normalize_per_task
from robometa.algos.trpo import (
    backtracking_line_search,
    composed_fisher_vector_product,
    flat,
    gaussian_kl,
    natural_step,
    unflat,
)
from robometa.configs.maml import MAMLConfig, MAMLPPOConfig, MAMLTRPOConfig
from robometa.policies import BoundActor, GaussianMLPPolicy
from robometa.sampling import EpisodeBatch, Sampler
from robometa.tasks.base import Task, TaskFamily

Params = dict[str, Tensor]

# Tasks per group in the CPU meta-update. One batched pass over all 40 tasks of the
# paper's meta-batch is slower on a CPU than groups of a few tasks, whose activations
# stay in cache (`scripts/bench_maml.py`, meta-gradient column); on a GPU the whole
# meta-batch is one group.
CPU_TASK_CHUNK = 5

# Offset of the evaluation sampler's seed, so evaluating never shifts the training stream.
EVAL_SEED_OFFSET = 1_000_003


# ------------------------------------------------------------------ pure maths


@contextlib.contextmanager
def learner_mode(threads: int | None) -> Iterator[None]:
    """Run the learner with ``threads`` torch threads and denormals flushed to zero.

    Second-order passes through saturated tanh units produce denormal floats, which
    made the meta-update 3.5x slower on this project's x86 CPUs (4 tasks x 10
    episodes, measured). The flag only reaches threads that exist after it is set,
    so one learner thread both sidesteps that and avoids OpenMP barriers on a busy
    2-core machine (measured 4x faster than 2 threads while other jobs ran). Both
    settings are restored afterwards (flush-to-zero to torch's default, off).
    """
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(old)


def masked_task_mean(x: Tensor, masks: Tensor) -> Tensor:
    """``x, masks: (M, N, T)`` -> per-task mean over valid steps, ``(M,)``."""
    return (x * masks).sum(dim=(1, 2)) / masks.sum(dim=(1, 2)).clamp_min(1.0)


def advantages(batch: EpisodeBatch, gamma: float, lam: float) -> Tensor:
    """Per-task normalized GAE advantages on a per-task linear baseline, ``(M, N, T)``."""
    returns = discounted_returns(batch.rewards, batch.masks, gamma)
    values = baselines.fit_predict(batch.obs, returns, batch.masks)
    adv = gae(batch.rewards, values, batch.masks, gamma, lam)
    return normalize_per_task(adv, batch.masks)


def inner_loss(
    policy: GaussianMLPPolicy, params: Mapping[str, Tensor], batch: EpisodeBatch, adv: Tensor
) -> Tensor:
    """Vanilla policy-gradient loss of every task, ``(M,)``; ``params`` carry a task axis."""
    logp = policy.distribution(batch.obs, params, per_task=True).log_prob(batch.actions)
    return -masked_task_mean(logp * adv, batch.masks)


def adapt(
    policy: GaussianMLPPolicy,
    theta: Mapping[str, Tensor],
    step_sizes: Mapping[str, Tensor] | float,
    batches: Sequence[EpisodeBatch],
    advs: Sequence[Tensor],
    create_graph: bool,
    num_tasks: int | None = None,
) -> list[Params]:
    """Inner loop: one policy-gradient step per batch, all tasks at once.

    ``theta``: shared weights (no task axis). ``step_sizes``: a float or per-weight
    tensors shaped like ``theta``. ``batches[k]`` must have been sampled with the
    weights after k steps. Returns the per-task weights after each step, every
    tensor with a leading task axis M. ``create_graph`` keeps the graph of the inner
    gradients, for second-order meta-gradients. With no batches (zero inner steps:
    plain multi-task training) it returns ``[theta]`` expanded to ``num_tasks``.
    """
    M = batches[0].num_tasks if batches else int(num_tasks)
    params: Params = {}
    for name, v in theta.items():
        p = v.unsqueeze(0).expand(M, *v.shape)
        if not p.requires_grad:  # no meta-gradient wanted: a leaf for the inner gradient
            p = p.clone().requires_grad_()
        params[name] = p
    out = []
    for batch, adv in zip(batches, advs):
        loss = inner_loss(policy, params, batch, adv).sum()  # tasks are independent
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
        params = {
            name: p - (step_sizes if isinstance(step_sizes, float) else step_sizes[name]) * g
            for (name, p), g in zip(params.items(), grads)
        }
        out.append(params)
    return out or [params]


def surrogate(
    policy: GaussianMLPPolicy,
    params: Mapping[str, Tensor],
    batch: EpisodeBatch,
    adv: Tensor,
    clip_eps: float | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Importance-weighted (optionally clipped) surrogate loss on post-adaptation episodes.

    Returns the loss (scalar, mean over tasks), and the means ``(M, N, T, act_dim)``
    and stds of the adapted policies, for the KL.
    """
    dist = policy.distribution(batch.obs, params, per_task=True)
    ratio = torch.exp(dist.log_prob(batch.actions) - batch.log_probs)
    obj = ratio * adv
    if clip_eps is not None:
        obj = torch.minimum(obj, ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * adv)
    loss = -masked_task_mean(obj, batch.masks).mean()
    return loss, dist.base_dist.loc, dist.base_dist.scale


def mean_kl(old: tuple[Tensor, Tensor], mean: Tensor, std: Tensor, masks: Tensor) -> Tensor:
    """Mean over tasks of the per-task mean ``KL(old || new)`` on valid steps."""
    return masked_task_mean(gaussian_kl(old[0], old[1], mean, std), masks).mean()


def task_slice(batch: EpisodeBatch, start: int, stop: int) -> EpisodeBatch:
    """The episodes of tasks ``start:stop`` of a batch (views, no copies)."""
    out = {}
    for f in dataclasses.fields(batch):
        v = getattr(batch, f.name)
        if isinstance(v, Tensor):
            out[f.name] = v[start:stop]
        elif f.name == "reward_terms":
            out[f.name] = {name: t[start:stop] for name, t in v.items()}
    return EpisodeBatch(**out, tasks=list(batch.tasks[start:stop]))


@dataclasses.dataclass(frozen=True)
class _Chunk:
    """A group of tasks of a meta-batch, processed together by the meta-update."""

    weight: float  # its share of the meta-batch's tasks (losses are means over tasks)
    tasks: slice
    pre: list[EpisodeBatch]
    pre_advs: list[Tensor]
    post: EpisodeBatch
    post_adv: Tensor

    @classmethod
    def of(cls, pre, pre_advs, post, post_adv, start: int, stop: int) -> _Chunk:
        """Tasks ``start:stop`` of a meta-batch's pre-/post-adaptation batches and advantages."""
        return cls(
            (stop - start) / post.num_tasks,
            slice(start, stop),
            [task_slice(b, start, stop) for b in pre],
            [a[start:stop] for a in pre_advs],
            task_slice(post, start, stop),
            post_adv[start:stop],
        )

    @property
    def size(self) -> int:
        return self.post.num_tasks


def init_policy(policy: GaussianMLPPolicy, generator: torch.Generator) -> None:
    """Re-initialize the linear layers from ``generator`` (PyTorch's default U(+-1/sqrt(fan_in)))."""
    with torch.no_grad():
        for layer in policy.mean:
            if isinstance(layer, torch.nn.Linear):
                bound = 1.0 / math.sqrt(layer.in_features)
                torch.nn.init.uniform_(layer.weight, -bound, bound, generator=generator)
                torch.nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


# ------------------------------------------------------------------ the learner


class MAML:
    """MAML-TRPO (``outer="trpo"``) or MAML-PPO (``outer="ppo"``) on one task family.

    Args:
        family: the task family.
        config: :class:`MAMLTRPOConfig` or :class:`MAMLPPOConfig`.
        device: where the policy and the learner run.
        seed: seeds weights, sampling and evaluation streams.
        sampler_threads: MuJoCo rollout threads (``None``: all cores).
        learner_threads: torch threads of the inner and outer loops on CPU
            (``None``: leave torch's setting).
    """

    def __init__(
        self,
        family: TaskFamily,
        config: MAMLConfig,
        device: str | torch.device = "cpu",
        seed: int = 0,
        sampler_threads: int | None = None,
        learner_threads: int | None = 1,
    ):
        self.family = family
        self.config = config
        self.outer = "ppo" if isinstance(config, MAMLPPOConfig) else "trpo"
        self.name = f"maml-{self.outer}"
        self.curve_x = "adapt_step"  # adaptation is measured per gradient step
        self.sampler = Sampler(family, device, seed=seed, nthread=sampler_threads)
        self.eval_sampler = Sampler(family, device, seed=seed + EVAL_SEED_OFFSET, nthread=sampler_threads)
        self.device = self.sampler.device
        self.learner_threads = learner_threads
        self.task_chunk = CPU_TASK_CHUNK if self.device.type == "cpu" else None
        self.horizon = config.horizon or family.horizon

        gen = torch.Generator().manual_seed(int(seed))
        act_dim = family.layout.nu
        policy = GaussianMLPPolicy(family.obs_dim, act_dim, config.hidden, config.activation, config.init_std)
        init_policy(policy, gen)
        self.policy = policy.to(self.device)
        self.step_sizes: dict[str, Tensor] | None = None
        if config.learn_inner_lr:
            self.step_sizes = {
                name: torch.full_like(p, config.inner_lr).requires_grad_()
                for name, p in self.policy.named_parameters()
            }
        self.optimizer = None
        if isinstance(config, MAMLPPOConfig):
            self.optimizer = torch.optim.Adam(self.meta_parameters(), lr=config.outer_lr)

    # ---------------------------------------------------------------- parameters
    @property
    def trained_steps(self) -> int:
        """Inner gradient steps of meta-training (``inner_steps``)."""
        return int(self.config.inner_steps)

    @property
    def learner_threads(self) -> int | None:
        """Torch threads of the inner and outer loops (``None``: leave torch's setting, always so off CPU)."""
        return self._learner_threads

    @learner_threads.setter
    def learner_threads(self, threads: int | None) -> None:
        self._learner_threads = threads if self.device.type == "cpu" else None

    def theta(self) -> Params:
        return dict(self.policy.named_parameters())

    def meta_parameters(self) -> list[Tensor]:
        """What the outer loop updates: policy weights, then learned step sizes."""
        params = list(self.policy.parameters())
        if self.step_sizes is not None:
            params += list(self.step_sizes.values())
        return params

    def _step_sizes(self, detach: bool = False) -> Mapping[str, Tensor] | float:
        if self.step_sizes is None:
            return float(self.config.inner_lr)
        return {k: v.detach() for k, v in self.step_sizes.items()} if detach else self.step_sizes

    # ---------------------------------------------------------------- sampling + adaptation
    def _rollouts(
        self, sampler: Sampler, tasks: Sequence[Task], steps: int, episodes: int, timer: dict[str, float]
    ) -> tuple[list[EpisodeBatch], list[Tensor]]:
        """Sample with theta, then adapt and sample ``steps`` times; batches 0..steps and their advantages."""
        cfg = self.config
        theta = {k: v.detach() for k, v in self.theta().items()}
        lrs = self._step_sizes(detach=True)
        batches: list[EpisodeBatch] = []
        advs: list[Tensor] = []
        actor = BoundActor(self.policy, None)
        for k in range(steps + 1):
            t0 = time.perf_counter()
            batch = sampler.sample(actor, tasks, episodes, self.horizon).to(self.device)
            t1 = time.perf_counter()
            timer["sampling"] += t1 - t0
            batches.append(batch)
            advs.append(advantages(batch, cfg.gamma, cfg.gae_lambda))
            if k < steps:
                with torch.enable_grad(), learner_mode(self.learner_threads):
                    params = adapt(self.policy, theta, lrs, batches, advs, create_graph=False)[-1]
                actor = BoundActor(self.policy, {n: p.detach() for n, p in params.items()}, per_task=True)
            timer["inner"] += time.perf_counter() - t1
        return batches, advs

    def adaptation_curve(self, tasks: Sequence[Task], steps: int, split: str = "test") -> AdaptationCurve:
        """Held-out style evaluation: adapt ``steps`` gradient steps on every task, no meta-update."""
        timer = {"sampling": 0.0, "inner": 0.0}
        batches, _ = self._rollouts(self.eval_sampler, tasks, steps, self.config.episodes_per_task, timer)
        return self._curve(batches, split)

    def adaptation_data(
        self, tasks: Sequence[Task], steps: int, seed: int, record_states: bool = False
    ) -> dict[str, Any]:
        """Per-task evaluation data for ``robometa evaluate`` / ``replay`` (no meta-update).

        Returns ``returns``/``success`` ``(M, steps+1)`` (mean over each task's
        episodes), and with ``record_states`` the states ``(steps+1, M, T+1, nstate)``
        and rewards ``(steps+1, M, T)`` of every task's first episode at each step.
        """
        sampler = Sampler(
            self.family, self.device, seed=seed + EVAL_SEED_OFFSET, nthread=self.sampler.nthread
        )
        sampler.record_states = record_states
        timer = {"sampling": 0.0, "inner": 0.0}
        batches, _ = self._rollouts(sampler, tasks, steps, self.config.episodes_per_task, timer)
        out: dict[str, Any] = {
            "x": "adapt_step",
            "episodes_per_step": self.config.episodes_per_task,
            "returns": torch.stack([b.returns.mean(1) for b in batches], 1).cpu().numpy(),
            "success": (
                torch.stack([b.success.mean(1) for b in batches], 1).cpu().numpy()
                if self.family.has_success
                else None
            ),
        }
        if record_states:
            out["states"] = torch.stack([b.states[:, 0] for b in batches]).cpu().numpy()
            out["rewards"] = torch.stack([b.rewards[:, 0] for b in batches]).cpu().numpy()
        return out

    def _curve(self, batches: Sequence[EpisodeBatch], split: str) -> AdaptationCurve:
        per_task = [b.returns.mean(dim=1) for b in batches]  # (M,) each
        return AdaptationCurve(
            split=split,
            x="adapt_step",
            steps=list(range(len(batches))),
            return_mean=[float(r.mean()) for r in per_task],
            return_std=[float(r.std(unbiased=False)) for r in per_task],
            success_mean=[float(b.success.mean()) for b in batches] if self.family.has_success else None,
        )

    # ---------------------------------------------------------------- one meta-iteration
    def iteration(self, tasks: Sequence[Task]) -> IterationResult:
        cfg = self.config
        timer = {"sampling": 0.0, "inner": 0.0}
        batches, advs = self._rollouts(self.sampler, tasks, cfg.inner_steps, cfg.episodes_per_task, timer)
        t0 = time.perf_counter()
        pre, pre_advs, post, post_adv = batches[:-1], advs[:-1], batches[-1], advs[-1]
        with learner_mode(self.learner_threads):
            if self.outer == "trpo":
                metrics = self._trpo_update(pre, pre_advs, post, post_adv)
            else:
                metrics = self._ppo_update(pre, pre_advs, post, post_adv)
        t_outer = time.perf_counter() - t0
        env_steps = sum(b.env_steps for b in batches)
        with torch.no_grad():
            log_std = self.policy.log_std
            entropy = float((log_std + 0.5 * math.log(2 * math.pi * math.e)).sum())
            lr = self._step_sizes(detach=True)
            mean_lr = lr if isinstance(lr, float) else float(flat(list(lr.values())).mean())
        metrics.update(
            {
                "train/entropy": entropy,
                "train/policy_std": float(log_std.detach().exp().mean()),
                "train/inner_lr": mean_lr,
                "time/sampling": timer["sampling"],
                "time/inner": timer["inner"],
                "time/outer": t_outer,
                "time/learner_over_sampling": (timer["inner"] + t_outer) / max(timer["sampling"], 1e-9),
                "sim/steps_per_s": env_steps / max(timer["sampling"], 1e-9),
            }
        )
        metrics.update(self.sampler.pop_metrics())  # sim/instabilities
        return IterationResult(curve=self._curve(batches, "train"), metrics=metrics, env_steps=env_steps)

    def _chunks(self, pre, pre_advs, post, post_adv) -> list[_Chunk]:
        """The meta-batch cut into groups of ``task_chunk`` tasks (one group on a GPU)."""
        M = post.num_tasks
        size = self.task_chunk or M
        return [_Chunk.of(pre, pre_advs, post, post_adv, a, min(a + size, M)) for a in range(0, M, size)]

    def _adapt(self, c: _Chunk, create_graph: bool) -> Params:
        """The chunk's tasks' weights after the inner steps from theta."""
        return adapt(self.policy, self.theta(), self._step_sizes(), c.pre, c.pre_advs, create_graph, c.size)[
            -1
        ]

    def _meta_loss(self, c: _Chunk, create_graph: bool, clip_eps: float | None = None):
        """Adapt the chunk's tasks from theta and evaluate the surrogate on their post-update episodes."""
        return surrogate(self.policy, self._adapt(c, create_graph), c.post, c.post_adv, clip_eps)

    def _evaluate(
        self, chunks: list[_Chunk], old: tuple[Tensor, Tensor], clip_eps=None
    ) -> tuple[float, float]:
        """Surrogate loss and mean KL to ``old`` at the current weights, no meta-gradient."""
        loss = kl = 0.0
        for c in chunks:
            new_loss, new_mean, new_std = self._meta_loss(c, create_graph=False, clip_eps=clip_eps)
            loss += c.weight * float(new_loss.detach())
            kl += c.weight * float(
                mean_kl((old[0][c.tasks], old[1][c.tasks]), new_mean.detach(), new_std.detach(), c.post.masks)
            )
        return loss, kl

    def _trpo_update(self, pre, pre_advs, post, post_adv) -> dict[str, float]:
        cfg = self.config
        assert isinstance(cfg, MAMLTRPOConfig)
        t0 = time.perf_counter()
        meta = self.meta_parameters()
        chunks = self._chunks(pre, pre_advs, post, post_adv)
        # Meta-gradient, chunk by chunk. The surrogate sees detached copies of the
        # adapted weights; gradients reach theta through the graph of phi(theta).
        grads, loss0, means, stds = None, 0.0, [], []
        for c in chunks:
            phi = self._adapt(c, create_graph=not cfg.first_order)
            leaves = {k: v.detach().requires_grad_() for k, v in phi.items()}
            loss, mean, std = surrogate(self.policy, leaves, c.post, c.post_adv)
            grad_phi = torch.autograd.grad(c.weight * loss, list(leaves.values()))
            g = flat(torch.autograd.grad(list(phi.values()), meta, grad_outputs=grad_phi))
            grads = g if grads is None else grads + g
            loss0 += c.weight * float(loss.detach())
            means.append(mean.detach())
            stds.append(std.detach())
        old = (torch.cat(means), torch.cat(stds))
        del phi, leaves, loss, grad_phi  # free the last chunk's second-order graph
        t1 = time.perf_counter()
        # Fisher of the first k tasks (tasks are drawn i.i.d., so any k are a fair sample).
        M = post.num_tasks
        k = max(1, round(cfg.fisher_subsample * M))
        fisher = _Chunk.of(pre, pre_advs, post, post_adv, 0, k)
        phi = self._adapt(fisher, create_graph=not cfg.first_order)
        leaves = {n: v.detach().requires_grad_() for n, v in phi.items()}
        dist = self.policy.distribution(fisher.post.obs, leaves, per_task=True)
        kl = mean_kl((old[0][:k], old[1][:k]), dist.base_dist.loc, dist.base_dist.scale, fisher.post.masks)
        fvp = composed_fisher_vector_product(
            kl, list(leaves.values()), list(phi.values()), meta, cfg.cg_damping
        )
        step = natural_step(fvp, grads, cfg.max_kl, cfg.cg_iters)
        expected = float(-(grads @ step))
        del fvp, phi, leaves, kl, dist  # frees the second-order graphs before the line search
        x0 = flat([p.detach() for p in meta]).clone()
        t2 = time.perf_counter()

        def evaluate(x: Tensor) -> tuple[float, float]:
            self._write(x)
            return self._evaluate(chunks, old)

        x, result = backtracking_line_search(
            evaluate,
            x0,
            step,
            loss0,
            cfg.max_kl,
            cfg.ls_backtrack_ratio,
            cfg.ls_max_backtracks,
        )
        self._write(x)
        return {
            "time/outer_meta_gradient": t1 - t0,
            "time/outer_natural_step": t2 - t1,  # Fisher, conjugate gradient
            "time/outer_line_search": time.perf_counter() - t2,
            "loss/outer_before": loss0,
            "loss/outer_after": result.loss,
            "loss/expected_improvement": expected,
            "train/kl": result.kl,
            "train/grad_norm": float(grads.norm()),
            "train/line_search_accepted": float(result.accepted),
            "train/line_search_step_fraction": result.step_fraction,
            "train/line_search_backtracks": float(result.backtracks),
        }

    def _write(self, x: Tensor) -> None:
        with torch.no_grad():
            for p, v in zip(self.meta_parameters(), unflat(x, self.meta_parameters())):
                p.copy_(v)

    def _ppo_update(self, pre, pre_advs, post, post_adv) -> dict[str, float]:
        cfg = self.config
        assert isinstance(cfg, MAMLPPOConfig) and self.optimizer is not None
        chunks = self._chunks(pre, pre_advs, post, post_adv)
        old: tuple[Tensor, Tensor] | None = None
        first_loss = 0.0
        for epoch in range(cfg.ppo_epochs):
            self.optimizer.zero_grad()
            means, stds = [], []
            for c in chunks:  # gradients accumulate over the chunks: one Adam step per epoch
                loss, mean, std = self._meta_loss(c, create_graph=not cfg.first_order, clip_eps=cfg.clip_eps)
                (c.weight * loss).backward()
                if epoch == 0:
                    first_loss += c.weight * float(loss.detach())
                    means.append(mean.detach())
                    stds.append(std.detach())
            if epoch == 0:
                old = (torch.cat(means), torch.cat(stds))
            self.optimizer.step()
        assert old is not None
        last_loss, kl = self._evaluate(chunks, old, clip_eps=cfg.clip_eps)
        return {"loss/outer_before": first_loss, "loss/outer_after": last_loss, "train/kl": kl}

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "policy": {k: v.detach().cpu().clone() for k, v in self.policy.state_dict().items()},
            "step_sizes": None
            if self.step_sizes is None
            else {k: v.detach().cpu().clone() for k, v in self.step_sizes.items()},
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
            "sampler": self.sampler.state_dict(),
            "eval_sampler": self.eval_sampler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        if self.step_sizes is not None:
            with torch.no_grad():
                for k, v in self.step_sizes.items():
                    v.copy_(state["step_sizes"][k])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        self.eval_sampler.load_state_dict(state["eval_sampler"])

    def hparams(self) -> dict[str, float | int | str | bool]:
        out: dict[str, Any] = {"algo": self.name, "family": self.family.name}
        for k, v in vars(self.config).items():
            out[k] = str(list(v)) if isinstance(v, tuple) else (self.horizon if k == "horizon" else v)
        return out
