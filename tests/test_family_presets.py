"""Per-family tunings of a preset: applied over the algorithm's preset for their family
only, under the user's file, flags and overrides."""

from __future__ import annotations

import pytest

from robometa.algos import algorithm_names
from robometa.configs.loader import PRESET_DIR, family_preset_path, preset_names, resolve_config
from robometa.tasks import family_names


@pytest.mark.parametrize("algo", ["maml-trpo", "maml-ppo", "rl2"])
def test_manipulation_runs_get_the_familys_own_horizon_and_others_the_presets(algo):
    assert resolve_config(algo=algo, family="push").algo_params.horizon is None  # the family's 200
    assert resolve_config(algo=algo, family="robometa/Push-v0").algo_params.horizon is None
    assert resolve_config(algo=algo, overrides=["family=reach"]).algo_params.horizon is None
    assert resolve_config(algo=algo, family="cheetah-vel").algo_params.horizon == 100


def test_file_flags_and_overrides_stay_above_the_family_tuning(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("algo_params:\n  horizon: 80\n")
    assert resolve_config(family="push", config_file=f).algo_params.horizon == 80
    assert resolve_config(family="push", overrides=["horizon=50"]).algo_params.horizon == 50
    assert resolve_config(family="push", preset="paper").algo_params.horizon == 200  # no paper tuning


def test_every_family_tuning_names_a_real_algorithm_preset_and_family_and_resolves():
    files = sorted(PRESET_DIR.glob("*/*/*.yaml"))
    assert files
    for path in files:
        algo, preset, family = path.parent.parent.name, path.parent.name, path.stem
        assert algo in algorithm_names() and preset in preset_names(algo) and family in family_names(), path
        assert family_preset_path(algo, preset, family) == path
        resolve_config(algo=algo, preset=preset, family=family)  # type-checks every key
