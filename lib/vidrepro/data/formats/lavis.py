"""MSR-VTT and MSVD captions as LAVIS ships them, which is what the BLIP-2 video paper trained on.

Caption files (``cap_train.json``, ``cap_val.json``, ``cap_test.json``) are one JSON list with
one entry per (video, caption) pair, so a video with 20 captions appears 20 times::

    [{"video": "video7010.mp4", "caption": "a man is singing", "image_id": "video7010"}, ...]

Train files sometimes carry more keys (``instance_id``); they are tolerated and dropped.
``video`` is relative to the folder of videos. Ground truth for val/test is COCO-style, the
form the COCO caption evaluation (pycocotools' ``COCO`` + pycocoevalcap) loads::

    {"annotations": [{"image_id": "video7010", "caption": "...", "id": 0}, ...],
     "images": [{"id": "video7010"}, ...]}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

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

ImageId = str | int  # MSR-VTT uses "video7010"; COCO-style tooling also allows integers


@dataclass(frozen=True)
class CaptionEntry:
    video: str  # file under the media folder: "video7010.mp4", or an image in image files
    caption: str
    image_id: ImageId  # the video's id in the evaluation ground truth


MediaKey = Literal["video", "image"]


def write_captions(path: PathLike, entries: Iterable[CaptionEntry], key: MediaKey = "video") -> None:
    rows = [{key: e.video, "caption": e.caption, "image_id": e.image_id} for e in entries]
    dump_json(path, rows)


def read_captions(
    path: PathLike,
    video_root: PathLike | None = None,
    on_error: OnError = "raise",
    key: MediaKey = "video",
) -> Records[CaptionEntry]:
    """Entries in file order. With ``video_root``, an entry whose video file is missing there is
    an error (or, with ``on_error="skip"``, left out and counted). LAVIS's image-caption files
    (COCO Karpathy) have the same layout with ``"image"`` in place of ``"video"``: ``key``."""
    data = load_json(path)
    if not isinstance(data, list):
        problem = f"expected a list of caption entries, got {type(data).__name__}"
        raise FormatError(path, "top level", problem)
    require_entries(data, path, "caption entries")
    out: Records[CaptionEntry] = Records(on_error)
    exists: dict[str, bool] = {}  # one stat per video, not one per caption
    for i, raw in enumerate(data):
        name = f"entry {i}"
        try:
            image_id = field_of(raw, "image_id", (str, int), path, name)
            name = f"entry {i} (image_id {image_id!r})"
            entry = CaptionEntry(
                video=field_of(raw, key, str, path, name),
                caption=field_of(raw, "caption", str, path, name),
                image_id=image_id,
            )
            if video_root is not None:
                video = Path(video_root) / entry.video
                if entry.video not in exists:
                    exists[entry.video] = video.is_file()
                if not exists[entry.video]:
                    raise FormatError(path, name, f"{key} file {video} not found")
        except FormatError as e:
            out.reject(e)
            continue
        out.append(entry)
    return out


def references(entries: Iterable[CaptionEntry]) -> dict[ImageId, list[str]]:
    """Captions grouped by video, videos and captions in file order: the reference sets that
    CIDEr and SCST rewards are computed against."""
    refs: dict[ImageId, list[str]] = {}
    for e in entries:
        refs.setdefault(e.image_id, []).append(e.caption)
    return refs


def write_coco_gt(path: PathLike, refs: Mapping[ImageId, Sequence[str]]) -> None:
    annotations = []
    for image_id, captions in refs.items():
        for caption in captions:
            annotations.append({"image_id": image_id, "caption": caption, "id": len(annotations)})
    dump_json(path, {"annotations": annotations, "images": [{"id": image_id} for image_id in refs]})


def read_coco_gt(path: PathLike) -> dict[ImageId, list[str]]:
    """References by image id, in the order of ``images``. Every annotation must belong to a
    listed image and every image must have a caption, as the COCO evaluation code assumes."""
    data = load_json(path)
    annotations = field_of(data, "annotations", list, path, "top level")
    images = field_of(data, "images", list, path, "top level")
    refs: dict[ImageId, list[str]] = {}
    for i, raw in enumerate(images):
        refs[field_of(raw, "id", (str, int), path, f"images[{i}]")] = []
    for i, raw in enumerate(annotations):
        name = f"annotations[{i}]"
        image_id = field_of(raw, "image_id", (str, int), path, name)
        caption = field_of(raw, "caption", str, path, name)
        if image_id not in refs:
            where = f"{name} (image_id {image_id!r})"
            raise FormatError(path, where, "image_id is not listed in 'images'")
        refs[image_id].append(caption)
    for image_id, captions in refs.items():
        if not captions:
            raise FormatError(path, f"image {image_id!r}", "no annotation has this image_id")
    return refs
