"""scripts/within_trial.py: reward per step in windows of each recorded episode."""

from __future__ import annotations

import json

import numpy as np
import pytest
from toy_problems import load_script

from robometa.cli import main as robometa


@pytest.fixture(scope="module")
def wt():
    return load_script("within_trial")


def test_windows_average_over_tasks_and_their_steps(wt):
    rewards = np.zeros((2, 3, 10))  # (steps, tasks, T)
    rewards[0, :, :4] = 1.0  # episode 1: reward only in steps 0-3
    rewards[1, 0, 4:] = 6.0  # episode 2: one task of three, steps 4-9
    got = wt.window_means(rewards, [0, 4, 50])  # a window past T is left out
    np.testing.assert_allclose(got, [[1.0, 0.0], [0.0, 2.0]])


def test_a_memory_run_end_to_end_and_bad_input(wt, tmp_path, capsys):
    run = tmp_path / "rl2"
    tiny = ["iterations=1", "eval_every=0", "eval_tasks=2", "meta_batch_size=2", "trials_per_task=1",
            "horizon=8", "hidden=8", "ppo_epochs=1", "minibatches=1"]  # fmt: skip
    assert robometa(["train", "--algo", "rl2", "--family", "cheetah-vel", "--run-dir", str(run), *tiny]) == 0
    out = tmp_path / "w.json"
    assert wt.main([str(run), "--windows", "0", "3", "--out", str(out)]) == 0
    (result,) = json.loads(out.read_text())
    assert result["windows"] == [[0, 3], [3, 8]] and len(result["reward_per_step"]) == 2  # episodes 1, 2
    # the windows' step-weighted mean is the episode's mean reward per step: return / T
    for k, (a, b) in enumerate(result["reward_per_step"]):
        assert (3 * a + 5 * b) == pytest.approx(result["returns"][k], rel=1e-6)
    capsys.readouterr()
    assert wt.main([str(run), "--windows", "0", "4", "2"]) == 2
    assert "--windows must start at 0 and increase" in capsys.readouterr().err
    assert wt.main([str(tmp_path / "missing")]) == 2
