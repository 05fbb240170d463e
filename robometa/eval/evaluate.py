"""``robometa evaluate``: a trained run against baselines on held-out tasks.

Which checkpoint: every checkpoint records how it was chosen (``"selection"``):
``latest.pt`` by nothing but time, ``best.pt`` by its return on the tasks of one
split (``val`` since validation splits exist; a ``best.pt`` without a record is from
before, when it was chosen on ``test``). A checkpoint is never evaluated on tasks it
was chosen on: its score there would be the maximum of noisy measurements, not an
estimate. By default ``best`` is used when it exists and was chosen elsewhere, else
``latest``; asking for ``best`` where it was chosen on the evaluated split (or on
tasks among the evaluated ones) is refused.

Several runs: one method per run (``group_by="run"``), or one per learner
(``group_by="algo"``), pooling the runs of each learner (e.g. its training seeds) with
the training run as the unit of the confidence interval (:class:`PooledResult`). Runs
are pooled only where they were measured alike (family, its options, episode length,
adaptation steps, episodes per step); anything else is refused before any work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from robometa.algos.base import Algorithm
from robometa.configs.train import TrainConfig
from robometa.errors import RobometaError, choice_error
from robometa.eval import baselines as bl
from robometa.eval.protocol import MethodResult, PooledResult, write_report
from robometa.runs import RunDir
from robometa.tags import ADAPT_STEP
from robometa.tasks.base import Task, TaskFamily

log = logging.getLogger(__name__)

BASELINES = tuple(bl.BASELINES)  # every baseline's name; what each needs: bl.BASELINES[name]
DEFAULT_BASELINES = ("no-adapt", "expert")
CHECKPOINTS = ("best", "latest")
GROUP_BY = ("run", "algo")  # one method per run | the runs of each learner pooled


@dataclass
class LoadedRun:
    """A run directory brought back to life: its config, family and trained learner."""

    path: Path
    config: TrainConfig
    family: TaskFamily  # built with the run's family_options
    algo: Algorithm  # holding the checkpoint's state
    checkpoint: str  # "best" | "latest": the file it was loaded from
    iteration: int  # meta-iterations the checkpoint had trained
    selection: dict[str, Any]  # how the checkpoint was chosen (see selection_record)
    env_steps: int = 0  # environment steps meta-training had sampled up to the checkpoint
    train_seconds: float | None = None  # wall time of that training (None: not recorded then)

    def checkpoint_info(self) -> dict[str, Any]:
        """What a report records about the evaluated checkpoint, and the training it cost."""
        return {
            "run": str(self.path),
            "checkpoint": self.checkpoint,
            "iteration": self.iteration,
            "selection": self.selection,
            "training": self.training_budget(),
        }

    def training_budget(self) -> dict[str, Any]:
        """Meta-training's cost up to the checkpoint: iterations, env steps, wall seconds."""
        seconds = None if self.train_seconds is None else round(self.train_seconds, 1)
        return {"iterations": self.iteration, "env_steps": self.env_steps, "seconds": seconds}


def open_run(run_dir: str | Path) -> tuple[RunDir, TrainConfig]:
    """A run directory's paths (:class:`RunDir`) and resolved config; writes nothing."""
    from robometa.configs import build_config, read_yaml

    run = RunDir(Path(run_dir))
    if not run.path.is_dir():
        raise RobometaError(f"run directory {str(run.path)!r} not found; train one with: robometa train")
    if not run.config.is_file():
        raise RobometaError(f"{str(run.path)!r} is not a robometa run (no config.yaml)")
    return run, build_config(read_yaml(run.config, "run config"))


def selection_record(ckpt: dict[str, Any], name: str, config: TrainConfig) -> dict[str, Any]:
    """How checkpoint ``name`` (``best`` | ``latest``) was chosen.

    ``{"rule": "latest", "iteration"}``, or ``{"rule": "best", "split", "metric",
    "step", "value", "iteration", "split_seed", "tasks"}``: the split whose first
    ``tasks`` tasks (of ``split_seed``) chose it. A ``best.pt`` written before
    checkpoints carried a record was chosen on the run's test tasks.
    """
    selection = ckpt.get("selection")
    if isinstance(selection, dict) and "rule" in selection:
        return dict(selection)
    iteration = int(ckpt.get("iteration", 0))
    if name == "latest":
        return {"rule": "latest", "iteration": iteration}
    return {
        "rule": "best",
        "split": "test",
        "metric": "held-out return at the last evaluated step (a run from before validation splits)",
        "iteration": iteration,
        "split_seed": config.split_seed,
        "tasks": config.eval_tasks,
    }


