"""scripts/reproduce.py: the results table of issue 14 (targets, baselines, seeds), its
reuse of finished runs and evaluations, and the RL² alias scripts/reproduce_rl2.py."""

from __future__ import annotations

import json
import os

import pytest
from toy_problems import load_script

from robometa.errors import RobometaError
from robometa.tasks import family_names

rp = load_script("reproduce")


def _record(family="cheetah-params", seed=0, ret=(-10.0, -5.0, -4.0), succ=None, algo="maml-trpo", **kw):
    """A run's record as run_record makes it, with made-up numbers."""
    rec = {
        "algo": algo,
        "family": family,
        "seed": seed,
        "run_dir": f"/runs/{algo}-{family}-seed{seed}",
        "x": kw.get("x", "adapt_step"),
        "iterations": 150,
        "env_steps": 3_000_000,
        "train_seconds": kw.get("seconds", 330.0),
        "trained_step": kw.get("trained_step", 1),
        "eval": {
            "dir": "",
            "split": "test",
            "tasks": kw.get("tasks", 20),
            "seeds": [0, 1, 2],
            "steps": len(ret) - 1,
            "checkpoint": {"checkpoint": "best", "selection": {"rule": "best", "split": "val"}},
        },
        "learner": {"return": list(ret), "success": None if succ is None else list(succ)},
        "baselines": kw.get("baselines", {}),
    }
    return rec


def _baseline(ret, succ=None, lr=None):
    b = {"return": list(ret), "success": None if succ is None else list(succ)}
    if lr is not None:
        b.update(fine_tune_lr=lr, fine_tune_lr_rule="chosen on val (mean return over steps 1..K)")
    return b


def test_mean_and_standard_error_over_seeds_per_step():
    rows = rp.aggregate([_record(seed=0, ret=(-10, -4, -6)), _record(seed=1, ret=(-12, -8, -6))])
    (row,) = rows
    ret = row["learner"]["return"]
    assert [r["mean"] for r in ret] == [-11, -6, -6]
    assert ret[0]["se"] == pytest.approx(1.0) and ret[2]["se"] == 0
    assert row["seeds"] == [0, 1] and row["adapted_step"] == 1
    assert row["learner"]["gain"]["mean"] == pytest.approx(5.0)  # step 1 minus step 0, per seed
    assert row["env_steps"]["mean"] == 3e6 and row["train_seconds"]["mean"] == 330.0


def test_success_target_met_or_not_from_the_adapted_step():
    def row(succ_at_1):
        recs = [_record("reach", s, (-50, -30, -20), (0.1, succ_at_1, 1.0)) for s in range(3)]
        return rp.aggregate(recs)[0]["target"]

    miss = row(0.56)
    assert miss["met"] is False and miss["text"] == ">= 0.90 success: no (0.56)"
    # step 2 (beyond the trained step 1) reaching 1.0 does not count
    assert row(0.9)["met"] is True and row(0.9)["text"] == ">= 0.90 success: yes (0.90)"
    assert rp.aggregate([_record("push", s, (-5, -4), (0.5, 0.61)) for s in range(3)])[0]["target"]["met"]
    assert not rp.aggregate([_record("pick-place", s, (-5, -4), (0.1, 0.29)) for s in range(3)])[0]["target"][
        "met"
    ]


def test_gain_target_needs_more_than_two_standard_errors():
    clear = [_record("ant-dir", s, (-10, -10 + g)) for s, g in enumerate((5.0, 6.0, 7.0))]
    t = rp.aggregate(clear)[0]["target"]
    assert t["met"] is True and t["text"].startswith("adapted > unadapted + 2 s.e.: yes (gain +6.0")
    noisy = [_record("ant-goal", s, (-10, -10 + g)) for s, g in enumerate((-5.0, 1.0, 10.0))]
    assert rp.aggregate(noisy)[0]["target"]["met"] is False
    # gain 3.0 with s.e. 2.08: above one s.e., not two
    between = [_record("ant-dir", s, (-10, -10 + g)) for s, g in enumerate((0.0, 2.0, 7.0))]
    assert rp.aggregate(between)[0]["target"]["met"] is False
    one = rp.aggregate([_record("ant-dir", 0, (-10, 50))])[0]["target"]
    assert one["met"] is None and "cannot tell" in one["text"] and "1 seed, the target asks 3" in one["text"]


