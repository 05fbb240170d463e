"""robometa: meta-reinforcement learning on simulated MuJoCo robots.

``import robometa`` registers the gymnasium ids ``robometa/<Name>-v<k>``.
"""

import os as _os

# Headless machines: MuJoCo picks its GL backend when it is first imported, and
# GLFW fails without a display. EGL renders offscreen; users may set osmesa.
if "MUJOCO_GL" not in _os.environ and not _os.environ.get("DISPLAY"):
    _os.environ["MUJOCO_GL"] = "egl"

__version__ = "0.1.0"

from robometa.envs import register_envs as _register_envs  # noqa: E402

_register_envs()
