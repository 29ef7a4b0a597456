"""MERLOT's data: pretraining groups from YT-Temporal-style videos, VIST stories, video QA.

Frames are decoded once into memory (the tiny sets are a few MB; at full scale this is where a
sharded TFRecord/ArrayRecord reader would go) and batches are drawn by step number, so a
resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..data.formats import merlot as merlot_format
from ..data.formats import videoqa, vist
from ..text import wordlevel
from ..video import sample_frames
from .objectives import MASK, START

SPECIALS = ("<mask>", "<start>")  # ids 3 and 4 (objectives.MASK, objectives.START)
MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # ImageNet statistics, as the ResNet stem
STD = np.array([0.229, 0.224, 0.225], np.float32)


def build_tokenizer(texts: list[str]):
    tok = wordlevel.build(texts, extra_specials=SPECIALS)
    assert tok.convert_tokens_to_ids(list(SPECIALS)) == [MASK, START]
    return tok


def encode(tokenizer, texts: list[str], length: int) -> np.ndarray:
    """START + the words, cut or zero-padded to ``length``: (len(texts), length) int32."""
    out = np.zeros((len(texts), length), np.int32)
    for row, text in enumerate(texts):
        ids = [START] + tokenizer(text, add_special_tokens=False).input_ids
        out[row, : min(length, len(ids))] = ids[:length]
    return out


def normalise(frames: np.ndarray) -> np.ndarray:
    """uint8 (..., H, W, 3) → float32 standardised pixels."""
    return (frames.astype(np.float32) / 255.0 - MEAN) / STD


def frames_at(path: Path, duration: float, times: list[float], size: int) -> np.ndarray:
    """The frames showing ``times`` (seconds) of a video: (len(times), size, size, 3) uint8."""
    def indices(n: int) -> np.ndarray:
        return np.clip((np.asarray(times) / duration * n).astype(np.int64), 0, n - 1)

    return sample_frames(path, indices=indices, size=size, crop=size)


@dataclass
class Pretraining:
    """Every group of ``segments`` consecutive segments of every video: frames (G, S, H, W, 3)
    uint8 and transcripts; one frame per segment, from its middle."""

    frames: np.ndarray
    texts: list[list[str]]

    @classmethod
    def load(cls, root: Path, segments: int, image_size: int) -> Pretraining:
        videos = merlot_format.read_segments(root)
        frames, texts = [], []
        for video in tqdm(videos, desc="decoding pretraining videos", leave=False):
            mids = [(s.start + s.end) / 2 for s in video.segments]
            decoded = frames_at(merlot_format.video_path(root, video.video_id), video.duration,
                                mids, image_size)
            for start in range(len(video.segments) - segments + 1):
                frames.append(decoded[start: start + segments])
                texts.append([s.text for s in video.segments[start: start + segments]])
        if not frames:
            raise ValueError(f"{root}: no video has {segments} segments")
        return cls(np.stack(frames), texts)

    def batch(self, tokenizer, step: int, batch_size: int, text_len: int, seed: int) -> dict:
        rng = np.random.default_rng([seed, step])
        pick = rng.choice(len(self.texts), batch_size, replace=batch_size > len(self.texts))
        text = np.stack([encode(tokenizer, self.texts[i], text_len) for i in pick])
        return {"frames": normalise(self.frames[pick]), "text": text}


def photo(image_dir: Path, photo_id: str, size: int) -> np.ndarray:
    """A VIST photo resized (shorter side) and centre-cropped to ``size``: (size, size, 3)."""
    with Image.open(vist.find_image(image_dir, photo_id)) as image:
        image = image.convert("RGB")
        scale = size / min(image.size)
        w, h = max(size, round(image.width * scale)), max(size, round(image.height * scale))
        image = image.resize((w, h), Image.BICUBIC)
        left, top = (w - size) // 2, (h - size) // 2
        return np.asarray(image.crop((left, top, left + size, top + size)))


@dataclass
class Stories:
    """VIST stories: 5 photos (N, 5, H, W, 3) uint8 and their 5 sentences, in story order."""

    frames: np.ndarray
    texts: list[list[str]]
    ids: list[str]

    @classmethod
    def load(cls, root: Path, split: str, image_size: int, limit: int | None = None) -> Stories:
        image_dir = root / "images" / split
        stories = vist.read_stories(root / "sis" / f"{split}.story-in-sequence.json", image_dir,
                                    on_error="skip")[:limit]
        frames = np.stack([np.stack([photo(image_dir, p, image_size) for p in s.photo_ids])
                           for s in stories])
        return cls(frames, [list(s.texts) for s in stories], [s.story_id for s in stories])


@dataclass
class VideoQA:
    """Multiple-choice questions: the video's frames at its segments' middles (N, S, H, W, 3),
    and per question each answer as one text segment "question answer" (N, A) strings."""

    frames: np.ndarray
    texts: list[list[str]]
    answers: np.ndarray  # (N,) index of the right answer

    @staticmethod
    def texts_of(root: Path, split: str) -> list[list[str]]:
        """The "question answer" strings alone, without decoding a video."""
        items = videoqa.read_qa(videoqa.annotation_path(root, split))
        return [[f"{i.question} {a}" for a in i.answers] for i in items]

    @classmethod
    def load(cls, root: Path, split: str, segments: int, segment_seconds: float,
             image_size: int) -> VideoQA:
        items = videoqa.read_qa(videoqa.annotation_path(root, split), root / videoqa.VIDEO_DIR)
        times = [(k + 0.5) * segment_seconds for k in range(segments)]
        cache: dict[str, np.ndarray] = {}
        for item in tqdm(items, desc=f"decoding QA videos ({split})", leave=False):
            if item.video_id not in cache:
                cache[item.video_id] = frames_at(videoqa.video_path(root, item.video_id),
                                                 segments * segment_seconds, times, image_size)
        return cls(np.stack([cache[i.video_id] for i in items]),
                   [[f"{i.question} {a}" for a in i.answers] for i in items],
                   np.array([i.answer for i in items], np.int32))

    def batch(self, tokenizer, rows: np.ndarray, text_len: int) -> dict:
        text = np.stack([encode(tokenizer, self.texts[i], text_len) for i in rows])  # (B, A, L)
        return {"frames": normalise(self.frames[rows]), "text": text,
                "answer": self.answers[rows]}
