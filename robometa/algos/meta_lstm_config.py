"""Settings of Meta-LSTM for meta-RL: MAML's sampling and TRPO / PPO outer loop with an
inner update produced by a learned coordinate-wise LSTM (Ravi & Larochelle, 2017;
Andrychowicz et al., 2016)."""

from __future__ import annotations

from dataclasses import dataclass

from robometa.algos.maml_config import MAMLPPOConfig, MAMLTRPOConfig


@dataclass(frozen=True)
class MetaLSTMConfig(MAMLTRPOConfig, MAMLPPOConfig):
    """MAML's settings (both outer loops' fields; ``outer`` picks one) plus the LSTM's.

    ``inner_lr`` sets the input gate at initialization (``i = inner_lr``); the forget
    gate starts at ``sigmoid(forget_bias)``, close to 1, so an untrained Meta-LSTM takes
    nearly MAML's inner step. ``learn_inner_lr`` (Meta-SGD) is ``maml-*``'s and is
    refused here: the per-weight input-gate bias already plays its part.
    """

    outer: str = "trpo"
    """Outer loop: ``trpo`` (MAML-TRPO's natural step and line search) or ``ppo``
    (MAML-PPO's clipped surrogate and Adam epochs)."""
    forget_bias: float = 5.0
    """Initial forget-gate bias: f = sigmoid(5) = 0.993 before meta-training (Ravi &
    Larochelle initialize it large so that the cell starts by keeping the weights)."""
    per_weight_input_bias: bool = True
    """Give every policy weight its own input-gate bias (as many numbers as the policy),
    which makes Meta-SGD a special case; ``false``: one shared bias (9 + 2 numbers)."""
    preprocess_p: float = 10.0
    """p of the gradient and loss preprocessing (Andrychowicz et al., 2016, appendix A: 10)."""

    def validate(self) -> list[str]:
        out = super().validate()
        if self.outer not in ("trpo", "ppo"):
            out.append(f"unknown outer {self.outer!r}; valid: trpo, ppo")
        if self.learn_inner_lr:
            out.append(
                "learn_inner_lr is Meta-SGD (maml-trpo / maml-ppo); meta-lstm learns its input gate instead"
            )
        if self.inner_objective != "vpg":
            out.append("inner_objective is maml-trpo / maml-ppo's; meta-lstm's inner loss is MAML's (vpg)")
        if self.compile_learner:
            out.append("compile_learner is not supported by meta-lstm")
        if not 0.0 < self.inner_lr < 1.0:
            out.append(
                f"inner_lr is the initial input gate, a sigmoid: it must be in (0, 1), got {self.inner_lr}"
            )
        if self.preprocess_p <= 0:
            out.append(f"preprocess_p must be > 0, got {self.preprocess_p}")
        return out