def selection_conflict(
    selection: dict[str, Any], family: TaskFamily, split: str, tasks: Sequence[Task]
) -> str | None:
    """Why a checkpoint chosen by ``selection`` must not be evaluated on ``tasks`` of
    ``split`` (``None`` when it may): it was chosen on that split, or on some of those tasks."""
    if selection.get("rule") != "best":
        return None
    chosen_on = selection.get("split", "test")
    if chosen_on == split:
        return f"was chosen on the {split} split"
    chosen = family.split_tasks(chosen_on, seed=selection["split_seed"], n=selection["tasks"])
    keys = {t.to_json() for t in chosen}
    shared = sum(t.to_json() in keys for t in tasks)
    if shared:
        return f"was chosen on {chosen_on} tasks, {shared} of which are among the evaluated {split} tasks"
    return None


def load_run(
    run_dir: str | Path,
    checkpoint: str | None = None,
    device: str = "cpu",
    split: str = "test",
    tasks: Sequence[Task] | None = None,
) -> LoadedRun:
    """Rebuild a run's learner to evaluate it on ``tasks`` of ``split``; writes nothing.

    ``checkpoint``: ``"best"``, ``"latest"``, or ``None``: ``best`` when it exists and
    was not chosen on these tasks, else ``latest``. An explicit ``"best"`` chosen on
    ``split`` (or on some of ``tasks``) raises :class:`RobometaError`; a run that never
    evaluated has no ``best.pt`` and gives ``latest``. ``tasks`` (default: the run's
    ``eval_tasks`` first tasks of ``split``) are only read for that check.
    """
    from robometa.algos import make_algorithm
    from robometa.runs import load_checkpoint

    if checkpoint is not None and checkpoint not in CHECKPOINTS:
        raise choice_error("checkpoint", checkpoint, CHECKPOINTS)
    run, config = open_run(run_dir)
    family = config.build_family()
    if tasks is None:
        family.check_split(split)
        tasks = family.split_tasks(split, seed=config.split_seed, n=config.eval_tasks)
    refused = None
    if checkpoint != "latest" and run.best.is_file():
        path, ckpt = run.best, load_checkpoint(run.best)
        selection = selection_record(ckpt, "best", config)
        refused = selection_conflict(selection, family, split, tasks)
        if refused is not None and checkpoint == "best":
            raise RobometaError(
                f"{path} {refused}: its return there is a maximum over evaluations, not an estimate; "
                f"evaluate --checkpoint latest, or on another --split"
            )
    if checkpoint == "latest" or not run.best.is_file() or refused is not None:
        path, ckpt = run.latest, load_checkpoint(run.latest)
        selection = selection_record(ckpt, "latest", config)
        if refused is not None:
            log.info("%s %s; using %s", run.best, refused, path)
            selection["instead_of_best"] = f"best.pt {refused}"
    saved = ckpt.get("config") or {}
    for key in ("family", "algo"):
        if key in saved and saved[key] != getattr(config, key):
            raise RobometaError(
                f"checkpoint {path} was trained with {key} {saved[key]!r} but the run's config.yaml says "
                f"{getattr(config, key)!r}; evaluate the run the checkpoint came from"
            )
    algo = make_algorithm(config.algo, family, config.algo_params, device, config.seed)
    try:
        algo.load_state_dict(ckpt["algo"])
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise RobometaError(
            f"checkpoint {path} does not fit the run's {config.algo} on {config.family} ({exc})"
        ) from None
    seconds = ckpt.get("train_seconds")
    return LoadedRun(
        run.path,
        config,
        family,
        algo,
        path.stem,
        int(ckpt.get("iteration", 0)),
        selection,
        int(ckpt.get("env_steps", 0)),
        None if seconds is None else float(seconds),
    )


