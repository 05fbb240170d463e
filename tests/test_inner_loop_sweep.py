"""scripts/inner_loop_sweep.py: a MAML run adapted with scaled step sizes and other episode counts."""

from __future__ import annotations

import json

import pytest
import torch
from toy_problems import TINY_GRADIENT_RUN, load_script

from robometa.cli import main as robometa


@pytest.fixture(scope="module")
def sweep():
    return load_script("inner_loop_sweep")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    out = {}
    for name, extra in (("maml", []), ("meta-sgd", ["learn_inner_lr=true"])):
        run = root / name
        args = ["train", "--algo", "maml-trpo", "--family", "reach", "--run-dir", str(run)]
        assert robometa([*args, *TINY_GRADIENT_RUN, *extra]) == 0
        out[name] = run
    return out


def _loaded(run, split="val"):
    from robometa.eval.evaluate import held_out_tasks, load_run

    loaded = load_run(run, None, "cpu", split)
    return loaded, held_out_tasks(loaded.config, loaded.family, split, None)


def test_scale_one_is_what_robometa_evaluate_measures(sweep, runs, tmp_path):
    out = tmp_path / "s.json"
    assert sweep.main([str(runs["maml"]), "--lr-scale", "1", "--adapt-steps", "2", "--out", str(out)]) == 0
    (result,) = json.loads(out.read_text())
    (setting,) = result["settings"]
    loaded, tasks = _loaded(runs["maml"])
    data = loaded.algo.adaptation_data(tasks, 2, seed=0)
    assert setting["return"] == pytest.approx(data.returns.mean(axis=0).tolist(), rel=1e-6)
    assert setting["success"] == pytest.approx(data.success.mean(axis=0).tolist())
    assert result["split"] == "val" and setting["episodes"] == 2


@pytest.mark.parametrize("name", ["maml", "meta-sgd"])
def test_the_adapted_weights_move_by_the_scaled_step(sweep, runs, name):
    """Scale 0 samples step 1 with the unadapted weights; scale 2 with theta plus twice
    scale 1's change. Checked on the sampled actions' log-probabilities."""
    loaded, tasks = _loaded(runs[name])
    algo = loaded.algo
    config = algo.config
    theta = {k: v.detach().clone() for k, v in algo.theta().items()}
    sizes = None if algo.step_sizes is None else {k: v.detach().clone() for k, v in algo.step_sizes.items()}
    seen = {}
    real = algo._adapted

    def spy(*a, **kw):
        seen[scale] = real(*a, **kw)
        return seen[scale]

    algo._adapted = spy
    batches = {}
    for scale in (0.0, 1.0, 2.0):
        with sweep.inner_loop(algo, scale, None):
            batches[scale] = algo.adaptation_batches(tasks, 1, seed=0)
    # step 0 is the same episodes at every scale; the learner is as it was
    assert torch.equal(batches[0.0][0].actions, batches[2.0][0].actions)
    assert algo.config is config and config.inner_lr == 0.1
    if sizes is None:
        assert algo.step_sizes is None
    else:
        assert all(torch.equal(sizes[k], algo.step_sizes[k]) for k in sizes)
    for k in theta:
        per_task = theta[k].expand_as(seen[0.0][k])
        assert torch.allclose(seen[0.0][k], per_task)
        assert torch.allclose(seen[2.0][k] - per_task, 2 * (seen[1.0][k] - per_task), atol=1e-6)
        assert not torch.allclose(seen[1.0][k], per_task)
    b = batches[0.0][1]
    logp, _, _ = algo.policy.log_prob(b.obs, b.actions)
    assert torch.allclose(logp * b.masks, b.log_probs * b.masks, atol=1e-5)


def test_episodes_change_the_batch(sweep, runs, tmp_path, capsys):
    out = tmp_path / "e.json"
    assert (
        sweep.main([str(runs["maml"]), "--episodes", "1", "3", "--lr-scale", "0.5", "--out", str(out)]) == 0
    )
    (result,) = json.loads(out.read_text())
    assert [s["episodes"] for s in result["settings"]] == [1, 3]
    assert all(len(s["per_task_return"][0]) == result["tasks"] for s in result["settings"])
    assert "| step size x | episodes |" in capsys.readouterr().out


def test_bad_input_is_one_line_and_status_2(sweep, runs, tmp_path, capsys):
    rl2 = tmp_path / "rl2"
    tiny = ["iterations=1", "eval_every=0", "eval_tasks=2", "meta_batch_size=2", "trials_per_task=1",
            "horizon=8", "hidden=8", "ppo_epochs=1", "minibatches=1"]  # fmt: skip
    assert robometa(["train", "--algo", "rl2", "--family", "cheetah-vel", "--run-dir", str(rl2), *tiny]) == 0
    capsys.readouterr()
    for argv, says in (
        ([str(rl2)], "no MAML inner loop"),
        ([str(tmp_path / "missing")], "missing"),
        ([str(runs["maml"]), "--lr-scale", "-1"], "--lr-scale"),
        ([str(runs["maml"]), "--episodes", "0"], "--episodes"),
        ([str(runs["maml"]), "--tasks", "0"], "--tasks"),
    ):
        assert sweep.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1, err
