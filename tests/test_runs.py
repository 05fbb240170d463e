"""Run directories: atomic checkpoints, config resolution and validation, TensorBoard tags."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from robometa.algos import AdaptationCurve
from robometa.configs import MAMLPPOConfig, build_config, config_to_dict, config_to_yaml, resolve_config
from robometa.errors import RobometaError
from robometa.runs import (
    atomic_write_text,
    check_new,
    check_resumable,
    curve_scalars,
    curve_tag,
    custom_scalars_layout,
    default_run_path,
    load_checkpoint,
    save_checkpoint,
)

# ------------------------------------------------------------------ checkpoints


def test_checkpoint_round_trip_with_rng_states_under_weights_only(tmp_path):
    rng = np.random.default_rng(5)
    gen = torch.Generator().manual_seed(3)
    state = {"w": torch.arange(4.0), "rng": rng.bit_generator.state, "gen": gen.get_state(), "best": -1.5}
    save_checkpoint(tmp_path / "c.pt", state)
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(loaded["w"], state["w"]) and loaded["best"] == -1.5
    rng2 = np.random.default_rng(0)
    rng2.bit_generator.state = loaded["rng"]
    assert rng2.random() == rng.random()
    gen2 = torch.Generator()
    gen2.set_state(loaded["gen"])
    assert torch.equal(torch.rand(3, generator=gen2), torch.rand(3, generator=gen))


class _Evil:
    pass


def test_checkpoint_refuses_foreign_pickles_and_foreign_dicts(tmp_path):
    torch.save({"obj": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(RobometaError, match="corrupt or not a robometa checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(RobometaError, match="not a robometa checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(RobometaError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")


def test_atomic_write_keeps_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "latest.pt"
    save_checkpoint(target, {"x": torch.ones(2)})
    before = target.read_bytes()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(target, {"x": torch.zeros(1000)})
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt"]  # no temp file left


def test_run_dir_checks_write_nothing(tmp_path):
    check_new(tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("1")
    with pytest.raises(RobometaError, match="already exists"):
        check_new(tmp_path / "used")
    with pytest.raises(RobometaError, match="not a robometa run"):
        check_resumable(tmp_path / "used")
    atomic_write_text(tmp_path / "used" / "config.yaml", "algo: maml-trpo\n")
    # a run killed before its first checkpoint resumes from iteration 0
    assert check_resumable(tmp_path / "used").path == tmp_path / "used"
    assert sorted(p.name for p in (tmp_path / "used").iterdir()) == ["config.yaml", "x"]


# ------------------------------------------------------------------ configs


def test_precedence_preset_file_flags_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("iterations: 7\nseed: 3\nalgo_params:\n  inner_lr: 0.2\n  meta_batch_size: 4\n")
    cfg = resolve_config(preset="quick", config_file=f, seed=5, overrides=["meta_batch_size=6"])
    assert cfg.iterations == 7  # file over preset
    assert cfg.seed == 5  # flag over file
    assert cfg.algo_params.inner_lr == 0.2
    assert cfg.algo_params.meta_batch_size == 6  # override over file
    assert cfg.algo_params.episodes_per_task == 10  # from the quick preset


def test_paper_preset_has_the_maml_paper_settings():
    p = resolve_config(algo="maml-trpo", preset="paper").algo_params
    assert (p.meta_batch_size, p.episodes_per_task, p.horizon, p.inner_lr, p.max_kl) == (
        40,
        20,
        200,
        0.1,
        0.01,
    )
    # the Fisher on 10% of the data, as in the TRPO paper (appendix C)
    assert p.hidden == (100, 100) and not p.first_order and p.fisher_subsample == 0.1


def test_algo_from_config_file_picks_its_schema(tmp_path):
    f = tmp_path / "ppo.yaml"
    f.write_text("algo: maml-ppo\nclip_eps: 0.2\n")
    cfg = resolve_config(config_file=f)
    assert isinstance(cfg.algo_params, MAMLPPOConfig) and cfg.algo_params.clip_eps == 0.2
    with pytest.raises(RobometaError, match="unknown config key"):
        resolve_config(algo="maml-trpo", overrides=["clip_eps=0.2"])


def test_config_yaml_round_trip():
    cfg = resolve_config(algo="maml-ppo", overrides=["hidden=[32,16]", "horizon=null"])
    again = build_config(__import__("yaml").safe_load(config_to_yaml(cfg)))
    assert again == cfg and again.algo_params.hidden == (32, 16) and again.algo_params.horizon is None
    assert config_to_dict(again)["algo_params"]["hidden"] == [32, 16]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["seed=1.5"], "seed must be an integer"),
        (["first_order=yes please"], "first_order must be true or false"),
        (["horizon=abc"], "horizon must be int or null"),
        (["device=7"], "device must be a string"),
        (["noequals"], "must look like key=value"),
        (["algo_params.nope=1"], "unknown algo_params key in overrides 'nope'"),
        (["gamma=2"], "gamma must be in [0, 1]"),
    ],
)
def test_bad_values_raise_one_clear_error(overrides, message):
    with pytest.raises(RobometaError) as info:
        resolve_config(overrides=overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_yaml_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("iterations: [1,\n")
    with pytest.raises(RobometaError, match="not valid YAML"):
        resolve_config(config_file=bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(RobometaError, match="must hold a mapping"):
        resolve_config(config_file=bad)


# ------------------------------------------------------------------ curves and tags


def test_curve_record_and_tags():
    curve = AdaptationCurve("test", "adapt_step", [0, 1], [-3.0, -1.0], [0.5, 0.2], success_mean=[0.0, 0.5])
    d = curve.to_dict()
    assert d == {
        "split": "test",
        "x": "adapt_step",
        "steps": [0, 1],
        "return_mean": [-3.0, -1.0],
        "return_std": [0.5, 0.2],
        "success_mean": [0.0, 0.5],
    }
    assert AdaptationCurve.from_dict(d) == curve
    assert curve_scalars(curve) == {
        "adapt_test/return/step_0": -3.0,
        "adapt_test/return/step_1": -1.0,
        "adapt_test/success/step_0": 0.0,
        "adapt_test/success/step_1": 0.5,
    }
    rl2 = AdaptationCurve("train", "episode", [0], [2.0])
    assert curve_scalars(rl2) == {"adapt/return/episode_1": 2.0}  # episode 1 of the trial
    val = AdaptationCurve("val", "episode", [0, 1], [1.0, 2.0], success_mean=[0.0, 1.0])
    assert curve_scalars(val) == {
        "adapt_val/return/episode_1": 1.0,
        "adapt_val/return/episode_2": 2.0,
        "adapt_val/success/episode_1": 0.0,
        "adapt_val/success/episode_2": 1.0,
    }
    assert curve_tag("val", "adapt_step", 1) == "adapt_val/return/step_1"


def test_custom_scalars_layout_is_one_tag_per_chart_and_only_what_the_run_writes():
    """TensorBoard draws every line of a chart in the run's one colour with no legend:
    each chart holds one tag and its title says which step it is; families without
    success get no success charts; learner charts follow the metrics it logs."""
    import re

    layout = custom_scalars_layout(
        "adapt_step", {"test": 3, "val": 2, "train": 1}, False, ["loss/outer_before", "time/sampling"]
    )
    test = layout["adaptation on held-out test tasks (for watching)"]
    assert list(test) == [
        "return, step 0 (before adapting)",
        "return, step 1 (after 1 adaptation step)",
        "return, step 2 (after 2 adaptation steps)",
        "return, step 3 (after 3 adaptation steps)",
    ]
    for chart in (c for category in layout.values() for c in category.values()):
        kind, (regex,) = chart  # one tag per chart
        assert kind == "Multiline"
    (regex,) = test["return, step 3 (after 3 adaptation steps)"][1]
    assert re.fullmatch(regex, "adapt_test/return/step_3")
    assert not any(re.fullmatch(regex, t) for t in ("adapt_test/return/step_30", "adapt/return/step_3"))
    assert len(layout["adaptation on validation tasks (chooses best.pt)"]) == 3
    assert not any("success" in title for category in layout.values() for title in category)
    assert list(layout["meta-update: losses"]) == [
        "loss/outer_before: MAML: surrogate loss of the adapted policies before the meta-update"
    ]
    assert "meta-update: policy" not in layout  # no train/ metric logged
    rl2 = custom_scalars_layout("episode", {"train": 1}, True, [])
    assert list(rl2) == ["adaptation on the training meta-batch", "time per iteration (s)", "simulation"]
    assert list(rl2["adaptation on the training meta-batch"]) == [
        "return, episode 1 (episode 1: before any experience)",
        "return, episode 2 (episode 2: after 1 episode)",
        "success, episode 1 (episode 1: before any experience)",
        "success, episode 2 (episode 2: after 1 episode)",
    ]


def test_default_run_path_never_reuses_a_directory(tmp_path, monkeypatch):
    import robometa.runs.run_dir as run_dir

    monkeypatch.setattr(run_dir.time, "strftime", lambda fmt: "20260101-120000")
    first = default_run_path("maml-trpo", "cheetah-vel", root=tmp_path)
    assert first == tmp_path / "maml-trpo-cheetah-vel-20260101-120000" and not first.exists()
    first.mkdir()
    second = default_run_path("maml-trpo", "cheetah-vel", root=tmp_path)
    assert second.name == "maml-trpo-cheetah-vel-20260101-120000-2"
    second.mkdir()
    assert default_run_path("maml-trpo", "cheetah-vel", root=tmp_path).name.endswith("-3")


def test_default_is_quick_maml_trpo_on_cheetah_vel():
    cfg = resolve_config()
    assert (cfg.algo, cfg.family, cfg.device) == ("maml-trpo", "cheetah-vel", "auto")
    assert cfg.algo_params.meta_batch_size == 10 and cfg.algo_params.horizon == 100