def read_tasks_file(path: str | Path, family: TaskFamily) -> list[Task]:
    """The user's own tasks: a JSON list of task dicts, or a mapping with a ``tasks`` list
    (so a ``summary.json`` works); every task is validated by the family."""
    import json

    path = Path(path)
    if not path.is_file():
        raise RobometaError(f"tasks file {str(path)!r} not found")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RobometaError(f"tasks file {str(path)!r} is not valid JSON: {exc}") from None
    if isinstance(data, dict):
        data = data.get("tasks")
    if not isinstance(data, list) or not data or not all(isinstance(t, dict) for t in data):
        raise RobometaError(
            f"tasks file {str(path)!r} must hold a non-empty JSON list of task objects "
            f'(fields of {family.task_cls.__name__}), or {{"tasks": [...]}}'
        )
    tasks = []
    for i, item in enumerate(data):
        try:
            tasks.append(family.task_from_dict(item))
        except RobometaError as exc:
            raise RobometaError(f"task {i} of {path.name}: {exc}") from None
    return tasks


def held_out_tasks(config: TrainConfig, family: TaskFamily, split: str, n_tasks: int | None) -> list[Task]:
    """The first ``n_tasks`` (default: the run's ``eval_tasks``) tasks of ``split``, of the run's split seed."""
    family.check_split(split)
    n = config.eval_tasks if n_tasks is None else int(n_tasks)
    if n < 1:
        raise RobometaError(f"--tasks must be >= 1, got {n}")
    return family.split_tasks(split, seed=config.split_seed, n=n)


def learner_result(
    loaded: LoadedRun, tasks: Sequence[Task], steps: int, seeds: Sequence[int]
) -> MethodResult:
    """The trained learner's adaptation data on ``tasks`` for every evaluation seed:
    the adaptation protocol the trainer's periodic evaluation runs too
    (``algo.adaptation_data``), so the same checkpoint, tasks and seed give its numbers.
    The first seed's episodes are recorded as physics states, for exact replay."""
    runs = [
        loaded.algo.adaptation_data(tasks, steps, seed=int(seed), record_states=i == 0)
        for i, seed in enumerate(seeds)
    ]
    first = runs[0]
    return MethodResult(
        name=loaded.config.learner,
        x=first.x,
        returns=np.stack([d.returns for d in runs]),
        success=None if first.success is None else np.stack([d.success for d in runs]),
        episodes_per_step=first.episodes_per_step,
        notes=loaded.checkpoint_info(),
        recorded={"states": first.states, "rewards": first.rewards},
    )


