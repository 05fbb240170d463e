"""SNAIL: the attentive policy is causal, its cached stepping equals its one-pass run,
and the learner (RL²'s, with that policy) trains, resumes and fails like the others."""

from __future__ import annotations

import json

import pytest
import torch
from test_new_learners_train import Stop, final_state, same, snapshot
from test_rl2 import assert_sequence_loss_matches_steps

from robometa.algos.rl2 import RL2Actor
from robometa.algos.snail import SNAIL, SNAILConfig
from robometa.cli import main
from robometa.configs import resolve_config
from robometa.policies.normalize import RunningMeanStd
from robometa.policies.recurrent import assemble_inputs
from robometa.policies.snail import SNAILPolicy, tc_depth
from robometa.runs import RunDir, load_checkpoint
from robometa.sampling.trials import TrialSampler
from robometa.tasks import make_family
from robometa.trainer import Trainer

# float32 agreement of the cached steps with the one-pass run (float64: ~1e-14)
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tensors here are tiny: torch's intra-op pool only adds synchronization, which
    stalls on busy cores (the learner samples and learns on one thread too).
    conftest restores the thread count afterwards."""
    torch.set_num_threads(1)


def _policy(context=21, layout=("tc", "attention", "tc", "attention"), obs_dim=3, act_dim=2, seed=0):
    pol = SNAILPolicy(obs_dim, act_dim, context, layout, hidden=8, tc_filters=4, key_size=4, value_size=3)
    pol.reset_parameters(torch.Generator().manual_seed(seed))
    # A mean head that matters, so every feature visibly moves the means.
    with torch.no_grad():
        pol.mean_head.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(seed + 1))
    return pol


def _trial(pol, B=2, K=3, T=7, seed=0):
    """Inputs of B trials of K episodes of T steps, with the done flag at each episode's first step."""
    g = torch.Generator().manual_seed(seed)
    L = K * T
    obs = torch.randn(B, L, pol.obs_dim, generator=g)
    prev_a = torch.randn(B, L, pol.act_dim, generator=g)
    prev_r = torch.randn(B, L, generator=g)
    done = torch.zeros(B, L)
    done[:, T::T] = 1.0
    prev_a[:, 0], prev_r[:, 0] = 0.0, 0.0
    return assemble_inputs(obs, prev_a, prev_r, done)


def _steps(pol, x, state=None):
    state = pol.initial_state(x.shape[0]) if state is None else state
    means, values = [], []
    for t in range(x.shape[1]):
        mean, value, state = pol.step(x[:, t], state)
        means.append(mean)
        values.append(value)
    return torch.stack(means, 1), torch.stack(values, 1), state


# ------------------------------------------------------------------ the policy


@pytest.mark.parametrize("layout", [("tc", "attention", "tc", "attention"), ("attention",), ("tc",)])
def test_outputs_at_step_t_ignore_every_later_input(layout):
    pol = _policy(layout=layout)
    x = _trial(pol)
    with torch.no_grad():
        mean, value, _ = pol.sequence(x)
        for t in (0, 6, 7, 15):
            y = x.clone()
            y[:, t + 1 :] = torch.randn(y[:, t + 1 :].shape, generator=torch.Generator().manual_seed(t))
            mean2, value2, _ = pol.sequence(y)
            assert torch.equal(mean2[:, : t + 1], mean[:, : t + 1]) and torch.equal(
                value2[:, : t + 1], value[:, : t + 1]
            )
            assert (mean2[:, t + 1 :] - mean[:, t + 1 :]).abs().amax(-1).min() > 0  # every later step moved


def test_tc_blocks_reach_back_over_the_whole_context_and_no_further():
    """Dilations 1, 2, ..., 2^(n-1): the receptive field is exactly 2^n >= context steps."""
    pol = _policy(context=20, layout=("tc",))
    assert tc_depth(20) == 5 and [layer.dilation for layer in pol.layers] == [1, 2, 4, 8, 16]
    x = _trial(pol, B=1, K=5, T=8)  # 40 steps
    y = x.clone()
    y[:, 0] += 1.0
    with torch.no_grad():
        moved = (pol.sequence(y)[0] - pol.sequence(x)[0]).abs().amax(-1)[0]
    assert torch.all(moved[:32] > 0) and torch.all(moved[32:] == 0)


