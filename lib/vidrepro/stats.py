"""Intervals and verdicts for the tables: a paired bootstrap over test items (and seeds).

A table row's metric is the (weighted) mean of per-item scores, one matrix ``(seeds, items)``
per row. Each bootstrap replicate draws the items with replacement once and, with several seeds,
the seeds with replacement too (a two-level bootstrap over the crossed design: every seed scores
the same test items), and recomputes the mean. A finding's difference ``A - B`` is bootstrapped
the same way on the item-wise differences, so both rows see the same resampled items: pairing
removes the variation that comes from which items are hard. The interval is the 2.5th to 97.5th
percentile of the replicates; replicates come from a fixed generator, so a table's intervals
repeat exactly.

Verdicts: **holds** when the interval lies above 0, **reversed** when below, **unresolved** when
it contains 0 (an end exactly at 0 counts as containing it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

REPLICATES = 10_000
CONFIDENCE = 0.95
SEED = 0
_CHUNK = 500

HOLDS, REVERSED, UNRESOLVED, BY_CONSTRUCTION = "holds", "reversed", "unresolved", "by construction"
NOT_TESTABLE = "not testable at this scale"


@dataclass(frozen=True)
class Interval:
    """A mean (or mean difference) and its bootstrap interval."""

    mean: float
    lo: float
    hi: float

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2

    def scaled(self, factor: float) -> Interval:
        return Interval(self.mean * factor, self.lo * factor, self.hi * factor)


def verdict(interval: Interval) -> str:
    if interval.lo > 0:
        return HOLDS
    if interval.hi < 0:
        return REVERSED
    return UNRESOLVED


def bootstrap(
    values: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    replicates: int = REPLICATES,
    seed: int = SEED,
) -> Interval:
    """Mean of ``values`` ``(seeds, items)`` (or ``(items,)``) over seeds and items, weighted per
    item by ``weights`` ``(items,)``, and its percentile interval."""
    values = np.asarray(values, dtype=np.float64)
    values = values[None] if values.ndim == 1 else values
    if values.ndim != 2 or values.shape[1] == 0:
        raise ValueError(f"values must be (seeds, items) with items > 0, got {values.shape}")
    if np.isnan(values).any():
        raise ValueError("values hold NaN: every seed must score every item")
    n_seeds, n_items = values.shape
    w = np.ones(n_items) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n_items,) or (w <= 0).any():
        raise ValueError(f"weights must be ({n_items},) and > 0")
    mean = float(values.mean(0) @ w / w.sum())
    # separate streams: the items drawn do not depend on how many seeds there are
    item_rng, seed_rng = np.random.default_rng(seed).spawn(2)
    stats = []
    for start in range(0, replicates, _CHUNK):
        n = min(_CHUNK, replicates - start)
        counts = item_rng.multinomial(n_items, np.full(n_items, 1 / n_items), size=n) * w  # (n, I)
        seeds = (
            seed_rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=n)
            if n_seeds > 1
            else np.ones((n, 1))
        )  # (n, S)
        per_seed = (counts @ values.T) / counts.sum(1, keepdims=True)  # (n, S)
        stats.append((per_seed * seeds).sum(1) / n_seeds)
    alpha = (1 - CONFIDENCE) / 2
    lo, hi = np.quantile(np.concatenate(stats), [alpha, 1 - alpha])
    return Interval(mean, float(lo), float(hi))


def align(
    a: list[pd.DataFrame], b: list[pd.DataFrame] | None, metric: str
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Per-item scores of one row (``b`` None) or two rows, one frame per seed with ``item`` and
    ``metric`` columns, as ``(seeds, items)`` matrices in one item order, and the item weights.
    Rows are paired by item id, never by position; every frame must hold the same items."""
    frames = [*a, *(b or [])]
    ids = sorted(frames[0]["item"].astype(str))
    for f in frames:
        if metric not in f.columns:
            raise KeyError(
                f"per-item scores have no column {metric!r} (they have: "
                f"{', '.join(c for c in f.columns if c != 'item')})"
            )
        if sorted(f["item"].astype(str)) != ids:
            diff = set(f["item"].astype(str)) ^ set(ids)
            raise ValueError(
                f"{metric}: rows or seeds were scored on different items "
                f"({len(diff)} differ, e.g. {sorted(diff)[:3]})"
            )

    def matrix(group: list[pd.DataFrame]) -> np.ndarray:
        return np.stack(
            [f.set_index(f["item"].astype(str)).loc[ids, metric].to_numpy(float) for f in group]
        )

    first = frames[0].set_index(frames[0]["item"].astype(str))
    weights = first.loc[ids, "weight"].to_numpy(float) if "weight" in first.columns else None
    return matrix(a), (matrix(b) if b is not None else None), weights


def row_interval(items: list[pd.DataFrame], metric: str) -> Interval:
    """A row's metric over its seeds' per-item scores."""
    values, _, weights = align(items, None, metric)
    return bootstrap(values, weights)


def paired_difference(a: list[pd.DataFrame], b: list[pd.DataFrame], metric: str) -> Interval:
    """Row A minus row B, paired by item (and by seed: seed k of A against seed k of B)."""
    if len(a) != len(b):
        raise ValueError(f"{metric}: {len(a)} seeds against {len(b)}")
    va, vb, weights = align(a, b, metric)
    return bootstrap(va - vb, weights)
