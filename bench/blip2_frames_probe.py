"""What the tiny video BLIP-2 can see of the synthetic captioning clips: three measurements.

1. Frame order. The paper concatenates every frame's ViT tokens and adds no temporal embedding,
   so the Q-Former's cross-attention reads a set: a clip's visual prefix equals that of its
   frames shuffled (checked on the tiny model; the difference left is float rounding). Most of
   the world's events read as another event backwards (grows / shrinks, moves left / right,
   up / down, appears / disappears, turns blue from red / red from blue); bounces and splits do
   not. Counted on the test clips' scripts: the share of events whose time-reversed twin is an
   event the training clips hold, which a reader of a set of frames cannot tell apart.
2. The bar for naming events. ``events_named`` (``blip2_video.pipeline``) is the F1 of the event
   kinds a caption names against its clip's first reference. A caption that ignores the clip can
   still score: the best constant list of up to three kinds, chosen on the train split, is
   scored on test. A captioner recognises events only where it beats that.
3. Shape and colour in the tiny ViT. Ridge probes (strength picked on the last 20% of the
   training photos) on the frozen ViT's features (class token with the mean, or the maximum, of
   the patch tokens) of single-object photos from the images kind, predicting the object's
   shape and colour, for the ViT left random, pretrained as ``01_pretrain`` does (contrastive,
   same steps and batch) and trained on the shape labels themselves (through either pool); then
   a small CNN trained on the same labels, as the measure of what the pixels hold.

4. With ``--model`` (a finetuned model folder, e.g. ``02_finetune``'s ``model`` output): how much
   the model reads the clip at all, as the test references' loss under their own clip's frames
   against under the frames of the next clip in the split (a different scene): a model that
   reads only the language prior scores the two alike.

Fixed seeds: every number repeats on the same machine. Six to twelve minutes on 2 cores.

    python bench/blip2_frames_probe.py [--model runs/tiny/blip2_video/02_finetune/<key>/model]
"""

from __future__ import annotations

import argparse
import copy
import itertools
import re
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))  # runnable from a checkout without installing

from vidrepro.blip2_video import build, pipeline  # noqa: E402
from vidrepro.blip2_video import train as blip2_train  # noqa: E402
from vidrepro.blip2_video.params import FinetuneParams, PretrainParams  # noqa: E402
from vidrepro.data.synthetic import language  # noqa: E402
from vidrepro.data.synthetic.datasets import SIZES, caption_scripts  # noqa: E402
from vidrepro.data.synthetic.language import SHAPE_WORDS, event_kinds  # noqa: E402
from vidrepro.data.synthetic.world import COLOURS  # noqa: E402
from vidrepro.training import LoopConfig  # noqa: E402

SEED = 0
# What each event looks like played backwards; bounces read the same, a split has no twin.
BACKWARDS = {
    "grow": "shrink",
    "shrink": "grow",
    "appear": "disappear",
    "disappear": "appear",
    "move_left": "move_right",
    "move_right": "move_left",
    "move_up": "move_down",
    "move_down": "move_up",
}
RIDGE = (0.1, 1.0, 10.0, 100.0, 1000.0)
SHAPE_STEPS = 800


def order_invariance(model: blip2_train.VideoBlip2) -> tuple[float, float]:
    """Largest change of the visual prefix when 8 frames are reversed or shuffled, and the
    prefix's mean magnitude for scale."""
    g = torch.Generator().manual_seed(SEED)
    frames = torch.randn(4, 8, 3, 64, 64, generator=g)
    model.eval()
    with torch.no_grad():
        a = model.visual_prefix(frames)
        moved = max(
            (a - model.visual_prefix(frames.flip(1))).abs().max().item(),
            (a - model.visual_prefix(frames[:, torch.randperm(8, generator=g)])).abs().max().item(),
        )
    return moved, a.abs().mean().item()


def _backwards(scene, event) -> tuple[str, str | None] | None:
    """``event`` played backwards as (kind, new colour), or None if it has no twin."""
    if event.kind == "change_colour":
        before = language.colour_at(scene, event.obj, event.start)
        return ("change_colour", before)
    return (BACKWARDS[event.kind], None) if event.kind in BACKWARDS else None


def event_shares() -> tuple[float, float]:
    """Share of the test clips' events that read as another event backwards (one that the
    training clips hold: a reader of frames as a set cannot tell the two apart), and of the
    test clips holding at least one such event."""
    scripts = list(caption_scripts(SEED, SIZES["tiny"]))
    held = {
        (e.kind, e.arg) for split, _, scene, _ in scripts if split == "train" for e in scene.events
    }
    events = clips = reversible = reversible_clips = 0
    for split, _, scene, _ in scripts:
        if split != "test":
            continue
        twins = [_backwards(scene, e) in held for e in scene.events]
        events += len(twins)
        reversible += sum(twins)
        clips += 1
        reversible_clips += any(twins)
    return reversible / events, reversible_clips / clips


