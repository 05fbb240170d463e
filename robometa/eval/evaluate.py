"""``robometa evaluate``: a trained run against baselines on held-out tasks."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robometa.errors import RobometaError, choice_error
from robometa.eval import baselines as bl
from robometa.eval.protocol import MethodResult, write_report
from robometa.tasks.base import Task, check_split

log = logging.getLogger(__name__)

BASELINES = ("no-adapt", "multitask", "ppo-scratch", "expert")
DEFAULT_BASELINES = ("no-adapt", "expert")
CHECKPOINTS = ("best", "latest")


@dataclass
class LoadedRun:
    """A run directory brought back to life: its config, family and trained learner."""

    path: Path
    config: Any  # TrainConfig
    family: Any  # TaskFamily
    algo: Any  # Algorithm
    checkpoint: str
    iteration: int


def load_run(run_dir: str | Path, checkpoint: str = "best", device: str = "cpu") -> LoadedRun:
    """Rebuild a run's learner from ``checkpoints/<checkpoint>.pt``; writes nothing."""
    from robometa.algos import make_algorithm
    from robometa.configs import build_config, read_yaml
    from robometa.runs import RunDir, load_checkpoint
    from robometa.tasks import make_family

    if checkpoint not in CHECKPOINTS:
        raise choice_error("checkpoint", checkpoint, CHECKPOINTS)
    run = RunDir(Path(run_dir))
    if not run.path.is_dir():
        raise RobometaError(f"run directory {str(run.path)!r} not found; train one with: robometa train")
    if not run.config.is_file():
        raise RobometaError(f"{str(run.path)!r} is not a robometa run (no config.yaml)")
    config = build_config(read_yaml(run.config, "run config"))
    path = run.best if checkpoint == "best" else run.latest
    if checkpoint == "best" and not path.is_file():
        path = run.latest  # runs that never evaluated have no best yet
    ckpt = load_checkpoint(path)
    saved = ckpt.get("config") or {}
    for key in ("family", "algo"):
        if key in saved and saved[key] != getattr(config, key):
            raise RobometaError(
                f"checkpoint {path} was trained with {key} {saved[key]!r} but the run's config.yaml says "
                f"{getattr(config, key)!r}; evaluate the run the checkpoint came from"
            )
    family = make_family(config.family)
    algo = make_algorithm(config.algo, family, config.algo_params, device, config.seed)
    try:
        algo.load_state_dict(ckpt["algo"])
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise RobometaError(
            f"checkpoint {path} does not fit the run's {config.algo} on {config.family} ({exc})"
        ) from None
    return LoadedRun(run.path, config, family, algo, path.stem, int(ckpt.get("iteration", 0)))


def held_out_tasks(loaded: LoadedRun, split: str, n_tasks: int | None) -> list[Task]:
    check_split(split)
    fam = loaded.family
    default = loaded.config.eval_tasks
    n = default if n_tasks is None else int(n_tasks)
    if n < 1:
        raise RobometaError(f"--tasks must be >= 1, got {n}")
    tasks = fam.split_tasks(split, seed=loaded.config.split_seed, n=n)
    return tasks


def learner_result(
    loaded: LoadedRun, tasks: Sequence[Task], steps: int, seeds: Sequence[int]
) -> MethodResult:
    """The trained learner's adaptation data on ``tasks`` for every seed."""
    per_seed_r, per_seed_s = [], []
    episodes = 1
    x = "adapt_step"
    recorded = None
    for seed in seeds:
        # The first seed's episodes are recorded as physics states, for exact replay.
        data = loaded.algo.adaptation_data(tasks, steps, seed=int(seed), record_states=recorded is None)
        if recorded is None:
            recorded = {"states": np.asarray(data["states"]), "rewards": np.asarray(data["rewards"])}
        per_seed_r.append(np.asarray(data["returns"], dtype=np.float64))
        if data.get("success") is not None:
            per_seed_s.append(np.asarray(data["success"], dtype=np.float64))
        episodes = int(data["episodes_per_step"])
        x = data["x"]
    return MethodResult(
        name=loaded.config.algo,
        x=x,
        returns=np.stack(per_seed_r),
        success=np.stack(per_seed_s) if per_seed_s else None,
        episodes_per_step=episodes,
        notes={"run": str(loaded.path), "checkpoint": loaded.checkpoint, "iteration": loaded.iteration},
        recorded=recorded,
    )


