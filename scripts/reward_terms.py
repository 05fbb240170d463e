"""What a trained gradient learner's reward is made of, before and after adapting.

A family's reward is a sum of named terms (the cheetah: ``forward`` and ``ctrl``; the
ant: ``forward``/``goal``, ``healthy``, ``ctrl``, ``contact``; the arm: distances and
bonuses). When a learner does not adapt, the first question is which terms it earns:
an ant whose return is all ``healthy`` bonus has not learned to walk, so the
direction of its task cannot matter yet. This script adapts a run (MAML-TRPO,
MAML-PPO, Reptile, Meta-LSTM) to held-out tasks exactly as ``robometa evaluate``
does (the run's default checkpoint, the adaptation protocol's sampler) and prints,
per adaptation step, the mean episode sum of every term (units of the family's
reward), how much each term varies between tasks (the standard deviation of the
per-task means: a term that does not vary cannot tell tasks apart), the mean
episode length and the share of episodes that terminated early:

    python scripts/reward_terms.py runs/maml-trpo-ant-dir-seed0 --tasks 20 --adapt-steps 1
    python scripts/reward_terms.py runs/maml-trpo-ant-dir-seed0 --untrained   # the same learner at init

``--out FILE`` also writes JSON. Bad input (a missing run, a learner without
gradient adaptation) exits with status 2 and one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from robometa.errors import RobometaError


def measure(
    run: str, n_tasks: int | None, steps: int | None, split: str, seed: int, untrained: bool
) -> dict[str, Any]:
    from robometa.algos import make_algorithm
    from robometa.algos.maml import GradientLearner
    from robometa.eval.evaluate import held_out_tasks, load_run, open_run

    config = open_run(run)[1]
    family = config.build_family()
    tasks = held_out_tasks(config, family, split, n_tasks)
    if untrained:
        algo = make_algorithm(config.algo, family, config.algo_params, "cpu", config.seed)
        checkpoint = "untrained (the run's config and seed, fresh weights)"
    else:
        loaded = load_run(run, None, "cpu", split, tasks)
        algo, checkpoint = loaded.algo, f"{loaded.checkpoint} (iteration {loaded.iteration})"
    if not isinstance(algo, GradientLearner):
        raise RobometaError(
            f"{run}: {config.learner} does not adapt by gradient steps; this script covers "
            "maml-trpo, maml-ppo, reptile and meta-lstm"
        )
    steps = algo.trained_steps if steps is None else steps
    batches = algo.adaptation_batches(tasks, steps, seed)  # the adaptation protocol's episodes
    rows = []
    for k, b in enumerate(batches):
        lengths = b.masks.sum(-1).double()  # (M, N)
        terms = {name: v.double() for name, v in sorted(b.reward_terms.items())}
        rows.append(
            {
                "step": k,
                "return": float(b.rewards.double().sum(-1).mean()),
                "terms": {n: float(v.mean()) for n, v in terms.items()},
                "terms_std_over_tasks": {n: float(v.mean(1).std(unbiased=False)) for n, v in terms.items()},
                "length": float(lengths.mean()),
                "terminated": float(b.terminated.sum(-1).mean()),
                "success": float(b.success.mean()) if family.has_success else None,
            }
        )
    return {
        "run": run,
        "learner": config.learner,
        "family": config.family,
        "checkpoint": checkpoint,
        "split": split,
        "tasks": len(tasks),
        "episodes_per_task": int(algo.config.episodes_per_task),
        "horizon": int(algo.horizon),
        "seed": seed,
        "steps": rows,
    }


def print_table(result: dict[str, Any]) -> None:
    rows = result["steps"]
    names = list(rows[0]["terms"])
    print(
        f"{result['run']} ({result['learner']} on {result['family']}, {result['checkpoint']}): "
        f"{result['tasks']} {result['split']} tasks x {result['episodes_per_task']} episodes of up to "
        f"{result['horizon']} steps, evaluation seed {result['seed']}"
    )
    print("| step | return | " + " | ".join(names) + " | length | terminated | success |")
    print("|---" * (len(names) + 5) + "|")
    for r in rows:
        cells = " | ".join(f"{r['terms'][n]:.1f} (±{r['terms_std_over_tasks'][n]:.1f})" for n in names)
        success = "-" if r["success"] is None else f"{r['success']:.2f}"
        print(
            f"| {r['step']} | {r['return']:.1f} | {cells} | {r['length']:.0f} | {r['terminated']:.2f} | {success} |"
        )
    print("(term: mean episode sum (± its standard deviation over the tasks' means))\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", metavar="RUN", help="run directories of gradient learners")
    ap.add_argument("--tasks", type=int, default=None, help="held-out tasks (default: the run's eval_tasks)")
    ap.add_argument(
        "--adapt-steps", type=int, default=None, help="gradient steps (default: the run's trained steps)"
    )
    ap.add_argument("--split", default="test", help="task split to adapt on (default test)")
    ap.add_argument("--seed", type=int, default=0, help="evaluation seed (default 0)")
    ap.add_argument("--untrained", action="store_true", help="the run's learner with fresh weights")
    ap.add_argument("--out", help="also write the results as JSON here")
    args = ap.parse_args(argv)
    bad = (args.tasks is not None and args.tasks < 1, args.adapt_steps is not None and args.adapt_steps < 0)
    problems = [
        msg for wrong, msg in zip(bad, ("--tasks must be >= 1", "--adapt-steps must be >= 0")) if wrong
    ]
    results = []
    for run in args.runs if not problems else []:
        try:
            results.append(measure(run, args.tasks, args.adapt_steps, args.split, args.seed, args.untrained))
        except RobometaError as exc:
            problems.append(str(exc))
            break
        print_table(results[-1])  # as each run is measured
    if problems:
        print(f"reward_terms: error: {problems[0]}", file=sys.stderr)
        return 2
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
