"""The ``robometa`` command: thin over the library, owns the terminal.

Each subcommand is a ``register_<name>(subparsers)`` function that adds its parser
and sets ``func``; user mistakes raise :class:`RobometaError`, printed here as one
line with exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
from collections.abc import Sequence

from robometa.errors import RobometaError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but bad usage prints one line (plus the usage) and exits 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def _console():
    """A rich console; when output is piped, wide enough that tables do not fold."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=160)


# ------------------------------------------------------------------ tasks


def _cmd_tasks(args: argparse.Namespace) -> int:
    from robometa.tasks import family_names, make_family

    if args.render is not None:
        return _render_tasks(args)
    if args.out is not None:
        raise RobometaError("--out goes with --render FAMILY (the family whose tasks to draw)")
    names = family_names()
    if args.family:
        make_family(args.family)  # validates the name
        names = [n for n in names if args.family in (n, make_family(n).env_id)]
    infos = [make_family(n).info() for n in names]
    if args.json:
        print(json.dumps([i.to_dict() for i in infos], indent=2))
        return 0
    from rich.table import Table

    table = Table(title="robometa task families")
    columns = ("family", "gymnasium id", "obs", "act", "horizon", "dt (s)", "train", "val", "test", "success")
    for col in columns:
        table.add_column(col, no_wrap=True)
    for i in infos:
        table.add_row(
            i.name,
            i.env_id,
            str(i.obs_dim),
            str(i.act_dim),
            str(i.horizon),
            f"{i.dt:g}",
            str(i.n_train),
            str(i.n_val),
            str(i.n_test),
            "yes" if i.has_success else "-",
        )
    console = _console()
    console.print(table)
    console.print("held-out test splits:")
    for i in infos:
        console.print(f"  {i.name}: {i.heldout}", highlight=False)
        for split, what in i.axis_splits.items():
            console.print(f"    --split {split}: {what}", highlight=False)
    console.print("validation splits (what chooses checkpoints/best.pt):")
    for i in infos:
        console.print(f"  {i.name}: {i.validation}", highlight=False)
    return 0


def _render_tasks(args: argparse.Namespace) -> int:
    """``robometa tasks --render FAMILY --out PNG``: a grid of the split's tasks, rendered offscreen."""
    from robometa.tasks import make_family
    from robometa.viz.task_grid import render_task_grid, write_png

    if args.out is None:
        raise RobometaError("--render needs --out PNG, the image file to write")
    if not 1 <= args.count <= 64:
        raise RobometaError(f"--count must be in [1, 64], got {args.count}")
    if not 1 <= args.columns <= 16:
        raise RobometaError(f"--columns must be in [1, 16], got {args.columns}")
    family = make_family(args.render)
    tasks = family.split_tasks(family.check_split(args.split), seed=args.seed)[: args.count]
    console = _console()
    with console.status(f"rendering {len(tasks)} {args.split} tasks of {family.name}"):
        image = render_task_grid(family, tasks, columns=min(args.columns, len(tasks)), seed=args.seed)
        write_png(image, args.out)
    console.print(
        f"wrote {args.out} ({image.shape[1]}x{image.shape[0]}): {len(tasks)} {args.split} tasks of {family.name}",
        highlight=False,
    )
    return 0


def register_tasks(sub: argparse._SubParsersAction) -> None:
    from robometa.tasks.base import SPLITS

    p = sub.add_parser("tasks", help="list task families and their gymnasium ids; draw their tasks")
    p.add_argument("family", nargs="?", help="show only this family (name or gymnasium id)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--render", metavar="FAMILY", help="render a grid of FAMILY's tasks offscreen (with --out)"
    )
    p.add_argument("--out", metavar="PNG", help="where --render writes its image")
    p.add_argument(
        "--split",
        default="train",
        help=f"which split --render draws: {' | '.join(SPLITS)}, or a family's per-axis split such as "
        "test-objects (default: train)",
    )
    p.add_argument("--count", type=int, default=8, help="how many tasks --render draws (default: 8)")
    p.add_argument("--columns", type=int, default=4, help="grid columns for --render (default: 4)")
    p.add_argument("--seed", type=int, default=0, help="split seed and reset seed for --render (default: 0)")
    p.set_defaults(func=_cmd_tasks)


