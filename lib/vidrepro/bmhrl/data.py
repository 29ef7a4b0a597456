"""BMHRL's data: a word vocabulary, event-level ActivityNet Captions items with their I3D and
VGGish rows, and the ground-truth segments it is evaluated on.

BMT (and so BMHRL) trains on one item per annotated event: the rows of the video's summed
RGB + flow I3D stack and of its VGGish stack that cover the event (sliced proportionally, see
``activitynet.feature_rows``), and the event's sentence as word ids. It is scored with
ground-truth proposals on val_1 and val_2 (two annotation sets of the same videos), on the videos
that have features only; ``DenseCaptions(..., unique_segments=True)`` captions each distinct
segment of a split once, and ``references`` / ``gt_proposals`` give what the densevid
evaluation compares against.

The vocabulary replaces BMT's torchtext field (spaCy tokens, lower-cased): words are split with
``text.wordlevel.words``, the same regex split the kit's other word-level tokenizers use.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data.formats import activitynet
from ..data.formats.errors import (
    OnError,
    PathLike,
    Skipped,
    dump_json,
    field_of,
    load_json,
)
from ..text.wordlevel import words

SPLITS = ("train", "val_1", "val_2")
PAD, START, END, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIALS = (PAD, START, END, UNK)
PAD_ID, START_ID, END_ID, UNK_ID = range(4)


class Vocab:
    """Word ids: the specials first (pad 0, start 1, end 2, unknown 3), then the words by
    decreasing count (ties alphabetical, so the ids do not depend on caption order)."""

    def __init__(self, itos: Sequence[str]) -> None:
        if tuple(itos[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with {SPECIALS}, got {tuple(itos[:4])}")
        self.itos: tuple[str, ...] = tuple(itos)
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("a vocabulary must not repeat a word")

    @classmethod
    def build(cls, sentences: Iterable[str], min_count: int = 1) -> Vocab:
        """Words seen at least ``min_count`` times in ``sentences`` (the training captions)."""
        counts = Counter(w for s in sentences for w in words(s))
        kept = sorted(
            (w for w, n in counts.items() if n >= min_count and w not in SPECIALS),
            key=lambda w: (-counts[w], w),
        )
        return cls([*SPECIALS, *kept])

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def encode(self, sentence: str, max_len: int | None = None) -> list[int]:
        """``[start, w1, ..., wn, end]``; with ``max_len`` the words are cut so that the whole,
        end included, has at most ``max_len`` ids."""
        ids = [self.stoi.get(w, UNK_ID) for w in words(sentence)]
        if max_len is not None:
            if max_len < 2:
                raise ValueError(f"max_len must leave room for start and end, got {max_len}")
            ids = ids[: max_len - 2]
        return [START_ID, *ids, END_ID]

    def decode(self, ids: Iterable[int] | torch.Tensor) -> str:
        """The words up to the first end, specials (pad, start, unknown) left out."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        out = []
        for i in ids:
            if i == END_ID:
                break
            if i >= len(SPECIALS):
                out.append(self.itos[i])
        return " ".join(out)

    def save(self, path: PathLike) -> None:
        dump_json(path, {"itos": list(self.itos)})

    @classmethod
    def load(cls, path: PathLike) -> Vocab:
        return cls(field_of(load_json(path), "itos", list, path, "vocabulary"))


@dataclass(frozen=True)
class Item:
    """One event (or, with ``unique_segments``, one distinct segment) of one video."""

    video_id: str
    event: int  # index in the video's annotation (the first one, for a repeated segment)
    start: float  # seconds
    end: float
    duration: float
    sentence: str  # the reference sentence
    tokens: tuple[int, ...]  # Vocab.encode(sentence)
    video: np.ndarray  # (s, 1024) float32: RGB + flow I3D rows
    audio: np.ndarray  # (s', 128) float32: VGGish rows


