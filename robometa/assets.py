"""Finding MJCF files: our own ``assets/`` and the models installed dependencies ship.

``assets/`` lives at the repository root. A wheel carries it as ``robometa/_assets``
(see ``pyproject.toml``); a source checkout or editable install finds it beside the
package. Third-party robots are never copied into the repository: gymnasium's MuJoCo
XMLs are loaded from the installed gymnasium package by path at run time.
"""

from __future__ import annotations

from pathlib import Path

from robometa.errors import RobometaError

_PACKAGE = Path(__file__).resolve().parent


def assets_dir() -> Path:
    """The directory holding robometa's own MJCF assets."""
    for candidate in (_PACKAGE / "_assets", _PACKAGE.parent / "assets"):
        if candidate.is_dir():
            return candidate
    raise RobometaError(
        f"robometa assets not found in {_PACKAGE / '_assets'} or {_PACKAGE.parent / 'assets'}; "
        "reinstall robometa"
    )


def asset_path(relative: str) -> Path:
    """Path of one of robometa's own asset files, e.g. ``asset_path('scene/floor.xml')``."""
    path = assets_dir() / relative
    if not path.is_file():
        raise RobometaError(f"asset {relative!r} not found under {assets_dir()}")
    return path


def gymnasium_asset(filename: str) -> Path:
    """Path of an MJCF file shipped inside the installed gymnasium package."""
    import gymnasium  # the XMLs are data files: no need to import gymnasium's MuJoCo envs

    path = Path(gymnasium.__file__).resolve().parent / "envs" / "mujoco" / "assets" / filename
    if not path.is_file():
        raise RobometaError(f"gymnasium does not ship {filename!r} (looked in {path.parent})")
    return path
