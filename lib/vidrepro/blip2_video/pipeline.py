"""Glue between the notebooks' parameters and the library: datasets, loop settings, models."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch

from ..data.synthetic.datasets import SIZES, caption_scripts, locate, read_text
from ..data.synthetic.language import event_kinds
from ..history import History
from ..metrics.captions import score_captions
from ..params import untrained
from ..text import wordlevel
from ..training import LoopConfig
from ..video import sample_frames
from . import build, trainable
from .data import ImageCaptions, VideoCaptions, collate, to_tensor, transform, uniform_indices
from .model import VideoBlip2
from .params import CaptionParams, Data, Optim, PretrainParams


def build_tokenizer(*caption_lists: list[str]):
    """A word-level tokenizer over every caption the tiny run will see, and the prompts."""
    corpus = [c for captions in caption_lists for c in captions] + ["a video of"]
    return wordlevel.build(corpus)


def captions_root(p: Data) -> Path:
    return locate("captions", p.captions_root, p.data_seed, p.data_size)


def videos(
    p: Data, split: str, num_frames: int, train: bool, augment: bool = False
) -> VideoCaptions:
    """A split of the captioning dataset (``cap_<split>.json`` under the captions root)."""
    root = captions_root(p)
    return VideoCaptions(
        root / "annotations" / f"cap_{split}.json",
        root / "videos",
        num_frames,
        p.image_size,
        train=train,
        augment=augment,
        seed=p.seed,
    )


def images(p: Data) -> ImageCaptions:
    root = locate("images", p.images_root, p.data_seed, p.data_size)
    return ImageCaptions(root / "annotations" / "cap_train.json", root / "images", p.image_size)


def text_corpus(p: PretrainParams) -> list[str]:
    """The language model's pretraining sentences (``corpus.txt`` under the text root)."""
    return read_text(locate("text", p.text_root, p.data_seed, p.data_size))


def events_in_frames(p: Data, split: str, num_frames: int) -> float | None:
    """Fraction of the split's events that a uniformly sampled frame shows happening (from the
    synthetic scripts; None for real data, which has no script): how much ``num_frames``
    frames can see at all, before any training."""
    if p.captions_root:
        return None
    size = SIZES[p.data_size]
    caught = total = 0
    for s, _, scene, _ in caption_scripts(p.data_seed, size):
        if s != split:
            continue
        times = uniform_indices(int(round(scene.duration * size.fps)), num_frames) / size.fps
        for e in scene.events:
            total += 1
            caught += bool(((times > e.start) & (times < e.end)).any())
    return caught / max(total, 1)


def events_named(p: Data, captions: dict, refs: dict) -> float | None:
    """On synthetic data, how well generated captions name the clip's events: per clip the F1
    of the event kinds named (``language.event_kinds``, a multiset, order ignored) against
    those of its first reference, averaged over clips. None for real data."""
    if p.captions_root:
        return None
    scores = []
    for i, (caption, *_) in captions.items():
        said, truth = Counter(event_kinds(caption)), Counter(event_kinds(refs[i][0]))
        both = sum((said & truth).values())
        scores.append(2 * both / max(sum(said.values()) + sum(truth.values()), 1))
    return float(np.mean(scores)) if scores else None


