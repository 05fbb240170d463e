"""Settings of Reptile for meta-RL (Nichol, Achiam & Schulman, 2018, "On First-Order
Meta-Learning Algorithms", algorithm 2, with policy-gradient inner steps)."""

from __future__ import annotations

from dataclasses import dataclass

from robometa.algos.maml_config import policy_gradient_problems


@dataclass(frozen=True)
class ReptileConfig:
    """Sampling, inner loop (MAML's policy-gradient step, repeated), outer interpolation."""

    meta_batch_size: int = 20
    """Tasks per meta-iteration (n in the Reptile paper's batched algorithm 2)."""
    episodes_per_task: int = 10
    """Episodes per task for every inner step (fresh episodes each step)."""
    horizon: int | None = None
    """Steps per episode; ``null`` uses the family's horizon (cheetah: 200)."""
    inner_steps: int = 3
    """k: policy-gradient steps per task from theta, each on fresh episodes (>= 1;
    k = 1 is plain multi-task policy gradient: the paper's sec. 5 "joint training")."""
    inner_lr: float = 0.1
    """alpha: step size of every inner policy-gradient step (MAML's 0.1)."""
    outer_lr: float = 1.0
    """epsilon: outer step size, theta <- theta + epsilon * mean_i(theta_i - theta)
    (the paper's few-shot runs: 1.0, linearly annealed to 0)."""
    outer_lr_decay_iterations: int | None = None
    """Anneal epsilon linearly to 0 over this many meta-iterations, as the paper does
    (``null``: constant epsilon)."""
    outer_optimizer: str = "sgd"
    """``sgd``: the interpolation above; ``adam``: Adam at learning rate epsilon on the
    "gradient" theta - mean_i(theta_i) (the paper's sec. 3 remark)."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 1.0
    """GAE lambda (1.0: Monte-Carlo returns minus the linear baseline, as in MAML)."""
    hidden: tuple[int, ...] = (100, 100)
    """Hidden layer widths of the Gaussian MLP policy (MAML's 2 x 100)."""
    activation: str = "tanh"
    """Hidden activation: tanh | relu | elu."""
    init_std: float = 1.0
    """Initial action standard deviation."""
    normalize_obs: bool = False
    """Standardize the policy's observations by running statistics of the training
    batches, merged after each Reptile update (as ``MAMLConfig.normalize_obs``)."""

    def validate(self) -> list[str]:
        """Problems with the values, one line each (empty when fine)."""
        out = []
        for name in ("meta_batch_size", "episodes_per_task", "inner_steps"):
            if getattr(self, name) < 1:
                out.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.horizon is not None and self.horizon < 1:
            out.append(f"horizon must be >= 1 or null, got {self.horizon}")
        if self.inner_lr <= 0 or self.outer_lr <= 0:
            out.append(f"inner_lr and outer_lr must be > 0, got {self.inner_lr} and {self.outer_lr}")
        if self.outer_lr_decay_iterations is not None and self.outer_lr_decay_iterations < 1:
            out.append(
                f"outer_lr_decay_iterations must be >= 1 or null, got {self.outer_lr_decay_iterations}"
            )
        if self.outer_optimizer not in ("sgd", "adam"):
            out.append(f"unknown outer_optimizer {self.outer_optimizer!r}; valid: sgd, adam")
        return out + policy_gradient_problems(self)
