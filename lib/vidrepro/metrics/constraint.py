"""The ordering constraint: exact argmax of P_init(s1)·P_action(a)·P_end(s2) over s1 < a < s2.

The paper's pseudo-labels come from the best (initial state, action, end state) frame triple of
a video, optionally with a - s1 <= D and s2 - a <= D. The original code searches all O(T^3)
triples in a custom CUDA kernel (one thread per s1), limited to 1024 frames and to CUDA. The
objective is separable, so suffix maxima give the same argmax in O(T) on any device and length:

    R(a)  = log p_action[a] + max{log p_end[s2] : a < s2 <= a + D}
    Q(s1) = max{R(a) : s1 < a <= s1 + D}
    best  = max over s1 of log p_init[s1] + Q(s1)

Sliding-window maxima use the van Herk / Gil-Werman block trick (per-block prefix and suffix
maxima), so the cost is O(T) with or without D and no Python loop runs over frames.

Scores are sums of logs (log 0 = -inf), so long videos cannot underflow. They are computed in
float64 if any input is float64, else in float32 (half-precision logs would create spurious ties).

Tie rule (exact, also followed by ``brute_force_state_change``): the score of a triple is the
floating-point value ``log p_init[s1] + (log p_action[a] + log p_end[s2])``, added in that order in
the working dtype; among the triples with the largest score, the lexicographically smallest
(s1, a, s2) wins. Rounding can make two triples tie although their terms differ; the rule is about
the rounded scores, and the fast path follows it exactly because rounding is monotone: the
largest rounded sum over s2 is the rounded sum with the largest term. If every triple scores -inf
the answer is (0, 1, 2). ``best_pair`` is the same for pairs: ``log p_init[i] + log p_end[j]``,
lexicographically smallest (i, j). Inputs must be finite and >= 0 (NaN or inf give no guarantee).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "Pair",
    "StateChange",
    "best_pair",
    "best_pair_from_logs",
    "best_state_change",
    "best_state_change_from_logs",
    "brute_force_pair",
    "brute_force_state_change",
]

_NEG_INF = float("-inf")


class StateChange(NamedTuple):
    """Best frame triple; each field has the inputs' batch shape, () for one video."""

    s1: Tensor  # int64: initial-state frame
    a: Tensor  # int64: action frame
    s2: Tensor  # int64: end-state frame
    log_score: Tensor  # log p_init[s1] + (log p_action[a] + log p_end[s2]), working dtype


class Pair(NamedTuple):
    """Best frame pair i < j; each field has the inputs' batch shape."""

    i: Tensor  # int64
    j: Tensor  # int64
    log_score: Tensor  # log p_init[i] + log p_end[j], working dtype


# ---------------------------------------------------------------------------------------------
# Input handling shared by the fast path and the brute force, so both see identical logs.


def _check(tensors: tuple[Tensor, ...], min_length: int, what: str) -> int:
    """Same shapes, at least one dim, and enough frames; returns T."""
    shape = tensors[0].shape
    if any(t.shape != shape for t in tensors):
        raise ValueError(
            f"{what}: inputs must have the same shape, got {[tuple(t.shape) for t in tensors]}"
        )
    if len(shape) == 0:
        raise ValueError(f"{what}: inputs need a frame dimension, got a scalar")
    if shape[-1] < min_length:
        raise ValueError(
            f"{what} needs at least {min_length} frames, got a video of length {shape[-1]}"
        )
    return shape[-1]


def _working_dtype(tensors: tuple[Tensor, ...]) -> torch.dtype:
    """float64 if any input is float64, else float32 (also for half and integer inputs)."""
    return functools.reduce(torch.promote_types, [t.dtype for t in tensors], torch.float32)


