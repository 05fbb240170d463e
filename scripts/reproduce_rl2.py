"""RL² evidence: an alias of ``scripts/reproduce.py --algo rl2`` with this script's old flags.

``scripts/reproduce.py`` does what this script did (train or resume one run per seed,
evaluate it on held-out trials, table episodes 1..K with mean ± s.e. over seeds) for
every learner, with the baselines and the honest checkpoint rule (``best.pt`` chosen
on val, never on test) of ``robometa evaluate``. This alias keeps the old layout and
protocol sizes: runs in ``<root>/<family>-seed<s>`` (default root
``runs/reproduce-rl2``, so earlier runs are reused), 40 held-out tasks x 5 trials
(evaluation seeds 0..4, fresh memory per trial), the JSON in ``<root>/<family>.json``.

    python scripts/reproduce_rl2.py --family cheetah-dir --seeds 0 1 2
    python scripts/reproduce_rl2.py --family cheetah-params --seeds 0 1 2 --baselines ''
    python scripts/reproduce_rl2.py --merge runs/reproduce-rl2/cheetah-dir.json runs/reproduce-rl2/cheetah-params.json

Other ``reproduce.py`` flags (``--baselines``, ``--device``, ``--re-evaluate``, ...) pass through.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path


def _reproduce():
    spec = importlib.util.spec_from_file_location("reproduce", Path(__file__).with_name("reproduce.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def translate(argv: list[str]) -> list[str]:
    """This script's flags as ``reproduce.py`` flags (unknown ones pass through)."""
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--family", default="cheetah-dir")
    ap.add_argument("--seeds", nargs="+", default=["0", "1", "2"])
    ap.add_argument("--root", default="runs/reproduce-rl2", help="where the runs go")
    ap.add_argument("--tasks", default="40", help="held-out tasks per evaluation")
    ap.add_argument("--trials", type=int, default=5, help="trials per held-out task (evaluation seeds)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    ap.add_argument("--eval-only", action="store_true", help="evaluate the existing runs without training")
    ap.add_argument("--out", help="write the results as JSON here (default: <root>/<family>.json)")
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="only print the tables of earlier --out files")
    args, rest = ap.parse_known_args(argv)
    if args.merge:
        return ["--merge", *args.merge, *rest]
    out = [
        "--algo", "rl2", "--families", args.family, "--seeds", *args.seeds,
        "--root", args.root, "--run-name", "{family}-seed{seed}",
        "--eval-tasks", args.tasks, "--eval-seeds", *map(str, range(args.trials)),
        "--out", args.out or str(Path(args.root) / f"{args.family}.json"),
    ]  # fmt: skip
    out += [f"--set={s}" for s in args.set]
    if args.eval_only:
        out.append("--evaluate-only")
    return out + rest


def main(argv: list[str] | None = None) -> int:
    return _reproduce().main(translate(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