def test_baselines_target_compares_with_their_best_step():
    def target(mt, ppo, ret=(-60, -40, -45)):
        bl = {"multitask": _baseline(mt, lr=0.03), "ppo-scratch": _baseline(ppo)}
        return rp.aggregate([_record("cheetah-params", s, ret, baselines=bl) for s in range(3)])[0]

    row = target((-70, -50, -45), (-200, -150, -120))
    assert (
        row["baselines"]["multitask"]["best_step"] == 2
        and row["baselines"]["multitask"]["best"]["mean"] == -45
    )
    assert row["target"]["met"] is True
    assert row["target"]["text"] == "adapted > multitask and PPO: yes (-40.0 vs -45.0 / -120.0)"
    # the multitask baseline's best step (2) beats the learner's adapted step: not met
    assert target((-70, -50, -39), (-200, -150, -120))["target"]["met"] is False
    # so does PPO at any step
    assert target((-70, -50, -45), (-200, -30, -120))["target"]["met"] is False
    # a baseline is held to its best step, step 0 included: one that may skip adapting
    # scores its step 0 at any experience
    assert target((-10, -50, -45), (-200, -150, -120))["target"]["met"] is False
    # met by a margin inside the standard errors: met, and the text says how thin it is
    bl = {"multitask": _baseline((-70, -50, -45), lr=0.03), "ppo-scratch": _baseline((-200, -150, -120))}
    recs = [_record("cheetah-params", s, (-60, r, -45), baselines=bl) for s, r in enumerate((-50, -44, -38))]
    thin = rp.aggregate(recs)[0]["target"]
    assert thin["met"] is True and "margin 1.0 < 1 s.e. of the difference (3.5)" in thin["text"]
    skipped = {
        "multitask": {"skipped": "rl2 has no setting without meta-learning"},
        "ppo-scratch": _baseline((0, 0)),
    }
    recs = [_record("ant-terrain", s, (-1, 5), algo="rl2", x="episode", baselines=skipped) for s in range(3)]
    t = rp.aggregate(recs)[0]["target"]
    assert (
        t["met"] is None and t["text"] == "adapted > multitask and PPO: cannot tell (multitask not measured)"
    )


def test_families_without_a_target_and_every_target_family_is_registered():
    assert rp.aggregate([_record("cheetah-vel")])[0]["target"] == {"target": None, "met": None, "text": "-"}
    assert set(rp.TARGETS) <= set(family_names())
    assert {f for f, t in rp.TARGETS.items() if t["kind"] == "success"} == {"reach", "push", "pick-place"}
    assert {f for f, t in rp.TARGETS.items() if t["kind"] == "gain"} == {"ant-dir", "ant-goal"}


