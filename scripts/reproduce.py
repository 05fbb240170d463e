"""Evidence of learning: held-out adaptation of a meta-learner against honest baselines.

For every family and seed this trains a fresh run (``robometa train``'s trainer with
the algorithm's quick preset and the settings below; an existing run under ``--root``
is resumed, a finished one reused), then evaluates it with ``robometa evaluate``'s
Python API (:func:`robometa.eval.evaluate.evaluate`) on the family's held-out test
split, and prints a Markdown table (``--out`` also writes JSON) of, per family:

* the meta-learner's return (and success rate, where the family has one) before
  adapting and after each adaptation step (MAML, Reptile, Meta-LSTM: step 0..K) or at
  each episode of a trial (RL² and other memory learners: episode 1..K), mean ± standard
  error over the training seeds (each run's value is its mean over the held-out tasks
  and evaluation seeds); the step the learner was meta-trained to adapt by (what its
  ``best.pt`` was chosen at, on val) is in bold: it is the value the target judges;
* the ``multitask`` baseline (one policy trained on the same train tasks with the same
  settings and seed, without meta-learning, on as many episodes as the learner's
  meta-training sampled, fine-tuned like the learner):
  its step 0 and its best adapted value (the step 1..K with the highest mean over seeds);
* the ``ppo-scratch`` baseline (stable-baselines3 PPO from scratch on each held-out
  task, with the env steps the learner adapts with): its last step;
* wall time and env steps of a run (``checkpoints/latest.pt`` records both; a reused
  finished run reports the time it recorded, not 0);
* the target issue 14 sets for the family (:data:`TARGETS`) and whether it is met.

Honest evaluation (issue 14, checkpoint rule): evaluate picks each run's ``best.pt``,
chosen on the validation split by the trainer, or ``latest.pt`` where a run has no
best; nothing is ever chosen on the test tasks. Baselines are measured by the same
call, on the same tasks, evaluation seeds and experience per step. The multi-task
baseline's fine-tuning step size is chosen on val by evaluate itself
(``multitask_result``: it tries ``FINE_TUNE_LR_FACTORS`` x the run's ``inner_lr`` on
as many ``val`` tasks as are evaluated and keeps the best mean return over steps 1..K;
the JSON records ``fine_tune_lr`` and ``fine_tune_lr_rule``), and its checkpoint is
chosen like the learner's (its own ``best`` on the same val tasks, by its return
before fine-tuning, or ``latest`` where the learner's is). Its number of
steps is the learner's. Its "best adapted" column takes the best step on the test
tasks: that favours the baseline, so a learner that beats it beats it at every step.
A memory learner's (RL², SNAIL, the context learners) multitask baseline is its own
policy and PPO without memory (``memory=False``), trained on as many trials; it has
no step size to choose. Learners with no setting without meta-learning have no
multitask baseline; evaluate says why and the table shows ``n/a``.

Evaluation results are kept in ``<run>/eval/reproduce/`` and reused while they are
newer than the run's checkpoints and were made with the same settings, so rerunning
the script (e.g. with ``--evaluate-only``) costs nothing more; ``--re-evaluate`` redoes
them. PPO from scratch does not depend on the run (only on the family, tasks, seeds and
budget), so its cached results are shared between the runs of a family under ``--root``.

    python scripts/reproduce.py                           # maml-trpo, cheetah-vel + cheetah-dir, 3 seeds
    python scripts/reproduce.py --algo maml-trpo --families all --out maml-trpo.json
    python scripts/reproduce.py --algo rl2 --families cheetah-dir cheetah-params
    python scripts/reproduce.py --families cheetah-vel --seeds 0 --iterations 40
    python scripts/reproduce.py --evaluate-only --root runs/reproduce --families all
    python scripts/reproduce.py --merge a.json b.json      # one table from several --out files
    python scripts/reproduce.py --device cuda             # learner on a GPU

``--evaluate-only`` trains no meta-learner: runs that are missing or unfinished under
``--root`` are listed and left out. Evaluating still trains what the baselines need:
the multitask policy trains on as many episodes as its run did (once; cached in
``<run>/eval/cache/``), and PPO from scratch trains one SB3 agent per held-out task and
evaluation seed (once per family). Cheaper evaluation: ``--eval-tasks N`` (default:
the run's ``eval_tasks``), ``--eval-seeds`` (default 0 1 2), ``--baselines ''`` (none).

Budget: about 5 to 8 minutes of meta-training per MAML quick run on an idle 2-core CPU,
the same again for its multitask baseline; PPO from scratch took about 1.5 minutes per
task and evaluation seed on a 2-core CPU shared with two training jobs (20 tasks x 3
seeds by default, shared by the runs of a family).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from robometa.algos import algorithm_names
from robometa.errors import RobometaError
from robometa.tasks import family_names

# Per-(algorithm, family) settings on top of the algorithm's quick preset (and the
# family's tuning of it, presets/<algo>/quick/<family>.yaml, where one exists). Seed 0
# of maml-trpo on cheetah-vel is the default `robometa train`. RL²: 180 iterations
# instead of the preset's 120 (about 8-9 minutes per seed on a busy 2-core CPU), so
# that seeds that learn to use their memory late still do by the end.
SETTINGS: dict[tuple[str, str], list[str]] = {
    ("rl2", "cheetah-dir"): ["iterations=180"],
    ("rl2", "cheetah-params"): ["iterations=180"],
    ("rl2", "cheetah-vel"): ["iterations=180"],
}
# The trainer's periodic evaluation (which chooses best.pt on val) for the gradient
# learners; other learners keep their preset's (RL²: trials of its trained length).
EVAL: dict[str, list[str]] = {
    algo: ["eval_every=25", "eval_tasks=20", "eval_steps=3"]
    for algo in ("maml-trpo", "maml-ppo", "reptile", "meta-lstm")
}

# Targets of issue 14 (deliverable 3: "held-out, after adaptation, 3 seeds"). Kinds:
#   success   -- success rate after adapting >= value;
#   gain      -- adapted return above the unadapted one by more than 2 standard errors
#                (of the per-seed gain, over seeds);
#   baselines -- adapted return above both the multitask baseline and PPO from scratch,
#                each at its best step, step 0 included (a baseline that does best
#                before adapting is held to that).
# "After adapting" is the step the learner was meta-trained to adapt by (bold in the table).
TARGETS: dict[str, dict[str, Any]] = {
    "reach": {"kind": "success", "value": 0.90},
    "push": {"kind": "success", "value": 0.60},
    "pick-place": {"kind": "success", "value": 0.30},
    "ant-dir": {"kind": "gain"},
    "ant-goal": {"kind": "gain"},
    "cheetah-params": {"kind": "baselines"},
    "ant-params": {"kind": "baselines"},
    "cheetah-terrain": {"kind": "baselines"},
    "ant-terrain": {"kind": "baselines"},
}
TARGET_SEEDS = 3  # the number of seeds

DEFAULT_FAMILIES = ["cheetah-dir", "cheetah-vel"]
DEFAULT_BASELINES = ("multitask", "ppo-scratch")
# The names robometa evaluate gives the baselines' curves in its summary (the multi-task
# baseline of a gradient learner is fine-tuned; a memory learner's has its memory removed).
METHOD_NAMES = {
    "multitask": ("multi-task + fine-tune", "multi-task (no memory)"),
    "ppo-scratch": ("PPO from scratch (SB3)",),
}
EVAL_NAME = "reproduce"  # <run>/eval/<EVAL_NAME>/: this script's evaluation of a run
RUN_NAME = "{algo}-{family}-seed{seed}"


# ---------------------------------------------------------------- runs


def run_status(path: Path) -> tuple[int, int] | None:
    """``(iterations done, planned)`` of a run directory, or ``None`` when it holds no run."""
    from robometa.trainer import Trainer

    if not (path / "config.yaml").is_file():
        return None
    return Trainer.check_resume(path)


def train_run(algo: str, family: str, seed: int, path: Path, extra: list[str], device: str = "cpu") -> None:
    """Train run ``path`` to its planned iterations: a new run, or the existing one resumed
    with its own settings (a finished run trains no more)."""
    from robometa.configs import resolve_config
    from robometa.trainer import Trainer

    if (path / "config.yaml").is_file():
        trainer = Trainer.resume(path)
    else:
        overrides = [*SETTINGS.get((algo, family), []), *EVAL.get(algo, []), *extra]
        cfg = resolve_config(
            algo=algo, preset="quick", overrides=overrides, family=family, seed=seed, device=device
        )
        trainer = Trainer.create(cfg, path)
    total, start = trainer.config.iterations, trainer.start_iteration
    if start < total:
        print(f"{path.name}: training iterations {start + 1}..{total}", flush=True)

    def report(p) -> None:
        done = p.iteration + 1
        if p.test_curve is not None or done % 10 == 0:
            curve = p.test_curve or p.result.curve
            split = "test" if p.test_curve is not None else "train"
            print(
                f"  {path.name} iteration {done}/{total}: {split} return "
                + ", ".join(f"{r:.1f}" for r in curve.return_mean)
                + f"  ({p.seconds:.1f} s/iteration)",
                flush=True,
            )

    trainer.train(report)


def share_ppo_cache(path: Path, root: Path, family: str) -> None:
    """Copy the PPO-from-scratch results other runs of ``family`` under ``root`` cached
    into ``path``'s cache. They depend only on what their cache key (a hash of the
    family, tasks, seeds and budget) holds, so evaluate uses a copy only when its own
    settings give the same key, exactly as if it had computed it here."""
    cache = path / "eval" / "cache"
    for src in sorted(root.glob("*/eval/cache/ppo-scratch-*.json")):
        dst = cache / src.name
        if dst.exists() or src.parent == cache:
            continue
        try:
            if json.loads(src.read_text())["settings"]["family"] != family:
                continue
        except (OSError, ValueError, KeyError, TypeError):
            continue
        cache.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(src.read_bytes())


def cached_summary(path: Path, request: dict[str, Any]) -> dict[str, Any] | None:
    """This script's earlier evaluation of run ``path`` if it answers ``request`` and is
    newer than every checkpoint of the run; else ``None``."""
    file = path / "eval" / EVAL_NAME / "summary.json"
    if not file.is_file():
        return None
    if any(ck.stat().st_mtime >= file.stat().st_mtime for ck in (path / "checkpoints").glob("*.pt")):
        return None
    try:
        summary = json.loads(file.read_text())
    except ValueError:
        return None
    st = summary.get("settings", {})
    answered = set(st.get("skipped_baselines", {})) | {
        b for b, names in METHOD_NAMES.items() if any(n in summary.get("methods", {}) for n in names)
    }
    same = (
        st.get("split") == "test"
        and st.get("seeds") == request["seeds"]
        and (request["tasks"] is None or len(st.get("tasks", [])) == request["tasks"])
        and st.get("steps") == request["steps"]
        and set(request["baselines"]) <= answered
    )
    return summary if same else None


def evaluate_run(
    path: Path,
    n_tasks: int | None,
    seeds: list[int],
    steps: int | None,
    baselines: list[str],
    device: str = "cpu",
    fresh: bool = False,
) -> dict[str, Any]:
    """``robometa evaluate``'s summary of run ``path`` on the held-out test split with the
    run's default checkpoint rule, against ``baselines`` (reused when cached, see
    :func:`cached_summary`). ``steps``: ``None`` for the run's ``eval_steps``."""
    from robometa.eval.evaluate import evaluate, open_run

    if steps is None:
        steps = open_run(path)[1].eval_steps
    request = {"tasks": n_tasks, "seeds": seeds, "steps": steps, "baselines": baselines}
    if not fresh and (summary := cached_summary(path, request)) is not None:
        print(f"{path.name}: evaluation reused from {path / 'eval' / EVAL_NAME}", flush=True)
        return summary
    _, summary = evaluate(
        [path],
        split="test",
        n_tasks=n_tasks,
        steps=steps,
        seeds=seeds,
        baselines=baselines,
        name=EVAL_NAME,
        checkpoint=None,  # best chosen on val, else latest: never chosen on test
        device=device,
        progress=lambda message: print(f"  {path.name}: {message}", flush=True),
    )
    return summary