# ------------------------------------------------------------------ train


def _cmd_train(args: argparse.Namespace) -> int:
    from robometa.trainer import Trainer

    if args.cell is not None:  # shorthand for the override cell=... (rl2's recurrent cell)
        args.overrides = [*args.overrides, f"cell={args.cell}"]
    if args.aggregator is not None and args.resume:  # a setting of the run, which resuming keeps
        args.overrides = [*args.overrides, f"aggregator={args.aggregator}"]
    if args.log_video:  # shorthand for the override log_video=true
        args.overrides = [*args.overrides, "log_video=true"]
    # --ray-* are shorthands for run settings that may also change on --resume
    ray_flags = {
        k: getattr(args, k)
        for k in ("ray_address", "ray_workers", "ray_cpus_per_worker")
        if getattr(args, k) is not None
    }
    console = _console()
    if args.resume:
        given = [
            f
            for f in ("algo", "family", "preset", "config", "seed", "run_dir", "sampler")
            if getattr(args, f) is not None
        ]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise RobometaError(f"{flag} cannot be combined with --resume (the run's config.yaml is used)")
        from robometa.configs import parse_overrides

        changes = {**parse_overrides(args.overrides), **ray_flags}
        if args.device is not None:
            changes["device"] = args.device
        done, planned = Trainer.check_resume(args.resume, changes)
        if "iterations" not in changes and done >= planned:
            console.print(
                f"run {args.resume} is finished ({done}/{planned} iterations); to train it longer: "
                f"robometa train --resume {args.resume} iterations={2 * planned}",
                highlight=False,
            )
            return 0
        trainer = Trainer.resume(args.resume, changes)
        console.print(
            f"resuming [bold]{trainer.run.path}[/] at iteration {trainer.start_iteration}, "
            f"{_horizon_note(trainer)}",
            highlight=False,
        )
    else:
        from robometa.configs import resolve_config
        from robometa.runs import default_run_path

        if args.sampler is not None:
            args.overrides = [*args.overrides, f"sampler={args.sampler}"]
        args.overrides += [f"{k}={json.dumps(v)}" for k, v in ray_flags.items()]  # JSON is YAML: quoted text
        resolve = functools.partial(
            resolve_config,
            algo=args.algo,
            preset=args.preset or "quick",
            config_file=args.config,
            family=args.family,
            seed=args.seed,
            device=args.device,
        )
        cfg = resolve(overrides=args.overrides)
        if args.aggregator is not None:  # shorthand for the override aggregator=... (--algo context's)
            if cfg.algo != "context":
                raise RobometaError(f"--aggregator goes with --algo context (this run trains {cfg.algo})")
            cfg = resolve(overrides=[*args.overrides, f"aggregator={args.aggregator}"])
        from robometa.configs.loader import family_preset_path

        if ray_flags and cfg.sampler != "ray":
            flag = "--" + next(iter(ray_flags)).replace("_", "-")
            raise RobometaError(f"{flag} goes with --sampler ray (this run samples locally)")
        if cfg.sampler == "ray" and not cfg.sampler_chunks:
            cfg = _with_ray_chunks(cfg)
        path = args.run_dir or default_run_path(cfg.algo, cfg.family)
        trainer = Trainer.create(cfg, path)
        preset = args.preset or "quick"
        tuned = family_preset_path(cfg.algo, preset, cfg.family)
        console.print(
            f"training [bold]{cfg.algo}[/] on [bold]{cfg.family}[/] for {cfg.iterations} iterations "
            f"(device {trainer.device}), {_horizon_note(trainer)}; preset {preset}"
            + (f" with {cfg.family}'s own tuning ({preset}/{tuned.name})" if tuned else ""),
            highlight=False,
        )
    run_path = trainer.run.path
    if trainer.config.sampler == "ray":
        console.print(_ray_note(trainer.config), highlight=False)
    console.print(f"logs and checkpoints: {run_path}", highlight=False)
    console.print(f"watch it: tensorboard --logdir {run_path}", highlight=False)
    summary = _train_with_progress(trainer, console)
    _print_summary(console, summary)
    console.print(
        f"tensorboard --logdir {run_path}   (resume: robometa train --resume {run_path})", highlight=False
    )
    return 0