@pytest.mark.parametrize("layout", [("tc", "attention", "tc", "attention"), ("attention", "tc")])
def test_cached_steps_equal_the_one_pass_run_across_episode_boundaries(layout):
    pol = _policy(layout=layout)  # TC blocks over 21 steps
    x = _trial(pol, K=4)  # 4 episodes of 7 steps: longer than trained, as `evaluate --episodes 4`
    with torch.no_grad():
        mean, value, _ = pol.sequence(x)
        step_mean, step_value, step_state = _steps(pol, x)
        torch.testing.assert_close(step_mean, mean, **TOL)
        torch.testing.assert_close(step_value, value, **TOL)
        # The state after a one-pass prefix continues like the cached steps do.
        head_mean, _, head = pol.sequence(x[:, :10])
        tail_mean, tail_value, _ = pol.sequence(x[:, 10:], head)
        torch.testing.assert_close(torch.cat([head_mean, tail_mean], 1), mean, **TOL)
        torch.testing.assert_close(tail_value, value[:, 10:], **TOL)
        # A step leaves the state it was given as it was.
        again, _, _ = pol.step(x[:, 10], head)
        torch.testing.assert_close(again, tail_mean[:, 0], rtol=0, atol=0)
        # The cache holds the last max-dilation feature vectors and every step's keys.
        assert len(step_state.history) == pol.max_dilation == 16
        assert all(k.shape == (2, 28, 4) for k in step_state.keys)
        # Memory crosses the episode boundary: episode 2 depends on episode 1's inputs.
        y = x.clone()
        y[:, 3] += 1.0
        assert (pol.sequence(y)[0][:, 7:14] - mean[:, 7:14]).abs().min() > 0


def test_sequence_ppo_loss_matches_step_by_step():
    assert_sequence_loss_matches_steps(_policy(context=6))


def test_sampled_log_probs_match_a_whole_trial_recomputation():
    """The sampler steps the policy through its cache; the learner recomputes whole trials."""
    fam = make_family("cheetah-dir")
    pol = _policy(context=10, obs_dim=fam.obs_dim, act_dim=fam.layout.nu)
    actor = RL2Actor(pol, RunningMeanStd((fam.obs_dim,)), RunningMeanStd(()))
    actor.obs_norm.update(torch.randn(50, fam.obs_dim, generator=torch.Generator().manual_seed(3)) * 2 + 1)
    actor.reward_norm.update(torch.randn(50, generator=torch.Generator().manual_seed(4)) * 5)
    batch = TrialSampler(fam, device="cpu", seed=2).sample_trials(actor, fam.split_tasks("train"), 2, 2, 5)
    x = actor.trial_features(batch)
    with torch.no_grad():
        mean, _, _ = pol.sequence(x)
        lp = pol.distribution(mean).log_prob(batch.actions.view(x.shape[0], x.shape[1], -1))
    torch.testing.assert_close(lp, batch.log_probs.view(lp.shape), **TOL)


def test_config_validation_names_the_problem():
    assert SNAILConfig().validate() == []
    problems = SNAILConfig(cell="lstm", layout=("tc", "lstm"), tc_filters=0, minibatches=99).validate()
    assert "cell is RL²'s recurrent cell; SNAIL has none (got 'lstm')" in problems
    assert "unknown layout block 'lstm'; valid: tc, attention" in problems
    assert "tc_filters must be >= 1, got 0" in problems
    assert any(p.startswith("minibatches") for p in problems)  # RL²'s own checks still run
    assert "layout must name at least one block (tc, attention)" in SNAILConfig(layout=()).validate()


def test_the_learner_builds_a_snail_policy_over_its_training_trial():
    fam = make_family("cheetah-dir")
    algo = SNAIL(fam, SNAILConfig(horizon=50, episodes_per_trial=3, tc_filters=4), device="cpu")
    assert isinstance(algo.policy, SNAILPolicy) and algo.name == "snail"
    assert algo.policy.context == 150 and algo.policy.max_dilation == 128  # 2^8 >= 150


# ------------------------------------------------------------------ through the trainer and the CLI

