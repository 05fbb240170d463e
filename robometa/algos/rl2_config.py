"""Settings of RL² (Duan et al., 2016): a recurrent policy trained with PPO over trials."""

from __future__ import annotations

from dataclasses import dataclass


def memory_variant(variant: str | None, memory: bool) -> str | None:
    """``variant`` with ``-no-memory`` appended when ``memory`` is off (``no-memory`` alone
    when there is no other variant)."""
    if memory:
        return variant
    return "no-memory" if variant is None else f"{variant}-no-memory"


@dataclass(frozen=True)
class RL2Config:
    """Trials, recurrent policy and PPO settings of the RL² learner."""

    meta_batch_size: int = 10
    """Tasks per meta-iteration."""
    trials_per_task: int = 2
    """Trials sampled per task and iteration (each on a fresh memory)."""
    episodes_per_trial: int = 2
    """K: consecutive episodes on one task that share the policy's memory."""
    horizon: int | None = None
    """Steps per episode; ``null`` uses the family's horizon (cheetah: 200)."""
    cell: str = "gru"
    """Recurrent cell: gru | lstm."""
    hidden: int = 64
    """Width of the recurrent state."""
    fused_bptt: bool = True
    """On a CPU, backpropagate through a GRU's trials with robometa's own backward pass
    (:mod:`robometa.policies.gru_bptt`: the module's forward, gates of all steps
    recomputed at once, 3 ops per step) instead of autograd's per-step graph: PPO
    updates ~1.8x faster at 64 units, ~1.3x at 256; gradients equal to float32
    rounding (~5e-7 relative). ``false``: autograd's. No effect with an LSTM (oneDNN's kernel), on a GPU (cuDNN's) or on
    learners without a GRU (SNAIL, the context learners)."""
    memory: bool = True
    """``false`` takes the memory away: the policy's state restarts at every step and
    its previous-action, previous-reward and done inputs read 0, so it acts on the
    current observation alone, and PPO's minibatches are of steps rather than whole
    trials. That is this learner's multi-task baseline in ``robometa evaluate``: the
    same policy, PPO settings, normalizers and experience, without memory, so it
    cannot adapt; what the learner scores above it is what its memory buys."""
    init_std: float = 1.0
    """Initial action standard deviation."""
    gamma: float = 0.99
    """Discount factor, applied across the episodes of a trial."""
    gae_lambda: float = 0.95
    """GAE lambda; advantages run across episode boundaries within a trial."""
    clip_eps: float = 0.2
    """PPO likelihood-ratio clip range."""
    ppo_epochs: int = 10
    """Passes over the iteration's trials."""
    minibatches: int = 4
    """Minibatches of whole trials per epoch (each one full backpropagation through its trials)."""
    lr: float = 3e-4
    """Adam learning rate."""
    value_coef: float = 0.5
    """Weight of the value loss."""
    entropy_coef: float = 0.0
    """Weight of the entropy bonus."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip per Adam step."""
    bootstrap_trial_end: bool = False
    """Treat the end of a trial (the horizon of its K-th episode) as a time limit:
    bootstrap the last step's target with the value of its own state instead of 0,
    so the value target does not depend on the time left in the trial (Pardo et al.,
    2018). Episodes that end by termination are never bootstrapped."""
    normalize_obs: bool = True
    """Normalize observations by running mean / std (statistics are checkpointed)."""
    normalize_reward: bool = True
    """Scale the reward input by the running std of per-step rewards, and the value
    targets by that of discounted trial returns (statistics are checkpointed)."""

    def variant(self) -> str | None:
        """What names this learner apart from RL² with the paper's GRU: the cell, when it
        is an LSTM (``rl2-lstm`` in reports), and ``no-memory`` without memory
        (``rl2-no-memory``, ``rl2-lstm-no-memory``)."""
        return memory_variant(None if self.cell == "gru" else self.cell, self.memory)

    def validate(self) -> list[str]:
        """Problems with the values, one line each (empty when fine)."""
        out = []
        for name in (
            "meta_batch_size",
            "trials_per_task",
            "episodes_per_trial",
            "hidden",
            "ppo_epochs",
            "minibatches",
        ):
            if getattr(self, name) < 1:
                out.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.horizon is not None and self.horizon < 1:
            out.append(f"horizon must be >= 1 or null, got {self.horizon}")
        if self.cell not in ("gru", "lstm"):
            out.append(f"unknown cell {self.cell!r}; valid: gru, lstm")
        if not 0.0 <= self.gamma <= 1.0:
            out.append(f"gamma must be in [0, 1], got {self.gamma}")
        if not 0.0 <= self.gae_lambda <= 1.0:
            out.append(f"gae_lambda must be in [0, 1], got {self.gae_lambda}")
        if not 0.0 < self.clip_eps < 1.0:
            out.append(f"clip_eps must be in (0, 1), got {self.clip_eps}")
        if self.minibatches > self.meta_batch_size * self.trials_per_task:
            out.append(
                f"minibatches ({self.minibatches}) must not exceed the trials per iteration "
                f"(meta_batch_size * trials_per_task = {self.meta_batch_size * self.trials_per_task})"
            )
        for name in ("lr", "init_std", "max_grad_norm"):
            if getattr(self, name) <= 0:
                out.append(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("value_coef", "entropy_coef"):
            if getattr(self, name) < 0:
                out.append(f"{name} must be >= 0, got {getattr(self, name)}")
        return out
