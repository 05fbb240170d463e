"""Offscreen frames from recorded physics states, with goal markers and captions.

Replay renders from recorded full-physics states (not from pixels stored during
evaluation): the frames show exactly what was evaluated, at any size or camera.
"""

from __future__ import annotations

from collections.abc import Sequence

import mujoco
import numpy as np

from robometa.tasks.base import Marker, Task, TaskFamily

_FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS


def add_markers(scene: mujoco.MjvScene, markers: Sequence[Marker]) -> None:
    """Append the markers as decorative geoms to a scene (viewer or renderer)."""
    for mk in markers:
        if scene.ngeom >= scene.maxgeom:
            return
        geom = scene.geoms[scene.ngeom]
        rgba = np.asarray(mk.rgba, dtype=np.float32)
        if mk.kind == "arrow":
            mujoco.mjv_initGeom(
                geom, mujoco.mjtGeom.mjGEOM_ARROW, np.zeros(3), np.zeros(3), np.eye(3).ravel(), rgba
            )
            mujoco.mjv_connector(
                geom,
                mujoco.mjtGeom.mjGEOM_ARROW,
                float(mk.size[0]),
                np.asarray(mk.pos, float),
                np.asarray(mk.to, float),
            )
        else:
            kind = {"sphere": mujoco.mjtGeom.mjGEOM_SPHERE, "box": mujoco.mjtGeom.mjGEOM_BOX}[mk.kind]
            size = np.zeros(3)
            size[: len(mk.size)] = mk.size
            if mk.kind == "sphere":
                size[:] = mk.size[0]
            mujoco.mjv_initGeom(geom, kind, size, np.asarray(mk.pos, float), np.eye(3).ravel(), rgba)
        scene.ngeom += 1


def caption(frame: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """Return a copy of ``frame (H, W, 3) uint8`` with text lines in a dark band on top.

    A line wider than the frame is wrapped at spaces (or cut where it has none), so
    no text runs off the edge.
    """
    from PIL import Image, ImageDraw, ImageFont

    img = Image.fromarray(frame)
    draw = ImageDraw.Draw(img, "RGBA")
    size = max(10, frame.shape[0] // 28)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size bitmap font
        font = ImageFont.load_default()
    lines = [
        part
        for line in lines
        for part in _wrap(line, lambda t: draw.textlength(t, font=font), frame.shape[1] - 12)
    ]
    band = (size + 4) * len(lines) + 6
    draw.rectangle([0, 0, frame.shape[1], band], fill=(0, 0, 0, 150))
    for i, line in enumerate(lines):
        draw.text((6, 4 + i * (size + 4)), line, fill=(255, 255, 255, 255), font=font)
    return np.asarray(img)


def _wrap(line: str, width_of, max_width: float) -> list[str]:
    """Split ``line`` into pieces no wider than ``max_width`` (as measured by ``width_of``)."""
    out: list[str] = []
    current = ""
    for word in line.split(" "):
        candidate = f"{current} {word}" if current else word
        if width_of(candidate) <= max_width:
            current = candidate
            continue
        if current:
            out.append(current)
        while width_of(word) > max_width and len(word) > 1:  # a word wider than the frame
            cut = max(1, int(len(word) * max_width / width_of(word)))
            out.append(word[:cut])
            word = word[cut:]
        current = word
    out.append(current)
    return out


class StateRenderer:
    """Renders full-physics state rows of one task's model, with its markers.

    Args:
        family, task: what is shown (the task's model and goal markers).
        width, height: frame size in pixels.
        camera: camera name; default: the model's first camera (the tracking one
            for the cheetah and ant), else MuJoCo's free camera.
    """

    def __init__(
        self, family: TaskFamily, task: Task, width: int = 480, height: int = 480, camera: str | None = None
    ):
        self.family, self.task = family, task
        self.model = family.model(task)
        self.data = mujoco.MjData(self.model)
        self.renderer = mujoco.Renderer(self.model, height, width)
        self.camera: int | str = camera if camera is not None else (0 if self.model.ncam > 0 else -1)

    def frame(self, state: np.ndarray) -> np.ndarray:
        """``state: (nstate,)`` -> ``(H, W, 3)`` uint8."""
        mujoco.mj_setState(self.model, self.data, np.asarray(state, dtype=np.float64), _FULL)
        mujoco.mj_forward(self.model, self.data)
        self.renderer.update_scene(self.data, camera=self.camera)
        add_markers(self.renderer.scene, self.family.markers(self.task, state))
        return self.renderer.render().copy()

    def frames(self, states: np.ndarray) -> np.ndarray:
        """``states: (T, nstate)`` -> ``(T, H, W, 3)`` uint8."""
        return np.stack([self.frame(s) for s in states])

    def close(self) -> None:
        self.renderer.close()

    def __enter__(self) -> StateRenderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
