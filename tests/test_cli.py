"""The `robometa` command: output, machine-readable output, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from robometa.cli import main
from robometa.tasks import env_ids, family_names


def test_tasks_table(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    for name, env_id in zip(family_names(), env_ids()):
        assert name in out and env_id in out
    header = next(line for line in out.splitlines() if "gymnasium id" in line)
    assert header.index("train") < header.index("val") < header.index("test")
    row = next(line for line in out.splitlines() if "robometa/Reach-v0" in line)
    cells = [c.strip() for c in row.split("│") if c.strip()]
    assert cells[-4:] == ["50", "20", "20", "yes"]  # train, val, test sizes and success
    validation = out[out.index("validation splits") :]
    assert "cheetah-dir: both directions" in validation and "reach: drawn like train" in validation


def test_tasks_json(capsys):
    assert main(["tasks", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == family_names()
    vel = next(r for r in rows if r["name"] == "cheetah-vel")
    assert (vel["obs_dim"], vel["act_dim"], vel["horizon"]) == (17, 6, 200)
    assert (vel["n_train"], vel["n_val"], vel["n_test"]) == (100, 40, 40)
    assert "training region" in vel["validation"] and vel["heldout"].startswith("goal velocities")


def test_tasks_one_family_by_id(capsys):
    assert main(["tasks", "robometa/CheetahDir-v0", "--json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["cheetah-dir"]


def test_unknown_family_is_one_line_and_exit_2(capsys):
    assert main(["tasks", "cheetah-fly"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith("robometa: error: unknown task family 'cheetah-fly'; valid: cheetah-vel")


def test_bad_usage_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


def _console_script() -> str:
    """The installed ``robometa`` executable (beside this interpreter, else on PATH)."""
    beside = Path(sys.executable).with_name("robometa")
    found = str(beside) if beside.is_file() else shutil.which("robometa")
    assert found, "the robometa console script is not installed (pip install -e .)"
    return found


def test_console_script_runs_the_cli():
    """The installed `robometa` command is this CLI: output, and one-line errors with exit 2."""
    exe = _console_script()
    proc = subprocess.run([exe, "tasks", "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [r["name"] for r in json.loads(proc.stdout)] == family_names()
    proc = subprocess.run([exe, "tasks", "nope"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "unknown task family 'nope'; valid:" in proc.stderr
