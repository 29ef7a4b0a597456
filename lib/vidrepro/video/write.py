"""Writing small H.264 videos: synthetic data, test fixtures and benchmarks.

Files look like web video on purpose (H.264 with x264's default B-frame pyramid, yuv420p, moov
atom at the front for mp4), so the readers are exercised on the layout they will meet in
downloaded datasets, not on an easy special case.
"""

from __future__ import annotations

import os
from fractions import Fraction

import av
import numpy as np

# PyAV's wheels ship libx264; a build of FFmpeg without it still has the native MPEG-4 encoder.
_VIDEO_CODEC = "libx264" if "libx264" in av.codecs_available else "mpeg4"


# The same frames must give the same bytes. x264's output follows its thread count (which
# would follow the machine's cores), and its AVX-512 macroblock-tree code gives one of two
# outputs for identical input depending on the heap; one thread and no mbtree are repeatable.
_REPEATABLE = {"libx264": {"threads": "1", "x264-params": "mbtree=0"}}


def _as_rate(fps: float | Fraction) -> Fraction:
    """NTSC rates given as floats (30000/1001 == 29.97002997...) come back as the exact fraction;
    a literal 29.97 stays 2997/100."""
    rate = Fraction(fps).limit_denominator(1001)
    if rate <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    return rate


def write_video(
    path: str | os.PathLike[str],
    frames: np.ndarray,
    fps: float | Fraction,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    gop: int | None = None,
    codec: str | None = None,
) -> None:
    """Encode ``frames`` (uint8 RGB ``(T, H, W, 3)``, H and W even) at ``fps``.

    The container follows the extension (``.mp4``, ``.mkv``, ...). ``audio`` is mono float
    ``(samples,)`` in [-1, 1] at ``sample_rate``, stored as AAC. ``gop`` is the maximum
    keyframe interval in frames (x264 may still add keyframes at scene cuts); None keeps the
    encoder's default (250 frames for libx264, 12 for mpeg4). ``codec`` names another FFmpeg
    encoder, e.g. ``"libvpx-vp9"`` for the ``.webm`` files YouTube serves; None means libx264.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
        raise ValueError(f"frames must be uint8 (T>0, H, W, 3), got {frames.dtype} {frames.shape}")
    _, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise ValueError(f"yuv420p needs even width and height, got {width}x{height} (W x H)")
    if audio is not None:
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"audio must be mono (samples,), got shape {audio.shape}")
    rate = _as_rate(fps)
    path = os.fspath(path)
    fast_start = os.path.splitext(path)[1].lower() in (".mp4", ".mov", ".m4v")
    with av.open(path, "w", options={"movflags": "faststart"} if fast_start else {}) as container:
        video = container.add_stream(
            codec or _VIDEO_CODEC, rate=rate, options=_REPEATABLE.get(codec or _VIDEO_CODEC, {})
        )
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if gop is not None:
            video.codec_context.gop_size = gop
        # every stream must exist before the first packet is muxed (that writes the header)
        sound = (
            None if audio is None else container.add_stream("aac", rate=sample_rate, layout="mono")
        )
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = i, 1 / rate
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if sound is not None:
            chunk = av.AudioFrame.from_ndarray(audio[None, :], format="flt", layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = sample_rate, 0, Fraction(1, sample_rate)
            # PyAV re-chunks to the encoder's frame size (1024) and converts flt -> fltp
            container.mux(sound.encode(chunk))
            container.mux(sound.encode(None))
