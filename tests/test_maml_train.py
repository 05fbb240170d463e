"""End-to-end: tiny MAML runs write TensorBoard tags and checkpoints, resume exactly, fail cleanly."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from toy_problems import TINY_GRADIENT_RUN

from robometa.cli import main
from robometa.configs import resolve_config
from robometa.runs import RunDir, load_checkpoint
from robometa.trainer import Trainer

TINY = [*TINY_GRADIENT_RUN, "cg_iters=3"]


def tiny_config(*extra: str, algo: str = "maml-trpo"):
    overrides = [o for o in TINY if algo == "maml-trpo" or not o.startswith("cg_iters")]
    return resolve_config(algo=algo, overrides=[*overrides, *extra])


def final_params(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(RunDir(run).latest)["algo"]["policy"]


def snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def trpo_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "trpo"
    Trainer.create(tiny_config(), run).train()
    return run


def test_run_writes_tensorboard_tags_config_and_checkpoints(trpo_run):
    rd = RunDir(trpo_run)
    assert rd.config.is_file() and rd.latest.is_file() and rd.best.is_file()
    ea = EventAccumulator(str(trpo_run))
    ea.Reload()
    scalars = set(ea.Tags()["scalars"])
    expected = {
        "adapt/return/step_0",
        "adapt/return/step_1",
        "adapt_test/return/step_0",
        "adapt_test/return/step_2",
        "adapt_val/return/step_0",
        "adapt_val/return/step_2",
        "loss/outer_before",
        "train/kl",
        "train/entropy",
        "train/inner_lr",
        "train/line_search_accepted",
        "time/sampling",
        "time/inner",
        "time/outer",
        "time/outer_meta_gradient",
        "time/outer_natural_step",
        "time/outer_line_search",
        "sim/steps_per_s",
    }
    assert expected <= scalars, expected - scalars
    assert not any(t.startswith("adapt/success") for t in scalars)  # cheetah-vel has no success
    assert [e.step for e in ea.Scalars("adapt/return/step_1")] == [0, 1, 2]
    assert [e.step for e in ea.Scalars("adapt_test/return/step_0")] == [1, 2]
    assert [e.step for e in ea.Scalars("adapt_val/return/step_0")] == [1, 2]
    assert "custom_scalars__config__" in set(ea.Tags()["tensors"])


def test_hparams_tab_holds_the_config_and_the_selection_metrics(trpo_run):
    from tensorboard.plugins.hparams import plugin_data_pb2

    ea = EventAccumulator(str(trpo_run))
    ea.Reload()
    content = ea.PluginTagToContent("hparams")
    data = {tag: plugin_data_pb2.HParamsPluginData.FromString(c) for tag, c in content.items()}
    experiment = data["_hparams_/experiment"].experiment
    # held-out return before and after adapting (watching), and the validation return that chose best.pt
    assert [m.name.tag for m in experiment.metric_infos] == [
        "adapt_test/return/step_0",
        "adapt_test/return/step_2",
        "adapt_val/return/step_1",
    ]
    hparams = data["_hparams_/session_start_info"].session_start_info.hparams
    assert hparams["algo"].string_value == "maml-trpo" and hparams["family"].string_value == "cheetah-vel"
    assert hparams["meta_batch_size"].number_value == 2 and hparams["inner_lr"].number_value == 0.1


def test_checkpoint_loads_with_weights_only_and_carries_full_state(trpo_run):
    state = torch.load(RunDir(trpo_run).latest, weights_only=True)
    assert state["iteration"] == 3
    assert set(state["algo"]) == {"policy", "sampler", "optimizer", "step_sizes"}
    assert "task_rng" in state and state["config"]["algo"] == "maml-trpo"


def test_same_seed_twice_gives_identical_parameters(trpo_run, tmp_path):
    Trainer.create(tiny_config(), tmp_path / "again").train()
    a, b = final_params(trpo_run), final_params(tmp_path / "again")
    assert all(torch.equal(a[k], b[k]) for k in a)
    Trainer.create(tiny_config("seed=1"), tmp_path / "other").train()
    c = final_params(tmp_path / "other")
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize(
    "algo, extra",
    [("maml-trpo", []), ("maml-ppo", ["learn_inner_lr=true"]), ("maml-trpo", ["normalize_obs=true"])],
)
def test_stop_and_resume_equals_uninterrupted(algo, extra, tmp_path):
    full = tmp_path / "full"
    Trainer.create(tiny_config(*extra, algo=algo), full).train()

    cut = tmp_path / "cut"

    def stop_after_two(progress):
        if progress.iteration == 1:
            raise Stop  # like a kill after the second iteration's checkpoint

    with pytest.raises(Stop):
        Trainer.create(tiny_config(*extra, algo=algo), cut).train(callback=stop_after_two)
    assert load_checkpoint(RunDir(cut).latest)["iteration"] == 2
    Trainer.resume(cut).train()

    a, b = load_checkpoint(RunDir(full).latest)["algo"], load_checkpoint(RunDir(cut).latest)["algo"]
    assert all(torch.equal(a["policy"][k], b["policy"][k]) for k in a["policy"])
    if "normalize_obs=true" in extra:  # the statistics travel with the policy
        assert a["policy"]["obs_count"] > 0
    if algo == "maml-ppo":
        assert all(torch.equal(a["step_sizes"][k], b["step_sizes"][k]) for k in a["step_sizes"])
    assert Trainer.resume(full).curves() == Trainer.resume(cut).curves()


def test_resume_can_extend_iterations(trpo_run, tmp_path):
    run = tmp_path / "more"
    shutil.copytree(trpo_run, run)
    Trainer.resume(run, {"iterations": 4}).train()
    assert load_checkpoint(RunDir(run).latest)["iteration"] == 4


# ------------------------------------------------------------------ the CLI


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_train_tiny_run_prints_where_logs_are(tmp_path, capsys):
    run = tmp_path / "cli"
    code, out, err = run_cli(capsys, "train", *TINY, "iterations=1", "--run-dir", str(run))
    assert code == 0, err
    assert f"tensorboard --logdir {run}" in out
    assert RunDir(run).latest.is_file()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--algo", "maml-sgd"], "unknown algorithm 'maml-sgd'; valid: maml-trpo, maml-ppo"),
        (["--family", "cheetah-fly"], "unknown task family 'cheetah-fly'"),
        (["--preset", "huge"], "unknown preset for maml-trpo 'huge'; valid: paper, quick"),
        (["inner_rate=0.1"], "unknown config key in overrides 'inner_rate'"),
        (["inner_lr=fast"], "inner_lr must be a number"),
        (["hidden=[8, 1.5]"], "hidden[1] must be an integer"),
        (["iterations=0"], "iterations must be >= 1"),
        (["--config", "missing.yaml"], "config file 'missing.yaml' not found"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2_and_creates_nothing(argv, message, tmp_path, capsys):
    run = tmp_path / "never"
    code, out, err = run_cli(capsys, "train", "--run-dir", str(run), *argv)
    assert code == 2
    assert err.count("\n") == 1 and message in err, err
    assert not run.exists()


def test_cli_resume_errors_leave_run_untouched(trpo_run, tmp_path, capsys):
    run = tmp_path / "copy"
    shutil.copytree(trpo_run, run)
    before = snapshot(run)
    cases = [
        (["--resume", str(tmp_path / "nope")], "not found"),
        (["--resume", str(run), "inner_lr=0.5"], "cannot change 'inner_lr' when resuming"),
        (["--resume", str(run), "--family", "cheetah-dir"], "--family cannot be combined with --resume"),
        (["--run-dir", str(run)], "already exists"),
    ]
    for argv, message in cases:
        code, _, err = run_cli(capsys, "train", *argv)
        assert code == 2 and err.count("\n") == 1 and message in err, (argv, err)
    assert snapshot(run) == before

    # an edited, incompatible config.yaml
    cfg = RunDir(run).config
    cfg.write_text(cfg.read_text().replace("inner_lr: 0.1", "inner_lr: 0.2"))
    before = snapshot(run)
    code, _, err = run_cli(capsys, "train", "--resume", str(run))
    assert code == 2 and "does not match the run's checkpoint" in err
    assert snapshot(run) == before


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing"])
def test_cli_corrupt_or_missing_checkpoint(damage, trpo_run, tmp_path, capsys):
    run = tmp_path / "bad"
    shutil.copytree(trpo_run, run)
    latest = RunDir(run).latest
    if damage == "truncate":
        latest.write_bytes(latest.read_bytes()[:100])
    elif damage == "garbage":
        latest.write_bytes(b"not a checkpoint at all")
    else:
        latest.unlink()
    before = snapshot(run)
    code, _, err = run_cli(capsys, "train", "--resume", str(run))
    assert code == 2 and err.count("\n") == 1 and "checkpoint" in err, err
    assert snapshot(run) == before


@pytest.mark.parametrize("algo", ["maml-trpo", "maml-ppo"])
def test_meta_update_in_task_chunks_equals_one_batched_pass(algo):
    """The CPU meta-update works on groups of tasks; the result must not depend on the grouping."""
    import numpy as np

    from robometa.algos import make_algorithm
    from robometa.tasks import make_family

    cfg = tiny_config("meta_batch_size=5", algo=algo)
    family = make_family(cfg.family)
    tasks = family.sample_tasks(5, np.random.default_rng(0), "train")
    params = []
    for chunk in (None, 2):
        learner = make_algorithm(algo, family, cfg.algo_params, "cpu", seed=3)
        learner.task_chunk = chunk
        metrics = learner.iteration(tasks).metrics
        params.append(torch.cat([p.detach().reshape(-1) for p in learner.meta_parameters()]))
        assert metrics["loss/outer_after"] < metrics["loss/outer_before"]
    before = torch.cat(
        [
            p.detach().reshape(-1)
            for p in make_algorithm(algo, family, cfg.algo_params, "cpu", 3).meta_parameters()
        ]
    )
    assert not torch.allclose(params[0], before)  # the update moved the weights
    torch.testing.assert_close(params[0], params[1], rtol=1e-4, atol=1e-5)


def test_learner_threads_reach_the_cpu_learner_and_may_change_on_resume(tmp_path):
    run = tmp_path / "threads"
    trainer = Trainer.create(tiny_config("learner_threads=2", "iterations=1"), run)
    assert trainer.algo.learner_threads == 2
    trainer.train()
    resumed = Trainer.resume(run, {"learner_threads": 1, "iterations": 2})
    assert resumed.algo.learner_threads == 1


def test_lvc_inner_objective_trains_its_own_learner_and_refuses_bad_values(trpo_run, tmp_path):
    config = tiny_config("inner_objective=lvc")
    assert config.learner == "maml-trpo-lvc"
    assert tiny_config("inner_objective=lvc", "learn_inner_lr=true").learner == "maml-trpo-meta-sgd-lvc"
    Trainer.create(config, tmp_path / "lvc").train()
    a, b = final_params(trpo_run), final_params(tmp_path / "lvc")
    assert not all(torch.equal(a[k], b[k]) for k in a)  # a different meta-gradient from the first update
    assert (
        main(["train", "--algo", "maml-trpo", "inner_objective=dice", "--run-dir", str(tmp_path / "x")]) == 2
    )
    assert not (tmp_path / "x").exists()