def multitask_result(
    first: LoadedRun,
    tasks: Sequence[Task],
    steps: int,
    seeds: Sequence[int],
    cache: Path,
    split: str = "test",
    progress: Callable[[str], None] | None = None,
) -> MethodResult:
    """One policy trained on the run's train tasks without meta-learning, then fine-tuned.

    It is the learner's own machinery with meta-learning switched off
    (``algo.multitask_config()``), trained on as many episodes as the run's
    meta-training sampled (``multitask_iteration_factor`` x the run's iterations). For
    a gradient learner that is zero inner steps during training (multi-task TRPO/PPO
    with the run's settings and seed; MAML with one inner step samples two batches per
    iteration, the baseline one), fine-tuned at evaluation with the run's inner steps
    and episodes and a step size chosen on val (named ``multi-task + fine-tune``). For
    a memory learner (RL², SNAIL, the context learners) it is the same policy and PPO
    without memory (``memory=False``) on the same trials; it has no step size and
    nothing to adapt with, so its episodes 2..K resample episode 1 (named
    ``multi-task (no memory)``). The trained baseline is a run directory under
    ``eval/cache/`` (resumed if interrupted).

    Its checkpoint is chosen the way the learner's was, by what each was trained for:
    when the learner is a validation-chosen ``best`` (by its return after the steps
    it was meta-trained for), the baseline run evaluates the same validation tasks as
    often and keeps its own ``best`` by its validation return *before* fine-tuning
    (step 0: what multi-task training optimizes; choosing it after a fine-tuning step
    with the learner's step size picked early checkpoints, iteration 50 of 300 on
    cheetah-params, because that step size ruins the later ones); otherwise both are
    ``latest``.
    """
    import hashlib
    import json

    from robometa.configs import config_to_dict
    from robometa.trainer import Trainer

    why_not = bl.BASELINES["multitask"].why_not(first.family, first.algo)
    if why_not is not None:
        raise RobometaError(f"the multitask baseline cannot be measured: {why_not}")
    params = first.algo.multitask_config()
    by_val = first.selection.get("rule") == "best" and first.selection.get("split") == "val"
    # Equal experience: as many episodes as the meta-learner sampled; evaluated on val
    # as often, at the same experience. (Evaluation only ever reads what training
    # wrote, so eval_every changes no weight.)
    factor = first.algo.multitask_iteration_factor()
    eval_every = first.config.eval_every * factor if by_val else 0
    cfg = replace(
        first.config,
        algo_params=params,
        iterations=first.config.iterations * factor,
        eval_every=eval_every,
        device="cpu",
    )
    keyed = config_to_dict(cfg)
    step = None
    if by_val:
        step = 0  # the baseline's own objective: its return before fine-tuning
        keyed["selection_step"] = step
    key = hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = cache / f"multitask-{key}"
    if (path / "config.yaml").is_file():
        trainer = Trainer.resume(path, selection_step=step)
    else:
        trainer = Trainer.create(cfg, path, selection_step=step)
    left = cfg.iterations - trainer.start_iteration
    if progress is not None and left > 0:
        took = first.training_budget()["seconds"]
        progress(
            f"training the multi-task baseline: {left} of {cfg.iterations} iterations on the run's train "
            f"tasks (cached in {path.parent} for next time"
            + (
                f"; the meta-learner's {first.iteration} iterations took {format_duration(took)})"
                if took
                else ")"
            )
        )
    t0 = time.perf_counter()

    def tick(p) -> None:
        if progress is not None:
            done = p.iteration + 1 - trainer.start_iteration
            eta = (time.perf_counter() - t0) / done * (cfg.iterations - p.iteration - 1)
            progress(
                f"multi-task baseline: iteration {p.iteration + 1}/{cfg.iterations}, about {format_duration(eta)} left"
            )

    trainer.train(callback=tick)
    mt = load_run(path, "best" if by_val else "latest", split=split, tasks=tasks)
    # A fair fine-tuned baseline: its step size is chosen on validation tasks, as the
    # meta-learner's settings are, not borrowed from a learner that was meta-trained for it.
    # A memory learner's baseline has no step size: without memory it does not adapt.
    lr, scores = getattr(first.config.algo_params, "inner_lr", None), {}
    if lr is None:
        result = learner_result(mt, tasks, steps, seeds)
        result.name = MULTITASK_NO_MEMORY
        result.notes = {**mt.checkpoint_info(), "iterations": cfg.iterations, "rule_of": str(first.path)}
        return result
    if steps > 0 and split != "val":
        if progress is not None:
            progress(f"multi-task baseline: choosing its fine-tuning step size on {len(tasks)} val tasks")
        val = mt.family.split_tasks("val", seed=mt.config.split_seed, n=len(tasks))
        for factor in FINE_TUNE_LR_FACTORS:
            candidate = _with_inner_lr(mt, first.config.algo_params.inner_lr * factor)
            data = candidate.algo.adaptation_data(val, steps, seed=VAL_SELECTION_SEED)
            scores[candidate.config.algo_params.inner_lr] = float(data.returns[:, 1:].mean())
        lr = max(scores, key=scores.get)
    result = learner_result(_with_inner_lr(mt, lr), tasks, steps, seeds)
    result.name = MULTITASK_FINE_TUNE
    result.notes = {
        **mt.checkpoint_info(),
        "iterations": cfg.iterations,
        "rule_of": str(first.path),
        "fine_tune_lr": lr,
        "fine_tune_lr_rule": "chosen on val (mean return over steps 1..K)"
        if scores
        else "the run's inner_lr",
        "fine_tune_lr_val_returns": {f"{k:g}": v for k, v in scores.items()},
    }
    return result


