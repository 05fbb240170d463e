"""`robometa evaluate --group-by algo`: the runs of one learner pooled into one method,
the training run as the unit of its confidence interval."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from robometa.cli import main
from robometa.eval.protocol import MethodResult, PooledResult
from robometa.eval.stats import iqm, runs_bootstrap_ci

TINY = [
    "iterations=1",
    "eval_every=0",
    "eval_tasks=2",
    "meta_batch_size=2",
    "episodes_per_task=2",
    "horizon=8",
]
EVAL = ["--tasks", "2", "--seeds", "0,1", "--adapt-steps", "1", "--baselines", "no-adapt"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny MAML runs that differ only in their training seed."""
    root = tmp_path_factory.mktemp("runs")
    paths = [root / "maml-s0", root / "maml-s1"]
    for seed, path in enumerate(paths):
        argv = ["train", "--family", "cheetah-vel", "--device", "cpu", "--run-dir", str(path), *TINY]
        assert main([*argv, f"seed={seed}"]) == 0
    return paths


def _summary(run, name):
    return json.loads((run / "eval" / name / "summary.json").read_text())


# ------------------------------------------------------------------ the statistics


def _pooled(returns: np.ndarray) -> dict:
    """Step 0 of a pooled method with ``returns: (runs, seeds, tasks)``."""
    labels = [f"run{r}" for r in range(len(returns))]
    return PooledResult("m (n runs)", "adapt_step", returns[..., None], run_labels=labels).aggregate()[0]


def test_a_group_is_the_mean_of_its_runs_means():
    rng = np.random.default_rng(0)
    returns = rng.normal(0.0, 1.0, (2, 3, 5)) + np.array([0.0, 4.0])[:, None, None]  # (runs, seeds, tasks)
    row = _pooled(returns)
    run_means = [returns[0].mean(), returns[1].mean()]
    assert row["run_means"] == pytest.approx(run_means)
    assert row["mean"] == pytest.approx(np.mean(run_means))
    assert row["runs"] == 2 and row["n"] == 2 * 5  # run x task scores: seeds averaged within a run
    assert row["iqm"] == pytest.approx(iqm(returns.mean(axis=1)))
    assert row["ci_low"] <= row["mean"] <= row["ci_high"]


def test_the_ci_widens_when_runs_disagree_while_tasks_agree():
    """The same 2 x 20 run-task scores, arranged two ways: where each run is consistent
    across tasks but the runs disagree, the interval must be wide (two runs say little
    about a third); where the runs agree and only tasks differ, it is the tasks' interval."""
    tasks = 20
    runs_disagree = np.array([np.zeros(tasks), np.full(tasks, 10.0)])  # (runs, tasks)
    tasks_disagree = np.tile(np.arange(tasks) % 2 * 10.0, (2, 1))
    seeds = 3  # evaluation seeds agree with each other here
    wide = _pooled(np.repeat(runs_disagree[:, None], seeds, axis=1))
    narrow = _pooled(np.repeat(tasks_disagree[:, None], seeds, axis=1))
    assert wide["mean"] == narrow["mean"] == 5.0
    assert (wide["ci_low"], wide["ci_high"]) == (0.0, 10.0)  # either run could be the typical one
    assert 2.0 < narrow["ci_low"] < 5.0 < narrow["ci_high"] < 8.0
    # what one line per run, or the runs' episodes pooled like more seeds of one run, would say
    as_seeds = MethodResult("m", "adapt_step", np.repeat(runs_disagree, seeds, axis=0)[..., None])
    row = as_seeds.aggregate()[0]
    assert row["ci_high"] - row["ci_low"] == 0.0


def test_runs_bootstrap_with_one_run_is_a_bootstrap_over_tasks():
    x = np.arange(12.0)[None]
    low, high = runs_bootstrap_ci(x, seed=1)
    assert low < x.mean() < high
    assert runs_bootstrap_ci(np.full((3, 4), 2.5)) == (2.5, 2.5)
    assert runs_bootstrap_ci(x, seed=4) == runs_bootstrap_ci(x, seed=4)
    with pytest.raises(ValueError):
        runs_bootstrap_ci(np.arange(3.0))


# ------------------------------------------------------------------ end to end


