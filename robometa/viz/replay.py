"""``robometa replay``: adapt to one task, then show the policy before and after.

The learner adapts exactly as in evaluation; the physics states of one episode
before adaptation (step 0) and after it (step K) are recorded and then shown, in
the MuJoCo viewer or rendered offscreen to a video, with the task's goal drawn in
the scene and the return so far on screen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robometa.algos.base import Algorithm
from robometa.errors import RobometaError
from robometa.tags import experience
from robometa.tasks.base import Task, TaskFamily


@dataclass
class Recording:
    """One episode before and one after adaptation, as states and rewards."""

    family: TaskFamily
    task: Task
    labels: list[str]  # e.g. ["before adaptation", "after 3 adaptation steps"]
    states: list[np.ndarray]  # each (T+1, nstate)
    rewards: list[np.ndarray]  # each (T,)
    dt: float


def pick_task(family: TaskFamily, split: str, index: int, split_seed: int) -> Task:
    """Task ``index`` of the run's fixed split, with a clear error when out of range."""
    size = family.split_size(family.check_split(split))
    if not 0 <= index < size:
        raise RobometaError(
            f"--task {index} is out of range for the {split} split of {family.name}; valid: 0..{size - 1}"
        )
    return family.split_tasks(split, seed=split_seed)[index]


def _labels(x: str, steps: int) -> tuple[list[int], list[str]]:
    """The steps shown (0, and ``steps`` when it is not 0) and their captions."""
    if steps == 0:
        return [0], ["before adaptation"]
    return [0, steps], ["before adaptation", f"after {experience(x, steps)}"]


def record(learner: Algorithm, task: Task, steps: int, seed: int = 0) -> Recording:
    """Adapt ``learner`` to ``task`` (the adaptation protocol, evaluation seed ``seed``)
    and record its episode at step 0 and at step ``steps``."""
    if steps < 0:
        raise RobometaError(f"--adapt-steps must be >= 0, got {steps}")
    data = learner.adaptation_data([task], steps, seed=seed, record_states=True)
    picks, labels = _labels(data.x, steps)
    fam = learner.family
    return Recording(
        family=fam,
        task=task,
        labels=labels,
        states=[data.states[k, 0] for k in picks],  # (T+1, nstate) each
        rewards=[data.rewards[k, 0] for k in picks],  # (T,) each
        dt=fam.layout.dt,
    )


def from_evaluation(eval_dir: str | Path, index: int, steps: int | None = None) -> Recording:
    """The episodes ``robometa evaluate`` recorded for task ``index``: no re-adaptation.

    Shows step 0 and step ``steps`` (default: the last evaluated step) exactly as
    they were evaluated (first evaluation seed, first episode of the task).
    """
    import json

    from robometa.tasks import make_family

    eval_dir = Path(eval_dir)
    path = eval_dir / "states.npz"
    if not path.is_file():
        raise RobometaError(
            f"{str(eval_dir)!r} holds no recorded states ({path.name}); run robometa evaluate first"
        )
    data = np.load(path)
    # the evaluated run's family options (absent in evaluations from before they existed)
    options = json.loads(str(data["family_options"])) if "family_options" in data else {}
    family = make_family(str(data["family"]), **options)
    tasks = json.loads((eval_dir / "summary.json").read_text())["tasks"]
    states, rewards = data["states"], data["rewards"]
    last = states.shape[0] - 1
    if not 0 <= index < len(tasks):
        raise RobometaError(f"--task {index} is out of range for this evaluation; valid: 0..{len(tasks) - 1}")
    steps = last if steps is None else steps
    if not 0 <= steps <= last:
        raise RobometaError(f"--adapt-steps {steps} was not evaluated; valid: 0..{last}")
    picks, labels = _labels(str(data["x"]), steps)
    return Recording(
        family=family,
        task=family.task_from_dict(tasks[index]),
        labels=labels,
        states=[states[k, index] for k in picks],
        rewards=[rewards[k, index] for k in picks],
        dt=family.layout.dt,
    )


def success_so_far(rec: Recording, i: int) -> np.ndarray:
    """``(T+1,)`` bool: whether episode ``i`` has succeeded at any state up to each one
    (success means any step, as in evaluation); all False where the family has none."""
    from robometa.sim.batch_sim import BatchSim

    states = rec.states[i]
    if not rec.family.has_success:
        return np.zeros(len(states), dtype=bool)
    sim = BatchSim(rec.family, [rec.task], seeds=None, nthread=0)
    hit = np.zeros(len(states), dtype=bool)
    for t, state in enumerate(states):
        sim.set_state(state[None])
        hit[t] = bool(rec.family.success(sim.state, sim.sensordata, sim.params)[0])
    return np.logical_or.accumulate(hit)


def _captions(rec: Recording, i: int) -> list[list[str]]:
    from robometa.viz.task_grid import task_caption

    cum = np.concatenate([[0.0], np.cumsum(rec.rewards[i])])
    task = task_caption(rec.task, max_lines=4)
    if not rec.family.has_success:
        return [[f"{rec.labels[i]}   return so far {cum[t]:.1f}", *task] for t in range(len(rec.states[i]))]
    done = success_so_far(rec, i)
    return [
        [f"{rec.labels[i]}   return so far {cum[t]:.1f}   success: {'yes' if done[t] else 'not yet'}", *task]
        for t in range(len(rec.states[i]))
    ]


def write_replay_video(
    rec: Recording, path: str | Path, width: int = 480, height: int = 480, layout: str = "side"
) -> Path:
    """Render the recording offscreen to MP4/GIF: before and after side by side (or in sequence)."""
    from robometa.viz.video import write_video

    return write_video(path, replay_frames(rec, width, height, layout), fps=1.0 / rec.dt)


def replay_frames(rec: Recording, width: int = 480, height: int = 480, layout: str = "side") -> np.ndarray:
    """Captioned frames ``(T, H, W', 3)`` of the recording: before | after, or in sequence."""
    from robometa.viz.render import StateRenderer, caption
    from robometa.viz.video import concat, side_by_side

    clips = []
    with StateRenderer(rec.family, rec.task, width, height) as r:
        for i, states in enumerate(rec.states):
            caps = _captions(rec, i)
            clips.append(np.stack([caption(r.frame(s), caps[t]) for t, s in enumerate(states)]))
    return side_by_side(*clips) if layout == "side" else concat(clips)


def show_in_viewer(rec: Recording, realtime: bool = True, max_frames: int | None = None) -> int:
    """Play before, then after, in the interactive viewer; returns frames shown."""
    from robometa.viz.viewer import Viewer, play

    shown = 0
    with Viewer(rec.family.model(rec.task)) as viewer:
        for i, states in enumerate(rec.states):
            caps = _captions(rec, i)
            if max_frames is not None:
                states = states[:max_frames]
            shown += play(
                viewer,
                states,
                rec.dt,
                markers_at=lambda s: rec.family.markers(rec.task, s),
                text_at=lambda t, caps=caps: "\n".join(caps[t]),
                realtime=realtime,
            )
            if not viewer.running:
                break
    return shown
