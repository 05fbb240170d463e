"""The `robometa` command: output, machine-readable output, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from robometa.cli import main
from robometa.tasks import env_ids, family_names


def test_tasks_table(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    for name, env_id in zip(family_names(), env_ids()):
        assert name in out and env_id in out


def test_tasks_json(capsys):
    assert main(["tasks", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == family_names()
    vel = next(r for r in rows if r["name"] == "cheetah-vel")
    assert (vel["obs_dim"], vel["act_dim"], vel["horizon"]) == (17, 6, 200)
    assert vel["n_train"] > 0 and vel["n_test"] > 0


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


def test_console_script_entry_point():
    """`python -m robometa.cli` is the same program as the console script."""
    proc = subprocess.run(
        [sys.executable, "-m", "robometa.cli", "tasks", "nope"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "valid:" in proc.stderr