def _with_ray_chunks(cfg):
    """``cfg`` with ``sampler_chunks`` set to the Ray workers it starts (one chunk per
    worker), so that the run's config.yaml keeps its episodes whatever a resume runs on."""
    import dataclasses

    from robometa.sampling import ray_sampler
    from robometa.sampling.backends import start_backend

    start_backend(cfg.sampler_backend, cfg.ray_settings)
    return dataclasses.replace(cfg, sampler_chunks=ray_sampler.runner().pool.size)


def _ray_note(cfg) -> str:
    """Where a ``sampler: ray`` run samples: workers, cluster, chunks."""
    from robometa.sampling import ray_sampler

    pool = ray_sampler.runner().pool
    where = f"the Ray cluster at {cfg.ray_address}" if cfg.ray_address else "a local Ray runtime"
    chunks = f"{cfg.sampler_chunks} chunks" if cfg.sampler_chunks else "one chunk per worker"
    return f"sampling on {pool.size} workers of {where} ({pool.cpus:g} CPU each), {chunks} per request"


def _horizon_note(trainer) -> str:
    """The episode length a run uses, and whether its preset shortened the family's."""
    used, native = trainer.algo.horizon, trainer.family.horizon
    if used == native:
        return f"episodes of {used} steps (the family's horizon)"
    return f"episodes of {used} steps (shortened from the family's {native} by the settings)"


def _iteration_status(p) -> str:
    curve = p.result.curve.return_mean
    status = (
        f"pre {curve[0]:8.1f}  post {curve[-1]:8.1f}  "
        f"{p.result.metrics.get('sim/steps_per_s', 0.0):7.0f} steps/s"
    )
    if p.val_curve is not None:
        status += f"  val {p.val_curve.return_mean[0]:.1f} -> {p.val_curve.return_mean[-1]:.1f}"
    if p.test_curve is not None:
        status += f"  test {p.test_curve.return_mean[0]:.1f} -> {p.test_curve.return_mean[-1]:.1f}"
    return status


