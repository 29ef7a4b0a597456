"""Object-state-change evaluation on ChangeIt (Souček et al., 2022), ground-truth category given.

Per video the model gives, for the video's own category, per-frame probabilities of the initial
state ``p_init``, the action ``p_action`` and the end state ``p_end`` (1 fps, shape ``(T,)``);
the annotation gives one label per second (``changeit.BACKGROUND``, ``INITIAL_STATE``, ``ACTION``,
``END_STATE`` = 0, 1, 2, 3). Four precisions@1, each in [0, 1]:

* ``state_p1``: (i, j) = argmax over i < j of p_init[i]·p_end[j]; 0.5·[ann[i] == 1] +
  0.5·[ann[j] == 3].
* ``action_p1``: [ann[argmax p_action] == 2] (first maximum on ties, as ``np.argmax``).
* ``joint_state_p1`` / ``joint_action_p1``: (s1, a, s2) = argmax over s1 < a < s2 of
  p_init[s1]·p_action[a]·p_end[s2] (no distance limit unless ``max_distance`` is given);
  0.5·[ann[s1] == 1] + 0.5·[ann[s2] == 3], and [ann[a] == 2].

The argmaxes are ``metrics.constraint.best_pair`` / ``best_state_change``: exact, in log
space, lexicographically smallest indices on ties. They run in float64 on the CPU whatever the
inputs are (numpy or torch, any float dtype, any device): evaluation is cheap, float32 values are
exact in float64, and the result then depends only on the probability values, not on their
container. (The original loops over products with a strict ``>``, so it also keeps the first
best pair in (i, j) order; only where rounding makes products tie and log sums not, or the
reverse, can the two pick different frames.)

Aggregation, as the original ``JointMeter``: mean over the videos of each category, then mean
over the categories that have videos. Values are reported x1; ``StateScores.percent`` gives the
paper's x100. A flat mean over videos would weight large categories more; it is not used.

Decisions where the original asserts or is undefined:

* Frame/label length mismatch. Decoding at 1 fps can give a frame or two more or fewer than the
  annotation has seconds; the original asserts equality and crashes. Frame t and label t both
  mean second t, so the video is scored on the common prefix of min(T, T') seconds: frames past
  the annotation have no ground truth and are never chosen (padding the labels with background,
  as ``changeit.align`` does for training targets, would instead count a pick there as wrong).
  A difference above ``tolerance`` frames (default 2, the same as ``changeit.align``: "a frame or
  two") means the wrong video or annotation and raises a ``ValueError`` naming the video. The
  signed difference T - T' is kept in each per-video row, so a notebook can count how often it
  happened.
* Too short videos. After the prefix cut a video needs 2 frames for a state pair and 3 for a
  joint triple (``best_pair`` / ``best_state_change`` raise below that). With ``short="zero"``
  (default) a score that has no valid prediction is 0: the video stays in every mean (all four
  metrics keep the same denominators) and a prediction that cannot exist is not correct. The
  original would instead score its fallback triple (0, 0, 0), i.e. frame 0 twice, which can give 0.5
  for a wrong answer. With ``short="raise"`` such a video raises a ``ValueError`` naming it. A
  video with no frame at all always raises. Real ChangeIt test videos are minutes long.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from vidrepro.data.formats.changeit import ACTION, BACKGROUND, END_STATE, INITIAL_STATE
from vidrepro.metrics.constraint import best_pair, best_state_change

__all__ = [
    "DEFAULT_TOLERANCE",
    "METRICS",
    "StateScores",
    "VideoPrediction",
    "aggregate",
    "evaluate",
    "score_video",
]

METRICS = ("state_p1", "action_p1", "joint_state_p1", "joint_action_p1")
"""The four precisions@1, in the order of the summary."""

DEFAULT_TOLERANCE = 2
"""Largest |frames - annotated seconds| scored on the common prefix instead of raising."""

ArrayOrTensor = np.ndarray | Tensor | Sequence[float]
Short = Literal["zero", "raise"]
_NO_FRAME = -1  # frame index in a row where no prediction exists (too short video)


@dataclass(frozen=True)
class VideoPrediction:
    """One test video: its category's probabilities per frame and its per-second labels."""

    category: str
    video_id: str
    p_init: ArrayOrTensor  # (T,)
    p_action: ArrayOrTensor  # (T,)
    p_end: ArrayOrTensor  # (T,)
    labels: ArrayOrTensor  # (T',) ints 0-3


