"""Finding model files from a source checkout (wheels map assets/ to robometa/_assets)."""

from __future__ import annotations

import pytest

from robometa.assets import asset_path, assets_dir, gymnasium_asset
from robometa.errors import RobometaError


def test_gymnasium_models_are_loaded_by_path():
    path = gymnasium_asset("half_cheetah.xml")
    assert path.is_file() and path.parent.name == "assets"
    with pytest.raises(RobometaError, match="does not ship"):
        gymnasium_asset("no_such_robot.xml")


def test_own_assets_are_found_and_missing_ones_named():
    """The arm scene the manipulation families load comes from assets_dir(); a missing
    asset is one clear error that says where it looked."""
    from robometa.tasks.manipulation import robot

    path = asset_path(robot.SCENE)
    assert path.is_file() and path.is_relative_to(assets_dir())
    assert robot.scene_spec().compile().nbody > 1
    with pytest.raises(RobometaError, match=f"asset 'arm/nope.xml' not found under {assets_dir()}"):
        asset_path("arm/nope.xml")
