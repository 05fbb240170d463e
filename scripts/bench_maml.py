"""Time per MAML (or RL²) meta-iteration, split into sampling / inner loop / outer loop.

At the paper preset (40 tasks x 20 episodes x 200 steps, before and after one
inner step: 320,000 env steps per iteration) this runs a few meta-iterations of
each algorithm and reports the seconds spent sampling, in the inner loop
(advantages, baselines and adaptation for sampling) and in the outer loop (the
meta-update), plus the learner overhead (inner + outer) relative to sampling. The
outer loop is split further: for MAML-TRPO the meta-gradient, the natural step
(Fisher-vector products and conjugate gradient) and the line search; for MAML-PPO
the meta-gradients of its epochs and the evaluation after the last one.

Variants (``--variant NAME=OVERRIDES``) compare learner settings side by side in
one process: every variant of every algorithm gets its own learner, the timed
iterations alternate between them on the same tasks, and untimed warm-up
iterations first absorb one-off costs (``torch.compile``, allocator pools). The
machine's load average is recorded with the results, since a shared machine slows
everything in it.

RL² (``--algo rl2``) is timed the same way: its outer loop is the PPO update
(backpropagation through whole trials), it has no inner loop. For example, its
GRU's backward pass through time, robometa's against autograd's, side by side::

    python scripts/bench_maml.py --algo rl2 --preset quick --iterations 5 \
        --variant autograd="fused_bptt=false" --variant fused=""

It also times the second-order meta-gradient on the same data with all tasks in
one batched pass (what MAML does on a GPU), in groups of ``CPU_TASK_CHUNK`` tasks
(what it does on a CPU) and one task at a time, to show where batching pays
(uncompiled, float32; ``--skip-chunks`` leaves it out).

    python scripts/bench_maml.py                          # both algorithms, paper settings
    python scripts/bench_maml.py --algo maml-trpo --iterations 3
    python scripts/bench_maml.py --variant eager="compile_learner=false matmul_precision=float32 \\
        fisher_precision=float32" --variant paper=""      # the paper preset's levers off vs on
    python scripts/bench_maml.py --preset quick first_order=true --out bench_maml.json
    python scripts/bench_maml.py --device cuda --iterations 1   # learner on the GPU
    python scripts/bench_maml.py learner_threads=2              # 2 learner threads (idle machine)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from robometa.algos import algorithm_names, make_algorithm
from robometa.algos.base import Stopwatch
from robometa.algos.maml import CPU_TASK_CHUNK, adapt, learner_mode, surrogate, task_slice
from robometa.configs import resolve_config
from robometa.errors import RobometaError
from robometa.tasks import make_family

# Columns of the outer loop's split, per algorithm: (metric suffix, header).
SPLITS = {
    "maml-trpo": [
        ("meta_gradient", "meta-gradient"),
        ("natural_step", "natural step"),
        ("line_search", "line search"),
    ],
    "maml-ppo": [("meta_gradient", "meta-gradients (all epochs)"), ("evaluation", "evaluation")],
}


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


def applicable(algo_name: str, preset: str, overrides: list[str]) -> list[str]:
    """The overrides that name a setting of ``algo_name`` (a variant may set, say,
    ``fisher_precision``, which only MAML-TRPO has); the others are said on stderr."""
    cfg = resolve_config(algo=algo_name, preset=preset)
    keys = {f.name for f in dataclasses.fields(cfg)} | {f.name for f in dataclasses.fields(cfg.algo_params)}
    kept = [o for o in overrides if o.partition("=")[0] in keys]
    if len(kept) < len(overrides):
        print(
            f"  {algo_name}: no such settings, ignored: {sorted(set(overrides) - set(kept))}", file=sys.stderr
        )
    return kept


def make_learner(algo_name: str, preset: str, overrides: list[str], seed: int, device: str):
    cfg = resolve_config(algo=algo_name, preset=preset, overrides=overrides, seed=seed, device=device)
    family = make_family(cfg.family)
    algo = make_algorithm(algo_name, family, cfg.algo_params, cfg.device, seed)
    algo.learner_threads = cfg.learner_threads  # ignored off CPU
    return cfg, family, algo


def bench(
    algo_name: str,
    preset: str,
    overrides: list[str],
    variants: dict[str, list[str]],
    iterations: int,
    seed: int,
    device: str,
    warmup: int,
    chunks: bool,
) -> dict[str, dict]:
    """One learner per variant, timed iterations alternating between them; results per variant."""
    settings = {name: applicable(algo_name, preset, [*overrides, *extra]) for name, extra in variants.items()}
    learners = {
        name: make_learner(algo_name, preset, extra, seed, device) for name, extra in settings.items()
    }
    cfg, family, _ = next(iter(learners.values()))
    rng = np.random.default_rng(seed)
    rows: dict[str, list[dict]] = {name: [] for name in variants}
    for i in range(warmup + iterations):
        tasks = family.sample_tasks(cfg.algo_params.meta_batch_size, rng, "train")
        for name, (_, _, algo) in learners.items():  # same tasks for every variant
            t0 = time.perf_counter()
            res = algo.iteration(tasks)
            if i < warmup:  # untimed: compilation, CUDA context and kernel caches, allocator pools
                print(
                    f"  {algo_name} [{name}] warm-up iteration {i + 1}: {time.perf_counter() - t0:.1f} s",
                    file=sys.stderr,
                )
                continue
            res.metrics.setdefault("time/inner", 0.0)  # RL² has no inner loop
            keys = ["time/sampling", "time/inner", "time/outer", "sim/steps_per_s"]
            keys += [
                k for k in res.metrics if k.startswith("time/outer_") or k == "train/line_search_backtracks"
            ]
            rows[name].append(
                {k: res.metrics[k] for k in keys} | {"env_steps": res.env_steps, "load": os.getloadavg()[0]}
            )
    out = {}
    for name, rs in rows.items():
        r = {k: statistics.fmean(row[k] for row in rs) for k in rs[0]}
        r["learner_over_sampling"] = (r["time/inner"] + r["time/outer"]) / r["time/sampling"]
        r["iterations"] = iterations
        r["overrides"] = settings[name]
        out[name] = r

    # Batched vs looped meta-gradient on one fresh meta-batch, first variant's learner (MAML only).
    if chunks and algo_name.startswith("maml"):
        algo = next(iter(learners.values()))[2]
        tasks = family.sample_tasks(cfg.algo_params.meta_batch_size, rng, "train")
        batches, advs = algo._rollouts(algo.sampler, tasks, 1, cfg.algo_params.episodes_per_task, Stopwatch())
        M = cfg.algo_params.meta_batch_size
        first = next(iter(out.values()))
        for chunk in dict.fromkeys((M, CPU_TASK_CHUNK, 1)):
            first[f"meta_grad_chunk{chunk}_s"] = min(
                meta_gradient_seconds(algo, batches[0], advs[0], batches[1], advs[1], chunk) for _ in range(2)
            )
    return out


def cpu_name() -> str:
    """The CPU's model name and whether it has AMX (bfloat16 matrix units)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    model = next(
        (line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), ""
    )
    return f"{model or platform.machine()}{', AMX' if 'amx_bf16' in info else ''}, {os.cpu_count()} cores"


