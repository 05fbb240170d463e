"""Every TensorBoard tag robometa writes, and what step k of an adaptation curve is called.

This is the one home of both. An adaptation curve has steps 0..K on one of two axes
(:data:`STEP_AXES`):

* ``adapt_step`` (gradient learners, MAML): step k is *after k gradient steps*, each
  on a fresh batch of episodes of the task; its tag is ``step_k``;
* ``episode`` (memory learners, RL²): step k is *episode k+1 of a trial*, played
  after k episodes of experience; its tag is ``episode_{k+1}``.

Step 0 is before any adaptation on both axes. Curve tags are
``<prefix>/<metric>/<step name>``, the prefix naming the tasks (:data:`CURVE_PREFIX`:
``adapt`` training tasks, ``adapt_val`` validation tasks, the only ones any choice
looks at, ``adapt_test`` held-out tasks, for watching), the metric ``return`` or
``success``.

:data:`SCALARS`, :data:`IMAGES` and :data:`TENSORS` declare every tag the trainer, the
built-in learners and ``robometa evaluate`` log, each with a one-line meaning (a test
trains tiny runs and checks that nothing undeclared is logged).
:func:`custom_scalars_layout` lays out one run's CUSTOM SCALARS tab from them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Protocol

ADAPT_STEP = "adapt_step"
EPISODE = "episode"
STEP_AXES = (ADAPT_STEP, EPISODE)
"""What the steps of an adaptation curve count (an :class:`AdaptationData`'s ``x``)."""

AXIS_TITLES = {ADAPT_STEP: "adaptation step", EPISODE: "episode of the trial"}
"""Axis label of a curve plotted against its steps."""

_UNITS = {ADAPT_STEP: "adaptation step", EPISODE: "episode"}


def check_axis(x: str) -> str:
    """``x`` if it is one of :data:`STEP_AXES`; a ``ValueError`` (a learner's bug) otherwise."""
    if x not in STEP_AXES:
        raise ValueError(f"unknown adaptation axis {x!r}; valid: {', '.join(STEP_AXES)}")
    return x


def step_number(x: str, k: int) -> int:
    """The number step ``k`` carries in tags, tables and plots: ``k`` on the ``adapt_step``
    axis, ``k + 1`` on the ``episode`` axis (episode k+1 of a trial)."""
    return k if check_axis(x) == ADAPT_STEP else k + 1


def step_name(x: str, k: int) -> str:
    """The tag suffix of step ``k``: ``step_k`` (``adapt_step``) or ``episode_{k+1}`` (``episode``)."""
    return f"{'step' if check_axis(x) == ADAPT_STEP else 'episode'}_{step_number(x, k)}"


def step_label(x: str, k: int) -> str:
    """Step ``k`` for people: ``step k`` or ``episode k+1`` (numbered as in the tags)."""
    return step_name(x, k).replace("_", " ")


def experience(x: str, k: int) -> str:
    """The experience before step ``k``: ``"3 adaptation steps"``, ``"1 episode"``."""
    unit = _UNITS[check_axis(x)]
    return f"{k} {unit}{'' if k == 1 else 's'}"


def step_meaning(x: str, k: int) -> str:
    """One line on what step ``k`` measures, e.g. ``"after 1 adaptation step"``."""
    if k == 0:
        return "before adapting" if check_axis(x) == ADAPT_STEP else "episode 1: before any experience"
    if x == ADAPT_STEP:
        return f"after {experience(x, k)}"
    return f"episode {k + 1}: after {experience(x, k)}"


# ------------------------------------------------------------------ curve tags

CURVE_PREFIX = {"train": "adapt", "val": "adapt_val", "test": "adapt_test"}
"""Tag prefix of the curve of each split's tasks (``train``: the iteration's meta-batch)."""
CURVE_METRICS = ("return", "success")


def curve_tag(split: str, x: str, step: int, metric: str = "return") -> str:
    """The tag of one point of a curve: ``adapt[_val|_test]/<metric>/<step name>``."""
    return f"{CURVE_PREFIX[split]}/{metric}/{step_name(x, step)}"


class CurveLike(Protocol):
    """What :func:`curve_scalars` reads (an :class:`robometa.algos.AdaptationCurve`)."""

    split: str
    x: str
    steps: list[int]
    return_mean: list[float]
    success_mean: list[float] | None


def curve_scalars(curve: CurveLike) -> dict[str, float]:
    """``{tag: value}`` for every step of a curve: returns, and success where it exists."""
    out = {curve_tag(curve.split, curve.x, k): float(r) for k, r in zip(curve.steps, curve.return_mean)}
    if curve.success_mean is not None:
        out.update(
            {
                curve_tag(curve.split, curve.x, k, "success"): float(s)
                for k, s in zip(curve.steps, curve.success_mean)
            }
        )
    return out


def term_scalars(x: str, per_step: list[Mapping[str, float]]) -> dict[str, float]:
    """``terms/<term>/<step name>`` for the mean episode sum of each reward term at each
    step of a curve on axis ``x`` (``per_step[k]``: term name -> value at step ``k``)."""
    return {
        f"terms/{name}/{step_name(x, k)}": float(v)
        for k, terms in enumerate(per_step)
        for name, v in terms.items()
    }


# ------------------------------------------------------------------ other tags of a run

CURVE_IMAGE = "adapt_test/curve"
VIDEO = "video/test_task_0"
ENV_STEPS_TOTAL = "sim/env_steps_total"
ITERATION_TIME = "time/iteration"
CONFIG_TEXT = "config"


def eval_tag(method: str, metric: str = "return") -> str:
    """``robometa evaluate``'s tag of a method's curve, indexed by step: ``eval/<method>/<metric>/step``."""
    return f"eval/{method}/{metric}/step"


_STEP = r"(step_\d+|episode_[1-9]\d*)"

SCALARS: dict[str, str] = {
    # adaptation curves (regular expressions: any step of either axis)
    rf"adapt/(return|success)/{_STEP}": "training tasks of the iteration (the meta-batch)",
    rf"adapt_val/(return|success)/{_STEP}": "validation tasks: the only curve a choice (best.pt) looks at",
    rf"adapt_test/(return|success)/{_STEP}": "held-out test tasks, for watching only",
    r"eval/[^/]+/(return|success)/step": "robometa evaluate: a method's curve, indexed by step",
    rf"terms/[^/]+/{_STEP}": "training tasks: mean episode sum of one reward term (the family's units) at each step",
    # the trainer
    ENV_STEPS_TOTAL: "environment steps sampled since the run started",
    ITERATION_TIME: "wall time of the iteration, evaluations included (s)",
    # every built-in learner
    "sim/steps_per_s": "environment steps per second of sampling",
    "sim/instabilities": "episodes ended by a simulation blow-up",
    "sim/worker_restarts": "sampling workers (Ray) that died and were replaced; their chunks were re-run",
    "time/sampling": "sampling episodes (s)",
    "time/outer": "the meta-update (s)",
    "time/learner_over_sampling": "learner time / sampling time",
    "train/entropy": "entropy of the action Gaussian (nats)",
    "train/policy_std": "mean action standard deviation",
    "train/kl": "KL between the policy before and after the meta-update",
    "train/grad_norm": "norm of the meta-gradient",
    # MAML (both outer loops)
    "time/inner": "MAML: inner-loop adaptation (s)",
    "train/inner_lr": "MAML, Reptile: mean inner step size (learned with learn_inner_lr; Meta-LSTM: mean input gate)",
    "loss/outer_before": "MAML: surrogate loss of the adapted policies before the meta-update",
    "loss/outer_after": "MAML: surrogate loss of the adapted policies after the meta-update",
    "time/outer_meta_gradient": "MAML: meta-gradients through the inner steps (s)",
    # MAML-PPO
    "time/outer_evaluation": "MAML-PPO: the loss and KL after the Adam epochs (s)",
    # MAML-TRPO
    "loss/expected_improvement": "MAML-TRPO: loss decrease the natural step predicts",
    "time/outer_natural_step": "MAML-TRPO: Fisher-vector products and conjugate gradient (s)",
    "time/outer_line_search": "MAML-TRPO: the backtracking line search (s)",
    "train/line_search_accepted": "MAML-TRPO: 1 when the line search accepted a step",
    "train/line_search_step_fraction": "MAML-TRPO: fraction of the natural step taken",
    "train/line_search_backtracks": "MAML-TRPO: candidates rejected by the line search",
    # Reptile
    "train/outer_lr": "Reptile: outer step size epsilon of the iteration",
    "train/update_norm": "Reptile: norm of the change of the meta-parameters",
    # Meta-LSTM
    "train/forget_gate": "Meta-LSTM: mean forget gate of the last inner step",
    # RL²
    "loss/policy": "RL²: clipped-surrogate policy loss",
    "loss/value": "RL²: value loss",
    "loss/entropy": "RL²: mean entropy over the trials' steps",
    "loss/first_minibatch": "RL²: total loss of the first minibatch",
    "train/clip_fraction": "RL²: fraction of steps whose likelihood ratio was clipped",
    "train/explained_variance": "RL²: variance of the value targets the value head explains",
    "train/reward_scale": "RL²: scale applied to rewards for the value targets",
    "train/trial_return": "RL²: mean undiscounted return of a training trial",
    "loss/kl_prior": "context learners, pog: KL of the task posterior from its unit Gaussian prior, mean over steps",
}
"""Every scalar tag, as a regular expression (most are plain names), with its meaning."""

IMAGES: dict[str, str] = {
    CURVE_IMAGE: "the held-out adaptation curve at this evaluation: return (and success) against step",
    VIDEO: "before | after adapting to the first held-out task (with --log-video)",
}

TENSORS: dict[str, str] = {
    "custom_scalars__config__": "the CUSTOM SCALARS layout of the run",
    f"{CONFIG_TEXT}/text_summary": "the resolved config.yaml",
}


def declared(tag: str, kind: str = "scalars") -> bool:
    """Whether ``tag`` is declared here, as a scalar, image or tensor (``kind``) tag."""
    table = {"scalars": SCALARS, "images": IMAGES, "tensors": TENSORS}[kind]
    return any(re.fullmatch(pattern, tag) for pattern in table)


def meaning(tag: str) -> str:
    """The declared one-line meaning of a scalar tag ('' when it is not declared)."""
    return next((text for pattern, text in SCALARS.items() if re.fullmatch(pattern, tag)), "")


# ------------------------------------------------------------------ custom scalars

CURVE_TITLES = {
    "test": "adaptation on held-out test tasks (for watching)",
    "val": "adaptation on validation tasks (chooses best.pt)",
    "train": "adaptation on the training meta-batch",
}


def _chart(*tags: str) -> list:
    return ["Multiline", [f"^{re.escape(t)}$" for t in tags]]


def custom_scalars_layout(
    x: str,
    steps: Mapping[str, int],
    has_success: bool,
    metric_tags: Iterable[str] = (),
) -> dict:
    """The CUSTOM SCALARS layout of one run.

    ``steps``: the last step of each split's curve (``{"test": K, "val": K', "train":
    K''}``; splits the run does not evaluate are left out); ``has_success``: whether the
    family has a success criterion; ``metric_tags``: the learner's metric tags (its
    first iteration's). TensorBoard draws every line of a chart in the run's one
    colour without a legend, so each chart holds one tag and says in its title what the
    step means; only charts the run writes are laid out (no success charts for
    families without success). The whole curve of an evaluation is the image
    ``adapt_test/curve``.
    """
    layout: dict[str, dict] = {}
    for split in ("test", "val", "train"):
        if split not in steps:
            continue
        charts: dict[str, list] = {}
        for metric in CURVE_METRICS if has_success else CURVE_METRICS[:1]:
            for k in range(int(steps[split]) + 1):
                title = f"{metric}, {step_label(x, k)} ({step_meaning(x, k)})"
                charts[title] = _chart(curve_tag(split, x, k, metric))
        layout[CURVE_TITLES[split]] = charts
    groups = {
        "loss/": "meta-update: losses",
        "train/": "meta-update: policy",
        "time/": "time per iteration (s)",
        "sim/": "simulation",
        "terms/": "reward terms: mean episode sum on the training tasks",
    }
    tags = sorted(set(metric_tags) | {ENV_STEPS_TOTAL, ITERATION_TIME})
    for prefix, title in groups.items():
        charts = {f"{t}: {meaning(t)}" if meaning(t) else t: _chart(t) for t in tags if t.startswith(prefix)}
        if charts:
            layout[title] = charts
    return layout
