"""Finding model files from a source checkout (wheels map assets/ to robometa/_assets)."""

from __future__ import annotations

import pytest

from robometa.assets import assets_dir, gymnasium_asset
from robometa.errors import RobometaError


def test_gymnasium_models_are_loaded_by_path():
    path = gymnasium_asset("half_cheetah.xml")
    assert path.is_file() and path.parent.name == "assets"
    with pytest.raises(RobometaError, match="does not ship"):
        gymnasium_asset("no_such_robot.xml")


def test_assets_dir_exists():
    assert assets_dir().is_dir()
