"""ActivityNet Captions annotations and the BMT feature files, as BMT (and so BMHRL) reads them.

Annotations (``train.json``, ``val_1.json``, ``val_2.json``; the two val files annotate the
same videos twice)::

    {"v_QOlSCBRmfWY": {"duration": 82.73, "timestamps": [[0.83, 19.86], ...],
                       "sentences": ["A young woman is seen standing in a room ...", ...]}}

Real timestamps sometimes run a little past the duration, so an end (or a start below 0)
within ``max(tolerance_s, tolerance_frac * duration)`` of the range is clipped into it; further
out, or an event starting after the video ends, is an error.

Features, one ``.npy`` per video and stream, named by the annotation key *with* its ``v_``
prefix (BMT loads ``f"{video_id}_rgb.npy"`` with ids like ``v_QOlSCBRmfWY``). BMT keeps them
in two folders, ``i3d_25fps_stack64step64_2stream_npy/`` (video) and ``vggish_npy/`` (audio):

* ``<video_dir>/<id>_rgb.npy``, ``<video_dir>/<id>_flow.npy``: ``(S, 1024)`` I3D, one row per
  64-frame stack at 25 fps; the same S for both, BMT sums them;
* ``<audio_dir>/<id>.npy``: ``(S', 128)`` VGGish, one row per 0.96 s.

Some videos have no features (the YouTube video was gone when they were extracted); BMT scores
on the available videos only, which ``with_features`` selects and counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from vidrepro.data.formats.errors import (
    FormatError,
    OnError,
    PathLike,
    Records,
    dump_json,
    field_of,
    load_json,
    require_entries,
)

FeatureKind = Literal["rgb", "flow", "audio"]
# The folders BMT's download script unpacks the features into.
I3D_DIR, VGGISH_DIR = "i3d_25fps_stack64step64_2stream_npy", "vggish_npy"
FEATURE_DIMS: dict[str, int] = {"rgb": 1024, "flow": 1024, "audio": 128}  # I3D, I3D, VGGish
_SUFFIXES = {"rgb": "_rgb.npy", "flow": "_flow.npy", "audio": ".npy"}


@dataclass(frozen=True)
class Event:
    start: float  # seconds
    end: float
    sentence: str


@dataclass(frozen=True)
class AnetVideo:
    video_id: str  # the annotation key, "v_<youtube id>"
    duration: float  # seconds
    events: tuple[Event, ...]


def write_annotations(path: PathLike, videos: Iterable[AnetVideo]) -> None:
    dump_json(path, {
        v.video_id: {
            "duration": v.duration,
            "timestamps": [[e.start, e.end] for e in v.events],
            "sentences": [e.sentence for e in v.events],
        }
        for v in videos
    })


def _number(value: object) -> float | None:
    """``value`` as a finite float, or None if it is not a finite JSON number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _video(
    path: PathLike, video_id: str, raw: object, tolerance_s: float, tolerance_frac: float
) -> AnetVideo:
    name = f"video {video_id!r}"
    duration = _number(field_of(raw, "duration", (int, float), path, name))
    if duration is None or duration <= 0:
        raise FormatError(path, name, f"duration must be finite and > 0, got {raw['duration']!r}")
    timestamps = field_of(raw, "timestamps", list, path, name)
    sentences = field_of(raw, "sentences", list, path, name)
    if len(timestamps) != len(sentences):
        problem = f"{len(timestamps)} timestamps but {len(sentences)} sentences"
        raise FormatError(path, name, problem)
    tolerance = max(tolerance_s, tolerance_frac * duration)
    events = []
    for j, (stamp, sentence) in enumerate(zip(timestamps, sentences)):
        where = f"{name} event {j}"
        pair = [_number(t) for t in stamp] if isinstance(stamp, list) else []
        if len(pair) != 2 or None in pair:
            problem = f"timestamp must be [start, end] finite numbers, got {stamp!r}"
            raise FormatError(path, where, problem)
        if not isinstance(sentence, str):
            raise FormatError(path, where, f"sentence must be a string, got {sentence!r}")
        start, end = pair
        if start > end:
            raise FormatError(path, where, f"starts after it ends: [{start}, {end}]")
        if start > duration:
            problem = f"starts at {start} s, after the video ends ({duration} s)"
            raise FormatError(path, where, problem)
        if start < -tolerance or end > duration + tolerance:
            problem = f"[{start}, {end}] is outside [0, {duration}] by more than {tolerance:g} s"
            raise FormatError(path, where, problem)
        events.append(Event(max(start, 0.0), min(end, duration), sentence))
    return AnetVideo(video_id, duration, tuple(events))


def read_annotations(
    path: PathLike,
    tolerance_s: float = 0.5,
    tolerance_frac: float = 0.01,
    on_error: OnError = "raise",
) -> Records[AnetVideo]:
    """Videos in file order, timestamps clipped into ``[0, duration]`` (see the module notes).
    A malformed video is an error or, with ``on_error="skip"``, left out and counted."""
    data = load_json(path)
    if not isinstance(data, dict):
        problem = f"expected an object keyed by video id, got {type(data).__name__}"
        raise FormatError(path, "top level", problem)
    require_entries(data, path, "videos")
    out: Records[AnetVideo] = Records(on_error)
    for video_id, raw in data.items():
        try:
            out.append(_video(path, video_id, raw, tolerance_s, tolerance_frac))
        except FormatError as e:
            out.reject(e)
    return out


