"""How a MAML run's adaptation depends on its inner loop: step size and episodes.

MAML meta-trains its weights for one inner loop: ``inner_steps`` gradient steps of
size ``inner_lr`` (or learned per-weight sizes, Meta-SGD) on ``episodes_per_task``
episodes. When a run adapts only part of the way, the first question is which of
them holds it back: a step too short or too long for some tasks (success rises or
falls as the step is scaled), or a gradient too noisy (success rises with more
episodes per step). This script adapts a MAML-TRPO / MAML-PPO run (Meta-SGD
included) to tasks of a split exactly as ``robometa evaluate`` does (the run's
default checkpoint, the adaptation protocol's sampler and evaluation seeds), once
for every step-size scale and episode count asked for, and prints the return (and
success rate) at every adaptation step:

    python scripts/inner_loop_sweep.py runs/maml-trpo-reach-seed0 --lr-scale 0.5 1 2 \\
        --episodes 10 40 --tasks 20

``--lr-scale s`` multiplies the run's step sizes (its ``inner_lr``, or every learned
one) by ``s``; ``--episodes`` sets the episodes sampled per task at every step
(default: the run's ``episodes_per_task``). At scale 1 and the run's episodes the
figures are ``robometa evaluate``'s. Step 0 does not depend on the inner loop:
settings with the same episode count sample the same step-0 episodes. The default split is ``val``:
a sweep that picks settings must not look at the test tasks (``--split test`` is
allowed, for reading a result, not choosing one). ``--out FILE`` writes JSON with
the tasks and the per-task figures too. Bad input exits with status 2 and one line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from robometa.errors import RobometaError


@contextmanager
def inner_loop(algo, lr_scale: float, episodes: int | None) -> Iterator[None]:
    """``algo`` (a :class:`robometa.algos.maml.MAML`) adapting with its step sizes
    times ``lr_scale`` and ``episodes`` episodes per task (``None``: its own) inside
    the block; its config and learned step sizes are restored on exit."""
    config, sizes = algo.config, algo.step_sizes
    changes: dict[str, Any] = {"inner_lr": config.inner_lr * lr_scale}
    if episodes is not None:
        changes["episodes_per_task"] = episodes
    algo.config = dataclasses.replace(config, **changes)
    if sizes is not None:
        algo.step_sizes = {k: v.detach() * lr_scale for k, v in sizes.items()}
    try:
        yield
    finally:
        algo.config, algo.step_sizes = config, sizes


def measure(
    run: str,
    n_tasks: int | None,
    steps: int | None,
    split: str,
    seeds: Sequence[int],
    scales: Sequence[float],
    episodes: Sequence[int | None],
) -> dict[str, Any]:
    from robometa.algos.maml import MAML
    from robometa.eval.evaluate import held_out_tasks, load_run, open_run

    config = open_run(run)[1]
    family = config.build_family()
    tasks = held_out_tasks(config, family, split, n_tasks)
    loaded = load_run(run, None, "cpu", split, tasks)
    algo = loaded.algo
    if not isinstance(algo, MAML):
        raise RobometaError(
            f"{run}: {config.learner} has no MAML inner loop to sweep; this script covers "
            "maml-trpo and maml-ppo (Meta-SGD included)"
        )
    steps = algo.trained_steps if steps is None else steps
    settings = []
    for n in episodes:
        for s in scales:
            returns, success = [], []  # per evaluation seed: (steps + 1, tasks)
            with inner_loop(algo, s, n):
                for seed in seeds:
                    batches = algo.adaptation_batches(tasks, steps, seed)
                    returns.append([b.returns.double().mean(1).tolist() for b in batches])
                    if family.has_success:
                        success.append([b.success.double().mean(1).tolist() for b in batches])
            per_task_return = np.mean(returns, axis=0)  # (steps + 1, tasks), mean over seeds
            per_task_success = np.mean(success, axis=0) if success else None
            settings.append(
                {
                    "lr_scale": s,
                    "episodes": int(algo.config.episodes_per_task if n is None else n),
                    "return": per_task_return.mean(1).tolist(),
                    "success": None if per_task_success is None else per_task_success.mean(1).tolist(),
                    "per_task_return": per_task_return.tolist(),
                    "per_task_success": None if per_task_success is None else per_task_success.tolist(),
                }
            )
            print_row(run, settings[-1])
    return {
        "run": run,
        "learner": config.learner,
        "family": config.family,
        "checkpoint": f"{loaded.checkpoint} (iteration {loaded.iteration})",
        "split": split,
        "tasks": len(tasks),
        "task_list": [dataclasses.asdict(t) if dataclasses.is_dataclass(t) else repr(t) for t in tasks],
        "trained_steps": algo.trained_steps,
        "inner_lr": float(algo.config.inner_lr),
        "learned_step_sizes": algo.step_sizes is not None,
        "episodes_per_task": int(algo.config.episodes_per_task),
        "evaluation_seeds": list(seeds),
        "settings": settings,
    }


def print_row(run: str, s: dict[str, Any]) -> None:
    cells = []
    for k, r in enumerate(s["return"]):
        cell = f"{r:.1f}"
        if s["success"] is not None:
            cell += f"; {s['success'][k]:.2f}"
        cells.append(cell)
    print(f"| {run} | {s['lr_scale']:g} | {s['episodes']} | " + " | ".join(cells) + " |", flush=True)


def _plain(value: Any) -> Any:
    """JSON for what a task holds beyond plain types (numpy values and arrays)."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", metavar="RUN", help="MAML-TRPO / MAML-PPO run directories")
    ap.add_argument("--lr-scale", type=float, nargs="+", default=[0.5, 1.0, 2.0], help="step-size scales")
    ap.add_argument(
        "--episodes", type=int, nargs="+", default=None, help="episodes per task (default: the run's)"
    )
    ap.add_argument("--tasks", type=int, default=None, help="tasks (default: the run's eval_tasks)")
    ap.add_argument(
        "--adapt-steps", type=int, default=None, help="gradient steps (default: the run's trained steps)"
    )
    ap.add_argument("--split", default="val", help="task split (default val: never choose on test)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="evaluation seeds (default 0)")
    ap.add_argument("--out", help="also write the results as JSON here")
    args = ap.parse_args(argv)
    checks = [
        (args.tasks is not None and args.tasks < 1, f"--tasks must be >= 1, got {args.tasks}"),
        (args.adapt_steps is not None and args.adapt_steps < 1, "--adapt-steps must be >= 1"),
        (min(args.lr_scale) < 0, f"--lr-scale values must be >= 0, got {args.lr_scale}"),
        (
            args.episodes is not None and min(args.episodes) < 1,
            f"--episodes must be >= 1, got {args.episodes}",
        ),
    ]
    problems = [msg for wrong, msg in checks if wrong]
    results = []
    for run in args.runs if not problems else []:
        try:
            steps = args.adapt_steps
            print(
                f"| run | step size x | episodes | step 0 .. {'K' if steps is None else steps} (return; success) |"
            )
            print("|---|---|---|---|")
            results.append(
                measure(
                    run, args.tasks, steps, args.split, args.seeds, args.lr_scale, args.episodes or [None]
                )
            )
        except RobometaError as exc:
            problems.append(str(exc))
            break
    if problems:
        print(f"inner_loop_sweep: error: {problems[0]}", file=sys.stderr)
        return 2
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=_plain))
    return 0


if __name__ == "__main__":
    sys.exit(main())
