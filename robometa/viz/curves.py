"""An adaptation curve as a picture: return (and success) against adaptation step.

The trainer logs it at every evaluation (``adapt_test/curve``), so "does it adapt?"
is one image in TensorBoard's IMAGES tab rather than K+1 lines that the
CUSTOM SCALARS tab draws in one colour.
"""

from __future__ import annotations

import io

from robometa.algos.base import AdaptationCurve
from robometa.tags import AXIS_TITLES, step_number


def curve_png(
    curve: AdaptationCurve, title: str, mark_step: int | None = None, dpi: int = 80
) -> tuple[bytes, int, int]:
    """``(png, height, width)``: the curve's mean return per step with a band of one
    standard deviation over tasks, and its success rate beside it where it has one.
    ``mark_step`` draws a dotted line at that step (the adaptation training taught).
    ``height`` and ``width`` are in pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = 2 if curve.success_mean is not None else 1
    fig = Figure(figsize=(4.2 * panels, 3.2), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    steps = list(curve.steps)
    ticks = [step_number(curve.x, k) for k in steps]  # numbered as the tags
    mean = curve.return_mean
    ax = axes[0]
    ax.plot(ticks, mean, marker="o", color="tab:blue")
    if curve.return_std:
        low = [m - s for m, s in zip(mean, curve.return_std)]
        high = [m + s for m, s in zip(mean, curve.return_std)]
        ax.fill_between(ticks, low, high, color="tab:blue", alpha=0.2, label="±1 std over tasks")
    ax.set_ylabel("return (mean over tasks)")
    ax.set_title(title, fontsize=9)
    if panels == 2:
        ax = axes[1]
        ax.plot(ticks, curve.success_mean, marker="o", color="tab:green")
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("success rate")
    for ax in axes:
        ax.set_xticks(ticks)
        ax.set_xlabel(AXIS_TITLES[curve.x])
        ax.grid(alpha=0.3)
        if mark_step is not None and 0 <= mark_step < len(ticks):
            ax.axvline(ticks[mark_step], color="grey", linestyle=":", linewidth=1, label="as trained")
    axes[0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    width, height = (int(round(v)) for v in fig.get_size_inches() * fig.dpi)
    return buf.getvalue(), height, width
