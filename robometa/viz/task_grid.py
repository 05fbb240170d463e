"""A picture of a family's task distribution: sampled tasks rendered offscreen in a grid.

Each cell shows one task's model at the start of an episode (optionally after a few
zero-action steps so that the robot settles on the ground), seen from a free camera
that looks slightly ahead of the robot, with the task's markers and a caption of its
fields. Terrains, goals and crippled limbs (painted red) are visible at a glance.
"""

from __future__ import annotations

from collections.abc import Sequence

import mujoco
import numpy as np

from robometa.errors import RobometaError
from robometa.sim.batch_sim import BatchSim
from robometa.tasks.base import Task, TaskFamily
from robometa.viz.render import add_markers, caption

_FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS


def task_caption(task: Task, max_lines: int = 3) -> list[str]:
    """Short text lines ``name=value`` for a task; floats to two decimals."""
    parts = []
    for key, value in task.to_dict().items():
        if isinstance(value, float):
            value = f"{value:.2f}"
        elif isinstance(value, list):
            value = ",".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in value) or "-"
        parts.append(f"{key.replace('_scale', '')}={value}")
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + len(part) < 34:
            lines[-1] += "  " + part
        else:
            lines.append(part)
    return lines[:max_lines]


OVERVIEW_CAMERA = "front"  # a fixed camera our own scenes (the arm's table) declare for an overview


def _camera(
    model: mujoco.MjModel, data: mujoco.MjData, body: int, distance: float | None
) -> mujoco.MjvCamera | int:
    overview = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, OVERVIEW_CAMERA)
    if overview >= 0 and distance is None:
        return overview  # table-top scenes: the scene's own framing, as in the README images
    cam = mujoco.MjvCamera()
    cam.type = mujoco.mjtCamera.mjCAMERA_FREE
    # Look a little ahead (+x, where the robots run). Planar robots (no free joint)
    # are seen from the side, where their terrain's profile shows; others from
    # behind-left and above.
    planar = model.njnt == 0 or model.jnt_type[0] != mujoco.mjtJoint.mjJNT_FREE
    cam.lookat[:] = data.xpos[body] + np.array([1.5, 0.0, -0.3])
    cam.distance = distance if distance is not None else (6.0 if planar else 5.5)
    cam.azimuth = 90.0 if planar else 60.0
    cam.elevation = -20.0 if planar else -25.0
    return cam


def render_task_grid(
    family: TaskFamily,
    tasks: Sequence[Task],
    columns: int = 4,
    width: int = 320,
    height: int = 240,
    seed: int = 0,
    settle_steps: int = 10,
    distance: float | None = None,
    captions: bool = True,
) -> np.ndarray:
    """Render ``tasks`` of ``family`` into one image ``(rows*height, columns*width, 3)`` uint8.

    Each task starts from its own reset state (seeded by ``seed``) and takes
    ``settle_steps`` zero-action control steps first. ``distance`` is the camera's
    distance to the robot in metres (default: 6 for planar robots, 5.5 for others).
    """
    if not tasks:
        raise RobometaError("render_task_grid needs at least one task")
    if columns < 1 or width < 16 or height < 16:
        raise RobometaError(f"columns must be >= 1 and cells >= 16 px, got {columns} and {width}x{height}")
    if settle_steps < 0:
        raise RobometaError(f"settle_steps must be >= 0, got {settle_steps}")
    sim = BatchSim(family, tasks, seeds=seed, nthread=0)
    sim.reset()
    zeros = np.zeros((len(tasks), sim.layout.nu))
    for _ in range(settle_steps):
        sim.step(zeros)
    rows = -(-len(tasks) // columns)
    grid = np.full((rows * height, columns * width, 3), 255, dtype=np.uint8)
    for i, task in enumerate(tasks):
        model, data = sim.data_for(i)
        body = 1 if model.nbody > 1 else 0  # the robot's root body
        with mujoco.Renderer(model, height, width) as renderer:
            renderer.update_scene(data, camera=_camera(model, data, body, distance))
            add_markers(renderer.scene, family.markers(task, sim.state[i]))
            frame = renderer.render().copy()
        if captions:
            frame = caption(frame, task_caption(task))
        r, c = divmod(i, columns)
        grid[r * height : (r + 1) * height, c * width : (c + 1) * width] = frame
    return grid


def write_png(image: np.ndarray, path: str) -> None:
    """Write an ``(H, W, 3)`` uint8 image as PNG (needs Pillow, which imageio brings)."""
    try:
        from PIL import Image
    except ImportError:
        raise RobometaError("writing PNG needs Pillow: pip install 'robometa[video]'") from None
    try:
        Image.fromarray(image).save(path, format="PNG")
    except OSError as exc:
        raise RobometaError(f"cannot write {path}: {exc}") from None
