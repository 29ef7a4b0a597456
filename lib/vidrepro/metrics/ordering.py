"""Metrics and exhaustive decoding for story / sequence ordering (MERLOT VIST-SIND).

MERLOT evaluates zero-shot visual story ordering: a story of ``n`` (5 in the
paper) captions and images must be put back in order; a prediction is a
permutation of the ``n`` items and is scored by Spearman's rho, pairwise
accuracy and mean position distance against the true order.

Conventions (one for the whole module, so the metrics cannot be fed the
inverse permutation by mistake):

* **positions** -- the metrics take ``positions[b, i]``: the position (0-based)
  assigned to item ``i`` of story ``b``. The true positions default to
  ``arange(n)``, i.e. item ``i`` truly belongs at position ``i``.
* **order** -- a list of item ids in predicted order, ``order[b, k]`` being the
  item placed at position ``k``. This is what decoders naturally emit
  (``best_order`` returns it); convert with ``positions_from_order`` (the two
  are inverse permutations of each other).

Arrays are ``(B, n)`` integer arrays (lists accepted; a 1-D row is a batch of
one). Every row must be a permutation of ``0..n-1``; otherwise a ``ValueError``
names the first offending row.

Decoding: MERLOT's pairwise head scores caption-step ``i`` against image ``j``
with 4 classes (same step, ``i`` before ``j``, ``i`` after ``j``, different
video). ``score_permutations`` takes the first three renormalised as
log-probabilities ``pair_logp[b, i, j, c]`` with ``c`` in
``(SAME, BEFORE, AFTER)`` and scores every permutation exhaustively, which is
exact and cheap for ``n = 5`` (120 permutations). A permutation ``p`` here is an
*order* of images: it puts image ``p[k]`` at step ``k``.
"""

from __future__ import annotations

import itertools
from functools import cache

import numpy as np
from numpy.typing import ArrayLike

SAME, BEFORE, AFTER = 0, 1, 2
"""Class indices of the last axis of ``pair_logp`` (caption-step ``i`` vs image ``j``)."""

MAX_PERMUTATION_N = 10
"""Largest ``n`` for exhaustive search: 10! rows is already 3.6M x 10 indices."""


# ----------------------------------------------------------------------------- validation


def _as_permutations(x: ArrayLike, name: str) -> np.ndarray:
    """``x`` as a ``(B, n)`` int array whose rows are permutations of ``0..n-1``.

    Checked up front because a non-permutation gives plausible-looking but
    meaningless scores rather than an error.
    """
    arr = np.asarray(x)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be (B, n) or (n,), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch")
    if arr.shape[1] < 2:
        raise ValueError(f"{name} needs n >= 2 items per row, got n={arr.shape[1]}")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    n = arr.shape[1]
    ok = (np.sort(arr, axis=1) == np.arange(n)).all(axis=1)  # (B,)
    if not ok.all():
        row = int(np.flatnonzero(~ok)[0])
        raise ValueError(
            f"{name} row {row} is not a permutation of 0..{n - 1}: {arr[row].tolist()}"
        )
    return arr.astype(np.int64, copy=False)


def _pred_true(pred: ArrayLike, true: ArrayLike | None) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(B, n)`` predicted and true positions (true defaults to ``arange(n)``)."""
    p = _as_permutations(pred, "pred_positions")
    if true is None:
        return p, np.broadcast_to(np.arange(p.shape[1]), p.shape)
    t = _as_permutations(true, "true_positions")
    if t.shape[0] == 1 and p.shape[0] > 1:
        t = np.broadcast_to(t, p.shape)  # one true order shared by the batch
    if t.shape != p.shape:
        raise ValueError(f"pred_positions {p.shape} and true_positions {t.shape} differ in shape")
    return p, t


# ----------------------------------------------------------------------------- conventions


def positions_from_order(order: ArrayLike) -> np.ndarray:
    """Positions ``(B, n)`` from an order ``(B, n)``: ``positions[b, order[b, k]] = k``.

    Decoders emit orders but the metrics take positions; this is the inverse
    permutation, row by row.
    """
    o = _as_permutations(order, "order")  # (B, n)
    pos = np.empty_like(o)
    rows = np.arange(o.shape[0])[:, None]  # (B, 1)
    pos[rows, o] = np.arange(o.shape[1])  # scatter k into slot order[b, k]
    return pos


# ----------------------------------------------------------------------------- metrics


def _spearman_rows(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Rho per story (B,); with no ties the values are their own ranks, so
    1 - 6 sum d^2 / (n(n^2-1))."""
    n = p.shape[1]
    d2 = ((p - t) ** 2).sum(axis=1)  # (B,)
    return 1.0 - 6.0 * d2 / (n * (n * n - 1))


