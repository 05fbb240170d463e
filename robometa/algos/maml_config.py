"""Settings of the MAML learners (Finn et al., 2017) with a TRPO or PPO outer loop."""

from __future__ import annotations

from dataclasses import dataclass

PRECISIONS = ("float32", "bfloat16", "auto")
"""Values of the ``*_precision`` settings (see ``MAMLConfig.matmul_precision``)."""
INNER_OBJECTIVES = ("vpg", "lvc")
"""Values of ``MAMLConfig.inner_objective`` (see ``robometa.algos.maml.inner_loss``)."""


@dataclass(frozen=True)
class MAMLConfig:
    """What MAML-TRPO and MAML-PPO share: sampling, inner loop, policy, advantages."""

    meta_batch_size: int = 20
    """Tasks per meta-iteration (the MAML paper: 40)."""
    episodes_per_task: int = 10
    """Episodes per task for every adaptation step and for the post-update batch (paper: 20)."""
    horizon: int | None = None
    """Steps per episode; ``null`` uses the family's horizon (cheetah: 200)."""
    inner_steps: int = 1
    """K: policy-gradient steps of the inner loop during training (0: no meta-learning,
    plain multi-task training of one policy; the multi-task baseline of evaluation)."""
    inner_lr: float = 0.1
    """alpha: inner-loop step size (paper: 0.1)."""
    inner_objective: str = "vpg"
    """The inner loss the meta-gradient differentiates: vpg (MAML's ``-log pi * A``)
    | lvc (ProMP's low-variance curvature objective, Rothfuss et al., 2019). The
    inner step is bit-identical; under lvc the second-order meta-gradient also
    credits the pre-update policy for the episodes it samples (``inner_loss``)."""
    normalize_inner_advantages: bool = True
    """Standardize the inner loop's advantages per task (zero mean, unit standard
    deviation over the task's valid steps, as the MAML code does). ``false`` adapts on
    the raw GAE advantages, so the inner step's length scales with the reward's
    differences: with a reward quadratic in a distance, one step moves further when
    the goal is further. The outer loop's advantages are standardized either way."""
    learn_inner_lr: bool = False
    """Learn one inner step size per policy weight (Meta-SGD, Li et al., 2017)."""
    first_order: bool = False
    """Drop the second-order terms of the meta-gradient (first-order MAML)."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 1.0
    """GAE lambda (1.0: Monte-Carlo returns minus the baseline, as in the MAML code)."""
    hidden: tuple[int, ...] = (100, 100)
    """Hidden layer widths of the Gaussian MLP policy (paper: 2 x 100)."""
    activation: str = "tanh"
    """Hidden activation: tanh | relu | elu (the MAML paper used relu; tanh is the
    default the README's results were measured with)."""
    init_std: float = 1.0
    """Initial action standard deviation."""
    normalize_obs: bool = False
    """Standardize the policy's observations by running statistics of the training
    batches (every batch of an iteration, merged after its outer update, so that the
    policy is one function throughout an iteration's sampling, inner and outer loop;
    the identity before the first update). The statistics live in the policy's
    buffers: checkpoints, evaluation, replay and the multi-task baseline use them."""
    compile_learner: bool = False
    """Compile the learner's passes with ``torch.compile`` on a CPU: the meta-objective
    (inner steps + surrogate, and its backward, the meta-gradient; the line search's
    and PPO's evaluations) and the gradients behind the Fisher-vector products, so
    that their elementwise work is fused. Needs a C++ compiler (else the learner runs
    uncompiled and the log says why); ignored on a GPU. Same maths as uncompiled up
    to float32 rounding (meta-gradient and Fisher-vector products within 1e-5
    relative, ``tests/test_maml_fast_paths.py``). The first iterations pay the
    compilation: about 1-2 min per graph on a 2-core CPU, seconds once inductor's
    on-disk cache holds it. On a paper-size meta-batch (2-core Xeon, one thread, CPU
    seconds): meta-gradient 1.29 -> 0.95, natural step 2.0 -> 1.4, two line-search
    evaluations 0.75 -> 0.53."""
    matmul_precision: str = "float32"
    """Precision of the matrix products of the meta-gradient, the line search and
    PPO's evaluation: float32 | bfloat16 (inputs rounded to bfloat16, float32
    accumulation) | auto (bfloat16 on a CPU with AMX tiles, where products of the
    paper's sizes run 3.7x faster; float32 elsewhere). Pays with ``compile_learner``,
    which fuses the casts (paper-size meta-gradient 0.95 -> 0.54 CPU seconds);
    uncompiled, the casts cost what the products save. bfloat16 changes the
    numerics: the meta-gradient is within ~1% of float32 (0.55% relative at the
    paper's batch; ``tests/test_maml_fast_paths.py`` holds 3%)."""

    def variant(self) -> str | None:
        """``meta-sgd`` when the inner step sizes are learned, ``lvc`` under the LVC
        inner objective, both joined by ``-`` (``maml-trpo-meta-sgd`` in reports,
        apart from plain MAML's runs)."""
        parts = [("meta-sgd", self.learn_inner_lr), ("lvc", self.inner_objective == "lvc")]
        return "-".join(name for name, on in parts if on) or None

    def validate(self) -> list[str]:
        """Problems with the values, one line each (empty when fine)."""
        out = []
        if self.inner_objective not in INNER_OBJECTIVES:
            out.append(
                f"unknown inner_objective {self.inner_objective!r}; valid: {', '.join(INNER_OBJECTIVES)}"
            )
        if self.matmul_precision not in PRECISIONS:
            out.append(f"unknown matmul_precision {self.matmul_precision!r}; valid: {', '.join(PRECISIONS)}")
        for name in ("meta_batch_size", "episodes_per_task"):
            if getattr(self, name) < 1:
                out.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.inner_steps < 0:
            out.append(f"inner_steps must be >= 0, got {self.inner_steps}")
        if self.inner_steps == 0 and self.learn_inner_lr:
            out.append("learn_inner_lr needs inner_steps >= 1 (with 0 inner steps no step size is used)")
        if self.horizon is not None and self.horizon < 1:
            out.append(f"horizon must be >= 1 or null, got {self.horizon}")
        return out + policy_gradient_problems(self)


def policy_gradient_problems(cfg) -> list[str]:
    """Problems with the settings every Gaussian-MLP policy-gradient learner shares
    (``gamma``, ``gae_lambda``, ``init_std``, ``hidden``, ``activation``), one line each."""
    out = []
    if not 0.0 <= cfg.gamma <= 1.0:
        out.append(f"gamma must be in [0, 1], got {cfg.gamma}")
    if not 0.0 <= cfg.gae_lambda <= 1.0:
        out.append(f"gae_lambda must be in [0, 1], got {cfg.gae_lambda}")
    if cfg.init_std <= 0:
        out.append(f"init_std must be > 0, got {cfg.init_std}")
    if not cfg.hidden or min(cfg.hidden) < 1:
        out.append(f"hidden must be a non-empty list of positive widths, got {list(cfg.hidden)}")
    if cfg.activation not in ("tanh", "relu", "elu"):
        out.append(f"unknown activation {cfg.activation!r}; valid: tanh, relu, elu")
    return out


@dataclass(frozen=True)
class MAMLTRPOConfig(MAMLConfig):
    """MAML with a TRPO meta-update; defaults are those of rllab's optimizer in the MAML code."""

    max_kl: float = 0.01
    """Trust-region size: mean KL between adapted policies before and after the update (paper: 0.01)."""
    cg_iters: int = 10
    """Conjugate-gradient iterations for the natural-gradient direction."""
    cg_damping: float = 1e-5
    """Damping added to the Fisher-vector product."""
    ls_backtrack_ratio: float = 0.8
    """Line search: shrink factor per rejected candidate."""
    ls_max_backtracks: int = 15
    """Line search: candidates tried before giving up on the step."""
    fisher_subsample: float = 1.0
    """Fraction of the meta-batch's tasks whose KL defines the Fisher in the CG solve
    (1.0: all). The gradient and the line search always use every task; a subsample
    makes each Fisher-vector product cheaper (rllab's optimizer has the same knob)."""
    fisher_precision: str = "float32"
    """Precision of the matrix products of the Fisher-vector products: float32 |
    bfloat16 | auto (as ``matmul_precision``). The Fisher only sets the metric of the
    step (the meta-gradient and the line search's KL check are computed apart), so
    its rounding turns the step slightly, never past ``max_kl``: products within
    0.3% of float32, the conjugate-gradient step within 0.1% (cosine 0.9999997) at
    the paper's batch. Paper-size natural step, compiled: 1.4 -> 0.8 CPU seconds."""

    def validate(self) -> list[str]:
        out = super().validate()
        if self.fisher_precision not in PRECISIONS:
            out.append(f"unknown fisher_precision {self.fisher_precision!r}; valid: {', '.join(PRECISIONS)}")
        if self.max_kl <= 0:
            out.append(f"max_kl must be > 0, got {self.max_kl}")
        if self.cg_iters < 1 or self.ls_max_backtracks < 1:
            out.append("cg_iters and ls_max_backtracks must be >= 1")
        if not 0.0 < self.ls_backtrack_ratio < 1.0:
            out.append(f"ls_backtrack_ratio must be in (0, 1), got {self.ls_backtrack_ratio}")
        if not 0.0 < self.fisher_subsample <= 1.0:
            out.append(f"fisher_subsample must be in (0, 1], got {self.fisher_subsample}")
        if self.cg_damping < 0:
            out.append(f"cg_damping must be >= 0, got {self.cg_damping}")
        return out


@dataclass(frozen=True)
class MAMLPPOConfig(MAMLConfig):
    """MAML with a clipped-surrogate (PPO) meta-update and ProMP's outer-loop settings
    (Rothfuss et al., 2019); the inner loss is MAML's unless ``inner_objective`` is ``lvc``."""

    clip_eps: float = 0.3
    """Likelihood-ratio clip range of the outer objective (ProMP: 0.3)."""
    ppo_epochs: int = 5
    """Adam steps on the same post-adaptation batch per meta-iteration (ProMP: 5)."""
    outer_lr: float = 1e-3
    """Adam learning rate of the meta-update (ProMP: 1e-3)."""

    def validate(self) -> list[str]:
        out = super().validate()
        if not 0.0 < self.clip_eps < 1.0:
            out.append(f"clip_eps must be in (0, 1), got {self.clip_eps}")
        if self.ppo_epochs < 1:
            out.append(f"ppo_epochs must be >= 1, got {self.ppo_epochs}")
        if self.outer_lr <= 0:
            out.append(f"outer_lr must be > 0, got {self.outer_lr}")
        return out