@dataclass(frozen=True)
class StateScores:
    """Evaluation result; every value in [0, 1].

    ``summary``: the four metrics (mean over categories of per-category means).
    ``per_category``: category -> the four metrics (mean over its videos), sorted by name.
    ``num_videos``: category -> number of videos. ``rows``: one dict per video, in input order,
    with ``category``, ``video``, the four scores, the chosen frames and the frame counts
    (``score_video``'s keys), e.g. for ``pandas.DataFrame(scores.rows)`` in a notebook.
    ``item_scores()`` gives the rows as weighted per-item scores of the summary.
    """

    summary: dict[str, float]
    per_category: dict[str, dict[str, float]]
    num_videos: dict[str, int]
    rows: list[dict[str, Any]] = field(repr=False)

    def percent(self) -> dict[str, float]:
        """The summary x100, the scale of the paper's tables."""
        return {k: 100.0 * v for k, v in self.summary.items()}

    def item_scores(self) -> list[dict[str, Any]]:
        """One row per video for ``runs.log_items``: ``item`` (``category/video``), ``weight``
        and the four ``METRICS``. The weight is 1 / (videos of its category), scaled so the
        weights average 1 (all 1 when the categories are equally large), so the weighted mean
        of each metric is the summary's mean over categories of per-category means."""
        total, n_categories = len(self.rows), len(self.num_videos)
        return [
            {
                "item": f"{r['category']}/{r['video']}",
                "weight": total / (n_categories * self.num_videos[r["category"]]),
                **{k: float(r[k]) for k in METRICS},
            }
            for r in self.rows
        ]


# ---------------------------------------------------------------------------------------------
# Input handling.


