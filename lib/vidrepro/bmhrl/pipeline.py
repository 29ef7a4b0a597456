"""Glue between the BMHRL notebooks' parameters and the library: data, model folders,
captioning ground-truth segments and the densevid evaluation.

A model folder holds ``bmt.json`` (the BMT config), ``vocab.json``, ``model.safetensors`` and
``history.json``; an HRL agent's folder adds ``agent.json`` and its critic
(``critic.safetensors``), so one folder is all that evaluation needs. A critic folder holds
``agent.json``, ``critic.safetensors`` and ``vocab.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_model, save_model
from tqdm.auto import tqdm

from ..data.synthetic.datasets import locate
from ..history import History
from ..metrics.captions import meteor_process
from ..metrics.densevid import score_videos, summarize, video_means
from ..paths import data_path
from ..training import step_rng
from .agent import AgentConfig, HierarchicalCaptioner, SegmentCritic
from .data import END_ID, Batch, DenseCaptions, Vocab, collate, train_sentences
from .embeddings import read_glove, train_embeddings
from .model import BMT, ModelConfig, beam_decode, greedy_decode
from .params import Data, WarmstartParams

BMT_CONFIG, AGENT_CONFIG, VOCAB, WEIGHTS = (
    "bmt.json",
    "agent.json",
    "vocab.json",
    "model.safetensors",
)
CRITIC_WEIGHTS = "critic.safetensors"
EVAL_SPLITS = ("val_1", "val_2")  # two annotators of the same videos; BMT averages the two


def dense_root(p: Data) -> Path:
    return locate("dense", p.dense_root, p.data_seed, p.data_size)


def build_vocab(p: Data, min_count: int = 1) -> Vocab:
    return Vocab.build(train_sentences(dense_root(p)), min_count)


def dataset(
    p: Data, split: str, vocab: Vocab, max_len: int | None = None, unique_segments: bool = False
) -> DenseCaptions:
    return DenseCaptions(
        dense_root(p), split, vocab, max_len=max_len, unique_segments=unique_segments
    )


def batches(ds: DenseCaptions, batch_size: int, seed: int) -> Callable[[int, int, int], Batch]:
    """``batch_fn(step, rank, world)`` for ``training.train``: each rank draws its own
    ``batch_size`` events from a generator seeded by (seed, step, rank), so a resumed run sees
    the batches an uninterrupted one would."""

    def batch_fn(step: int, rank: int, world: int) -> Batch:
        rows = step_rng(seed, step, rank).choice(len(ds), batch_size, replace=len(ds) < batch_size)
        return collate([ds[int(i)] for i in rows])

    return batch_fn


def embeddings(p: WarmstartParams, vocab: Vocab, dim: int) -> torch.Tensor | None:
    """(V, dim) word vectors: fitted to the training captions, read from GloVe, or None
    (the model's own random initialisation, trained)."""
    if p.embeddings == "random":
        return None
    if p.embeddings == "glove":
        if not p.glove_path:
            raise ValueError("embeddings: glove needs glove_path (a GloVe .txt file)")
        matrix, found = read_glove(data_path(p.glove_path), vocab, dim, seed=p.seed)
        print(f"GloVe: {found} of {len(vocab)} words found")
    else:
        matrix = train_embeddings(train_sentences(dense_root(p)), vocab, dim, seed=p.seed)
    return torch.from_numpy(matrix)


def new_bmt(p: WarmstartParams, vocab: Vocab) -> BMT:
    cfg = ModelConfig.named(p.model, vocab_size=len(vocab), modalities=p.modalities)
    torch.manual_seed(p.seed)
    model = BMT(cfg)
    matrix = embeddings(p, vocab, cfg.d_word)
    if matrix is not None:
        model.load_embeddings(matrix, freeze=p.freeze_embeddings)
    return model


# --- folders -------------------------------------------------------------------------------------


def save(
    folder: Path,
    model: BMT | HierarchicalCaptioner,
    vocab: Vocab,
    history: History,
    critic: SegmentCritic | None = None,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    bmt = model.bmt if isinstance(model, HierarchicalCaptioner) else model
    bmt.cfg.to_json(folder / BMT_CONFIG)
    if isinstance(model, HierarchicalCaptioner):
        model.cfg.to_json(folder / AGENT_CONFIG)
        save_model(critic, str(folder / CRITIC_WEIGHTS))
    vocab.save(folder / VOCAB)
    save_model(model, str(folder / WEIGHTS))
    history.save(folder)
    return folder


def _require(folder: Path, name: str, what: str) -> Path:
    if not (folder / name).exists():
        raise FileNotFoundError(f"{folder}: not a {what} folder (no {name})")
    return folder / name


def load(folder: str | Path) -> tuple[BMT | HierarchicalCaptioner, Vocab, SegmentCritic | None]:
    """(model, vocab, critic): a warm-started BMT (critic None) or an HRL agent."""
    folder = Path(folder)
    bmt = BMT(ModelConfig.from_json(_require(folder, BMT_CONFIG, "BMHRL model")))
    vocab = Vocab.load(folder / VOCAB)
    model: BMT | HierarchicalCaptioner = bmt
    critic = None
    if (folder / AGENT_CONFIG).exists():
        cfg = AgentConfig.from_json(folder / AGENT_CONFIG)
        model = HierarchicalCaptioner(bmt, cfg)
        critic = SegmentCritic.from_config(cfg, len(vocab))
        load_model(critic, str(folder / CRITIC_WEIGHTS))
    load_model(model, str(folder / WEIGHTS))
    return model.eval(), vocab, critic


def load_or_new(
    model: str, p: Data
) -> tuple[BMT | HierarchicalCaptioner, Vocab, SegmentCritic | None]:
    """A saved model folder, or a config name: an untrained BMT (with the caption-fitted
    embeddings) on this data's vocabulary, so every notebook also runs on its own."""
    if (Path(model) / BMT_CONFIG).exists():
        return load(model)
    vocab = build_vocab(p)
    data = {k: getattr(p, k) for k in Data.model_fields}
    untrained = WarmstartParams(model=model, steps=0, lr=1.0, batch_size=1, **data)
    return new_bmt(untrained, vocab), vocab, None


def save_critic(
    folder: Path, critic: SegmentCritic, cfg: AgentConfig, vocab: Vocab, history: History
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    cfg.to_json(folder / AGENT_CONFIG)
    save_model(critic, str(folder / CRITIC_WEIGHTS))
    vocab.save(folder / VOCAB)
    history.save(folder)
    return folder


def load_critic(
    folder: str | Path, p: Data | None = None
) -> tuple[SegmentCritic, AgentConfig, Vocab]:
    """A critic folder; with ``p``, an empty name gives an untrained critic (standalone runs)."""
    if p is not None and not str(folder):
        cfg, vocab = AgentConfig(), build_vocab(p)
        return SegmentCritic.from_config(cfg, len(vocab)).eval(), cfg, vocab
    folder = Path(folder)
    cfg = AgentConfig.from_json(_require(folder, AGENT_CONFIG, "segment critic"))
    vocab = Vocab.load(folder / VOCAB)
    critic = SegmentCritic.from_config(cfg, len(vocab))
    load_model(critic, str(folder / CRITIC_WEIGHTS))
    return critic.eval(), cfg, vocab


# --- captioning and evaluation -------------------------------------------------------------------


@torch.no_grad()
def caption(
    model: BMT | HierarchicalCaptioner,
    critic: SegmentCritic | None,
    batch: Batch,
    beam_size: int = 1,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Word ids (B, T) of a batch's segments, and for an agent the segment id of every word
    (B, T) (where the manager set a new goal). BMT decodes greedily or with a beam; the agent
    greedily with its mean goals."""
    model.eval()
    memory = model.encode(batch.video, batch.video_mask, batch.audio, batch.audio_mask)
    if isinstance(model, HierarchicalCaptioner):
        out = model.rollout(memory, critic, greedy=True)
        return out.tokens, out.segment_ids
    if beam_size > 1:
        return beam_decode(model, memory, beam_size), None
    return greedy_decode(model, memory), None


def caption_segments(
    model, critic, vocab: Vocab, ds: DenseCaptions, beam_size: int = 1, batch_size: int = 32
) -> tuple[dict[str, list[dict]], list[dict]]:
    """densevid predictions ``{video: [{"timestamp": [s, e], "sentence": str}]}`` for every
    segment of ``ds``, and one record per segment (with the goal switches, for timelines)."""
    predictions: dict[str, list[dict]] = {}
    records = []
    for start in tqdm(range(0, len(ds), batch_size), desc=f"captioning {ds.split}", leave=False):
        batch = collate([ds[i] for i in range(start, min(start + batch_size, len(ds)))])
        tokens, segment_ids = caption(model, critic, batch, beam_size)
        for i, (vid, (s, e)) in enumerate(zip(batch.video_ids, batch.segments)):
            sentence = vocab.decode(tokens[i])
            predictions.setdefault(vid, []).append({"timestamp": [s, e], "sentence": sentence})
            ids = tokens[i].tolist()
            n = ids.index(END_ID) if END_ID in ids else len(ids)  # the words before the end
            words = [vocab.itos[t] for t in ids[:n]]
            switches = (
                []
                if segment_ids is None
                else [j for j in range(1, n) if segment_ids[i, j] != segment_ids[i, j - 1]]
            )
            records.append(
                {
                    "video": vid,
                    "start": s,
                    "end": e,
                    "sentence": sentence,
                    "reference": batch.sentences[i],
                    "words": words,
                    "goal_switches": switches,
                }
            )
    return predictions, records


def evaluate(
    model, critic, vocab: Vocab, p: Data, tious: list[float], beam_size: int = 1
) -> tuple[dict[str, float], list[dict], list[dict]]:
    """BMT's ground-truth-proposal protocol: caption each annotation set's own segments and
    score them against that set (densevid_eval), then average val_1 and val_2; one METEOR
    process scores both. Returns the averaged scores (plus ``<metric>/<split>``), the
    per-segment records, and per-video scores for ``runs.log_items`` (``average_splits``: their
    weighted means are the averaged scores)."""
    per_split, per_video, records = {}, {}, []
    with meteor_process() as meteor:
        for split in EVAL_SPLITS:
            ds = dataset(p, split, vocab, unique_segments=True)
            predictions, recs = caption_segments(model, critic, vocab, ds, beam_size)
            videos = score_videos(ds.references(), predictions, tious=tious, meteor=meteor)
            per_split[split], per_video[split] = summarize(videos), video_means(videos)
            records += [{**r, "split": split} for r in recs]
    names = [k for k in per_split[EVAL_SPLITS[0]] if "@" not in k]
    scores = {k: float(np.mean([per_split[s][k] for s in EVAL_SPLITS])) for k in names}
    scores |= {f"{k}/{s}": per_split[s][k] for s in EVAL_SPLITS for k in names}
    return scores, records, average_splits(per_video)


def average_splits(per_split: dict[str, dict[str, dict[str, float]]]) -> list[dict]:
    """One row per video from ``{split: {video: {metric: score}}}``, with a ``weight``, such
    that the weighted mean of each metric over the rows is the mean over splits of each
    split's mean over its videos (how ``evaluate`` averages val_1 and val_2).

    A video counts 1 / (videos in the split) in each split holding it: its weight is the sum
    of those, its score their weighted mean. Weights are scaled to average 1, so where every
    split holds the same videos each weight is 1 and a row is the plain mean of its splits;
    where they differ (ActivityNet's val_1 and val_2 do, a little) a video in one split only
    keeps that split's score and its own weight. One row per video, not per (split, video):
    the two annotations of a video are the same test item."""
    sizes = {s: len(videos) for s, videos in per_split.items()}
    if not sizes or not all(sizes.values()):
        raise ValueError("average_splits needs at least one split and one video per split")
    videos = list(dict.fromkeys(v for by_video in per_split.values() for v in by_video))
    holders = {v: [s for s in per_split if v in per_split[s]] for v in videos}
    raw = {v: sum(1.0 / sizes[s] for s in holders[v]) for v in videos}
    scale = len(videos) / sum(raw.values())
    rows = []
    for v in videos:
        names = per_split[holders[v][0]][v]
        scores = {n: sum(per_split[s][v][n] / sizes[s] for s in holders[v]) / raw[v] for n in names}
        rows.append({"item": str(v), "weight": raw[v] * scale, **scores})
    return rows


def timeline_rows(
    records: list[dict], references: dict[str, dict], video: str, split: str
) -> dict[str, list[tuple[float, float, str]]]:
    """The lanes of ``plots.timeline`` for one video: its references and the generated
    captions, "|" marking where the manager switched goals."""
    ref = references[video]
    generated = []
    for r in records:
        if r["video"] == video and r["split"] == split:
            words = list(r["words"])
            for j in reversed(r["goal_switches"]):
                words.insert(j, "|")
            generated.append((r["start"], r["end"], " ".join(words)))
    return {
        "reference": [(s, e, t) for (s, e), t in zip(ref["timestamps"], ref["sentences"])],
        "generated": generated,
    }
