"""The meta-training loop: tasks in, logged curves and checkpoints out, resumable.

Each iteration draws a meta-batch of training tasks from the family's train
distribution, lets the algorithm sample / adapt / meta-update, logs the training
adaptation curve and the learner's metrics to TensorBoard, and every
``eval_every`` iterations measures the adaptation curve on fixed held-out test
tasks. ``checkpoints/latest.pt`` carries everything that makes the next iteration
(weights, optimizer, every RNG stream), so a resumed run continues exactly.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robometa.algos import AdaptationCurve, IterationResult, make_algorithm
from robometa.configs import TrainConfig, build_config, config_to_dict, config_to_yaml, read_yaml
from robometa.device import resolve_device
from robometa.errors import RobometaError
from robometa.runs import (
    RunDir,
    RunWriter,
    atomic_write_text,
    check_new,
    check_resumable,
    curve_scalars,
    load_checkpoint,
    save_checkpoint,
)
from robometa.tasks import make_family

log = logging.getLogger(__name__)

# Settings that may differ when resuming: they do not change what was computed so far.
RESUMABLE_CHANGES = ("iterations", "device", "log_video", "learner_threads")


@dataclass
class Progress:
    """What the trainer reports after every iteration (for progress bars)."""

    iteration: int  # 0-based index of the finished iteration
    iterations: int  # total planned
    result: IterationResult
    test_curve: AdaptationCurve | None  # set on evaluation iterations
    seconds: float  # wall time of the iteration, evaluation included


class Trainer:
    """Drives an algorithm on a run directory. Build with :meth:`create` or :meth:`resume`."""

    def __init__(self, config: TrainConfig, run: RunDir, checkpoint: dict[str, Any] | None):
        self.config = config
        self.run = run
        self.family = make_family(config.family)
        self.device = resolve_device(config.device)
        self.algo = make_algorithm(config.algo, self.family, config.algo_params, self.device, config.seed)
        if hasattr(self.algo, "learner_threads"):  # MAML; it ignores the setting off CPU
            self.algo.learner_threads = config.learner_threads
        self.task_rng = np.random.default_rng([config.seed, 0x7A5C])
        self.test_tasks = self.family.split_tasks("test", seed=config.split_seed, n=config.eval_tasks)
        self.start_iteration = 0
        self.best_score = -math.inf
        self.env_steps = 0
        if checkpoint is not None:
            self._restore(checkpoint)

    # ---------------------------------------------------------------- construction
    @classmethod
    def create(cls, config: TrainConfig, run_dir: str | Path) -> Trainer:
        """A new run. Everything is validated before the directory is created."""
        run = check_new(run_dir)
        trainer = cls(config, run, None)  # builds family, device, algorithm: may raise
        # config.yaml first: from the moment it exists the run can be resumed.
        atomic_write_text(run.config, config_to_yaml(config))
        run.checkpoints.mkdir(parents=True, exist_ok=True)
        trainer._open_writer(new=True)
        return trainer

    @classmethod
    def resume(cls, run_dir: str | Path, changes: dict[str, Any] | None = None) -> Trainer:
        """Continue a run from ``checkpoints/latest.pt``; only the ``RESUMABLE_CHANGES`` settings may change.

        A run killed before its first checkpoint starts again from iteration 0, which
        is exact: the config's seed defines everything the first iteration does.
        """
        run, saved, config, checkpoint = cls._resume_point(run_dir, changes)
        trainer = cls(config, run, checkpoint)
        if config != build_config(saved):
            atomic_write_text(run.config, config_to_yaml(config))
        run.checkpoints.mkdir(parents=True, exist_ok=True)
        trainer._open_writer(new=checkpoint is None)
        return trainer

    @classmethod
    def check_resume(cls, run_dir: str | Path, changes: dict[str, Any] | None = None) -> tuple[int, int]:
        """Validate a resume as :meth:`resume` would; returns ``(done, planned)``
        iterations (planned after ``changes``). Writes nothing."""
        _, _, config, checkpoint = cls._resume_point(run_dir, changes)
        return (0 if checkpoint is None else int(checkpoint["iteration"])), config.iterations

    @staticmethod
    def _resume_point(run_dir, changes):
        run = check_resumable(run_dir)
        saved = read_yaml(run.config, "run config")
        config = build_config(saved)
        if run.latest.is_file():
            checkpoint = load_checkpoint(run.latest)
        elif run.checkpoints.is_dir() and any(run.checkpoints.glob("*.pt")):
            raise RobometaError(
                f"run {str(run.path)!r} has no checkpoint to resume from ({run.latest} missing)"
            )
        else:  # killed before its first checkpoint: starts again from iteration 0
            checkpoint = None
        done = 0 if checkpoint is None else int(checkpoint.get("iteration", 0))
        if checkpoint is not None and checkpoint.get("config") != _comparable(config_to_dict(config)):
            raise RobometaError(
                f"{run.config} does not match the run's checkpoint (was it edited?); cannot resume"
            )
        for key, value in (changes or {}).items():
            if key not in RESUMABLE_CHANGES:
                raise RobometaError(
                    f"cannot change {key!r} when resuming (only {', '.join(RESUMABLE_CHANGES)}); start a new run instead"
                )
            config = build_config({**config_to_dict(config), key: value})
        if config.iterations < done:
            raise RobometaError(
                f"run {str(run.path)!r} has done {done} iterations, more than iterations={config.iterations}; "
                f"to train longer give iterations > {done}"
            )
        return run, saved, config, checkpoint

    def _open_writer(self, new: bool) -> None:
        # purge_step hides what an interrupted attempt logged past the iteration we start at.
        self.writer = RunWriter(self.run.path, purge_step=self.start_iteration)
        if new:
            # The HPARAMS tab's metrics: the held-out return before and after adapting,
            # under the tag names this learner's curves will have.
            k = self.config.eval_steps
            x = getattr(self.algo, "curve_x", "adapt_step")
            tags = [
                t for t in curve_scalars(AdaptationCurve("test", x, [0, k], [0.0, 0.0])) if "/return/" in t
            ]
            metrics = dict.fromkeys(tags, 0.0)
            self.writer.start(self.algo.hparams(), metrics, config_to_yaml(self.config))
        if self.run.curves.is_file():  # drop curve records logged after the checkpoint we start from
            records = [r for r in self.curves() if r["iteration"] < self.start_iteration]
            atomic_write_text(self.run.curves, "".join(json.dumps(r) + "\n" for r in records))

    # ---------------------------------------------------------------- state
    def state_dict(self, iterations_done: int) -> dict[str, Any]:
        return {
            "iteration": iterations_done,
            "config": _comparable(config_to_dict(self.config)),
            "algo": self.algo.state_dict(),
            "task_rng": self.task_rng.bit_generator.state,
            "best_score": self.best_score,
            "env_steps": self.env_steps,
        }

    def _restore(self, ckpt: dict[str, Any]) -> None:
        try:
            self.algo.load_state_dict(ckpt["algo"])
            self.task_rng.bit_generator.state = ckpt["task_rng"]
            self.start_iteration = int(ckpt["iteration"])
            self.best_score = float(ckpt["best_score"])
            self.env_steps = int(ckpt["env_steps"])
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise RobometaError(f"checkpoint does not fit this run's algorithm ({exc})") from None

    def curves(self) -> list[dict[str, Any]]:
        """The held-out curve records logged so far (``curves.jsonl``)."""
        if not self.run.curves.is_file():
            return []
        return [json.loads(line) for line in self.run.curves.read_text().splitlines() if line.strip()]

    def _log_video(self, iteration: int) -> None:
        """Before | after adaptation on the first held-out task, as a TensorBoard video.

        Adaptation samples with its own seeded sampler, so logging videos leaves the
        training streams (and so resume equality) untouched.
        """
        from robometa.viz.replay import record, replay_frames

        rec = record(
            _Learner(self.family, self.algo), self.test_tasks[0], self.config.eval_steps, seed=iteration
        )
        self.writer.video("video/test_task_0", replay_frames(rec, 160, 120), 1.0 / rec.dt, iteration)

    # ---------------------------------------------------------------- the loop
    def train(self, callback: Callable[[Progress], None] | None = None) -> dict[str, Any]:
        """Run until ``config.iterations``; returns a summary. Safe to interrupt at any time."""
        cfg = self.config
        last_test: AdaptationCurve | None = None
        result: IterationResult | None = None
        for it in range(self.start_iteration, cfg.iterations):
            t0 = time.perf_counter()
            tasks = self.family.sample_tasks(cfg.algo_params.meta_batch_size, self.task_rng, "train")
            result = self.algo.iteration(tasks)
            self.env_steps += result.env_steps
            self.writer.curve(result.curve, it)
            self.writer.scalars(result.metrics, it)
            self.writer.scalars({"sim/env_steps_total": float(self.env_steps)}, it)
            test_curve = None
            done = it + 1
            if cfg.eval_every and (done % cfg.eval_every == 0 or done == cfg.iterations):
                test_curve = last_test = self.algo.adaptation_curve(self.test_tasks, cfg.eval_steps, "test")
                self.writer.curve(test_curve, it)
                if cfg.log_video:
                    self._log_video(it)
                with self.run.curves.open("a") as f:
                    f.write(json.dumps({"iteration": it, **test_curve.to_dict()}) + "\n")
                score = test_curve.return_mean[-1]
                if score > self.best_score:
                    self.best_score = score
                    save_checkpoint(self.run.best, self.state_dict(done))
            seconds = time.perf_counter() - t0
            self.writer.scalars({"time/iteration": seconds}, it)
            if done % max(cfg.checkpoint_every, 1) == 0 or done == cfg.iterations:
                self.writer.flush()
                save_checkpoint(self.run.latest, self.state_dict(done))
            log.info("iteration %d/%d: %s", done, cfg.iterations, result.curve.return_mean)
            if callback is not None:
                callback(Progress(it, cfg.iterations, result, test_curve, seconds))
        self.writer.flush()
        self.writer.close()
        return {
            "run_dir": str(self.run.path),
            "iterations": cfg.iterations,
            "env_steps": self.env_steps,
            "train_curve": None if result is None else result.curve.to_dict(),
            "test_curve": None if last_test is None else last_test.to_dict(),
            "best_test_return": None if math.isinf(self.best_score) else self.best_score,
        }


@dataclass
class _Learner:
    """What replay needs of a learner: its family and algorithm."""

    family: Any
    algo: Any


def _comparable(cfg: dict[str, Any] | None) -> dict[str, Any] | None:
    """A config with the settings that may change on resume blanked out."""
    if cfg is None:
        return None
    return {k: v for k, v in cfg.items() if k not in RESUMABLE_CHANGES}