# The multi-task baseline's name in reports: fine-tuned like a gradient learner, or a
# memory learner's policy without its memory.
MULTITASK_FINE_TUNE = "multi-task + fine-tune"
MULTITASK_NO_MEMORY = "multi-task (no memory)"
# Fine-tuning step sizes the multi-task baseline tries on val, relative to the run's inner_lr.
FINE_TUNE_LR_FACTORS = (0.03, 0.1, 0.3, 1.0, 3.0)
VAL_SELECTION_SEED = 7_000_001  # its own stream: the evaluation seeds are not reused


def _with_inner_lr(loaded: LoadedRun, lr: float) -> LoadedRun:
    """The same trained weights with another fine-tuning step size."""

    from robometa.algos import make_algorithm

    if lr == loaded.config.algo_params.inner_lr:
        return loaded
    params = replace(loaded.config.algo_params, inner_lr=lr)
    config = replace(loaded.config, algo_params=params)
    algo = make_algorithm(config.algo, loaded.family, params, loaded.algo.device, config.seed)
    algo.load_state_dict(loaded.algo.state_dict())
    return replace(loaded, config=config, algo=algo)


def format_duration(seconds: float) -> str:
    """``75`` -> ``"1 min 15 s"``: wall times for people (s, min, h)."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


# ------------------------------------------------------------------ pooling runs


def group_name(algo: str, runs: int) -> str:
    """A pooled method's name: ``reptile (3 runs)``."""
    return f"{algo} ({runs} run{'' if runs == 1 else 's'})"


def run_labels(paths: Sequence[Path]) -> list[str]:
    """Short names of runs: their directory names, or the whole paths where two share one."""
    names = [p.name for p in paths]
    return [n if names.count(n) == 1 else str(p) for n, p in zip(names, paths)]


def pooling_conflict(algo: str, members: Sequence[tuple[str, dict[str, Any]]]) -> str | None:
    """Why the runs of ``algo`` cannot be pooled (``None`` when they can): the settings
    of ``members`` (``(run label, {setting: value})``) that differ, each value with its runs."""
    differ = []
    for key in members[0][1]:
        by_value: dict[str, list[str]] = {}
        for label, settings in members:
            by_value.setdefault(_shown(settings.get(key)), []).append(label)
        if len(by_value) > 1:
            values = ", ".join(f"{v} ({', '.join(labels)})" for v, labels in by_value.items())
            differ.append(f"{key}: {values}")
    if not differ:
        return None
    return f"cannot pool the {len(members)} {algo} runs, which differ in " + "; ".join(differ)


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={v}" for k, v in sorted(value.items())) + "}" if value else "none"
    return str(value)


def measured_alike(lr: LoadedRun, steps: int) -> dict[str, Any]:
    """What makes two runs' numbers the same quantity (before adapting): the curve's
    axis, episode length, adaptation steps and episodes of experience per step."""
    axis = lr.algo.curve_x
    per_step = getattr(lr.algo.config, "episodes_per_task", None) if axis == ADAPT_STEP else 1
    return {
        "axis": axis,
        "episode length": lr.algo.horizon,
        "adaptation steps": steps,
        "episodes per step": per_step,
    }


# Settings that say how a run was executed, not what was trained: a pooled group does
# not report them as differences.
_HOW_IT_RAN = {"seed", "device", "learner_threads", "checkpoint_every", "log_video", "sampler",
               "sampler_chunks", "ray_address", "ray_workers", "ray_cpus_per_worker", "ray_timeout_s"}  # fmt: skip


