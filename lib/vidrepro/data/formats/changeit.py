"""The ChangeIt dataset (object state changes), in the layout of its public repository.

Under the dataset root:

* ``categories.csv``: header ``DIR_NAME,ACTION_NAME,CENTERING_PARAM``, then e.g.
  ``apple,"Apple Peeling/Cutting",0.309``; the last column is the centering parameter theta of
  the noise-adaptive weight. Category index = position in name order (the original sorts the
  video folders by name), so the index map is rebuilt, never read.
* ``videos/<category>.csv``: ``<youtube id>,<relevance score>`` rows, *no header* (the original
  reads every line as data). A header ``id,score`` is accepted; the writer never writes one.
* ``annotations/<category>/<youtube id>.fps1.csv``: ``<second>,<label>`` rows, no header, one
  per second from 0; labels ``0`` background, ``1`` initial state, ``2`` action, ``3`` end state.
  Only the test videos are annotated.

Videos live apart from the annotations, at ``<video_root>/<category>/<youtube id>.(mp4|webm)``;
training videos keep disappearing from YouTube, so missing ones can be skipped and counted.
Decoding a video at 1 fps can give a frame or two more or fewer than the annotation has seconds
(the original asserts equal length and crashes): ``align`` absorbs small differences and
reports them.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from vidrepro.data.formats.errors import FormatError, OnError, PathLike, Records

CATEGORIES_HEADER = ("DIR_NAME", "ACTION_NAME", "CENTERING_PARAM")
SCORES_HEADER = ("id", "score")
BACKGROUND, INITIAL_STATE, ACTION, END_STATE = 0, 1, 2, 3
NOISE_TEMPERATURE = 0.001  # the 0.001 in sigmoid((r - theta) / 0.001)
VIDEO_SUFFIXES = (".mp4", ".webm")
_LABELS = (BACKGROUND, INITIAL_STATE, ACTION, END_STATE)


@dataclass(frozen=True)
class Category:
    name: str  # DIR_NAME: folder and file name of the category
    action: str  # ACTION_NAME, human-readable
    centering: float  # CENTERING_PARAM theta


def _rows(path: Path) -> list[tuple[int, list[str]]]:
    """Non-blank CSV rows with their 1-based line numbers."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            return [(n, row) for n, row in enumerate(csv.reader(f), start=1) if row]
    except FileNotFoundError:
        raise FormatError(path, "file", "not found") from None