def test_table_cells_axes_baselines_and_times():
    bl = {
        "multitask": _baseline((-70, -50, -45), (0.0, 0.1, 0.2), lr=0.3),
        "ppo-scratch": _baseline((-200, -150, -120), (0.0, 0.0, 0.05)),
    }
    recs = [
        _record("reach", s, (-60, -40, -45), (0.5, 0.95, 0.9), baselines=bl, seconds=None) for s in (0, 1)
    ]
    text = rp.table(rp.aggregate(recs))
    assert (
        "| family | seeds | step 0 (before) | step 1 | step 2 | multitask: step 0 | multitask: best adapted"
        in text
    )
    line = next(ln for ln in text.splitlines() if ln.startswith("| reach |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:5] == ["reach", "2", "-60.0 ± 0.0; succ 0.50 ± 0.00", "**-40.0 ± 0.0; succ 0.95 ± 0.00**", "-45.0 ± 0.0; succ 0.90 ± 0.00"]  # fmt: skip
    assert cells[5:8] == ["-70.0 ± 0.0; succ 0.00 ± 0.00", "-45.0 ± 0.0; succ 0.20 ± 0.00 (step 2)", "-120.0 ± 0.0; succ 0.05 ± 0.00"]  # fmt: skip
    assert cells[8:10] == ["not recorded", "3.00M"]
    assert cells[10] == ">= 0.90 success: yes (0.95); 2 seeds, the target asks 3"
    assert "chosen on val per seed: 0.3, 0.3" in text and "never chosen on test" in text
    # memory learners: episodes 1..K; a recorded wall time is shown
    rl2 = [_record("cheetah-dir", s, (10, 20), algo="rl2", x="episode", seconds=600.0) for s in (0, 1, 2)]
    text = rp.table(rp.aggregate(rl2))
    assert "| episode 1 | episode 2 |" in text and "| 10 min 00 s |" in text and "**20.0 ± 0.0**" in text


def test_runs_evaluated_differently_are_not_pooled():
    with pytest.raises(RobometaError, match="evaluated differently"):
        rp.aggregate([_record(seed=0), _record(seed=1, tasks=40)])
    with pytest.raises(RobometaError, match="evaluated differently"):
        rp.aggregate([_record(seed=0), _record(seed=1, ret=(-1, -2))])


def _summary(algo="maml-trpo", skipped=None, with_mt=True, n_tasks=2, seeds=(0,), steps=2):
    curve = [{"step": k, "mean": -10.0 + k} for k in range(steps + 1)]
    methods = {algo: {"x": "adapt_step", "curve": curve, "notes": {}}}
    if with_mt:
        methods["multi-task + fine-tune"] = {
            "x": "adapt_step",
            "curve": [{"step": k, "mean": -20.0 + k} for k in range(steps + 1)],
            "notes": {
                "fine_tune_lr": 0.03,
                "fine_tune_lr_rule": "chosen on val (mean return over steps 1..K)",
            },
        }
    return {
        "settings": {
            "split": "test",
            "tasks": [{}] * n_tasks,
            "seeds": list(seeds),
            "steps": steps,
            "checkpoints": [{"checkpoint": "best", "selection": {"rule": "best", "split": "val"}}],
            "skipped_baselines": skipped or {},
        },
        "methods": methods,
    }


def test_run_record_reads_evaluates_summary():
    budget = {"iterations": 3, "env_steps": 100, "train_seconds": 12.5, "trained_step": 1}
    rec = rp.run_record(
        _summary(), algo="maml-trpo", family="cheetah-vel", seed=4, run_dir="/r", budget=budget
    )
    assert rec["learner"] == {"return": [-10.0, -9.0, -8.0], "success": None}
    assert rec["baselines"]["multitask"]["return"] == [-20.0, -19.0, -18.0]
    assert rec["baselines"]["multitask"]["fine_tune_lr"] == 0.03 and rec["train_seconds"] == 12.5
    assert rec["eval"]["tasks"] == 2 and rec["eval"]["checkpoint"]["checkpoint"] == "best"
    why = "rl2 has no setting without meta-learning"
    rec = rp.run_record(
        _summary("rl2", {"multitask": why}, False),
        algo="rl2",
        family="cheetah-vel",
        seed=0,
        run_dir="/r",
        budget=budget,
    )
    assert rec["baselines"] == {"multitask": {"skipped": why}}
    assert "multitask n/a for cheetah-vel: " + why in rp.table(rp.aggregate([rec]))
    # A memory learner's multi-task baseline (its policy without memory) is the multitask column.
    summary = _summary("rl2", with_mt=False)
    summary["methods"]["multi-task (no memory)"] = {
        "x": "episode",
        "curve": [{"step": k, "mean": -30.0} for k in range(3)],
        "notes": {},
    }
    rec = rp.run_record(summary, algo="rl2", family="cheetah-vel", seed=0, run_dir="/r", budget=budget)
    assert rec["baselines"]["multitask"]["return"] == [-30.0] * 3
    assert "fine_tune_lr" not in rec["baselines"]["multitask"]


def test_an_evaluation_is_reused_only_when_it_answers_and_is_newer_than_the_checkpoints(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    ck = run / "checkpoints" / "latest.pt"
    ck.write_bytes(b"x")
    req = {"tasks": 2, "seeds": [0], "steps": 2, "baselines": ["multitask"]}
    assert rp.cached_summary(run, req) is None
    out = run / "eval" / rp.EVAL_NAME / "summary.json"
    out.parent.mkdir(parents=True)
    out.write_text(json.dumps(_summary()))
    os.utime(ck, (1, 1))
    assert rp.cached_summary(run, req) is not None
    assert rp.cached_summary(run, {**req, "tasks": None}) is not None  # the run's default
    assert rp.cached_summary(run, {**req, "tasks": 3}) is None
    assert rp.cached_summary(run, {**req, "seeds": [0, 1]}) is None
    assert rp.cached_summary(run, {**req, "steps": 3}) is None
    assert rp.cached_summary(run, {**req, "baselines": ["multitask", "ppo-scratch"]}) is None
    out.write_text(json.dumps(_summary(skipped={"ppo-scratch": "why"})))
    os.utime(ck, (1, 1))
    assert rp.cached_summary(run, {**req, "baselines": ["multitask", "ppo-scratch"]}) is not None
    os.utime(ck)  # trained further after the evaluation: stale
    os.utime(out, (2, 2))
    assert rp.cached_summary(run, req) is None


def test_evaluate_only_lists_missing_runs_of_every_family(tmp_path, capsys):
    out = tmp_path / "t.json"
    code = rp.main(
        ["--families", "all", "--seeds", "0", "--root", str(tmp_path), "--evaluate-only", "--out", str(out)]
    )
    assert code == 1
    text = capsys.readouterr().out
    for family in family_names():
        assert f"maml-trpo-{family}-seed0: no run" in text
    assert json.loads(out.read_text())["missing"][0].endswith("(no run)")


def test_rl2_alias_translates_its_flags():
    alias = load_script("reproduce_rl2")
    argv = alias.translate(["--family", "cheetah-vel", "--seeds", "0", "1", "--trials", "2", "--set", "a=1"])
    args = rp.parse_args(argv)
    assert (args.algo, args.families, args.seeds, args.eval_seeds) == ("rl2", ["cheetah-vel"], [0, 1], [0, 1])
    assert args.run_name == "{family}-seed{seed}" and args.root == "runs/reproduce-rl2"
    assert args.eval_tasks == 40 and args.set == ["a=1"] and args.out == "runs/reproduce-rl2/cheetah-vel.json"
    assert rp.parse_args(alias.translate(["--eval-only", "--baselines", ""])).evaluate_only
    assert alias.translate(["--merge", "a.json"]) == ["--merge", "a.json"]


def test_rl2_runs_train_evaluate_and_are_reused(tmp_path, capsys):
    """A tiny RL² run: trained, evaluated per episode, then tabled again without training."""
    tiny = ["iterations=2", "eval_every=1", "eval_tasks=2", "meta_batch_size=2", "horizon=5", "hidden=8"]
    tiny += ["ppo_epochs=1", "minibatches=1"]
    argv = ["--algo", "rl2", "--families", "cheetah-vel", "--seeds", "0", "--root", str(tmp_path)]
    argv += ["--baselines", "", "--eval-seeds", "0", "1", *[f"--set={s}" for s in tiny]]
    assert rp.main([*argv, "--out", str(tmp_path / "a.json")]) == 0
    (rec,) = json.loads((tmp_path / "a.json").read_text())["runs"]
    run = tmp_path / "rl2-cheetah-vel-seed0"
    assert rec["run_dir"] == str(run) and rec["x"] == "episode" and rec["iterations"] == 2
    assert len(rec["learner"]["return"]) == 2 and rec["trained_step"] == 1  # trials of 2 episodes
    assert rec["train_seconds"] > 0 and rec["env_steps"] > 0
    assert rec["eval"]["checkpoint"]["selection"]["split"] == "val"
    weights = (run / "checkpoints" / "latest.pt").read_bytes()
    capsys.readouterr()
    assert rp.main([*argv, "--evaluate-only", "--out", str(tmp_path / "b.json")]) == 0
    assert "evaluation reused" in capsys.readouterr().out
    (again,) = json.loads((tmp_path / "b.json").read_text())["runs"]
    assert again == rec and (run / "checkpoints" / "latest.pt").read_bytes() == weights
    assert rp.main(["--merge", str(tmp_path / "a.json")]) == 0
    assert "| cheetah-vel | 1 | " in capsys.readouterr().out


def test_ppo_scratch_results_are_shared_between_runs_of_a_family_only(tmp_path):
    def cached(run, family, key):
        path = tmp_path / run / "eval" / "cache" / f"ppo-scratch-{key}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"settings": {"family": family}, "results": {}}))

    cached("a-seed0", "cheetah-vel", "k1")
    cached("b-seed0", "ant-dir", "k2")
    rp.share_ppo_cache(tmp_path / "a-seed1", tmp_path, "cheetah-vel")
    got = sorted(p.name for p in (tmp_path / "a-seed1" / "eval" / "cache").iterdir())
    assert got == ["ppo-scratch-k1.json"]
