"""Frames from recorded states, video files, and the viewer under Xvfb."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from robometa.errors import RobometaError
from robometa.policies import GaussianMLPPolicy
from robometa.sampling import Sampler
from robometa.tasks import make_family
from robometa.viz.render import StateRenderer, caption
from robometa.viz.video import side_by_side, write_video


@pytest.fixture(scope="module")
def recorded():
    fam = make_family("cheetah-vel")
    tasks = fam.split_tasks("test", n=1)
    import torch

    torch.manual_seed(0)
    batch = Sampler(fam, device="cpu", seed=0).sample(
        GaussianMLPPolicy(17, 6), tasks, 1, horizon=12, record_states=True
    )
    return fam, tasks[0], batch.states[0, 0].numpy()


@pytest.mark.gl
def test_frames_from_states_change_and_replay_exactly(recorded):
    fam, task, states = recorded
    with StateRenderer(fam, task, 64, 48) as r:
        frames = r.frames(states)
        again = r.frame(states[5])
    assert frames.shape == (13, 48, 64, 3) and frames.dtype == np.uint8
    assert np.abs(np.diff(frames.astype(int), axis=0)).mean(axis=(1, 2, 3)).min() > 0
    np.testing.assert_array_equal(again, frames[5])  # same state, same picture


@pytest.mark.gl
def test_mp4_is_real_with_expected_frames(recorded, tmp_path):
    import imageio_ffmpeg

    fam, task, states = recorded
    with StateRenderer(fam, task, 64, 48) as r:
        frames = np.stack([caption(f, ["before"]) for f in r.frames(states)])
    both = side_by_side(frames, frames[:6])
    path = write_video(tmp_path / "clip.mp4", both, fps=20)
    assert path.read_bytes()[4:8] == b"ftyp"  # an MP4 container
    frames_iter = imageio_ffmpeg.read_frames(str(path))
    meta = next(frames_iter)
    w, h = meta["size"]
    read = np.stack([np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in frames_iter])
    assert read.shape == (13, 48, 128, 3)
    assert np.abs(np.diff(read.astype(int), axis=0)).mean(axis=(1, 2, 3)).min() > 0
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no partial file left


@pytest.mark.gl
def test_gif_and_bad_suffix(recorded, tmp_path):
    fam, task, states = recorded
    with StateRenderer(fam, task, 32, 24) as r:
        frames = r.frames(states[:4])
    gif = write_video(tmp_path / "clip.gif", frames, fps=10)
    assert gif.read_bytes()[:6] in (b"GIF89a", b"GIF87a")
    with pytest.raises(RobometaError, match=r"valid suffixes: \.mp4, \.gif"):
        write_video(tmp_path / "clip.avi", frames, fps=10)


def test_viewer_needs_a_display(monkeypatch):
    from robometa.viz.viewer import require_display

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    if sys.platform.startswith("linux"):
        with pytest.raises(RobometaError, match="xvfb-run"):
            require_display()


@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="needs Xvfb (installed by .ci/run)")
def test_human_render_mode_under_xvfb():
    code = (
        "import robometa, gymnasium as gym, numpy as np\n"
        "env = gym.make('robometa/CheetahVel-v0', render_mode='human')\n"
        "env.reset(seed=0)\n"
        "for _ in range(5): env.step(np.zeros(6))\n"
        "env.close(); print('viewer-ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "DISPLAY")}
    proc = subprocess.run(
        ["xvfb-run", "-a", sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "viewer-ok" in proc.stdout
