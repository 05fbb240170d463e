"""End-to-end for Reptile and Meta-LSTM: tiny runs through the trainer are deterministic,
resume exactly, work with evaluate, and bad input fails cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from toy_problems import TINY_GRADIENT_RUN

from robometa.cli import main
from robometa.configs import resolve_config
from robometa.runs import RunDir, load_checkpoint
from robometa.trainer import Trainer

TINY = TINY_GRADIENT_RUN
LEARNERS = {  # name -> (algo, its own settings)
    "reptile": ("reptile", ["inner_steps=2", "outer_lr_decay_iterations=3"]),
    "reptile-adam": ("reptile", ["inner_steps=1", "outer_optimizer=adam", "outer_lr=0.01"]),
    "meta-lstm-trpo": ("meta-lstm", ["cg_iters=3"]),
    "meta-lstm-ppo": ("meta-lstm", ["outer=ppo", "ppo_epochs=2", "inner_steps=2"]),
}


def tiny_config(name: str, *extra: str):
    algo, own = LEARNERS[name]
    return resolve_config(algo=algo, overrides=[*TINY, *own, *extra])


def final_state(run: Path) -> dict:
    return load_checkpoint(RunDir(run).latest)["algo"]


def flat_state(state) -> list[torch.Tensor]:
    """Every tensor of a learner's state, in a fixed order."""
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for k in sorted(state, key=str) for t in flat_state(state[k])]
    if isinstance(state, list | tuple):
        return [t for v in state for t in flat_state(v)]
    return [torch.tensor(float(state))] if isinstance(state, int | float) else []


def same(a, b) -> bool:
    ta, tb = flat_state(a), flat_state(b)
    return len(ta) == len(tb) and all(torch.equal(x, y) for x, y in zip(ta, tb))


def snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


class Stop(Exception):
    pass


@pytest.mark.parametrize("name", list(LEARNERS))
def test_same_seed_twice_identical_other_seed_differs(name, tmp_path):
    for run, seed in (("a", 0), ("b", 0), ("c", 1)):
        Trainer.create(tiny_config(name, f"seed={seed}"), tmp_path / run).train()
    a, b, c = (final_state(tmp_path / r) for r in "abc")
    assert same(a["policy"], b["policy"]) and same(a, b)
    assert not same(a["policy"], c["policy"])
    if name.startswith("meta-lstm"):
        assert not same(a["inner_optimizer"], c["inner_optimizer"])


@pytest.mark.parametrize("name", list(LEARNERS))
def test_stop_and_resume_equals_uninterrupted(name, tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    Trainer.create(tiny_config(name), full).train()

    def stop_after_two(progress):
        if progress.iteration == 1:
            raise Stop  # like a kill after the second iteration's checkpoint

    with pytest.raises(Stop):
        Trainer.create(tiny_config(name), cut).train(callback=stop_after_two)
    assert load_checkpoint(RunDir(cut).latest)["iteration"] == 2
    Trainer.resume(cut).train()
    assert same(final_state(full), final_state(cut))
    assert Trainer.resume(full).curves() == Trainer.resume(cut).curves()


def test_meta_lstm_meta_trains_its_lstm_and_reptile_anneals(tmp_path):
    Trainer.create(tiny_config("meta-lstm-ppo"), tmp_path / "lstm").train()
    from robometa.algos.meta_lstm import MetaLSTMOptimizer

    trained = final_state(tmp_path / "lstm")["inner_optimizer"]
    shapes = {n: v.shape for n, v in final_state(tmp_path / "lstm")["policy"].items()}
    fresh = MetaLSTMOptimizer(shapes, 0.1).state_dict()
    assert not same(trained, fresh)  # the outer loop moved the optimizer's weights
    Trainer.create(tiny_config("reptile"), tmp_path / "reptile").train()
    assert final_state(tmp_path / "reptile")["iterations_done"] == 3


@pytest.mark.parametrize("name", ["reptile", "meta-lstm-trpo"])
def test_evaluate_with_multitask_baseline_and_replay(name, tmp_path, capsys):
    run = tmp_path / name
    Trainer.create(tiny_config(name, "iterations=2"), run).train()
    code = main(["evaluate", str(run), "--seeds", "0", "--tasks", "2", "--baselines", "no-adapt,multitask"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "multi-task + fine-tune" in out
    code = main(["replay", str(run), "--gif", str(tmp_path / "r.gif"), "--width", "32", "--height", "24"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "r.gif").stat().st_size > 0


@pytest.mark.parametrize(
    "algo, argv, message",
    [
        ("reptile", ["inner_steps=0"], "inner_steps must be >= 1, got 0"),
        ("reptile", ["outer_optimizer=rmsprop"], "unknown outer_optimizer 'rmsprop'; valid: sgd, adam"),
        ("reptile", ["outer_lr_decay_iterations=0"], "outer_lr_decay_iterations must be >= 1 or null"),
        ("reptile", ["max_kl=0.1"], "unknown config key in overrides 'max_kl'"),
        ("meta-lstm", ["outer=sgd"], "unknown outer 'sgd'; valid: trpo, ppo"),
        ("meta-lstm", ["learn_inner_lr=true"], "learn_inner_lr is Meta-SGD"),
        ("meta-lstm", ["inner_lr=1.5"], "inner_lr is the initial input gate"),
        ("meta-lstm", ["--preset", "huge"], "unknown preset for meta-lstm 'huge'; valid: paper, quick"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2_and_creates_nothing(algo, argv, message, tmp_path, capsys):
    run = tmp_path / "never"
    code = main(["train", "--algo", algo, "--run-dir", str(run), *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and message in err, err
    assert not run.exists()


@pytest.mark.parametrize("name", ["reptile", "meta-lstm-trpo"])
def test_cli_resume_errors_leave_run_untouched(name, tmp_path, capsys):
    run = tmp_path / "run"
    Trainer.create(tiny_config(name, "iterations=1"), run).train()
    before = snapshot(run)
    for argv, message in [
        (["--resume", str(run), "inner_lr=0.5"], "cannot change 'inner_lr' when resuming"),
        (["--resume", str(run), "outer_lr=0.5"], "cannot change 'outer_lr' when resuming"),
        (["--resume", str(run), "--family", "cheetah-dir"], "--family cannot be combined with --resume"),
    ]:
        code = main(["train", *argv])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and message in err, (argv, err)
    assert snapshot(run) == before
    latest = RunDir(run).latest
    latest.write_bytes(latest.read_bytes()[:100])  # a truncated checkpoint
    before = snapshot(run)
    code = main(["train", "--resume", str(run)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "checkpoint" in err, err
    assert snapshot(run) == before
