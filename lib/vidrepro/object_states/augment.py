"""Training augmentation: one random crop / flip / colour change per video, the same on all of
its frames.

The pseudo-labels compare frames of one video with each other (which frame looks most like the
initial state, which like the end state), so every frame of a video must be transformed alike:
a crop that cut the object out of some frames only, or a colour jitter that differed between
frames, would change which frames win. Different videos get different draws.

torchvision's v2 transforms draw their parameters once per call and apply them to every image
of a batched tensor, so calling the transform on the whole ``(T, 3, H, W)`` video does exactly
this. They draw from torch's global generator; :func:`augment_video` seeds a forked copy of it
from an integer drawn from the training step's generator, so a resumed run augments every video
as an uninterrupted one did, and the global generator is left untouched.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor
from torchvision.transforms import v2

Transform = Callable[[Tensor], Tensor]


def video_transform(
    image_size: tuple[int, int],
    *,
    scale: tuple[float, float] = (0.7, 1.0),
    jitter: float = 0.2,
    hue: float = 0.02,
) -> Transform:
    """Mild augmentation on uint8 (T, 3, H, W) videos, output at ``image_size`` (H, W): a random
    resized crop keeping >= 70% of the area, a horizontal flip, brightness / contrast /
    saturation jitter of ±20% and a small hue shift (a large one would turn one object's colour
    into another category's)."""
    return v2.Compose(
        [
            v2.RandomResizedCrop(list(image_size), scale=scale, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter, hue=hue),
        ]
    )


def augment_video(frames: Tensor, seed: int, transform: Transform) -> Tensor:
    """``transform`` applied to all frames of one video with the same parameters, drawn from a
    generator seeded by ``seed`` (torch's global one is restored afterwards)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return transform(frames)


def video_seeds(rng: np.random.Generator, n: int) -> list[int]:
    """One augmentation seed per video of a batch, from the step's generator."""
    return [int(s) for s in rng.integers(0, 2**62, size=n)]
