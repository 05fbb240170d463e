"""`evaluate` and `replay` adapt as far as meta-training taught, unless told otherwise;
`replay --video` checks that it can write before it adapts; the SB3 baseline is set up
so that SB3 has nothing to warn about."""

from __future__ import annotations

import builtins
import json
import warnings

import pytest

from robometa.cli import main
from robometa.eval.baselines import minibatch_size

TINY = [
    "iterations=1",
    "eval_every=1",
    "eval_tasks=2",
    "eval_steps=3",  # the periodic curve goes further than training adapted
    "inner_steps=1",
    "meta_batch_size=2",
    "episodes_per_task=2",
    "horizon=8",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["train", "--family", "cheetah-vel", "--device", "cpu", "--run-dir", str(path), *TINY]) == 0
    return path


def test_evaluate_defaults_to_the_trained_inner_steps(run_dir):
    assert main(["evaluate", str(run_dir), "--tasks", "1", "--seeds", "0", "--name", "d"]) == 0
    summary = json.loads((run_dir / "eval" / "d" / "summary.json").read_text())
    assert summary["settings"]["steps"] == 1 and summary["settings"]["steps_rule"] == "trained"
    assert [r["step"] for r in summary["methods"]["maml-trpo"]["curve"]] == [0, 1]
    assert (
        main(["evaluate", str(run_dir), "--tasks", "1", "--seeds", "0", "--adapt-steps", "2", "--name", "g"])
        == 0
    )
    summary = json.loads((run_dir / "eval" / "g" / "summary.json").read_text())
    assert summary["settings"]["steps_rule"] == "given"
    assert [r["step"] for r in summary["methods"]["maml-trpo"]["curve"]] == [0, 1, 2]


def test_replay_defaults_to_the_trained_inner_steps_and_says_so(run_dir, tmp_path, monkeypatch, capsys):
    import robometa.viz.replay as replay

    seen = []
    real = replay.record

    def spy(loaded, task, steps, seed=0):
        seen.append(steps)
        return real(loaded, task, steps, seed)

    monkeypatch.setattr(replay, "record", spy)
    assert (
        main(["replay", str(run_dir), "--gif", str(tmp_path / "a.gif"), "--width", "32", "--height", "32"])
        == 0
    )
    assert seen == [1]
    assert "1 adaptation step (as trained)" in capsys.readouterr().out
    assert (
        main(
            [
                "replay",
                str(run_dir),
                "--adapt-steps",
                "2",
                "--gif",
                str(tmp_path / "b.gif"),
                "--width",
                "32",
                "--height",
                "32",
            ]
        )
        == 0
    )
    assert seen == [1, 2]


def test_replay_video_without_the_extra_fails_before_adapting(run_dir, tmp_path, monkeypatch, capsys):
    import robometa.viz.replay as replay

    real_import = builtins.__import__

    def no_ffmpeg(name, *args, **kwargs):
        if name == "imageio_ffmpeg":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    def must_not_adapt(*args, **kwargs):
        raise AssertionError("adapted before checking that the video can be written")

    monkeypatch.setattr(builtins, "__import__", no_ffmpeg)
    monkeypatch.setattr(replay, "record", must_not_adapt)
    assert main(["replay", str(run_dir), "--video", str(tmp_path / "x.mp4")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install -e '.[video]'" in err[0]
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.parametrize("budget", [200, 1000, 1600, 2000, 4000, 7 * 200, 1999])
def test_sb3_gets_whole_minibatches(budget):
    size = minibatch_size(budget)
    assert budget % size == 0 and 1 <= size <= budget


def test_sb3_ppo_baseline_has_nothing_to_warn_about():
    from stable_baselines3 import PPO

    from robometa.envs import MetaEnv

    env = MetaEnv("cheetah-vel")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        PPO("MlpPolicy", env, n_steps=2000, batch_size=minibatch_size(2000), device="cpu")
