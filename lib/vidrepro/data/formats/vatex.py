"""VATEX captions as the official JSON files ship them (``vatex_training_v1.0.json``, ...).

One JSON list, one entry per 10-second clip::

    [{"videoID": "Ptf_2VRj-V0_000122_000132", "enCap": [10 English captions], "chCap": [...]}]

The clip is named by its YouTube id and its start and end second in the source video. YouTube
ids may themselves contain ``_``, so the two numbers are taken from the right. Test files carry
fewer fields (the public test set only ``enCap``, the private one only ``videoID``): missing
caption lists read as empty. VATEX ships no videos; downloaders save each clip as
``<video_root>/<videoID>.mp4``, which is where the optional existence check looks, since many
source videos have since gone from YouTube.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

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

_CLIP_ID = re.compile(r"(?P<youtube_id>.+)_(?P<start>\d+)_(?P<end>\d+)")


def clip_id(youtube_id: str, start: int, end: int) -> str:
    """The ``videoID`` of a clip, numbers zero-padded to six digits as in the official files."""
    return f"{youtube_id}_{start:06d}_{end:06d}"


def parse_clip_id(video_id: str) -> tuple[str, int, int]:
    """``(youtube_id, start, end)``, seconds, out of a ``videoID``; ValueError if it has none."""
    m = _CLIP_ID.fullmatch(video_id)
    if m is None:
        raise ValueError(f"videoID {video_id!r} is not '<youtube id>_<start>_<end>'")
    start, end = int(m["start"]), int(m["end"])
    if start > end:
        raise ValueError(f"videoID {video_id!r} starts after it ends")
    return m["youtube_id"], start, end


@dataclass(frozen=True)
class VatexClip:
    video_id: str  # "<youtube id>_<start>_<end>", also the clip's file name stem
    en_captions: tuple[str, ...] = ()
    zh_captions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        parse_clip_id(self.video_id)

    @property
    def youtube_id(self) -> str:
        return parse_clip_id(self.video_id)[0]

    @property
    def start(self) -> int:
        return parse_clip_id(self.video_id)[1]

    @property
    def end(self) -> int:
        return parse_clip_id(self.video_id)[2]


def write_vatex(path: PathLike, clips: Iterable[VatexClip]) -> None:
    """Caption lists that are empty are left out, as in the test files."""
    rows = []
    for c in clips:
        row: dict[str, object] = {"videoID": c.video_id}
        if c.en_captions:
            row["enCap"] = list(c.en_captions)
        if c.zh_captions:
            row["chCap"] = list(c.zh_captions)
        rows.append(row)
    dump_json(path, rows)


def _captions(raw: dict, key: str, path: PathLike, entry: str) -> tuple[str, ...]:
    if key not in raw:
        return ()
    captions = field_of(raw, key, list, path, entry)
    if not all(isinstance(c, str) for c in captions):
        raise FormatError(path, entry, f"{key!r} must be a list of strings")
    return tuple(captions)


def read_vatex(
    path: PathLike,
    video_root: PathLike | None = None,
    on_error: OnError = "raise",
) -> Records[VatexClip]:
    """Clips in file order; with ``video_root``, a clip without ``<videoID>.mp4`` there is an
    error (or, with ``on_error="skip"``, left out and counted)."""
    data = load_json(path)
    if not isinstance(data, list):
        raise FormatError(path, "top level", f"expected a list of clips, got {type(data).__name__}")
    require_entries(data, path, "clips")
    out: Records[VatexClip] = Records(on_error)
    for i, raw in enumerate(data):
        name = f"entry {i}"
        try:
            video_id = field_of(raw, "videoID", str, path, name)
            name = f"entry {i} (videoID {video_id!r})"
            try:
                parse_clip_id(video_id)
            except ValueError as e:
                raise FormatError(path, name, str(e)) from None
            en, zh = _captions(raw, "enCap", path, name), _captions(raw, "chCap", path, name)
            clip = VatexClip(video_id, en, zh)
            if video_root is not None:
                video = Path(video_root) / f"{video_id}.mp4"
                if not video.is_file():
                    raise FormatError(path, name, f"video file {video} not found")
        except FormatError as e:
            out.reject(e)
            continue
        out.append(clip)
    return out
