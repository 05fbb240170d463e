"""`robometa train --resume` does what it says: a finished run says so and how to
extend it, fewer iterations than done is refused, and nothing is rewritten."""

from __future__ import annotations

import pytest

from robometa.cli import main

TINY = [
    "iterations=2",
    "meta_batch_size=2",
    "episodes_per_task=2",
    "horizon=6",
    "hidden=[8]",
    "eval_every=0",
    "cg_iters=3",
    "device=cpu",
]


def _snapshot(path):
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "done"
    assert main(["train", "--run-dir", str(run), *TINY]) == 0
    return run


def test_resuming_a_finished_run_says_so_and_writes_nothing(finished, capsys):
    before = _snapshot(finished)
    capsys.readouterr()
    assert main(["train", "--resume", str(finished)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "is finished (2/2 iterations)" in out
    assert f"robometa train --resume {finished} iterations=4" in out
    assert _snapshot(finished) == before


@pytest.mark.parametrize("iterations", [1, 0])
def test_fewer_iterations_than_done_is_one_line_exit_2(finished, capsys, iterations):
    before = _snapshot(finished)
    capsys.readouterr()
    assert main(["train", "--resume", str(finished), f"iterations={iterations}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "iterations" in err[0]
    assert _snapshot(finished) == before


def test_zero_iterations_is_refused_for_a_new_run(tmp_path, capsys):
    assert main(["train", "--run-dir", str(tmp_path / "z"), "iterations=0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "iterations must be >= 1" in err[0]
    assert not (tmp_path / "z").exists()
