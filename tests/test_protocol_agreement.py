"""One adaptation protocol: the curves the trainer logs are what ``robometa evaluate``
reports for the same checkpoint, tasks and evaluation seed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robometa.algos import AdaptationData
from robometa.cli import main
from robometa.trainer import TEST_SEED, VAL_SEED_OFFSET

TINY = {
    "maml-trpo": ["meta_batch_size=2", "episodes_per_task=2", "hidden=[8]", "cg_iters=3"],
    "rl2": ["meta_batch_size=2", "trials_per_task=2", "hidden=8", "ppo_epochs=1", "minibatches=1"],
}
RUN = ["iterations=2", "eval_every=1", "eval_tasks=3", "eval_steps=2", "horizon=6", "device=cpu"]


def _curve(run, split: str) -> dict:
    """The trainer's last ``split`` curve record."""
    records = [json.loads(line) for line in (run / "curves.jsonl").read_text().splitlines()]
    return [r for r in records if r["split"] == split][-1]


def _evaluate(run, name: str, *argv: str) -> dict:
    base = ["evaluate", str(run), "--checkpoint", "latest", "--tasks", "3", "--baselines", "", "--name", name]
    assert main([*base, *argv]) == 0
    summary = json.loads((run / "eval" / name / "summary.json").read_text())
    (method,) = summary["methods"].values()
    return method


@pytest.mark.parametrize(
    "algo, steps_flag", [("maml-trpo", ["--adapt-steps", "2"]), ("rl2", ["--episodes", "3"])]
)
def test_trainer_curves_are_what_evaluate_reports(algo, steps_flag, tmp_path):
    run = tmp_path / algo
    argv = ["train", "--algo", algo, "--family", "cheetah-vel", "--run-dir", str(run), *TINY[algo], *RUN]
    assert main(argv) == 0
    # held-out: the last evaluation's curve is latest.pt's, on the run's test tasks, seed TEST_SEED
    test = _curve(run, "test")
    method = _evaluate(run, "test", "--seeds", str(TEST_SEED), *steps_flag)
    assert [r["mean"] for r in method["curve"]] == test["return_mean"]
    assert method["x"] == test["x"] and len(test["steps"]) == 3
    # validation: the same protocol with the validation seed
    val = _curve(run, "val")
    method = _evaluate(run, "val", "--split", "val", "--seeds", str(VAL_SEED_OFFSET), *steps_flag)
    assert [r["mean"] for r in method["curve"]] == val["return_mean"]
    assert val["return_mean"] != test["return_mean"]


def test_adaptation_data_checks_its_shapes():
    AdaptationData(
        "adapt_step", 2, np.zeros((3, 2)), np.zeros((3, 2)), np.zeros((2, 3, 5, 4)), np.zeros((2, 3, 4))
    )
    with pytest.raises(ValueError, match="unknown adaptation axis"):
        AdaptationData("gradient", 2, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="success"):
        AdaptationData("episode", 1, np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="must start with"):
        AdaptationData("episode", 1, np.zeros((3, 2)), None, np.zeros((3, 2, 5, 4)), np.zeros((3, 2, 4)))
    curve = AdaptationData(
        "episode", 1, np.array([[1.0, 3.0], [3.0, 5.0]]), np.array([[0, 1], [1, 1.0]])
    ).curve("test")
    assert (curve.steps, curve.return_mean, curve.return_std, curve.success_mean) == (
        [0, 1],
        [2.0, 4.0],
        [1.0, 1.0],
        [0.5, 1.0],
    )


@pytest.mark.parametrize("algo", ["maml-trpo", "reptile"])
def test_step_k_is_sampled_by_the_weights_after_k_steps(algo):
    """The adaptation protocol's step 1 was sampled by the weights one inner step from
    step 0's episodes, not by the meta-trained weights: the log-probabilities the
    sampler recorded are the adapted policy's."""
    import torch

    from robometa.algos import make_algorithm
    from robometa.algos.maml import advantages, inner_gradient
    from robometa.configs import resolve_config
    from robometa.tasks import make_family

    over = ["meta_batch_size=2", "episodes_per_task=2", "hidden=[8]", "horizon=6", "inner_steps=1"]
    cfg = resolve_config(algo=algo, preset="quick", overrides=over, seed=0, device="cpu")
    family = make_family("cheetah-vel")
    learner = make_algorithm(algo, family, cfg.algo_params, "cpu", 0)
    tasks = family.split_tasks("test", n=2)
    b0, b1 = learner.adaptation_batches(tasks, 1, seed=0)
    policy, p = learner.policy, cfg.algo_params
    theta = {n: v.detach().unsqueeze(0).expand(2, *v.shape) for n, v in policy.named_parameters()}
    with torch.enable_grad():
        grads = inner_gradient(policy, theta, b0, advantages(b0, p.gamma, p.gae_lambda))
    adapted = {n: v - p.inner_lr * grads[n] for n, v in theta.items()}
    mask = b1.masks > 0
    for params, same in ((adapted, True), (theta, False)):
        logp = policy.log_prob(b1.obs, b1.actions, params, per_task=True)[0]
        assert torch.allclose(logp[mask], b1.log_probs[mask], atol=1e-4) == same