def print_tables(results: dict[str, dict[str, dict]]) -> None:
    print(
        "| algo | variant | env steps/iter | sampling s | inner s | outer s | (inner+outer)/sampling | load avg |"
    )
    print("|---" * 8 + "|")
    for algo, per_variant in results.items():
        for name, r in per_variant.items():
            print(
                f"| {algo} | {name} | {r['env_steps']:.0f} | {r['time/sampling']:.2f} | {r['time/inner']:.2f} | "
                f"{r['time/outer']:.2f} | {100 * r['learner_over_sampling']:.0f}% | {r['load']:.2f} |"
            )
    for algo, per_variant in results.items():
        split = SPLITS.get(algo, [])
        print(f"\n| {algo} | outer s | " + " | ".join(f"{h} s" for _, h in split) + " |")
        print("|---" * (2 + len(split)) + "|")
        for name, r in per_variant.items():
            cells = " | ".join(f"{r.get(f'time/outer_{k}', float('nan')):.2f}" for k, _ in split)
            print(f"| {name} | {r['time/outer']:.2f} | {cells} |")
    for algo, per_variant in results.items():
        first_name, first = next(iter(per_variant.items()))
        chunks = [
            k.removeprefix("meta_grad_chunk").removesuffix("_s")
            for k in first
            if k.startswith("meta_grad_chunk")
        ]
        if chunks:
            print(
                f"\n{algo} [{first_name}], uncompiled float32 meta-gradient, s: "
                + ", ".join(f"{c} tasks/pass {first[f'meta_grad_chunk{c}_s']:.2f}" for c in chunks)
            )


def parse_variant(spec: str) -> tuple[str, list[str]]:
    name, sep, overrides = spec.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--variant wants NAME=OVERRIDES, got {spec!r}")
    return name, shlex.split(overrides)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="settings for every variant")
    maml = [n for n in algorithm_names() if n.startswith("maml")]
    ap.add_argument("--algo", nargs="+", default=maml, choices=[*maml, "rl2"])
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument(
        "--warmup", type=int, default=1, help="untimed meta-iterations first, per variant (default 1)"
    )
    ap.add_argument(
        "--variant",
        action="append",
        type=parse_variant,
        metavar="NAME=OVERRIDES",
        help="a learner to compare, e.g. bf16='matmul_precision=bfloat16' (repeatable; default: the preset as is)",
    )
    ap.add_argument(
        "--skip-chunks", action="store_true", help="leave out the tasks-per-pass meta-gradient timing"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="where the policy and learner run: cpu | cuda | auto")
    ap.add_argument("--out", help="write the results as JSON")
    args = ap.parse_args()
    variants = dict(args.variant or [("preset", [])])
    load_before = os.getloadavg()
    results = {}
    try:
        for name in args.algo:
            results[name] = bench(
                name,
                args.preset,
                args.overrides,
                variants,
                args.iterations,
                args.seed,
                args.device,
                args.warmup,
                not args.skip_chunks,
            )
    except RobometaError as exc:
        print(f"bench_maml: error: {exc}", file=sys.stderr)
        return 2
    load_after = os.getloadavg()
    machine = {
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "device": args.device,
        "gpu": torch.cuda.get_device_name() if args.device != "cpu" and torch.cuda.is_available() else None,
        "preset": args.preset,
        "overrides": args.overrides,
        "load_average_before": load_before,
        "load_average_after": load_after,
    }
    print(
        f"{machine['cpu']}, torch {machine['torch']}, device {args.device}"
        f"{' (' + machine['gpu'] + ')' if machine['gpu'] else ''}, preset {args.preset} {args.overrides}, "
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    print_tables(results)
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