def _probs(x: ArrayOrTensor, name: str, video: str) -> Tensor:
    """(T,) float64 CPU tensor, checked finite and >= 0 (the argmaxes give no guarantee else)."""
    if isinstance(x, Tensor):
        t = x.detach().to(device="cpu", dtype=torch.float64)
    else:
        t = torch.from_numpy(np.asarray(x, dtype=np.float64))
    if t.ndim != 1:
        raise ValueError(f"{video}: {name} must be 1-D (T,), got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
        raise ValueError(f"{video}: {name} must hold finite probabilities >= 0")
    return t


def _labels(x: ArrayOrTensor, video: str) -> np.ndarray:
    """(T',) int64 labels, checked to be 0-3 so a wrong column cannot score silently."""
    arr = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{video}: labels must be 1-D (T',), got shape {arr.shape}")
    if arr.size and (
        not np.issubdtype(arr.dtype, np.integer) or arr.min() < BACKGROUND or arr.max() > END_STATE
    ):
        raise ValueError(f"{video}: labels must be integers 0-3, got {np.unique(arr)[:8]}")
    return arr.astype(np.int64, copy=False)


def _common_prefix(
    probs: tuple[Tensor, ...], labels: np.ndarray, tolerance: int, video: str
) -> tuple[tuple[Tensor, ...], np.ndarray, int]:
    """Probabilities and labels cut to min(T, T'), and the signed mismatch T - T'."""
    lengths = {len(p) for p in probs}
    if len(lengths) != 1:
        raise ValueError(
            f"{video}: p_init, p_action and p_end differ in length: {[len(p) for p in probs]}"
        )
    frames = lengths.pop()
    mismatch = frames - len(labels)
    if abs(mismatch) > tolerance:
        raise ValueError(
            f"{video}: {frames} frames but {len(labels)} annotated seconds (differ by "
            f"{abs(mismatch)}, tolerance {tolerance}): wrong video or annotation?"
        )
    n = min(frames, len(labels))
    if n == 0:
        raise ValueError(f"{video}: nothing to score ({frames} frames, {len(labels)} labels)")
    return tuple(p[:n] for p in probs), labels[:n], mismatch


# ---------------------------------------------------------------------------------------------
# Scores.


def _state_score(labels: np.ndarray, first: int, last: int) -> float:
    """Half a point for each state frame that is annotated as that state."""
    return 0.5 * (labels[first] == INITIAL_STATE) + 0.5 * (labels[last] == END_STATE)


def _too_short(n: int, needed: int, what: str, short: Short, video: str) -> bool:
    """Whether a metric has no valid prediction; raises instead if ``short == "raise"``."""
    if n >= needed:
        return False
    if short == "raise":
        raise ValueError(f"{video}: {what} needs at least {needed} frames, got {n}")
    return True


def _pair_part(
    p_init: Tensor, p_end: Tensor, labels: np.ndarray, short: Short, video: str
) -> dict[str, Any]:
    if _too_short(len(labels), 2, "state precision", short, video):
        return {"state_p1": 0.0, "init_frame": _NO_FRAME, "end_frame": _NO_FRAME}
    i, j = (int(x) for x in best_pair(p_init, p_end)[:2])
    return {"state_p1": _state_score(labels, i, j), "init_frame": i, "end_frame": j}


def _action_part(p_action: Tensor, labels: np.ndarray) -> dict[str, Any]:
    a = int(torch.argmax(p_action))  # first maximum, as np.argmax in the original
    return {"action_p1": float(labels[a] == ACTION), "action_frame": a}


def _joint_part(
    probs: tuple[Tensor, ...],
    labels: np.ndarray,
    max_distance: int | None,
    short: Short,
    video: str,
) -> dict[str, Any]:
    if _too_short(len(labels), 3, "joint precision", short, video):
        return {
            "joint_state_p1": 0.0,
            "joint_action_p1": 0.0,
            "joint_init_frame": _NO_FRAME,
            "joint_action_frame": _NO_FRAME,
            "joint_end_frame": _NO_FRAME,
        }
    s1, a, s2 = (int(x) for x in best_state_change(*probs, max_distance=max_distance)[:3])
    return {
        "joint_state_p1": _state_score(labels, s1, s2),
        "joint_action_p1": float(labels[a] == ACTION),
        "joint_init_frame": s1,
        "joint_action_frame": a,
        "joint_end_frame": s2,
    }


def score_video(
    p_init: ArrayOrTensor,
    p_action: ArrayOrTensor,
    p_end: ArrayOrTensor,
    labels: ArrayOrTensor,
    *,
    video: str = "video",
    tolerance: int = DEFAULT_TOLERANCE,
    max_distance: int | None = None,
    short: Short = "zero",
) -> dict[str, Any]:
    """The four precisions@1 of one video, with the frames they picked.

    ``p_*``: (T,) probabilities of the video's category (numpy, torch on any device, or lists);
    ``labels``: (T',) per-second labels 0-3. ``video`` names the video in errors. Returns the
    ``METRICS`` keys (floats), the chosen frames ``init_frame``, ``end_frame``, ``action_frame``,
    ``joint_init_frame``, ``joint_action_frame``, ``joint_end_frame`` (-1 where the video is too
    short to have one), ``frames`` (scored length min(T, T')) and ``mismatch`` (T - T').
    See the module docstring for ``tolerance`` and ``short``.
    """
    if short not in ("zero", "raise"):
        raise ValueError(f"short must be 'zero' or 'raise', got {short!r}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    raw = (
        _probs(p_init, "p_init", video),
        _probs(p_action, "p_action", video),
        _probs(p_end, "p_end", video),
    )
    probs, ann, mismatch = _common_prefix(raw, _labels(labels, video), tolerance, video)
    pi, pa, pe = probs
    return {
        **_pair_part(pi, pe, ann, short, video),
        **_action_part(pa, ann),
        **_joint_part(probs, ann, max_distance, short, video),
        "frames": len(ann),
        "mismatch": mismatch,
    }


# ---------------------------------------------------------------------------------------------
# Aggregation.


def _mean_rows(rows: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    rows = list(rows)
    return {k: float(np.mean([r[k] for r in rows])) for k in METRICS}


def aggregate(rows: Sequence[Mapping[str, Any]]) -> StateScores:
    """Per-category means, then their mean; rows need ``category`` and the ``METRICS`` keys.

    Split from ``evaluate`` so that rows gathered elsewhere (e.g. from several processes) can
    be pooled and averaged the same way.
    """
    if not rows:
        raise ValueError("no videos to evaluate")
    by_category: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        by_category[row["category"]].append(row)
    per_category = {c: _mean_rows(by_category[c]) for c in sorted(by_category)}
    summary = {k: float(np.mean([m[k] for m in per_category.values()])) for k in METRICS}
    num_videos = {c: len(by_category[c]) for c in per_category}
    return StateScores(summary, per_category, num_videos, [dict(r) for r in rows])


def evaluate(
    videos: Iterable[VideoPrediction],
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    max_distance: int | None = None,
    short: Short = "zero",
) -> StateScores:
    """Score every video (``score_video``) and average per category, then over categories.

    A (category, video id) given twice raises: it would silently count double in its category.
    Errors name the video as ``category/video_id``.
    """
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for v in videos:
        name = f"{v.category}/{v.video_id}"
        if (v.category, v.video_id) in seen:
            raise ValueError(f"{name}: video given twice")
        seen.add((v.category, v.video_id))
        scores = score_video(
            v.p_init,
            v.p_action,
            v.p_end,
            v.labels,
            video=name,
            tolerance=tolerance,
            max_distance=max_distance,
            short=short,
        )
        rows.append({"category": v.category, "video": v.video_id, **scores})
    return aggregate(rows)
