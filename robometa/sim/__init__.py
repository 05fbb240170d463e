"""Batched MuJoCo simulation."""

from robometa.sim.batch_sim import BatchSim, StepResult, rollout_pool

__all__ = ["BatchSim", "StepResult", "rollout_pool"]
