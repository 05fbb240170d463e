"""The seam every meta-learner plugs into, and the shared adaptation-curve record.

A trainer only needs three things from a learner: run one meta-iteration on a
meta-batch of training tasks, measure how it adapts on given tasks, and save /
restore its full state. MAML-TRPO / MAML-PPO implement it now; RL², Reptile and
context-encoder learners implement the same protocol, so the training loop,
TensorBoard logging, checkpoints and evaluation serve all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from robometa.tasks.base import Task

CURVE_AXES = ("adapt_step", "episode")


@dataclass
class AdaptationCurve:
    """Performance versus amount of adaptation, averaged over tasks and episodes.

    ``x`` names what ``steps`` counts: ``adapt_step`` (gradient steps, MAML) or
    ``episode`` (episodes seen, RL²). Step 0 is before any adaptation.
    """

    split: str  # "train" | "test"
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
class IterationResult:
    """What one meta-iteration reports to the trainer."""

    curve: AdaptationCurve  # training-task adaptation curve of this iteration
    metrics: dict[str, float]  # scalars keyed by TensorBoard tag (loss/..., train/..., time/..., sim/...)
    env_steps: int  # environment steps sampled in this iteration


class Algorithm(Protocol):
    """A meta-learner the trainer can drive, checkpoint and evaluate."""

    name: str
    curve_x: str  # one of CURVE_AXES: what the steps of this learner's curves count
    horizon: int  # control steps per episode this learner samples (its config's, else the family's)

    @property
    def trained_steps(self) -> int:
        """The amount of adaptation meta-training taught: gradient steps (MAML's
        ``inner_steps``) or episodes seen before the last episode of a trial (RL²:
        ``episodes_per_trial - 1``). ``evaluate`` and ``replay`` adapt this far unless
        told otherwise."""

    def iteration(self, tasks: Sequence[Task]) -> IterationResult:
        """Sample, adapt and meta-update on one meta-batch of training tasks."""

    def adaptation_curve(self, tasks: Sequence[Task], steps: int, split: str) -> AdaptationCurve:
        """Adapt to each task for ``steps`` steps (no meta-update); returns the curve 0..steps."""

    def adaptation_data(
        self, tasks: Sequence[Task], steps: int, seed: int, record_states: bool = False
    ) -> dict[str, Any]:
        """Per-task evaluation data on fresh streams seeded by ``seed`` (no meta-update):
        ``x``, ``episodes_per_step``, ``returns`` / ``success`` ``(M, steps+1)`` and, with
        ``record_states``, ``states (steps+1, M, T+1, nstate)`` and ``rewards (steps+1, M, T)``."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, optimizer, RNG streams.

        Must hold only tensors, numbers, strings, lists and dicts, so checkpoints load
        with ``torch.load(weights_only=True)``.
        """

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def hparams(self) -> dict[str, float | int | str | bool]:
        """Flat hyperparameters for TensorBoard's HPARAMS tab."""