def test_group_by_algo_pools_the_runs_of_a_learner(runs, capsys):
    a, b = runs
    assert main(["evaluate", str(a), str(b), *EVAL, "--name", "each"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(a), str(b), *EVAL, "--group-by", "algo", "--name", "pooled"]) == 0
    printed = capsys.readouterr().out
    each, pooled = _summary(a, "each"), _summary(a, "pooled")
    assert list(pooled["methods"]) == ["maml-trpo (2 runs)", "no adaptation"]
    group = pooled["methods"]["maml-trpo (2 runs)"]
    assert group["runs"] == ["maml-s0", "maml-s1"]
    assert np.asarray(group["per_task_returns"]).shape == (2, 2, 2, 2)  # runs x seeds x tasks x steps
    per_run = [each["methods"][f"maml-trpo ({p.name})"]["curve"] for p in runs]
    for k, row in enumerate(group["curve"]):
        means = [curve[k]["mean"] for curve in per_run]
        assert row["run_means"] == pytest.approx(means)  # the same runs, tasks and seeds
        assert row["mean"] == pytest.approx(np.mean(means))
        assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    # which runs and checkpoints were pooled
    pooled_runs = group["notes"]["pooled_runs"]
    assert [r["run"] for r in pooled_runs] == [str(a), str(b)]
    assert all(r["checkpoint"] == "latest" and r["iteration"] == 1 for r in pooled_runs)
    assert group["notes"]["config_differs"] == {}  # only the seed differs
    st = pooled["settings"]
    assert st["group_by"] == "algo" and st["groups"] == {"maml-trpo (2 runs)": [str(a), str(b)]}
    # no adaptation: the group's step 0 held flat, pooled the same way
    flat = pooled["methods"]["no adaptation"]
    assert flat["runs"] == group["runs"]
    assert [r["mean"] for r in flat["curve"]] == pytest.approx([group["curve"][0]["mean"]] * 2)
    out = a / "eval" / "pooled"
    rows = list(csv.DictReader((out / "curves.csv").open()))
    assert rows[0]["method"] == "maml-trpo (2 runs)" and rows[0]["runs"] == "2"
    assert [p.split("=")[0] for p in rows[0]["run_means"].split(";")] == ["maml-s0", "maml-s1"]
    per_task = list(csv.DictReader((out / "per_task.csv").open()))
    assert len(per_task) == 2 * (2 * 2 * 2 * 2)  # two methods x runs x seeds x tasks x steps
    assert {r["run"] for r in per_task} == {"maml-s0", "maml-s1"}
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    acc = EventAccumulator(str(out))
    acc.Reload()
    points = acc.Scalars("eval/maml-trpo (2 runs)/return/step")
    assert [e.value for e in points] == pytest.approx([r["mean"] for r in group["curve"]])
    assert "maml-trpo (2 runs)" in printed and "resampling whole runs and tasks" in " ".join(printed.split())
    assert "1 it, 0.00M steps" in printed and "per run" in printed


# The columns and settings evaluate has always written, one line per run.
CURVES_COLUMNS = ["method", "step", "episodes_seen", "n", "mean", "std", "iqm", "ci_low", "ci_high",
                  "success_mean", "success_ci_low", "success_ci_high"]  # fmt: skip
PER_TASK_COLUMNS = ["method", "seed_index", "task_index", "step", "episodes_seen", "return", "success",
                    "task.goal_velocity"]  # fmt: skip
SETTINGS = {"family", "split", "split_seed", "tasks", "steps", "steps_rule", "episodes_per_step", "horizon",
            "family_horizon", "seeds", "runs", "checkpoint", "checkpoint_requested", "checkpoints",
            "skipped_baselines", "seconds"}  # fmt: skip


def test_group_by_run_is_the_default_and_unchanged(runs):
    a, b = runs
    assert main(["evaluate", str(a), str(b), *EVAL, "--name", "plain"]) == 0
    assert main(["evaluate", str(a), str(b), *EVAL, "--group-by", "run", "--name", "by-run"]) == 0
    plain, by_run = _summary(a, "plain"), _summary(a, "by-run")
    for s in (plain, by_run):
        s["settings"].pop("seconds")
    assert plain == by_run
    for file in ("curves.csv", "per_task.csv"):
        assert (a / "eval" / "plain" / file).read_text() == (a / "eval" / "by-run" / file).read_text()
    assert list(plain["methods"]) == ["maml-trpo (maml-s0)", "maml-trpo (maml-s1)", "no adaptation"]
    assert all("runs" not in m for m in plain["methods"].values())
    assert set(plain["settings"]) == SETTINGS - {"seconds"}
    with (a / "eval" / "plain" / "curves.csv").open() as f:
        assert next(csv.reader(f)) == CURVES_COLUMNS
    with (a / "eval" / "plain" / "per_task.csv").open() as f:
        assert next(csv.reader(f)) == PER_TASK_COLUMNS


def _copy(run, dst, edit=None):
    shutil.copytree(run, dst, ignore=shutil.ignore_patterns("eval"))
    if edit is not None:
        (dst / "config.yaml").write_text(edit((dst / "config.yaml").read_text()))
    return dst


def _files(*runs):
    return {p for run in runs for p in run.rglob("*")}


