"""Pseudo-labels from the ordering constraint, the noise-adaptive video weight, the multi-task loss.

Training has no frame labels: the model itself (no gradient, all frames) scores each frame, the
constraint picks the best (s1, a, s2) with s1 < a < s2, and a handful of frames around them
become targets. The rule is the original ``train.py``'s (n = ``frames_per_gt`` = 3, kappa = 60),
for a video of category c with T frames (K categories):

    block     frames (each clamped to [0, T-1])   state target    state mask   action target
    initial   s1-1, s1, s1+1                      2c              1            K (background)
    end       s2-1, s2, s2+1                      2c+1            1            K
    action    a-1, a, a+1                         2K (background) 1            c
    before    a-kappa-1, a-kappa, a-kappa+1       2K (ignored)    0            K
    after     a+kappa-1, a+kappa, a+kappa+1       2K (ignored)    0            K

That is 5n = 15 entries per video, always, in this order. Frames far (kappa) from the action are
action background, but their state is unknown (either state may be on screen), so they are
masked out of the state loss ("frames at ±60 masked for the state loss"). As in the original,
indices are clamped rather than dropped, so near an edge an entry repeats frame 0 or T-1, and
entries are never merged: when blocks overlap (a = s1 + 1, a short video) one frame can carry
two different targets, each its own loss term. Only these entries' frames are run with gradient.

Loss (the original's normalisation, a sum, not a mean), w_v the video weight:

    loss = sum_v w_v * sum_entries (mask * CE(state) + 0.2 * CE(action))

Under DistributedDataParallel gradients are averaged over processes; the original multiplies the
loss by the world size when the backbone is frozen, which is the caller's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike
from torch import Tensor

from vidrepro.data.formats.changeit import noise_weight

from ..metrics.constraint import best_state_change
from .model import ClipClassifier, category_probs

KAPPA = 60  # distance of the extra action-background frames from the action
MAX_DISTANCE = 500  # the paper's D: a - s1 <= D and s2 - a <= D
FRAMES_PER_GT = 3  # entries per located frame: itself and one on each side
ACTION_LOSS_WEIGHT = 0.2
CHUNK = 256  # frames per no-grad forward pass, as in the original


class PseudoLabels(NamedTuple):
    """Targets of a batch of videos, F = 5 * frames_per_gt entries each; fields (B, F) unless
    noted (no batch dim for a single video)."""

    frames: Tensor  # int64 frame index into the video
    state: Tensor  # int64 state class
    state_mask: Tensor  # float 1 / 0: whether the entry counts in the state loss
    action: Tensor  # int64 action class
    triple: Tensor  # int64 (B, 3): the (s1, a, s2) the targets come from


def state_change_targets(
    s1: Tensor | int,
    a: Tensor | int,
    s2: Tensor | int,
    num_frames: Tensor | int,
    category: Tensor | int,
    num_categories: int,
    *,
    kappa: int = KAPPA,
    frames_per_gt: int = FRAMES_PER_GT,
) -> PseudoLabels:
    """The table in the module docstring, for videos given by same-shape (B,) inputs (or ints)."""
    if frames_per_gt < 1 or frames_per_gt % 2 == 0:
        raise ValueError(f"frames_per_gt must be odd and positive, got {frames_per_gt}")
    s1, a, s2, length, c = torch.broadcast_tensors(
        *(torch.as_tensor(x, dtype=torch.long) for x in (s1, a, s2, num_frames, category))
    )
    half = frames_per_gt // 2
    offsets = torch.arange(-half, half + 1, device=s1.device)  # (n,)
    centres = torch.stack([s1, s2, a, a - kappa, a + kappa], dim=-1)  # (B, 5)
    frames = (centres[..., None] + offsets).flatten(-2)  # (B, 5n)
    frames = torch.minimum(frames.clamp(min=0), length[..., None] - 1)  # (B, 5n)

    def blocks(*values: Tensor) -> Tensor:  # five (B,) values -> (B, 5n), each repeated n times
        return torch.stack(values, dim=-1).repeat_interleave(frames_per_gt, dim=-1)

    k = num_categories
    bg_state, bg_action = torch.full_like(c, 2 * k), torch.full_like(c, k)
    state = blocks(2 * c, 2 * c + 1, bg_state, bg_state, bg_state)
    action = blocks(bg_action, bg_action, c, bg_action, bg_action)
    ones, zeros = torch.ones_like(c, dtype=torch.float32), torch.zeros_like(c, dtype=torch.float32)
    state_mask = blocks(ones, ones, ones, zeros, zeros)
    return PseudoLabels(frames, state, state_mask, action, torch.stack([s1, a, s2], dim=-1))


def video_weights(
    scores: ArrayLike, centerings: ArrayLike, ignore_video_weight: bool = False
) -> Tensor:
    """Noise-adaptive weights (B,) float32: sigmoid((r - theta) / 0.001) of each video's
    relevance score r and its category's CENTERING_PARAM theta, a near-hard gate that drops
    videos the retrieval scored as unlikely to show the change. All ones when ignored."""
    w = torch.as_tensor(noise_weight(scores, centerings), dtype=torch.float32)
    return torch.ones_like(w) if ignore_video_weight else w


def no_grad_probs(
    model: ClipClassifier, frames: Tensor, category: int, chunk: int = CHUNK
) -> tuple[Tensor, Tensor, Tensor]:
    """(p_init, p_action, p_end), each (T,), of a whole video (T, 3, H, W), in chunks and without
    gradient: only an argmax is taken from them. The model's train/eval mode is left as is (the
    original scores in train mode; the CLIP tower has no dropout or batch norm)."""
    device = next(model.parameters()).device
    with torch.no_grad():
        logits = [model(frames[i : i + chunk].to(device)) for i in range(0, len(frames), chunk)]
    state = torch.cat([s for s, _ in logits])  # (T, 2K+1)
    action = torch.cat([a for _, a in logits])  # (T, K+1)
    return category_probs(state, action, category)


def best_triple(
    p_init: Tensor,
    p_action: Tensor,
    p_end: Tensor,
    constraint: bool = True,
    max_distance: int | None = MAX_DISTANCE,
) -> Tensor:
    """(s1, a, s2) as an int64 (3,) tensor: the constrained argmax (s1 < a < s2, gaps <= D), or,
    for the "no constraint" ablation, three independent argmaxes in any order."""
    if constraint:
        s1, a, s2, _ = best_state_change(p_init, p_action, p_end, max_distance)
        return torch.stack([s1, a, s2])
    return torch.stack([p_init.argmax(), p_action.argmax(), p_end.argmax()])


def pseudo_labels(
    model: ClipClassifier,
    videos: Sequence[Tensor],
    categories: Sequence[int],
    *,
    constraint: bool = True,
    max_distance: int | None = MAX_DISTANCE,
    kappa: int = KAPPA,
    frames_per_gt: int = FRAMES_PER_GT,
    chunk: int = CHUNK,
) -> PseudoLabels:
    """Targets for a batch of videos (each (T_i, 3, H, W), lengths may differ) of the given
    category indices, from the model's current predictions. Fields (B, F), on CPU."""
    triples = torch.stack(
        [
            best_triple(*no_grad_probs(model, video, c, chunk), constraint, max_distance).cpu()
            for video, c in zip(videos, categories, strict=True)
        ]
    )  # (B, 3)
    lengths = torch.tensor([len(v) for v in videos])  # (B,)
    return state_change_targets(
        *triples.unbind(-1),
        lengths,
        torch.tensor(list(categories)),
        model.num_categories,
        kappa=kappa,
        frames_per_gt=frames_per_gt,
    )


