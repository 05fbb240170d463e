"""`robometa evaluate` as a researcher reads it: each learner with its own trained
protocol on one experience axis, every requested baseline present or explained,
progress on long jobs, task parameters per row, horizons and budgets stated."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from robometa.cli import main

MAML = ["iterations=1", "eval_every=1", "eval_tasks=2", "meta_batch_size=2", "episodes_per_task=2",
        "horizon=8", "inner_steps=1", "eval_steps=3", "hidden=[8]", "cg_iters=2"]  # fmt: skip
RL2 = ["iterations=1", "eval_every=1", "eval_tasks=2", "meta_batch_size=2", "trials_per_task=1",
       "episodes_per_trial=2", "horizon=8", "hidden=8"]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    maml, rl2 = root / "maml", root / "rl2"
    fam = ["--family", "reach", "--device", "cpu"]
    assert main(["train", *fam, "--run-dir", str(maml), *MAML]) == 0
    assert main(["train", "--algo", "rl2", *fam, "--run-dir", str(rl2), *RL2]) == 0
    return maml, rl2


def _summary(run, name):
    return json.loads((run / "eval" / name / "summary.json").read_text())


def test_each_learner_keeps_its_own_protocol_alone_or_together(runs, capsys):
    maml, rl2 = runs
    base = ["--tasks", "2", "--seeds", "0", "--baselines", ""]
    assert main(["evaluate", str(rl2), *base, "--name", "alone"]) == 0
    assert main(["evaluate", str(maml), str(rl2), *base, "--name", "joint"]) == 0
    alone = _summary(rl2, "alone")["methods"]["rl2"]
    joint = _summary(maml, "joint")["methods"]
    rl2_joint = next(m for k, m in joint.items() if k.startswith("rl2"))
    maml_joint = next(m for k, m in joint.items() if k.startswith("maml"))
    assert len(rl2_joint["curve"]) == len(alone["curve"]) == 2  # trained trials of 2 episodes
    assert rl2_joint["per_task_returns"] == alone["per_task_returns"]
    assert len(maml_joint["curve"]) == 2  # one trained inner step, not eval_steps=3
    # one axis: episodes of experience on the new task
    assert [r["episodes_seen"] for r in rl2_joint["curve"]] == [0, 1]
    assert [r["episodes_seen"] for r in maml_joint["curve"]] == [0, 2]


def test_every_requested_baseline_appears_or_is_explained(runs, tmp_path, capsys):
    maml, rl2 = runs
    capsys.readouterr()
    argv = ["--tasks", "1", "--seeds", "0", "--baselines", "no-adapt,multitask,expert"]
    assert main(["evaluate", str(rl2), *argv, "--name", "b"]) == 0
    methods = _summary(rl2, "b")["methods"]
    assert {"rl2", "no adaptation", "scripted expert", "multi-task (no memory)"} <= set(methods)
    flat = methods["no adaptation"]["per_task_returns"]
    assert flat[0][0] == [methods["rl2"]["per_task_returns"][0][0][0]] * 2  # episode 1, held flat
    # RL²'s multi-task baseline: its own policy and PPO without memory, on as many trials
    mt = methods["multi-task (no memory)"]
    assert mt["notes"]["iterations"] == 1 and len(mt["curve"]) == 2 and "fine_tune_lr" not in mt["notes"]
    assert not _summary(rl2, "b")["settings"]["skipped_baselines"]
    assert (
        main(["evaluate", str(maml), "--tasks", "1", "--seeds", "0", "--baselines", "expert", "--name", "e"])
        == 0
    )
    # A baseline the family cannot have is left out with the reason, never silently.
    cheetah = tmp_path / "cheetah"
    assert main(["train", "--algo", "rl2", "--family", "cheetah-vel", "--run-dir", str(cheetah), *RL2]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(cheetah), *argv, "--name", "b"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "expert" in _summary(cheetah, "b")["settings"]["skipped_baselines"]
    assert "baseline expert left out: cheetah-vel has no scripted expert" in out


def test_redirected_evaluate_says_what_it_is_doing(runs, capsys):
    maml, _ = runs
    capsys.readouterr()
    assert (
        main(
            ["evaluate", str(maml), "--tasks", "1", "--seeds", "0", "--baselines", "multitask", "--name", "p"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "training the multi-task baseline: 2 of 2 iterations" in " ".join(out.split())
    assert "multi-task baseline: iteration 1/2" in out and "multi-task baseline: iteration 2/2" in out


def test_report_states_horizon_budget_and_task_parameters(runs, capsys):
    maml, _ = runs
    capsys.readouterr()
    assert main(["evaluate", str(maml), "--tasks", "2", "--seeds", "0,1", "--name", "r"]) == 0
    out = capsys.readouterr().out
    summary = _summary(maml, "r")
    assert summary["settings"]["horizon"] == 8 and summary["settings"]["family_horizon"] == 200
    training = summary["methods"]["maml-trpo"]["notes"]["training"]
    assert training["iterations"] == 1 and training["env_steps"] > 0 and training["seconds"] >= 0
    rows = list(csv.DictReader((maml / "eval" / "r" / "per_task.csv").open()))
    assert {"task.shape", "task.mass", "task.goal[0]", "task.goal[2]", "episodes_seen"} <= set(rows[0])
    tasks = summary["tasks"]
    for row in rows:
        task = tasks[int(row["task_index"])]
        assert row["task.shape"] == task["shape"] and float(row["task.mass"]) == pytest.approx(
            task["mass"], 1e-5
        )
    curve = summary["methods"]["maml-trpo"]["curve"]
    assert all(r["success_ci_low"] <= r["success_mean"] <= r["success_ci_high"] for r in curve)
    table = [ln for ln in out.splitlines() if ln.startswith(("┃", "│", "┏", "└"))]
    assert table and max(len(ln) for ln in table) <= 100
    assert "episodes of 8 steps (the family's: 200)" in out
    assert np.isfinite([r["mean"] for r in curve]).all()


def test_multitask_fine_tuning_step_size_is_chosen_on_val(runs):
    from robometa.eval.evaluate import FINE_TUNE_LR_FACTORS

    maml, _ = runs
    assert (
        main(
            [
                "evaluate",
                str(maml),
                "--tasks",
                "1",
                "--seeds",
                "0",
                "--baselines",
                "multitask",
                "--name",
                "lr",
            ]
        )
        == 0
    )
    notes = _summary(maml, "lr")["methods"]["multi-task + fine-tune"]["notes"]
    tried = notes["fine_tune_lr_val_returns"]
    assert len(tried) == len(FINE_TUNE_LR_FACTORS)
    assert f"{notes['fine_tune_lr']:g}" == max(tried, key=tried.get)
    assert notes["fine_tune_lr_rule"].startswith("chosen on val")
