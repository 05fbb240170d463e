"""What `robometa train` tells a user: the horizon a run uses, and a progress line
per iteration when its output goes to a file or a pipe."""

from __future__ import annotations

import os
import subprocess
import sys


def test_redirected_train_writes_a_progress_line_per_iteration_and_the_horizon(tmp_path):
    log = tmp_path / "train.log"
    cmd = [
        sys.executable, "-m", "robometa.cli", "train", "--run-dir", str(tmp_path / "r"),
        "iterations=3", "meta_batch_size=2", "episodes_per_task=2", "horizon=6", "hidden=[8]",
        "eval_every=0", "cg_iters=3", "device=cpu",
    ]  # fmt: skip
    with log.open("w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "80"})
    text = log.read_text()
    assert proc.returncode == 0, text
    lines = [ln for ln in text.splitlines() if ln.startswith("iteration ")]
    assert [ln.split()[1] for ln in lines] == ["1/3", "2/3", "3/3"], text
    assert all("left" in ln for ln in lines)
    assert "episodes of 6 steps (shortened from the family's 200" in " ".join(text.split())
