"""RL² learner: same seed twice -> identical; stop + resume equals uninterrupted."""

from __future__ import annotations

import io

import numpy as np
import torch

from robometa.algos.rl2 import RL2
from robometa.configs.rl2 import RL2Config
from robometa.tasks import make_family

CFG = RL2Config(
    meta_batch_size=2,
    trials_per_task=2,
    episodes_per_trial=2,
    horizon=5,
    hidden=8,
    ppo_epochs=2,
    minibatches=2,
)


def _run(algo, fam, iterations, rng):
    out = []
    for _ in range(iterations):
        out.append(algo.iteration(fam.sample_tasks(CFG.meta_batch_size, rng)))
    return out


def _learning(metrics):
    """Metrics that depend on the data and the maths, not on wall-clock time."""
    return {k: v for k, v in metrics.items() if not k.startswith(("time/", "sim/"))}


def _assert_same_state(a, b):
    for k, v in a.policy.state_dict().items():
        assert torch.equal(v, b.policy.state_dict()[k]), k
    assert torch.equal(a.obs_norm.mean, b.obs_norm.mean) and torch.equal(a.reward_norm.var, b.reward_norm.var)
    assert torch.equal(a.return_norm.var, b.return_norm.var)


def test_same_seed_twice_identical_and_other_seed_differs():
    fam = make_family("cheetah-vel")
    runs = []
    for seed in (3, 3, 4):
        algo = RL2(fam, CFG, device="cpu", seed=seed, sampler_threads=0)
        res = _run(algo, fam, 2, np.random.default_rng(0))
        curve = algo.adaptation_curve(fam.split_tasks("test", n=2), 2, "test")
        runs.append((algo, res, curve))
    (a, ra, ca), (b, rb, cb), (c, _, cc) = runs
    _assert_same_state(a, b)
    assert [_learning(r.metrics) for r in ra] == [_learning(r.metrics) for r in rb]
    assert ca.to_dict() == cb.to_dict() and len(ca.steps) == 3 and ca.x == "episode"
    assert ca.to_dict() != cc.to_dict()
    assert not torch.equal(a.policy.log_std, c.policy.log_std)


def test_stop_and_resume_equals_uninterrupted():
    fam = make_family("cheetah-dir")
    whole = RL2(fam, CFG, device="cpu", seed=1, sampler_threads=0)
    rng = np.random.default_rng(5)
    full = _run(whole, fam, 3, rng)

    first = RL2(fam, CFG, device="cpu", seed=1, sampler_threads=0)
    rng = np.random.default_rng(5)
    _run(first, fam, 2, rng)
    buf = io.BytesIO()
    torch.save({"algo": first.state_dict(), "task_rng": rng.bit_generator.state}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)  # checkpoints must load without pickle code

    resumed = RL2(fam, CFG, device="cpu", seed=99, sampler_threads=0)  # seed is overwritten by the state
    resumed.load_state_dict(saved["algo"])
    rng2 = np.random.default_rng(0)
    rng2.bit_generator.state = saved["task_rng"]
    last = _run(resumed, fam, 1, rng2)
    _assert_same_state(whole, resumed)
    assert _learning(last[0].metrics) == _learning(full[-1].metrics)
    assert last[0].curve.to_dict() == full[-1].curve.to_dict()
    for k, v in whole.optimizer.state_dict()["state"].items():
        assert torch.equal(v["exp_avg"], resumed.optimizer.state_dict()["state"][k]["exp_avg"])


def test_normalizer_statistics_travel_in_the_state():
    fam = make_family("cheetah-dir")
    algo = RL2(fam, CFG, device="cpu", seed=0, sampler_threads=0)
    _run(algo, fam, 1, np.random.default_rng(0))
    state = algo.state_dict()
    assert state["obs_norm"]["count"] == 2 * 2 * 2 * 5
    assert state["reward_norm"]["count"] == state["return_norm"]["count"] == 2 * 2 * 2 * 5
    fresh = RL2(fam, CFG, device="cpu", seed=0, sampler_threads=0)
    assert not torch.equal(fresh.obs_norm.mean, algo.obs_norm.mean)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.obs_norm.mean, algo.obs_norm.mean)


