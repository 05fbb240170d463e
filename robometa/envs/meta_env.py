"""The gymnasium facade: one env of a task family, with the meta-RL task API.

``MetaEnv`` is a single-env view over a :class:`robometa.sim.BatchSim` of size one,
so SB3, gymnasium's checkers, the viewer and users' own code see exactly the
dynamics, observations and rewards that batched training sees. Following the
vocabulary of garage, learn2learn and Meta-World, it has ``sample_tasks(n)``,
``set_task(task)`` and ``get_task()``. Through ``gymnasium.make`` these live on
``env.unwrapped``.

Reward terms are returned in ``info`` as ``reward_<term>`` (gymnasium's MuJoCo
convention), together with the family's diagnostics (``x_velocity`` ...),
``instability`` (MuJoCo blew up and reset the simulation during the step; the step
then terminates with reward 0) and, for families with a success criterion,
``success``.

Seeding: ``reset(seed=s)`` gives one initial state for a task whatever set the task
(the constructor, :meth:`MetaEnv.set_task` or ``options={"task": ...}``), because
only ``reset`` and ``sample_tasks`` draw from the env's random stream.

The env deep-copies and pickles: the copy continues exactly where the original was,
with its own physics state and random stream (renderers and viewers are not copied).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from robometa.errors import RobometaError, choice_error
from robometa.sim.batch_sim import BatchSim
from robometa.tasks import Task, TaskFamily, make_family

RENDER_MODES = ("human", "rgb_array")


class MetaEnv(gym.Env):
    """A single environment of a task family.

    Args:
        family: family name (``"cheetah-vel"``), gymnasium id or a ``TaskFamily``.
        task: the initial task (a ``Task`` or its dict); defaults to the first task
            of the family's train split.
        render_mode: ``"rgb_array"`` (offscreen frames) or ``"human"`` (viewer).
        width, height: frame size for ``rgb_array``.
        camera: camera name for rendering (the family's tracking camera by default).
        **family_kwargs: options of the family (reward weights, noise scale ...).
    """

    metadata = {"render_modes": list(RENDER_MODES), "render_fps": 20}

    def __init__(
        self,
        family: str | TaskFamily = "cheetah-vel",
        task: Task | Mapping[str, Any] | None = None,
        render_mode: str | None = None,
        width: int = 480,
        height: int = 480,
        camera: str | None = None,
        **family_kwargs: Any,
    ):
        self.family = family if isinstance(family, TaskFamily) else make_family(family, **family_kwargs)
        if render_mode is not None and render_mode not in RENDER_MODES:
            raise choice_error("render_mode", render_mode, RENDER_MODES)
        if render_mode == "human":
            from robometa.viz.viewer import require_display

            require_display()
        self.render_mode = render_mode
        lay = self.family.layout
        self.metadata = {**self.metadata, "render_fps": int(round(1.0 / lay.dt))}
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.family.obs_dim,), np.float64)
        default = self.family.default_task()
        rng = self.family.model(default).actuator_ctrlrange
        self.action_space = gym.spaces.Box(rng[:, 0].astype(np.float32), rng[:, 1].astype(np.float32))
        self._width, self._height, self._camera = width, height, camera
        self._renderer: mujoco.Renderer | None = None
        self._viewer = None
        self._sim: BatchSim | None = None
        self.set_task(default if task is None else task)

    # ------------------------------------------------------------ task API
    def sample_tasks(self, n: int, split: str = "train") -> list[Task]:
        """Draw ``n`` tasks of the split's region with this env's random stream."""
        return self.family.sample_tasks(n, self.np_random, split)

    def set_task(self, task: Task | Mapping[str, Any]) -> None:
        """Switch to ``task`` (takes effect now; call ``reset`` to start an episode).

        Until then the env holds the task model's reference state (``qpos0``, at
        rest); no random number is drawn, so the next ``reset(seed=s)`` is the same
        as on an env built with this task.
        """
        if isinstance(task, Mapping):
            task = self.family.task_from_dict(task)
        if not isinstance(task, self.family.task_cls):
            raise RobometaError(
                f"{self.family.name} expects a {self.family.task_cls.__name__} or its dict, "
                f"got {type(task).__name__}"
            )
        self._task = task
        self._sim = BatchSim(self.family, [task], seeds=None, nthread=0)
        self._sim.rngs = [self.np_random]
        self._sim.reset_to_reference()
        self._close_renderer()

    def get_task(self) -> Task:
        return self._task

    # ------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options and "task" in options:
            self.set_task(options["task"])
        self._sim.rngs = [self.np_random]
        obs = self._sim.reset()[0]
        if self.render_mode == "human":
            self.render()
        return obs, {"task": self._task.to_dict()}

    def step(self, action):
        r = self._sim.step(np.asarray(action, dtype=np.float64)[None])
        info: dict[str, Any] = {f"reward_{k}": float(v[0]) for k, v in r.terms.items()}
        info.update({k: float(v[0]) for k, v in r.metrics.items()})
        info["instability"] = bool(r.unstable[0])
        if self.family.has_success:
            info["success"] = bool(r.success[0])
        if self.render_mode == "human":
            self.render()
        return r.obs[0], float(r.reward[0]), bool(r.terminated[0]), False, info

    @property
    def state(self) -> np.ndarray:
        """The full-physics state row ``(nstate,)`` (for recording and replay)."""
        return self._sim.state[0].copy()

    def set_state(self, state: np.ndarray) -> np.ndarray:
        """Write a recorded full-physics state; returns the observation there."""
        return self._sim.set_state(np.asarray(state, dtype=np.float64)[None])[0]

    # ------------------------------------------------------------ copying
    def __getstate__(self) -> dict[str, Any]:
        # Renderers and viewers hold GL contexts and windows; a copy opens its own.
        state = self.__dict__.copy()
        state["_renderer"] = None
        state["_viewer"] = None
        return state

    # ------------------------------------------------------------ rendering
    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='rgb_array' or 'human'")
            return None
        model, data = self._sim.data_for(0)
        if self.render_mode == "rgb_array":
            from robometa.viz.render import add_markers

            if self._renderer is None:
                self._renderer = mujoco.Renderer(model, self._height, self._width)
            self._renderer.update_scene(data, camera=self._camera_id(model))
            add_markers(self._renderer.scene, self.family.markers(self._task, self._sim.state[0]))
            return self._renderer.render()
        return self._render_human(model, data)

    def _camera_id(self, model: mujoco.MjModel) -> int | str:
        if self._camera is not None:
            if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, self._camera) < 0:
                names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(model.ncam)]
                raise choice_error("camera", self._camera, names)
            return self._camera
        return 0 if model.ncam > 0 else -1

    def _render_human(self, model, data):
        from robometa.viz.viewer import Viewer

        if self._viewer is None:
            self._viewer = Viewer(model, show_ui=True)
        state = self._sim.state[0]
        self._viewer.show(state, self.family.markers(self._task, state))
        return None

    def _close_renderer(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        if self._viewer is not None:
            self._viewer.close()
            self._viewer = None

    def close(self) -> None:
        self._close_renderer()
