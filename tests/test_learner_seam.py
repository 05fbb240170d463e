"""The seams are real: a learner and a family registered from outside robometa go
through ``robometa train``, ``evaluate`` and ``replay`` unchanged; family options
reach every place a run's family is built; baselines say what they need."""

from __future__ import annotations

import json
from dataclasses import dataclass

import gymnasium
import numpy as np
import pytest
import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from robometa.algos import (
    AdaptationData,
    IterationResult,
    MetaLearner,
    algorithm_names,
    make_algorithm,
    register_algorithm,
)
from robometa.cli import main
from robometa.configs import resolve_config
from robometa.errors import RobometaError
from robometa.eval.baselines import BASELINES
from robometa.eval.evaluate import load_run
from robometa.policies import GaussianMLPPolicy
from robometa.sampling import Sampler
from robometa.tasks import family_class, family_names, family_options, make_family, register_family
from robometa.tasks.locomotion.cheetah import CheetahVel

# ------------------------------------------------------------------ a learner of our own


@dataclass(frozen=True)
class SearchConfig:
    meta_batch_size: int = 2
    episodes_per_task: int = 1
    horizon: int | None = None
    sigma: float = 0.05


class RandomSearch(MetaLearner):
    """Perturb the initial policy, keep the perturbation when the meta-batch's return
    improves. It does not adapt: every step of its curve is the same policy again."""

    name, curve_x, trained_steps = "random-search", "adapt_step", 0

    def __init__(self, family, config, device="cpu", seed=0):
        self.family, self.config, self.horizon = family, config, config.horizon or family.horizon
        self.sampler = Sampler(family, device, seed=seed)
        self.policy = GaussianMLPPolicy(family.obs_dim, self.sampler.act_dim, (16,), init_std=0.5)
        self.gen = torch.Generator().manual_seed(seed)

    def _sample(self, sampler, tasks, record=False):
        return sampler.sample(
            self.policy, tasks, self.config.episodes_per_task, self.horizon, record_states=record
        )

    def iteration(self, tasks):
        theta = parameters_to_vector(self.policy.parameters()).detach()
        before = self._sample(self.sampler, tasks)
        noise = self.config.sigma * torch.randn(theta.shape, generator=self.gen)
        vector_to_parameters(theta + noise, self.policy.parameters())
        after = self._sample(self.sampler, tasks)
        if (kept := float(after.returns.mean() > before.returns.mean())) == 0.0:
            vector_to_parameters(theta, self.policy.parameters())
        best = after if kept else before
        curve = AdaptationData(self.curve_x, 1, best.returns.mean(1, keepdim=True).numpy()).curve("train")
        return IterationResult(curve, {"train/kept": kept}, before.env_steps + after.env_steps)

    def adaptation_data(self, tasks, steps, seed, record_states=False):
        sampler = self.evaluation_sampler(seed)
        batches = [self._sample(sampler, tasks, record_states) for _ in range(steps + 1)]
        per_step = lambda f: torch.stack([f(b) for b in batches], 1).numpy()  # noqa: E731  (M, K+1)
        recorded = {}
        if record_states:  # (K+1, M, ...): each task's first episode at every step
            recorded = {
                k: torch.stack([getattr(b, k)[:, 0] for b in batches]).numpy() for k in ("states", "rewards")
            }
        success = per_step(lambda b: b.success.mean(1)) if self.family.has_success else None
        return AdaptationData(
            self.curve_x,
            self.config.episodes_per_task,
            per_step(lambda b: b.returns.mean(1)),
            success,
            **recorded,
        )

    def state_dict(self):
        policy = {k: v.detach().clone() for k, v in self.policy.state_dict().items()}
        return {"policy": policy, "sampler": self.sampler.state_dict(), "gen": self.gen.get_state()}

    def load_state_dict(self, state):
        self.policy.load_state_dict(state["policy"])
        self.sampler.load_state_dict(state["sampler"])
        self.gen.set_state(state["gen"])


# ------------------------------------------------------------------ a family of our own


class SlowCheetahVel(CheetahVel):
    """cheetah-vel with a shorter horizon and a cheaper control cost (a family of our own)."""

    horizon = 50

    def __init__(self, ctrl_cost_weight: float = 0.01, **kwargs):
        super().__init__(ctrl_cost_weight=ctrl_cost_weight, **kwargs)


class _Unnamed(CheetahVel):
    name = env_id = None


