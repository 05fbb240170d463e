"""Evidence that RL² learns to adapt: later episodes of held-out trials beat episode 1.

For every seed this trains (or resumes) an ordinary run -- the ``rl2`` quick preset
plus the family's settings below, through :class:`robometa.trainer.Trainer`, so the
run directory has the usual config, checkpoints, TensorBoard log and curves -- and
then evaluates its final weights (``checkpoints/latest.pt``, never the best-on-test
one) on the family's held-out test tasks: ``--trials`` trials of K episodes per task,
each trial on fresh memory, stochastic policy, no learning. It prints a Markdown table
of the mean return of episode k = 1..K per seed and the gain of the last episode over
the first, with its mean and standard error over seeds, and writes the numbers as JSON.

    python scripts/reproduce_rl2.py --family cheetah-dir --seeds 0 1 2
    python scripts/reproduce_rl2.py --family cheetah-params --seeds 0 1 2
    python scripts/reproduce_rl2.py --family cheetah-vel --seeds 0 --out runs/reproduce-rl2/vel-0.json
    python scripts/reproduce_rl2.py --merge runs/reproduce-rl2/cheetah-dir.json runs/reproduce-rl2/cheetah-params.json

Budget: about 9 minutes of training per seed on a 2-core CPU shared with another
job (2.8 s per iteration), plus half a minute of evaluation.

Runs go to ``<root>/<family>-seed<s>`` and are resumed when a checkpoint exists, so
an interrupted command can simply be rerun. Seeds can run as separate processes (one
``--out`` each) and be tabled together with ``--merge``. ``--set key=value`` adds
config overrides (``robometa train`` syntax) after the family's settings. Every run is
seeded: the same command gives the same numbers on the same machine and thread settings.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from robometa.configs import config_to_dict, resolve_config
from robometa.errors import RobometaError
from robometa.trainer import Progress, Trainer

# Per-family settings on top of the rl2 quick preset (whose values are tuned for
# cheetah-dir): 180 iterations (about 8-9 minutes per seed on a busy 2-core CPU)
# instead of the preset's 120, so that seeds that learn to use their memory late
# still do by the end.
SETTINGS: dict[str, list[str]] = {
    "cheetah-dir": ["iterations=180"],
    "cheetah-params": ["iterations=180"],
    "cheetah-vel": ["iterations=180"],
}
# Seed of the held-out evaluation's sampler: one fixed stream for every run.
EVAL_SEED = 20_161_102


def run_seed(
    family: str, seed: int, root: Path, extra: list[str], n_tasks: int, trials: int, eval_only: bool = False
) -> dict:
    """Train (or resume) one seed, then evaluate its final weights on held-out trials.

    With ``eval_only`` the run's latest checkpoint is evaluated as it is (it must exist).
    """
    overrides = [*SETTINGS.get(family, []), *extra]
    cfg = resolve_config(
        algo="rl2", preset="quick", overrides=overrides, family=family, seed=seed, device="cpu"
    )
    path = root / f"{family}-seed{seed}"
    t0 = time.perf_counter()
    if (path / "checkpoints" / "latest.pt").is_file():
        trainer = Trainer.resume(path)
        cfg = trainer.config  # the run's own settings (a resumed run keeps them)
    elif eval_only:
        raise RobometaError(f"--eval-only: no checkpoint in {path}")
    else:
        trainer = Trainer.create(cfg, path)
    iterations_done = trainer.start_iteration

    def report(p: Progress) -> None:
        done = p.iteration + 1
        if p.test_curve is not None or done % 10 == 0:
            ret = (p.test_curve or p.result.curve).return_mean
            split = "test" if p.test_curve is not None else "train"
            print(
                f"  {family} seed {seed} iteration {done}/{p.iterations}: {split} return by episode "
                + ", ".join(f"{r:.1f}" for r in ret)
                + f"  ({p.seconds:.1f} s)",
                flush=True,
            )

    if eval_only:
        trainer.writer.close()
    else:
        trainer.train(report)
        iterations_done = max(iterations_done, cfg.iterations)
    train_seconds = time.perf_counter() - t0

    # Held-out evaluation of the final weights on more test tasks than the trainer's
    # own periodic evaluations use (those are for watching; best.pt is chosen on val).
    algo, K = trainer.algo, cfg.algo_params.episodes_per_trial
    tasks = trainer.family.split_tasks("test", seed=cfg.split_seed, n=n_tasks)
    data = algo.adaptation_data(tasks, K - 1, seed=EVAL_SEED, trials_per_task=trials)
    returns = data.returns  # (tasks, K)
    gains = returns[:, -1] - returns[:, 0]
    out = {
        "family": family,
        "seed": seed,
        "run_dir": str(path),
        "iterations": iterations_done,
        "env_steps": trainer.env_steps,
        "train_seconds": train_seconds,
        "eval": {"split": "test", "tasks": len(tasks), "trials_per_task": trials, "seed": EVAL_SEED},
        "return_by_episode": returns.mean(0).tolist(),
        # Spread over held-out tasks of one seed, for judging the per-seed numbers.
        "gain_task_se": float(gains.std(ddof=1) / math.sqrt(len(gains))) if len(gains) > 1 else float("nan"),
        "overrides": overrides,
        "config": config_to_dict(cfg),
    }
    if data.success is not None:
        out["success_by_episode"] = data.success.mean(0).tolist()
    return out


def mean_se(values: list[float]) -> str:
    mean = float(np.mean(values))
    if len(values) < 2:
        return f"{mean:+.1f}"
    return f"{mean:+.1f} ± {float(np.std(values, ddof=1)) / math.sqrt(len(values)):.1f}"


def table(family: str, runs: list[dict]) -> str:
    """Markdown: one row per seed, then the mean ± standard error over seeds."""
    K = len(runs[0]["return_by_episode"])
    head = (
        "| family | seed | " + " | ".join(f"episode {k + 1}" for k in range(K)) + f" | gain (ep {K} − ep 1) |"
    )
    lines = [head, "|---|---|" + "---:|" * (K + 1)]
    for r in runs:
        ret = r["return_by_episode"]
        gain = ret[-1] - ret[0]
        lines.append(
            f"| {family} | {r['seed']} | "
            + " | ".join(f"{v:.1f}" for v in ret)
            + f" | {gain:+.1f} (± {r['gain_task_se']:.1f} over tasks) |"
        )
    cols = [mean_se([r["return_by_episode"][k] for r in runs]) for k in range(K)]
    gains = [r["return_by_episode"][-1] - r["return_by_episode"][0] for r in runs]
    lines.append(
        f"| {family} | mean ± s.e. ({len(runs)} seeds) | "
        + " | ".join(c.lstrip("+") if c.startswith("+") else c for c in cols)
        + f" | **{mean_se(gains)}** |"
    )
    if "success_by_episode" in runs[0]:
        succ = [np.mean([r["success_by_episode"][k] for r in runs]) for k in range(K)]
        lines.append(f"| {family} | success rate (mean) | " + " | ".join(f"{s:.2f}" for s in succ) + " | |")
    e = runs[0]["eval"]
    note = (
        f"\n{family}: held-out {e['split']} split, {e['tasks']} tasks x {e['trials_per_task']} trials "
        f"of {K} episodes per seed (fresh memory per trial, stochastic policy, no learning); "
        f"final weights after {runs[0]['iterations']} iterations; gain s.e. over seeds."
    )
    return "\n".join(lines) + "\n" + note


def print_tables(runs: list[dict]) -> None:
    """One table per family and set of overrides (runs of other settings are not pooled)."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["family"], tuple(r["overrides"])), []).append(r)
    for (family, overrides), group in groups.items():
        if overrides:
            print(f"settings: {' '.join(overrides)}")
        print(table(family, sorted(group, key=lambda r: r["seed"])))
        print()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--family", default="cheetah-dir")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--root", type=Path, default=Path("runs/reproduce-rl2"), help="where the runs go")
    parser.add_argument("--tasks", type=int, default=40, help="held-out tasks per evaluation")
    parser.add_argument("--trials", type=int, default=5, help="trials per held-out task")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument(
        "--eval-only", action="store_true", help="evaluate the runs' latest checkpoints without training"
    )
    parser.add_argument(
        "--out", type=Path, help="write the results as JSON here (default: <root>/<family>.json)"
    )
    parser.add_argument(
        "--merge", type=Path, nargs="+", metavar="JSON", help="only print the tables of earlier --out files"
    )
    args = parser.parse_args()
    if args.merge:
        runs = [r for p in args.merge for r in json.loads(p.read_text())["runs"]]
        print_tables(runs)
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    # Small recurrent nets gain nothing from intra-op threads on a busy machine.
    torch.set_num_threads(1)
    runs = []
    try:
        for seed in args.seeds:
            runs.append(
                run_seed(args.family, seed, args.root, args.set, args.tasks, args.trials, args.eval_only)
            )
            r = runs[-1]
            print(
                f"{args.family} seed {seed}: held-out return by episode "
                + ", ".join(f"{v:.1f}" for v in r["return_by_episode"])
                + f"  (trained {r['train_seconds'] / 60:.1f} min)",
                flush=True,
            )
    except RobometaError as exc:
        print(f"reproduce_rl2: error: {exc}", file=sys.stderr)
        return 2
    print()
    print_tables(runs)
    out = args.out or args.root / f"{args.family}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"family": args.family, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
