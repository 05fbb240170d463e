"""Shared fixtures: CPU-only, deterministic, no RNG state leaking between tests."""

from __future__ import annotations

import os

# Offscreen rendering on headless machines (must precede the first mujoco import).
if not os.environ.get("DISPLAY"):
    os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import pytest
import torch

import robometa  # noqa: F401  (registers the gymnasium ids)


@pytest.fixture(autouse=True)
def _isolate_rng():
    """Tests must pass their own seeds; restore global RNG state after each one."""
    np_state = np.random.get_state()
    torch_state = torch.random.get_rng_state()
    threads = torch.get_num_threads()
    yield
    np.random.set_state(np_state)
    torch.random.set_rng_state(torch_state)
    torch.set_num_threads(threads)