def _logs(probs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """Logs in the working dtype; log 0 = -inf is what torch.log gives."""
    dtype = _working_dtype(probs)
    return tuple(torch.log(p.to(dtype)) for p in probs)


def _as_logs(logs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    dtype = _working_dtype(logs)
    return tuple(t.to(dtype) for t in logs)


def _flat(x: Tensor) -> Tensor:
    return x.reshape(-1, x.shape[-1])  # (B, T)


def _window(max_distance: int | None, length: int) -> int:
    """Window width: D, or T when unlimited (a window of T frames reaches every later frame)."""
    if max_distance is None:
        return length
    if max_distance < 1:
        raise ValueError(f"max_distance must be >= 1, got {max_distance}")
    return min(int(max_distance), length)


# ---------------------------------------------------------------------------------------------
# Fast path.


def _next_window_max(x: Tensor, width: int) -> Tensor:
    """y[..., i] = max(x[..., i+1 : i+1+width]), -inf where that window is empty.

    Unlimited (width >= T - 1): a suffix max. Otherwise van Herk / Gil-Werman: cut the shifted
    sequence into blocks of ``width``; a window then spans the tail of one block and the head of
    the next, so it is the max of one block-suffix max and one block-prefix max. O(T) for any
    width, and exact: only max, no arithmetic.
    """
    batch, length = x.shape  # (B, T)
    if width >= length - 1:
        suffix = x[:, 1:].flip(-1).cummax(dim=-1).values.flip(-1)  # (B, T - 1)
        return F.pad(suffix, (0, 1), value=_NEG_INF)  # (B, T)
    padded = -(-(length - 1 + width) // width) * width  # multiple of width, >= T - 1 + width
    z = F.pad(x[:, 1:], (0, padded - length + 1), value=_NEG_INF)  # (B, N)
    blocks = z.view(batch, padded // width, width)  # (B, N / w, w)
    prefix = blocks.cummax(dim=-1).values.view(batch, padded)  # (B, N)
    suffix = blocks.flip(-1).cummax(dim=-1).values.flip(-1).reshape(batch, padded)  # (B, N)
    return torch.maximum(suffix[:, :length], prefix[:, width - 1 : width - 1 + length])  # (B, T)


def _first(mask: Tensor) -> Tensor:
    """Index of the first True along the last dim (torch.argmax returns the first maximum).

    (B, T) bool -> (B,); only called where some True is known to exist.
    """
    return mask.to(torch.uint8).argmax(dim=-1)


def _after(start: Tensor, length: int) -> Tensor:
    """Mask of frames > start for each row: (B,) -> (B, T)."""
    return torch.arange(length, device=start.device) > start[:, None]


def _pick(x: Tensor, idx: Tensor) -> Tensor:
    """x[b, idx[b]]: (B, T), (B,) -> (B,)."""
    return x.gather(-1, idx[:, None]).squeeze(-1)


def _state_change(li: Tensor, la: Tensor, le: Tensor, width: int) -> tuple[Tensor, ...]:
    """Fast path on (B, T) logs; see the module docstring for the recurrence and the tie rule."""
    length = li.shape[-1]
    tail = la + _next_window_max(le, width)  # (B, T): R(a), best action + end from frame a
    score = li + _next_window_max(tail, width)  # (B, T): best triple starting at s1
    score = score[:, : length - 2]  # (B, T - 2): later s1 leave no room for a < s2
    best = score.amax(dim=-1)  # (B,)
    s1 = _first(score == best[:, None])  # (B,)
    li_s1 = _pick(li, s1)[:, None]  # (B, 1)
    # Rounded sums are monotone in each term, so a reaches best exactly where li[s1] + R(a)
    # does. Some a in (s1, s1 + D] does, so the first a > s1 that does lies in the window; the
    # same holds for s2 after a.
    a = _first(_after(s1, length) & (li_s1 + tail == best[:, None]))  # (B,)
    triple = li_s1 + (_pick(la, a)[:, None] + le)  # (B, T): scores of (s1, a, s2) over s2
    s2 = _first(_after(a, length) & (triple == best[:, None]))  # (B,)
    return s1, a, s2, best


def best_state_change_from_logs(
    log_init: Tensor, log_action: Tensor, log_end: Tensor, max_distance: int | None = None
) -> StateChange:
    """``best_state_change`` on log-probabilities (e.g. a model's log_softmax outputs)."""
    logs = (log_init, log_action, log_end)
    length = _check(logs, 3, "best_state_change")
    width = _window(max_distance, length)
    batch_shape = log_init.shape[:-1]
    out = _state_change(*(_flat(t) for t in _as_logs(logs)), width)
    return StateChange(*(t.reshape(batch_shape) for t in out))


def best_state_change(
    p_init: Tensor, p_action: Tensor, p_end: Tensor, max_distance: int | None = None
) -> StateChange:
    """Exact argmax over s1 < a < s2 of p_init[s1]·p_action[a]·p_end[s2], in O(T).

    Inputs: probabilities (>= 0) of shape (T,) or (B, T) (any leading shape; all three equal), on
    any device and of any dtype. ``max_distance`` D adds a - s1 <= D and s2 - a <= D (the paper
    uses D = 500). Ties: the lexicographically smallest (s1, a, s2) among the best rounded
    log-scores (module docstring). Raises ValueError for videos shorter than 3 frames.
    """
    return best_state_change_from_logs(*_logs((p_init, p_action, p_end)), max_distance)


def best_pair_from_logs(log_init: Tensor, log_end: Tensor) -> Pair:
    """``best_pair`` on log-probabilities."""
    logs = (log_init, log_end)
    length = _check(logs, 2, "best_pair")
    batch_shape = log_init.shape[:-1]
    li, le = (_flat(t) for t in _as_logs(logs))  # (B, T)
    score = li + _next_window_max(le, length)  # (B, T): best pair starting at i
    best = score[:, : length - 1].amax(dim=-1)  # (B,)
    i = _first(score[:, : length - 1] == best[:, None])  # (B,)
    pair = _pick(li, i)[:, None] + le  # (B, T): scores of (i, j) over j
    j = _first(_after(i, length) & (pair == best[:, None]))
    return Pair(*(t.reshape(batch_shape) for t in (i, j, best)))


def best_pair(p_init: Tensor, p_end: Tensor) -> Pair:
    """Exact argmax over i < j of p_init[i]·p_end[j] (the evaluation's state precision).

    Same inputs, log space and tie rule as ``best_state_change``: lexicographically smallest
    (i, j) among the best rounded ``log p_init[i] + log p_end[j]``. Needs T >= 2.
    """
    return best_pair_from_logs(*_logs((p_init, p_end)))


# ---------------------------------------------------------------------------------------------
# Brute force: the reference for tests and the baseline of bench/constraint.py.


def _triple_scores(li: Tensor, la: Tensor, le: Tensor, s1: slice, width: int) -> Tensor:
    """Scores of every triple with s1 in the slice, -inf where the constraint fails.

    (B, T) logs -> (B, S, T, T) indexed [b, s1, a, s2]: every triple is evaluated, as in the
    original kernel, and added in the order the tie rule names. Invalid (a, s2) pairs and
    (s1, a) pairs are set to -inf before the sum (-inf plus anything finite stays -inf), so the
    cube costs one addition per triple.
    """
    t = torch.arange(li.shape[-1], device=li.device)  # (T,)
    first = t[s1, None]  # (S, 1)
    pairs = torch.where(
        (t[:, None] < t) & (t - t[:, None] <= width), la[:, :, None] + le[:, None, :], _NEG_INF
    )  # (B, T, T): [b, a, s2]
    starts = torch.where(
        (first < t) & (t - first <= width), li[:, s1, None], _NEG_INF
    )  # (B, S, T): [b, s1, a]
    return starts[:, :, :, None] + pairs[:, None]  # (B, S, T, T)


def brute_force_state_change(
    p_init: Tensor,
    p_action: Tensor,
    p_end: Tensor,
    max_distance: int | None = None,
    chunk: int | None = None,
    from_logs: bool = False,
) -> StateChange:
    """Exhaustive O(T^3) search, the reference that ``best_state_change`` must equal exactly.

    Like the original CUDA kernel it scores every (s1, a, s2); here ``chunk`` values of s1 at a
    time (all at once by default), keeping (B, chunk, T, T) scores in memory. The first maximum
    in [s1, a, s2] order (torch.argmax returns the first) is the lexicographically smallest
    triple; a later chunk replaces the running best only if strictly better. If every triple is
    -inf, the argmax lands on an invalid triple, so (0, 1, 2) — the smallest valid one — is put.
    """
    probs = (p_init, p_action, p_end)
    length = _check(probs, 3, "brute_force_state_change")
    width = _window(max_distance, length)
    batch_shape = p_init.shape[:-1]
    li, la, le = (_flat(t) for t in (_as_logs(probs) if from_logs else _logs(probs)))
    step = chunk or length
    best = torch.full(li.shape[:1], _NEG_INF, dtype=li.dtype, device=li.device)  # (B,)
    flat = torch.zeros(li.shape[:1], dtype=torch.long, device=li.device)  # (B,) s1*T*T+a*T+s2
    for start in range(0, length, step):
        scores = _triple_scores(li, la, le, slice(start, start + step), width).flatten(1)
        value, index = scores.max(dim=-1)  # (B,), first maximum in [s1, a, s2] order
        better = value > best
        best = torch.where(better, value, best)
        flat = torch.where(better, index + start * length * length, flat)
    flat = torch.where(best == _NEG_INF, length + 2, flat)  # all -inf: (0, 1, 2)
    s1, a, s2 = flat // (length * length), flat // length % length, flat % length
    return StateChange(*(t.reshape(batch_shape) for t in (s1, a, s2, best)))


def brute_force_pair(p_init: Tensor, p_end: Tensor) -> Pair:
    """Exhaustive O(T^2) reference for ``best_pair`` (same tie rule)."""
    length = _check((p_init, p_end), 2, "brute_force_pair")
    batch_shape = p_init.shape[:-1]
    li, le = (_flat(t) for t in _logs((p_init, p_end)))  # (B, T)
    idx = torch.arange(length, device=li.device)
    scores = torch.where(idx[:, None] < idx[None, :], li[:, :, None] + le[:, None, :], _NEG_INF)
    best, flat = scores.flatten(1).max(dim=-1)  # (B,), first maximum in [i, j] order
    flat = torch.where(best == _NEG_INF, 1, flat)  # all -inf: (0, 1)
    return Pair(*(t.reshape(batch_shape) for t in (flat // length, flat % length, best)))
