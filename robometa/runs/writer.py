"""TensorBoard logging for runs: scalars, adaptation curves, layout, hyperparameters.

Tags group by purpose: ``adapt/`` (training-task adaptation curves), ``adapt_val/``
(validation curves: the only ones a choice such as the best checkpoint looks at),
``adapt_test/`` (held-out curves, for watching only), ``loss/``, ``train/``,
``time/``, ``sim/``. The custom-scalars layout puts every step of a curve in one
chart (TensorBoard's CUSTOM SCALARS tab).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary

from robometa.algos.base import AdaptationCurve

CURVE_PREFIX = {"train": "adapt", "val": "adapt_val", "test": "adapt_test"}


def curve_tag(split: str, x: str, step: int, metric: str = "return") -> str:
    """The tag of one point of a curve: ``adapt[_val|_test]/<metric>/step_k``.

    Memory-based learners (``x == "episode"``) name step s ``episode_{s+1}``: episode
    s+1 of a trial, after the s episodes seen before it.
    """
    name = f"step_{step}" if x == "adapt_step" else f"episode_{step + 1}"
    return f"{CURVE_PREFIX[split]}/{metric}/{name}"


def curve_scalars(curve: AdaptationCurve) -> dict[str, float]:
    """``adapt[_val|_test]/return/step_k`` (and ``.../success/step_k``) for every step of a curve."""
    out = {curve_tag(curve.split, curve.x, k): r for k, r in zip(curve.steps, curve.return_mean)}
    if curve.success_mean is not None:
        out.update(
            {
                curve_tag(curve.split, curve.x, k, "success"): s
                for k, s in zip(curve.steps, curve.success_mean)
            }
        )
    return out


def custom_scalars_layout() -> dict:
    """Charts with one line per adaptation step; regexes match any number of steps."""

    def multi(*regexes: str) -> list:
        return ["Multiline", list(regexes)]

    return {
        "adaptation (train tasks)": {
            "return": multi(r"adapt/return/(step|episode)_\d+"),
            "success": multi(r"adapt/success/(step|episode)_\d+"),
        },
        "adaptation (validation tasks: selects best.pt)": {
            "return": multi(r"adapt_val/return/(step|episode)_\d+"),
            "success": multi(r"adapt_val/success/(step|episode)_\d+"),
        },
        "adaptation (held-out tasks)": {
            "return": multi(r"adapt_test/return/(step|episode)_\d+"),
            "success": multi(r"adapt_test/success/(step|episode)_\d+"),
        },
        "time per iteration (s)": {
            "split": multi(r"time/(sampling|inner|outer)$"),
            "outer loop": multi(r"time/outer_.*"),
        },
        "meta-update": {
            "loss": multi(r"loss/.*"),
            "kl": multi(r"train/kl"),
            "line search": multi(r"train/line_search_.*"),
        },
    }


class RunWriter:
    """A ``SummaryWriter`` on a run directory.

    ``purge_step`` (on resume) hides events logged after the checkpoint the run
    resumed from, so a crash between a log and a checkpoint leaves no duplicates.
    """

    def __init__(self, log_dir: str | Path, purge_step: int | None = None):
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def start(self, hparams: Mapping[str, object], metrics: Mapping[str, float], config_yaml: str) -> None:
        """Once per new run: layout, resolved config as text, hyperparameters."""
        self.writer.add_custom_scalars(custom_scalars_layout())
        self.writer.add_text("config", "```yaml\n" + config_yaml + "\n```", 0)
        clean = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams.items()}
        exp, ssi, sei = hparams_summary(clean, dict(metrics))
        for summary in (exp, ssi, sei):
            self.writer.file_writer.add_summary(summary)

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def video(self, tag: str, frames, fps: float, step: int) -> None:
        """An animated GIF in TensorBoard's image plugin: ``frames (T, H, W, 3)`` uint8.

        This is the summary ``SummaryWriter.add_video`` writes, encoded with Pillow
        instead of moviepy (which torch needs for it and we do not depend on).
        """
        from torch.utils.tensorboard.summary import Summary

        from robometa.viz.video import gif_bytes

        _, h, w, c = frames.shape
        image = Summary.Image(height=h, width=w, colorspace=c, encoded_image_string=gif_bytes(frames, fps))
        self.writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)

    def curve(self, curve: AdaptationCurve, step: int) -> None:
        self.scalars(curve_scalars(curve), step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