TINY = [
    "iterations=2",
    "meta_batch_size=2",
    "trials_per_task=2",
    "horizon=5",
    "hidden=8",
    "tc_filters=4",
    "key_size=4",
    "value_size=4",
    "ppo_epochs=2",
    "minibatches=2",
    "eval_every=1",
    "eval_tasks=2",
    "device=cpu",
]


def tiny(*extra):
    return resolve_config(algo="snail", family="cheetah-vel", overrides=[*TINY, *extra])


def test_same_seed_twice_identical_other_seed_differs(tmp_path):
    for run, seed in (("a", 0), ("b", 0), ("c", 1)):
        Trainer.create(tiny(f"seed={seed}"), tmp_path / run).train()
    a, b, c = (final_state(tmp_path / r) for r in "abc")
    assert same(a, b)
    assert not same(a["policy"], c["policy"])
    assert Trainer.resume(tmp_path / "a").curves() == Trainer.resume(tmp_path / "b").curves()


def test_stop_and_resume_equals_uninterrupted(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    Trainer.create(tiny("iterations=3"), full).train()

    def stop_after_two(progress):
        if progress.iteration == 1:
            raise Stop  # like a kill after the second iteration's checkpoint

    with pytest.raises(Stop):
        Trainer.create(tiny("iterations=3"), cut).train(callback=stop_after_two)
    assert load_checkpoint(RunDir(cut).latest)["iteration"] == 2
    Trainer.resume(cut).train()
    assert same(final_state(full), final_state(cut))
    assert Trainer.resume(full).curves() == Trainer.resume(cut).curves()


def test_one_quick_preset_iteration_on_a_manipulation_family_logs_its_curves(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "reach"
    # The quick preset as it is, on fewer tasks and trials so that the test stays short.
    short = ["iterations=1", "eval_tasks=2", "meta_batch_size=2", "trials_per_task=1"]
    cfg = resolve_config(algo="snail", family="reach", overrides=short)
    assert cfg.algo_params.horizon is None  # the family's own 200 steps (quick/reach.yaml)
    Trainer.create(cfg, run).train()
    curves = [json.loads(line) for line in (run / "curves.jsonl").read_text().splitlines()]
    assert [(c["iteration"], c["split"], c["x"]) for c in curves] == [
        (1, "val", "episode"),
        (1, "test", "episode"),
    ]
    ea = EventAccumulator(str(run))
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    for split in ("adapt", "adapt_val", "adapt_test"):
        for k in (1, 2):
            assert {f"{split}/return/episode_{k}", f"{split}/success/episode_{k}"} <= tags, split


@pytest.mark.gl
def test_evaluate_and_replay_a_snail_run(tmp_path, capsys):
    run = tmp_path / "run"
    Trainer.create(tiny("iterations=1"), run).train()
    code = main(["evaluate", str(run), "--seeds", "0", "--tasks", "2"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "snail" in out
    code = main(["replay", str(run), "--gif", str(tmp_path / "r.gif"), "--width", "32", "--height", "24"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "r.gif").stat().st_size > 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["tc_filters=0"], "tc_filters must be >= 1, got 0"),
        (["layout=[tc, lstm]"], "unknown layout block 'lstm'; valid: tc, attention"),
        (["--cell", "lstm"], "cell is RL²'s recurrent cell; SNAIL has none (got 'lstm')"),
        (["key_size=big"], "key_size must be an integer"),
        (["--preset", "huge"], "unknown preset for snail 'huge'; valid: paper, quick"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2_and_creates_nothing(argv, message, tmp_path, capsys):
    run = tmp_path / "never"
    code = main(["train", "--algo", "snail", "--run-dir", str(run), *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and message in err, err
    assert not run.exists()


def test_cli_resume_errors_leave_the_run_untouched(tmp_path, capsys):
    run = tmp_path / "run"
    Trainer.create(tiny("iterations=1"), run).train()
    before = snapshot(run)
    for argv, message in [
        (["--resume", str(run), "tc_filters=8"], "cannot change 'tc_filters' when resuming"),
        (["--resume", str(run), "tc_filters=0"], "tc_filters"),
    ]:
        code = main(["train", *argv])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and message in err, (argv, err)
    assert snapshot(run) == before
    assert load_checkpoint(RunDir(run).latest)["iteration"] == 1
