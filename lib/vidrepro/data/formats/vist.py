"""VIST (SIND) stories, the "story-in-sequence" files (``val.story-in-sequence.json``, ...),
which MERLOT orders zero-shot.

Top-level keys ``images``, ``albums`` and ``annotations``; ``annotations`` is a list of
one-element lists, one per storylet (one sentence about one photo)::

    [[{"storylet_id": "46040", "story_id": "9210", "photo_flickr_id": "2652540697",
       "album_id": "72157606128446466", "text": "...", "original_text": "...",
       "worker_arranged_photo_order": 0, "tier": "story-in-sequence"}], ...]

A story is the 5 storylets sharing a ``story_id``, in ``worker_arranged_photo_order``. Ids are
strings in the real files. Photos are ``<image_dir>/<photo_flickr_id>.jpg``; ``.png`` and
``.gif`` are looked for too, the images being Flickr originals in whatever format they were
uploaded. Some photos could not be downloaded at all, so a story can be checked for its images
(and skipped without them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

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

STORY_LENGTH = 5
IMAGE_SUFFIXES = (".jpg", ".png", ".gif")
TIER = "story-in-sequence"


@dataclass(frozen=True)
class Story:
    story_id: str
    album_id: str
    photo_ids: tuple[str, ...]  # (5,) in story order
    texts: tuple[str, ...]  # (5,) one sentence per photo


def find_image(image_dir: PathLike, photo_id: str) -> Path | None:
    """The photo's file under ``image_dir`` with any of ``IMAGE_SUFFIXES``, or None."""
    for suffix in IMAGE_SUFFIXES:
        if (candidate := Path(image_dir) / f"{photo_id}{suffix}").is_file():
            return candidate
    return None


def write_stories(path: PathLike, stories: Iterable[Story]) -> None:
    annotations, images, albums = [], {}, {}
    for story in stories:
        if len(story.photo_ids) != STORY_LENGTH or len(story.texts) != STORY_LENGTH:
            raise ValueError(f"story {story.story_id!r} needs {STORY_LENGTH} photos and texts")
        albums[story.album_id] = {"id": story.album_id}
        for order, (photo_id, text) in enumerate(zip(story.photo_ids, story.texts)):
            images[photo_id] = {"id": photo_id, "album_id": story.album_id}
            storylet = {
                "storylet_id": str(len(annotations)),
                "story_id": story.story_id,
                "photo_flickr_id": photo_id,
                "album_id": story.album_id,
                "text": text,
                "original_text": text,
                "worker_arranged_photo_order": order,
                "tier": TIER,
            }
            annotations.append([storylet])
    dump_json(path, {"images": list(images.values()), "albums": list(albums.values()),
                     "type": "story_in_sequence", "annotations": annotations})


def write_images(image_dir: PathLike, frames: Mapping[str, np.ndarray]) -> None:
    """Save each ``photo_id -> (H, W, 3) uint8`` frame as ``<image_dir>/<photo_id>.jpg``."""
    Path(image_dir).mkdir(parents=True, exist_ok=True)
    for photo_id, frame in frames.items():
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
            got = f"{frame.dtype} {frame.shape}"
            raise ValueError(f"photo {photo_id!r}: need uint8 (H, W, 3), got {got}")
        Image.fromarray(frame).save(Path(image_dir) / f"{photo_id}.jpg", quality=95)


def _storylets(path: PathLike, data: object) -> dict[str, list[tuple[int, dict]]]:
    """Storylets grouped by story (first appearance order), each with its position in the file.

    A storylet that cannot be attributed to a story breaks the file, not one story: it is
    always an error."""
    annotations = field_of(data, "annotations", list, path, "top level")
    require_entries(annotations, path, "annotations")
    stories: dict[str, list[tuple[int, dict]]] = {}
    for i, wrapped in enumerate(annotations):
        name = f"annotations[{i}]"
        if not isinstance(wrapped, list) or len(wrapped) != 1:
            raise FormatError(path, name, "expected a one-element list holding a storylet")
        story_id = str(field_of(wrapped[0], "story_id", (str, int), path, name))
        stories.setdefault(story_id, []).append((i, wrapped[0]))
    return stories


def _story(
    path: PathLike, story_id: str, parts: list[tuple[int, dict]], image_dir: PathLike | None
) -> Story:
    """One story from its storylets (each with its index in ``annotations``)."""
    name = f"story {story_id!r}"
    if len(parts) != STORY_LENGTH:
        raise FormatError(path, name, f"has {len(parts)} storylets, expected {STORY_LENGTH}")
    rows = []
    for i, raw in parts:
        where = f"{name} (annotations[{i}])"
        rows.append((
            field_of(raw, "worker_arranged_photo_order", int, path, where),
            str(field_of(raw, "photo_flickr_id", (str, int), path, where)),
            field_of(raw, "text", str, path, where),
            str(field_of(raw, "album_id", (str, int), path, where)),
        ))
    orders, photo_ids, texts, album_ids = zip(*sorted(rows))
    if list(orders) != list(range(STORY_LENGTH)):
        problem = f"worker_arranged_photo_order is {list(orders)}, expected 0..4"
        raise FormatError(path, name, problem)
    if len(set(album_ids)) != 1:
        raise FormatError(path, name, "storylets come from different albums")
    if image_dir is not None:
        for photo_id in photo_ids:
            if find_image(image_dir, photo_id) is None:
                suffixes = "|".join(s.lstrip(".") for s in IMAGE_SUFFIXES)
                image = Path(image_dir) / photo_id
                raise FormatError(path, name, f"image {image}.({suffixes}) not found")
    return Story(story_id, album_ids[0], photo_ids, texts)


def read_stories(
    path: PathLike,
    image_dir: PathLike | None = None,
    on_error: OnError = "raise",
) -> Records[Story]:
    """Stories in the order they first appear. A story without exactly 5 storylets ordered
    0..4, or (with ``image_dir``) with a photo missing, is an error or, with
    ``on_error="skip"``, left out and counted."""
    out: Records[Story] = Records(on_error)
    for story_id, parts in _storylets(path, load_json(path)).items():
        try:
            out.append(_story(path, story_id, parts, image_dir))
        except FormatError as e:
            out.reject(e)
    return out
