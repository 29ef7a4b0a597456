"""MERLOT's data: pretraining groups from YT-Temporal-style videos, VIST stories, video QA.

Text is tokenized by a word-level vocabulary built from the data (tiny scale) or a local
subword tokenizer renumbered to the model's special ids (full scale). Frames are decoded once
into memory (the tiny sets are a few MB; at full scale this is where a
sharded TFRecord/ArrayRecord reader would go) and batches are drawn by step number, so a
resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from tokenizers import Tokenizer
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerFast

from ..data.formats import merlot as merlot_format
from ..data.formats import videoqa, vist
from ..text import wordlevel
from ..video import sample_frames
from .objectives import MASK, PAD, START

SPECIALS = ("<mask>", "<start>")  # ids 3 and 4 (objectives.MASK, objectives.START)
MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # ImageNet statistics, as the ResNet stem
STD = np.array([0.229, 0.224, 0.225], np.float32)


def build_tokenizer(texts: list[str]):
    """The word-level vocabulary of ``texts`` (tiny scale: a word is one token)."""
    return _checked(wordlevel.build(texts, extra_specials=SPECIALS))


def load_tokenizer(path: Path):
    """A local tokenizer (full scale: RoBERTa's BPE, as the paper), renumbered so its ids are
    the model's: the objectives' specials in the word-level layout, every real token from
    ``objectives.SPECIAL_IDS`` on. The renumbering lives in the tokenizer itself, not in a
    wrapper, so ``encode``, ``decode`` and a saved model folder's ``from_pretrained`` all see
    the same ids (and renumbering a renumbered tokenizer changes nothing).

    ``path`` is a ``tokenizer.json`` file or a folder ``save_pretrained`` wrote; it is read
    locally (never a hub name, never remote code)."""
    source = (
        PreTrainedTokenizerFast.from_pretrained(path, local_files_only=True)
        if path.is_dir()
        else PreTrainedTokenizerFast(tokenizer_file=str(path))
    )
    spec = json.loads(source.backend_tokenizer.to_str())
    unk = spec["model"].get("unk_token") or wordlevel.UNK
    specials = (wordlevel.PAD, wordlevel.EOS, unk, *SPECIALS)
    core = Tokenizer.from_str(json.dumps(specials_first(spec, specials)))
    return _checked(
        PreTrainedTokenizerFast(
            tokenizer_object=core,
            pad_token=wordlevel.PAD,
            eos_token=wordlevel.EOS,
            unk_token=unk,
            additional_special_tokens=list(SPECIALS),
        )
    )


def specials_first(spec: dict, specials: tuple[str, ...]) -> dict:
    """A ``tokenizers`` JSON renumbered: ``specials`` at ids 0, 1, ... (the tokenizer's own
    token of that name where it has one, as RoBERTa's ``<pad>`` and ``<mask>``, so no string
    has two ids), every other token after them in its old order, so ids stay dense and
    ``len(tokenizer)`` sizes the embedding. Added tokens go into the model's vocabulary too:
    ``tokenizers`` ignores the id of an added token the vocabulary lacks and appends it. The
    post-processor goes: its template holds old ids, and ``encode`` adds the kit's own START."""
    model = dict(spec["model"])
    if not isinstance(model.get("vocab"), dict):
        raise ValueError(
            f"a {model['type']} vocabulary has no token ids to renumber (MERLOT "
            "reads BPE, WordPiece and WordLevel tokenizers)"
        )
    if len(set(specials)) < len(specials):
        raise ValueError(f"special tokens {specials} must be distinct")
    added = {a["content"]: dict(a) for a in spec["added_tokens"]}
    old = model["vocab"] | {token: a["id"] for token, a in added.items()}
    rest = sorted(set(old) - set(specials), key=lambda token: (old[token], token))
    model["vocab"] = {token: i for i, token in enumerate([*specials, *rest])}
    for token in specials:
        added.setdefault(
            token,
            {
                "content": token,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
            },
        )["special"] = True
    for token, a in added.items():
        a["id"] = model["vocab"][token]
    return {
        **spec,
        "model": model,
        "post_processor": None,
        "added_tokens": sorted(added.values(), key=lambda a: a["id"]),
    }


def _checked(tokenizer):
    """The ids ``objectives`` hard-codes, whichever way the vocabulary was made."""
    ids = tokenizer.convert_tokens_to_ids([tokenizer.pad_token, *SPECIALS])
    assert ids == [PAD, MASK, START], ids
    return tokenizer


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


def covering(width: int, height: int, hw: tuple[int, int]) -> tuple[int, int]:
    """The (width, height) to resize a ``width`` x ``height`` picture to, keeping its aspect
    ratio, so that a centre crop of ``hw`` = (height, width) fits: the paper's 192x352 frames
    from 16:9 video, or square tiny frames from anything."""
    scale = max(hw[1] / width, hw[0] / height)
    return max(hw[1], round(width * scale)), max(hw[0], round(height * scale))


def frames_at(path: Path, duration: float, times: list[float], hw: tuple[int, int]) -> np.ndarray:
    """The frames showing ``times`` (seconds) of a video: (len(times), H, W, 3) uint8."""

    def indices(n: int) -> np.ndarray:
        return np.clip((np.asarray(times) / duration * n).astype(np.int64), 0, n - 1)

    return sample_frames(path, indices=indices, size=partial(covering, hw=hw), crop=(hw[1], hw[0]))


@dataclass
class Pretraining:
    """Every group of ``segments`` consecutive segments of every video: frames (G, S, H, W, 3)
    uint8 and transcripts; one frame per segment, from its middle."""

    frames: np.ndarray
    texts: list[list[str]]
    firsts: np.ndarray  # (V,) each video's first group: frames that no other row repeats

    @classmethod
    def load(cls, root: Path, segments: int, hw: tuple[int, int]) -> Pretraining:
        videos = merlot_format.read_segments(root)
        frames, texts, firsts = [], [], []
        for video in tqdm(videos, desc="decoding pretraining videos", leave=False):
            mids = [(s.start + s.end) / 2 for s in video.segments]
            decoded = frames_at(
                merlot_format.video_path(root, video.video_id), video.duration, mids, hw
            )
            if len(video.segments) >= segments:
                firsts.append(len(frames))
            for start in range(len(video.segments) - segments + 1):
                frames.append(decoded[start : start + segments])
                texts.append([s.text for s in video.segments[start : start + segments]])
        if not frames:
            raise ValueError(f"{root}: no video has {segments} segments")
        return cls(np.stack(frames), texts, np.array(firsts))

    def batch(self, tokenizer, step: int, batch_size: int, text_len: int, seed: int) -> dict:
        rng = np.random.default_rng([seed, step])
        pick = rng.choice(len(self.texts), batch_size, replace=batch_size > len(self.texts))
        text = np.stack([encode(tokenizer, self.texts[i], text_len) for i in pick])
        return {"frames": normalise(self.frames[pick]), "text": text}


def photo(image_dir: Path, photo_id: str, hw: tuple[int, int]) -> np.ndarray:
    """A VIST photo resized to cover ``hw`` and centre-cropped to it: (H, W, 3) uint8."""
    with Image.open(vist.find_image(image_dir, photo_id)) as image:
        w, h = covering(image.width, image.height, hw)
        image = image.convert("RGB").resize((w, h), Image.BICUBIC)
        left, top = (w - hw[1]) // 2, (h - hw[0]) // 2
        return np.asarray(image.crop((left, top, left + hw[1], top + hw[0])))


class _Blankable:
    def blanked(self):
        """The same items with every frame black: what a model gets from the words alone
        (their own bias), so the gap to the real frames is what it reads from the images."""
        return replace(self, frames=np.zeros_like(self.frames))


@dataclass
class Stories(_Blankable):
    """VIST stories: 5 photos (N, 5, H, W, 3) uint8 and their 5 sentences, in story order."""

    frames: np.ndarray
    texts: list[list[str]]
    ids: list[str]

    @classmethod
    def load(cls, root: Path, split: str, hw: tuple[int, int], limit: int | None = None) -> Stories:
        image_dir = root / "images" / split
        stories = vist.read_stories(
            root / "sis" / f"{split}.story-in-sequence.json", image_dir, on_error="skip"
        )[:limit]
        frames = np.stack(
            [np.stack([photo(image_dir, p, hw) for p in s.photo_ids]) for s in stories]
        )
        return cls(frames, [list(s.texts) for s in stories], [s.story_id for s in stories])


@dataclass
class VideoQA(_Blankable):
    """Multiple-choice questions: the video's frames at its segments' middles (N, S, H, W, 3),
    each question and its answers (N, A) as text.

    The model reads a question as MERLOT reads a transcript: ``question_segments`` text segments
    of the config's ``text_len`` tokens, then the candidate answer as one more segment, so each
    token sits at a position pretraining used (one long "question answer" string would run
    across segment slots and read as two misaligned transcripts)."""

    frames: np.ndarray
    questions: list[str]
    options: list[list[str]]
    answers: np.ndarray  # (N,) index of the right answer
    ids: list[str] | None = None  # (N,) the annotation's qids, which pair test items up

    @property
    def texts(self) -> list[list[str]]:
        """ "question answer" per option, for display."""
        return [[f"{q} {a}" for a in opts] for q, opts in zip(self.questions, self.options)]

    @staticmethod
    def texts_of(root: Path, split: str) -> list[list[str]]:
        """The questions and answers alone, without decoding a video."""
        items = videoqa.read_qa(videoqa.annotation_path(root, split))
        return [[i.question, *i.answers] for i in items]

    @classmethod
    def load(
        cls, root: Path, split: str, segments: int, segment_seconds: float, hw: tuple[int, int]
    ) -> VideoQA:
        items = videoqa.read_qa(videoqa.annotation_path(root, split), root / videoqa.VIDEO_DIR)
        times = [(k + 0.5) * segment_seconds for k in range(segments)]
        cache: dict[str, np.ndarray] = {}
        for item in tqdm(items, desc=f"decoding QA videos ({split})", leave=False):
            if item.video_id not in cache:
                cache[item.video_id] = frames_at(
                    videoqa.video_path(root, item.video_id), segments * segment_seconds, times, hw
                )
        return cls(
            np.stack([cache[i.video_id] for i in items]),
            [i.question for i in items],
            [list(i.answers) for i in items],
            np.array([i.answer for i in items], np.int32),
            [i.qid for i in items],
        )

    def batch(self, tokenizer, rows: np.ndarray, text_len: int, question_segments: int) -> dict:
        """frames (B, S, H, W, 3); text (B, A, question_segments + 1, text_len); answer (B,)."""
        text = []
        for i in rows:
            q = encode(tokenizer, [self.questions[i]], question_segments * text_len)
            q = q.reshape(question_segments, text_len)  # one START, then the words run on
            a = encode(tokenizer, self.options[i], text_len)  # (A, L)
            text.append(np.concatenate([np.broadcast_to(q, (len(a), *q.shape)), a[:, None]], 1))
        return {
            "frames": normalise(self.frames[rows]),
            "text": np.stack(text),
            "answer": self.answers[rows],
        }
