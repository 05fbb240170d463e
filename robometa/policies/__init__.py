"""Policies (torch): no MuJoCo in here."""

from robometa.policies.gaussian_mlp import BoundActor, GaussianMLPPolicy

__all__ = ["BoundActor", "GaussianMLPPolicy"]