def gather_frames(videos: Sequence[Tensor], labels: PseudoLabels) -> Tensor:
    """The entries' frames, video after video: (B * F, 3, H, W), the training forward's input.
    Nothing else of the videos reaches the graph, so unselected frames get no gradient."""
    return torch.cat(
        [video[idx.to(video.device)] for video, idx in zip(videos, labels.frames, strict=True)]
    )


def multitask_loss(
    state_logits: Tensor,
    action_logits: Tensor,
    labels: PseudoLabels,
    weights: Tensor,
    action_weight: float = ACTION_LOSS_WEIGHT,
) -> Tensor:
    """sum_v w_v * sum_entries (mask * CE_state + 0.2 * CE_action), a scalar.

    Logits (B * F, 2K+1) and (B * F, K+1) in the order of :func:`gather_frames`; weights (B,)."""
    batch, entries = labels.state.shape
    device = state_logits.device
    ce_state = F.cross_entropy(state_logits, labels.state.flatten().to(device), reduction="none")
    ce_action = F.cross_entropy(action_logits, labels.action.flatten().to(device), reduction="none")
    per_entry = ce_state.view(batch, entries) * labels.state_mask.to(
        device
    ) + action_weight * ce_action.view(batch, entries)  # (B, F)
    return (per_entry * weights.to(device)[:, None]).sum()
