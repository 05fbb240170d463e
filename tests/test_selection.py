"""Model selection during training: validation tasks choose best.pt, test tasks choose nothing.

The held-out claim rests on three properties checked here: the trainer's periodic
"test" tasks are held out and its validation tasks are not, ``best.pt`` is the state
with the highest validation return (never overwritten by a worse one, never chosen
on the test tasks), and evaluating during training does not change what is trained.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from robometa.configs import resolve_config
from robometa.runs import RunDir, load_checkpoint
from robometa.trainer import Trainer

TINY = {
    "maml-trpo": [
        "meta_batch_size=2",
        "episodes_per_task=2",
        "horizon=6",
        "hidden=[8]",
        "cg_iters=3",
        "eval_tasks=2",
        "eval_steps=2",
        "device=cpu",
    ],
    "rl2": [
        "meta_batch_size=2",
        "trials_per_task=1",
        "episodes_per_trial=2",
        "horizon=5",
        "hidden=8",
        "ppo_epochs=1",
        "minibatches=1",
        "eval_tasks=2",
        "eval_steps=2",
        "device=cpu",
    ],
}


def tiny(*extra: str, algo: str = "maml-trpo", family: str = "cheetah-vel"):
    return resolve_config(algo=algo, family=family, overrides=[*TINY[algo], *extra])


def test_periodic_tasks_come_from_their_splits(tmp_path):
    trainer = Trainer.create(tiny("iterations=1", "eval_every=1", "split_seed=3"), tmp_path / "r")
    fam = trainer.family
    assert [t.to_json() for t in trainer.test_tasks] == [
        t.to_json() for t in fam.split_tasks("test", seed=3, n=2)
    ]
    assert [t.to_json() for t in trainer.val_tasks] == [
        t.to_json() for t in fam.split_tasks("val", seed=3, n=2)
    ]
    assert not any(fam.in_split(t, "train") for t in trainer.test_tasks)
    assert all(fam.in_split(t, "train") for t in trainer.val_tasks)
    trainer.train()
    records = trainer.curves()
    assert [(r["iteration"], r["split"]) for r in records] == [(1, "val"), (1, "test")]
    assert trainer.curves("val")[0]["steps"] == trainer.curves("test")[0]["steps"] == [0, 1, 2]


def _scripted(trainer: Trainer, monkeypatch, val: list[float], test: list[float]) -> None:
    """Replace the learner's evaluation returns by scripted ones, one value per evaluation
    of each split (the trainer measures both through ``adaptation_data``)."""
    scripted = {id(trainer.val_tasks): iter(val), id(trainer.test_tasks): iter(test)}
    real = trainer.algo.adaptation_data

    def data(tasks, steps, seed, record_states=False):
        out = real(tasks, steps, seed, record_states)
        out.returns = np.full_like(out.returns, next(scripted[id(tasks)]))
        return out

    monkeypatch.setattr(trainer.algo, "adaptation_data", data)


def test_best_is_the_highest_validation_return_and_never_the_test_one(tmp_path, monkeypatch):
    run = tmp_path / "scripted"
    trainer = Trainer.create(tiny("iterations=4", "eval_every=1"), run)
    # validation peaks at iteration 2; test would pick 4 (or 1), a worse one comes last
    _scripted(trainer, monkeypatch, val=[1.0, 3.0, 2.0, -5.0], test=[9.0, -9.0, 0.0, 10.0])
    summary = trainer.train()
    best = load_checkpoint(RunDir(run).best)
    assert best["iteration"] == 2
    assert best["selection"] == {
        "rule": "best",
        "split": "val",
        "metric": "adapt_val/return/step_1",  # the trained inner step of MAML (inner_steps=1)
        "step": 1,
        "value": 3.0,
        "iteration": 2,
        "split_seed": 0,
        "tasks": 2,
    }
    assert (summary["best_iteration"], summary["best_val_return"]) == (2, 3.0)
    latest = load_checkpoint(RunDir(run).latest)
    assert latest["selection"] == {"rule": "latest", "iteration": 4}
    # best.pt holds the state after iteration 2, not just its label
    Trainer.create(tiny("iterations=2", "eval_every=0"), tmp_path / "two").train()
    two = load_checkpoint(RunDir(tmp_path / "two").latest)["algo"]["policy"]
    assert all(torch.equal(best["algo"]["policy"][k], v) for k, v in two.items())


def test_resumed_run_keeps_its_best(tmp_path, monkeypatch):
    run = tmp_path / "r"
    trainer = Trainer.create(tiny("iterations=2", "eval_every=1"), run)
    _scripted(trainer, monkeypatch, val=[5.0, 1.0], test=[0.0, 0.0])
    trainer.train()
    resumed = Trainer.resume(run, {"iterations": 3})
    _scripted(resumed, monkeypatch, val=[2.0], test=[0.0])
    resumed.train()
    assert load_checkpoint(RunDir(run).best)["iteration"] == 1  # 2.0 after resuming is worse than 5.0


@pytest.mark.parametrize("algo", ["maml-trpo", "rl2"])
def test_evaluating_during_training_changes_no_weight(algo, tmp_path):
    runs = {}
    for every in (1, 0):
        path = tmp_path / f"every{every}"
        summary = Trainer.create(tiny("iterations=2", f"eval_every={every}", algo=algo), path).train()
        runs[every] = (load_checkpoint(RunDir(path).latest)["algo"], summary)
    (a, sa), (b, sb) = runs[1], runs[0]
    assert sa["val_curve"] is not None and sb["val_curve"] is None
    assert all(torch.equal(a["policy"][k], b["policy"][k]) for k in a["policy"])
    # the training stream is where it would be without evaluations
    assert a["sampler"]["rng"] == b["sampler"]["rng"]
    assert torch.equal(a["sampler"]["torch_gen"], b["sampler"]["torch_gen"])
    assert sa["train_curve"] == sb["train_curve"]


def test_a_run_from_before_validation_splits_is_not_compared_with_its_test_best(tmp_path, monkeypatch):
    """An old latest.pt's best_score was a test return: resuming must not hold the
    validation score to it (nor keep reporting it)."""
    run = tmp_path / "old"
    trainer = Trainer.create(tiny("iterations=1", "eval_every=1"), run)
    trainer.train()
    ckpt = load_checkpoint(RunDir(run).latest)
    for key in ("best_metric", "best_iteration", "selection_step", "selection"):
        ckpt.pop(key)
    ckpt["best_score"] = 1e9  # a test return no validation score beats
    torch.save(ckpt, RunDir(run).latest)
    resumed = Trainer.resume(run, {"iterations": 2})
    assert resumed.best_score == -np.inf
    resumed.train()
    assert load_checkpoint(RunDir(run).best)["selection"]["iteration"] == 2


def test_rl2_selects_on_the_last_episode_of_a_training_trial(tmp_path):
    trainer = Trainer.create(tiny("iterations=1", "eval_every=1", "eval_steps=0", algo="rl2"), tmp_path / "r")
    # trials of 2 episodes: best.pt is chosen on episode 2 even if eval_steps shows only episode 1
    assert trainer.selection_metric == "adapt_val/return/episode_2"
    summary = trainer.train()
    assert len(summary["val_curve"]["steps"]) == 2 and len(summary["test_curve"]["steps"]) == 1
    assert load_checkpoint(Path(tmp_path / "r" / "checkpoints" / "best.pt"))["selection"]["step"] == 1
