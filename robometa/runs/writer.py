"""TensorBoard logging for runs: scalars, encoded images, the layout, hyperparameters.

A thin, typed face of ``SummaryWriter`` that knows no learner and draws nothing: the
tag names and the custom-scalars layout come from :mod:`robometa.tags`, images
arrive encoded (PNG plots, GIF videos).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import Summary
from torch.utils.tensorboard.summary import hparams as hparams_summary

from robometa.tags import CONFIG_TEXT


class RunWriter:
    """A ``SummaryWriter`` on a run directory.

    ``purge_step`` (on resume) hides events logged after the checkpoint the run
    resumed from, so a crash between a log and a checkpoint leaves no duplicates.
    """

    def __init__(self, log_dir: str | Path, purge_step: int | None = None):
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def start(self, hparams: Mapping[str, object], metrics: Mapping[str, float], config_yaml: str) -> None:
        """Once per new run: the resolved config as text, and the HPARAMS tab
        (``metrics``: the tags it shows for the run, with placeholder values)."""
        self.writer.add_text(CONFIG_TEXT, "```yaml\n" + config_yaml + "\n```", 0)
        clean = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams.items()}
        exp, ssi, sei = hparams_summary(clean, dict(metrics))
        for summary in (exp, ssi, sei):
            self.writer.file_writer.add_summary(summary)

    def layout(self, layout: Mapping[str, Mapping[str, list]]) -> None:
        """The CUSTOM SCALARS layout (:func:`robometa.tags.custom_scalars_layout`)."""
        self.writer.add_custom_scalars(dict(layout))

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def image(self, tag: str, encoded: bytes, height: int, width: int, step: int, channels: int = 3) -> None:
        """An encoded image (PNG, or an animated GIF, which TensorBoard's image plugin
        plays) of ``height x width`` pixels; how ``SummaryWriter.add_video`` logs a
        video, without needing moviepy to encode it."""
        image = Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=encoded)
        self.writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
