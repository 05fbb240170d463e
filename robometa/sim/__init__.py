"""Batched simulation behind one seam: :class:`Simulator`, and its backends by name.

``"batch"`` is :class:`BatchSim` (MuJoCo, ``mujoco.rollout``); other backends join
with :func:`register_simulator`.
"""

from robometa.sim.batch_sim import BatchSim, rollout_pool
from robometa.sim.simulator import (
    SimSpec,
    Simulator,
    StepResult,
    action_size,
    check_backend,
    make_simulator,
    register_simulator,
    simulator_names,
    steps_in_two_phases,
)

register_simulator("batch", BatchSim, act_dim=lambda family: family.layout.nu, two_phase=True)

__all__ = [
    "BatchSim",
    "SimSpec",
    "Simulator",
    "StepResult",
    "action_size",
    "check_backend",
    "make_simulator",
    "register_simulator",
    "rollout_pool",
    "simulator_names",
    "steps_in_two_phases",
]
