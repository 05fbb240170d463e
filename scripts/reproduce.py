"""Evidence of learning: MAML on cheetah-dir and cheetah-vel, held-out adaptation curves.

For every family and seed this trains a fresh run (``robometa train`` with the
settings below), then reads the final held-out evaluation of each run (the mean
return on the family's test tasks after 0..3 inner gradient steps, computed by the
trainer at the last iteration) and prints a table of mean +- std over seeds. The
adapted return (steps >= 1) should beat the unadapted one (step 0).

    python scripts/reproduce.py                        # full protocol: 2 families x 3 seeds
    python scripts/reproduce.py --families cheetah-vel --seeds 0 --iterations 40
    python scripts/reproduce.py --algo maml-ppo --out reproduce.json
    python scripts/reproduce.py --algo reptile --families cheetah-dir --seeds 0   # or --algo meta-lstm
    python scripts/reproduce.py --device cuda          # learner on a GPU

Budget: about 5 to 8 minutes per run on an idle 2-core CPU, so 15 to 25 minutes
per family; the per-iteration cost is printed so a rerun on other hardware can be
scaled with --iterations.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from robometa.configs import resolve_config
from robometa.errors import RobometaError
from robometa.tasks import family_names
from robometa.trainer import Trainer

# Per-family settings on top of the algorithm's quick preset (10 tasks x 10 episodes
# x 100 steps per batch, initial action std 0.5, 150 iterations; see
# robometa/configs/presets/): seed 0 on cheetah-vel is the default `robometa train`.
# Families without an entry run the preset as it is (with the family's own tuning of it,
# presets/<algo>/quick/<family>.yaml, where one exists).
SETTINGS: dict[str, list[str]] = {"cheetah-dir": [], "cheetah-vel": []}
EVAL = ["eval_every=25", "eval_tasks=20", "eval_steps=3"]


def run_one(algo: str, family: str, seed: int, root: Path, extra: list[str], device: str = "cpu") -> dict:
    overrides = [*SETTINGS.get(family, []), *EVAL, *extra]
    cfg = resolve_config(
        algo=algo, preset="quick", overrides=overrides, family=family, seed=seed, device=device
    )
    path = root / f"{algo}-{family}-seed{seed}"
    t0 = time.perf_counter()
    trainer = (
        Trainer.resume(path) if (path / "checkpoints" / "latest.pt").is_file() else Trainer.create(cfg, path)
    )
    summary = trainer.train()
    # a finished run resumed trains no more: its last evaluation is in curves.jsonl
    curve = summary["test_curve"] or trainer.curves("test")[-1]
    return {
        "family": family,
        "seed": seed,
        "run_dir": str(path),
        "iterations": cfg.iterations,
        "seconds": time.perf_counter() - t0,
        "env_steps": trainer.env_steps,
        "test_return": curve["return_mean"],
        "test_success": curve.get("success_mean"),
        "config": overrides,
    }


def table(results: list[dict]) -> str:
    """Mean +- standard error over seeds of the held-out return at each step, and the gains."""
    lines = [
        "| family | seeds | step 0 (pre) | step 1 | step 2 | step 3 | gain step 1 | gain step 3 |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def cell(vals: list[float]) -> str:
        se = statistics.stdev(vals) / len(vals) ** 0.5 if len(vals) > 1 else 0.0
        return f"{statistics.fmean(vals):.1f} +- {se:.1f}"

    for family in dict.fromkeys(r["family"] for r in results):
        rows = [r["test_return"] for r in results if r["family"] == family]
        cells = [cell([row[k] for row in rows]) for k in range(len(rows[0]))]
        gains = [cell([row[k] - row[0] for row in rows]) for k in (1, len(rows[0]) - 1)]
        lines.append(f"| {family} | {len(rows)} | " + " | ".join(cells + gains) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--algo", default="maml-trpo")
    ap.add_argument("--families", nargs="+", default=list(SETTINGS), choices=family_names())
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--iterations", type=int, help="override the iteration count of every run")
    ap.add_argument("--device", default="cpu", help="where the policy and learner run: cpu | cuda | auto")
    ap.add_argument("--root", default="runs/reproduce", help="where the runs go (existing ones are resumed)")
    ap.add_argument("--out", help="also write the results as JSON here")
    args = ap.parse_args()
    extra = [f"iterations={args.iterations}"] if args.iterations else []
    results = []
    try:
        for family in args.families:
            for seed in args.seeds:
                r = run_one(args.algo, family, seed, Path(args.root), extra, args.device)
                print(
                    f"{family} seed {seed}: held-out return by adaptation step "
                    + ", ".join(f"{x:.1f}" for x in r["test_return"])
                    + f"  ({r['seconds']:.0f} s, {r['seconds'] / r['iterations']:.1f} s/iteration)",
                    flush=True,
                )
                results.append(r)
    except RobometaError as exc:
        print(f"reproduce: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"\n{args.algo}: held-out return, mean +- s.e. over seeds "
        f"(test split, {EVAL[1].split('=')[1]} tasks, last evaluation of each run)\n"
    )
    print(table(results))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
