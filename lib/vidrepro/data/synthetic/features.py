"""A fixed, documented stand-in for BMT's I3D (RGB + flow) and VGGish features.

BMT reads precomputed features: I3D RGB and flow, one 1024-d row per 64-frame stack, and VGGish,
one 128-d row per 0.96 s of audio. The synthetic dense videos ship the same files computed from
the rendered pixels and the synthesised soundtrack (never from the labels):

- RGB: per stack of frames, 288 values through a fixed random projection to 1024 with a ReLU:
  - where, and what colour: the stack's mean frame pooled to an 8x8 grid (192 values);
  - which colours: per-channel histograms of its pixel values, 16 bins (48 values, x 4);
  - which shapes: per channel, a histogram of signed gradient orientations: Sobel gradients of
    every frame, 16 bins of 22.5 degrees (each pixel split linearly between its two nearest),
    each pixel counting by how much its gradient magnitude (in [0, 1] pixel values per pixel)
    exceeds 0.1, so the faint background texture counts for nothing; averaged over the
    stack's frames and divided by (its sum + 1) (48 values, x 8).
  The orientation histogram pools edges from anywhere in the frame, so it tells an object's
  outline (a square's four directions, a triangle's three, a star's ten, a circle's all) the
  same wherever the object stands; the pooled grid alone blurs outlines into cell averages, and
  a linear probe on it reads colour but hardly shape. Per channel, an outline goes with the
  colour that draws it. The weights keep each group from drowning the others in the projection.
- flow: per stack, the mean signed frame difference on the 8x8 grid and its mean magnitude
  (384 values), projected the same way (its own fixed matrix) to 1024.
- audio: per 0.96 s window, 64 log-spaced bands (60 Hz - 7.6 kHz) of the log power spectrum:
  their mean and standard deviation over 10 ms hops (128 values).

The projections are seeded by constants below, so every run and every user gets the same
extractor. ``bench/dense_features_probe.py`` measures what linear probes read off the RGB rows
(the shape and colour of rendered objects) and times the extractor.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

RGB_SEED, FLOW_SEED = 1024, 2048
FEATURE_DIM, AUDIO_DIM = 1024, 128
AUDIO_WINDOW_S = 0.96  # VGGish's example length
GRID = 8
COLOUR_BINS, COLOUR_WEIGHT = 16, 4.0
ORIENT_BINS, ORIENT_WEIGHT = 16, 8.0
EDGE_MIN = 0.1  # gradient magnitude (of [0, 1] pixels, per pixel) below which nothing counts


def _pool(frames: np.ndarray) -> np.ndarray:
    """uint8 (T, H, W, C) -> float32 (T, GRID, GRID, C) block means (H, W divisible by GRID after
    cropping)."""
    t, h, w, c = frames.shape
    h, w = h - h % GRID, w - w % GRID
    x = frames[:, :h, :w].reshape(t, GRID, h // GRID, GRID, w // GRID, c)
    return (x.sum(axis=(2, 4), dtype=np.int32) / ((h // GRID) * (w // GRID))).astype(np.float32)


@lru_cache(maxsize=None)
def _projection(seed: int, dim_in: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = (rng.normal(0, 1, (dim_in, FEATURE_DIM)) / np.sqrt(dim_in)).astype(np.float32)
    out.flags.writeable = False  # shared by every call
    return out


def _sobel(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (T, H, W, C) -> per-channel Sobel sums (gx, gy), int16 (T, H, W, C), edges
    replicated; divided by 8 * 255 they are slopes of [0, 1] pixels per pixel."""
    p = np.pad(frames.astype(np.int16), ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = frames.shape[1:3]
    rows = p[:, :-2] + p[:, 2:]  # vertical smoothing (1, 2, 1), (T, H, W + 2, C)
    rows += p[:, 1:-1]
    rows += p[:, 1:-1]
    cols = p[:, :, :-2] + p[:, :, 2:]  # horizontal smoothing, (T, H + 2, W, C)
    cols += p[:, :, 1:-1]
    cols += p[:, :, 1:-1]
    return rows[:, :, 2:] - rows[:, :, :w], cols[:, 2:] - cols[:, :h]


def _orientation_histograms(frames: np.ndarray, stack: int) -> np.ndarray:
    """uint8 (T, H, W, C) -> (S, C, ORIENT_BINS): per stack and channel, signed gradient
    orientations weighted by magnitude above EDGE_MIN, averaged over frames, / (total + 1)."""
    t, h, w, c = frames.shape
    gx, gy = _sobel(frames)
    l1 = np.abs(gx)
    l1 += np.abs(gy)
    # |g|_1 >= |g|_2: a cheap integer test keeps the few pixels that may count (about 1%)
    edge = np.flatnonzero(l1 > int(EDGE_MIN * 8 * 255))
    gx, gy = gx.ravel()[edge] / (8 * 255.0), gy.ravel()[edge] / (8 * 255.0)
    weight = np.hypot(gx, gy) - EDGE_MIN
    keep = weight > 0
    edge, gx, gy, weight = edge[keep], gx[keep], gy[keep], weight[keep]
    pos = np.mod(np.arctan2(gy, gx), 2 * np.pi) * (ORIENT_BINS / (2 * np.pi))
    lo = np.floor(pos)
    frac = pos - lo
    lo = lo.astype(np.int64) % ORIENT_BINS
    s = -(-t // stack)
    # (stack, channel) of each pixel: flat index = ((frame * H + y) * W + x) * C + channel
    base = ((edge // (h * w * c) // stack) * c + edge % c) * ORIENT_BINS
    size = s * c * ORIENT_BINS
    hist = (np.bincount(base + lo, weight * (1 - frac), size)
            + np.bincount(base + (lo + 1) % ORIENT_BINS, weight * frac, size))
    hist = hist.reshape(s, c, ORIENT_BINS) / _stack_lengths(t, stack)[:, None, None]
    return hist / (hist.sum(-1, keepdims=True) + 1.0)


def _stack_lengths(t: int, stack: int) -> np.ndarray:
    """(S,) frames in each stack (the last one may be short)."""
    return np.minimum(stack, t - np.arange(0, t, stack))


def _colour_histograms(frames: np.ndarray, stack: int) -> np.ndarray:
    """uint8 (T, H, W, C) -> (S, C, COLOUR_BINS): per stack and channel, the fraction of pixel
    values in each of COLOUR_BINS equal bins of [0, 1] (v >> 4 is floor(16 v / 255) for uint8,
    clipped to 15)."""
    t, h, w, c = frames.shape
    s = -(-t // stack)
    base = ((np.arange(t) // stack)[:, None, None, None] * c + np.arange(c)) * COLOUR_BINS
    counts = np.bincount((base + (frames >> 4)).ravel(), minlength=s * c * COLOUR_BINS)
    return counts.reshape(s, c, COLOUR_BINS) / (_stack_lengths(t, stack)[:, None, None] * h * w)


def video_features(frames: np.ndarray, stack: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 frames (T, H, W, 3) -> (rgb, flow), each (S, 1024) float32, S = ceil(T / stack)."""
    if frames.dtype != np.uint8:
        raise TypeError(f"expected uint8 frames, got {frames.dtype}")
    t = len(frames)
    starts, lengths = np.arange(0, t, stack), _stack_lengths(t, stack)
    pooled = _pool(frames) / 255.0  # (T, G, G, 3)
    grid = np.add.reduceat(pooled, starts, axis=0) / lengths[:, None, None, None]
    # Frame differences within each stack (pooling is linear: pooled differences).
    diff = np.zeros_like(pooled)
    diff[:-1] = pooled[1:] - pooled[:-1]
    diff[stack - 1::stack] = 0  # across two stacks (and the padding row at the end)
    per = np.maximum(lengths - 1, 1)[:, None, None, None]  # a one-frame stack: zeros
    motion = np.add.reduceat(diff, starts, axis=0) / per
    magnitude = np.add.reduceat(np.abs(diff), starts, axis=0) / per
    s = len(starts)
    rgb_in = np.concatenate([grid.reshape(s, -1),
                             _colour_histograms(frames, stack).reshape(s, -1) * COLOUR_WEIGHT,
                             _orientation_histograms(frames, stack).reshape(s, -1) * ORIENT_WEIGHT],
                            axis=1).astype(np.float32)  # (S, 288)
    flow_in = np.concatenate([motion.reshape(s, -1) * 10, magnitude.reshape(s, -1) * 10],
                             axis=1)  # (S, 384)
    rgb = np.maximum(rgb_in @ _projection(RGB_SEED, rgb_in.shape[1]), 0)
    flow = np.maximum(flow_in @ _projection(FLOW_SEED, flow_in.shape[1]), 0)
    return rgb.astype(np.float32), flow.astype(np.float32)


def audio_features(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """float mono (N,) -> (S, 128) float32, one row per 0.96 s (the last partial window kept)."""
    hop, win = sample_rate // 100, sample_rate // 40  # 10 ms hops, 25 ms windows
    padded = np.pad(wave.astype(np.float32), (0, win))
    starts = np.arange(0, len(wave), hop)
    frames = np.stack([padded[s:s + win] for s in starts]) * np.hanning(win)  # (F, win)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (F, win/2+1)
    freqs = np.fft.rfftfreq(win, 1 / sample_rate)
    edges = np.geomspace(60, min(7600, sample_rate / 2 - 1), 65)
    band = np.digitize(freqs, edges) - 1  # band index of each FFT bin, -1 / 64 = outside
    bands = np.stack([power[:, band == b].sum(1) for b in range(64)], 1)  # (F, 64)
    logmel = np.log(bands + 1e-6)
    per_window = int(round(AUDIO_WINDOW_S * 100))  # hops per VGGish example
    rows = [np.concatenate([logmel[s:s + per_window].mean(0), logmel[s:s + per_window].std(0)])
            for s in range(0, len(logmel), per_window)]
    return np.stack(rows).astype(np.float32)
