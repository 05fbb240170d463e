"""What the gymnasium-v5 locomotion robots share."""

from __future__ import annotations

import numpy as np

from robometa.tasks.base import StateLayout


def v5_initial_state(
    lay: StateLayout, qpos0: np.ndarray, rng: np.random.Generator, scale: float
) -> np.ndarray:
    """A full-physics state row drawn as gymnasium's v5 ``reset_model`` draws it.

    ``qpos = qpos0 + U(-scale, scale)`` then ``qvel = scale * N(0, 1)``, in that order
    from the same generator, so a seed gives the very state gymnasium gives (the
    HalfCheetah and Ant reset noise; an Ant quaternion is perturbed unnormalized
    there too, and MuJoCo normalizes it when stepping).
    """
    state = np.zeros(lay.nstate)
    state[lay.qpos] = qpos0 + rng.uniform(-scale, scale, size=lay.nq)
    state[lay.qvel] = scale * rng.standard_normal(lay.nv)
    return state