def multitask_result(
    first: LoadedRun, tasks: Sequence[Task], steps: int, seeds: Sequence[int], cache: Path
) -> MethodResult:
    """One policy trained on the run's train tasks without meta-learning, then fine-tuned.

    It is MAML's own machinery with zero inner steps during training (multi-task
    TRPO/PPO with the run's settings, iterations and seed), fine-tuned at evaluation
    with the run's inner step size, steps and episodes: the same budget. The trained
    baseline is a run directory under ``eval/cache/`` (resumed if interrupted).
    """
    import dataclasses
    import hashlib
    import json

    from robometa.configs import config_to_dict
    from robometa.trainer import Trainer

    if first.config.algo not in ("maml-trpo", "maml-ppo"):
        raise RobometaError(
            f"the multitask baseline fine-tunes with gradient steps; it needs a MAML run, not {first.config.algo}"
        )
    params = dataclasses.replace(first.config.algo_params, inner_steps=0, learn_inner_lr=False)
    cfg = dataclasses.replace(first.config, algo_params=params, eval_every=0, device="cpu")
    key = hashlib.sha256(json.dumps(config_to_dict(cfg), sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]
    path = cache / f"multitask-{key}"
    trainer = (
        Trainer.resume(path) if (path / "checkpoints" / "latest.pt").is_file() else Trainer.create(cfg, path)
    )
    trainer.train()
    # Fine-tuning uses the evaluated run's inner step size (learned ones are not transferable).
    mt = load_run(path, "latest")
    result = learner_result(mt, tasks, steps, seeds)
    result.name = "multi-task + fine-tune"
    result.notes = {"run": str(path), "iterations": cfg.iterations}
    return result


def evaluate(
    run_dirs: Sequence[str | Path],
    split: str = "test",
    n_tasks: int | None = None,
    steps: int | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    baselines: Sequence[str] = DEFAULT_BASELINES,
    name: str | None = None,
    checkpoint: str = "best",
    device: str = "cpu",
    out_dir: str | Path | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Evaluate one run (plus baselines) or compare several runs of one family.

    ``steps`` (``None``: each learner's ``trained_steps``, the adaptation meta-training
    taught it) is the number of adaptation steps (MAML) or extra episodes of a trial
    (RL²) after step 0; the baselines follow the first run's.

    Writes ``<first run>/eval/<name>/`` (or ``out_dir``) and returns it with the summary.
    """
    if not run_dirs:
        raise RobometaError("evaluate needs at least one run directory")
    for b in baselines:
        if b not in BASELINES:
            raise choice_error("baseline", b, BASELINES)
    if not seeds:
        raise RobometaError("--seeds needs at least one seed")
    loaded = [load_run(r, checkpoint, device) for r in run_dirs]
    families = {lr.config.family for lr in loaded}
    if len(families) > 1:
        raise RobometaError(
            f"runs of different families cannot share held-out tasks: {', '.join(sorted(families))}"
        )
    first = loaded[0]
    # Without --adapt-steps / --episodes every learner adapts as far as meta-training
    # taught it (MAML: its inner steps; RL²: its trial length), whatever else is compared.
    steps_rule = "trained" if steps is None else "given"
    if steps is not None and steps < 0:
        raise RobometaError(f"--adapt-steps / --episodes must be >= 0, got {steps}")
    run_steps = [lr.algo.trained_steps if steps is None else steps for lr in loaded]
    steps = run_steps[0]
    tasks = held_out_tasks(first, split, n_tasks)
    t0 = time.perf_counter()
    methods = []
    names_seen: dict[str, int] = {}
    for lr, k in zip(loaded, run_steps):
        m = learner_result(lr, tasks, k, seeds)
        if len(loaded) > 1:  # several runs: name them by directory
            m.name = f"{m.name} ({lr.path.name})"
        names_seen[m.name] = names_seen.get(m.name, 0) + 1
        if names_seen[m.name] > 1:
            m.name = f"{m.name} #{names_seen[m.name]}"
        methods.append(m)
    main = methods[0]
    horizon = getattr(first.algo, "horizon", first.family.horizon)
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
        "seeds": list(seeds),
    }
    if "no-adapt" in baselines and main.x == "adapt_step":
        # The meta-trained policy, never updated: its step-0 returns at every step.
        flat_r = np.repeat(main.returns[:, :, :1], steps + 1, axis=2)
        flat_s = None if main.success is None else np.repeat(main.success[:, :, :1], steps + 1, axis=2)
        methods.append(
            MethodResult(
                "no adaptation", main.x, flat_r, flat_s, episodes, {"from": "step 0 of " + main.name}
            )
        )
    if "multitask" in baselines:
        methods.append(multitask_result(first, tasks, steps, seeds, cache))
    if "ppo-scratch" in baselines:
        res = bl.cached(
            cache,
            "ppo-scratch",
            settings,
            lambda: bl.ppo_from_scratch(first.family, tasks, steps, episodes, horizon, seeds),
        )
        methods.append(
            MethodResult("PPO from scratch (SB3)", main.x, res["returns"], res["success"], episodes)
        )
    if "expert" in baselines:
        res = bl.cached(
            cache,
            "expert",
            settings,
            lambda: (
                bl.scripted_expert(first.family, tasks, steps, episodes, horizon, seeds) or {"returns": None}
            ),
        )
        if res.get("returns") is not None:
            methods.append(
                MethodResult("scripted expert", main.x, res["returns"], res.get("success"), episodes)
            )
    if name is None:
        name = f"{split}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = Path(out_dir) if out_dir is not None else first.path / "eval" / name
    settings.update({"runs": [str(lr.path) for lr in loaded], "checkpoint": checkpoint, "seconds": 0.0})
    settings["seconds"] = round(time.perf_counter() - t0, 2)
    title = f"{first.config.family}, {split} tasks ({len(tasks)}), {len(seeds)} seed(s)"
    summary = write_report(out, methods, settings, tasks, title)
    save_states(out / STATES_FILE, main, first.config.family, seeds[0])
    return out, summary


STATES_FILE = "states.npz"


def save_states(path: Path, method: MethodResult, family: str, seed: int) -> None:
    """The recorded episodes of the evaluated learner: what ``replay --from-eval`` shows."""
    import io

    from robometa.runs import atomic_write_bytes

    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        states=method.recorded["states"],  # (K+1, M, T+1, nstate): first episode of each task per step
        rewards=method.recorded["rewards"],  # (K+1, M, T)
        x=np.array(method.x),
        family=np.array(family),
        seed=np.array(seed),
    )
    atomic_write_bytes(path, buf.getvalue())
