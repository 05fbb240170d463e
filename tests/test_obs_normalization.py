"""MAML's observation normalization: one standardized input everywhere the policy reads
one (module, explicit, per-task weights, sampling), statistics merged only between
updates, from every batch of the iteration, and carried by checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from toy_problems import TINY_GRADIENT_RUN

from robometa.configs import resolve_config
from robometa.policies import GaussianMLPPolicy
from robometa.policies.normalize import RunningMeanStd
from robometa.runs import RunDir, load_checkpoint
from robometa.trainer import Trainer


def normalized_policy(obs_dim: int = 5, act_dim: int = 2) -> GaussianMLPPolicy:
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(obs_dim, act_dim, (7, 6), normalize_obs=True)
    data = torch.randn(40, obs_dim) * torch.tensor([0.03, 2.0, 0.5, 10.0, 1.0]) + torch.arange(obs_dim)
    policy.update_obs_statistics(data)
    return policy


def test_every_forward_reads_the_standardized_observation():
    policy = normalized_policy()
    obs = torch.randn(3, 4, 5) * 3
    stats = RunningMeanStd((5,))
    stats.load_state_dict({"mean": policy.obs_mean, "var": policy.obs_var, "count": float(policy.obs_count)})
    expected = policy.mean(stats.normalize(obs).float())
    mean, _ = policy(obs)
    torch.testing.assert_close(mean, expected)
    params = dict(policy.named_parameters())
    torch.testing.assert_close(policy.mean_log_std(obs, params)[0], expected)
    per_task = {k: v.unsqueeze(0).expand(3, *v.shape) for k, v in params.items()}
    torch.testing.assert_close(policy.mean_log_std(obs, per_task, per_task=True)[0], expected)
    action, _ = policy.act(obs, deterministic=True, params=per_task, per_task=True)
    torch.testing.assert_close(action, expected)
    # Out-of-range inputs are clipped like RL²'s normalizer.
    far = torch.full((1, 5), 1e6)
    torch.testing.assert_close(policy.normalized(far), torch.full((1, 5), GaussianMLPPolicy.OBS_CLIP))


def test_statistics_merge_only_the_masked_rows_and_travel_in_the_state_dict():
    policy = GaussianMLPPolicy(3, 1, (4,), normalize_obs=True)
    first, second = torch.randn(2, 6, 3), torch.randn(4, 3) + 5
    mask = torch.tensor([[1.0, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]])
    policy.update_obs_statistics(first, mask)
    policy.update_obs_statistics(second)
    rows = torch.cat([first[mask > 0], second]).double()
    assert float(policy.obs_count) == 12
    torch.testing.assert_close(policy.obs_mean, rows.mean(0))
    torch.testing.assert_close(policy.obs_var, rows.var(0, unbiased=False))
    torch.testing.assert_close(
        policy.obs_inv_std, (1.0 / (rows.var(0, unbiased=False) + 1e-8).sqrt()).float()
    )
    copy = GaussianMLPPolicy(3, 1, (4,), normalize_obs=True)
    copy.load_state_dict(policy.state_dict())
    obs = torch.randn(5, 3)
    assert torch.equal(copy.normalized(obs), policy.normalized(obs))


def test_a_policy_without_normalization_is_unchanged_and_refuses_statistics():
    plain = GaussianMLPPolicy(3, 1, (4,))
    assert not any("obs_" in k for k in plain.state_dict())
    obs = torch.randn(5, 3)
    assert torch.equal(plain(obs)[0], plain.mean(obs))
    with pytest.raises(RuntimeError, match="normalize_obs"):
        plain.update_obs_statistics(obs)


def test_maml_merges_every_batch_of_an_iteration_after_its_update(tmp_path):
    config = resolve_config(
        algo="maml-trpo", overrides=[*TINY_GRADIENT_RUN, "cg_iters=3", "normalize_obs=true"]
    )
    trainer = Trainer.create(config, tmp_path / "run")
    algo = trainer.algo
    seen = []
    sample = algo.sampler.sample

    def recording(*args, **kwargs):
        batch = sample(*args, **kwargs)
        # What the policy standardizes by while this batch is sampled and learned from.
        seen.append((batch, algo.policy.obs_count.clone(), algo.policy.obs_shift.clone()))
        return batch

    algo.sampler.sample = recording
    trainer.train()
    algo.sampler.sample = sample
    # Within an iteration (a batch before and one after the inner step) the statistics
    # stay put; the next iteration reads everything the last one sampled.
    per_iteration = [seen[i : i + 2] for i in range(0, len(seen), 2)]
    assert len(per_iteration) == config.iterations
    merged = []
    for (pre, count_pre, shift_pre), (post, count_post, shift_post) in per_iteration:
        assert count_pre == count_post == sum(float(b.masks.sum()) for b in merged)
        assert torch.equal(shift_pre, shift_post)
        merged += [pre, post]
    rows = torch.cat([b.obs[b.masks > 0] for b in merged]).double()
    final = load_checkpoint(RunDir(tmp_path / "run").latest)["algo"]["policy"]
    assert float(final["obs_count"]) == rows.shape[0]
    torch.testing.assert_close(final["obs_mean"], rows.mean(0))
    torch.testing.assert_close(final["obs_var"], rows.var(0, unbiased=False))
    # The multi-task baseline of this learner normalizes too.
    assert algo.multitask_config().normalize_obs
    assert np.isfinite(trainer.evaluate("test").return_mean).all()


@pytest.mark.parametrize(
    "algo, own",
    [("reptile", ["inner_steps=2"]), ("meta-lstm", ["cg_iters=3"]), ("maml-ppo", ["ppo_epochs=2"])],
)
def test_the_other_gradient_learners_merge_every_training_step(algo, own, tmp_path):
    """cheetah-vel never terminates, so every training env-step is one row merged."""
    config = resolve_config(algo=algo, overrides=[*TINY_GRADIENT_RUN, *own, "normalize_obs=true"])
    trainer = Trainer.create(config, tmp_path / "run")
    trainer.train()
    final = load_checkpoint(RunDir(tmp_path / "run").latest)
    assert float(final["algo"]["policy"]["obs_count"]) == trainer.env_steps > 0
