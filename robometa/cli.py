"""The ``robometa`` command: thin over the library, owns the terminal.

Each subcommand is a ``register_<name>(subparsers)`` function that adds its parser
and sets ``func``; user mistakes raise :class:`RobometaError`, printed here as one
line with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from robometa.errors import RobometaError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but bad usage prints one line (plus the usage) and exits 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def _console():
    """A rich console; when output is piped, wide enough that tables do not fold."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=160)


# ------------------------------------------------------------------ tasks


def _cmd_tasks(args: argparse.Namespace) -> int:
    from robometa.tasks import family_names, make_family

    names = family_names()
    if args.family:
        make_family(args.family)  # validates the name
        names = [n for n in names if args.family in (n, make_family(n).env_id)]
    infos = [make_family(n).info() for n in names]
    if args.json:
        print(json.dumps([i.to_dict() for i in infos], indent=2))
        return 0
    from rich.table import Table

    table = Table(title="robometa task families")
    for col in ("family", "gymnasium id", "obs", "act", "horizon", "dt (s)", "train", "test", "success"):
        table.add_column(col, no_wrap=True)
    for i in infos:
        table.add_row(
            i.name,
            i.env_id,
            str(i.obs_dim),
            str(i.act_dim),
            str(i.horizon),
            f"{i.dt:g}",
            str(i.n_train),
            str(i.n_test),
            "yes" if i.has_success else "-",
        )
    console = _console()
    console.print(table)
    console.print("held-out test splits:")
    for i in infos:
        console.print(f"  {i.name}: {i.heldout}", highlight=False)
    return 0


def register_tasks(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tasks", help="list task families and their gymnasium ids")
    p.add_argument("family", nargs="?", help="show only this family (name or gymnasium id)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_tasks)


# ------------------------------------------------------------------ main

# Subcommands in the order `robometa --help` lists them.
COMMANDS = [register_tasks]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="robometa", description="Meta-reinforcement learning on simulated MuJoCo robots.")
    from robometa import __version__

    parser.add_argument("--version", action="version", version=f"robometa {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except RobometaError as exc:
        print(f"robometa: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
