"""Where in an episode a learner adapts: mean reward per env step in windows of time.

``robometa evaluate`` scores whole episodes. A memory learner (RL², SNAIL, the context
learners) can identify its task from the first rewards of episode 1, and then episode
2 may gain nothing although the learner adapted; a learner whose episode 2 is worse
than its episode 1 may have forgotten the task across the episode boundary, or may
act worse late in a trial. This script adapts each run to held-out tasks exactly as
``robometa evaluate`` does (:meth:`robometa.algos.Algorithm.adaptation_data`, the
run's default checkpoint) and splits the recorded episode of every task and step
(episode k of a trial, or the first episode after k gradient steps) into windows of
env steps, printing the mean reward per step in each window, averaged over tasks:

    python scripts/within_trial.py runs/rl2-cheetah-dir-seed0 runs/snail-cheetah-dir-seed0 \\
        --tasks 20 --windows 0 5 15 30 60

Rewards are the family's per-step rewards (units of its reward, per env step).
``--out FILE`` also writes the table as JSON. Bad input (a missing run, windows that
do not increase) exits with status 2 and one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from robometa.errors import RobometaError


def windows(starts: list[int], T: int) -> list[tuple[int, int]]:
    """The windows ``[starts[w], starts[w+1])`` of an episode of ``T`` steps, the last
    one running to ``T``; those that start at or after ``T`` are left out."""
    bounds = [s for s in starts if s < T] + [T]
    return list(zip(bounds[:-1], bounds[1:]))


def window_means(rewards: np.ndarray, starts: list[int]) -> np.ndarray:
    """``rewards: (K+1, M, T)`` -> ``(K+1, W)``: the mean reward per step over tasks and
    the steps of each of :func:`windows`."""
    return np.stack(
        [rewards[..., a:b].mean(axis=(-2, -1)) for a, b in windows(starts, rewards.shape[-1])], axis=-1
    )


def measure(
    run: str, n_tasks: int | None, split: str, seed: int, checkpoint: str | None, starts: list[int]
) -> dict[str, Any]:
    from robometa.eval.evaluate import held_out_tasks, load_run, open_run

    config = open_run(run)[1]
    tasks = held_out_tasks(config, config.build_family(), split, n_tasks)
    loaded = load_run(run, checkpoint, "cpu", split, tasks)
    data = loaded.algo.adaptation_data(tasks, loaded.algo.trained_steps, seed=seed, record_states=True)
    return {
        "run": run,
        "learner": config.learner,
        "x": data.x,
        "checkpoint": loaded.checkpoint_info(),
        "tasks": len(tasks),
        "windows": [[a, b] for a, b in windows(starts, data.rewards.shape[-1])],
        "reward_per_step": window_means(data.rewards, starts).tolist(),  # (steps, windows)
        "returns": data.returns.mean(axis=0).tolist(),
    }


def table(results: list[dict[str, Any]]) -> str:
    lines = []
    for r in results:
        heads = [f"steps {a}-{b - 1}" for a, b in r["windows"]]
        label = "episode" if r["x"] == "episode" else "after step"
        lines.append(f"\n{Path(r['run']).name} ({r['learner']}, {r['tasks']} tasks)")
        lines.append(f"| {label} | " + " | ".join(heads) + " | episode return |")
        lines.append("|---" * (len(heads) + 2) + "|")
        for k, row in enumerate(r["reward_per_step"]):
            name = k + 1 if r["x"] == "episode" else k
            cells = " | ".join(f"{v:+.2f}" for v in row)
            lines.append(f"| {name} | {cells} | {r['returns'][k]:+.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--tasks", type=int, default=None, help="held-out tasks (default: the run's eval_tasks)")
    p.add_argument("--split", default="test", help="task split (default test)")
    p.add_argument("--seed", type=int, default=0, help="evaluation seed (default 0)")
    p.add_argument("--checkpoint", choices=("best", "latest"), default=None, help="default: evaluate's rule")
    p.add_argument(
        "--windows", type=int, nargs="+", default=[0, 5, 15, 30, 60], help="window starts, env steps"
    )
    p.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = p.parse_args(argv)
    try:
        if args.windows[0] != 0 or any(b <= a for a, b in zip(args.windows, args.windows[1:])):
            raise RobometaError(f"--windows must start at 0 and increase, got {args.windows}")
        results = [
            measure(r, args.tasks, args.split, args.seed, args.checkpoint, args.windows) for r in args.runs
        ]
    except RobometaError as exc:
        print(f"within_trial.py: error: {exc}", file=sys.stderr)
        return 2
    print(table(results))
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