def _finite(text: str, path: Path, entry: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise FormatError(path, entry, f"{what} must be a finite number, got {text!r}")
    return value


def read_categories(root: PathLike) -> list[Category]:
    """All categories, sorted by name (their index order)."""
    path = Path(root) / "categories.csv"
    rows = _rows(path)
    if not rows or tuple(rows[0][1]) != CATEGORIES_HEADER:
        raise FormatError(path, "line 1", f"header must be {','.join(CATEGORIES_HEADER)}")
    categories: dict[str, Category] = {}
    for n, row in rows[1:]:
        if len(row) != 3:
            raise FormatError(path, f"line {n}", f"expected 3 fields, got {row}")
        if row[0] in categories:
            raise FormatError(path, f"line {n}", f"category {row[0]!r} listed twice")
        centering = _finite(row[2], path, f"line {n}", "CENTERING_PARAM")
        categories[row[0]] = Category(row[0], row[1], centering)
    return sorted(categories.values(), key=lambda c: c.name)


def category_index(categories: Iterable[Category]) -> dict[str, int]:
    """Category name -> class index c (state logits 2c, 2c+1; action logit c)."""
    return {name: i for i, name in enumerate(sorted(c.name for c in categories))}


def write_categories(root: PathLike, categories: Iterable[Category]) -> None:
    """Written like the original: only ACTION_NAME quoted."""
    lines = [",".join(CATEGORIES_HEADER)]
    for c in sorted(categories, key=lambda c: c.name):
        if any(ch in c.name for ch in ',"\n\r'):
            raise ValueError(f"category name {c.name!r} cannot hold commas, quotes or newlines")
        action = c.action.replace('"', '""')
        lines.append(f'{c.name},"{action}",{c.centering!r}')
    Path(root).mkdir(parents=True, exist_ok=True)
    (Path(root) / "categories.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_scores(root: PathLike, category: str) -> dict[str, float]:
    """Relevance score r of every (downloadable or not) video of a category, by YouTube id."""
    path = Path(root) / "videos" / f"{category}.csv"
    rows = _rows(path)
    if rows and tuple(rows[0][1]) == SCORES_HEADER:
        rows = rows[1:]
    scores: dict[str, float] = {}
    for n, row in rows:
        if len(row) != 2:
            raise FormatError(path, f"line {n}", f"expected 'id,score', got {row}")
        if row[0] in scores:
            raise FormatError(path, f"line {n}", f"video {row[0]!r} listed twice")
        scores[row[0]] = _finite(row[1], path, f"line {n}", "score")
    return scores


def write_scores(root: PathLike, category: str, scores: Mapping[str, float]) -> None:
    path = Path(root) / "videos" / f"{category}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{video_id},{float(r)!r}\n" for video_id, r in scores.items()]
    path.write_text("".join(lines), encoding="utf-8")


def noise_weight(score: ArrayLike, centering: ArrayLike) -> np.ndarray:
    """``sigmoid((score - centering) / 0.001)``: a nearly hard gate that keeps videos above the
    category's relevance threshold. Written with ``exp(-|x|)`` so that scores far from theta
    (|x| in the hundreds) neither overflow nor lose the tail. Scalars in, 0-d array out."""
    r, theta = np.asarray(score, dtype=np.float64), np.asarray(centering, dtype=np.float64)
    x = (r - theta) / NOISE_TEMPERATURE
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def annotation_path(root: PathLike, category: str, video_id: str) -> Path:
    return Path(root) / "annotations" / category / f"{video_id}.fps1.csv"


def annotated_ids(root: PathLike, category: str) -> list[str]:
    """YouTube ids of a category's annotated (test) videos, sorted."""
    folder = Path(root) / "annotations" / category
    return sorted(p.name.removesuffix(".fps1.csv") for p in folder.glob("*.fps1.csv"))


def read_annotation(root: PathLike, category: str, video_id: str) -> np.ndarray:
    """Per-second labels (T,) int64, checked to be one row per second from 0 with labels 0-3."""
    path = annotation_path(root, category, video_id)
    labels = []
    for n, row in _rows(path):
        if len(row) != 2 or not all(field.strip().isdecimal() for field in row):
            raise FormatError(path, f"line {n}", f"expected 'second,label' integers, got {row}")
        second, label = int(row[0]), int(row[1])
        if second != len(labels):
            raise FormatError(path, f"line {n}", f"second {second}, expected {len(labels)}")
        if label > END_STATE:
            raise FormatError(path, f"line {n}", f"label {label} is not one of 0, 1, 2, 3")
        labels.append(label)
    return np.asarray(labels, dtype=np.int64)


def write_annotation(root: PathLike, category: str, video_id: str, labels: ArrayLike) -> None:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.isin(labels, _LABELS).all():
        raise ValueError(f"labels must be (T,) with values 0-3, got shape {labels.shape}")
    path = annotation_path(root, category, video_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{t},{int(label)}\n" for t, label in enumerate(labels)]
    path.write_text("".join(lines), encoding="utf-8")


def align(
    labels: np.ndarray, num_frames: int, *, tolerance: int = 2, source: PathLike = "annotation"
) -> tuple[np.ndarray, int]:
    """Labels (T,) fitted to a decoded frame count: ``(labels (num_frames,), num_frames - T)``.

    Up to ``tolerance`` missing seconds are padded with background, extra ones trimmed; the
    signed mismatch is returned so a caller can count how often it happened. A larger
    difference means the wrong video or annotation: a ``FormatError`` naming ``source``."""
    mismatch = num_frames - len(labels)
    if abs(mismatch) > tolerance:
        raise FormatError(
            source, "frame count",
            f"the video decodes to {num_frames} frames at 1 fps but the annotation has "
            f"{len(labels)} seconds (differ by {abs(mismatch)}, tolerance {tolerance})",
        )
    if mismatch > 0:
        return np.concatenate([labels, np.full(mismatch, BACKGROUND, dtype=labels.dtype)]), mismatch
    return labels[:num_frames], mismatch


def video_path(video_root: PathLike, category: str, video_id: str, suffix: str = ".mp4") -> Path:
    return Path(video_root) / category / f"{video_id}{suffix}"


def find_video(video_root: PathLike, category: str, video_id: str) -> Path:
    """The video's file, ``.mp4`` or ``.webm``; a ``FormatError`` if it has neither."""
    for suffix in VIDEO_SUFFIXES:
        if (path := video_path(video_root, category, video_id, suffix)).is_file():
            return path
    tried = video_path(video_root, category, video_id, ".{mp4,webm}")
    raise FormatError(tried, f"video {category}/{video_id}", "video file not found")


def find_videos(
    video_root: PathLike, category: str, video_ids: Iterable[str], on_error: OnError = "raise"
) -> Records[Path]:
    """The files of ``video_ids``, in order; missing ones are an error or, with
    ``on_error="skip"``, left out and counted."""
    out: Records[Path] = Records(on_error)
    for video_id in video_ids:
        try:
            out.append(find_video(video_root, category, video_id))
        except FormatError as e:
            out.reject(e)
    return out
