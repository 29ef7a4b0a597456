"""A ChangeIt-format dataset (synthetic or real) as the trainer and the evaluation read it.

Training videos are every video listed in ``videos/<category>.csv`` that is not annotated (the
annotated ones are the test set, as in ChangeIt), with its relevance score for the
noise-adaptive weight. Their files keep disappearing from YouTube, so a missing one is skipped
and counted (``ChangeItData.train.skipped``) instead of stopping a 34k-video run; a test video
that is missing is an error naming the file, since silently scoring fewer videos would change
the reported precision.

Frames are taken at 1 fps (the paper's rate), resized so that the model's image covers the frame
and centre-cropped to it (at 224 px a 16:9 video becomes the original's 398x224 then a 224 crop),
uint8 ``(T, 3, H, W)``. Decoded videos are kept in a small LRU cache: at tiny scale every video
fits (decode once per run), at full scale ``cache_videos`` bounds the memory.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from torch import Tensor

from vidrepro.data.formats import changeit
from vidrepro.data.formats.errors import FormatError, Records
from vidrepro.video import sample_frames

FPS = 1  # frames per second the paper trains and evaluates on
SYNTHETIC_VIDEO_DIR = "video_root"  # where the synthetic generator puts the videos


@dataclass(frozen=True)
class TrainVideo:
    category: str
    video_id: str
    score: float  # relevance r from videos/<category>.csv
    path: Path


@dataclass(frozen=True)
class TestVideo:
    category: str
    video_id: str
    path: Path


def normalize(frames: Tensor) -> Tensor:
    """uint8 (..., 3, H, W) -> float32 CLIP input: /255, then OpenAI CLIP's mean and std (what
    the pretrained tower saw; the tiny random tower just gets well-scaled inputs)."""
    mean = torch.tensor(OPENAI_DATASET_MEAN, device=frames.device)[:, None, None]  # (3, 1, 1)
    std = torch.tensor(OPENAI_DATASET_STD, device=frames.device)[:, None, None]
    return (frames.float() / 255.0 - mean) / std


def _cover(width: int, height: int):
    """A resize that makes a (w, h) source cover ``width`` x ``height`` keeping its aspect."""

    def size(w: int, h: int) -> tuple[int, int]:
        scale = max(width / w, height / h)
        return max(width, round(w * scale)), max(height, round(h * scale))

    return size


def decode(path: str | Path, image_size: tuple[int, int]) -> Tensor:
    """A video's frames at 1 fps, covering ``image_size`` (H, W) and centre-cropped to it:
    uint8 (T, 3, H, W). Unreadable files raise ``VideoDecodeError`` naming the file."""
    height, width = image_size
    frames = sample_frames(path, fps=FPS, size=_cover(width, height), crop=(width, height))
    return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()  # (T, 3, H, W)


class ChangeItData:
    """Categories, training and test videos of one dataset root, and their decoded frames.

    ``categories``: names to keep (None: all in ``categories.csv``); asking for one the file does
    not list is an error. ``video_root`` defaults to ``<root>/video_root`` (the synthetic
    layout). ``cache_videos``: how many decoded videos to keep (None: all)."""

    def __init__(
        self,
        root: str | Path,
        video_root: str | Path | None = None,
        *,
        categories: Iterable[str] | None = None,
        image_size: tuple[int, int] = (224, 224),
        cache_videos: int | None = None,
    ):
        self.root = Path(root)
        self.video_root = Path(video_root) if video_root else self.root / SYNTHETIC_VIDEO_DIR
        self.image_size = tuple(image_size)
        known = {c.name: c for c in changeit.read_categories(self.root)}
        wanted = sorted(known) if categories is None else sorted(set(categories))
        if unknown := [c for c in wanted if c not in known]:
            raise FormatError(
                self.root / "categories.csv",
                "categories",
                f"{unknown} not listed (has {sorted(known)})",
            )
        self.categories = [known[c] for c in wanted]
        self.train: Records[TrainVideo] = Records("skip")
        self.test: list[TestVideo] = []
        for c in wanted:
            test_ids = changeit.annotated_ids(self.root, c)
            self.test += [
                TestVideo(c, v, changeit.find_video(self.video_root, c, v)) for v in test_ids
            ]
            scores = changeit.read_scores(self.root, c)
            for v in sorted(set(scores) - set(test_ids)):
                try:
                    self.train.append(
                        TrainVideo(c, v, scores[v], changeit.find_video(self.video_root, c, v))
                    )
                except FormatError as e:  # taken down: counted in self.train.skipped
                    self.train.reject(e)
        self.cache_videos = cache_videos
        self._cache: OrderedDict[Path, Tensor] = OrderedDict()

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.categories]

    def centering(self, category: str) -> float:
        """CENTERING_PARAM theta of the noise-adaptive weight."""
        return next(c.centering for c in self.categories if c.name == category)

    def frames(self, video: TrainVideo | TestVideo) -> Tensor:
        """uint8 (T, 3, H, W) at 1 fps, decoded on first use and cached."""
        if (cached := self._cache.get(video.path)) is not None:
            self._cache.move_to_end(video.path)
            return cached
        frames = decode(video.path, self.image_size)
        if self.cache_videos is None or self.cache_videos > 0:
            self._cache[video.path] = frames
            if self.cache_videos is not None and len(self._cache) > self.cache_videos:
                self._cache.popitem(last=False)
        return frames

    def labels(self, video: TestVideo, num_frames: int) -> tuple[np.ndarray, int]:
        """(per-second labels (T',) int64, T - T'): the annotation as written, checked against
        the decoded frame count with ``changeit.align`` (a difference above a frame or two is a
        ``FormatError`` naming the annotation file). The labels are not padded: the metrics
        score the common prefix, so a pick past the annotation's end is never counted wrong."""
        path = changeit.annotation_path(self.root, video.category, video.video_id)
        labels = changeit.read_annotation(self.root, video.category, video.video_id)
        _, mismatch = changeit.align(labels, num_frames, source=path)
        return labels, mismatch