def _train_with_progress(trainer, console) -> dict:
    """A live bar with an ETA on a terminal; one plain line per iteration otherwise
    (a log file or a pipe), so a redirected run is never silent."""
    import time

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    total, start = trainer.config.iterations, trainer.start_iteration
    if not console.is_terminal:
        t0 = time.perf_counter()

        def line(p) -> None:
            done = p.iteration + 1
            elapsed = time.perf_counter() - t0
            eta = elapsed / (done - start) * (total - done)
            console.print(
                f"iteration {done}/{total}  {_iteration_status(p)}  "
                f"{elapsed:.0f} s elapsed, about {_duration(eta)} left",
                highlight=False,
                soft_wrap=True,
            )
            console.file.flush()

        return trainer.train(callback=line)

    columns = (
        TextColumn("iteration"),
        MofNCompleteColumn(),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("train", total=total, completed=start, status="sampling...")

        def update(p) -> None:
            bar.update(task, completed=p.iteration + 1, status=_iteration_status(p))

        return trainer.train(callback=update)


def _duration(seconds: float) -> str:
    from robometa.eval.evaluate import format_duration

    return format_duration(seconds)


def _print_summary(console, summary: dict) -> None:
    from rich.table import Table

    titles = (
        ("train_curve", "last training meta-batch"),
        ("val_curve", "validation tasks (choose best.pt)"),
        ("test_curve", "held-out test tasks (for watching)"),
    )
    for key, title in titles:
        curve = summary.get(key)
        if not curve:
            continue
        table = Table(title=f"adaptation curve: {title}")
        # numbered as in the TensorBoard tags: step_0.. for MAML, episode_1.. for RL²
        labels = [k + 1 if curve["x"] == "episode" else k for k in curve["steps"]]
        table.add_column(curve["x"])
        table.add_column("return (mean)")
        table.add_column(f"vs. {curve['x']} {labels[0]}")
        if curve.get("success_mean") is not None:
            table.add_column("success")
        for i, step in enumerate(labels):
            gain = curve["return_mean"][i] - curve["return_mean"][0]
            row = [str(step), f"{curve['return_mean'][i]:.2f}", f"{gain:+.2f}" if i else ""]
            if curve.get("success_mean") is not None:
                row.append(f"{curve['success_mean'][i]:.2f}")
            table.add_row(*row)
        console.print(table)
    if summary.get("best_iteration") is not None:
        console.print(
            f"best.pt: iteration {summary['best_iteration']}, {summary['selection_metric']} "
            f"{summary['best_val_return']:.2f}",
            highlight=False,
        )


def register_train(sub: argparse._SubParsersAction) -> None:
    from robometa.algos import algorithm_names

    p = sub.add_parser(
        "train",
        help="meta-train a policy (default: quick MAML-TRPO on cheetah-vel)",
        description="Meta-train on a task family; logs to TensorBoard and checkpoints under runs/<name>/.",
    )
    p.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. iterations=50 inner_lr=0.05"
    )
    p.add_argument("--algo", help=f"meta-learner: {' | '.join(algorithm_names())} (default maml-trpo)")
    p.add_argument("--family", help="task family (see `robometa tasks`; default cheetah-vel)")
    p.add_argument(
        "--preset",
        help="quick (a few minutes on a laptop CPU) | paper (the papers' settings); a family with its own "
        "tuning of the preset (robometa/configs/presets/ALGO/PRESET/FAMILY.yaml) gets it on top",
    )
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file of settings (applied over the preset)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--run-dir", help="run directory (default runs/<algo>-<family>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run exactly where it stopped")
    p.add_argument("--cell", choices=("gru", "lstm"), help="recurrent cell of --algo rl2 (default gru)")
    p.add_argument(
        "--aggregator",
        choices=("mean", "attention", "pog"),
        help="how --algo context pools the trial's transitions into a task embedding: mean (prototype) | "
        "attention (matching) | pog (product of Gaussians, PEARL); default mean",
    )
    p.add_argument(
        "--log-video",
        action="store_true",
        help="at every evaluation, log a before|after adaptation video of a held-out task to TensorBoard",
    )
    p.add_argument(
        "--sampler",
        choices=("local", "ray"),
        help="where episodes are sampled: local (this process, default) | ray (Ray workers, each running a "
        "copy of the policy; pip install 'robometa[ray]'); a local Ray runtime unless --ray-address",
    )
    p.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="with --sampler ray: join a running Ray cluster, auto | HOST:PORT of its head (`ray start --head`)",
    )
    p.add_argument(
        "--ray-workers",
        type=int,
        metavar="N",
        help="with --sampler ray: sampler workers (default: one per CPU)",
    )
    p.add_argument(
        "--ray-cpus-per-worker",
        type=float,
        metavar="C",
        help="with --sampler ray: CPUs per worker (default 1)",
    )
    p.set_defaults(func=_cmd_train)


# ------------------------------------------------------------------ evaluate / replay


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise RobometaError(f"--seeds takes comma-separated integers (e.g. 0,1,2), got {text!r}") from None
    if not seeds:
        raise RobometaError("--seeds needs at least one seed")
    return seeds


def _cmd_evaluate(args: argparse.Namespace) -> int:

    from robometa.eval.evaluate import evaluate

    if args.adapt_steps is not None and args.episodes is not None:
        raise RobometaError(
            "give --adapt-steps (gradient learners) or --episodes (memory learners), not both"
        )
    steps = (
        args.adapt_steps
        if args.adapt_steps is not None
        else (None if args.episodes is None else args.episodes - 1)
    )
    baselines = [b for b in args.baselines.split(",") if b] if args.baselines else []
    console = _console()
    with _progress_lines(console, f"evaluating {', '.join(args.run_dirs)} on {args.split} tasks") as say:
        out, summary = evaluate(
            args.run_dirs,
            split=args.split,
            n_tasks=args.tasks,
            steps=steps,
            seeds=_seeds(args.seeds),
            baselines=baselines,
            name=args.name,
            checkpoint=args.checkpoint,
            device=args.device,
            progress=say,
            tasks_file=args.tasks_file,
            group_by=args.group_by,
        )
    for table in _evaluation_tables(summary):
        console.print(table)
    for line in _pooling_lines(summary):
        console.print(line, highlight=False)
    for b, why in summary["settings"].get("skipped_baselines", {}).items():
        console.print(f"baseline {b} left out: {why}", highlight=False)
    for info in summary["settings"]["checkpoints"]:
        console.print(_checkpoint_line(info), highlight=False)
    console.print(
        f"wrote {out}/summary.json, curves.csv, per_task.csv, curves.png and TensorBoard events",
        highlight=False,
    )
    return 0


