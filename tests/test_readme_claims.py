"""The numbers and defaults the README states are the ones the code has: each claim is
rebuilt from the presets or scripts and looked up in the README, so a change to either
side without the other fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from robometa.configs import resolve_config

README = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _has(sentence: str) -> None:
    assert " ".join(sentence.split()) in README, sentence


def test_maml_presets_are_described_as_they_are():
    paper = resolve_config(preset="paper").algo_params
    quick_cfg = resolve_config(preset="quick", family="ant-goal")  # a family with no tuning of its own
    quick = quick_cfg.algo_params
    _has(
        f"`paper` is the MAML paper's {paper.meta_batch_size} tasks, {paper.episodes_per_task} episodes, "
        f"horizon {paper.horizon}, inner step {paper.inner_lr:g}, KL {paper.max_kl:g}, with the "
        f"Fisher-vector products on {paper.fisher_subsample:.0%} of the tasks"
    )
    push = resolve_config(preset="quick", family="push").algo_params.horizon
    assert push is None  # the family's own
    _has(
        f"`quick` (the default) is {quick.meta_batch_size} tasks, {quick.episodes_per_task} episodes, "
        f"horizon {quick.horizon} (manipulation: 200), KL {quick.max_kl:g}, Fisher on "
        f"{quick.fisher_subsample:.0%} of the tasks and an initial action std of {quick.init_std:g} "
        f"instead of 1.0, {quick_cfg.iterations} iterations"
    )
    steps = quick_cfg.iterations * quick.meta_batch_size * quick.episodes_per_task * quick.horizon * 2
    _has(
        f"trained MAML-TRPO with the quick preset ({quick_cfg.iterations} iterations, {steps / 1e6:g}M env steps)"
    )
    default = resolve_config()  # robometa train: cheetah-vel's own tuning of the quick preset
    assert default.family == "cheetah-vel" and default.algo_params.normalize_obs
    _has(
        f"cheetah-vel's own tuning (the default run) adds `normalize_obs: true` and cuts it to "
        f"{default.iterations} iterations"
    )
    _has(
        f"standardized observations (`normalize_obs: true`) and {default.iterations} iterations instead of 150"
    )
    families = ("cheetah-dir", "cheetah-params", "cheetah-terrain", "ant-dir", "ant-params", "push", "reach")
    tuned = [f for f in families if resolve_config(preset="quick", family=f).algo_params.normalize_obs]
    assert tuned == ["cheetah-dir", "cheetah-params", "cheetah-terrain", "ant-dir", "ant-params", "push"]
    _has(
        "cheetah-dir's, cheetah-params', cheetah-terrain's, ant-dir's, ant-params' and push's add "
        "`normalize_obs: true`"
    )
    stepped = [f for f in families if resolve_config(preset="quick", family=f).algo_params.inner_steps != 1]
    assert (
        stepped == ["reach"] and resolve_config(preset="quick", family="reach").algo_params.inner_steps == 3
    )
    _has("reach's meta-trains three adaptation steps instead of one (`inner_steps: 3`")


def test_rl2_evidence_iterations_are_those_of_the_script_and_preset():
    rl2 = resolve_config(algo="rl2", preset="quick")
    text = (SCRIPTS / "reproduce.py").read_text()
    used = set(re.findall(r'"iterations=(\d+)"', text))
    assert len(used) == 1
    _has(f"preset with {used.pop()} iterations instead of its {rl2.iterations}")


@pytest.mark.parametrize("algo", ["maml-trpo", "maml-ppo", "rl2"])
def test_the_quick_default_run_is_the_one_the_readme_starts(algo):
    if algo == "maml-trpo":
        cfg = resolve_config()
        assert (cfg.algo, cfg.family) == ("maml-trpo", "cheetah-vel")
        _has("quick MAML-TRPO meta-training on cheetah-vel")
    assert resolve_config(algo=algo, preset="quick").algo_params.horizon == 100
    _has("The quick presets shorten episodes to 100 steps")