def feature_dirs(
    root: PathLike, video_dir: PathLike | None = None, audio_dir: PathLike | None = None
) -> tuple[Path, Path]:
    """The I3D and VGGish folders: BMT's names under ``root`` unless given."""
    root = Path(root)
    return (
        Path(video_dir) if video_dir is not None else root / activitynet.I3D_DIR,
        Path(audio_dir) if audio_dir is not None else root / activitynet.VGGISH_DIR,
    )


def annotation_path(root: PathLike, split: str) -> Path:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return Path(root) / f"{split}.json"


class DenseCaptions(Dataset[Item]):
    """The events of one split of ``root`` (``{split}.json`` beside the two feature folders).

    Videos without all three feature files are left out and counted in ``missing``
    (``on_missing="raise"`` makes that an error naming the file); malformed videos in the
    annotation file are an error naming the file and video, or with ``on_error="skip"`` left
    out and counted in ``malformed``. A feature file that exists but is unreadable or
    mis-shaped is a ``FormatError`` naming it when its item is read.

    With ``cache`` each video's stacks are read once and kept in memory (the summed video
    stack, not RGB and flow apart): the right thing for the synthetic data and for a
    train-split epoch loop on a machine with the RAM for it (ActivityNet's features are a few
    GB). Each DataLoader worker holds its own cache. Without it every item reads its files,
    as BMT does.
    """

    def __init__(
        self,
        root: PathLike,
        split: str,
        vocab: Vocab,
        *,
        max_len: int | None = None,
        cache: bool = True,
        unique_segments: bool = False,
        on_missing: OnError = "skip",
        on_error: OnError = "raise",
        video_dir: PathLike | None = None,
        audio_dir: PathLike | None = None,
    ) -> None:
        self.split, self.vocab, self.max_len, self.cache = split, vocab, max_len, cache
        self.path = annotation_path(root, split)
        self.video_dir, self.audio_dir = feature_dirs(root, video_dir, audio_dir)
        annotated = activitynet.read_annotations(self.path, on_error=on_error)
        kept = activitynet.with_features(annotated, self.video_dir, self.audio_dir, on_missing)
        self.videos: list[activitynet.AnetVideo] = list(kept)
        self.malformed: Skipped = annotated.skipped
        self.missing: Skipped = kept.skipped
        self._index: list[tuple[int, int]] = []  # (video, event)
        for v, video in enumerate(self.videos):
            seen: set[tuple[float, float]] = set()
            for e, event in enumerate(video.events):
                if unique_segments and (event.start, event.end) in seen:
                    continue
                seen.add((event.start, event.end))
                self._index.append((v, e))
        self._stacks: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, i: int) -> Item:
        v, e = self._index[i]
        video, event = self.videos[v], self.videos[v].events[e]
        rows, audio = self._rows(video, event.start, event.end)
        return Item(
            video.video_id,
            e,
            event.start,
            event.end,
            video.duration,
            event.sentence,
            tuple(self.vocab.encode(event.sentence, self.max_len)),
            rows,
            audio,
        )

    def _rows(
        self, video: activitynet.AnetVideo, start: float, end: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """(s, 1024) summed I3D rows and (s', 128) VGGish rows covering ``[start, end]``."""
        if not self.cache:
            parts = activitynet.event_features(
                self.video_dir, self.audio_dir, video.video_id, start, end, video.duration
            )
            return parts["rgb"] + parts["flow"], parts["audio"]
        if video.video_id not in self._stacks:
            # The whole video is one "event" covering every row (feature_rows gives [0, S)),
            # so the cached stacks pass exactly the checks event_features makes.
            whole = activitynet.event_features(
                self.video_dir, self.audio_dir, video.video_id, 0.0, video.duration, video.duration
            )
            self._stacks[video.video_id] = (whole["rgb"] + whole["flow"], whole["audio"])
        out = []
        for stack in self._stacks[video.video_id]:
            lo, hi = activitynet.feature_rows(len(stack), start, end, video.duration)
            out.append(stack[lo:hi])
        return out[0], out[1]

    def segments(self) -> dict[str, list[tuple[float, float]]]:
        """Each kept video's distinct ``(start, end)`` segments, in annotation order: the
        ground-truth proposals a captioner is evaluated with."""
        return _segments(self.videos)

    def references(self) -> dict[str, dict]:
        """The kept videos in the ActivityNet Captions layout, as densevid evaluation takes
        them (BMT scores on the videos with features only)."""
        return {
            v.video_id: {
                "duration": v.duration,
                "timestamps": [[e.start, e.end] for e in v.events],
                "sentences": [e.sentence for e in v.events],
            }
            for v in self.videos
        }


def gt_proposals(
    root: PathLike, split: str, video_dir: PathLike | None = None, audio_dir: PathLike | None = None
) -> dict[str, list[tuple[float, float]]]:
    """Ground-truth segments per video of ``split``, videos without features left out."""
    path = annotation_path(root, split)
    dirs = feature_dirs(root, video_dir, audio_dir)
    videos = activitynet.with_features(activitynet.read_annotations(path), *dirs)
    return _segments(videos)


def _segments(videos: Iterable[activitynet.AnetVideo]) -> dict[str, list[tuple[float, float]]]:
    return {v.video_id: list(dict.fromkeys((e.start, e.end) for e in v.events)) for v in videos}


def train_sentences(root: PathLike) -> list[str]:
    """Every training caption (videos with or without features), what the vocabulary and the
    tiny-scale embeddings are built from."""
    videos = activitynet.read_annotations(annotation_path(root, "train"))
    return [e.sentence for v in videos for e in v.events]


@dataclass
class Batch:
    """Padded items; masks are True at real rows / tokens."""

    video: torch.Tensor  # (B, Sv, 1024) float32
    video_mask: torch.Tensor  # (B, Sv) bool
    audio: torch.Tensor  # (B, Sa, 128) float32
    audio_mask: torch.Tensor  # (B, Sa) bool
    tokens: torch.Tensor  # (B, L) long, PAD_ID after the end
    tokens_mask: torch.Tensor  # (B, L) bool
    video_ids: list[str] = field(default_factory=list)
    events: list[int] = field(default_factory=list)
    segments: list[tuple[float, float]] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.video_ids)

    def to(self, device: torch.device | str) -> Batch:
        """The tensors on ``device`` (non-blocking from pinned memory); the lists shared."""
        moved = {
            k: getattr(self, k).to(device, non_blocking=True)
            for k in ("video", "video_mask", "audio", "audio_mask", "tokens", "tokens_mask")
        }
        return Batch(
            **moved,
            video_ids=self.video_ids,
            events=self.events,
            segments=self.segments,
            durations=self.durations,
            sentences=self.sentences,
        )