@contextlib.contextmanager
def _progress_lines(console, what: str):
    """Yield ``say(message)``: a live status line on a terminal, one printed line per
    message otherwise (a log file or a pipe), so a long job is never silent. Off a
    terminal, ``what`` heads the first message: a refusal before any work stays one line."""
    if console.is_terminal:
        with console.status(what) as status:
            yield lambda message: status.update(f"{what}: {message}")
        return
    headed = []

    def say(message: str) -> None:
        if not headed:
            console.print(what, highlight=False)
            headed.append(True)
        console.print(f"  {message}", highlight=False, soft_wrap=True)
        console.file.flush()

    yield say


def _evaluation_tables(summary: dict) -> list:
    """The evaluation as two tables that fit 100 columns: the adaptation curve of every
    method on the axis "episodes of experience", then what each method cost."""
    from rich.table import Table

    st = summary["settings"]
    title = (
        f"{st['family']}: {st['split']} tasks ({len(st['tasks'])}), {len(st['seeds'])} seed(s), "
        f"episodes of {st['horizon']} steps"
    )
    if st.get("family_horizon") not in (None, st["horizon"]):
        title += f" (the family's: {st['family_horizon']})"
    caption = "return: mean [95% CI] (IQM) over tasks and seeds"
    if st.get("group_by") == "algo":
        caption = (
            "return: mean [95% CI] (IQM); a group of runs: the mean of its runs' means, the CI "
            "resampling whole runs and tasks, the IQM over run x task scores"
        )
    curves = Table(title=title, caption=caption)
    has_success = any("success_mean" in r for m in summary["methods"].values() for r in m["curve"])
    curves.add_column("method", max_width=34)
    curves.add_column("experience", justify="right")
    curves.add_column("return", justify="right", no_wrap=True)
    if has_success:
        curves.add_column("success [95% CI]", justify="right", no_wrap=True)
    for name, m in summary["methods"].items():
        for i, r in enumerate(m["curve"]):
            unit = "step" if m["x"] == "adapt_step" else "episode"
            where = f"{unit} {r['step'] if unit == 'step' else r['step'] + 1}"
            row = [
                name if i == 0 else "",
                f"{r['episodes_seen']} ep ({where})",
                f"{r['mean']:.1f} [{r['ci_low']:.1f}, {r['ci_high']:.1f}] ({r['iqm']:.1f})",
            ]
            if has_success:
                row.append(
                    f"{r['success_mean']:.2f} [{r['success_ci_low']:.2f}, {r['success_ci_high']:.2f}]"
                    if "success_mean" in r
                    else "-"
                )
            curves.add_row(*row, end_section=i == len(m["curve"]) - 1)
    budget = Table(title="what each method had")
    budget.add_column("method", max_width=34)
    budget.add_column("episodes per step", justify="right")
    budget.add_column("meta-training", justify="right")
    for name, m in summary["methods"].items():
        training = (m.get("notes") or {}).get("training")
        if not training:
            cost = "none (scripted)" if training is None else "-"
        elif training.get("note"):
            cost = training["note"]
        elif "runs" in training:  # a group: each run's cost, as a range where they differ
            steps = [s / 1e6 for s in training["env_steps"]]
            cost = f"{_span(training['iterations'], '{:d}')} it, {_span(steps, '{:.2f}')}M steps"
            if all(x is not None for x in training["seconds"]):
                cost += f", {_span(training['seconds'], '', _duration, ' to ')}"
            cost += " per run"
        else:
            wall = "" if training.get("seconds") is None else f", {_duration(training['seconds'])}"
            cost = f"{training['iterations']} it, {training['env_steps'] / 1e6:.2f}M steps{wall}"
        budget.add_row(name, str(m["episodes_per_step"]), cost)
    return [curves, budget]


