"""The seam every meta-learner plugs into, and the records that cross it.

The trainer, ``robometa evaluate`` and ``robometa replay`` reach a learner only
through :class:`Algorithm`: run one meta-iteration on a meta-batch of training tasks
(:class:`IterationResult`), adapt to given tasks without meta-updating and report
the per-task results at every adaptation step (:class:`AdaptationData`: the one
adaptation protocol, shared by the trainer's periodic evaluation, ``evaluate`` and
``replay``), and save / restore its full state. MAML-TRPO, MAML-PPO and RL²
implement it; a learner of your own joins with
:func:`robometa.algos.register_algorithm`.

:class:`MetaLearner` holds what learners share beyond the protocol: the seed rule of
evaluation streams, flat hyperparameters for TensorBoard, and iteration timing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import torch

from robometa.tags import ADAPT_STEP, EPISODE, STEP_AXES, check_axis, term_scalars
from robometa.tasks.base import Task, TaskFamily

if TYPE_CHECKING:
    from robometa.sampling import EpisodeBatch

CURVE_AXES = STEP_AXES  # what the steps of a curve count: "adapt_step" | "episode"

EVAL_SEED_OFFSET = 1_000_003
"""Evaluation seed ``s`` samples with streams seeded ``s + EVAL_SEED_OFFSET``: apart from
training's (seeded by the run's seed), so evaluating never moves a training stream."""


# ------------------------------------------------------------------ records


@dataclass
class AdaptationCurve:
    """Performance versus amount of adaptation, averaged over tasks and episodes.

    ``x`` names what ``steps`` counts (:data:`robometa.tags.STEP_AXES`): ``adapt_step``
    (gradient steps, MAML) or ``episode`` (episodes seen, RL²). Step 0 is before any
    adaptation.
    """

    split: str  # "train" | "val" | "test"
    x: str  # one of CURVE_AXES
    steps: list[int]
    return_mean: list[float]  # mean undiscounted episode return at each step
    return_std: list[float] = field(default_factory=list)  # std over tasks of the per-task mean
    success_mean: list[float] | None = None  # success rate per step, where the family has success

    def to_dict(self) -> dict[str, Any]:
        """The shared record shape: ``{"split", "x", "steps", "return_mean", ...}``."""
        out: dict[str, Any] = {
            "split": self.split,
            "x": self.x,
            "steps": list(self.steps),
            "return_mean": list(self.return_mean),
        }
        if self.return_std:
            out["return_std"] = list(self.return_std)
        if self.success_mean is not None:
            out["success_mean"] = list(self.success_mean)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdaptationCurve:
        return cls(
            split=data["split"],
            x=data["x"],
            steps=list(data["steps"]),
            return_mean=list(data["return_mean"]),
            return_std=list(data.get("return_std", [])),
            success_mean=data.get("success_mean"),
        )


@dataclass
class AdaptationData:
    """What a learner measured while adapting to M tasks, steps 0..K, without meta-updating.

    Step k is after k gradient steps (``x == "adapt_step"``) or episode k+1 of a trial
    (``x == "episode"``); step 0 is before any adaptation (:mod:`robometa.tags`).
    ``episodes_per_step`` is the experience one step stands for (MAML: the episodes
    of a gradient step; RL²: 1), so step k has seen ``k * episodes_per_step`` episodes.

    Arrays (float64):

    * ``returns: (M, K+1)``: each task's mean undiscounted episode return at step k;
    * ``success: (M, K+1)`` or ``None`` where the family has no success criterion: the
      share of each task's episodes that succeeded at any step;
    * ``states: (K+1, M, T+1, nstate)`` and ``rewards: (K+1, M, T)``, only when asked
      for (``record_states``): the full-physics states and the rewards of one episode
      per task and step (MAML: the first episode; RL²: the episode of the first trial),
      for exact replay.
    """

    x: str
    episodes_per_step: int
    returns: np.ndarray
    success: np.ndarray | None = None
    states: np.ndarray | None = None
    rewards: np.ndarray | None = None

    def __post_init__(self) -> None:
        check_axis(self.x)
        self.episodes_per_step = int(self.episodes_per_step)
        self.returns = np.asarray(self.returns, dtype=np.float64)
        if self.returns.ndim != 2:
            raise ValueError(f"returns must be (tasks, steps + 1), got shape {self.returns.shape}")
        if self.success is not None:
            self.success = np.asarray(self.success, dtype=np.float64)
            if self.success.shape != self.returns.shape:
                raise ValueError(f"success {self.success.shape} and returns {self.returns.shape} differ")
        if (self.states is None) != (self.rewards is None):
            raise ValueError("states and rewards are recorded together")
        if self.states is not None:
            self.states = np.asarray(self.states, dtype=np.float64)
            self.rewards = np.asarray(self.rewards, dtype=np.float64)
            M, K1 = self.returns.shape
            if self.states.shape[:2] != (K1, M) or self.rewards.shape[:2] != (K1, M):
                raise ValueError(
                    f"states {self.states.shape} / rewards {self.rewards.shape} must start with (steps + 1, tasks)"
                    f" = {(K1, M)}"
                )

    @classmethod
    def from_episodes(cls, x: str, batches: Sequence[EpisodeBatch], has_success: bool) -> AdaptationData:
        """From the episodes of every step: ``batches[k]`` holds N episodes of each of the
        M tasks at step k. Returns and success are per-task means over the N episodes;
        ``states`` / ``rewards`` (when the batches recorded states) are each task's
        first episode."""

        def per_step(values) -> np.ndarray:  # (M, K+1)
            return torch.stack([values(b) for b in batches], 1).cpu().numpy()

        recorded = {}
        if batches[0].states is not None:
            recorded["states"] = torch.stack([b.states[:, 0] for b in batches]).cpu().numpy()
            recorded["rewards"] = torch.stack([b.rewards[:, 0] for b in batches]).cpu().numpy()
        return cls(
            x,
            batches[0].episodes_per_task,
            per_step(lambda b: b.returns.mean(1)),
            per_step(lambda b: b.success.mean(1)) if has_success else None,
            **recorded,
        )

    @property
    def num_tasks(self) -> int:
        return int(self.returns.shape[0])

    @property
    def steps(self) -> int:
        """K: the last adaptation step measured."""
        return int(self.returns.shape[1]) - 1

    def curve(self, split: str) -> AdaptationCurve:
        """The curve over tasks: mean and (population) std of the per-task returns per step."""
        return AdaptationCurve(
            split=split,
            x=self.x,
            steps=list(range(self.steps + 1)),
            return_mean=[float(v) for v in self.returns.mean(axis=0)],
            return_std=[float(v) for v in self.returns.std(axis=0)],
            success_mean=None if self.success is None else [float(v) for v in self.success.mean(axis=0)],
        )


@dataclass
class IterationResult:
    """What one meta-iteration reports to the trainer."""

    curve: AdaptationCurve  # training-task adaptation curve of this iteration
    metrics: dict[str, float]  # scalars keyed by TensorBoard tag (robometa.tags.SCALARS)
    env_steps: int  # environment steps sampled in this iteration


# ------------------------------------------------------------------ the protocol


@runtime_checkable
class Algorithm(Protocol):
    """A meta-learner the trainer can drive, checkpoint and evaluate.

    Built by the registry as ``algo_cls(family, config, device=..., seed=...)``
    (:func:`robometa.algos.register_algorithm`); ``config`` is an instance of the
    frozen dataclass registered with it, holding at least ``meta_batch_size`` and
    ``horizon`` (``None``: the family's).
    """

    name: str  # registry name, e.g. "maml-trpo"
    family: TaskFamily
    config: Any  # the learner's frozen config dataclass
    curve_x: str  # one of CURVE_AXES: what the steps of this learner's curves count
    horizon: int  # control steps per episode this learner samples (its config's, else the family's)
    # torch threads of the learner on a CPU (None: torch's setting); a learner may ignore it
    learner_threads: int | None

    @property
    def meta_batch_size(self) -> int:
        """Training tasks per meta-iteration (the trainer draws this many)."""

    @property
    def trained_steps(self) -> int:
        """The amount of adaptation meta-training taught: gradient steps (MAML's
        ``inner_steps``) or episodes seen before the last episode of a trial (RL²:
        ``episodes_per_trial - 1``). ``evaluate`` and ``replay`` adapt this far unless
        told otherwise, and ``best.pt`` is chosen on the validation return there."""

    def iteration(self, tasks: Sequence[Task]) -> IterationResult:
        """Sample, adapt and meta-update on one meta-batch of training tasks."""

    def adaptation_data(
        self, tasks: Sequence[Task], steps: int, seed: int, record_states: bool = False
    ) -> AdaptationData:
        """Adapt to every task for ``steps`` steps, without meta-updating: steps 0..steps.

        Samples on fresh streams seeded by the evaluation ``seed`` (same learner state,
        tasks and seed: same numbers), never on the learner's training streams.
        """

    def multitask_config(self) -> Any | None:
        """This learner's config with meta-learning switched off, for the multi-task
        baseline (one policy trained on the training tasks, adapted at evaluation the
        way this learner adapts), or ``None`` when the learner has no such setting."""

    def multitask_iteration_factor(self) -> int:
        """Iterations of the multi-task baseline (:meth:`multitask_config`) that sample as
        many episodes as one iteration of this learner, so that the baseline trains on
        the same experience (MAML: ``inner_steps + 1`` batches per iteration against 1)."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, optimizer, RNG streams.

        Must hold only tensors, numbers, strings, lists and dicts, so checkpoints load
        with ``torch.load(weights_only=True)``.
        """

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def hparams(self) -> dict[str, float | int | str | bool]:
        """Flat hyperparameters for TensorBoard's HPARAMS tab."""


# ------------------------------------------------------------------ shared implementation


class MetaLearner:
    """What MAML and RL² share, for any learner to reuse (subclassing is optional).

    Expects ``self.name``, ``self.family``, ``self.config`` (a frozen dataclass with
    ``meta_batch_size`` and ``horizon``), ``self.horizon`` and, for
    :meth:`evaluation_sampler`, ``self.sampler`` (a :class:`robometa.sampling.Sampler`
    or subclass).
    """

    name: str
    family: TaskFamily
    config: Any
    horizon: int
    learner_threads: int | None = None  # no separate learner thread setting unless overridden

    @property
    def meta_batch_size(self) -> int:
        return int(self.config.meta_batch_size)

    @staticmethod
    def eval_seed(seed: int) -> int:
        """The seed of the streams evaluation seed ``seed`` samples with (:data:`EVAL_SEED_OFFSET`)."""
        return int(seed) + EVAL_SEED_OFFSET

    def evaluation_sampler(self, seed: int) -> Any:
        """A fresh sampler like ``self.sampler`` (same class, device, threads, backend),
        on the streams of evaluation seed ``seed``."""
        s = self.sampler
        return type(s)(self.family, s.device, seed=self.eval_seed(seed), nthread=s.nthread, backend=s.backend)

    def multitask_config(self) -> Any | None:
        return None

    def multitask_iteration_factor(self) -> int:
        return 1

    def adaptation_curve(
        self, tasks: Sequence[Task], steps: int, split: str = "test", seed: int = 0
    ) -> AdaptationCurve:
        """``adaptation_data(tasks, steps, seed).curve(split)``: the curve the trainer logs."""
        return self.adaptation_data(tasks, steps, seed).curve(split)

    def hparams(self) -> dict[str, float | int | str | bool]:
        """``algo``, ``family`` and every config field (tuples as text, ``horizon`` resolved)."""
        out: dict[str, Any] = {"algo": self.name, "family": self.family.name}
        for f in dataclasses.fields(self.config):
            value = self.horizon if f.name == "horizon" else getattr(self.config, f.name)
            out[f.name] = str(list(value)) if isinstance(value, tuple) else value
        return out


class Stopwatch:
    """Wall-clock seconds per named phase of an iteration, summed over its uses.

    ``with watch("sampling"): ...``; ``watch.seconds["sampling"]`` (0.0 for a phase
    never timed).
    """

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - t0


def throughput(sampling_s: float, learner_s: float, env_steps: int) -> dict[str, float]:
    """``time/learner_over_sampling`` and ``sim/steps_per_s`` of an iteration that sampled
    ``env_steps`` environment steps in ``sampling_s`` seconds and learned for ``learner_s``."""
    return {
        "time/learner_over_sampling": learner_s / max(sampling_s, 1e-9),
        "sim/steps_per_s": env_steps / max(sampling_s, 1e-9),
    }


def term_metrics(x: str, per_step: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, float]:
    """``terms/<term>/<step name>`` scalars (:func:`robometa.tags.term_scalars`): the mean
    over episodes of each reward term's episode sum at every step of a training curve.
    ``per_step[k]``: term name -> episode sums of step ``k`` (any shape)."""
    return term_scalars(x, [{n: float(v.double().mean()) for n, v in terms.items()} for terms in per_step])


__all__ = [
    "ADAPT_STEP",
    "CURVE_AXES",
    "EPISODE",
    "EVAL_SEED_OFFSET",
    "AdaptationCurve",
    "AdaptationData",
    "Algorithm",
    "IterationResult",
    "MetaLearner",
    "Stopwatch",
    "term_metrics",
    "throughput",
]
