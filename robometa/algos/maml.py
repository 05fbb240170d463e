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
     It is not ProMP: the inner loss is MAML's unless ``inner_objective`` is ``lvc``
     (ProMP's), and the inner update carries no KL penalty.

Inner loss per task: ``-mean_t log pi_phi(a_t|s_t) A_t`` over valid steps, with
advantages from GAE(gamma, lambda) on the per-task linear baseline, normalized per
task (as the MAML code does); ``inner_objective: lvc`` swaps in ProMP's LVC form of
it (same step, a meta-gradient that credits the pre-update policy's exploration).
With ``learn_inner_lr`` every weight gets its own learned step size (Meta-SGD, Li et
al., 2017), meta-trained with ``theta``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from robometa.algos import baselines
from robometa.algos.base import (
    ADAPT_STEP,
    AdaptationCurve,
    AdaptationData,
    IterationResult,
    MetaLearner,
    Stopwatch,
    term_metrics,
    throughput,
)
from robometa.algos.gae import discounted_returns, gae, normalize_per_task
from robometa.algos.maml_config import MAMLConfig, MAMLPPOConfig, MAMLTRPOConfig
from robometa.algos.trpo import (
    backtracking_line_search,
    flat,
    gaussian_kl,
    natural_step,
    unflat,
)
from robometa.policies import BoundActor, GaussianMLPPolicy
from robometa.sampling import EpisodeBatch, Sampler
from robometa.tasks.base import Task, TaskFamily

Params = dict[str, Tensor]

# Tasks per group in the CPU meta-update. One batched pass over all 40 tasks of the
# paper's meta-batch is slower on a CPU than groups of a few tasks, whose activations
# stay in cache (`scripts/bench_maml.py`, meta-gradient column); on a GPU the whole
# meta-batch is one group.
CPU_TASK_CHUNK = 5

log = logging.getLogger(__name__)


def precision_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The dtype of the learner's matrix products for a ``*_precision`` setting.

    ``float32``: the weights' own dtype (``None``); ``bfloat16``; ``auto``: bfloat16
    on a CPU with AMX tiles (where it pays: a 20,000 x 100 x 100 product took 1.5 ms
    against 5.4 ms in float32 on this project's Xeon), float32 elsewhere.
    """
    if precision == "auto":
        amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        precision = "bfloat16" if device.type == "cpu" and amx() else "float32"
    return {"float32": None, "bfloat16": torch.bfloat16}[precision]


@functools.cache
def compiler_available() -> bool:
    """Whether ``torch.compile`` can build CPU kernels (inductor's are C++): a C++
    compiler on PATH (or ``$CXX``). Says so in the log, once, when there is none."""
    ok = any(n and shutil.which(n) for n in (os.environ.get("CXX", ""), "c++", "g++", "clang++"))
    if not ok:
        log.warning("compile_learner: no C++ compiler on PATH (set CXX); the learner runs uncompiled")
    return ok


@functools.cache
def compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` under ``torch.compile``, once per process.

    One graph per argument shapes and constants (``dynamic=False`` keeps the kernels
    specialized to the chunk sizes) and per grad mode. ``cpp.use_decompose_tanh``:
    inductor's own vectorized tanh took 5.7 ms per 2M floats on this project's Xeon
    against 1.0 ms eager, a third of a compiled line-search pass; its exp-based
    tanh takes 1.4 ms and is within 2e-7 of ``torch.tanh`` (absolute).
    """
    return torch.compile(fn, fullgraph=True, dynamic=False, options={"cpp.use_decompose_tanh": True})


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


def advantages(batch: EpisodeBatch, gamma: float, lam: float, normalize: bool = True) -> Tensor:
    """GAE advantages on a per-task linear baseline, ``(M, N, T)``, normalized per task
    (zero mean, unit standard deviation) unless ``normalize`` is false (then in the
    reward's units, 0 on padding)."""
    returns = discounted_returns(batch.rewards, batch.masks, gamma)
    values = baselines.fit_predict(batch.obs, returns, batch.masks)
    adv = gae(batch.rewards, values, batch.masks, gamma, lam)
    return normalize_per_task(adv, batch.masks) if normalize else adv * batch.masks


def inner_loss(
    policy: GaussianMLPPolicy,
    params: Mapping[str, Tensor],
    batch: EpisodeBatch,
    adv: Tensor,
    matmul_dtype: torch.dtype | None = None,
    objective: str = "vpg",
) -> Tensor:
    """Policy-gradient loss of every task, ``(M,)``; ``params`` carry a task axis.

    ``objective``: ``vpg``, MAML's ``-mean_t log pi(a_t|s_t) A_t``; ``lvc``, the
    low-variance curvature (LVC) objective of ProMP (Rothfuss et al., 2019)
    ``-mean_t [pi(a_t|s_t) / stop_grad(pi(a_t|s_t))] A_t``, with this learner's
    advantages in place of ProMP's reward-to-go. Both have the same value's gradient
    at ``params`` (the ratio is exactly 1 there), so the inner step is bit-identical;
    the LVC loss's Hessian adds ``-mean_t A_t grad log pi_t grad log pi_t^T``, the
    term through which the meta-gradient credits the pre-update policy for the
    episodes it samples (its exploration), which MAML's loss leaves out.
    """
    logp = policy.log_prob(batch.obs, batch.actions, params, per_task=True, matmul_dtype=matmul_dtype)[0]
    if objective == "lvc":
        return -masked_task_mean(torch.exp(logp - logp.detach()) * adv, batch.masks)
    return -masked_task_mean(logp * adv, batch.masks)


def inner_gradient(
    policy: GaussianMLPPolicy,
    params: Mapping[str, Tensor],
    batch: EpisodeBatch,
    adv: Tensor,
    matmul_dtype: torch.dtype | None = None,
    objective: str = "vpg",
) -> Params:
    """Every task's inner-loss gradient at its own weights: ``params`` and the result carry a task axis.

    ``torch.func.grad`` builds the same graph as ``torch.autograd.grad(...,
    create_graph=True)`` (bit-identical results) and, unlike it, traces into one
    graph under ``torch.compile``. Differentiating the result w.r.t. ``params``
    again gives Hessian-vector products of the inner loss.
    """

    def loss(p: Mapping[str, Tensor]) -> Tensor:
        return inner_loss(policy, p, batch, adv, matmul_dtype, objective).sum()  # tasks are independent

    return torch.func.grad(loss)(dict(params))


def adapt(
    policy: GaussianMLPPolicy,
    theta: Mapping[str, Tensor],
    step_sizes: Mapping[str, Tensor] | float,
    batches: Sequence[EpisodeBatch],
    advs: Sequence[Tensor],
    create_graph: bool,
    num_tasks: int | None = None,
    matmul_dtype: torch.dtype | None = None,
    objective: str = "vpg",
) -> list[Params]:
    """Inner loop: one policy-gradient step per batch, all tasks at once.

    ``theta``: shared weights (no task axis). ``step_sizes``: a float or per-weight
    tensors shaped like ``theta``. ``batches[k]`` must have been sampled with the
    weights after k steps. Returns the per-task weights after each step, every
    tensor with a leading task axis M. ``create_graph`` keeps the graph of the inner
    gradients, for second-order meta-gradients; without it they are constants and
    only the steps themselves reach ``theta``'s graph (first-order MAML). With no
    batches (zero inner steps: plain multi-task training) it returns ``[theta]``
    expanded to ``num_tasks``. ``objective``: the inner loss (:func:`inner_loss`).
    """
    M = batches[0].num_tasks if batches else int(num_tasks)
    params: Params = {name: v.unsqueeze(0).expand(M, *v.shape) for name, v in theta.items()}
    out = []
    for batch, adv in zip(batches, advs):
        at = params if create_graph else {k: v.detach() for k, v in params.items()}
        grads = inner_gradient(policy, at, batch, adv, matmul_dtype, objective)
        params = {name: p - _step(step_sizes, name) * grads[name] for name, p in params.items()}
        out.append(params)
    return out or [params]


def _step(step_sizes: Mapping[str, Tensor] | float, name: str) -> Tensor | float:
    return step_sizes if isinstance(step_sizes, float) else step_sizes[name]


def kl_gradient(
    policy: GaussianMLPPolicy,
    params: Mapping[str, Tensor],
    batch: EpisodeBatch,
    old: tuple[Tensor, Tensor],
    matmul_dtype: torch.dtype | None = None,
) -> Params:
    """Gradient w.r.t. per-task ``params`` of the :func:`mean_kl` from ``old`` on ``batch``.

    With ``old`` the policy at ``params`` itself, the gradient is zero, and
    differentiating it once more gives Fisher-vector products (see :func:`meta_fisher`).
    """

    def kl(p: Mapping[str, Tensor]) -> Tensor:
        mean, log_std = policy.mean_log_std(batch.obs, p, True, matmul_dtype)
        return mean_kl(old, mean, log_std.exp(), batch.masks)

    return torch.func.grad(kl)(dict(params))


def meta_fisher(
    policy: GaussianMLPPolicy,
    theta: Mapping[str, Tensor],
    step_sizes: Mapping[str, Tensor] | float,
    pre: Sequence[EpisodeBatch],
    pre_advs: Sequence[Tensor],
    post: EpisodeBatch,
    first_order: bool,
    damping: float,
    matmul_dtype: torch.dtype | None = None,
    grad_fns: tuple[Callable[..., Params], Callable[..., Params]] = (inner_gradient, kl_gradient),
    objective: str = "vpg",
) -> Callable[[Tensor], Tensor]:
    """``v -> (F + damping I) v``: the Hessian of the mean KL of the adapted policies
    (``KL(pi_phi(theta_0) || pi_phi(theta))`` on ``post``) w.r.t. the meta-parameters
    at ``theta_0``, times ``v: (P,)``.

    The meta-parameters are ``theta``'s tensors, then ``step_sizes``' when those are
    tensors (Meta-SGD). At ``theta_0`` the KL and its gradient vanish, so the
    Hessian is exactly ``J^T F_phi J`` with ``F_phi`` the Fisher of the adapted
    policies and ``J = d phi / d theta`` (TRPO's product through MAML's inner steps).
    Each inner step ``p' = p - a * g(p)`` maps a tangent ``t`` of ``p`` (and ``u`` of
    ``a``) to ``t - a * H t - g * u``, ``H`` the inner loss's Hessian at ``p``; since
    ``H`` is symmetric, ``J^T`` runs the same Hessian-vector products in reverse
    order. So one product is ``2K`` Hessian-vector products on the graphs of the
    inner gradients and one on the graph of the KL's gradient, all built once here
    (first order: ``H = 0``). ``grad_fns`` computes those gradients: compiled
    variants of :func:`inner_gradient` and :func:`kl_gradient` make every product a
    pass through compiled backward graphs. ``objective``: the inner loss
    (:func:`inner_loss`); under ``lvc``, ``H`` is the LVC loss's Hessian.
    """
    inner_grad, kl_grad = grad_fns
    names = list(theta)
    learned = not isinstance(step_sizes, float)
    M = post.num_tasks
    starts, grads = [], []
    p = {k: v.detach().unsqueeze(0).expand(M, *v.shape).contiguous() for k, v in theta.items()}
    lrs = {k: (v.detach() if learned else v) for k, v in ((n, _step(step_sizes, n)) for n in names)}
    for batch, adv in zip(pre, pre_advs):
        p = {k: v.requires_grad_(not first_order) for k, v in p.items()}
        g = inner_grad(policy, p, batch, adv, matmul_dtype, objective)
        starts.append(p)
        grads.append(g)
        p = {k: (p[k] - lrs[k] * g[k]).detach() for k in names}
    with torch.no_grad():
        mean, log_std = policy.mean_log_std(post.obs, p, True, matmul_dtype)
    phi = {k: v.requires_grad_() for k, v in p.items()}
    kl_g = kl_grad(policy, phi, post, (mean, log_std.exp()), matmul_dtype)

    def hvp(k: int, t: Mapping[str, Tensor]) -> dict[str, Tensor]:
        if first_order:
            return {n: torch.zeros_like(t[n]) for n in names}
        out = torch.autograd.grad(
            [grads[k][n] for n in names],
            [starts[k][n] for n in names],
            [t[n] for n in names],
            retain_graph=True,
        )
        return dict(zip(names, out))

    def fvp(v: Tensor) -> Tensor:
        vs = unflat(v, [*theta.values(), *(step_sizes.values() if learned else [])])
        t = {n: vs[i].unsqueeze(0).expand(M, *vs[i].shape) for i, n in enumerate(names)}
        u = dict(zip(names, vs[len(names) :]))
        for k in range(len(starts)):  # J v, forward through the steps
            h = hvp(k, t)
            t = {n: t[n] - lrs[n] * h[n] - (grads[k][n].detach() * u[n] if learned else 0.0) for n in names}
        fw = torch.autograd.grad(
            [kl_g[n] for n in names], [phi[n] for n in names], [t[n] for n in names], retain_graph=True
        )
        w = dict(zip(names, fw))
        lr_parts = []
        for k in reversed(range(len(starts))):  # J^T w, backward through the steps
            if learned:
                lr_parts.insert(0, {n: -(grads[k][n].detach() * w[n]).sum(0) for n in names})
            h = hvp(k, {n: lrs[n] * w[n] for n in names})
            w = {n: w[n] - h[n] for n in names}
        out = [w[n].sum(0) for n in names]
        if learned:
            out += [sum(part[n] for part in lr_parts) for n in names]
        return flat(out) + damping * v

    return fvp


def surrogate(
    policy: GaussianMLPPolicy,
    params: Mapping[str, Tensor],
    batch: EpisodeBatch,
    adv: Tensor,
    clip_eps: float | None = None,
    matmul_dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Importance-weighted (optionally clipped) surrogate loss on post-adaptation episodes.

    Returns the loss (scalar, mean over tasks), and the means ``(M, N, T, act_dim)``
    and stds ``(M, 1, 1, act_dim)`` of the adapted policies, for the KL.
    """
    logp, mean, log_std = policy.log_prob(batch.obs, batch.actions, params, True, matmul_dtype)
    ratio = torch.exp(logp - batch.log_probs)
    obj = ratio * adv
    if clip_eps is not None:
        obj = torch.minimum(obj, ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * adv)
    loss = -masked_task_mean(obj, batch.masks).mean()
    return loss, mean, log_std.exp()


def meta_loss(
    policy: GaussianMLPPolicy,
    theta: Mapping[str, Tensor],
    step_sizes: Mapping[str, Tensor] | float,
    pre: Sequence[EpisodeBatch],
    pre_advs: Sequence[Tensor],
    post: EpisodeBatch,
    post_adv: Tensor,
    first_order: bool,
    clip_eps: float | None = None,
    matmul_dtype: torch.dtype | None = None,
    objective: str = "vpg",
) -> tuple[Tensor, Tensor, Tensor]:
    """MAML's meta-objective: adapt ``theta`` on ``pre``, then :func:`surrogate` on ``post``.

    A pure function of its tensors, so the whole pass (and its backward, the
    meta-gradient) can be one ``torch.compile`` graph; see :class:`MAML`'s
    ``compile_learner``.
    """
    phi = adapt(
        policy, theta, step_sizes, pre, pre_advs, not first_order, post.num_tasks, matmul_dtype, objective
    )[-1]
    return surrogate(policy, phi, post, post_adv, clip_eps, matmul_dtype)


def mean_kl(old: tuple[Tensor, Tensor], mean: Tensor, std: Tensor, masks: Tensor) -> Tensor:
    """Mean over tasks of the per-task mean ``KL(old || new)`` on valid steps.

    ``old = (mean, std)``; stds may be ``(M, 1, 1, act_dim)``, broadcast against the means.
    """
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


class GradientLearner(MetaLearner):
    """What the gradient-based learners (MAML, Meta-LSTM, Reptile) share: a Gaussian MLP
    policy (``config.hidden``, ``activation``, ``init_std``) drawn from the seed, the
    family's sampler, adaptation measured per inner gradient step, and a torch thread
    setting for the learner on a CPU."""

    curve_x = ADAPT_STEP  # adaptation is measured per gradient step

    def setup(
        self,
        family: TaskFamily,
        config: Any,
        device: str | torch.device,
        seed: int,
        sampler_threads: int | None,
        learner_threads: int | None,
        backend: str,
    ) -> None:
        """Sets ``family``, ``config``, ``sampler``, ``device``, ``learner_threads``,
        ``horizon`` and ``policy`` (on ``device``; weights from a generator of ``seed``)."""
        self.family = family
        self.config = config
        self.sampler = Sampler(family, device, seed=seed, nthread=sampler_threads, backend=backend)
        self.device = self.sampler.device
        self.learner_threads = learner_threads
        self.horizon = config.horizon or family.horizon
        policy = GaussianMLPPolicy(
            family.obs_dim,
            self.sampler.act_dim,
            config.hidden,
            config.activation,
            config.init_std,
            normalize_obs=config.normalize_obs,
        )
        init_policy(policy, torch.Generator().manual_seed(int(seed)))
        self.policy = policy.to(self.device)

    def merge_obs_statistics(self, batches: Sequence[EpisodeBatch]) -> None:
        """With ``normalize_obs``, merge the observations of an iteration's training
        ``batches`` into the policy's statistics; call it after the iteration's update,
        so that the policy is one function within an iteration. Else nothing."""
        if self.policy.normalize_obs:
            for b in batches:
                self.policy.update_obs_statistics(b.obs, b.masks)

    @property
    def trained_steps(self) -> int:
        """Inner gradient steps of meta-training (``inner_steps``)."""
        return int(self.config.inner_steps)

    def adaptation_batches(
        self, tasks: Sequence[Task], steps: int, seed: int, record_states: bool = False
    ) -> list[EpisodeBatch]:
        """The episodes of the adaptation protocol: ``steps`` gradient steps on every task,
        no meta-update; ``batches[k]`` holds ``episodes_per_task`` episodes of each task
        after ``k`` steps (``k = 0..steps``), sampled on the streams of evaluation seed
        ``seed`` (with ``record_states``, their physics states too)."""
        sampler = self.evaluation_sampler(seed)
        sampler.record_states = record_states
        return self._adaptation_rollouts(sampler, tasks, steps)

    def _adaptation_rollouts(self, sampler: Sampler, tasks: Sequence[Task], steps: int) -> list[EpisodeBatch]:
        """Batches 0..``steps`` of :meth:`adaptation_batches`, sampled with ``sampler``."""
        raise NotImplementedError

    def adaptation_data(
        self, tasks: Sequence[Task], steps: int, seed: int, record_states: bool = False
    ) -> AdaptationData:
        """:meth:`adaptation_batches` as per-task means (``returns`` / ``success``), and
        with ``record_states`` every task's first episode at each step."""
        batches = self.adaptation_batches(tasks, steps, seed, record_states)
        return AdaptationData.from_episodes(self.curve_x, batches, self.family.has_success)

    @property
    def learner_threads(self) -> int | None:
        """Torch threads of the inner and outer loops (``None``: leave torch's setting, always so off CPU)."""
        return self._learner_threads

    @learner_threads.setter
    def learner_threads(self, threads: int | None) -> None:
        self._learner_threads = threads if self.device.type == "cpu" else None


class MAML(GradientLearner):
    """MAML-TRPO (``outer="trpo"``) or MAML-PPO (``outer="ppo"``) on one task family.

    Args:
        family: the task family.
        config: :class:`MAMLTRPOConfig` or :class:`MAMLPPOConfig`.
        device: where the policy and the learner run.
        seed: seeds weights and sampling (evaluation samples on streams of its own
            seed: :meth:`adaptation_data`).
        sampler_threads: MuJoCo rollout threads (``None``: all cores).
        learner_threads: torch threads of the inner and outer loops on CPU
            (``None``: leave torch's setting).
        backend: the simulator backend the samplers use (:func:`robometa.sim.simulator_names`).
    """

    def __init__(
        self,
        family: TaskFamily,
        config: MAMLConfig,
        device: str | torch.device = "cpu",
        seed: int = 0,
        sampler_threads: int | None = None,
        learner_threads: int | None = 1,
        backend: str = "batch",
    ):
        self.outer = "ppo" if isinstance(config, MAMLPPOConfig) else "trpo"
        self.name = f"maml-{self.outer}"
        self.setup(family, config, device, seed, sampler_threads, learner_threads, backend)
        self.task_chunk = CPU_TASK_CHUNK if self.device.type == "cpu" else None
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
        self, sampler: Sampler, tasks: Sequence[Task], steps: int, episodes: int, watch: Stopwatch
    ) -> tuple[list[EpisodeBatch], list[Tensor]]:
        """Sample with theta, then adapt and sample ``steps`` times; batches 0..steps and their advantages."""
        cfg = self.config
        theta = {k: v.detach() for k, v in self.theta().items()}
        lrs = self._step_sizes(detach=True)
        batches: list[EpisodeBatch] = []
        advs: list[Tensor] = []
        actor = BoundActor(self.policy, None)
        for k in range(steps + 1):
            with watch("sampling"):
                batch = sampler.sample(actor, tasks, episodes, self.horizon).to(self.device)
            with watch("inner"):
                batches.append(batch)
                # The post-update batch (k == steps) feeds the outer loss: always standardized.
                normalize = cfg.normalize_inner_advantages or k == steps
                advs.append(advantages(batch, cfg.gamma, cfg.gae_lambda, normalize))
                if k < steps:
                    with torch.no_grad(), learner_mode(self.learner_threads):
                        params = self._adapted(theta, lrs, batches, advs)
                    actor = BoundActor(self.policy, params, per_task=True)
        return batches, advs

    def _adaptation_rollouts(self, sampler: Sampler, tasks: Sequence[Task], steps: int) -> list[EpisodeBatch]:
        return self._rollouts(sampler, tasks, steps, self.config.episodes_per_task, Stopwatch())[0]

    def _curve(self, batches: Sequence[EpisodeBatch], split: str) -> AdaptationCurve:
        per_task = [b.returns.mean(dim=1) for b in batches]  # (M,) each
        return AdaptationCurve(
            split=split,
            x=self.curve_x,
            steps=list(range(len(batches))),
            return_mean=[float(r.mean()) for r in per_task],
            return_std=[float(r.std(unbiased=False)) for r in per_task],
            success_mean=[float(b.success.mean()) for b in batches] if self.family.has_success else None,
        )

    # ---------------------------------------------------------------- one meta-iteration
    def iteration(self, tasks: Sequence[Task]) -> IterationResult:
        cfg = self.config
        watch = Stopwatch()
        batches, advs = self._rollouts(self.sampler, tasks, cfg.inner_steps, cfg.episodes_per_task, watch)
        pre, pre_advs, post, post_adv = batches[:-1], advs[:-1], batches[-1], advs[-1]
        with watch("outer"), learner_mode(self.learner_threads):
            if self.outer == "trpo":
                metrics = self._trpo_update(pre, pre_advs, post, post_adv)
            else:
                metrics = self._ppo_update(pre, pre_advs, post, post_adv)
        self.merge_obs_statistics(batches)
        seconds = watch.seconds
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
                "time/sampling": seconds["sampling"],
                "time/inner": seconds["inner"],
                "time/outer": seconds["outer"],
                **throughput(seconds["sampling"], seconds["inner"] + seconds["outer"], env_steps),
            }
        )
        metrics.update(self.sampler.pop_metrics())  # sim/instabilities
        metrics.update(term_metrics(self.curve_x, [b.reward_terms for b in batches]))
        return IterationResult(curve=self._curve(batches, "train"), metrics=metrics, env_steps=env_steps)

    def _chunks(self, pre, pre_advs, post, post_adv) -> list[_Chunk]:
        """The meta-batch cut into groups of ``task_chunk`` tasks (one group on a GPU)."""
        M = post.num_tasks
        size = self.task_chunk or M
        return [_Chunk.of(pre, pre_advs, post, post_adv, a, min(a + size, M)) for a in range(0, M, size)]

    def _adapted(self, theta: Params, lrs, batches: Sequence[EpisodeBatch], advs: Sequence[Tensor]) -> Params:
        """Every task's weights after the inner steps, for sampling (no meta-gradient).

        Chunked like the meta-update: at the paper's sizes one pass over all 40 tasks
        took 0.72 s against 0.45 s in groups of 5, with identical results (each
        task's products and sums never mix with another task's); under ``no_grad``
        (``torch.func.grad`` still differentiates inside) 0.25-0.29 s.
        """
        M = batches[0].num_tasks
        size = self.task_chunk or M
        parts = [
            adapt(
                self.policy,
                theta,
                lrs,
                [task_slice(b, a, min(a + size, M)) for b in batches],
                [v[a : a + size] for v in advs],
                create_graph=False,
            )[-1]
            for a in range(0, M, size)
        ]
        return {n: torch.cat([q[n] for q in parts]).detach() for n in parts[0]}

    def _objective(self, c: _Chunk, first_order: bool, clip_eps: float | None = None):
        """:func:`meta_loss` of the chunk's tasks at the current weights: (loss, means, stds).

        Compiled with ``torch.compile`` when the config asks for it (``compile_learner``);
        one graph per grad mode, ``first_order`` and chunk shape.
        """
        fn = compiled(meta_loss) if self._compile else meta_loss
        return fn(
            self.policy,
            self.theta(),
            self._step_sizes(),
            c.pre,
            c.pre_advs,
            c.post,
            c.post_adv,
            first_order,
            clip_eps,
            self._matmul_dtype,
            self.config.inner_objective,
        )

    @property
    def _compile(self) -> bool:
        """``compile_learner`` on a CPU with a C++ compiler (on a GPU the learner costs
        1-2% of sampling uncompiled, and the compiled path is untested there)."""
        return self.config.compile_learner and self.device.type == "cpu" and compiler_available()

    @property
    def _matmul_dtype(self) -> torch.dtype | None:
        return precision_dtype(self.config.matmul_precision, self.device)

    def _evaluate(
        self, chunks: list[_Chunk], old: tuple[Tensor, Tensor], clip_eps=None
    ) -> tuple[float, float]:
        """Surrogate loss and mean KL to ``old`` at the current weights, no meta-gradient."""
        loss = kl = 0.0
        with torch.no_grad():
            for c in chunks:
                new_loss, new_mean, new_std = self._objective(c, first_order=True, clip_eps=clip_eps)
                loss += c.weight * float(new_loss)
                kl += c.weight * float(
                    mean_kl((old[0][c.tasks], old[1][c.tasks]), new_mean, new_std, c.post.masks)
                )
        return loss, kl

    def _meta_gradient(self, chunks: list[_Chunk], clip_eps: float | None = None):
        """Meta-gradient ``(P,)`` of the surrogate over all chunks, the loss, and the
        adapted policies' means and stds (the ``old`` of the KL)."""
        meta = self.meta_parameters()
        grads, loss0, means, stds = None, 0.0, [], []
        for c in chunks:
            loss, mean, std = self._objective(c, first_order=self.config.first_order, clip_eps=clip_eps)
            g = flat(torch.autograd.grad(c.weight * loss, meta))
            grads = g if grads is None else grads + g
            loss0 += c.weight * float(loss.detach())
            means.append(mean.detach())
            stds.append(std.detach())
        return grads, loss0, (torch.cat(means), torch.cat(stds))

    def _fisher_vector_product(self, pre, pre_advs, post, post_adv) -> Callable[[Tensor], Tensor]:
        """:func:`meta_fisher` on the first ``fisher_subsample`` of the tasks (tasks are
        drawn i.i.d., so any k are a fair sample)."""
        cfg = self.config
        assert isinstance(cfg, MAMLTRPOConfig)
        k = max(1, round(cfg.fisher_subsample * post.num_tasks))
        fisher = _Chunk.of(pre, pre_advs, post, post_adv, 0, k)
        fns = (
            (compiled(inner_gradient), compiled(kl_gradient))
            if self._compile
            else (inner_gradient, kl_gradient)
        )
        return meta_fisher(
            self.policy,
            self.theta(),
            self._step_sizes(),
            fisher.pre,
            fisher.pre_advs,
            fisher.post,
            cfg.first_order,
            cfg.cg_damping,
            precision_dtype(cfg.fisher_precision, self.device),
            fns,
            cfg.inner_objective,
        )

    def _trpo_update(self, pre, pre_advs, post, post_adv) -> dict[str, float]:
        cfg = self.config
        assert isinstance(cfg, MAMLTRPOConfig)
        watch = Stopwatch()
        meta = self.meta_parameters()
        chunks = self._chunks(pre, pre_advs, post, post_adv)
        with watch("meta_gradient"):
            grads, loss0, old = self._meta_gradient(chunks)
        with watch("natural_step"):  # Fisher-vector products, conjugate gradient
            fvp = self._fisher_vector_product(pre, pre_advs, post, post_adv)
            step = natural_step(fvp, grads, cfg.max_kl, cfg.cg_iters)
            del fvp  # frees the second-order graphs before the line search
        expected = float(-(grads @ step))
        x0 = flat([p.detach() for p in meta]).clone()

        def evaluate(x: Tensor) -> tuple[float, float]:
            self._write(x)
            return self._evaluate(chunks, old)

        with watch("line_search"):
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
            **{f"time/outer_{k}": v for k, v in watch.seconds.items()},
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
        watch = Stopwatch()
        meta = self.meta_parameters()
        chunks = self._chunks(pre, pre_advs, post, post_adv)
        old: tuple[Tensor, Tensor] | None = None
        first_loss = 0.0
        for epoch in range(cfg.ppo_epochs):
            with watch("meta_gradient"):  # one Adam step per epoch on the gradient of all chunks
                grads, loss, moments = self._meta_gradient(chunks, clip_eps=cfg.clip_eps)
            if epoch == 0:
                first_loss, old = loss, moments
            for p, g in zip(meta, unflat(grads, meta)):
                p.grad = g
            self.optimizer.step()
        assert old is not None
        with watch("evaluation"):
            last_loss, kl = self._evaluate(chunks, old, clip_eps=cfg.clip_eps)
        return {
            **{f"time/outer_{k}": v for k, v in watch.seconds.items()},
            "loss/outer_before": first_loss,
            "loss/outer_after": last_loss,
            "train/kl": kl,
        }

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "policy": {k: v.detach().cpu().clone() for k, v in self.policy.state_dict().items()},
            "step_sizes": None
            if self.step_sizes is None
            else {k: v.detach().cpu().clone() for k, v in self.step_sizes.items()},
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
            "sampler": self.sampler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        if self.step_sizes is not None:
            with torch.no_grad():
                for k, v in self.step_sizes.items():
                    v.copy_(state["step_sizes"][k])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        # Checkpoints from before evaluation used fresh seeded streams also hold an
        # "eval_sampler"; nothing samples with it any more.
        self.sampler.load_state_dict(state["sampler"])

    def multitask_config(self) -> MAMLConfig:
        """The same settings without meta-learning: zero inner steps (plain multi-task
        training of one policy), fine-tuned at evaluation by this learner's inner steps."""
        return dataclasses.replace(self.config, inner_steps=0, learn_inner_lr=False)

    def multitask_iteration_factor(self) -> int:
        """``inner_steps + 1``: an iteration samples a batch before every inner step and
        one after the last; the baseline samples one."""
        return int(self.config.inner_steps) + 1