def _pooling_refused(capsys, a, other) -> str:
    """``evaluate a other --group-by algo`` exits 2 with one line on stderr, prints
    nothing else and writes nothing; returns that line."""
    before = _files(a, other)
    assert main(["evaluate", str(a), str(other), *EVAL, "--group-by", "algo"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "\n" not in err.strip()  # one line in all
    assert _files(a, other) == before  # nothing written
    return err


def test_a_group_of_two_families_is_refused(runs, tmp_path, capsys):
    a, _ = runs
    other = _copy(a, tmp_path / "dir", lambda t: t.replace("family: cheetah-vel", "family: cheetah-dir"))
    err = _pooling_refused(capsys, a, other)
    assert (
        "cannot pool the 2 maml-trpo runs, which differ in family: cheetah-vel (maml-s0), cheetah-dir (dir)"
        in err
    )
    before = _files(a, other)
    # nor can one run be pooled with itself, as if it were two
    assert main(["evaluate", str(a), str(a), *EVAL, "--group-by", "algo"]) == 2
    assert "cannot pool a run with itself" in capsys.readouterr().err
    assert _files(a, other) == before


def test_runs_measured_differently_are_refused(runs, tmp_path, capsys):
    a, b = runs
    more = _copy(b, tmp_path / "more", lambda t: t.replace("episodes_per_task: 2", "episodes_per_task: 3"))
    err = _pooling_refused(capsys, a, more)
    assert "differ in episodes per step: 2 (maml-s0), 3 (more)" in err
    assert "--group-by run" in err
    # trained for different adaptation steps: refused unless told how far to adapt
    deeper = _copy(b, tmp_path / "deeper", lambda t: t.replace("inner_steps: 1", "inner_steps: 2"))
    argv = ["evaluate", str(a), str(deeper), "--tasks", "1", "--seeds", "0", "--baselines", ""]
    assert main([*argv, "--group-by", "algo"]) == 2
    err = capsys.readouterr().err
    assert "differ in adaptation steps: 1 (maml-s0), 2 (deeper)" in err and "give --adapt-steps K" in err
    assert main([*argv, "--group-by", "algo", "--adapt-steps", "1", "--name", "k1"]) == 0
    group = _summary(a, "k1")["methods"]["maml-trpo (2 runs)"]
    assert group["notes"]["config_differs"] == {"algo_params.inner_steps": {"maml-s0": 1, "deeper": 2}}
    assert "pools runs trained with different algo_params.inner_steps" in capsys.readouterr().out


def test_variants_of_one_algorithm_are_different_learners(tmp_path):
    # context-mean and context-attention share --algo context but are two learners:
    # pooling them would report one learner's CI over another's runs.
    tiny = ["iterations=1", "eval_every=0", "eval_tasks=2", "meta_batch_size=2", "trials_per_task=1",
            "horizon=8", "hidden=8", "ppo_epochs=1", "minibatches=1"]  # fmt: skip
    paths = []
    for agg, seed in (("mean", 0), ("attention", 0), ("mean", 1)):
        path = tmp_path / f"{agg}-s{seed}"
        argv = ["train", "--algo", "context", "--aggregator", agg, "--family", "cheetah-vel"]
        assert main([*argv, "--device", "cpu", "--run-dir", str(path), f"seed={seed}", *tiny]) == 0
        paths.append(path)
    argv = ["evaluate", *map(str, paths), "--tasks", "1", "--seeds", "0", "--baselines", ""]
    assert main([*argv, "--group-by", "algo", "--name", "g"]) == 0
    methods = _summary(paths[0], "g")["methods"]
    assert set(methods) == {"context-mean (2 runs)", "context-attention (1 run)"}
    assert main([*argv, "--name", "r"]) == 0  # one line per run, named by learner and run
    assert set(_summary(paths[0], "r")["methods"]) == {
        "context-mean (mean-s0)", "context-attention (attention-s0)", "context-mean (mean-s1)"
    }  # fmt: skip


def test_a_learner_is_its_algorithm_and_variant():
    from robometa.configs import resolve_config

    assert resolve_config(algo="rl2").learner == "rl2"
    assert resolve_config(algo="rl2", overrides=["cell=lstm"]).learner == "rl2-lstm"
    assert resolve_config(algo="snail").learner == "snail"
    assert resolve_config(algo="context", overrides=["aggregator=pog"]).learner == "context-pog"
    assert resolve_config(algo="maml-trpo").learner == "maml-trpo"
    assert resolve_config(algo="maml-ppo", overrides=["learn_inner_lr=true"]).learner == "maml-ppo-meta-sgd"
    assert resolve_config(algo="meta-lstm").learner == "meta-lstm"
