"""scripts/single_task.py: SB3 PPO from scratch on one task of a family, measured as it learns."""

from __future__ import annotations

import json

import pytest
from toy_problems import load_script


@pytest.fixture(scope="module")
def st():
    return load_script("single_task")


def test_a_curve_of_one_task_beside_the_expert(st, tmp_path):
    out = tmp_path / "s.json"
    argv = ["--family", "reach", "--steps", "2048", "--every", "1024", "--episodes", "2", "--horizon", "10"]
    assert st.main([*argv, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [r["env_steps"] for r in result["curve"]] == [0, 1024, 2048]
    assert result["horizon"] == 10 and result["expert"] is not None
    assert all(-1e6 < r["return"] <= 0 + 10 and 0.0 <= r["success"] <= 1.0 for r in result["curve"])


def test_bad_input_is_one_line_and_status_2(st, capsys):
    assert st.main(["--family", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown family 'nope'; valid:" in err and len(err.strip().splitlines()) == 1
    assert st.main(["--family", "reach", "--steps", "0"]) == 2
    assert st.main(["--family", "reach", "--split", "test", "--task", "100000"]) == 2
