"""Figures people would rather look at than read: frame grids with captions, training curves."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def frame_grid(
    frames: np.ndarray,
    titles: Sequence[str] | None = None,
    caption: str = "",
    ncols: int = 8,
    width: float = 1.6,
):
    """Frames (T,H,W,3) uint8 in a grid, one title per frame, an optional caption underneath."""
    import matplotlib.pyplot as plt

    t = len(frames)
    ncols = min(ncols, t)
    nrows = -(-t // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(width * ncols, width * nrows + 0.4 * bool(caption)), squeeze=False
    )
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < t:
            ax.imshow(frames[i])
            if titles is not None:
                ax.set_title(titles[i], fontsize=7)
    if caption:
        fig.supxlabel("\n".join(textwrap.wrap(caption, 100)), fontsize=8)
    fig.tight_layout()
    return fig


def curves(history: dict[str, Sequence[float]], xlabel: str = "step", title: str = ""):
    """One panel per named series (loss, reward, ...), for training-curve cells."""
    import matplotlib.pyplot as plt

    n = len(history)
    fig, axes = plt.subplots(1, n, figsize=(3.5 * n, 2.8), squeeze=False)
    for ax, (name, values) in zip(axes[0], history.items()):
        ax.plot(np.arange(len(values)), values)
        ax.set_title(name)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def heatmap(
    matrix: np.ndarray,
    xlabel: str,
    ylabel: str,
    title: str = "",
    ticks: Sequence[str] | None = None,
):
    """A count or probability matrix with its values written in (confusions, pair tables)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(0.6 * matrix.shape[1] + 1.6, 0.6 * matrix.shape[0] + 1.2))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(
            j,
            i,
            f"{v:.2g}",
            ha="center",
            va="center",
            fontsize=7,
            color="white" if v > matrix.max() / 2 else "black",
        )
    if ticks is not None:
        ax.set_xticks(range(matrix.shape[1]), ticks)
        ax.set_yticks(range(matrix.shape[0]), ticks)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    fig.tight_layout()
    return fig


def load_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB."""
    from PIL import Image

    with Image.open(path) as im:
        return np.array(im.convert("RGB"))  # a writable copy (torch.from_numpy needs one)


def timeline(rows: dict[str, Sequence[tuple[float, float, str]]], duration: float, title: str = ""):
    """Captioned segments on a time axis, one lane per source (reference, generated, ...):
    how a dense-captioning video reads at a glance."""
    import matplotlib.pyplot as plt

    lanes = [(name, seg) for name, segs in rows.items() for seg in segs]
    fig, ax = plt.subplots(figsize=(11, 0.42 * len(lanes) + 0.9))
    for y, (name, (start, end, text)) in enumerate(lanes):
        ax.barh(
            y, end - start, left=start, height=0.7, alpha=0.35, color=f"C{list(rows).index(name)}"
        )
        ax.text(start, y, f" {text}", va="center", fontsize=7)
    ax.set_yticks(range(len(lanes)), [name for name, _ in lanes], fontsize=7)
    ax.set(xlim=(0, duration), xlabel="seconds", title=title)
    ax.invert_yaxis()
    fig.tight_layout()
    return fig


STATE_COLOURS = {1: "C0", 2: "C1", 3: "C2"}  # initial state, action, end state (ChangeIt labels)


def state_timeline(
    p_init: np.ndarray,
    p_action: np.ndarray,
    p_end: np.ndarray,
    labels: np.ndarray | None = None,
    chosen: Sequence[int] | None = None,
    title: str = "",
):
    """Per-second probabilities of a video's initial state, action and end state; the annotated
    seconds shaded in the same colours, the chosen (s1, a, s2) as dashed lines."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 2.6))
    seconds = np.arange(len(p_init))
    for k, (name, p) in enumerate((("initial", p_init), ("action", p_action), ("end", p_end))):
        colour = STATE_COLOURS[k + 1]
        ax.plot(seconds, p, color=colour, label=name)
        if labels is not None:
            on = np.flatnonzero(np.asarray(labels) == k + 1)
            for t in on:
                ax.axvspan(t - 0.5, t + 0.5, color=colour, alpha=0.12, lw=0)
        if chosen is not None:
            ax.axvline(chosen[k], color=colour, ls="--", lw=1)
    ax.set(xlabel="second", ylabel="probability", ylim=(0, 1.02), title=title)
    ax.legend(fontsize=7, loc="upper right", ncols=3)
    fig.tight_layout()
    return fig
