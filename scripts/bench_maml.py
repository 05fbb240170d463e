"""Time per MAML meta-iteration, split into sampling / inner loop / outer loop.

At the paper preset (40 tasks x 20 episodes x 200 steps, before and after one
inner step: 320,000 env steps per iteration) this runs a few meta-iterations of
each algorithm and reports the seconds spent sampling, in the inner loop
(advantages, baselines and adaptation for sampling) and in the outer loop (the
meta-update), plus the learner overhead (inner + outer) relative to sampling, and
for MAML-TRPO the outer loop's own split: meta-gradient, natural step (Fisher-vector
products and conjugate gradient) and line search.

It also times the second-order meta-gradient on the same data with all tasks in
one batched pass (what MAML does on a GPU), in groups of ``CPU_TASK_CHUNK`` tasks
(what it does on a CPU) and one task at a time, to show where batching pays.

    python scripts/bench_maml.py                          # both algorithms, paper settings
    python scripts/bench_maml.py --algo maml-trpo --iterations 3
    python scripts/bench_maml.py --preset quick first_order=true --out bench_maml.json
    python scripts/bench_maml.py --device cuda --iterations 1   # learner on the GPU
    python scripts/bench_maml.py learner_threads=2              # 2 learner threads (idle machine)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from robometa.algos import algorithm_names, make_algorithm
from robometa.algos.maml import CPU_TASK_CHUNK, adapt, learner_mode, surrogate, task_slice
from robometa.configs import resolve_config
from robometa.errors import RobometaError
from robometa.tasks import make_family


def meta_gradient_seconds(algo, pre, pre_adv, post, post_adv, chunk: int) -> float:
    """Seconds for one second-order meta-gradient over all tasks, ``chunk`` tasks per pass."""
    policy, theta = algo.policy, algo.theta()
    lr = float(algo.config.inner_lr)
    M = pre.num_tasks
    with learner_mode(algo.learner_threads):
        t0 = time.perf_counter()
        for a in range(0, M, chunk):
            z = min(a + chunk, M)
            phi = adapt(policy, theta, lr, [task_slice(pre, a, z)], [pre_adv[a:z]], create_graph=True)[-1]
            loss = surrogate(policy, phi, task_slice(post, a, z), post_adv[a:z])[0] * (z - a) / M
            torch.autograd.grad(loss, list(theta.values()))
        if algo.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0


def bench(
    algo_name: str, preset: str, overrides: list[str], iterations: int, seed: int, device: str, warmup: int
) -> dict:
    cfg = resolve_config(algo=algo_name, preset=preset, overrides=overrides, seed=seed, device=device)
    family = make_family(cfg.family)
    algo = make_algorithm(algo_name, family, cfg.algo_params, cfg.device, seed)
    algo.learner_threads = cfg.learner_threads  # ignored off CPU
    rng = np.random.default_rng(seed)
    for _ in range(warmup):  # untimed: CUDA context and kernel caches, allocator pools
        algo.iteration(family.sample_tasks(cfg.algo_params.meta_batch_size, rng, "train"))
    rows = []
    for _ in range(iterations):
        res = algo.iteration(family.sample_tasks(cfg.algo_params.meta_batch_size, rng, "train"))
        keys = ["time/sampling", "time/inner", "time/outer", "sim/steps_per_s"]
        keys += [k for k in res.metrics if k.startswith("time/outer_") or k == "train/line_search_backtracks"]
        rows.append({k: res.metrics[k] for k in keys})
        rows[-1]["env_steps"] = res.env_steps
    out = {k: statistics.fmean(r[k] for r in rows) for k in rows[0]}
    out["learner_over_sampling"] = (out["time/inner"] + out["time/outer"]) / out["time/sampling"]
    out["iterations"] = iterations

    # batched vs looped meta-gradient on one fresh meta-batch
    timer = {"sampling": 0.0, "inner": 0.0}
    tasks = family.sample_tasks(cfg.algo_params.meta_batch_size, rng, "train")
    batches, advs = algo._rollouts(algo.sampler, tasks, 1, cfg.algo_params.episodes_per_task, timer)
    M = cfg.algo_params.meta_batch_size
    for chunk in dict.fromkeys((M, CPU_TASK_CHUNK, 1)):
        out[f"meta_grad_chunk{chunk}_s"] = min(
            meta_gradient_seconds(algo, batches[0], advs[0], batches[1], advs[1], chunk) for _ in range(2)
        )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    maml = [n for n in algorithm_names() if n.startswith("maml")]
    ap.add_argument("--algo", nargs="+", default=maml, choices=maml)
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1, help="untimed meta-iterations first (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="where the policy and learner run: cpu | cuda | auto")
    ap.add_argument("--out", help="write the results as JSON")
    args = ap.parse_args()
    results = {}
    try:
        for name in args.algo:
            results[name] = bench(
                name, args.preset, args.overrides, args.iterations, args.seed, args.device, args.warmup
            )
    except RobometaError as exc:
        print(f"bench_maml: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, device {args.device}"
        f"{' (' + torch.cuda.get_device_name() + ')' if args.device != 'cpu' and torch.cuda.is_available() else ''}, "
        f"preset {args.preset} {args.overrides}"
    )
    chunks = [
        k.removeprefix("meta_grad_chunk").removesuffix("_s")
        for k in next(iter(results.values()))
        if k.startswith("meta_grad_chunk")
    ]
    header = (
        "| algo | env steps/iter | sampling s | inner s | outer s | (inner+outer)/sampling | sim steps/s | "
        + " | ".join(f"meta-grad, {c} tasks/pass, s" for c in chunks)
        + " |"
    )
    print(header)
    print("|---" * (7 + len(chunks)) + "|")
    for name, r in results.items():
        print(
            f"| {name} | {r['env_steps']:.0f} | {r['time/sampling']:.2f} | {r['time/inner']:.2f} | "
            f"{r['time/outer']:.2f} | {100 * r['learner_over_sampling']:.0f}% | {r['sim/steps_per_s']:.0f} | "
            + " | ".join(f"{r[f'meta_grad_chunk{c}_s']:.2f}" for c in chunks)
            + " |"
        )
    split = {n: r for n, r in results.items() if "time/outer_meta_gradient" in r}
    if split:
        print(
            "\n| algo | outer s | meta-gradient s | natural step (Fisher-vector products, CG) s | line search s | line-search backtracks |"
        )
        print("|---" * 6 + "|")
        for name, r in split.items():
            print(
                f"| {name} | {r['time/outer']:.2f} | {r['time/outer_meta_gradient']:.2f} | "
                f"{r['time/outer_natural_step']:.2f} | {r['time/outer_line_search']:.2f} | "
                f"{r['train/line_search_backtracks']:.1f} |"
            )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