def _span(values: list, fmt: str, show=None, sep: str = "-") -> str:
    """``150`` when all values agree, else ``100-150`` (``show`` or ``fmt`` formats one)."""
    show = show or fmt.format
    lo, hi = show(min(values)), show(max(values))
    return lo if lo == hi else f"{lo}{sep}{hi}"


def _pooling_lines(summary: dict) -> list[str]:
    """What a reader of pooled groups must know: a group of one run has no run-to-run
    variation in its CI, and where the pooled runs' training settings differ."""
    lines = []
    for name, m in summary["methods"].items():
        notes = m.get("notes") or {}
        if "pooled_runs" not in notes:
            continue
        if len(notes["pooled_runs"]) == 1:
            lines.append(f"{name}: a single run, so its CI holds no run-to-run variation")
        if notes.get("config_differs"):
            lines.append(f"{name} pools runs trained with different {', '.join(notes['config_differs'])}")
    return lines


def _checkpoint_line(info: dict) -> str:
    """Which checkpoint of a run was used and how it had been chosen, in one line."""
    sel = info["selection"]
    how = (
        f"chosen on {sel.get('split')} by {sel.get('metric')}"
        if sel.get("rule") == "best"
        else "the last one written"
    )
    line = f"{info['run']}: checkpoint {info['checkpoint']} (iteration {info['iteration']}, {how})"
    if "instead_of_best" in sel:
        line += f"; not best: {sel['instead_of_best']}"
    return line


CHECKPOINT_HELP = (
    "best (chosen on the validation split) or latest; default: best, or latest where the run "
    "has no best or its best was chosen on the evaluated tasks (best is refused there)"
)


def register_evaluate(sub: argparse._SubParsersAction) -> None:
    from robometa.eval.evaluate import BASELINES, CHECKPOINTS, DEFAULT_BASELINES, GROUP_BY
    from robometa.tasks.base import SPLITS

    p = sub.add_parser("evaluate", help="adapt trained runs to held-out tasks, against baselines")
    p.add_argument(
        "run_dirs", nargs="+", metavar="RUN_DIR", help="one run, or several to compare on one plot"
    )
    p.add_argument(
        "--split",
        default="test",
        help=f"task split: {' | '.join(SPLITS)}, or a family's per-axis held-out split "
        "(robometa tasks FAMILY lists them; e.g. test-objects) (default: test)",
    )
    p.add_argument("--tasks", type=int, default=None, help="number of tasks (default: the run's eval_tasks)")
    p.add_argument(
        "--tasks-file",
        metavar="FILE.json",
        help="evaluate these tasks instead of a split: a JSON list of task objects (or a summary.json)",
    )
    p.add_argument(
        "--adapt-steps",
        type=int,
        default=None,
        help="gradient steps K for MAML (default: the inner steps the run was trained with)",
    )
    p.add_argument(
        "--episodes",
        type=int,
        default=None,
        help="episodes per trial K for RL2 (default: the trial length the run was trained with)",
    )
    p.add_argument("--seeds", default="0,1,2", help="comma-separated evaluation seeds (default: 0,1,2)")
    p.add_argument(
        "--baselines",
        default=",".join(DEFAULT_BASELINES),
        help=f"comma-separated subset of {', '.join(BASELINES)} ('' for none; default: {','.join(DEFAULT_BASELINES)})",
    )
    p.add_argument("--checkpoint", choices=CHECKPOINTS, default=None, help=CHECKPOINT_HELP)
    p.add_argument(
        "--group-by",
        choices=GROUP_BY,
        default="run",
        help="run: one line per run (default); algo: the runs of each learner (e.g. its training "
        "seeds) pooled into one line, the run as the unit of its 95%% CI; a learner is the algorithm "
        "and its variant (context-mean, rl2-lstm)",
    )
    p.add_argument(
        "--name",
        default=None,
        help="report name under the first RUN_DIR's eval/ (default: <split>-<time>, or "
        "<split>-by-algo-<time>)",
    )
    p.add_argument("--device", default="cpu", help="auto | cpu | cuda[:N] (default: cpu)")
    p.set_defaults(func=_cmd_evaluate)


