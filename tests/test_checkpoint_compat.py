"""Checkpoints of older runs still resume and evaluate (format 1, see robometa.runs.checkpoint)."""

from __future__ import annotations

import torch

from robometa.cli import main
from robometa.runs import FORMAT_VERSION, load_checkpoint

TINY = [
    "iterations=1",
    "eval_every=1",
    "eval_tasks=2",
    "meta_batch_size=2",
    "episodes_per_task=2",
    "horizon=6",
]


def _age(path) -> None:
    """Make a checkpoint look written by an older robometa: the evaluation stream it
    used to carry, no record of a setting added since (one that keeps its default)."""
    ckpt = torch.load(path, weights_only=True)
    ckpt["algo"]["eval_sampler"] = ckpt["algo"]["sampler"]
    del ckpt["config"]["algo_params"]["activation"]  # "tanh", the default
    torch.save(ckpt, path)


def test_an_older_run_resumes_and_evaluates(tmp_path, capsys):
    run = tmp_path / "old"
    assert main(["train", "--device", "cpu", "--run-dir", str(run), *TINY]) == 0
    for name in ("latest.pt", "best.pt"):
        _age(run / "checkpoints" / name)
    argv = ["evaluate", str(run), "--tasks", "1", "--seeds", "0", "--baselines", "", "--name", "e"]
    assert main(argv) == 0
    assert main(["train", "--resume", str(run), "iterations=2"]) == 0
    ckpt = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert ckpt["format"] == FORMAT_VERSION and ckpt["iteration"] == 2 and "eval_sampler" not in ckpt["algo"]
    # an edited config is still refused
    (run / "config.yaml").write_text(
        (run / "config.yaml").read_text().replace("inner_lr: 0.1", "inner_lr: 0.3")
    )
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "iterations=3"]) == 2
    assert "does not match the run's checkpoint" in capsys.readouterr().err
