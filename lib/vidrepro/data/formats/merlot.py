"""MERLOT pretraining videos with their transcripts, in the kit's own layout.

MERLOT read YT-Temporal-180M from TFRecords of pre-cut, pre-tokenised examples, which only its
TensorFlow input pipeline can read. The kit stores the same information uncut, so segmenting
and tokenising stay in reviewable Python::

    <root>/segments.jsonl      one line per video, in any order
    <root>/<video_id>.mp4      the video

    {"video_id": "abc", "duration": 31.5,
     "segments": [{"start": 0.0, "end": 4.2, "text": "so today we are going to"}, ...]}

Segments are the ASR transcript's pieces: ordered, non-overlapping (a segment may start where
the previous one ends), inside ``[0, duration]``. Errors name the index file and line number.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from vidrepro.data.formats.errors import FormatError, OnError, PathLike, Records, field_of

INDEX = "segments.jsonl"


@dataclass(frozen=True)
class Segment:
    start: float  # seconds
    end: float
    text: str


@dataclass(frozen=True)
class MerlotVideo:
    video_id: str  # file name stem of <root>/<video_id>.mp4
    duration: float  # seconds
    segments: tuple[Segment, ...]


def video_path(root: PathLike, video_id: str) -> Path:
    return Path(root) / f"{video_id}.mp4"


def write_segments(root: PathLike, videos: Iterable[MerlotVideo]) -> None:
    """Write the index; the videos themselves go to ``video_path(root, video_id)``."""
    Path(root).mkdir(parents=True, exist_ok=True)
    with (Path(root) / INDEX).open("w", encoding="utf-8") as f:
        for v in videos:
            segments = [{"start": s.start, "end": s.end, "text": s.text} for s in v.segments]
            line = {"video_id": v.video_id, "duration": v.duration, "segments": segments}
            f.write(json.dumps(line, ensure_ascii=False) + "\n")


def _seconds(raw: object, key: str, path: Path, entry: str) -> float:
    value = float(field_of(raw, key, (int, float), path, entry))
    if not math.isfinite(value):
        raise FormatError(path, entry, f"{key!r} must be finite, got {value}")
    return value


def _video(path: Path, entry: str, line: str) -> MerlotVideo:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as e:
        raise FormatError(path, entry, f"invalid JSON: {e.msg} (column {e.colno})") from None
    video_id = field_of(raw, "video_id", str, path, entry)
    entry = f"{entry} (video {video_id!r})"
    if not video_id or Path(video_id).name != video_id:
        raise FormatError(path, entry, "video_id must be a plain file name stem")
    duration = _seconds(raw, "duration", path, entry)
    if duration <= 0:
        raise FormatError(path, entry, f"duration must be > 0, got {duration}")
    segments = []
    for j, seg in enumerate(field_of(raw, "segments", list, path, entry)):
        where = f"{entry} segment {j}"
        start, end = _seconds(seg, "start", path, where), _seconds(seg, "end", path, where)
        text = field_of(seg, "text", str, path, where)
        if not 0 <= start < end <= duration:
            problem = f"[{start}, {end}] is not a non-empty span inside [0, {duration}]"
            raise FormatError(path, where, problem)
        if segments and start < segments[-1].end:
            problem = f"starts at {start}, before segment {j - 1} ends ({segments[-1].end})"
            raise FormatError(path, where, problem)
        segments.append(Segment(start, end, text))
    if not segments:
        raise FormatError(path, entry, "has no segments")
    return MerlotVideo(video_id, duration, tuple(segments))


def read_segments(
    root: PathLike, check_videos: bool = True, on_error: OnError = "raise"
) -> Records[MerlotVideo]:
    """Videos in index order. A malformed line, a repeated video id or (with ``check_videos``)
    a missing video file is an error or, with ``on_error="skip"``, left out and counted."""
    path = Path(root) / INDEX
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise FormatError(path, "file", "not found") from None
    out: Records[MerlotVideo] = Records(on_error)
    seen: set[str] = set()
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            video = _video(path, f"line {n}", line)
            if video.video_id in seen:
                raise FormatError(path, f"line {n}", f"video {video.video_id!r} is listed twice")
            if check_videos and not (file := video_path(root, video.video_id)).is_file():
                where = f"line {n} (video {video.video_id!r})"
                raise FormatError(path, where, f"video file {file} not found")
        except FormatError as e:
            out.reject(e)
            continue
        seen.add(video.video_id)
        out.append(video)
    return out
