"""Glue between the notebooks' parameters and the library: datasets, loop settings, models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..data.synthetic.datasets import locate
from ..metrics.captions import score_captions
from ..training import History, LoopConfig
from ..video import sample_frames
from . import build, trainable
from .data import ImageCaptions, VideoCaptions, to_tensor, transform
from .model import VideoBlip2
from .params import Data, Optim
from .train import build_tokenizer, caption_videos

HISTORY = "history.json"


def captions_root(p: Data) -> Path:
    return locate("captions", p.captions_root, p.data_seed, p.data_size)


def videos(p: Data, split: str, num_frames: int, train: bool, augment: bool = False) -> VideoCaptions:
    """A split of the captioning dataset (``cap_<split>.json`` under the captions root)."""
    root = captions_root(p)
    return VideoCaptions(root / "annotations" / f"cap_{split}.json", root / "videos", num_frames,
                         p.image_size, train=train, augment=augment, seed=p.seed)


def images(p: Data) -> ImageCaptions:
    root = locate("images", p.images_root, p.data_seed, p.data_size)
    return ImageCaptions(root / "annotations" / "cap_train.json", root / "images", p.image_size)


def loop(p: Optim) -> LoopConfig:
    return LoopConfig(steps=p.steps, lr=p.lr, min_lr=p.min_lr, warmup=p.warmup,
                      weight_decay=p.weight_decay, grad_accum=p.grad_accum,
                      precision=p.precision, checkpoint_every=p.checkpoint_every)


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
    (folder / HISTORY).write_text(json.dumps({"steps": history.step, "values": history.values}))
    return folder


def history(folder: str | Path) -> dict[str, list[float]]:
    """Training curves saved beside a model folder ({} for a pretrained or tiny-config one)."""
    path = Path(folder) / HISTORY
    return json.loads(path.read_text())["values"] if path.exists() else {}


def evaluate(model: VideoBlip2, clips: VideoCaptions, num_beams: int, max_new_tokens: int,
             min_length: int) -> tuple[dict[str, float], dict, list[dict]]:
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr of beam-search captions, the captions, and per-clip
    scores for ``runs.log_items`` (``item`` is the clip's image_id; per-clip CIDEr and ROUGE_L
    average to the corpus ones, sentence BLEU and METEOR come as ``<metric>_sentence``)."""
    res = caption_videos(model, clips, num_beams=num_beams, max_new_tokens=max_new_tokens,
                         min_length=min_length)
    scores, per_clip = score_captions({i: clips.refs[i] for i in res}, res)
    return scores, res, [{"item": str(i), **s} for i, s in per_clip.items()]


@torch.no_grad()
def caption_file(model: VideoBlip2, video: str | Path, num_frames: int, image_size: int,
                 num_beams: int = 5) -> tuple[np.ndarray, str]:
    """Frames (T, H, W, 3) sampled uniformly from any video file, and their caption."""
    frames = sample_frames(video, num_frames=num_frames)
    clip = to_tensor(frames, transform(image_size, augment=False))[None]  # (1, T, 3, S, S)
    model.eval()
    ids = model.generate(clip.to(next(model.parameters()).device), num_beams=num_beams,
                         max_new_tokens=32, min_new_tokens=5)
    return frames, model.decode(ids)[0]