# ------------------------------------------------------------------ through the CLI and run directory

TINY = [
    "eval_every=1",
    "eval_tasks=2",
    "meta_batch_size=2",
    "horizon=5",
    "hidden=8",
    "ppo_epochs=1",
    "minibatches=1",
]


def _train(argv):
    from robometa.cli import main

    return main(["train", *argv])


def test_cli_train_rl2_run_dir_and_resume_equals_uninterrupted(tmp_path, capsys):
    import json

    from robometa.runs import load_checkpoint

    whole, part = tmp_path / "whole", tmp_path / "part"
    assert _train(["--algo", "rl2", "--cell", "lstm", "--run-dir", str(whole), "iterations=2", *TINY]) == 0
    assert _train(["--algo", "rl2", "--cell", "lstm", "--run-dir", str(part), "iterations=1", *TINY]) == 0
    assert _train(["--resume", str(part), "iterations=2"]) == 0
    assert "cell: lstm" in (whole / "config.yaml").read_text()
    a, b = load_checkpoint(whole / "checkpoints/latest.pt"), load_checkpoint(part / "checkpoints/latest.pt")
    assert a["iteration"] == b["iteration"] == 2
    for k, v in a["algo"]["policy"].items():
        assert torch.equal(v, b["algo"]["policy"][k]), k
    assert torch.equal(a["algo"]["obs_norm"]["mean"], b["algo"]["obs_norm"]["mean"])
    curves = [json.loads(line) for line in (part / "curves.jsonl").read_text().splitlines()]
    assert [(c["iteration"], c["split"]) for c in curves] == [
        (1, "val"),
        (1, "test"),
        (2, "val"),
        (2, "test"),
    ]
    assert all(c["x"] == "episode" for c in curves)
    assert curves == [json.loads(line) for line in (whole / "curves.jsonl").read_text().splitlines()]


def test_rl2_logs_validation_and_test_success_curves_on_manipulation(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from robometa.runs import load_checkpoint

    run = tmp_path / "reach"
    argv = [
        "--algo",
        "rl2",
        "--family",
        "reach",
        "--run-dir",
        str(run),
        "iterations=1",
        "eval_steps=1",
        *TINY,
    ]
    assert _train([*argv, "device=cpu"]) == 0
    ea = EventAccumulator(str(run))
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    for split in ("adapt", "adapt_val", "adapt_test"):
        assert {f"{split}/success/episode_1", f"{split}/success/episode_2"} <= tags, split
    best = load_checkpoint(run / "checkpoints/best.pt")["selection"]
    assert (best["split"], best["metric"]) == ("val", "adapt_val/return/episode_2")


def test_cli_bad_rl2_input_is_one_line_and_touches_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(["--algo", "rl2", "--run-dir", str(run), *TINY, "cell=rnn"]) == 2
    assert not run.exists()
    assert "unknown cell 'rnn'; valid: gru, lstm" in capsys.readouterr().err
    assert _train(["--algo", "rl2", "--run-dir", str(run), *TINY, "minibatches=9"]) == 2
    assert "minibatches" in capsys.readouterr().err and not run.exists()
    assert _train(["--algo", "maml-trpo", "--cell", "gru", "--run-dir", str(run)]) == 2
    assert "unknown config key in overrides 'cell'" in capsys.readouterr().err
    assert _train(["--algo", "rl2", "--run-dir", str(run), "iterations=1", *TINY]) == 0
    before = (run / "checkpoints/latest.pt").read_bytes()
    capsys.readouterr()
    assert _train(["--resume", str(run), "--cell", "lstm"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot change 'cell' when resuming" in err[0]
    assert (run / "checkpoints/latest.pt").read_bytes() == before
