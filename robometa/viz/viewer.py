"""The interactive MuJoCo viewer (``mujoco.viewer.launch_passive``), driven by us.

``launch_passive`` runs the GUI on a daemon thread that keeps tearing down after
``close()`` returns; a process that exits in that window crashes inside GLFW. The
:class:`Viewer` wrapper remembers the GUI thread and joins it on close.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Sequence

import mujoco
import numpy as np

from robometa.errors import RobometaError
from robometa.tasks.base import Marker
from robometa.viz.render import add_markers

_FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS


def require_display() -> None:
    """Fail clearly, instead of aborting inside GLFW, when no screen is available."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        raise RobometaError(
            "the interactive viewer needs a display (DISPLAY is not set); render to a file instead "
            "(render_mode='rgb_array', or --video out.mp4 on the command line), or run under a "
            "virtual screen: xvfb-run -a <command>"
        )


class Viewer:
    """A passive viewer showing states we set, with markers and on-screen text."""

    def __init__(self, model: mujoco.MjModel, show_ui: bool = False):
        import mujoco.viewer

        require_display()
        self.model = model
        self.data = mujoco.MjData(model)
        before = set(threading.enumerate())
        self.handle = mujoco.viewer.launch_passive(
            model, self.data, show_left_ui=show_ui, show_right_ui=show_ui
        )
        self._threads = [t for t in threading.enumerate() if t not in before]

    @property
    def running(self) -> bool:
        return self.handle.is_running()

    def show(self, state: np.ndarray, markers: Sequence[Marker] = (), text: str | None = None) -> None:
        """Display one full-physics state row, its markers and a text overlay."""
        with self.handle.lock():
            mujoco.mj_setState(self.model, self.data, np.asarray(state, dtype=np.float64), _FULL)
            mujoco.mj_forward(self.model, self.data)
            self.handle.user_scn.ngeom = 0
            add_markers(self.handle.user_scn, markers)
            if text is not None:
                self.handle.set_texts(
                    (mujoco.mjtFontScale.mjFONTSCALE_150, mujoco.mjtGridPos.mjGRID_TOPLEFT, text, "")
                )
        self.handle.sync()

    def close(self) -> None:
        self.handle.close()
        for t in self._threads:
            t.join(timeout=5.0)

    def __enter__(self) -> Viewer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def play(
    viewer: Viewer,
    states: np.ndarray,
    dt: float,
    markers_at=lambda state: (),
    text_at=lambda t: None,
    realtime: bool = True,
) -> int:
    """Show ``states (T, nstate)`` one per ``dt`` seconds; returns frames shown.

    Stops early when the user closes the window.
    """
    shown = 0
    for t, state in enumerate(states):
        if not viewer.running:
            break
        start = time.perf_counter()
        viewer.show(state, markers_at(state), text_at(t))
        shown += 1
        if realtime:
            time.sleep(max(0.0, dt - (time.perf_counter() - start)))
    return shown