def run_budget(path: Path) -> dict[str, Any]:
    """The whole run's cost (``latest.pt``) and the adaptation step it was trained for."""
    from robometa.eval.evaluate import load_run

    latest = load_run(path, "latest")
    return {
        "iterations": latest.iteration,
        "env_steps": latest.env_steps,
        "train_seconds": latest.train_seconds,
        "trained_step": latest.algo.trained_steps,
    }


# ---------------------------------------------------------------- pure: records, rows, table


def _curve(method: dict[str, Any]) -> dict[str, Any]:
    rows = method["curve"]
    success = [r["success_mean"] for r in rows] if rows and "success_mean" in rows[0] else None
    return {"return": [r["mean"] for r in rows], "success": success}


def run_record(
    summary: dict[str, Any], *, algo: str, family: str, seed: int, run_dir: str, budget: dict[str, Any]
) -> dict[str, Any]:
    """One run's numbers, from evaluate's ``summary`` and :func:`run_budget`'s ``budget``."""
    methods, st = summary["methods"], summary["settings"]
    learner = methods.get(algo) or next(iter(methods.values()))  # evaluate lists the run first
    baselines: dict[str, Any] = {}
    for b, why in st.get("skipped_baselines", {}).items():
        baselines[b] = {"skipped": why}
    for b, names in METHOD_NAMES.items():
        for name in (n for n in names if n in methods):
            notes = methods[name].get("notes") or {}
            baselines[b] = {
                **_curve(methods[name]),
                **{k: notes[k] for k in ("fine_tune_lr", "fine_tune_lr_rule", "training") if k in notes},
            }
    return {
        "algo": algo,
        "family": family,
        "seed": seed,
        "run_dir": run_dir,
        "x": learner["x"],
        **budget,
        "eval": {
            "dir": str(Path(run_dir) / "eval" / EVAL_NAME),
            "split": st["split"],
            "tasks": len(st["tasks"]),
            "seeds": st["seeds"],
            "steps": st["steps"],
            "checkpoint": st["checkpoints"][0],
        },
        "learner": _curve(learner),
        "baselines": baselines,
    }


