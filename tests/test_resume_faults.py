"""Runs that were killed early: a run killed before its first checkpoint, or while it
was being created, can be continued or started by the ordinary commands."""

from __future__ import annotations

import pytest
import torch

from robometa.cli import main
from robometa.configs import resolve_config
from robometa.runs import RunDir, load_checkpoint
from robometa.trainer import Trainer

TINY = [
    "iterations=2",
    "meta_batch_size=2",
    "episodes_per_task=2",
    "horizon=6",
    "hidden=[8]",
    "eval_every=1",
    "eval_tasks=2",
    "eval_steps=1",
    "cg_iters=3",
    "device=cpu",
]


def _weights(run) -> dict[str, torch.Tensor]:
    return load_checkpoint(RunDir(run).latest)["algo"]["policy"]


def test_run_killed_in_its_first_iteration_resumes_from_zero_exactly(tmp_path, monkeypatch, capsys):
    full = tmp_path / "full"
    Trainer.create(resolve_config(overrides=TINY), full).train()

    killed = tmp_path / "killed"
    trainer = Trainer.create(resolve_config(overrides=TINY), killed)

    def kill(tasks):
        raise KeyboardInterrupt  # like kill -9 in the middle of sampling

    monkeypatch.setattr(trainer.algo, "iteration", kill)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert not RunDir(killed).latest.exists()
    user_files = {p.name for p in killed.iterdir()}

    assert main(["train", "--resume", str(killed)]) == 0, capsys.readouterr().err
    assert user_files <= {p.name for p in killed.iterdir()}  # nothing deleted
    a, b = _weights(full), _weights(killed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert Trainer.resume(full).curves() == Trainer.resume(killed).curves()


def test_run_killed_while_being_created_can_be_started_again(tmp_path, capsys):
    run = tmp_path / "r"
    (run / "checkpoints").mkdir(parents=True)  # created, then killed before config.yaml landed
    (run / ".config.yaml.abc123.tmp").write_text("algo: maml")
    assert main(["train", "--run-dir", str(run), *TINY]) == 0, capsys.readouterr().err
    assert load_checkpoint(RunDir(run).latest)["iteration"] == 2


def test_a_directory_with_user_files_is_never_taken_over(tmp_path, capsys):
    run = tmp_path / "mine"
    (run / "sub").mkdir(parents=True)
    (run / "sub" / "notes.txt").write_text("keep me")
    assert main(["train", "--run-dir", str(run), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0]
    assert sorted(p.name for p in run.rglob("*")) == ["notes.txt", "sub"]
