"""Success rates of the scripted experts (upper reference) and of a random policy.

Runs one episode per task of each manipulation family's train and test splits in a
simulator and prints a table; ``--out`` also writes it as JSON.

    python scripts/manipulation_experts.py
    python scripts/manipulation_experts.py --family push --seed 3 --out experts.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

import numpy as np

from robometa.eval.baselines import run_episodes as episodes
from robometa.sim import action_size
from robometa.tasks import make_family
from robometa.tasks.base import Task
from robometa.tasks.manipulation.experts import expert_action
from robometa.tasks.manipulation.families import ManipFamily

FAMILIES = ("reach", "push", "pick-place", "manip-ml")


def run_episodes(
    family: ManipFamily, tasks: Sequence[Task], seed: int, policy: str, horizon: int | None = None
) -> dict[str, np.ndarray]:
    """One episode per task of ``horizon`` steps (default: the family's); ``policy`` is
    ``expert`` or ``random`` (uniform actions).

    Returns ``success (B,)`` (any step succeeded) and ``final_distance (B,)`` (m).
    """
    rng = np.random.default_rng(seed)

    def act(obs, state, params):
        if policy == "expert":
            return expert_action(family, state, params)
        return rng.uniform(-1.0, 1.0, size=(len(state), action_size(family)))

    out = episodes(family, tasks, act, seeds=seed, horizon=horizon)
    return {"success": out["success"], "final_distance": out["metrics"]["goal_distance"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="all", help="a manipulation family, or 'all'")
    parser.add_argument("--seed", type=int, default=0, help="split seed and reset seed")
    parser.add_argument("--horizon", type=int, help="episode length in steps (default: each family's own)")
    parser.add_argument("--out", help="JSON output path")
    args = parser.parse_args()
    names = FAMILIES if args.family == "all" else (args.family,)
    rows = []
    print(f"{'family':<11} {'split':<6} {'tasks':>5} {'expert':>7} {'random':>7} {'seconds':>8}")
    for name in names:
        family = make_family(name)
        for split in ("train", "test"):
            tasks = family.split_tasks(split, seed=args.seed)
            t0 = time.perf_counter()
            expert = run_episodes(family, tasks, args.seed, "expert", args.horizon)
            random = run_episodes(family, tasks, args.seed, "random", args.horizon)
            row = {
                "family": name,
                "split": split,
                "tasks": len(tasks),
                "horizon": args.horizon or family.horizon,
                "expert_success": float(expert["success"].mean()),
                "random_success": float(random["success"].mean()),
                "seconds": time.perf_counter() - t0,
            }
            rows.append(row)
            print(
                f"{name:<11} {split:<6} {row['tasks']:>5} {row['expert_success']:>7.2f} "
                f"{row['random_success']:>7.2f} {row['seconds']:>8.1f}"
            )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
