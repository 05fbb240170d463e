"""Settings of the context learners: RL²'s trials and PPO with a context-conditioned policy."""

from __future__ import annotations

from dataclasses import dataclass

from robometa.algos.rl2_config import RL2Config, memory_variant
from robometa.policies.context import AGGREGATORS


@dataclass(frozen=True)
class ContextConfig(RL2Config):
    """RL²'s settings (trials, PPO, normalizers), with a transition encoder, an aggregator
    and policy / value MLPs in place of the recurrent cell
    (:class:`robometa.policies.context.ContextPolicy`)."""

    cell: str = "gru"
    """Unused: RL²'s recurrent cell; the context learners have none, so it stays gru."""
    hidden: int = 64
    """Width of every hidden layer of the policy and value MLPs."""
    aggregator: str = "mean"
    """How the context's transition embeddings become the task embedding z: mean (the
    prototype, Snell et al., 2017) | attention (matching, soft attention from the
    observation, Vinyals et al., 2016) | pog (product of Gaussians with a unit Gaussian
    prior, PEARL, Rakelly et al., 2019)."""
    embedding: int = 8
    """Size of the task embedding z (PEARL's latent size is 5)."""
    encoder_hidden: int = 64
    """Width of every hidden layer of the transition encoder."""
    layers: int = 2
    """Hidden layers of each MLP: encoder, policy and value."""
    kl_weight: float = 0.1
    """pog only: weight of KL(posterior || N(0, I)), averaged over the trials' valid
    steps, in the loss (PEARL's kl_lambda = 0.1, Rakelly et al., 2019)."""

    def variant(self) -> str | None:
        """The aggregator: ``context-mean``, ``context-attention``, ``context-pog`` are
        three learners in reports (``context-mean-no-memory`` without memory)."""
        return memory_variant(self.aggregator, self.memory)

    def validate(self) -> list[str]:
        """Problems with the values, one line each (empty when fine)."""
        out = [p for p in super().validate() if not p.startswith("unknown cell")]
        if self.cell != "gru":
            out.append(f"cell is RL²'s recurrent cell; the context learners have none (got {self.cell!r})")
        if self.aggregator not in AGGREGATORS:
            out.append(f"unknown aggregator {self.aggregator!r}; valid: {', '.join(AGGREGATORS)}")
        for name in ("embedding", "encoder_hidden", "layers"):
            if getattr(self, name) < 1:
                out.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.kl_weight < 0:
            out.append(f"kl_weight must be >= 0, got {self.kl_weight}")
        return out
