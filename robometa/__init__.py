"""robometa: meta-reinforcement learning on simulated MuJoCo robots.

``import robometa`` registers the gymnasium ids ``robometa/<Name>-v<k>`` (by entry
point: no family, env or rendering module is imported until one is used).
"""

import os as _os


def _headless_gl() -> str | None:
    """The offscreen GL backend whose library this machine has: egl, osmesa, or None.

    MuJoCo picks its GL backend when it is first imported, and GLFW fails without a
    display. Naming a backend whose library is missing breaks ``import mujoco``
    itself, so a machine with neither library keeps MuJoCo's default (simulation
    works; rendering then needs a display).
    """
    import ctypes.util

    for backend, lib in (("egl", "EGL"), ("osmesa", "OSMesa")):
        if ctypes.util.find_library(lib):
            return backend
    return None


if "MUJOCO_GL" not in _os.environ and not _os.environ.get("DISPLAY"):
    _gl = _headless_gl()
    if _gl is not None:
        _os.environ["MUJOCO_GL"] = _gl

__version__ = "0.1.0"

import robometa.tasks  # noqa: E402,F401  (registers every family's gymnasium id)
