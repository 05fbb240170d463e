"""Run directories: resolved config, TensorBoard events, atomic checkpoints, resume.

Files and names only: nothing here knows a learner or draws a picture.
"""

from robometa.runs.checkpoint import (
    FORMAT_VERSION,
    atomic_write_bytes,
    atomic_write_text,
    load_checkpoint,
    save_checkpoint,
)
from robometa.runs.run_dir import RunDir, check_new, check_resumable, default_run_path
from robometa.runs.writer import RunWriter
from robometa.tags import curve_scalars, curve_tag, custom_scalars_layout

__all__ = [
    "FORMAT_VERSION",
    "RunDir",
    "RunWriter",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_new",
    "check_resumable",
    "curve_scalars",
    "curve_tag",
    "custom_scalars_layout",
    "default_run_path",
    "load_checkpoint",
    "save_checkpoint",
]