def mean_se(values: list[float]) -> dict[str, Any]:
    """Mean and standard error (``None`` with one value) over seeds."""
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else None
    return {"mean": statistics.fmean(values), "se": se, "n": len(values)}


def _per_step(runs: list[dict[str, Any]], key: str) -> list[dict[str, Any]] | None:
    if any(r is None or r.get(key) is None for r in runs):
        return None
    return [mean_se([r[key][k] for r in runs]) for k in range(len(runs[0][key]))]


def _baseline_row(records: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    """A baseline over seeds: step 0, best adapted step (highest mean), last step."""
    got = [r["baselines"].get(name) for r in records]
    if all(g is None for g in got):
        return None
    skipped = next((g["skipped"] for g in got if g is not None and "skipped" in g), None)
    if skipped is not None or any(g is None for g in got):
        return {"skipped": skipped or f"not measured for every seed of {records[0]['family']}"}
    ret, succ = _per_step(got, "return"), _per_step(got, "success")
    row: dict[str, Any] = {"return": ret, "success": succ, "step0": ret[0], "last": ret[-1]}
    if len(ret) > 1:
        best = max(range(1, len(ret)), key=lambda k: ret[k]["mean"])
        row.update(best_step=best, best=ret[best])
    lrs = [g.get("fine_tune_lr") for g in got if g.get("fine_tune_lr") is not None]
    if lrs:
        row["fine_tune_lr"] = lrs
        row["fine_tune_lr_rule"] = got[0].get("fine_tune_lr_rule")
    return row


def aggregate(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (algorithm, family): mean ± s.e. over the seeds' runs, and the target."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["algo"], r["family"]), []).append(r)
    rows = []
    for (algo, family), runs in groups.items():
        runs = sorted(runs, key=lambda r: r["seed"])
        protocol = {(r["x"], r["trained_step"], r["eval"]["tasks"], tuple(r["eval"]["seeds"])) for r in runs}
        lengths = {len(r["learner"]["return"]) for r in runs}
        if len(protocol) > 1 or len(lengths) > 1:
            raise RobometaError(
                f"the {algo} runs on {family} were evaluated differently (axis, trained step, tasks, "
                "seeds or steps); evaluate them alike (--re-evaluate) before pooling them"
            )
        steps = lengths.pop()
        adapted = min(runs[0]["trained_step"], steps - 1)
        seconds = [r["train_seconds"] for r in runs if r.get("train_seconds") is not None]
        checkpoints: dict[str, int] = {}
        for r in runs:
            ck = r["eval"]["checkpoint"]
            sel = ck.get("selection", {})
            how = f"{ck['checkpoint']} (on {sel['split']})" if sel.get("rule") == "best" else ck["checkpoint"]
            checkpoints[how] = checkpoints.get(how, 0) + 1
        row = {
            "algo": algo,
            "family": family,
            "seeds": [r["seed"] for r in runs],
            "x": runs[0]["x"],
            "adapted_step": adapted,
            "eval": {k: runs[0]["eval"][k] for k in ("split", "tasks", "seeds", "steps")},
            "checkpoints": checkpoints,
            "learner": {
                "return": _per_step([r["learner"] for r in runs], "return"),
                "success": _per_step([r["learner"] for r in runs], "success"),
                "gain": mean_se([r["learner"]["return"][adapted] - r["learner"]["return"][0] for r in runs]),
            },
            "baselines": {b: row_b for b in METHOD_NAMES if (row_b := _baseline_row(runs, b)) is not None},
            "train_seconds": mean_se(seconds) if len(seconds) == len(runs) else None,
            "env_steps": mean_se([float(r["env_steps"]) for r in runs]),
            "iterations": sorted({r["iterations"] for r in runs}),
        }
        row["target"] = judge(row)
        rows.append(row)
    return rows


def judge(row: dict[str, Any]) -> dict[str, Any]:
    """Issue 14's target for the row's family, and whether the row's numbers meet it:
    ``{"target", "met": True | False | None (cannot tell), "text"}``."""
    spec = TARGETS.get(row["family"])
    if spec is None:
        return {"target": None, "met": None, "text": "-"}
    k = row["adapted_step"]
    learner = row["learner"]
    n = len(row["seeds"])
    met: bool | None
    if spec["kind"] == "success":
        target = f">= {spec['value']:.2f} success"
        if learner["success"] is None:
            met, detail = None, "no success recorded"
        else:
            value = learner["success"][k]["mean"]
            met, detail = value >= spec["value"], f"{value:.2f}"
    elif spec["kind"] == "gain":
        target = "adapted > unadapted + 2 s.e."
        gain = learner["gain"]
        if gain["se"] is None:
            met, detail = None, "needs >= 2 seeds"
        else:
            met = gain["mean"] > 2 * gain["se"]
            detail = f"gain {gain['mean']:+.1f}, 2 s.e. {2 * gain['se']:.1f}"
    elif spec["kind"] == "baselines":
        target = "adapted > multitask and PPO"
        value, value_se = learner["return"][k]["mean"], learner["return"][k]["se"]
        bests, missing = [], []
        for b in ("multitask", "ppo-scratch"):
            got = row["baselines"].get(b)
            if got is None or "return" not in got:
                missing.append(b)
            else:
                bests.append(max(got["return"], key=lambda r: r["mean"]))
        if missing:
            met, detail = None, f"{' and '.join(missing)} not measured"
        else:
            met = all(value > b["mean"] for b in bests)
            detail = f"{value:.1f} vs " + " / ".join(f"{b['mean']:.1f}" for b in bests)
            # A margin inside the standard errors is met by the letter, not shown: say so.
            closest = min(bests, key=lambda b: abs(value - b["mean"]))
            if met and value_se is not None and closest["se"] is not None:
                se = (value_se**2 + closest["se"] ** 2) ** 0.5
                if value - closest["mean"] < se:
                    detail += f"; margin {value - closest['mean']:.1f} < 1 s.e. of the difference ({se:.1f})"
    else:
        raise RobometaError(f"unknown target kind {spec['kind']!r} for {row['family']}")
    verdict = {True: "yes", False: "no", None: "cannot tell"}[met]
    text = f"{target}: {verdict} ({detail})"
    if n < TARGET_SEEDS:
        text += f"; {n} seed{'s' if n > 1 else ''}, the target asks {TARGET_SEEDS}"
    return {"target": target, "met": met, "text": text}


def fmt(stat: dict[str, Any] | None, digits: int = 1) -> str:
    """``-70.6 ± 1.3`` (no ± with one seed)."""
    if stat is None:
        return "-"
    if stat["se"] is None:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['se']:.{digits}f}"


def _cell(ret: dict[str, Any] | None, succ: dict[str, Any] | None) -> str:
    return fmt(ret) if succ is None else f"{fmt(ret)}; succ {fmt(succ, 2)}"


def step_label(x: str, k: int) -> str:
    """Column title of curve index ``k``: ``step 0 (before)`` / ``step k``, or ``episode k+1``."""
    if x == "episode":
        return f"episode {k + 1}"
    return "step 0 (before)" if k == 0 else f"step {k}"


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown tables, one per algorithm (its curve axis), with notes below each."""
    from robometa.eval.evaluate import format_duration

    out = []
    for algo in dict.fromkeys(r["algo"] for r in rows):
        group = [r for r in rows if r["algo"] == algo]
        x = group[0]["x"]
        K = max(len(r["learner"]["return"]) for r in group)
        heads = [step_label(x, k) for k in range(K)]
        heads += ["multitask: step 0", "multitask: best adapted", "PPO scratch: last"]
        heads += ["wall time / run", "env steps / run", "target (issue 14)"]
        lines = [
            f"**{algo}** on the held-out test split (bold: after the adaptation it was meta-trained for)",
            "",
            "| family | seeds | " + " | ".join(heads) + " |",
            "|---|---|" + "---:|" * (len(heads) - 1) + "---|",
        ]
        notes = []
        for r in group:
            ret, succ = r["learner"]["return"], r["learner"]["success"]
            cells = []
            for k in range(K):
                if k >= len(ret):
                    cells.append("")
                    continue
                c = _cell(ret[k], None if succ is None else succ[k])
                cells.append(f"**{c}**" if k == r["adapted_step"] else c)
            mt, ppo = r["baselines"].get("multitask"), r["baselines"].get("ppo-scratch")
            if mt is None:
                cells += ["", ""]
            elif "skipped" in mt:
                cells += ["n/a", "n/a"]
                notes.append(f"multitask n/a for {r['family']}: {mt['skipped']}")
            else:
                s = mt["success"]
                cells.append(_cell(mt["step0"], None if s is None else s[0]))
                if "best" in mt:
                    best = _cell(mt["best"], None if s is None else s[mt["best_step"]])
                    cells.append(f"{best} ({step_label(x, mt['best_step'])})")
                else:
                    cells.append("-")
            if mt is not None and "fine_tune_lr" in mt:
                lrs = ", ".join(f"{lr:.3g}" for lr in mt["fine_tune_lr"])
                notes.append(
                    f"multitask fine-tuning step size on {r['family']}, chosen on val per seed: {lrs}"
                )
            if ppo is None:
                cells.append("")
            elif "skipped" in ppo:
                cells.append("n/a")
                notes.append(f"ppo-scratch n/a for {r['family']}: {ppo['skipped']}")
            else:
                s = ppo["success"]
                cells.append(_cell(ppo["last"], None if s is None else s[-1]))
                notes.append(
                    "PPO from scratch depends on the family, tasks and evaluation seeds, not on the run: "
                    "every seed's run shares one measurement (± 0)"
                )
            t = r["train_seconds"]
            cells.append("not recorded" if t is None else format_duration(t["mean"]))
            cells.append(f"{r['env_steps']['mean'] / 1e6:.2f}M")
            cells.append(r["target"]["text"])
            lines.append(f"| {r['family']} | {len(r['seeds'])} | " + " | ".join(cells) + " |")
        e = group[0]["eval"]
        checkpoints = {how: n for r in group for how, n in r["checkpoints"].items()}
        lines.append("")
        lines.append(
            f"Mean ± s.e. over seeds of each run's mean over {e['tasks']} {e['split']} tasks x "
            f"{len(e['seeds'])} evaluation seed(s); return, and success rate where the family has "
            f"one. Checkpoints: {', '.join(sorted(checkpoints))} (never chosen on test)."
        )
        out.append("\n".join(lines + [f"- {n}" for n in dict.fromkeys(notes)]))
    return "\n\n".join(out)


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--algo", default="maml-trpo", choices=algorithm_names())
    ap.add_argument(
        "--families",
        nargs="+",
        default=DEFAULT_FAMILIES,
        choices=[*family_names(), "all"],
        help="task families, or all (every registered family)",
    )
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds")
    ap.add_argument("--iterations", type=int, help="override the iteration count of every new run")
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="config override of new runs"
    )
    ap.add_argument("--device", default="cpu", help="where the policy and learner run: cpu | cuda | auto")
    ap.add_argument("--root", default="runs/reproduce", help="where the runs go (existing ones are resumed)")
    ap.add_argument("--run-name", default=RUN_NAME, help=f"run directory under --root (default {RUN_NAME})")
    ap.add_argument(
        "--baselines",
        default=",".join(DEFAULT_BASELINES),
        help="comma-separated robometa evaluate baselines ('' for none; default multitask,ppo-scratch)",
    )
    ap.add_argument(
        "--eval-tasks", type=int, help="held-out tasks per evaluation (default: the run's eval_tasks)"
    )
    ap.add_argument(
        "--eval-seeds", nargs="+", type=int, default=[0, 1, 2], help="evaluation seeds (default 0 1 2)"
    )
    ap.add_argument(
        "--adapt-steps",
        type=int,
        help="steps (MAML) / extra episodes (RL²) evaluated after step 0 (default: the run's eval_steps)",
    )
    ap.add_argument(
        "--evaluate-only",
        action="store_true",
        help="train no meta-learner: tabulate the finished runs under --root (missing or unfinished ones are "
        "listed and skipped); baselines are still measured (the multitask one trains once, cached)",
    )
    ap.add_argument("--re-evaluate", action="store_true", help="do not reuse earlier evaluations")
    ap.add_argument("--out", help="also write the results as JSON here")
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="only tabulate earlier --out files")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.merge:
            records = []
            for file in args.merge:
                data = json.loads(Path(file).read_text())
                runs = data.get("runs") if isinstance(data, dict) else None
                if not isinstance(runs, list) or not all(
                    isinstance(r, dict) and "learner" in r for r in runs
                ):
                    raise RobometaError(f"{file} is not an --out file of this version of reproduce.py")
                records += runs
            print(table(aggregate(records)))
            return 0
        families = family_names() if "all" in args.families else list(dict.fromkeys(args.families))
        baselines = [b for b in args.baselines.split(",") if b]
        extra = [*args.set, *([f"iterations={args.iterations}"] if args.iterations else [])]
        root = Path(args.root)
        records, skipped = [], []
        for family in families:
            for seed in args.seeds:
                path = root / args.run_name.format(algo=args.algo, family=family, seed=seed)
                if args.evaluate_only:
                    status = run_status(path)
                    if status is None or status[0] < status[1]:
                        why = (
                            "no run" if status is None else f"unfinished: {status[0]}/{status[1]} iterations"
                        )
                        skipped.append(f"{path} ({why})")
                        print(f"skipping {path}: {why}", flush=True)
                        continue
                else:
                    train_run(args.algo, family, seed, path, extra, args.device)
                if "ppo-scratch" in baselines:
                    share_ppo_cache(path, root, family)
                summary = evaluate_run(
                    path,
                    args.eval_tasks,
                    args.eval_seeds,
                    args.adapt_steps,
                    baselines,
                    args.device,
                    args.re_evaluate,
                )
                rec = run_record(
                    summary,
                    algo=args.algo,
                    family=family,
                    seed=seed,
                    run_dir=str(path),
                    budget=run_budget(path),
                )
                records.append(rec)
                print(
                    f"{family} seed {seed}: held-out return "
                    + ", ".join(f"{v:.1f}" for v in rec["learner"]["return"])
                    + f" by {rec['x'].replace('_', ' ')}",
                    flush=True,
                )
    except RobometaError as exc:
        print(f"reproduce: error: {exc}", file=sys.stderr)
        return 2
    rows = aggregate(records) if records else []
    print()
    print(table(rows) if rows else "no finished runs to tabulate")
    if skipped:
        print(f"\nleft out ({len(skipped)} runs missing or unfinished under {root}):")
        for line in skipped:
            print(f"  {line}")
    if args.out:
        payload = {
            "algo": args.algo,
            "written": time.strftime("%Y-%m-%d %H:%M:%S"),
            "targets": TARGETS,
            "runs": records,
            "rows": rows,
            "missing": skipped,
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(payload, indent=2))
    return 0 if records else 1


if __name__ == "__main__":
    sys.exit(main())