def config_differences(configs: Sequence[TrainConfig], labels: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The training settings (beyond the seed and how the runs were executed) in which
    pooled runs differ: ``{"algo_params.inner_lr": {run: value}}``, empty when none."""
    from robometa.configs import config_to_dict

    flat = []
    for cfg in configs:
        d = config_to_dict(cfg)
        params = d.pop("algo_params", {}) or {}
        d.update({f"algo_params.{k}": v for k, v in params.items()})
        flat.append({k: v for k, v in d.items() if k not in _HOW_IT_RAN})
    keys = [k for k in flat[0]] + [k for d in flat[1:] for k in d if k not in flat[0]]
    return {
        k: {label: d.get(k) for label, d in zip(labels, flat)}
        for k in dict.fromkeys(keys)
        if len({repr(d.get(k)) for d in flat}) > 1
    }


def pool(
    name: str, results: Sequence[MethodResult], loaded: Sequence[LoadedRun], labels: Sequence[str]
) -> PooledResult:
    """The runs of one learner as one method: their results stacked on a leading runs
    axis; the notes list which runs and checkpoints were pooled and where their
    training settings differ."""
    first = results[0]
    shapes = {r.returns.shape for r in results}
    alike = {(r.x, r.episodes_per_step, r.success is None) for r in results}
    if len(shapes) > 1 or len(alike) > 1:  # measured_alike() was checked before adapting
        raise RobometaError(f"cannot pool the runs of {name}: their results differ in shape or axis")
    budgets = [lr.training_budget() for lr in loaded]
    notes = {
        "algo": loaded[0].config.algo,
        "pooled_runs": [{"label": label, **lr.checkpoint_info()} for label, lr in zip(labels, loaded)],
        "training": {"runs": len(loaded), **{k: [b[k] for b in budgets] for k in budgets[0]}},
        "config_differs": config_differences([lr.config for lr in loaded], labels),
    }
    return PooledResult(
        name,
        first.x,
        np.stack([r.returns for r in results]),
        None if first.success is None else np.stack([r.success for r in results]),
        first.episodes_per_step,
        notes,
        run_labels=list(labels),
    )


def evaluate(
    run_dirs: Sequence[str | Path],
    split: str = "test",
    n_tasks: int | None = None,
    steps: int | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    baselines: Sequence[str] = DEFAULT_BASELINES,
    name: str | None = None,
    checkpoint: str | None = None,
    device: str = "cpu",
    out_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    tasks_file: str | Path | None = None,
    group_by: str = "run",
) -> tuple[Path, dict[str, Any]]:
    """Evaluate one run (plus baselines) or compare several runs of one family.

    ``steps`` (``None``: each learner's ``trained_steps``, the adaptation meta-training
    taught it) is the number of adaptation steps (MAML) or extra episodes of a trial
    (RL²) after step 0; the baselines follow the first run's.

    ``checkpoint``: ``best`` | ``latest`` | ``None`` (see :func:`load_run`: never one
    chosen on the evaluated tasks). The summary's ``settings["checkpoints"]`` records,
    per run, the checkpoint used, its iteration and how it was chosen.

    ``tasks_file``: a JSON list of task dicts (or ``{"tasks": [...]}``, e.g. a previous
    ``summary.json``) to evaluate instead of a split; the report's split is ``custom``.

    ``progress`` receives one line whenever the work moves on (which method, multi-task
    training with an ETA, each PPO task), for the caller to show.

    ``group_by``: ``run`` (one method per run) or ``algo`` (the runs of each learner
    pooled into one method, :func:`pool`; refused, before any work, where a learner's
    runs were not measured alike: :func:`pooling_conflict`). The no-adaptation baseline
    then holds the first group's step 0; the other baselines follow the first run.

    Writes ``<first run>/eval/<name>/`` (or ``out_dir``) and returns it with the summary.
    """
    if not run_dirs:
        raise RobometaError("evaluate needs at least one run directory")
    for b in baselines:
        if b not in BASELINES:
            raise choice_error("baseline", b, BASELINES)
    if not seeds:
        raise RobometaError("--seeds needs at least one seed")
    if checkpoint is not None and checkpoint not in CHECKPOINTS:
        raise choice_error("checkpoint", checkpoint, CHECKPOINTS)
    if group_by not in GROUP_BY:
        raise choice_error("--group-by", group_by, GROUP_BY)
    grouped = group_by == "algo"
    groups: dict[str, list[int]] = {}  # learner -> indices of its runs, in the given order
    if grouped:
        configs = [open_run(r)[1] for r in run_dirs]
        labels = run_labels([Path(r) for r in run_dirs])
        resolved = [Path(r).resolve() for r in run_dirs]
        twice = sorted({str(r) for r in run_dirs if resolved.count(Path(r).resolve()) > 1})
        if twice:  # pooled twice, one run would count as two independent ones
            raise RobometaError(f"cannot pool a run with itself: {', '.join(twice)} given more than once")
        for i, cfg in enumerate(configs):
            groups.setdefault(cfg.learner, []).append(i)
        # The family first: tasks of one family mean nothing to another.
        for algo, idx in groups.items():
            members = [
                (labels[i], {"family": configs[i].family, "family options": configs[i].family_options})
                for i in idx
            ]
            if (why := pooling_conflict(algo, members)) is not None:
                raise RobometaError(why)
    # The tasks: the first run's fixed list of the split (or the user's file); every
    # run's checkpoint is checked against them.
    config0 = open_run(run_dirs[0])[1]
    family0 = config0.build_family()
    if tasks_file is not None:
        if n_tasks is not None:
            raise RobometaError("give --tasks N (of a split) or --tasks-file FILE, not both")
        tasks, split = read_tasks_file(tasks_file, family0), "custom"
    else:
        tasks = held_out_tasks(config0, family0, split, n_tasks)
    loaded = [load_run(r, checkpoint, device, split, tasks) for r in run_dirs]
    families = {lr.config.family for lr in loaded}
    if len(families) > 1:
        raise RobometaError(
            f"runs of different families cannot share held-out tasks: {', '.join(sorted(families))}"
        )
    first = loaded[0]
    say = progress or (lambda message: None)
    # Without --adapt-steps / --episodes every learner adapts as far as meta-training
    # taught it (MAML: its inner steps; RL²: its trial length), whatever else is compared.
    steps_rule = "trained" if steps is None else "given"
    if steps is not None and steps < 0:
        raise RobometaError(f"--adapt-steps / --episodes must be >= 0, got {steps}")
    run_steps = [lr.algo.trained_steps if steps is None else steps for lr in loaded]
    if grouped:
        for algo, idx in groups.items():
            members = [(labels[i], measured_alike(loaded[i], run_steps[i])) for i in idx]
            if (why := pooling_conflict(algo, members)) is not None:
                hint = (
                    "; give --adapt-steps K" if steps_rule == "trained" and "adaptation steps" in why else ""
                )
                raise RobometaError(f"{why}{hint}; or compare them one by one with --group-by run")
    steps = run_steps[0]
    horizon = first.algo.horizon
    t0 = time.perf_counter()
    methods = []
    names_seen: dict[str, int] = {}
    for lr, k in zip(loaded, run_steps):
        say(
            f"adapting {lr.config.learner} ({lr.path.name}) to {len(tasks)} {split} tasks x {len(seeds)} seed(s)"
        )
        m = learner_result(lr, tasks, k, seeds)
        m.notes["training"] = lr.training_budget()
        if not grouped:  # pooled runs are named by their group (below)
            if len(loaded) > 1:  # several runs: name them by directory
                m.name = f"{m.name} ({lr.path.name})"
            names_seen[m.name] = names_seen.get(m.name, 0) + 1
            if names_seen[m.name] > 1:
                m.name = f"{m.name} #{names_seen[m.name]}"
        methods.append(m)
    main = methods[0]  # the first run: its recorded episodes are saved for replay
    if grouped:
        per_run = methods
        methods = [
            pool(
                group_name(algo, len(idx)),
                [per_run[i] for i in idx],
                [loaded[i] for i in idx],
                [labels[i] for i in idx],
            )
            for algo, idx in groups.items()
        ]
    lead = methods[0]  # the first run, or the first run's group
    episodes = main.episodes_per_step
    cache = first.path / "eval" / "cache"
    settings = {
        "family": first.config.family,
        "split": split,
        "split_seed": first.config.split_seed,
        "tasks": [t.to_dict() for t in tasks],
        "steps": steps,
        "steps_rule": steps_rule,  # "trained": each learner's own trained adaptation; "given": the user's
        "episodes_per_step": episodes,
        "horizon": horizon,
        "family_horizon": first.family.horizon,
        "seeds": list(seeds),
    }
    # Baselines share the first run's protocol (tasks, steps, episodes, horizon). One
    # that cannot be measured here is left out with the reason, never silently.
    skipped = {b: why for b in baselines if (why := bl.BASELINES[b].why_not(first.family, first.algo))}
    if "no-adapt" in baselines:
        # The meta-trained policy before any experience of the task, held flat: step 0
        # of a gradient learner, episode 1 (fresh memory) of a memory learner.
        flat_r = np.repeat(lead.returns[..., :1], steps + 1, axis=-1)
        flat_s = None if lead.success is None else np.repeat(lead.success[..., :1], steps + 1, axis=-1)
        notes = {"from": "step 0 of " + lead.name, "training": lead.notes.get("training")}
        # Same class as the lead (a pooled group keeps its run labels), its own arrays.
        methods.append(
            replace(lead, name="no adaptation", returns=flat_r, success=flat_s, notes=notes, recorded=None)
        )
    if "multitask" in baselines and "multitask" not in skipped:
        say("multi-task baseline: checking the cache")
        methods.append(multitask_result(first, tasks, steps, seeds, cache, split, progress))
    if "ppo-scratch" in baselines:
        say(f"PPO from scratch (stable-baselines3) on {len(tasks)} tasks x {len(seeds)} seed(s)")
        res = bl.cached(
            cache,
            "ppo-scratch",
            settings,
            lambda: bl.ppo_from_scratch(first.family, tasks, steps, episodes, horizon, seeds, say),
        )
        methods.append(
            MethodResult(
                "PPO from scratch (SB3)",
                main.x,
                res["returns"],
                res["success"],
                episodes,
                {
                    "training": {
                        "iterations": 0,
                        "env_steps": 0,
                        "seconds": None,
                        "note": "none before the task",
                    }
                },
            )
        )
    if "expert" in baselines and "expert" not in skipped:
        say("scripted expert")
        res = bl.cached(
            cache,
            "expert",
            settings,
            lambda: bl.scripted_expert(first.family, tasks, steps, episodes, horizon, seeds),
        )
        methods.append(
            MethodResult(
                "scripted expert",
                main.x,
                res["returns"],
                res.get("success"),
                episodes,
                {"training": None, "horizon": horizon},
            )
        )
    for b, why in skipped.items():
        log.info("baseline %s left out: %s", b, why)
    if name is None:
        by = "-by-algo" if grouped else ""
        name = f"{split}{by}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = Path(out_dir) if out_dir is not None else first.path / "eval" / name
    settings.update(
        {
            "runs": [str(lr.path) for lr in loaded],
            "checkpoint": first.checkpoint,
            "checkpoint_requested": checkpoint or "default",
            "checkpoints": [lr.checkpoint_info() for lr in loaded],
            "skipped_baselines": skipped,
            "seconds": 0.0,
        }
    )
    if grouped:
        settings["group_by"] = group_by
        settings["groups"] = {
            m.name: [str(loaded[i].path) for i in idx] for m, idx in zip(methods, groups.values())
        }
    settings["seconds"] = round(time.perf_counter() - t0, 2)
    title = (
        f"{first.config.family}, {split} tasks ({len(tasks)}), {len(seeds)} seed(s), "
        f"episodes of {horizon} steps"
    )
    if grouped:
        title += "\na group: mean of its runs, 95% CI resampling runs and tasks"
    say("writing the report")
    summary = write_report(out, methods, settings, tasks, title)
    save_states(out / STATES_FILE, main, first.config.family, seeds[0], first.config.family_options)
    return out, summary


STATES_FILE = "states.npz"


def save_states(
    path: Path, method: MethodResult, family: str, seed: int, family_options: dict[str, Any] | None = None
) -> None:
    """The recorded episodes of the evaluated learner: what ``replay --from-eval`` shows
    (with the family's name and options, to rebuild the family they were recorded on)."""
    import io
    import json

    from robometa.runs import atomic_write_bytes

    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        states=method.recorded["states"],  # (K+1, M, T+1, nstate): first episode of each task per step
        rewards=method.recorded["rewards"],  # (K+1, M, T)
        x=np.array(method.x),
        family=np.array(family),
        family_options=np.array(json.dumps(family_options or {}, sort_keys=True)),
        seed=np.array(seed),
    )
    atomic_write_bytes(path, buf.getvalue())
