"""The training stage of the object-state-change model (Souček et al., 2022), and the command line:

    python -m vidrepro.object_states.train train|evaluate [-p key=value ...] --out DIR
    torchrun --nproc_per_node 2 -m vidrepro.object_states.train train ... --out DIR

A step draws ``batch_size`` training videos on each process (from ``step_rng(seed, step, rank)``,
so a resumed run sees the videos and augmentations an uninterrupted one did), scores all their
frames with the current model and no gradient, turns the best (s1, a, s2) into ~15 targets per
video (``targets.pseudo_labels``, ordering constraint on or off), weights each video by its
relevance (noise weighting on or off), and backpropagates ``multitask_loss`` through those
frames only. The paper's two optimisers (SGD heads, AdamW backbone) follow one warm-up + cosine
schedule, each from its own base rate, which is why this stage has its own loop instead of
``training.train`` (one AdamW); it reuses that module's checkpoints, history, schedule, step
generator and process-group set-up.

Single-task mode (``single_task: true``) trains one model per category, K = 1 heads, on that
category's videos only, each for ``steps`` steps and into its own checkpoint folder; evaluation
combines them (``pipeline.evaluate``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .. import launch
from ..training import Checkpoint, History, LoopConfig, distributed, lr_at, step_rng
from . import pipeline
from .augment import augment_video, video_seeds, video_transform
from .data import ChangeItData, TrainVideo, normalize
from .model import ClipClassifier, make_optimizers, resolve_config
from .params import TrainParams
from .targets import PseudoLabels, gather_frames, multitask_loss, pseudo_labels, video_weights

STAGES = {"train": "01_train", "evaluate": "02_evaluate"}
MIN_FRAMES = 3  # s1 < a < s2 needs three frames


class Optimizers:
    """The heads' and the backbone's optimisers as one object: ``training.Checkpoint`` saves
    and restores ``state_dict()`` of one optimizer, and the schedule scales each from its own
    base rate."""

    def __init__(self, optimizers: Sequence[torch.optim.Optimizer]):
        self.optimizers = list(optimizers)
        self.base = [[g["lr"] for g in o.param_groups] for o in self.optimizers]

    def set_lr(self, factor: float) -> None:
        for opt, base in zip(self.optimizers, self.base, strict=True):
            for group, lr in zip(opt.param_groups, base, strict=True):
                group["lr"] = lr * factor

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)

    def state_dict(self) -> dict:
        return {str(i): o.state_dict() for i, o in enumerate(self.optimizers)}

    def load_state_dict(self, state: dict) -> None:
        if len(state) != len(self.optimizers):
            raise ValueError(
                f"checkpoint has {len(state)} optimizers, the run {len(self.optimizers)}"
                " (train_backbone changed?)"
            )
        for i, opt in enumerate(self.optimizers):
            opt.load_state_dict(state[str(i)])


@dataclass
class Batch:
    videos: list[Tensor]  # each (T_i, 3, H, W) float, CLIP-normalised, on the model's device
    categories: list[int]  # class index c of each video in the model
    weights: Tensor  # (B,) float32 noise-adaptive weights (0 for too short videos)


def new_model(p: TrainParams, names: Sequence[str]) -> ClipClassifier:
    """Random tower (tiny) or a pretrained one (``pretrained``: a file or an open_clip tag),
    fresh heads; seeded so that every process builds the same model."""
    torch.manual_seed(p.seed)
    if p.pretrained:
        return ClipClassifier.from_openai(p.model, p.pretrained, categories=names, hidden=p.hidden)
    return ClipClassifier.from_config(p.model, names, hidden=p.hidden)


def draw_batch(
    model: ClipClassifier,
    data: ChangeItData,
    pool: Sequence[TrainVideo],
    p: TrainParams,
    step: int,
    rank: int,
) -> Batch:
    """Step ``step``'s videos on ``rank``: drawn without replacement (with, if the pool is
    smaller than the batch), each augmented with its own parameters. A video shorter than
    three frames cannot hold s1 < a < s2: it is padded by repeating its last frame and weighs 0,
    so every process still runs the same computation (DDP needs that)."""
    rng = step_rng(p.seed, step, rank)
    rows = rng.choice(len(pool), p.batch_size, replace=len(pool) < p.batch_size)
    seeds = video_seeds(rng, len(rows))
    transform = video_transform(model.image_size) if p.augment else None
    chosen = [pool[int(i)] for i in rows]
    scores = [v.score for v in chosen]
    weights = video_weights(
        scores,
        [data.centering(v.category) for v in chosen],
        ignore_video_weight=not p.noise_weighting,
    )  # (B,)
    videos = []
    for b, (video, seed) in enumerate(zip(chosen, seeds, strict=True)):
        frames = data.frames(video)  # (T, 3, H, W) uint8
        if len(frames) < MIN_FRAMES:
            frames = frames[torch.arange(MIN_FRAMES).clamp(max=max(len(frames) - 1, 0))]
            weights[b] = 0.0
        if transform is not None:
            frames = augment_video(frames, seed, transform)
        videos.append(normalize(frames).to(pipeline.device()))
    index = model.category_index
    return Batch(videos, [index[v.category] for v in chosen], weights)


def batch_loss(
    model: ClipClassifier, wrapped: torch.nn.Module, batch: Batch, p: TrainParams
) -> tuple[Tensor, PseudoLabels]:
    """Pseudo-labels from ``model`` (no gradient, all frames), then the multi-task loss of the
    selected frames through ``wrapped`` (the DDP wrapper, so gradients are averaged)."""
    labels = pseudo_labels(
        model,
        batch.videos,
        batch.categories,
        constraint=p.constraint,
        max_distance=p.max_distance,
        kappa=p.kappa,
    )
    state, action = wrapped(gather_frames(batch.videos, labels))  # (B*F, 2K+1), (B*F, K+1)
    return multitask_loss(state, action, labels, batch.weights), labels


def train_model(
    p: TrainParams,
    data: ChangeItData,
    names: Sequence[str],
    checkpoint: str | Path | None = None,
    *,
    stop_at: int | None = None,
    desc: str = "train",
) -> tuple[ClipClassifier, History]:
    """Train one model on the categories ``names`` (its K) with the videos of those categories,
    resuming from ``checkpoint`` if it holds one. ``stop_at``: return after that many steps as
    if the job had been killed there (tests; a time-limited job), the schedule unchanged."""
    rank, world = distributed()
    model = new_model(p, names).to(pipeline.device()).train()
    pool = [v for v in data.train if v.category in set(names)]
    if not pool:
        raise ValueError(
            f"no training videos for {list(names)} under {data.video_root} ({data.train.skipped})"
        )
    optimizers = Optimizers(
        make_optimizers(
            model,
            p.train_backbone,
            lr=p.lr,
            momentum=p.momentum,
            weight_decay=p.weight_decay,
            lr_backbone=p.lr_backbone,
            weight_decay_backbone=p.weight_decay_backbone,
        )
    )
    ckpt = Checkpoint(checkpoint) if checkpoint else None
    start, history = ckpt.load(model, optimizers) if ckpt and ckpt.exists() else (0, History())
    if ckpt and rank == 0:
        history.tensorboard(ckpt.folder, start)
    wrapped = DistributedDataParallel(model) if world > 1 else model
    schedule = LoopConfig(steps=p.steps, lr=1.0, warmup=p.warmup)  # lr_at gives the factor
    end = p.steps if stop_at is None else min(p.steps, stop_at)
    bar = tqdm(range(start, end), desc=desc, disable=rank != 0, initial=start, total=p.steps)
    for step in bar:
        factor = lr_at(step, schedule)
        optimizers.set_lr(factor)
        batch = draw_batch(model, data, pool, p, step, rank)
        loss, labels = batch_loss(model, wrapped, batch, p)
        loss.backward()
        optimizers.step()
        s1, a, s2 = labels.triple.unbind(-1)
        stats = {
            "loss": loss.item(),
            "lr": p.lr * factor,
            "weight": float(batch.weights.mean()),
            "ordered": float(((s1 < a) & (a < s2)).float().mean()),
        }
        history.log(step, stats)
        bar.set_postfix({k: f"{v:.3g}" for k, v in stats.items() if k != "lr"})
        if ckpt and rank == 0 and ((step + 1) % p.checkpoint_every == 0 or step + 1 == p.steps):
            ckpt.save(model, optimizers, step + 1, history)
    history.close()
    return model.eval(), history


def run_names(p: TrainParams, data: ChangeItData) -> list[list[str]]:
    """The category set of each model to train: all at once, or one per category."""
    return [[c] for c in data.names] if p.single_task else [data.names]


def train(
    p: TrainParams, checkpoint: str | Path | None = None, *, stop_at: int | None = None
) -> dict[str, tuple[ClipClassifier, History]]:
    """Every model of the run: ``{"": (model, history)}`` for multi-task,
    ``{category: (model, history)}`` for single-task (checkpoints in ``checkpoint/<category>``)."""
    data = pipeline.dataset(p, image_size(p))
    if data.train.skipped.count:
        print(f"training videos: kept {len(data.train)}, {data.train.skipped}")
    out = {}
    for names in run_names(p, data):
        key = names[0] if p.single_task else ""
        folder = Path(checkpoint) / key if checkpoint and key else checkpoint
        out[key] = train_model(p, data, names, folder, stop_at=stop_at, desc=f"train {key}".strip())
    return out


def image_size(p: TrainParams) -> tuple[int, int]:
    """(H, W) of the model's input, read from its config (no tower is built)."""
    size = resolve_config(p.model)["vision_cfg"].get("image_size", 224)  # open_clip's default
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def save_run(
    folder: str | Path, models: dict[str, tuple[ClipClassifier, History]], p: TrainParams
) -> Path:
    """One model folder, or one subfolder per category (single-task)."""
    folder = Path(folder)
    for key, (model, history) in models.items():
        pipeline.save(folder / key if key else folder, model, history, p)
    return folder


def main(argv: list[str] | None = None) -> None:
    """``train``: models to ``OUT/model`` (checkpoints in ``OUT/ckpt``); ``evaluate``: scores
    to ``OUT/scores.json``. Only rank 0 writes."""
    stage, p, out = launch.parse("object_states", STAGES, argv)
    rank, _ = distributed()
    if stage == "train":
        models = train(p, out / "ckpt")
        if rank == 0:
            print(f"saved {save_run(out / 'model', models, p)}")
    else:
        scores, _ = pipeline.evaluate(p.model, p)
        if rank == 0:
            (out / "scores.json").write_text(json.dumps(pipeline.scores_json(scores), indent=1))
            print(json.dumps(scores.percent()))


if __name__ == "__main__":
    main()
