"""Settings of SNAIL (Mishra et al., 2018): RL²'s trials and PPO with an attentive policy."""

from __future__ import annotations

from dataclasses import dataclass

from robometa.algos.rl2_config import RL2Config
from robometa.policies.snail import BLOCKS


@dataclass(frozen=True)
class SNAILConfig(RL2Config):
    """RL²'s settings (trials, PPO, normalizers) plus the shape of the SNAIL policy.

    The TC blocks cover the training trial, ``episodes_per_trial * horizon`` steps
    (:class:`robometa.policies.snail.SNAILPolicy`).
    """

    cell: str = "gru"
    """RL²'s recurrent cell; SNAIL has none, so only the default is accepted."""
    hidden: int = 32
    """Width of the input embedding (one tanh layer before the first block)."""
    layout: tuple[str, ...] = ("tc", "attention", "tc", "attention")
    """The policy's blocks in order: ``tc`` (a TC block: ceil(log2(K * horizon)) dilated
    causal convolutions) or ``attention`` (a causal soft-attention block)."""
    tc_filters: int = 32
    """Channels each dense layer of a TC block adds (the paper's D in TCBlock(T, D))."""
    key_size: int = 16
    """Key (and query) size of every attention block."""
    value_size: int = 16
    """Value size of every attention block (the channels it adds)."""

    def validate(self) -> list[str]:
        out = [p for p in super().validate() if not p.startswith("unknown cell")]
        if self.cell != "gru":
            out.append(f"cell is RL²'s recurrent cell; SNAIL has none (got {self.cell!r})")
        if not self.layout:
            out.append(f"layout must name at least one block ({', '.join(BLOCKS)})")
        for block in self.layout:
            if block not in BLOCKS:
                out.append(f"unknown layout block {block!r}; valid: {', '.join(BLOCKS)}")
        for name in ("tc_filters", "key_size", "value_size"):
            if getattr(self, name) < 1:
                out.append(f"{name} must be >= 1, got {getattr(self, name)}")
        return out
