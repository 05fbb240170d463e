"""What videos and pictures show a person: captions that fit the frame, success in the
replay caption, table-top scenes framed by their own camera."""

from __future__ import annotations

import mujoco
import numpy as np

from robometa.sim.batch_sim import BatchSim
from robometa.tasks import make_family
from robometa.tasks.manipulation.experts import expert_action
from robometa.viz.render import caption
from robometa.viz.replay import Recording, _captions, success_so_far
from robometa.viz.task_grid import _camera


def test_a_long_caption_line_wraps_inside_the_frame():
    frame = np.zeros((120, 160, 3), dtype=np.uint8)
    out = caption(frame, ["word " * 40 + "averyveryveryveryverylongwordwithoutanyspaces" * 2])
    band = out[:, :, 0] > 200  # white text pixels
    rows = np.flatnonzero(band.any(axis=1))
    assert rows.max() > 40  # it took several lines
    assert not band[:, -5:].any()  # nothing drawn in the last columns: no text ran off the edge


def _expert_recording(family_name: str, steps: int = 60) -> Recording:
    fam = make_family(family_name)
    task = fam.split_tasks("test", seed=0)[0]
    sim = BatchSim(fam, [task], seeds=0, nthread=0)
    sim.reset()
    states, rewards = [sim.state[0].copy()], []
    for _ in range(steps):
        r = sim.step(expert_action(fam, sim.state, sim.params))
        states.append(sim.state[0].copy())
        rewards.append(r.reward[0])
    return Recording(fam, task, ["expert"], [np.array(states)], [np.array(rewards)], fam.layout.dt)


def test_replay_caption_shows_success_from_the_first_successful_step_on():
    rec = _expert_recording("reach")
    done = success_so_far(rec, 0)
    first = int(np.argmax(done))
    assert 0 < first and done[first:].all() and not done[:first].any()
    caps = _captions(rec, 0)
    assert "success: not yet" in caps[0][0] and "success: yes" in caps[-1][0]
    assert any("mass=" in line for line in caps[0])  # the task, in whole lines


def test_table_top_scenes_use_their_overview_camera_and_robots_a_free_one():
    for name, fixed in (("push", True), ("cheetah-vel", False)):
        fam = make_family(name)
        model = fam.model(fam.default_task())
        data = mujoco.MjData(model)
        mujoco.mj_forward(model, data)
        cam = _camera(model, data, 1, None)
        if fixed:
            assert cam == mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "front")
        else:
            assert isinstance(cam, mujoco.MjvCamera)