@torch.no_grad()
def caption_loss(
    model: VideoBlip2, clips: VideoCaptions, max_clips: int | None = None, batch_size: int = 16
) -> float:
    """Mean cross-entropy per reference token over every (clip, reference) pair of the first
    ``max_clips`` clips, frames sampled uniformly, dropout off (the model's mode is restored);
    exp of it is the captions' perplexity under the model."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total = tokens = 0.0
    chosen = clips.ids[:max_clips]
    for start in range(0, len(chosen), batch_size):
        ids = chosen[start : start + batch_size]
        frames = torch.stack([clips.clip(i, train=False) for i in ids]).to(device)
        refs = [clips.refs[i] for i in ids]
        prefix = model.visual_prefix(frames).repeat_interleave(
            torch.tensor([len(r) for r in refs], device=device), 0
        )
        targets = model.encode_targets([c for r in refs for c in r], device)
        total -= model.token_logprobs(prefix, targets).sum().item()
        tokens += (targets != model.tokenizer.pad_token_id).sum().item()
    model.train(was_training)
    return total / tokens


def loop(p: Optim) -> LoopConfig:
    return LoopConfig(
        steps=p.steps,
        lr=p.lr,
        min_lr=p.min_lr,
        warmup=p.warmup,
        weight_decay=p.weight_decay,
        grad_accum=p.grad_accum,
        precision=p.precision,
        checkpoint_every=p.checkpoint_every,
    )


def load(init: str, p: Data, train_vit: bool = False, lora: bool = False) -> VideoBlip2:
    """A saved model folder or hub id, with the paper's trainable switches set. A tiny config
    name instead starts from random weights (a word-level tokenizer over the training captions),
    which lets every notebook run on its own."""
    if init in build.tiny_names():
        clips = videos(p, "train", 1, train=True)
        model = build.from_config(init, build_tokenizer([e.caption for e in clips.entries]))
    else:
        model = build.from_pretrained(init)
    trainable.configure(model, train_vit=train_vit, lora=lora)
    return model


def save(model: VideoBlip2, history: History, folder: Path) -> Path:
    """The model folder plus its training curves (``history.json``) for the evaluation notebook."""
    build.save(model, folder)
    history.save(folder)
    return folder


@torch.no_grad()
def caption_videos(
    model: VideoBlip2,
    videos: VideoCaptions,
    batch_size: int = 16,
    num_beams: int = 5,
    max_new_tokens: int = 32,
    min_length: int = 5,
) -> dict:
    """{image_id: [caption]} by beam search over the evaluation split (the paper's settings)."""
    model.eval()
    device = next(model.parameters()).device
    out = {}
    for start in range(0, len(videos), batch_size):
        frames, ids = collate(
            [videos[i] for i in range(start, min(start + batch_size, len(videos)))]
        )
        tokens = model.generate(
            frames.to(device),
            num_beams=num_beams,
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_length,
        )
        out.update({i: [c] for i, c in zip(ids, model.decode(tokens))})
    return out


def evaluate(
    model: VideoBlip2, clips: VideoCaptions, num_beams: int, max_new_tokens: int, min_length: int
) -> tuple[dict[str, float], dict, list[dict]]:
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr of beam-search captions, the captions, and per-clip
    scores for ``runs.log_items`` (``item`` is the clip's image_id; per-clip CIDEr and ROUGE_L
    average to the corpus ones, sentence BLEU and METEOR come as ``<metric>_sentence``)."""
    res = caption_videos(
        model, clips, num_beams=num_beams, max_new_tokens=max_new_tokens, min_length=min_length
    )
    scores, per_clip = score_captions({i: clips.refs[i] for i in res}, res)
    return scores, res, [{"item": str(i), **s} for i, s in per_clip.items()]


@torch.no_grad()
def your_model(p: CaptionParams) -> VideoBlip2:
    """The model a person captions their own video with (``05_caption_your_video``, ``vidrepro
    caption``): a trained folder or hub id; a config name only with ``p.allow_untrained``."""
    hint = "Point checkpoint at the model output of 02_finetune or 03_scst (`vidrepro runs "
    untrained("checkpoint", p.checkpoint, build.tiny_names(), p.allow_untrained, hint + "TABLE`)")
    return load(p.checkpoint, Data(image_size=p.image_size)).eval()


def caption_file(
    model: VideoBlip2, video: str | Path, num_frames: int, image_size: int, num_beams: int = 5
) -> tuple[np.ndarray, str]:
    """Frames (T, H, W, 3) sampled uniformly from any video file, and their caption."""
    if not Path(video).is_file():
        raise FileNotFoundError(f"{video}: no such video file")
    frames = sample_frames(video, num_frames=num_frames)
    clip = to_tensor(frames, transform(image_size, augment=False))[None]  # (1, T, 3, S, S)
    model.eval()
    ids = model.generate(
        clip.to(next(model.parameters()).device),
        num_beams=num_beams,
        max_new_tokens=32,
        min_new_tokens=5,
    )
    return frames, model.decode(ids)[0]
