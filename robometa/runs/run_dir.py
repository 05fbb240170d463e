"""The layout of a run directory, and the checks made before anything is written.

::

    runs/<name>/
      config.yaml            resolved config (what --resume reads back)
      events.out.tfevents.*  TensorBoard
      curves.jsonl           evaluation curves: a "val" and a "test" record per evaluation
      checkpoints/latest.pt  written atomically every checkpoint_every iterations
      checkpoints/best.pt    the state with the best validation return so far (never chosen
                             on test tasks); each checkpoint says how under "selection"
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from robometa.errors import RobometaError

DEFAULT_ROOT = Path("runs")


@dataclass(frozen=True)
class RunDir:
    """Paths of one run directory."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def latest(self) -> Path:
        return self.checkpoints / "latest.pt"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.pt"

    @property
    def curves(self) -> Path:
        return self.path / "curves.jsonl"


def default_run_path(algo: str, family: str, root: str | Path = DEFAULT_ROOT) -> Path:
    """``runs/<algo>-<family>-<YYYYmmdd-HHMMSS>`` (a suffix keeps it unique)."""
    base = Path(root) / f"{algo}-{family}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    return path


def _holds_files(path: Path) -> bool:
    """Whether a directory holds any file other than an interrupted atomic write's temporary."""
    return any(
        p.is_file() and not (p.name.startswith(".") and p.name.endswith(".tmp")) for p in path.rglob("*")
    )


def check_new(path: str | Path) -> RunDir:
    """A run directory that can be created: absent, or holding no file (a run killed
    while being created leaves at most empty folders and temporaries). Writes nothing."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or _holds_files(path)):
        raise RobometaError(
            f"run directory {str(path)!r} already exists; continue it with --resume {path} or pick another --run-dir"
        )
    return RunDir(path)


def check_resumable(path: str | Path) -> RunDir:
    """A run directory that holds a config (a run killed before its first checkpoint
    has no ``latest.pt`` and resumes from iteration 0). Writes nothing."""
    run = RunDir(Path(path))
    if not run.path.is_dir():
        raise RobometaError(f"run directory {str(run.path)!r} not found")
    if not run.config.is_file():
        raise RobometaError(f"{str(run.path)!r} is not a robometa run (no config.yaml)")
    return run
