"""The reports of the adaptation protocol on held-out tasks.

For every evaluation seed, the learner adapts to each task of the split
(:meth:`robometa.algos.Algorithm.adaptation_data`, the protocol the trainer's
periodic evaluation runs too) and we record the return (and success) after each
amount of experience: step 0 is before any adaptation; step k is after k gradient
steps (MAML) or in episode k+1 of a trial (RL²) (:mod:`robometa.tags`). Per step we aggregate over tasks and seeds (mean, IQM, and a
95% bootstrap CI with the task as the unit, :func:`robometa.eval.stats.summarize_tasks`:
the seeds measure the same tasks) and write ``eval/<name>/`` inside the run directory:

* ``summary.json`` — settings, the aggregated curve of every method, per-task data;
* ``curves.csv``   — one row per (method, step): mean, IQM, CI, success and its CI;
* ``per_task.csv`` — one row per (method, seed, task, step), with episodes seen and
  the task's parameters as ``task.*`` columns;
* ``curves.png``   — the adaptation curves of all methods on one chart;
* TensorBoard scalars ``eval/<method>/return/step`` (and ``.../success/step``),
  indexed by step, in the same directory.

Several training runs of one method can be pooled into one (:class:`PooledResult`,
``robometa evaluate --group-by algo``): its arrays gain a leading runs axis, its curve
is the mean of the runs' means with a CI in which the training run is the unit
(:func:`robometa.eval.stats.summarize_runs`), its rows in ``curves.csv`` add ``runs``
and ``run_means`` (``run=mean;...``), and its rows in ``per_task.csv`` name the run.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robometa.eval.stats import summarize_runs, summarize_tasks
from robometa.runs import atomic_write_text
from robometa.tags import AXIS_TITLES, eval_tag

log = logging.getLogger(__name__)

X_LABELS = AXIS_TITLES


@dataclass
class MethodResult:
    """Per-task results of one method: arrays shaped (seeds, tasks, steps)."""

    name: str
    x: str  # "adapt_step" | "episode"
    returns: np.ndarray  # (S, M, K+1) mean return over the episodes of each task
    success: np.ndarray | None = None  # (S, M, K+1) success rate, where the family has one
    episodes_per_step: int = 1  # episodes of experience one step stands for
    notes: dict[str, Any] = field(default_factory=dict)
    recorded: dict[str, np.ndarray] | None = None  # physics states/rewards of the first seed, if kept

    @property
    def steps(self) -> list[int]:
        return list(range(self.returns.shape[-1]))

    def aggregate(self, n_boot: int = 2000) -> list[dict[str, Any]]:
        rows = []
        for k in self.steps:
            s = summarize_tasks(self.returns[:, :, k], n_boot=n_boot)
            row = {"method": self.name, "step": k, "episodes_seen": k * self.episodes_per_step, **s.to_dict()}
            if self.success is not None:
                # Success rates get the same bootstrap CI over tasks as returns.
                succ = summarize_tasks(self.success[:, :, k], n_boot=n_boot)
                row["success_mean"] = float(self.success[:, :, k].mean())
                row["success_ci_low"], row["success_ci_high"] = succ.ci_low, succ.ci_high
            rows.append(row)
        return rows


@dataclass
class PooledResult(MethodResult):
    """Several training runs of one method as one: arrays shaped (runs, seeds, tasks,
    steps), ``run_labels`` naming the runs in that order.

    Per step, a run's score on a task is its mean over the evaluation seeds; the curve
    is :func:`summarize_runs` of those (runs, tasks) scores (mean of the runs' means,
    IQM of the run x task scores, CI resampling whole runs and tasks), and every row
    lists each run's mean over tasks and seeds (``run_means``, in ``run_labels`` order).
    """

    run_labels: list[str] = field(default_factory=list)

    def aggregate(self, n_boot: int = 2000) -> list[dict[str, Any]]:
        rows = []
        for k in self.steps:
            scores = self.returns[..., k].mean(axis=1)  # (R, M): each run's mean over seeds
            s = summarize_runs(scores, n_boot=n_boot)
            row = {"method": self.name, "step": k, "episodes_seen": k * self.episodes_per_step, **s.to_dict()}
            row["runs"] = len(scores)
            row["run_means"] = [float(v) for v in scores.mean(axis=1)]
            if self.success is not None:
                succ = summarize_runs(self.success[..., k].mean(axis=1), n_boot=n_boot)
                row["success_mean"] = succ.mean
                row["success_ci_low"], row["success_ci_high"] = succ.ci_low, succ.ci_high
            rows.append(row)
        return rows

    def per_run(self) -> list[tuple[str, MethodResult]]:
        """Each run's own arrays (seeds, tasks, steps), with its label."""
        return [
            (
                label,
                MethodResult(
                    self.name,
                    self.x,
                    self.returns[r],
                    None if self.success is None else self.success[r],
                    self.episodes_per_step,
                ),
            )
            for r, label in enumerate(self.run_labels)
        ]


