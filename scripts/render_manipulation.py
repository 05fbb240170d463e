"""Render sampled manipulation tasks (objects and goals) into one PNG grid.

Usage::

    python scripts/render_manipulation.py --out docs/images/manipulation_tasks.png \
        --expert-out docs/images/manipulation_expert.png

Each row is one family (reach, push, pick-place); the first columns show train
tasks, the last ones held-out test tasks (capsules and ellipsoids, heavier, goals
in the held-out bands). Goals are the translucent green spheres, whose radius is
the success threshold. ``--expert-out`` also writes a filmstrip of the scripted
experts solving a held-out push and pick-place task. Needs offscreen rendering (MUJOCO_GL=egl or osmesa).
"""

from __future__ import annotations

import argparse

import numpy as np

from robometa.sim.batch_sim import BatchSim
from robometa.tasks import make_family
from robometa.tasks.manipulation.experts import expert_action
from robometa.viz.render import StateRenderer, add_markers, caption
from robometa.viz.task_grid import write_png


def render_row(family_name: str, n_train: int, n_test: int, width: int, height: int, seed: int) -> np.ndarray:
    import mujoco  # after robometa, which picks the offscreen GL backend on headless machines

    family = make_family(family_name)
    tasks = family.split_tasks("train", seed)[:n_train] + family.split_tasks("test", seed)[:n_test]
    splits = ["train"] * n_train + ["test"] * n_test
    sim = BatchSim(family, tasks, seeds=seed, nthread=0)
    sim.reset()
    frames = []
    for i, (task, split) in enumerate(zip(tasks, splits)):
        model, data = sim.data_for(i)
        with mujoco.Renderer(model, height, width) as renderer:
            renderer.update_scene(data, camera="front")
            add_markers(renderer.scene, family.markers(task, sim.state[i]))
            frame = renderer.render().copy()
        lines = [f"{family.name} ({split})", f"{task.shape}  {task.mass:.2f} kg  mu={task.friction:.2f}"]
        frames.append(caption(frame, lines))
    return np.concatenate(frames, axis=1)


def render_expert_strip(
    family_name: str, steps: tuple[int, ...], width: int, height: int, seed: int
) -> np.ndarray:
    """Frames of the scripted expert on the first held-out task, side by side."""
    family = make_family(family_name)
    task = family.split_tasks("test", seed)[0]
    sim = BatchSim(family, [task], seeds=seed, nthread=0)
    sim.reset()
    states = [sim.state[0].copy()]
    for _ in range(max(steps)):
        sim.step(expert_action(family, sim.state, sim.params))
        states.append(sim.state[0].copy())
    frames = []
    with StateRenderer(family, task, width, height, camera="front") as renderer:
        for t in steps:
            label = [f"{family.name} expert (test: {task.shape}, {task.mass:.2f} kg)", f"step {t}"]
            frames.append(caption(renderer.frame(states[t]), label))
    return np.concatenate(frames, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images/manipulation_tasks.png", help="PNG file to write")
    parser.add_argument("--expert-out", help="also write a filmstrip of the experts to this PNG")
    parser.add_argument("--train", type=int, default=2, help="train tasks per family")
    parser.add_argument("--test", type=int, default=2, help="test tasks per family")
    parser.add_argument("--width", type=int, default=400)
    parser.add_argument("--height", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0, help="split seed and reset seed")
    args = parser.parse_args()
    # A different split seed per row, so each row shows other objects.
    rows = [
        render_row(name, args.train, args.test, args.width, args.height, args.seed + row)
        for row, name in enumerate(("reach", "push", "pick-place"))
    ]
    write_png(np.concatenate(rows, axis=0), args.out)
    print(f"wrote {args.out}")
    if args.expert_out:
        steps = (0, 40, 80, 199)
        strips = [
            render_expert_strip(n, steps, args.width, args.height, args.seed) for n in ("push", "pick-place")
        ]
        write_png(np.concatenate(strips, axis=0), args.expert_out)
        print(f"wrote {args.expert_out}")


if __name__ == "__main__":
    main()