def _pad(arrays: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """(s_i, D) arrays -> (B, max s_i, D) zero-padded float32 and its (B, max s_i) mask."""
    longest = max(len(a) for a in arrays)
    out = torch.zeros(len(arrays), longest, arrays[0].shape[1], dtype=torch.float32)
    mask = torch.zeros(len(arrays), longest, dtype=torch.bool)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = torch.from_numpy(a)
        mask[i, : len(a)] = True
    return out, mask


def collate(items: Sequence[Item]) -> Batch:
    """A DataLoader's ``collate_fn`` for ``DenseCaptions``."""
    if not items:
        raise ValueError("cannot collate an empty batch")
    video, video_mask = _pad([it.video for it in items])
    audio, audio_mask = _pad([it.audio for it in items])
    longest = max(len(it.tokens) for it in items)
    tokens = torch.full((len(items), longest), PAD_ID, dtype=torch.long)
    for i, it in enumerate(items):
        tokens[i, : len(it.tokens)] = torch.tensor(it.tokens, dtype=torch.long)
    return Batch(
        video,
        video_mask,
        audio,
        audio_mask,
        tokens,
        tokens != PAD_ID,
        video_ids=[it.video_id for it in items],
        events=[it.event for it in items],
        segments=[(it.start, it.end) for it in items],
        durations=[it.duration for it in items],
        sentences=[it.sentence for it in items],
    )