def _pairwise_acc_rows(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Fraction per story (B,) of the n(n-1)/2 item pairs whose relative order matches."""
    n = p.shape[1]
    sp = np.sign(p[:, :, None] - p[:, None, :])  # (B, n, n)
    st = np.sign(t[:, :, None] - t[:, None, :])  # (B, n, n)
    iu, ju = np.triu_indices(n, k=1)
    right = sp[:, iu, ju] == st[:, iu, ju]  # (B, n(n-1)/2)
    return right.mean(axis=1)


def _distance_rows(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Mean |predicted - true position| per story (B,)."""
    return np.abs(p - t).mean(axis=1)


_ROWS = {"spearman": _spearman_rows, "pairwise_acc": _pairwise_acc_rows, "distance": _distance_rows}


def _spearman(p: np.ndarray, t: np.ndarray) -> float:
    """Mean rho over stories."""
    return float(np.mean(_spearman_rows(p, t)))


def _pairwise_acc(p: np.ndarray, t: np.ndarray) -> float:
    """Mean over stories of the fraction of pairs in the right relative order."""
    return float(np.mean(_pairwise_acc_rows(p, t)))


def _distance(p: np.ndarray, t: np.ndarray) -> float:
    """Mean |predicted - true position| over items and stories (every story has n items, so
    this is also the mean of the per-story means)."""
    return float(np.mean(_distance_rows(p, t)))


def spearman(pred_positions: ArrayLike, true_positions: ArrayLike | None = None) -> float:
    """Spearman's rho between predicted and true positions, averaged over stories."""
    return _spearman(*_pred_true(pred_positions, true_positions))


def pairwise_accuracy(pred_positions: ArrayLike, true_positions: ArrayLike | None = None) -> float:
    """Fraction of item pairs put in the right relative order, averaged over stories."""
    return _pairwise_acc(*_pred_true(pred_positions, true_positions))


def position_distance(pred_positions: ArrayLike, true_positions: ArrayLike | None = None) -> float:
    """Mean absolute position error (0 is perfect), averaged over items and stories."""
    return _distance(*_pred_true(pred_positions, true_positions))


def ordering_metrics(pred: ArrayLike, true: ArrayLike | None = None) -> dict[str, float]:
    """All three metrics of positions ``pred`` vs ``true``, validating once.

    Keys: ``"spearman"``, ``"pairwise_acc"``, ``"distance"``.
    """
    p, t = _pred_true(pred, true)
    return {
        "spearman": _spearman(p, t),
        "pairwise_acc": _pairwise_acc(p, t),
        "distance": _distance(p, t),
    }


def ordering_metrics_per_story(
    pred: ArrayLike, true: ArrayLike | None = None
) -> dict[str, np.ndarray]:
    """The metrics of ``ordering_metrics`` per story, each (B,) float64; their means are
    ``ordering_metrics``' values (per-item scores for paired comparisons of two models)."""
    p, t = _pred_true(pred, true)
    return {name: rows(p, t).astype(np.float64) for name, rows in _ROWS.items()}


# ----------------------------------------------------------------------------- decoding


@cache
def all_permutations(n: int) -> np.ndarray:
    """All ``n!`` permutations of ``0..n-1`` as an ``(n!, n)`` array, lexicographic.

    Cached because decoding reuses it for every batch; returned read-only so a
    caller cannot corrupt the cache.
    """
    if not 1 <= n <= MAX_PERMUTATION_N:
        raise ValueError(f"n must be in 1..{MAX_PERMUTATION_N} for exhaustive search, got {n}")
    perms = np.array(list(itertools.permutations(range(n))), dtype=np.intp)  # (n!, n)
    perms.setflags(write=False)
    return perms


@cache
def _pair_classes(n: int) -> np.ndarray:
    """``(n, n)`` class of (step k, step m): SAME on the diagonal, BEFORE if k < m, else AFTER."""
    k = np.arange(n)
    cls = np.where(k[:, None] < k[None, :], BEFORE, AFTER)
    cls[k, k] = SAME
    cls.setflags(write=False)
    return cls


def score_permutations(pair_logp: ArrayLike) -> np.ndarray:
    """Log-score ``(B, n!)`` of every order, rows matching ``all_permutations(n)``.

    ``pair_logp[b, i, j]`` is the log-probability of (same step, caption-step
    ``i`` before image ``j``, ``i`` after ``j``). Order ``p`` puts image
    ``p[m]`` at step ``m``, so its score is the sum over all (k, m) of
    ``pair_logp[k, p[m], SAME if k == m else BEFORE if k < m else AFTER]``,
    i.e. each pair's log-probability of the relation ``p`` implies. Computed by
    one gather of shape ``(B, n!, n, n)`` and a sum.
    """
    lp = np.asarray(pair_logp, dtype=np.float64)
    if lp.ndim != 4 or lp.shape[1] != lp.shape[2] or lp.shape[3] != 3:
        raise ValueError(f"pair_logp must be (B, n, n, 3), got shape {lp.shape}")
    n = lp.shape[1]
    perms = all_permutations(n)  # (P, n)
    step = np.arange(n)[None, :, None]  # (1, n, 1): caption step k
    image = perms[:, None, :]  # (P, 1, n): image at step m
    cls = _pair_classes(n)[None]  # (1, n, n)
    gathered = lp[:, step, image, cls]  # (B, P, n, n)
    return gathered.sum(axis=(2, 3))  # (B, P)


def best_order(pair_logp: ArrayLike) -> np.ndarray:
    """Highest-scoring order ``(B, n)``: image ``out[b, k]`` goes at step ``k``.

    An *order*, not positions: pass through ``positions_from_order`` before the
    metrics. Ties go to the lexicographically first permutation.
    """
    scores = score_permutations(pair_logp)  # (B, P)
    n = np.asarray(pair_logp).shape[1]
    return all_permutations(n)[scores.argmax(axis=1)].astype(np.int64)  # (B, n)