def _f1(said: list[str], truth: list[str]) -> float:
    a, b = Counter(said), Counter(truth)
    return 2 * sum((a & b).values()) / max(len(said) + len(truth), 1)


def constant_caption() -> tuple[tuple[str, ...], float, float]:
    """The constant list of event kinds (up to three) with the best mean F1 on the train
    split's first references; its F1 on train and on test."""
    truths: dict[str, list[list[str]]] = {"train": [], "test": []}
    for split, _, _, refs in caption_scripts(SEED, SIZES["tiny"]):
        if split in truths:
            truths[split].append(event_kinds(refs[0]))
    kinds = sorted({k for t in truths["train"] for k in t})
    score = lambda combo, split: float(np.mean([_f1(list(combo), t) for t in truths[split]]))
    best = max(
        (c for n in (1, 2, 3) for c in itertools.combinations_with_replacement(kinds, n)),
        key=lambda c: score(c, "train"),
    )
    return best, score(best, "train"), score(best, "test")


def single_object_photos(images) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """(N, 1, 3, S, S) photos of the image corpus holding one object, with its shape and colour
    indices."""
    words = sorted(((w, s) for s, ws in SHAPE_WORDS.items() for w in ws), key=lambda x: -len(x[0]))
    seen, frames, shapes, colours = set(), [], [], []
    for i, e in enumerate(images.entries):
        if e.video in seen or " and " in e.caption:
            continue
        seen.add(e.video)
        shapes.append(
            sorted(SHAPE_WORDS).index(
                next(s for w, s in words if re.search(rf"\b{w}\b", e.caption))
            )
        )
        colours.append(
            sorted(COLOURS).index(next(c for c in COLOURS if re.search(rf"\b{c}\b", e.caption)))
        )
        frames.append(images[i][0])
    return torch.stack(frames), np.array(shapes), np.array(colours)


@torch.no_grad()
def vit_features(vit: nn.Module, x: torch.Tensor, pool: str) -> np.ndarray:
    """Class token with the mean (``pool="mean"``) or the maximum (``"max"``) of the patch
    tokens: a small object covers a few of the 64 patches, and a mean dilutes it where the
    Q-Former's cross-attention can pick those patches out."""
    vit.eval()
    out = []
    for start in range(0, len(x), 256):
        h = vit(pixel_values=x[start : start + 256].flatten(0, 1)).last_hidden_state
        patches = h[:, 1:].mean(1) if pool == "mean" else h[:, 1:].max(1).values
        out.append(torch.cat([h[:, 0], patches], -1))
    return torch.cat(out).numpy().astype(np.float64)


def probe_line(name: str, vit: nn.Module, x: torch.Tensor, shapes, colours, n_train: int) -> str:
    scores = []
    for pool in ("mean", "max"):
        feats = vit_features(vit, x, pool)
        scores.append(
            f"{pool} of patches: shape {ridge_accuracy(feats, shapes, n_train):.3f}, "
            f"colour {ridge_accuracy(feats, colours, n_train):.3f}"
        )
    return f"{name}: " + "; ".join(scores)


def ridge_accuracy(x: np.ndarray, y: np.ndarray, n_train: int) -> float:
    """Held-out accuracy of a one-hot ridge probe, strength picked on the last 20% of train."""
    x = (x - x[:n_train].mean(0)) / (x[:n_train].std(0) + 1e-6)
    x = np.concatenate([x, np.ones((len(x), 1))], 1)
    onehot = np.eye(y.max() + 1)[y]

    def fit(rows: slice, lam: float) -> np.ndarray:
        a = x[rows]
        return np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ onehot[rows])

    fit_end = int(n_train * 0.8)
    lam = max(
        RIDGE,
        key=lambda r: (
            (x[fit_end:n_train] @ fit(slice(0, fit_end), r)).argmax(1) == y[fit_end:n_train]
        ).mean(),
    )
    return float(((x[n_train:] @ fit(slice(0, n_train), lam)).argmax(1) == y[n_train:]).mean())


