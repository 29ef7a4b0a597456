"""Frames of a :class:`~.world.Scene`: numpy rasterisation at 2x, averaged down (anti-aliasing),
so that a few hundred small clips render in seconds on a laptop."""

from __future__ import annotations

import numpy as np

from .world import BACKGROUNDS, SPLIT_GAP, ObjState, Scene, frame_times, state_at

SUPERSAMPLE = 2


def shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Boolean mask of ``shape`` with radius ``r`` given pixel offsets from its centre."""
    if shape == "circle":
        return dx**2 + dy**2 <= r**2
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) <= 0.82 * r
    if shape == "triangle":  # apex up, base at +0.5 r
        return (dy <= 0.5 * r) & (dy >= -r) & (np.abs(dx) <= 0.87 * (dy + r) / 1.5)
    if shape == "star":  # five points
        theta = np.arctan2(dy, dx) + np.pi / 2
        limit = r * (0.45 + 0.55 * (0.5 + 0.5 * np.cos(5 * theta)) ** 2)
        return dx**2 + dy**2 <= limit**2
    if shape == "bar":  # a tool: knife, brush, pump
        return (np.abs(dx) <= 0.18 * r) & (np.abs(dy) <= r)
    raise ValueError(f"unknown shape {shape!r}")


def background(scene: Scene, size: int, seed: int) -> np.ndarray:
    """(H, W, 3) float: the background colour with a fixed, faint texture."""
    rng = np.random.default_rng(seed)
    base = np.asarray(BACKGROUNDS[scene.background], np.float32)
    texture = rng.normal(0, 6, (size // 8 + 1, size // 8 + 1, 1)).astype(np.float32)
    texture = np.kron(texture, np.ones((8, 8, 1), np.float32))[:size, :size]
    return np.clip(base + texture, 0, 255)


def draw(canvas: np.ndarray, state: ObjState) -> None:
    """Alpha-blend one object (two halves once it splits) onto ``canvas`` (H, W, 3) in place."""
    if state.alpha <= 0:
        return
    h, w = canvas.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    halves = [(state.x, 1.0)]
    if state.split > 0:
        shrink = 1 - 0.28 * min(state.split / SPLIT_GAP, 1.0)
        halves = [(state.x - state.split / 2, shrink), (state.x + state.split / 2, shrink)]
    colour = np.asarray(state.colour, np.float32)
    for cx, scale in halves:
        mask = shape_mask(state.shape, xs - cx * w, ys - state.y * h, state.size * scale * w)
        canvas[mask] = (1 - state.alpha) * canvas[mask] + state.alpha * colour


def _frame(scene: Scene, t: float, bg: np.ndarray, size: int) -> np.ndarray:
    canvas = bg.copy()
    for state in state_at(scene, t):
        draw(canvas, state)
    small = sum(canvas[i::SUPERSAMPLE, j::SUPERSAMPLE] for i in range(SUPERSAMPLE)
                for j in range(SUPERSAMPLE)) / SUPERSAMPLE**2  # box filter, (size, size, 3)
    return np.clip(small + 0.5, 0, 255).astype(np.uint8)


def render(scene: Scene, fps: float, size: int, seed: int = 0) -> np.ndarray:
    """(T, size, size, 3) uint8 frames of ``scene`` at ``fps``."""
    bg = background(scene, size * SUPERSAMPLE, seed)
    times = frame_times(scene.duration, fps)
    return np.stack([_frame(scene, float(t), bg, size) for t in times])


def render_still(scene: Scene, t: float, size: int, seed: int = 0) -> np.ndarray:
    """(size, size, 3) uint8: one frame at time ``t`` (image-text pairs, story steps)."""
    return _frame(scene, t, background(scene, size * SUPERSAMPLE, seed), size)
