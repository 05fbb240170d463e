"""Held-out axes a researcher can separate: per-axis splits of the manipulation
families, and `robometa evaluate --tasks-file` with the user's own tasks."""

from __future__ import annotations

import json

import pytest

from robometa.cli import main
from robometa.errors import RobometaError
from robometa.tasks import family_names, make_family

TEST_SHAPES, TRAIN_SHAPES = {"capsule", "ellipsoid"}, {"box", "cylinder", "sphere"}


def _held_out_goal(task) -> bool:
    return 0.075 <= abs(task.goal[0]) <= 0.125


@pytest.mark.parametrize("name", ["reach", "push", "pick-place"])
def test_each_axis_split_holds_out_one_axis(name):
    fam = make_family(name)
    objects = fam.split_tasks("test-objects", n=40)
    goals = fam.split_tasks("test-goals", n=40)
    assert {t.shape for t in objects} <= TEST_SHAPES and not any(_held_out_goal(t) for t in objects)
    assert {t.shape for t in goals} <= TRAIN_SHAPES and all(_held_out_goal(t) for t in goals)
    both = fam.split_tasks("test", n=40)
    assert {t.shape for t in both} <= TEST_SHAPES and all(_held_out_goal(t) for t in both)
    for split, tasks in (("test-objects", objects), ("test-goals", goals)):
        assert all(fam.in_split(t, split) and not fam.in_split(t, "train") for t in tasks)
    assert not any(fam.in_split(t, "test-goals") for t in objects)
    assert not any(fam.in_split(t, "test-objects") for t in goals)
    assert not any(fam.in_split(t, "test-objects") for t in fam.split_tasks("train"))


def test_families_without_axes_name_their_splits():
    for name in family_names():
        fam = make_family(name)
        for split in fam.split_names():
            assert fam.split_tasks(split, n=2)
        with pytest.raises(RobometaError, match="valid: train, val, test"):
            fam.split_tasks("test-shapes")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "push"
    argv = ["train", "--family", "push", "--run-dir", str(path), "iterations=1", "eval_every=0",
            "meta_batch_size=2", "episodes_per_task=1", "horizon=5", "hidden=[8]", "cg_iters=2", "device=cpu"]  # fmt: skip
    assert main(argv) == 0
    return path


def test_evaluate_on_an_axis_split_and_on_a_tasks_file(run, tmp_path, capsys):
    assert (
        main(["evaluate", str(run), "--split", "test-objects", "--tasks", "2", "--seeds", "0", "--name", "o"])
        == 0
    )
    summary = json.loads((run / "eval" / "o" / "summary.json").read_text())
    fam = make_family("push")
    assert summary["tasks"] == [t.to_dict() for t in fam.split_tasks("test-objects", n=2)]
    mine = [fam.split_tasks("test-goals", n=3)[2].to_dict(), fam.split_tasks("train", n=1)[0].to_dict()]
    f = tmp_path / "tasks.json"
    f.write_text(json.dumps(mine))
    assert main(["evaluate", str(run), "--tasks-file", str(f), "--seeds", "0", "--name", "f"]) == 0
    summary = json.loads((run / "eval" / "f" / "summary.json").read_text())
    assert summary["tasks"] == mine and summary["settings"]["split"] == "custom"


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json", "is not valid JSON"),
        ("[]", "non-empty JSON list"),
        ('[{"kind": "push", "mass": 9}]', "task 0 of tasks.json"),
    ],
)
def test_a_bad_tasks_file_is_one_line_exit_2(run, tmp_path, capsys, content, message):
    f = tmp_path / "tasks.json"
    f.write_text(content)
    before = sorted(p.name for p in (run / "eval").glob("*")) if (run / "eval").exists() else []
    assert main(["evaluate", str(run), "--tasks-file", str(f), "--seeds", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    after = sorted(p.name for p in (run / "eval").glob("*")) if (run / "eval").exists() else []
    assert after == before
    assert main(["evaluate", str(run), "--split", "test-shapes"]) == 2