def supervised(
    net: nn.Module,
    head: nn.Module,
    x: torch.Tensor,
    y: np.ndarray,
    n_train: int,
    steps: int = SHAPE_STEPS,
) -> float:
    """Train ``net`` + ``head`` on shape labels (Adam 1e-3, batch 32); held-out accuracy."""
    labels = torch.as_tensor(y)
    opt = torch.optim.Adam([*net.parameters(), *head.parameters()], 1e-3)
    g = torch.Generator().manual_seed(SEED)
    net.train()
    for _ in range(steps):
        idx = torch.randint(0, n_train, (32,), generator=g)
        loss = nn.functional.cross_entropy(head(net(x[idx])), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        return (head(net(x[n_train:])).argmax(-1) == labels[n_train:]).float().mean().item()


class _VitPool(nn.Module):
    def __init__(self, vit: nn.Module, pool: str):
        super().__init__()
        self.vit, self.pool = vit, pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.vit(pixel_values=x.flatten(0, 1)).last_hidden_state[:, 1:]
        return patches.mean(1) if self.pool == "mean" else patches.max(1).values


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(0, 1),
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
    )


def own_and_other_frames(folder: str, p: FinetuneParams) -> tuple[float, float]:
    """The test references' loss per token under their own clip's frames, and under the next
    clip's frames (each clip's references paired with its neighbour's video)."""
    model = pipeline.load(folder, p).eval()
    clips = pipeline.videos(p, "test", p.num_frames, train=False)
    other = copy.copy(clips)
    other.refs = {i: clips.refs[j] for i, j in zip(clips.ids, clips.ids[1:] + clips.ids[:1])}
    return pipeline.caption_loss(model, clips), pipeline.caption_loss(model, other)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="", help="a finetuned model folder to read (4.)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    p = PretrainParams(
        **yaml.safe_load((ROOT / "params/blip2_video/tiny/01_pretrain.yaml").read_text())
    )
    t0 = time.perf_counter()

    images = pipeline.images(p)
    clips = pipeline.videos(p, "train", 1, train=True)
    tokenizer = pipeline.build_tokenizer(
        [e.caption for e in images.entries], [e.caption for e in clips.entries]
    )

    def fresh() -> blip2_train.VideoBlip2:
        torch.manual_seed(SEED)
        return build.from_config(p.model, tokenizer)

    moved, scale = order_invariance(fresh())
    event_share, clip_share = event_shares()
    print(
        f"frame order: the visual prefix moves by at most {moved:.1e} when 8 frames are "
        f"reversed or shuffled (its mean magnitude {scale:.2f})"
    )
    print(
        f"test clips: {event_share:.0%} of the events read as another event backwards; "
        f"{clip_share:.0%} of the clips hold at least one"
    )
    combo, train_f1, test_f1 = constant_caption()
    print(
        f"constant caption naming {', '.join(combo)}: events named {test_f1:.3f} on test "
        f"({train_f1:.3f} on train, where it was chosen)"
    )

    x, shapes, colours = single_object_photos(images)
    n_train = int(len(x) * 0.8)
    print(
        f"{len(x)} single-object photos ({n_train} to fit, {len(x) - n_train} held out), "
        f"chance {np.bincount(shapes).max() / len(shapes):.2f} for shape"
    )
    print(
        probe_line("ViT, random weights", fresh().blip2.vision_model, x, shapes, colours, n_train)
    )
    model = fresh()
    blip2_train.pretrain_vision(
        model,
        images,
        LoopConfig(steps=p.vit_steps, lr=p.vit_lr, warmup=p.vit_steps // 10),
        2 * p.batch_size,
        p.seed,
    )
    name = f"ViT, pretrained as 01_pretrain ({p.vit_steps} contrastive steps)"
    print(probe_line(name, model.blip2.vision_model, x, shapes, colours, n_train))
    for pool in ("mean", "max"):
        vit = fresh().blip2.vision_model
        torch.manual_seed(SEED)
        head = nn.Linear(vit.config.hidden_size, 4)
        acc = supervised(_VitPool(vit, pool), head, x, shapes, n_train)
        print(
            f"ViT trained on the shape labels ({SHAPE_STEPS} steps, {pool} of patches): shape {acc:.3f}"
        )
    torch.manual_seed(SEED)
    acc = supervised(small_cnn(), nn.Linear(64, 4), x, shapes, n_train)
    print(f"3-layer CNN trained on the shape labels ({SHAPE_STEPS} steps): shape {acc:.3f}")
    if args.model:
        fp = FinetuneParams(
            **yaml.safe_load((ROOT / "params/blip2_video/tiny/02_finetune.yaml").read_text())
        )
        own, other = own_and_other_frames(args.model, fp)
        print(
            f"{args.model}: test references' loss {own:.3f} with their own clip's frames, "
            f"{other:.3f} with the next clip's ({fp.num_frames} frames)"
        )
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
