"""Video-caption and image-caption data for the video BLIP-2, read from LAVIS's files.

Frames are sampled as the paper's LAVIS fork does: uniformly for evaluation
(``arange(0, n, n/num_frames)``) and "head-tail" for training (half the frames sorted at random
from each half of the video), then normalised with CLIP's mean and standard deviation. The
paper's training augmentation (random resized crop 0.5-1 and horizontal flip) is a switch:
flipping turns "moves left" into a lie, so the synthetic world trains without it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from .. import plots
from ..data.formats import lavis
from ..video import sample_frames

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def uniform_indices(n_frames: int, num: int) -> np.ndarray:
    return np.arange(0, n_frames, n_frames / num).astype(int)[:num]


def head_tail_indices(n_frames: int, num: int, rng: np.random.Generator) -> np.ndarray:
    """LAVIS's "headtail": num/2 sorted random frames from each half (with replacement when
    the video is shorter than that)."""
    half = n_frames // 2
    head = np.sort(rng.choice(max(half, 1), num // 2, replace=half < num // 2))
    tail = (
        np.sort(
            rng.choice(
                max(n_frames - half, 1), num - num // 2, replace=n_frames - half < num - num // 2
            )
        )
        + half
    )
    return np.concatenate([head, tail]).clip(0, n_frames - 1)


def transform(image_size: int, augment: bool) -> v2.Transform:
    """uint8 (T, H, W, 3) frames -> float (T, 3, S, S), one random crop/flip for the whole clip."""
    resize = (
        [
            v2.RandomResizedCrop(image_size, scale=(0.5, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
        ]
        if augment
        else [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]
    )
    return v2.Compose(
        [*resize, v2.ToDtype(torch.float32, scale=True), v2.Normalize(CLIP_MEAN, CLIP_STD)]
    )


def to_tensor(frames: np.ndarray, tf: v2.Transform) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> transformed float (T, 3, S, S), the same crop for every frame."""
    video = tv_tensors.Video(torch.from_numpy(frames).permute(0, 3, 1, 2))  # (T, 3, H, W)
    return tf(video).as_subclass(torch.Tensor)


def to_uint8(clip: torch.Tensor) -> np.ndarray:
    """Normalised (T, 3, S, S) -> displayable uint8 (T, S, S, 3)."""
    mean, std = torch.tensor(CLIP_MEAN)[:, None, None], torch.tensor(CLIP_STD)[:, None, None]
    return (clip * std + mean).clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).numpy()


class VideoCaptions(Dataset):
    """LAVIS caption file -> training items (clip, one caption) or evaluation items (clip, id).

    Decoded clips are cached in memory when ``cache`` (tiny clips are a few hundred KB)."""

    def __init__(
        self,
        annotation: str | Path,
        video_root: str | Path,
        num_frames: int,
        image_size: int,
        train: bool,
        augment: bool = False,
        seed: int = 0,
        cache: bool = True,
        on_error: lavis.OnError = "raise",
    ):
        self.entries = lavis.read_captions(annotation, video_root, on_error=on_error)
        self.refs = lavis.references(self.entries)  # {image_id: [caption, ...]}
        self.video_of = {e.image_id: e.video for e in self.entries}
        self.ids = list(self.refs)
        self.root, self.num_frames, self.train = Path(video_root), num_frames, train
        self.tf = transform(image_size, augment and train)
        self.rng = np.random.default_rng(seed)
        self._all_frames = lru_cache(maxsize=None if cache else 0)(self._decode_all)

    def __len__(self) -> int:
        return len(self.entries) if self.train else len(self.ids)

    def _decode_all(self, video: str) -> np.ndarray:
        return sample_frames(self.root / video)  # (N, H, W, 3)

    def clip(self, image_id, train: bool | None = None) -> torch.Tensor:
        """(T, 3, S, S) frames of one video."""
        frames = self._all_frames(self.video_of[image_id])
        train = self.train if train is None else train
        idx = (
            head_tail_indices(len(frames), self.num_frames, self.rng)
            if train
            else uniform_indices(len(frames), self.num_frames)
        )
        return to_tensor(frames[idx], self.tf)

    def __getitem__(self, i: int):
        if self.train:
            e = self.entries[i]
            return self.clip(e.image_id), e.caption
        return self.clip(self.ids[i]), self.ids[i]


class ImageCaptions(Dataset):
    """LAVIS image-caption pairs as one-frame clips (BLIP-2's image-text pretraining data)."""

    def __init__(self, annotation: str | Path, image_root: str | Path, image_size: int):
        self.entries = lavis.read_captions(annotation, image_root, key="image")
        self.root = Path(image_root)
        self.tf = transform(image_size, augment=False)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int):
        e = self.entries[i]
        image = plots.load_image(self.root / e.video)[None]  # (1, H, W, 3)
        return to_tensor(image, self.tf), e.caption


def collate(batch):
    """[(clip (T, 3, S, S), caption or id)] -> (clips (B, T, 3, S, S), [caption or id])."""
    clips, texts = zip(*batch)
    return torch.stack(clips), list(texts)
