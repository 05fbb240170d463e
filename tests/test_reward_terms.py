"""scripts/reward_terms.py: a gradient learner's reward split into its terms, per adaptation step."""

from __future__ import annotations

import json

import pytest
from toy_problems import TINY_GRADIENT_RUN, load_script

from robometa.cli import main as robometa


@pytest.fixture(scope="module")
def rt():
    return load_script("reward_terms")


@pytest.mark.parametrize("algo", ["maml-trpo", "reptile", "meta-lstm"])
def test_terms_add_up_to_the_return_at_every_step(rt, tmp_path, capsys, algo):
    from robometa.eval.evaluate import held_out_tasks, load_run

    run = tmp_path / algo
    args = ["train", "--algo", algo, "--family", "ant-dir", "--run-dir", str(run), *TINY_GRADIENT_RUN]
    assert robometa(args) == 0
    out = tmp_path / "t.json"
    assert rt.main([str(run), "--adapt-steps", "2", "--out", str(out)]) == 0
    (result,) = json.loads(out.read_text())
    assert [r["step"] for r in result["steps"]] == [0, 1, 2]
    # the episodes robometa evaluate measures: same checkpoint, tasks and evaluation seed
    loaded = load_run(run)
    tasks = held_out_tasks(loaded.config, loaded.family, "test", None)
    data = loaded.algo.adaptation_data(tasks, 2, seed=0)
    assert [r["return"] for r in result["steps"]] == pytest.approx(
        data.returns.mean(axis=0).tolist(), rel=1e-5
    )
    for r in result["steps"]:
        assert {"forward", "healthy", "ctrl"} <= set(r["terms"])
        assert sum(r["terms"].values()) == pytest.approx(r["return"], rel=1e-5, abs=1e-6)
        assert 0 < r["length"] <= result["horizon"] and 0.0 <= r["terminated"] <= 1.0
    assert "| step | return |" in capsys.readouterr().out
    assert rt.main([str(run), "--untrained", "--adapt-steps", "0"]) == 0


def test_bad_input_is_one_line_and_status_2(rt, tmp_path, capsys):
    run = tmp_path / "rl2"
    tiny = ["iterations=1", "eval_every=0", "eval_tasks=2", "meta_batch_size=2", "trials_per_task=1",
            "horizon=8", "hidden=8", "ppo_epochs=1", "minibatches=1"]  # fmt: skip
    assert robometa(["train", "--algo", "rl2", "--family", "cheetah-vel", "--run-dir", str(run), *tiny]) == 0
    capsys.readouterr()
    assert rt.main([str(run)]) == 2
    err = capsys.readouterr().err
    assert "does not adapt by gradient steps" in err and len(err.strip().splitlines()) == 1
    assert rt.main([str(tmp_path / "missing")]) == 2
    assert rt.main([str(run), "--tasks", "0"]) == 2


@pytest.mark.parametrize(
    "algo, overrides",
    [
        ("maml-trpo", ["meta_batch_size=2", "episodes_per_task=2", "horizon=6", "hidden=[8]"]),
        ("reptile", ["meta_batch_size=2", "episodes_per_task=2", "horizon=6", "hidden=[8]"]),
        (
            "rl2",
            [
                "meta_batch_size=2",
                "trials_per_task=1",
                "horizon=6",
                "hidden=8",
                "minibatches=1",
                "ppo_epochs=1",
            ],
        ),
    ],
)
def test_every_iteration_logs_the_terms_of_its_training_curve(algo, overrides):
    import numpy as np

    from robometa.algos import make_algorithm
    from robometa.configs import resolve_config
    from robometa.tags import declared, step_name
    from robometa.tasks import make_family

    cfg = resolve_config(algo=algo, preset="quick", overrides=overrides, seed=0, device="cpu")
    family = make_family("ant-dir")
    learner = make_algorithm(algo, family, cfg.algo_params, "cpu", 0)
    result = learner.iteration(family.sample_tasks(2, np.random.default_rng(0), "train"))
    curve = result.curve
    for k, ret in zip(curve.steps, curve.return_mean, strict=True):
        terms = {
            t: v
            for t, v in result.metrics.items()
            if t.startswith("terms/") and t.endswith(step_name(curve.x, k))
        }
        assert {f"terms/{n}/{step_name(curve.x, k)}" for n in ("forward", "healthy", "ctrl")} <= set(terms)
        assert all(declared(t) for t in terms)
        # the terms of step k add up to the curve's return at step k (equal episodes per task)
        assert sum(terms.values()) == pytest.approx(ret, rel=1e-4, abs=1e-4)
