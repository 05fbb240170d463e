"""Evidence that RL² learns to adapt: later episodes of held-out trials beat episode 1.

Trains RL² on a family for each seed, then measures the return of episode k = 1..K
of trials on the family's held-out test tasks (fresh memory per trial, stochastic
policy, no learning during evaluation) and prints a Markdown table, plus the
gain of the last episode over the first with its mean and standard error over seeds.

    python scripts/reproduce_rl2.py --family cheetah-dir --seeds 0 1 2 --iterations 60 \\
        --set horizon=100 --out runs/rl2-evidence/cheetah-dir.json

Seeds can run as separate processes (one ``--out`` each) and be tabled together
with ``--merge A.json B.json ...``. ``--set key=value`` overrides fields of :class:`robometa.configs.rl2.RL2Config`
(defaults here: the ``quick`` preset's values). Every run is seeded; the same command
gives the same numbers on the same machine and thread settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from robometa.algos.rl2 import RL2
from robometa.configs.rl2 import RL2Config
from robometa.tasks import make_family

PRESET = Path(__file__).resolve().parents[1] / "robometa" / "configs" / "presets" / "rl2" / "quick.yaml"


def rl2_config(overrides: list[str]) -> RL2Config:
    names = {f.name for f in dataclasses.fields(RL2Config)}
    values = {}
    if PRESET.is_file():
        data = yaml.safe_load(PRESET.read_text()) or {}
        values.update({k: v for k, v in (data.get("algo_params") or {}).items() if k in names})
    for item in overrides:
        key, _, text = item.partition("=")
        if key not in names:
            sys.exit(f"unknown RL2Config field {key!r}; valid: {', '.join(sorted(names))}")
        values[key] = yaml.safe_load(text)
    cfg = RL2Config(**values)
    problems = cfg.validate()
    if problems:
        sys.exit(problems[0])
    return cfg


def run_seed(
    family_name: str, cfg: RL2Config, seed: int, iterations: int, eval_tasks: int, log_every: int
) -> dict:
    family = make_family(family_name)
    algo = RL2(family, cfg, device="cpu", seed=seed)
    task_rng = np.random.default_rng([seed, 7])
    test_tasks = family.split_tasks("test", seed=0, n=eval_tasks)
    start = time.perf_counter()
    history = []
    for it in range(iterations):
        result = algo.iteration(family.sample_tasks(cfg.meta_batch_size, task_rng, "train"))
        history.append(result.curve.return_mean)
        if log_every and (it + 1) % log_every == 0:
            logging.info(
                "seed %d it %d: train episode returns %s  kl %.4f  steps/s %.0f",
                seed,
                it + 1,
                [round(r, 1) for r in result.curve.return_mean],
                result.metrics["train/kl"],
                result.metrics["sim/steps_per_s"],
            )
    curve = algo.adaptation_curve(test_tasks, cfg.episodes_per_trial - 1, "test")
    return {
        "seed": seed,
        "test_curve": curve.to_dict(),
        "train_curve_last": history[-1] if history else [],
        "train_curve_first": history[0] if history else [],
        "minutes": (time.perf_counter() - start) / 60,
    }


def table(family: str, runs: list[dict]) -> str:
    K = len(runs[0]["test_curve"]["return_mean"])
    head = "| family | seed | " + " | ".join(f"episode {k + 1}" for k in range(K)) + f" | ep {K} - ep 1 |"
    lines = [head, "|" + "---|" * (K + 3)]
    gains = []
    for r in runs:
        ret = r["test_curve"]["return_mean"]
        gains.append(ret[-1] - ret[0])
        lines.append(
            f"| {family} | {r['seed']} | " + " | ".join(f"{v:.1f}" for v in ret) + f" | {gains[-1]:+.1f} |"
        )
    mean = float(np.mean(gains))
    sem = float(np.std(gains, ddof=1) / math.sqrt(len(gains))) if len(gains) > 1 else float("nan")
    lines.append(
        f"| {family} | mean | " + " | ".join("" for _ in range(K)) + f" | {mean:+.1f} ± {sem:.1f} (s.e.) |"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="cheetah-dir")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--eval-tasks", type=int, default=10, help="held-out tasks per evaluation")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="RL2Config override")
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument(
        "--merge", type=Path, nargs="+", metavar="JSON", help="only print the table of earlier --out files"
    )
    args = parser.parse_args()
    if args.merge:
        loaded = [json.loads(p.read_text()) for p in args.merge]
        for family in dict.fromkeys(d["family"] for d in loaded):
            runs = sorted(
                (r for d in loaded if d["family"] == family for r in d["runs"]), key=lambda r: r["seed"]
            )
            print(table(family, runs))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    cfg = rl2_config(args.set)
    runs = [
        run_seed(args.family, cfg, s, args.iterations, args.eval_tasks, args.log_every) for s in args.seeds
    ]
    print(table(args.family, runs))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "family": args.family,
            "iterations": args.iterations,
            "config": dataclasses.asdict(cfg),
            "runs": runs,
        }
        args.out.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