def write_report(
    out_dir: Path,
    methods: Sequence[MethodResult],
    settings: dict[str, Any],
    tasks: Sequence[Any],
    title: str,
    n_boot: int = 2000,
) -> dict[str, Any]:
    """Write JSON, CSV, PNG and TensorBoard files under ``out_dir``; returns the summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    aggregated = {m.name: m.aggregate(n_boot) for m in methods}
    pooled = any(isinstance(m, PooledResult) for m in methods)
    summary = {
        "settings": settings,
        "tasks": [t.to_dict() for t in tasks],
        "methods": {m.name: _method_entry(m, aggregated[m.name]) for m in methods},
    }
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2))

    buf = io.StringIO()
    cols = [
        "method", "step", "episodes_seen", "n", "mean", "std", "iqm", "ci_low", "ci_high",
        "success_mean", "success_ci_low", "success_ci_high",
    ]  # fmt: skip
    if pooled:
        cols += ["runs", "run_means"]
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    writer.writeheader()
    by_name = {m.name: m for m in methods}
    for name, rows in aggregated.items():
        for row in rows:
            if "run_means" in row:  # run=mean;run=mean, in the order of the method's runs
                means = zip(by_name[name].run_labels, row["run_means"])
                row = {**row, "run_means": ";".join(f"{label}={v:.6g}" for label, v in means)}
            writer.writerow(row)
    atomic_write_text(out_dir / "curves.csv", buf.getvalue())

    buf = io.StringIO()
    writer = csv.writer(buf)
    task_cols, task_rows = task_columns(tasks)
    head = ["method", "run"] if pooled else ["method"]
    writer.writerow(
        [*head, "seed_index", "task_index", "step", "episodes_seen", "return", "success", *task_cols]
    )
    for m in methods:
        runs = m.per_run() if isinstance(m, PooledResult) else [("", m)]
        for label, one in runs:
            S, M, K1 = one.returns.shape
            for s in range(S):
                for i in range(M):
                    for k in range(K1):
                        succ = "" if one.success is None else f"{one.success[s, i, k]:.6g}"
                        row = [m.name, label] if pooled else [m.name]
                        row += [s, i, k, k * m.episodes_per_step, f"{one.returns[s, i, k]:.6g}", succ]
                        writer.writerow(row + [task_rows[i].get(c, "") for c in task_cols])
    atomic_write_text(out_dir / "per_task.csv", buf.getvalue())

    plot_curves(out_dir / "curves.png", {m.name: (m, aggregated[m.name]) for m in methods}, title)
    _write_tensorboard(out_dir, aggregated)
    return summary


def _method_entry(m: MethodResult, curve: list[dict[str, Any]]) -> dict[str, Any]:
    """A method's record in ``summary.json``; a pooled one names its runs (``runs``,
    the leading axis of its per-task arrays)."""
    entry: dict[str, Any] = {"x": m.x, "episodes_per_step": m.episodes_per_step}
    if isinstance(m, PooledResult):
        entry["runs"] = list(m.run_labels)
    entry.update(
        {
            "curve": curve,
            "per_task_returns": m.returns.tolist(),
            "per_task_success": None if m.success is None else m.success.tolist(),
            "notes": m.notes,
        }
    )
    return entry


def task_columns(tasks: Sequence[Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """Each task's parameters as flat CSV columns ``task.<field>`` (vectors as
    ``task.<field>[i]``, lists of names joined by ``+``), so a breakdown by object shape,
    mass or goal needs no join. Returns the column names and one row dict per task."""
    rows: list[dict[str, Any]] = []
    for task in tasks:
        row: dict[str, Any] = {}
        for key, value in task.to_dict().items():
            if isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
                row.update({f"task.{key}[{j}]": f"{v:.6g}" for j, v in enumerate(value)})
            elif isinstance(value, list):
                row[f"task.{key}"] = "+".join(str(v) for v in value)
            else:
                row[f"task.{key}"] = f"{value:.6g}" if isinstance(value, float) else value
        rows.append(row)
    cols: list[str] = []
    for row in rows:
        cols += [c for c in row if c not in cols]
    return cols, rows


def plot_curves(path: Path, series: dict[str, tuple[MethodResult, list[dict[str, Any]]]], title: str) -> None:
    """Adaptation curves (mean with 95% CI band) on the axis "episodes of experience"."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    has_success = any(m.success is not None for m, _ in series.values())
    fig, axes = plt.subplots(1, 2 if has_success else 1, figsize=(11 if has_success else 6, 4), squeeze=False)
    ax = axes[0, 0]
    for name, (_, rows) in series.items():
        x = [r["episodes_seen"] for r in rows]
        ax.plot(x, [r["mean"] for r in rows], marker="o", label=name)
        ax.fill_between(x, [r["ci_low"] for r in rows], [r["ci_high"] for r in rows], alpha=0.2)
    ax.set_xlabel("episodes of experience on the new task")
    ax.set_ylabel("return (mean, 95% CI)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if has_success:
        ax = axes[0, 1]
        for name, (m, rows) in series.items():
            if m.success is not None:
                x = [r["episodes_seen"] for r in rows]
                ax.plot(x, [r["success_mean"] for r in rows], marker="o", label=name)
                ax.fill_between(
                    x, [r["success_ci_low"] for r in rows], [r["success_ci_high"] for r in rows], alpha=0.2
                )
        ax.set_xlabel("episodes of experience on the new task")
        ax.set_ylabel("success rate (mean, 95% CI)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.partial.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def _write_tensorboard(out_dir: Path, aggregated: dict[str, list[dict[str, Any]]]) -> None:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(out_dir)) as w:
        for name, rows in aggregated.items():
            for r in rows:
                w.add_scalar(eval_tag(name), r["mean"], r["step"])
                if "success_mean" in r:
                    w.add_scalar(eval_tag(name, "success"), r["success_mean"], r["step"])
