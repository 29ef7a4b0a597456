"""The video BLIP-2's training stages, each a call the notebooks (or a cluster script) make.

Tiny scale has no pretrained FLAN-T5, EVA ViT or Q-Former, so ``01_pretrain`` makes small
stand-ins the way BLIP-2's own parts came about: the language model learns the language from a
text corpus that holds none of the video captions' sentences; the ViT learns on its own,
contrastively, from an image corpus many times the video set; then the Q-Former learns to talk
to both, frozen, on single images (BLIP-2's image-text stage). The video stages then follow the
paper: cross-entropy finetuning on videos with the chosen parts trainable, and SCST from there.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import launch
from ..metrics.cider import CiderD
from ..rl.scst import SelfCritical, normalize
from ..training import History, LoopConfig, Stage, distributed, step_rng, train
from . import pipeline
from .data import ImageCaptions, VideoCaptions, collate
from .model import VideoBlip2, xe_loss
from .params import FinetuneParams, ScstParams


def _sample(dataset, n: int, rng: np.random.Generator):
    return collate([dataset[int(i)] for i in rng.integers(len(dataset), size=n)])


def _batches(dataset, batch_size: int, seed: int):
    """``training.train``'s batch function: ``batch_size`` random items of ``dataset`` per step
    and rank."""
    return lambda step, rank, world: _sample(dataset, batch_size, step_rng(seed, step, rank))


def pretrain_text(
    model: VideoBlip2,
    texts: list[str],
    cfg: LoopConfig,
    batch_size: int,
    seed: int = 0,
    checkpoint: Path | None = None,
    keep: float = 0.7,
) -> History:
    """The LM alone, denoising text: from a shuffled bag of some of a caption's words, placed in
    its visual slots, write the caption. A stand-in for LLM pretraining (T5's objective also
    denoises) that teaches the LM to *read* its prefix, as a pretrained FLAN-T5 reads a soft
    prompt; an LM trained with an empty prefix would ignore whatever the Q-Former later says."""
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("blip2.language_model.")
    pad = model.tokenizer.pad_token_id
    q = model.blip2.config.num_query_tokens

    def batch(step, rank, world):
        rng = step_rng(seed, step, rank)
        captions = [texts[i] for i in rng.integers(len(texts), size=batch_size)]
        bags = torch.full((batch_size, q), pad, dtype=torch.long)  # (B, Q) word ids
        for row, caption in enumerate(captions):
            ids = model.tokenizer(caption, add_special_tokens=False).input_ids
            kept = [i for i in rng.permutation(ids) if rng.random() < keep][:q]
            bags[row, : len(kept)] = torch.tensor(kept, dtype=torch.long)
        return bags, captions

    def loss_fn(m, b):
        bags, captions = b
        core = getattr(m, "module", m)
        targets = core.encode_targets(captions, next(core.parameters()).device)
        prefix = core._embed(bags.to(targets.device)) * (bags != pad).unsqueeze(-1).to(
            targets.device
        )
        logp = core.token_logprobs(prefix, targets)
        return -logp.sum() / (targets != pad).sum(), {}

    return train(model, loss_fn, batch, cfg, checkpoint, desc="LM on text")


class ImageText(nn.Module):
    """The ViT with a small text tower (mean of word embeddings, then an MLP) and both
    projected into one space: CLIP's objective, standing in for the EVA-CLIP that BLIP-2
    starts from. Only the ViT is kept afterwards."""

    def __init__(self, model: VideoBlip2, dim: int = 64):
        super().__init__()
        self.vit, self.tokenizer = model.blip2.vision_model, model.tokenizer
        width = model.blip2.config.vision_config.hidden_size
        self.words = nn.EmbeddingBag(
            len(self.tokenizer), width, mode="mean", padding_idx=self.tokenizer.pad_token_id
        )
        self.text_proj = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, dim))
        self.image_proj = nn.Linear(width, dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, frames: torch.Tensor, captions: list[str]) -> torch.Tensor:
        """frames (B, 1, 3, S, S), B captions -> the symmetric InfoNCE loss."""
        pooled = self.vit(pixel_values=frames.flatten(0, 1)).pooler_output  # (B, D)
        ids = self.tokenizer(captions, padding=True, return_tensors="pt").input_ids
        image = F.normalize(self.image_proj(pooled), dim=-1)
        text = F.normalize(self.text_proj(self.words(ids.to(frames.device))), dim=-1)
        logits = self.logit_scale.exp().clamp(max=100) * image @ text.T  # (B, B)
        labels = torch.arange(len(captions), device=frames.device)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def pretrain_vision(
    model: VideoBlip2,
    images: ImageCaptions,
    cfg: LoopConfig,
    batch_size: int,
    seed: int = 0,
    checkpoint: Path | None = None,
) -> History:
    """The ViT alone, image-text contrastive on the image corpus (BLIP-2's frozen image
    encoder was pretrained on its own, on far more images than any video set)."""
    for p in model.parameters():
        p.requires_grad = False
    tower = ImageText(model)
    for p in tower.vit.parameters():
        p.requires_grad = True

    def loss_fn(m, b):
        frames, captions = b
        core = getattr(m, "module", m)
        return m(frames.to(next(core.parameters()).device), captions), {}

    return train(
        tower,
        loss_fn,
        _batches(images, batch_size, seed),
        cfg,
        checkpoint,
        desc="ViT (contrastive)",
    )


def pretrain_image_text(
    model: VideoBlip2,
    images: ImageCaptions,
    cfg: LoopConfig,
    batch_size: int,
    seed: int = 0,
    checkpoint: Path | None = None,
) -> History:
    """Q-Former and projection on single images with the ViT and the LM frozen (BLIP-2's
    image-text stage); the ViT's last layer norm trains, as LAVIS's ``ln_vision`` does."""
    for name, p in model.named_parameters():
        p.requires_grad = not name.startswith(
            ("blip2.language_model.", "blip2.vision_model.")
        ) or name.startswith("blip2.vision_model.post_layernorm.")
    return train(
        model,
        _xe_step(model),
        _batches(images, batch_size, seed),
        cfg,
        checkpoint,
        desc="image-text",
    )


def _xe_step(model: VideoBlip2):
    pad = model.tokenizer.pad_token_id

    def loss_fn(m, batch):
        frames, captions = batch
        core = getattr(m, "module", m)
        frames = frames.to(next(core.parameters()).device)
        return xe_loss(m, frames, core.encode_targets(captions, frames.device), pad), {}

    return loss_fn


def finetune(
    model: VideoBlip2,
    videos: VideoCaptions,
    cfg: LoopConfig,
    batch_size: int,
    seed: int = 0,
    checkpoint: Path | None = None,
) -> History:
    """Cross-entropy on (clip, caption) pairs; what trains was set by ``trainable.configure``."""
    return train(
        model,
        _xe_step(model),
        _batches(videos, batch_size, seed),
        cfg,
        checkpoint,
        desc="finetune (XE)",
    )


def scst(
    model: VideoBlip2,
    videos: VideoCaptions,
    cfg: LoopConfig,
    batch_size: int,
    k: int = 5,
    baseline: str = "greedy",
    candidates: str = "sample",
    max_new_tokens: int = 20,
    seed: int = 0,
    checkpoint: Path | None = None,
) -> History:
    """Self-critical training with CIDEr-D; document frequencies from the training corpus."""
    refs = videos.refs
    critic = SelfCritical(
        CiderD([[normalize(c) for c in rs] for rs in refs.values()]),
        k=k,
        baseline=baseline,
        candidates=candidates,
        max_new_tokens=max_new_tokens,
    )

    def batch(step, rank, world):
        rng = step_rng(seed, step, rank)
        ids = [videos.ids[i] for i in rng.choice(len(videos.ids), batch_size, replace=False)]
        return torch.stack([videos.clip(i, train=True) for i in ids]), [refs[i] for i in ids]

    def loss_fn(m, b):
        frames, video_refs = b
        core = getattr(m, "module", m)
        loss, stats = critic.step(m, frames.to(next(core.parameters()).device), video_refs)
        return loss, {"reward": stats.reward, "baseline": stats.baseline}

    return train(model, loss_fn, batch, cfg, checkpoint, desc="SCST")


def run_finetune(p: FinetuneParams, out: Path) -> Stage:
    """``02_finetune``: cross-entropy on the training clips from ``p.init``; the captions' loss
    on val before, and on train and val after (``loss_clips`` clips each; 0 skips it). The
    model goes to ``out/model`` (rank 0), checkpoints to ``out/ckpt``."""
    model, clips, rank = _start(p, augment=p.augment)
    views = {s: pipeline.videos(p, s, p.num_frames, train=False) for s in ("train", "val")}
    loss = lambda split: pipeline.caption_loss(model, views[split], p.loss_clips)
    losses = {"val_loss_before": loss("val")} if p.loss_clips else {}
    history = finetune(model, clips, pipeline.loop(p), p.batch_size, p.seed, out / "ckpt")
    if p.loss_clips:
        losses.update(train_loss=loss("train"), val_loss=loss("val"))
    return _finish(model, history, out, rank, final_loss=history.values["loss"][-1], **losses)


def run_scst(p: ScstParams, out: Path) -> Stage:
    """``03_scst``: self-critical training from ``p.init`` (a finetuned model); the model goes
    to ``out/model`` (rank 0), checkpoints to ``out/ckpt``."""
    model, clips, rank = _start(p)
    history = scst(
        model,
        clips,
        pipeline.loop(p),
        p.batch_size,
        k=p.k,
        baseline=p.baseline,
        candidates=p.candidates,
        max_new_tokens=p.max_new_tokens,
        seed=p.seed,
        checkpoint=out / "ckpt",
    )
    rewards = history.values["reward"]
    return _finish(model, history, out, rank, reward_first=rewards[0], reward_last=rewards[-1])


def _start(p: FinetuneParams | ScstParams, augment: bool = False):
    """Seed, the model with its trainable switches on this process's device, the training
    clips, and the rank (0 outside ``torchrun``)."""
    torch.manual_seed(p.seed)
    model = pipeline.load(p.init, p, train_vit=p.train_vit, lora=p.lora)
    rank, _ = distributed()  # sets this process's GPU under torchrun
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    return model, pipeline.videos(p, "train", p.num_frames, train=True, augment=augment), rank


def _finish(model: VideoBlip2, history: History, out: Path, rank: int, **metrics) -> Stage:
    outputs = {"model": pipeline.save(model, history, out / "model")} if rank == 0 else {}
    return Stage(outputs, metrics, history)


STAGES = {"finetune": "02_finetune", "scst": "03_scst"}
RUN = {"finetune": run_finetune, "scst": run_scst}


def main(argv: list[str] | None = None) -> None:
    """The notebooks' finetuning and SCST stages from the command line (see ``vidrepro.launch``):
    the same ``run_<stage>`` the notebooks call."""
    stage, p, out = launch.parse("blip2_video", STAGES, argv)
    result = RUN[stage](p, out)
    for name, path in result.outputs.items():
        print(f"saved {name}: {path}")


if __name__ == "__main__":
    main()