def _cmd_replay(args: argparse.Namespace) -> int:
    from robometa.eval.evaluate import load_run, open_run
    from robometa.tags import experience
    from robometa.viz.replay import pick_task, record, show_in_viewer, write_replay_video
    from robometa.viz.video import check_video_path

    out = args.video or args.gif
    if args.video and args.gif:
        raise RobometaError("give --video OUT.mp4 or --gif OUT.gif, not both")
    if out is not None:
        check_video_path(out)  # before minutes of adapting, not after
    console = _console()
    if args.from_eval:
        from robometa.viz.replay import from_evaluation

        rec = from_evaluation(args.from_eval, args.task, args.adapt_steps)
    else:
        if args.run_dir is None:
            raise RobometaError(
                "give RUN_DIR (to adapt now) or --from-eval EVAL_DIR (to show evaluated episodes)"
            )
        config = open_run(args.run_dir)[1]
        task = pick_task(config.build_family(), args.split, args.task, config.split_seed)
        loaded = load_run(args.run_dir, args.checkpoint, args.device, args.split, [task])
        console.print(_checkpoint_line(loaded.checkpoint_info()), highlight=False)
    if out is None:
        from robometa.viz.viewer import require_display

        require_display()
    if not args.from_eval:
        trained = loaded.algo.trained_steps
        steps = trained if args.adapt_steps is None else args.adapt_steps
        why = "as trained" if args.adapt_steps is None else f"trained with {trained}"
        console.print(
            f"adapting to {args.split} task {args.task}: {experience(loaded.algo.curve_x, steps)} ({why})",
            highlight=False,
        )
        with console.status(f"adapting to {args.split} task {args.task}"):
            rec = record(loaded.algo, task, steps, seed=args.seed)
    for label, rewards in zip(rec.labels, rec.rewards):
        console.print(f"{label}: return {float(rewards.sum()):.1f}", highlight=False)
    if out is not None:
        with console.status(f"rendering {out}"):
            path = write_replay_video(rec, out, args.width, args.height, layout=args.layout)
        console.print(f"wrote {path}", highlight=False)
    else:
        show_in_viewer(rec)
    return 0


def register_replay(sub: argparse._SubParsersAction) -> None:
    from robometa.eval.evaluate import CHECKPOINTS
    from robometa.tasks.base import SPLITS

    p = sub.add_parser("replay", help="adapt to one task and show the policy before and after")
    p.add_argument("run_dir", metavar="RUN_DIR", nargs="?", help="the run to adapt (not with --from-eval)")
    p.add_argument(
        "--from-eval",
        metavar="EVAL_DIR",
        help="show the episodes `robometa evaluate` recorded (RUN_DIR/eval/<name>), exactly, without re-adapting",
    )
    p.add_argument("--task", type=int, default=0, help="index of the task in the split (default: 0)")
    p.add_argument(
        "--split",
        default="test",
        help=f"task split: {' | '.join(SPLITS)}, or a family's per-axis split (default: test)",
    )
    p.add_argument(
        "--adapt-steps",
        type=int,
        default=None,
        help="adaptation steps, or episodes before the shown one for RL2 (default: as the run was trained)",
    )
    p.add_argument(
        "--video", metavar="OUT.mp4", help="render headless to an MP4 instead of opening the viewer"
    )
    p.add_argument("--gif", metavar="OUT.gif", help="render headless to a GIF instead of opening the viewer")
    p.add_argument(
        "--layout",
        choices=("side", "sequence"),
        default="side",
        help="before/after side by side or in sequence",
    )
    p.add_argument("--width", type=int, default=480)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--seed", type=int, default=0, help="seed of the adaptation episodes (default: 0)")
    p.add_argument("--checkpoint", choices=CHECKPOINTS, default=None, help=CHECKPOINT_HELP)
    p.add_argument("--device", default="cpu", help="auto | cpu | cuda[:N] (default: cpu)")
    p.set_defaults(func=_cmd_replay)


# ------------------------------------------------------------------ main

# Subcommands in the order `robometa --help` lists them.
COMMANDS = [register_tasks, register_train, register_evaluate, register_replay]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="robometa", description="Meta-reinforcement learning on simulated MuJoCo robots.")
    from robometa import __version__

    parser.add_argument("--version", action="version", version=f"robometa {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except RobometaError as exc:
        print(f"robometa: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
