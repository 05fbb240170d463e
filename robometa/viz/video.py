"""Writing frames as MP4 (imageio-ffmpeg) or GIF, and composing clips."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from robometa.errors import RobometaError

VIDEO_SUFFIXES = (".mp4", ".gif")


def side_by_side(*clips: np.ndarray) -> np.ndarray:
    """Clips ``(T_i, H, W_i, 3)`` next to each other; shorter ones hold their last frame."""
    length = max(len(c) for c in clips)
    padded = [np.concatenate([c, np.repeat(c[-1:], length - len(c), axis=0)]) for c in clips]
    return np.concatenate(padded, axis=2)


def concat(clips: Sequence[np.ndarray]) -> np.ndarray:
    """Clips one after the other (same frame size)."""
    return np.concatenate(list(clips), axis=0)


VIDEO_EXTRA_HINT = "pip install 'robometa[video]' (in a checkout: pip install -e '.[video]')"


def check_video_path(path: str | Path) -> Path:
    """Raise :class:`RobometaError` unless ``path`` can be written: a known suffix, and
    for MP4 the ``video`` extra installed. Cheap; call it before any long work."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise RobometaError(
            f"unsupported video file {path.name!r}; valid suffixes: {', '.join(VIDEO_SUFFIXES)}"
        )
    if suffix == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise RobometaError(f"writing MP4 needs imageio-ffmpeg: {VIDEO_EXTRA_HINT}") from None
    return path


def write_video(path: str | Path, frames: np.ndarray, fps: float) -> Path:
    """Write ``frames (T, H, W, 3) uint8`` to ``.mp4`` (H.264) or ``.gif``; atomic.

    The file appears under its name only once complete (written beside it, then
    renamed), so an interrupted write never leaves a truncated video.
    """
    path = check_video_path(path)
    suffix = path.suffix.lower()
    frames = np.asarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must be (T, H, W, 3) with T >= 1, got {frames.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial{suffix}")
    if suffix == ".mp4":
        import imageio_ffmpeg

        # H.264 wants even sizes; pad by one pixel rather than resample.
        h, w = frames.shape[1:3]
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        writer = imageio_ffmpeg.write_frames(
            str(tmp),
            (frames.shape[2], frames.shape[1]),
            fps=fps,
            codec="libx264",
            pix_fmt_out="yuv420p",
            macro_block_size=1,
            quality=7,
        )
        writer.send(None)
        for f in frames:
            writer.send(np.ascontiguousarray(f))
        writer.close()
    else:
        tmp.write_bytes(gif_bytes(frames, fps))
    tmp.replace(path)
    return path


def gif_bytes(frames: np.ndarray, fps: float) -> bytes:
    """``frames (T, H, W, 3)`` uint8 as an animated, looping GIF."""
    import io

    from PIL import Image

    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
    buf = io.BytesIO()
    images[0].save(
        buf, format="GIF", save_all=True, append_images=images[1:], duration=max(20, int(1000 / fps)), loop=0
    )
    return buf.getvalue()
