"""Toy policies and episode batches in float64, for exact checks of the learners' maths,
and the scripts under ``scripts/`` as modules (imported by the tests that need them;
pytest puts ``tests/`` on the import path)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from robometa.policies import GaussianMLPPolicy
from robometa.sampling import EpisodeBatch
from robometa.tasks.locomotion.cheetah import CheetahVel

TINY_GRADIENT_RUN = [
    "iterations=3",
    "meta_batch_size=2",
    "episodes_per_task=2",
    "horizon=6",
    "hidden=[8]",
    "eval_every=2",
    "eval_tasks=2",
    "eval_steps=2",
    "device=cpu",
]
"""Overrides of a tiny run of a gradient learner (MAML, Reptile, Meta-LSTM): a few
seconds on a CPU, with two evaluations and a resume point."""


def make_policy(seed: int = 0, hidden: tuple[int, ...] = (5,)) -> GaussianMLPPolicy:
    """A 3-observation, 2-action float64 policy with weights drawn from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    policy = GaussianMLPPolicy(3, 2, hidden=hidden, init_std=0.7).double()
    with torch.no_grad():
        for p in policy.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    return policy


def make_batch(M: int, N: int, T: int, seed: int, policy=None, params=None) -> EpisodeBatch:
    """Random episodes ``(M tasks, N episodes, T steps)``, one ending early; their
    log-probabilities under ``policy`` (with per-task ``params``) when one is given."""
    gen = torch.Generator().manual_seed(seed)
    obs = torch.randn(M, N, T, 3, generator=gen, dtype=torch.float64)
    actions = torch.randn(M, N, T, 2, generator=gen, dtype=torch.float64)
    masks = torch.ones(M, N, T, dtype=torch.float64)
    masks[0, 0, T - 2 :] = 0.0  # one episode ends early
    log_probs = torch.zeros(M, N, T, dtype=torch.float64)
    if policy is not None:
        with torch.no_grad():
            log_probs = policy.distribution(obs, params, per_task=params is not None).log_prob(actions)
    return EpisodeBatch(
        obs=obs * masks[..., None],
        actions=actions * masks[..., None],
        rewards=torch.randn(M, N, T, generator=gen, dtype=torch.float64) * masks,
        log_probs=log_probs * masks,
        masks=masks,
        terminated=torch.zeros(M, N, T, dtype=torch.float64),
        final_obs=torch.zeros(M, N, 3, dtype=torch.float64),
        success=torch.zeros(M, N, dtype=torch.float64),
    )


def random_adv(batch: EpisodeBatch, seed: int) -> torch.Tensor:
    """Random advantages on ``batch``'s valid steps."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch.masks.shape, generator=gen, dtype=torch.float64) * batch.masks


SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str):
    """``scripts/<name>.py`` imported as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def batch_tensors(batch) -> dict[str, torch.Tensor]:
    """Every tensor of a sampled batch, its reward terms as ``term/<name>``."""
    out = {k: v for k, v in vars(batch).items() if isinstance(v, torch.Tensor)}
    out.update({f"term/{k}": v for k, v in getattr(batch, "reward_terms", {}).items()})
    return out


def assert_same_batches(a, b) -> None:
    """Two sampled batches hold the same tensors, bit for bit."""
    ta, tb = batch_tensors(a), batch_tensors(b)
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k


class BlowsUpCheetah(CheetahVel):
    """cheetah-vel with negative joint damping: episodes blow up within ~15 steps."""

    def build_model(self, task):
        model = super().build_model(task)
        model.dof_damping[3:] = -10.0
        return model