@pytest.fixture(scope="module", autouse=True)
def registered():
    """Register the learner and the family for this module's tests only: registries are
    process-wide, and other modules list every registered family."""
    import robometa.algos
    import robometa.tasks

    algos, families = dict(robometa.algos._REGISTRY), dict(robometa.tasks._REGISTRY)
    register_algorithm("random-search", SearchConfig, RandomSearch)
    register_family("slow-cheetah-vel", "seamtest/SlowCheetahVel-v0", SlowCheetahVel)
    yield
    for name, entry in list(robometa.tasks._REGISTRY.items()):
        if name not in families:
            gymnasium.registry.pop(entry.env_id, None)
    for registry, before in ((robometa.algos._REGISTRY, algos), (robometa.tasks._REGISTRY, families)):
        registry.clear()
        registry.update(before)


TINY = ["iterations=2", "eval_every=1", "eval_tasks=2", "eval_steps=1", "horizon=6", "device=cpu"]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("seam") / "toy"
    argv = ["train", "--algo", "random-search", "--family", "slow-cheetah-vel", "--run-dir", str(run), *TINY]
    assert main([*argv, "sigma=0.1", "family_options.reset_noise_scale=0.05"]) == 0
    return run


def test_a_registered_learner_and_family_train_evaluate_and_resume(toy_run, capsys):
    assert "random-search" in algorithm_names() and "slow-cheetah-vel" in family_names()
    ckpt = torch.load(toy_run / "checkpoints" / "latest.pt", weights_only=True)
    assert ckpt["iteration"] == 2 and set(ckpt["algo"]) == {"policy", "sampler", "gen"}
    assert "sigma: 0.1" in (toy_run / "config.yaml").read_text()
    assert [json.loads(line)["split"] for line in (toy_run / "curves.jsonl").read_text().splitlines()] == [
        "val",
        "test",
        "val",
        "test",
    ]
    argv = ["evaluate", str(toy_run), "--seeds", "0,1", "--adapt-steps", "2", "--name", "e"]
    assert main(argv) == 0
    summary = json.loads((toy_run / "eval" / "e" / "summary.json").read_text())
    assert set(summary["methods"]) == {"random-search", "no adaptation"}
    assert np.asarray(summary["methods"]["random-search"]["per_task_returns"]).shape == (2, 2, 3)
    assert "no scripted expert" in summary["settings"]["skipped_baselines"]["expert"]
    assert main(["train", "--resume", str(toy_run), "iterations=3"]) == 0
    assert torch.load(toy_run / "checkpoints" / "latest.pt", weights_only=True)["iteration"] == 3
    capsys.readouterr()


@pytest.mark.gl
def test_a_registered_learner_replays(toy_run, tmp_path, capsys):
    gif = tmp_path / "toy.gif"
    argv = [
        "replay",
        str(toy_run),
        "--adapt-steps",
        "1",
        "--gif",
        str(gif),
        "--width",
        "32",
        "--height",
        "24",
    ]
    assert main(argv) == 0
    assert gif.read_bytes()[:6] == b"GIF89a"
    out = capsys.readouterr().out
    assert "1 adaptation step (trained with 0)" in out and "after 1 adaptation step: return" in out


def test_a_registered_family_is_a_gymnasium_id_and_takes_its_options():
    assert family_class("seamtest/SlowCheetahVel-v0") is SlowCheetahVel
    assert family_options("slow-cheetah-vel") == ["ctrl_cost_weight", "reset_noise_scale"]
    env = gymnasium.make("seamtest/SlowCheetahVel-v0", ctrl_cost_weight=0.5)
    assert env.spec.max_episode_steps == 50 and env.unwrapped.family.ctrl_cost_weight == 0.5
    env.reset(seed=0)
    register_family("slow-cheetah-vel", "seamtest/SlowCheetahVel-v0", SlowCheetahVel)  # again: a no-op
    with pytest.raises(RobometaError, match="already registered"):
        register_family("slow-cheetah-vel", "seamtest/Other-v0", _Unnamed)
    with pytest.raises(RobometaError, match="already family 'slow-cheetah-vel'"):
        register_family("other", "seamtest/SlowCheetahVel-v0", _Unnamed)
    with pytest.raises(RobometaError, match="SlowCheetahVel.name is 'slow-cheetah-vel'"):
        register_family("renamed", "seamtest/Renamed-v0", SlowCheetahVel)
    with pytest.raises(RobometaError, match="namespace/Name-v0"):
        register_family("bad-id", "NoNamespace", _Unnamed)
    with pytest.raises(RobometaError, match="TaskFamily subclass"):
        register_family("not-a-family", "seamtest/NotAFamily-v0", dict)


