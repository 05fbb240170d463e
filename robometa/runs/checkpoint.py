"""Checkpoint files: atomic writes, ``torch.load(weights_only=True)`` reads.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it
loads without unpickling arbitrary objects. It is written to a temporary file in
the same directory, flushed to disk, then renamed over the target: a crash or kill
leaves either the old file or the new one, never a torn one.

Schema of ``format`` :data:`FORMAT_VERSION` = 1 (``checkpoints/latest.pt`` and
``best.pt``, written by :class:`robometa.trainer.Trainer`)::

    format          1
    iteration       int: meta-iterations completed
    config          dict: the resolved config (``config_to_dict``) without the settings a
                    resume may change (iterations, device, log_video, learner_threads)
    algo            dict: the learner's ``state_dict()`` (below)
    task_rng        dict: numpy bit-generator state of the training-task stream
    best_score      float: best validation return so far (-inf before the first evaluation)
    best_metric     str: its tag, e.g. "adapt_val/return/step_1"       (absent before validation splits)
    selection_step  int: the adaptation step it is measured at          (absent before validation splits)
    best_iteration  int | None: the iteration that reached it
    env_steps       int: environment steps sampled so far
    train_seconds   float: wall time of the iterations so far           (absent in older checkpoints)
    selection       dict: how this file was chosen: {"rule": "latest", "iteration"} or
                    {"rule": "best", "split": "val", "metric", "step", "value", "iteration",
                    "split_seed", "tasks"}                                (absent in older checkpoints)

``algo`` of MAML (``maml-trpo``, ``maml-ppo``): ``policy`` (state dict), ``step_sizes``
(per-weight inner step sizes, or None), ``optimizer`` (Adam state, MAML-PPO; else
None), ``sampler`` (the training sampler's numpy and torch stream states). Of RL²:
``policy``, ``optimizer``, ``obs_norm`` / ``reward_norm`` / ``return_norm`` (running
statistics, or None), ``sampler``, ``shuffle`` (minibatch stream). Checkpoints
written before evaluation sampled on fresh seeded streams also hold an
``eval_sampler`` stream state under ``algo``; it is ignored on load. Readers treat
absent keys as documented above, so every format-1 file loads; a change that
older readers could not handle must raise :data:`FORMAT_VERSION` and migrate in
:func:`load_checkpoint`.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from robometa.errors import RobometaError

FORMAT_VERSION = 1


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new content, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(fd, 0o644)  # mkstemp makes 0600; run files are meant to be shared / served
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically save a checkpoint dict (``format`` is added)."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT_VERSION, **state}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; missing or corrupt files raise :class:`RobometaError`."""
    path = Path(path)
    if not path.is_file():
        raise RobometaError(f"checkpoint {str(path)!r} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated / foreign files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RobometaError(
            f"checkpoint {str(path)!r} is corrupt or not a robometa checkpoint ({first})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise RobometaError(
            f"checkpoint {str(path)!r} is not a robometa checkpoint (format {FORMAT_VERSION})"
        )
    return state