def feature_path(root: PathLike, video_id: str, kind: FeatureKind) -> Path:
    """Where BMT looks for ``kind`` features of ``video_id`` (``root`` holds that kind)."""
    if kind not in _SUFFIXES:
        raise ValueError(f"kind must be one of {sorted(_SUFFIXES)}, got {kind!r}")
    return Path(root) / f"{video_id}{_SUFFIXES[kind]}"


def _check_shape(features: np.ndarray, kind: FeatureKind) -> str | None:
    """What is wrong with the shape of a ``kind`` array, or None."""
    dim = FEATURE_DIMS[kind]
    if features.ndim != 2 or features.shape[0] < 1 or features.shape[1] != dim:
        return f"{kind} features must be (S >= 1, {dim}), got shape {features.shape}"
    if not np.issubdtype(features.dtype, np.floating):
        return f"{kind} features must be floating point, got {features.dtype}"
    return None


def write_features(root: PathLike, video_id: str, kind: FeatureKind, features: np.ndarray) -> None:
    """Save ``features`` (S, D) as float32 ``.npy`` under BMT's name."""
    features = np.asarray(features)
    if (problem := _check_shape(features, kind)) is not None:
        raise ValueError(f"video {video_id!r}: {problem}")
    path = feature_path(root, video_id, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, features.astype(np.float32, copy=False))


def load_features(root: PathLike, video_id: str, kind: FeatureKind) -> np.ndarray:
    """(S, D) float32 features of one stream of one video; a missing, unreadable or mis-shaped
    file is a ``FormatError`` naming it."""
    path = feature_path(root, video_id, kind)
    name = f"video {video_id!r}"
    try:
        features = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FormatError(path, name, f"{kind} feature file not found") from None
    except (OSError, ValueError) as e:
        raise FormatError(path, name, f"not a readable .npy array: {e}") from None
    if (problem := _check_shape(features, kind)) is not None:
        raise FormatError(path, name, problem)
    return features.astype(np.float32, copy=False)


def feature_rows(num_rows: int, start: float, end: float, duration: float) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of an (S, D) feature stack covering ``[start, end]`` seconds.

    Exactly BMT's ``crop_a_segment`` (datasets/load_features.py): ``lo = int(S * (start /
    duration))``, ``hi = int(S * (end / duration))``, and an empty range becomes one row:
    ``[lo, lo + 1)``, or ``[S - 1, S)`` when ``lo == S`` (an event at the very end) so the row
    stays inside the stack. ``hi`` is clamped to S first, which is what BMT's slicing does to an
    ``end`` past ``duration``; where BMT then gets an empty slice (``start == duration <
    end``) it returns None and fills in random or zero features, here the one-row rule gives
    the last row. A start past ``duration``, which BMT also turns into None, is a ValueError.
    """
    if num_rows < 1 or not duration > 0:
        raise ValueError(f"need num_rows >= 1 and duration > 0, got {num_rows}, {duration}")
    if not 0 <= start <= end or start > duration:
        got = f"[{start}, {end}] of {duration}"
        raise ValueError(f"need 0 <= start <= end and start <= duration, got {got}")
    lo = int(num_rows * (start / duration))
    hi = min(int(num_rows * (end / duration)), num_rows)
    if lo == hi:
        if lo == num_rows:
            lo -= 1
        else:
            hi += 1
    return lo, hi


def event_features(
    video_dir: PathLike,
    audio_dir: PathLike,
    video_id: str,
    start: float,
    end: float,
    duration: float,
) -> dict[str, np.ndarray]:
    """The rows of each stream covering ``[start, end]``: ``{"rgb": (s, 1024), "flow": (s, 1024),
    "audio": (s', 128)}``, each stream sliced by its own length, as BMT does."""
    stacks = {
        "rgb": load_features(video_dir, video_id, "rgb"),
        "flow": load_features(video_dir, video_id, "flow"),
        "audio": load_features(audio_dir, video_id, "audio"),
    }
    if stacks["rgb"].shape != stacks["flow"].shape:
        raise FormatError(
            feature_path(video_dir, video_id, "flow"), f"video {video_id!r}",
            f"flow shape {stacks['flow'].shape} differs from rgb shape {stacks['rgb'].shape}",
        )
    out = {}
    for kind, stack in stacks.items():
        lo, hi = feature_rows(len(stack), start, end, duration)
        out[kind] = stack[lo:hi]
    return out


def with_features(
    videos: Iterable[AnetVideo],
    video_dir: PathLike,
    audio_dir: PathLike,
    on_error: OnError = "skip",
) -> Records[AnetVideo]:
    """The videos that have all three feature files (checked by existence, not loaded); the
    others are counted in ``skipped``, or an error with ``on_error="raise"``."""
    out: Records[AnetVideo] = Records(on_error)
    for video in videos:
        paths = [feature_path(video_dir, video.video_id, k) for k in ("rgb", "flow")]
        paths.append(feature_path(audio_dir, video.video_id, "audio"))
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            problem = f"feature files not found: {', '.join(missing)}"
            out.reject(FormatError(missing[0], f"video {video.video_id!r}", problem))
        else:
            out.append(video)
    return out
