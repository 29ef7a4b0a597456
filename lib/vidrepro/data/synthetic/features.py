"""A fixed, documented stand-in for BMT's I3D (RGB + flow) and VGGish features.

BMT reads precomputed features: I3D RGB and flow, one 1024-d row per 64-frame stack, and VGGish,
one 128-d row per 0.96 s of audio. The synthetic dense videos ship the same files computed from
the rendered pixels and the synthesised soundtrack (never from the labels):

- RGB: per stack of frames, the mean frame pooled to an 8x8 grid (192 values) and per-channel
  colour histograms (3 x 16), through a fixed random projection to 1024 with a ReLU.
- flow: per stack, the mean signed frame difference on the 8x8 grid and its mean magnitude
  (384 values), projected the same way (its own fixed matrix) to 1024.
- audio: per 0.96 s window, 64 log-spaced bands (60 Hz - 7.6 kHz) of the log power spectrum:
  their mean and standard deviation over 10 ms hops (128 values).

The projections are seeded by constants below, so every run and every user gets the same
extractor.
"""

from __future__ import annotations

import numpy as np

RGB_SEED, FLOW_SEED = 1024, 2048
FEATURE_DIM, AUDIO_DIM = 1024, 128
AUDIO_WINDOW_S = 0.96  # VGGish's example length
GRID = 8


def _pool(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, C) -> (T, GRID, GRID, C) block means (H, W divisible by GRID after cropping)."""
    t, h, w, c = frames.shape
    h, w = h - h % GRID, w - w % GRID
    x = frames[:, :h, :w].reshape(t, GRID, h // GRID, GRID, w // GRID, c)
    return x.mean(axis=(2, 4))


def _projection(seed: int, dim_in: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 1, (dim_in, FEATURE_DIM)) / np.sqrt(dim_in)).astype(np.float32)


def video_features(frames: np.ndarray, stack: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 frames (T, H, W, 3) -> (rgb, flow), each (S, 1024) float32, S = ceil(T / stack)."""
    x = frames.astype(np.float32) / 255.0
    rgb_rows, flow_rows = [], []
    for start in range(0, len(x), stack):
        chunk = x[start:start + stack]  # (<=stack, H, W, 3)
        hist = [np.histogram(chunk[..., c], bins=16, range=(0, 1))[0] / chunk[..., c].size
                for c in range(3)]
        rgb_rows.append(np.concatenate([_pool(chunk).mean(0).ravel(), *hist]))
        diff = np.diff(chunk, axis=0) if len(chunk) > 1 else np.zeros_like(chunk)
        pooled = _pool(diff)  # (<=stack-1, G, G, 3)
        flow_rows.append(np.concatenate([pooled.mean(0).ravel() * 10,
                                         np.abs(pooled).mean(0).ravel() * 10]))
    rgb_in, flow_in = np.stack(rgb_rows), np.stack(flow_rows)  # (S, 240), (S, 384)
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
