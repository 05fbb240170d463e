"""`robometa evaluate` and `robometa replay` end to end on a tiny trained run."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from robometa.cli import main
from robometa.tasks import make_family

TINY = [
    "iterations=1",
    "eval_every=1",
    "eval_tasks=2",
    "meta_batch_size=2",
    "episodes_per_task=2",
    "horizon=8",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["train", "--family", "cheetah-vel", "--device", "cpu", "--run-dir", str(path), *TINY]) == 0
    return path


def test_evaluate_writes_the_report(run_dir, capsys):
    code = main(
        ["evaluate", str(run_dir), "--tasks", "2", "--seeds", "0,1", "--adapt-steps", "2", "--name", "t"]
    )
    assert code == 0
    out = run_dir / "eval" / "t"
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["methods"]) == {"maml-trpo", "no adaptation"}
    learner = summary["methods"]["maml-trpo"]
    assert learner["x"] == "adapt_step" and learner["episodes_per_step"] == 2
    assert np.asarray(learner["per_task_returns"]).shape == (2, 2, 3)  # seeds x tasks x steps
    assert [r["step"] for r in learner["curve"]] == [0, 1, 2]
    assert [r["episodes_seen"] for r in learner["curve"]] == [0, 2, 4]
    for row in learner["curve"]:
        per_task = np.asarray(learner["per_task_returns"])[:, :, row["step"]]
        assert row["mean"] == pytest.approx(per_task.mean())
        assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    flat = summary["methods"]["no adaptation"]["curve"]
    assert len({r["mean"] for r in flat}) == 1 and flat[0]["mean"] == learner["curve"][0]["mean"]
    rows = list(csv.DictReader((out / "curves.csv").open()))
    assert len(rows) == 6 and rows[0].keys() >= {"method", "step", "mean", "iqm", "ci_low", "ci_high"}
    assert len(list(csv.DictReader((out / "per_task.csv").open()))) == 2 * (2 * 2 * 3)
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # TensorBoard: one scalar series per method, indexed by adaptation step
    acc = EventAccumulator(str(out))
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == {"eval/maml-trpo/return/step", "eval/no adaptation/return/step"}
    points = acc.Scalars("eval/maml-trpo/return/step")
    assert [e.step for e in points] == [0, 1, 2]
    assert [e.value for e in points] == pytest.approx([r["mean"] for r in learner["curve"]])
    # held-out tasks: the run's fixed test list, none from the training region
    family = make_family("cheetah-vel")
    tasks = [family.task_from_dict(t) for t in summary["tasks"]]
    assert tasks == family.split_tasks("test", seed=0, n=2)
    assert not any(family.in_split(t, "train") for t in tasks)
    # the checkpoint: best, chosen on the validation tasks, recorded
    (used,) = summary["settings"]["checkpoints"]
    assert summary["settings"]["checkpoint"] == used["checkpoint"] == "best"
    assert used["iteration"] == 1 and used["selection"]["split"] == "val"
    assert used["selection"]["metric"] == "adapt_val/return/step_1"
    printed = capsys.readouterr().out
    assert "maml-trpo" in printed and "checkpoint best (iteration 1, chosen on val" in printed


def test_evaluate_with_success_writes_success_tags(tmp_path):
    from robometa.eval.evaluate import evaluate

    run = tmp_path / "reach"
    argv = ["train", "--family", "reach", "--device", "cpu", "--run-dir", str(run), *TINY, "eval_every=0"]
    assert main(argv) == 0
    out, _ = evaluate([run], n_tasks=1, steps=1, seeds=[0], baselines=["no-adapt"], name="s")
    acc = EventAccumulator(str(out))
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == {
        f"eval/{m}/{k}/step" for m in ("maml-trpo", "no adaptation") for k in ("return", "success")
    }


# ------------------------------------------------------------------ which checkpoint


def test_best_is_refused_on_the_split_that_chose_it(run_dir, capsys):
    before = sorted(p.name for p in run_dir.rglob("*"))
    assert main(["evaluate", str(run_dir), "--split", "val", "--checkpoint", "best"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "best.pt was chosen on the val split" in err and "--checkpoint latest" in err
    assert main(["replay", str(run_dir), "--split", "val", "--checkpoint", "best", "--gif", "x.gif"]) == 2
    assert "was chosen on the val split" in capsys.readouterr().err
    assert sorted(p.name for p in run_dir.rglob("*")) == before  # nothing written
    # by default the val split is evaluated with latest, and the summary says why
    argv = ["evaluate", str(run_dir), "--split", "val", "--tasks", "1", "--seeds", "0", "--baselines", ""]
    assert main([*argv, "--name", "v"]) == 0
    (used,) = json.loads((run_dir / "eval" / "v" / "summary.json").read_text())["settings"]["checkpoints"]
    assert used["checkpoint"] == "latest" and used["selection"]["rule"] == "latest"
    assert "chosen on the val split" in used["selection"]["instead_of_best"]


def _strip_selection(run: Path) -> None:
    """Make ``run`` look like one trained before checkpoints recorded their selection."""
    for path in (run / "checkpoints" / "best.pt", run / "checkpoints" / "latest.pt"):
        ckpt = torch.load(path, weights_only=True)
        ckpt.pop("selection")
        torch.save(ckpt, path)


def test_an_old_best_without_a_record_counts_as_chosen_on_test(run_dir, tmp_path, capsys):
    old = tmp_path / "old"
    shutil.copytree(run_dir, old, ignore=shutil.ignore_patterns("eval"))
    _strip_selection(old)
    assert main(["evaluate", str(old), "--checkpoint", "best"]) == 2
    assert "best.pt was chosen on the test split" in capsys.readouterr().err
    assert not (old / "eval").exists()
    argv = ["evaluate", str(old), "--tasks", "1", "--seeds", "0", "--baselines", "", "--name", "t"]
    assert main(argv) == 0
    (used,) = json.loads((old / "eval" / "t" / "summary.json").read_text())["settings"]["checkpoints"]
    assert used["checkpoint"] == "latest" and "test split" in used["selection"]["instead_of_best"]
    # on the train split the old best may be used: it was not chosen there
    argv[-1] = "tr"
    assert main([*argv, "--split", "train"]) == 0
    (used,) = json.loads((old / "eval" / "tr" / "summary.json").read_text())["settings"]["checkpoints"]
    assert used["checkpoint"] == "best" and used["selection"]["split"] == "test"


def test_a_family_without_held_out_tasks_is_evaluated_with_latest(tmp_path, capsys):
    """cheetah-dir's val and test splits are the same two tasks: a best chosen on val
    was chosen on the evaluated tasks."""
    run = tmp_path / "dir"
    assert main(["train", "--family", "cheetah-dir", "--device", "cpu", "--run-dir", str(run), *TINY]) == 0
    assert (run / "checkpoints" / "best.pt").is_file()
    capsys.readouterr()
    assert main(["evaluate", str(run), "--checkpoint", "best"]) == 2
    assert "2 of which are among the evaluated test tasks" in capsys.readouterr().err
    assert main(["evaluate", str(run), "--seeds", "0", "--baselines", "", "--name", "d"]) == 0
    (used,) = json.loads((run / "eval" / "d" / "summary.json").read_text())["settings"]["checkpoints"]
    assert used["checkpoint"] == "latest"


def test_compare_two_runs(run_dir, tmp_path):
    other = tmp_path / "copy"
    shutil.copytree(run_dir, other, ignore=shutil.ignore_patterns("eval"))
    assert (
        main(
            [
                "evaluate",
                str(run_dir),
                str(other),
                "--tasks",
                "1",
                "--seeds",
                "0",
                "--baselines",
                "",
                "--name",
                "cmp",
            ]
        )
        == 0
    )
    summary = json.loads((run_dir / "eval" / "cmp" / "summary.json").read_text())
    assert len(summary["methods"]) == 2
    a, b = (m["per_task_returns"] for m in summary["methods"].values())
    assert a == b  # same weights, same seed: same numbers


@pytest.mark.gl
def test_replay_video_has_one_frame_per_state(run_dir, tmp_path):
    import imageio_ffmpeg

    video = tmp_path / "replay.mp4"
    assert (
        main(
            [
                "replay",
                str(run_dir),
                "--task",
                "1",
                "--adapt-steps",
                "1",
                "--video",
                str(video),
                "--width",
                "64",
                "--height",
                "48",
            ]
        )
        == 0
    )
    frames_iter = imageio_ffmpeg.read_frames(str(video))
    meta = next(frames_iter)
    assert meta["size"] == (128, 48)  # before | after, side by side
    frames = [np.frombuffer(f, np.uint8) for f in frames_iter]
    assert len(frames) == 9  # horizon 8 -> 9 states


@pytest.mark.parametrize(
    "argv,message",
    [
        (["evaluate", "{missing}"], "not found"),
        (["evaluate", "{notrun}"], "is not a robometa run"),
        (["replay", "{run}", "--task", "40", "--video", "x.mp4"], "valid: 0..39"),
        (["evaluate", "{run}", "--baselines", "oracle"], "unknown baseline 'oracle'"),
        (["evaluate", "{run}", "--seeds", "a,b"], "comma-separated integers"),
        (["evaluate", "{run}", "--tasks", "0"], "--tasks must be >= 1"),
        (["replay", "{run}", "--video", "{tmp}/x.avi"], "valid suffixes"),
    ],
)
def test_bad_input_is_one_line_exit_2(run_dir, tmp_path, capsys, argv, message):
    (tmp_path / "notrun").mkdir()
    subs = {
        "missing": str(tmp_path / "missing"),
        "notrun": str(tmp_path / "notrun"),
        "run": str(run_dir),
        "tmp": str(tmp_path),
    }
    argv = [a.format(**subs) for a in argv]
    before = sorted(p.name for p in run_dir.rglob("*"))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err
    assert sorted(p.name for p in run_dir.rglob("*")) == before  # nothing written


def test_checkpoint_from_another_family_is_refused(run_dir, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(run_dir, other, ignore=shutil.ignore_patterns("eval"))
    cfg = (other / "config.yaml").read_text().replace("family: cheetah-vel", "family: cheetah-dir")
    (other / "config.yaml").write_text(cfg)
    assert main(["evaluate", str(other)]) == 2
    assert "trained with family 'cheetah-vel'" in capsys.readouterr().err


def test_multitask_baseline_is_trained_once_and_cached(run_dir):
    argv = [
        "evaluate",
        str(run_dir),
        "--tasks",
        "2",
        "--seeds",
        "0",
        "--adapt-steps",
        "1",
        "--baselines",
        "multitask",
    ]
    assert main([*argv, "--name", "mt1"]) == 0
    (cache,) = (run_dir / "eval" / "cache").glob("multitask-*")
    ckpt = cache / "checkpoints" / "latest.pt"
    stamp = ckpt.stat().st_mtime_ns
    assert main([*argv, "--name", "mt2"]) == 0
    assert ckpt.stat().st_mtime_ns == stamp  # reused, not retrained
    first, second = (
        json.loads((run_dir / "eval" / n / "summary.json").read_text())["methods"]["multi-task + fine-tune"]
        for n in ("mt1", "mt2")
    )
    assert first["per_task_returns"] == second["per_task_returns"]
    assert np.asarray(first["per_task_returns"]).shape == (1, 2, 2)
    # it really is a policy trained without inner steps
    assert "inner_steps: 0" in (cache / "config.yaml").read_text()
    # chosen like the learner's: a best on the same validation tasks, each by what it was
    # trained for: the learner after its inner step, the multi-task policy before fine-tuning
    learner = json.loads((run_dir / "eval" / "mt1" / "summary.json").read_text())["methods"]["maml-trpo"]
    assert learner["notes"]["checkpoint"] == first["notes"]["checkpoint"] == "best"
    rule = {k: learner["notes"]["selection"][k] for k in ("split", "split_seed", "tasks")}
    assert {k: first["notes"]["selection"][k] for k in rule} == rule
    assert learner["notes"]["selection"]["step"] == 1 and first["notes"]["selection"]["step"] == 0
    assert first["notes"]["selection"]["metric"] == "adapt_val/return/step_0"
    # equal experience: MAML with one inner step samples two batches an iteration, the
    # baseline one, so it trains twice the iterations (evaluated on val as often)
    text = (cache / "config.yaml").read_text()
    assert "eval_every: 2" in text and "iterations: 2" in text
    from robometa.runs import load_checkpoint

    steps = [load_checkpoint(p / "checkpoints" / "latest.pt")["env_steps"] for p in (run_dir, cache)]
    assert steps[0] == steps[1] > 0


@pytest.mark.gl
def test_log_video_writes_an_animated_gif_to_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    path = tmp_path / "video-run"
    argv = [
        "train",
        "--family",
        "cheetah-dir",
        "--device",
        "cpu",
        "--run-dir",
        str(path),
        "--log-video",
        *TINY,
    ]
    assert main(argv) == 0
    acc = EventAccumulator(str(path), size_guidance={"images": 0})
    acc.Reload()
    assert "video/test_task_0" in acc.Tags()["images"]
    (image,) = acc.Images("video/test_task_0")
    assert image.encoded_image_string[:6] == b"GIF89a"
    assert (image.width, image.height) == (640, 240)  # before | after, 320x240 each: the robot is visible
    assert image.encoded_image_string.count(b"\x21\xf9\x04") == 9  # one frame per state (horizon 8)


def test_recorded_episodes_are_the_evaluated_ones(tmp_path):
    """With one episode per task, the recorded episode of every task and step is the
    whole of what its reported return averages: the two must agree exactly."""
    from robometa.eval.evaluate import evaluate
    from robometa.viz.replay import from_evaluation

    run = tmp_path / "one"
    argv = ["train", "--family", "cheetah-vel", "--device", "cpu", "--run-dir", str(run), *TINY]
    assert main([*argv, "episodes_per_task=1"]) == 0
    out, summary = evaluate([run], n_tasks=2, steps=1, seeds=[0, 1], baselines=[], name="one")
    returns = np.asarray(summary["methods"]["maml-trpo"]["per_task_returns"])  # (S, M, K+1)
    recorded = np.load(out / "states.npz")["rewards"].sum(axis=-1)  # (K+1, M): first seed
    np.testing.assert_allclose(recorded.T, returns[0], rtol=1e-5)
    assert not np.allclose(returns[0], returns[1])  # the second seed is another draw
    rec = from_evaluation(out, 1)
    assert [float(r.sum()) for r in rec.rewards] == pytest.approx(list(returns[0, 1]), rel=1e-5)


@pytest.mark.gl
def test_replay_from_evaluation_shows_exactly_the_evaluated_episodes(run_dir, tmp_path):
    from robometa.eval.evaluate import load_run
    from robometa.viz.replay import from_evaluation, record

    assert (
        main(
            ["evaluate", str(run_dir), "--tasks", "2", "--seeds", "0", "--adapt-steps", "1", "--name", "rec"]
        )
        == 0
    )
    eval_dir = run_dir / "eval" / "rec"
    rec = from_evaluation(eval_dir, 1)
    summary = json.loads((eval_dir / "summary.json").read_text())
    assert len(rec.states) == 2 and rec.states[0].shape[0] == 9
    # the same evaluation repeated (same run, tasks and seed) gives the very same states
    loaded = load_run(run_dir)
    tasks = [loaded.family.task_from_dict(t) for t in summary["tasks"]]
    data = loaded.algo.adaptation_data(tasks, 1, seed=0, record_states=True)
    np.testing.assert_array_equal(data.states[1, 1], rec.states[1])
    np.testing.assert_array_equal(data.states[0, 1], rec.states[0])
    # re-adapting the task alone is a different draw: why replay --from-eval exists
    alone = record(loaded.algo, rec.task, 1, seed=0)
    assert not np.array_equal(alone.states[1], rec.states[1])
    video = tmp_path / "from_eval.gif"
    assert (
        main(
            [
                "replay",
                "--from-eval",
                str(eval_dir),
                "--task",
                "1",
                "--gif",
                str(video),
                "--width",
                "32",
                "--height",
                "24",
            ]
        )
        == 0
    )
    assert video.read_bytes()[:6] == b"GIF89a"
    assert main(["replay", "--from-eval", str(eval_dir), "--task", "5", "--gif", str(video)]) == 2
    assert main(["replay", "--from-eval", str(tmp_path), "--gif", str(video)]) == 2
