"""The meta-training loop: tasks in, logged curves and checkpoints out, resumable.

Each iteration draws a meta-batch of training tasks from the family's train
distribution, lets the algorithm sample / adapt / meta-update, logs the training
adaptation curve and the learner's metrics to TensorBoard, and every
``eval_every`` iterations measures the adaptation curve on two fixed task lists:

* validation tasks (the family's ``val`` split, from the training region):
  ``checkpoints/best.pt`` is the state whose validation return after the trained
  amount of adaptation (``algo.trained_steps``: what ``evaluate`` and ``replay``
  adapt by default) was the highest so far. Nothing else chooses anything.
* held-out test tasks: logged for watching (``adapt_test/...``), never used for a choice.

Both are the one adaptation protocol (:meth:`Algorithm.adaptation_data`, then
:meth:`AdaptationData.curve`) that ``robometa evaluate`` runs, on fresh streams of
one evaluation seed each: ``VAL_SEED_OFFSET + seed`` for validation (the same episode
noise at every evaluation, so checkpoints are compared on common random numbers) and
``TEST_SEED`` for the held-out curve, so ``robometa evaluate RUN --checkpoint latest
--seeds 0 --tasks <eval_tasks> --adapt-steps <eval_steps>`` reports exactly the last
held-out curve. Evaluating never moves a training stream: a run evaluating every
iteration trains the very weights of one that never evaluates.

``checkpoints/latest.pt`` carries everything that makes the next iteration (weights,
optimizer, every RNG stream), so a resumed run continues exactly. Every checkpoint
records how it was chosen under ``"selection"`` (schema: :mod:`robometa.runs.checkpoint`).
Each evaluation also logs the held-out curve as a picture (``adapt_test/curve``), and
a new run's CUSTOM SCALARS layout is written after its first iteration
(:func:`robometa.tags.custom_scalars_layout`).
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

from robometa import tags
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
    load_checkpoint,
    save_checkpoint,
)
from robometa.sampling.backends import start_backend
from robometa.tags import curve_scalars, curve_tag

log = logging.getLogger(__name__)

# Settings that may differ when resuming: they do not change what was computed so far.
RESUMABLE_CHANGES = (
    "iterations",
    "device",
    "log_video",
    "learner_threads",
    # where the Ray workers run and how many: the chunks, not the workers, fix the episodes
    "ray_address",
    "ray_workers",
    "ray_cpus_per_worker",
    "ray_timeout_s",
)
# Evaluation seed of the validation curve (added to the run's seed): the same episode
# noise at every evaluation, so checkpoints are compared on common random numbers, and
# apart from the test curve and `robometa evaluate` (seeds 0, 1, 2, ...).
VAL_SEED_OFFSET = 7_000_001
# Evaluation seed of the held-out test curve: `robometa evaluate`'s first default seed,
# so evaluating a checkpoint with --seeds 0 on the run's test tasks gives its curve.
TEST_SEED = 0


@dataclass
class Progress:
    """What the trainer reports after every iteration (for progress bars)."""

    iteration: int  # 0-based index of the finished iteration
    iterations: int  # total planned
    result: IterationResult
    test_curve: AdaptationCurve | None  # set on evaluation iterations (for watching only)
    seconds: float  # wall time of the iteration, evaluation included
    val_curve: AdaptationCurve | None = None  # set on evaluation iterations (selects best.pt)


class Trainer:
    """Drives an algorithm on a run directory. Build with :meth:`create` or :meth:`resume`."""

    def __init__(
        self,
        config: TrainConfig,
        run: RunDir,
        checkpoint: dict[str, Any] | None,
        selection_step: int | None = None,
    ):
        self.config = config
        self.run = run
        self.family = config.build_family()
        self.device = resolve_device(config.device)
        self.algo = make_algorithm(
            config.algo,
            self.family,
            config.algo_params,
            self.device,
            config.seed,
            backend=start_backend(config.sampler_backend, config.ray_settings),
        )
        self.algo.learner_threads = config.learner_threads  # learners without the setting ignore it
        self.task_rng = np.random.default_rng([config.seed, 0x7A5C])
        self.test_tasks = self.family.split_tasks("test", seed=config.split_seed, n=config.eval_tasks)
        self.val_tasks = self.family.split_tasks("val", seed=config.split_seed, n=config.eval_tasks)
        # best.pt is chosen on the validation return after the adaptation training
        # taught (or after ``selection_step`` steps: a baseline chosen by another
        # learner's rule); the validation curve reaches that step even when eval_steps
        # stops short. A resumed run keeps the step it was started with.
        if selection_step is None and checkpoint is not None:
            selection_step = checkpoint.get("selection_step")
        self.selection_step = int(self.algo.trained_steps if selection_step is None else selection_step)
        if self.selection_step < 0:
            raise RobometaError(f"selection_step must be >= 0, got {self.selection_step}")
        self.val_steps = max(config.eval_steps, self.selection_step)
        self.selection_metric = curve_tag("val", self.algo.curve_x, self.selection_step)
        self.start_iteration = 0
        self.best_score = -math.inf
        self.best_iteration: int | None = None
        self.env_steps = 0
        self.train_seconds = 0.0  # wall time of the iterations so far, evaluations included
        if checkpoint is not None:
            self._restore(checkpoint)

    # ---------------------------------------------------------------- construction
    @classmethod
    def create(cls, config: TrainConfig, run_dir: str | Path, selection_step: int | None = None) -> Trainer:
        """A new run. Everything is validated before the directory is created.

        ``selection_step``: the adaptation step whose validation return chooses
        ``best.pt`` (default: the learner's ``trained_steps``).
        """
        run = check_new(run_dir)
        trainer = cls(config, run, None, selection_step)  # builds family, device, algorithm: may raise
        # config.yaml first: from the moment it exists the run can be resumed.
        atomic_write_text(run.config, config_to_yaml(config))
        run.checkpoints.mkdir(parents=True, exist_ok=True)
        trainer._open_writer(new=True)
        return trainer

    @classmethod
    def resume(
        cls, run_dir: str | Path, changes: dict[str, Any] | None = None, selection_step: int | None = None
    ) -> Trainer:
        """Continue a run from ``checkpoints/latest.pt``; only the ``RESUMABLE_CHANGES`` settings may change.

        A run killed before its first checkpoint starts again from iteration 0, which
        is exact: the config's seed defines everything the first iteration does.
        """
        run, saved, config, checkpoint = cls._resume_point(run_dir, changes)
        trainer = cls(config, run, checkpoint, selection_step)
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
        if checkpoint is not None and not _same_run(checkpoint.get("config"), config):
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
        # The CUSTOM SCALARS layout of a new run is written after its first iteration,
        # when the learner's metric tags are known.
        self._layout_pending = new
        if new:
            # The HPARAMS tab's metrics: the held-out return before and after adapting and
            # the validation return that selects best.pt, under this learner's tag names.
            x, k = self.algo.curve_x, self.config.eval_steps
            tags = [curve_tag("test", x, 0), curve_tag("test", x, k), self.selection_metric]
            metrics = dict.fromkeys(tags, 0.0)
            self.writer.start(self.algo.hparams(), metrics, config_to_yaml(self.config))
        if self.run.curves.is_file():  # drop curve records logged after the checkpoint we start from
            records = [r for r in self.curves() if r["iteration"] <= self.start_iteration]
            atomic_write_text(self.run.curves, "".join(json.dumps(r) + "\n" for r in records))

    # ---------------------------------------------------------------- state
    def state_dict(self, iterations_done: int) -> dict[str, Any]:
        return {
            "iteration": iterations_done,
            "config": _comparable(config_to_dict(self.config)),
            "algo": self.algo.state_dict(),
            "task_rng": self.task_rng.bit_generator.state,
            "best_score": self.best_score,
            "best_metric": self.selection_metric,
            "selection_step": self.selection_step,
            "best_iteration": self.best_iteration,
            "env_steps": self.env_steps,
            "train_seconds": self.train_seconds,
        }

    def _selection(self, iterations_done: int, best: bool) -> dict[str, Any]:
        """How a checkpoint written now was chosen (its ``"selection"`` record)."""
        if not best:
            return {"rule": "latest", "iteration": iterations_done}
        return {
            "rule": "best",
            "split": "val",
            "metric": self.selection_metric,
            "step": self.selection_step,
            "value": self.best_score,
            "iteration": iterations_done,
            "split_seed": self.config.split_seed,
            "tasks": self.config.eval_tasks,
        }

    def _restore(self, ckpt: dict[str, Any]) -> None:
        try:
            self.algo.load_state_dict(ckpt["algo"])
            self.task_rng.bit_generator.state = ckpt["task_rng"]
            self.start_iteration = int(ckpt["iteration"])
            self.best_score = float(ckpt["best_score"])
            self.best_iteration = ckpt.get("best_iteration")
            if ckpt.get("best_metric") != self.selection_metric:
                # A best measured another way (runs from before validation splits chose
                # on the test tasks) is no bar for the validation score.
                self.best_score, self.best_iteration = -math.inf, None
            self.env_steps = int(ckpt["env_steps"])
            self.train_seconds = float(ckpt.get("train_seconds", 0.0))  # absent before it was recorded
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise RobometaError(f"checkpoint does not fit this run's algorithm ({exc})") from None

    def curves(self, split: str | None = None) -> list[dict[str, Any]]:
        """The evaluation curve records logged so far (``curves.jsonl``), of one split or all.

        Each evaluation appends a ``val`` record, then a ``test`` record:
        ``{"iteration", "split", "x", "steps", "return_mean", ...}``.
        """
        if not self.run.curves.is_file():
            return []
        records = [json.loads(line) for line in self.run.curves.read_text().splitlines() if line.strip()]
        return [r for r in records if split is None or r.get("split", "test") == split]

    def evaluate(self, split: str) -> AdaptationCurve:
        """The adaptation curve on the run's fixed ``val`` or ``test`` tasks, measured now.

        ``val``: steps 0..``val_steps`` with evaluation seed ``seed + VAL_SEED_OFFSET``;
        ``test``: steps 0..``eval_steps`` with evaluation seed ``TEST_SEED``. Fresh
        streams each time: no stream of the run moves.
        """
        if split == "val":
            tasks, steps, seed = self.val_tasks, self.val_steps, self.config.seed + VAL_SEED_OFFSET
        else:
            tasks, steps, seed = self.test_tasks, self.config.eval_steps, TEST_SEED
        return self.algo.adaptation_data(tasks, steps, seed=seed).curve(split)

    def _layout(self, result: IterationResult) -> None:
        """The run's CUSTOM SCALARS layout: only the charts this family and learner fill."""
        steps = {"train": len(result.curve.steps) - 1}
        if self.config.eval_every:
            steps.update(test=self.config.eval_steps, val=self.val_steps)
        layout = tags.custom_scalars_layout(self.algo.curve_x, steps, self.family.has_success, result.metrics)
        self.writer.layout(layout)
        self._layout_pending = False

    def _log_curve_image(self, curve: AdaptationCurve, iteration: int) -> None:
        """The held-out curve of this evaluation as a picture (``adapt_test/curve``)."""
        from robometa.viz.curves import curve_png

        title = f"{self.family.name}: {len(self.test_tasks)} held-out tasks, iteration {iteration + 1}"
        png, height, width = curve_png(curve, title, mark_step=self.algo.trained_steps)
        self.writer.image(tags.CURVE_IMAGE, png, height, width, iteration)

    def _log_video(self, iteration: int) -> None:
        """Before | after adaptation on the first held-out task, as a TensorBoard video.

        Adaptation samples with its own seeded sampler, so logging videos leaves the
        training streams (and so resume equality) untouched.
        """
        from robometa.viz.replay import record, replay_frames
        from robometa.viz.video import gif_bytes

        rec = record(self.algo, self.test_tasks[0], self.config.eval_steps, seed=iteration)
        frames = replay_frames(rec, 320, 240)
        gif = gif_bytes(frames, 1.0 / rec.dt)
        self.writer.image(tags.VIDEO, gif, frames.shape[1], frames.shape[2], iteration)

    # ---------------------------------------------------------------- the loop
    def train(self, callback: Callable[[Progress], None] | None = None) -> dict[str, Any]:
        """Run until ``config.iterations``; returns a summary. Safe to interrupt at any time."""
        cfg = self.config
        last_test: AdaptationCurve | None = None
        last_val: AdaptationCurve | None = None
        result: IterationResult | None = None
        for it in range(self.start_iteration, cfg.iterations):
            t0 = time.perf_counter()
            tasks = self.family.sample_tasks(self.algo.meta_batch_size, self.task_rng, "train")
            result = self.algo.iteration(tasks)
            self.env_steps += result.env_steps
            if self._layout_pending:
                self._layout(result)
            self.writer.scalars(curve_scalars(result.curve), it)
            self.writer.scalars(result.metrics, it)
            self.writer.scalars({tags.ENV_STEPS_TOTAL: float(self.env_steps)}, it)
            test_curve = val_curve = None
            done = it + 1
            if cfg.eval_every and (done % cfg.eval_every == 0 or done == cfg.iterations):
                # Held-out tasks: for watching only, never for a choice.
                test_curve = last_test = self.evaluate("test")
                val_curve = last_val = self.evaluate("val")
                self.writer.scalars(curve_scalars(val_curve), it)
                self.writer.scalars(curve_scalars(test_curve), it)
                self._log_curve_image(test_curve, it)
                if cfg.log_video:
                    self._log_video(it)
                with self.run.curves.open("a") as f:
                    for curve in (val_curve, test_curve):
                        # numbered as the console: iterations completed
                        f.write(json.dumps({"iteration": done, **curve.to_dict()}) + "\n")
                score = val_curve.return_mean[self.selection_step]
                if score > self.best_score:
                    self.best_score, self.best_iteration = score, done
                    best = {**self.state_dict(done), "selection": self._selection(done, True)}
                    save_checkpoint(self.run.best, best)
            seconds = time.perf_counter() - t0
            self.train_seconds += seconds
            self.writer.scalars({tags.ITERATION_TIME: seconds}, it)
            if done % max(cfg.checkpoint_every, 1) == 0 or done == cfg.iterations:
                self.writer.flush()
                latest = {**self.state_dict(done), "selection": self._selection(done, False)}
                save_checkpoint(self.run.latest, latest)
            log.info("iteration %d/%d: %s", done, cfg.iterations, result.curve.return_mean)
            if callback is not None:
                callback(Progress(it, cfg.iterations, result, test_curve, seconds, val_curve))
        self.writer.flush()
        self.writer.close()
        return {
            "run_dir": str(self.run.path),
            "iterations": cfg.iterations,
            "env_steps": self.env_steps,
            "train_seconds": round(self.train_seconds, 1),
            "train_curve": None if result is None else result.curve.to_dict(),
            "val_curve": None if last_val is None else last_val.to_dict(),
            "test_curve": None if last_test is None else last_test.to_dict(),
            "selection_metric": self.selection_metric,
            "best_val_return": None if math.isinf(self.best_score) else self.best_score,
            "best_iteration": self.best_iteration,
        }


def _same_run(saved: dict[str, Any] | None, config: TrainConfig) -> bool:
    """Whether a checkpoint's config record (``_comparable``) describes the run ``config``
    describes: equal once both are resolved, so settings added to robometa after the
    checkpoint was written take their defaults on both sides."""
    if not isinstance(saved, dict):
        return False
    now = config_to_dict(config)
    try:
        then = build_config({**saved, **{k: v for k, v in now.items() if k in RESUMABLE_CHANGES}})
    except RobometaError:
        return False
    return _comparable(config_to_dict(then)) == _comparable(now)


def _comparable(cfg: dict[str, Any] | None) -> dict[str, Any] | None:
    """A config with the settings that may change on resume blanked out."""
    if cfg is None:
        return None
    return {k: v for k, v in cfg.items() if k not in RESUMABLE_CHANGES}