def test_register_algorithm_refuses_what_it_cannot_drive():
    @dataclass(frozen=True)
    class NoBatch:
        horizon: int | None = None

    with pytest.raises(RobometaError, match="lacks the field"):
        register_algorithm("no-batch", NoBatch, RandomSearch)
    with pytest.raises(RobometaError, match="must be a dataclass"):
        register_algorithm("no-config", dict, RandomSearch)
    with pytest.raises(RobometaError, match="already registered"):
        register_algorithm("maml-trpo", SearchConfig, RandomSearch)

    class Incomplete:  # no adaptation_data, state_dict, ...
        def __init__(self, family, config, device="cpu", seed=0):
            pass

    register_algorithm("incomplete", SearchConfig, Incomplete)
    with pytest.raises(TypeError, match="Incomplete .algorithm 'incomplete'. lacks .*adaptation_data"):
        make_algorithm("incomplete", make_family("cheetah-vel"), SearchConfig())


def test_builtin_families_register_their_real_horizon():
    for name in family_names():
        assert gymnasium.spec(make_family(name).env_id).max_episode_steps == family_class(name).horizon, name


# ------------------------------------------------------------------ family options


def test_family_options_from_the_command_line_and_yaml_reach_every_family_built(tmp_path, capsys):
    config = tmp_path / "reach.yaml"
    config.write_text("family: reach\nfamily_options:\n  reset_noise_scale: 0.02\n")
    cfg = resolve_config(config_file=config, overrides=["family_options.observe_goal=true"])
    assert cfg.family_options == {"reset_noise_scale": 0.02, "observe_goal": True}  # merged option by option
    run = tmp_path / "goal"
    argv = ["train", "--config", str(config), "--run-dir", str(run), "family_options.observe_goal=true"]
    assert main([*argv, "meta_batch_size=2", "episodes_per_task=1", "hidden=[8]", *TINY]) == 0
    loaded = load_run(run)
    assert loaded.family.observe_goal and loaded.family.reset_noise_scale == 0.02
    assert loaded.algo.policy.obs_dim == make_family("reach", observe_goal=True).obs_dim
    eval_argv = ["evaluate", str(run), "--tasks", "1", "--seeds", "0", "--baselines", "expert", "--name", "g"]
    assert main(eval_argv) == 0
    from robometa.viz.replay import from_evaluation

    assert from_evaluation(run / "eval" / "g", 0).family.observe_goal
    assert "observe_goal: true" in (run / "config.yaml").read_text()
    capsys.readouterr()


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "family_options.nope=1",
            "unknown option 'nope' for family reach; valid: observe_goal, reset_noise_scale",
        ),
        ("family_options.reset_noise_scale=5", "reset_noise_scale"),
        ("family_options=3", "family_options in overrides must be a mapping"),
    ],
)
def test_a_bad_family_option_is_one_line_exit_2_and_writes_nothing(override, message, tmp_path, capsys):
    run = tmp_path / "never"
    assert main(["train", "--family", "reach", "--run-dir", str(run), override]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not run.exists()


def test_a_config_without_family_options_is_written_as_before():
    from robometa.configs import config_to_dict

    assert "family_options" not in config_to_dict(resolve_config())
    assert config_to_dict(resolve_config(overrides=["family_options.ctrl_cost_weight=0.1"]))[
        "family_options"
    ] == {"ctrl_cost_weight": 0.1}


# ------------------------------------------------------------------ baselines


def test_baselines_say_what_they_need():
    from robometa.algos.rl2_config import RL2Config

    cheetah, reach = make_family("cheetah-vel"), make_family("reach")
    maml = make_algorithm("maml-trpo", cheetah, resolve_config().algo_params)
    rl2 = make_algorithm("rl2", cheetah, RL2Config())
    toy = RandomSearch(cheetah, SearchConfig())
    assert BASELINES["expert"].supports(reach, maml) and not BASELINES["expert"].supports(cheetah, maml)
    assert "cheetah-vel has no scripted expert" in BASELINES["expert"].why_not(cheetah, maml)
    assert BASELINES["multitask"].supports(cheetah, maml) and BASELINES["multitask"].supports(cheetah, rl2)
    assert f"{toy.name} has no setting without meta-learning" in BASELINES["multitask"].why_not(cheetah, toy)
    assert rl2.multitask_config().memory is False and rl2.multitask_iteration_factor() == 1
    assert all(BASELINES[b].supports(cheetah, toy) for b in ("no-adapt", "ppo-scratch"))
    assert maml.multitask_config().inner_steps == 0 and not maml.multitask_config().learn_inner_lr


def test_a_learner_without_memory_is_named_apart():
    from robometa.algos.context_config import ContextConfig
    from robometa.algos.rl2_config import RL2Config
    from robometa.configs.train import TrainConfig

    def name(algo, params):
        return TrainConfig(algo=algo, algo_params=params).learner

    assert name("rl2", RL2Config()) == "rl2" and name("rl2", RL2Config(memory=False)) == "rl2-no-memory"
    assert name("rl2", RL2Config(cell="lstm", memory=False)) == "rl2-lstm-no-memory"
    assert name("context", ContextConfig(aggregator="pog", memory=False)) == "context-pog-no-memory"
