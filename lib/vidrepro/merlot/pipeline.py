"""Glue between the MERLOT notebooks' parameters and the library: data, model folders, the
three stages (pretraining, story ordering, QA finetuning) as calls a notebook or a script makes.

A model folder holds ``config.json``, ``params.msgpack`` (flax serialization: msgpack, no
pickle), the tokenizer and ``history.json`` (training curves).
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path

import jax
import numpy as np
from flax import serialization

from ..data.formats import merlot as merlot_format
from ..data.synthetic.datasets import locate
from ..history import History
from ..paths import data_path
from . import objectives as O
from . import story, train
from .input_pipeline import (
    Pretraining,
    Stories,
    VideoQA,
    build_tokenizer,
    encode,
    load_tokenizer,
    normalise,
)
from .models import ModelConfig, init_params
from .params import Data, FinetuneParams, PretrainParams, StoryParams

CONFIG, PARAMS = "config.json", "params.msgpack"


def roots(p: Data) -> dict[str, Path]:
    return {
        kind: locate(kind, getattr(p, f"{kind}_root"), p.data_seed, p.data_size)
        for kind in ("pretrain", "stories", "qa")
    }


def tokenizer_for(p: Data):
    """The tokenizer ``p.tokenizer`` names, else the word-level vocabulary of the pretraining
    transcripts (each segment once, read from the index: no video is decoded) and of the QA
    training questions (the words a full-scale BPE would cover anyway; no labels are involved).
    Every run on the same data, pretrained or from scratch, gets the same word ids."""
    if p.tokenizer:
        return local_tokenizer(p.tokenizer)
    transcripts = [
        s.text
        for video in merlot_format.read_segments(roots(p)["pretrain"], check_videos=False)
        for s in video.segments
    ]
    qa = [t for texts in VideoQA.texts_of(roots(p)["qa"], "train") for t in texts]
    return build_tokenizer(transcripts + qa)


def local_tokenizer(given: str):
    """``Data.tokenizer``'s file or folder; errors name the parameter, since a wrong path in a
    full-scale params file is the usual cause."""
    path = data_path(given)
    if not path.exists():
        raise FileNotFoundError(
            f"tokenizer: {path} does not exist (a tokenizer.json file or a "
            "saved tokenizer folder, relative to $VIDREPRO_DATA or absolute)"
        )
    try:
        return load_tokenizer(path)
    except Exception as e:  # tokenizers reports a malformed file as a bare Exception
        raise ValueError(
            f"tokenizer: {path} is not a usable tokenizer.json file or saved tokenizer folder: {e}"
        ) from e


def new_model(name: str, tokenizer, hw: tuple[int, int], precision: str = "fp32", seed: int = 0):
    """A config (vocabulary sized to the tokenizer) and freshly initialised parameters."""
    base = ModelConfig.named(name)
    cfg = replace(
        base,
        vocab_size=-(-len(tokenizer) // 64) * 64,
        image_size=hw,
        dtype="bfloat16" if precision == "bf16" else base.dtype,
    )
    return cfg, jax.jit(partial(init_params, cfg))(jax.random.key(seed))


def save(folder: Path, cfg: ModelConfig, params, tokenizer, history: History) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG).write_text(cfg.to_json())
    (folder / PARAMS).write_bytes(
        serialization.msgpack_serialize(jax.tree_util.tree_map(np.asarray, jax.device_get(params)))
    )
    tokenizer.save_pretrained(folder)
    history.save(folder)
    return folder


def load(folder: str | Path):
    """(config, parameters, tokenizer) of a saved model folder."""
    from transformers import PreTrainedTokenizerFast

    folder = Path(folder)
    if not (folder / CONFIG).exists():
        raise FileNotFoundError(f"{folder}: not a MERLOT model folder (no {CONFIG})")
    cfg = ModelConfig.from_json((folder / CONFIG).read_text())
    params = serialization.msgpack_restore((folder / PARAMS).read_bytes())
    return cfg, params, PreTrainedTokenizerFast.from_pretrained(folder)


def load_or_new(model: str, p: Data):
    """A saved model folder, or a config name: random weights with the tokenizer a pretraining
    run on this data would build (the scratch row; and any notebook can run on its own)."""
    if Path(model, CONFIG).exists():
        return load(model)
    tokenizer = tokenizer_for(p)
    cfg, params = new_model(model, tokenizer, p.frame_hw, seed=p.seed)
    return cfg, params, tokenizer


# --- stages ----------------------------------------------------------------------------------


def objectives(p: PretrainParams) -> O.Objectives:
    return O.Objectives(
        contrastive=p.contrastive_weight,
        mlm=p.mlm_weight,
        temporal=p.temporal_weight,
        temperature=p.temperature,
        mask_rate=p.mask_rate,
        shuffle_prob=p.shuffle_prob,
        shuffle_counts=tuple(p.shuffle_counts),
    )


def optim(p) -> train.OptimConfig:
    return train.OptimConfig(steps=p.steps, lr=p.lr, warmup=p.warmup, weight_decay=p.weight_decay)


def pretrain(p: PretrainParams, data: Pretraining, checkpoint: Path | None):
    """(config, params, tokenizer, history) after ``p.steps`` steps of the chosen objectives."""
    tokenizer = tokenizer_for(p)
    cfg, params = new_model(p.model, tokenizer, p.frame_hw, p.precision, p.seed)
    tx = train.optimizer(optim(p))
    loss = partial(train.pretrain_losses, cfg=cfg, obj=objectives(p))
    batches = partial(_pretrain_batch, data, tokenizer, p, cfg.text_len)
    state, hist = train.fit(
        train.create_state(params, tx),
        loss,
        tx,
        batches,
        p.steps,
        seed=p.seed,
        checkpoint=checkpoint,
        fsdp=p.fsdp,
        checkpoint_every=p.checkpoint_every,
        desc="pretrain",
    )
    return cfg, state.params, tokenizer, hist


def retrieval(model, data: Pretraining, stories: Stories, limit: int = 100) -> dict[str, float]:
    """Caption-to-image recall@1 of the contrastive heads, pools of ``limit`` x segments images:
    on pretraining videos (one group each, seen in training) and on stories (never seen). A
    high first and a chance second is a model that memorised its videos."""
    cfg, params, tokenizer = model
    seen = data.firsts[:limit]
    out = {}
    for name, frames, texts in (
        ("seen", data.frames[seen], [data.texts[i] for i in seen]),
        ("unseen", stories.frames[:limit], stories.texts[:limit]),
    ):
        text = np.stack([encode(tokenizer, t, cfg.text_len) for t in texts])
        out[f"recall_{name}"] = story.recall_at_1(params, normalise(frames), text, cfg)
        out[f"chance_{name}"] = 1 / text.shape[0] / text.shape[1]
    return out


def _pretrain_batch(data, tokenizer, p, text_len, step):
    return data.batch(tokenizer, step, p.batch_size, text_len, p.seed)


def order_stories(p: StoryParams, stories: Stories, model=None) -> np.ndarray:
    """Predicted orders (N, 5) of the stories, by ``p.method``. The images are presented in a
    random order first (and the answer mapped back), so a model that cannot tell orders apart
    gets chance, not the identity that ties would otherwise fall to."""
    rng = np.random.default_rng(p.seed)
    n, s = len(stories.ids), stories.frames.shape[1]
    if p.method == "random":
        return story.random_orders(n, s, p.seed)
    cfg, params, tokenizer = model
    shown = np.stack([rng.permutation(s) for _ in range(n)])  # (N, S) original image ids
    frames = normalise(np.take_along_axis(stories.frames, shown[:, :, None, None, None], 1))
    text = np.stack([encode(tokenizer, t, cfg.text_len) for t in stories.texts])
    if p.method == "merlot":
        order = story.merlot_orders(params, frames, text, cfg, p.seed, p.assignments)
    else:
        order = story.contrastive_orders(params, frames, text, cfg)
    return np.take_along_axis(shown, order, 1)  # back to the original image ids


# Compiled once per config and shape, not once per evaluation (finetuning evaluates often).
_qa_logits = jax.jit(train.qa_logits, static_argnames=("cfg",))


def qa_predictions(
    params, cfg: ModelConfig, tokenizer, qa: VideoQA, question_segments: int, batch_size: int = 32
) -> np.ndarray:
    """The chosen answer (N,) of every question."""
    out = []
    for start in range(0, len(qa.answers), batch_size):
        rows = np.arange(start, min(start + batch_size, len(qa.answers)))
        batch = qa.batch(tokenizer, rows, cfg.text_len, question_segments)
        out.append(np.asarray(_qa_logits(params, batch, cfg)).argmax(-1))
    return np.concatenate(out)


def qa_accuracy(params, cfg: ModelConfig, tokenizer, qa: VideoQA, question_segments: int) -> float:
    chosen = qa_predictions(params, cfg, tokenizer, qa, question_segments)
    return float((chosen == qa.answers).mean())


def qa_items(qa: VideoQA, chosen: np.ndarray, blanked_chosen: np.ndarray) -> list[dict]:
    """Per-question scores for ``runs.log_items``: ``item`` (the question's ``qid``),
    ``accuracy`` and ``blanked_accuracy`` (1.0 if the chosen answer, with the frames or with
    every frame black, is the right one, else 0.0), whose means are the logged accuracies."""
    if qa.ids is None:
        raise ValueError("per-question scores need the questions' ids (VideoQA.load sets them)")
    if not len(chosen) == len(blanked_chosen) == len(qa.answers) == len(qa.ids):
        raise ValueError(
            f"{len(qa.answers)} questions but {len(chosen)} and "
            f"{len(blanked_chosen)} chosen answers"
        )
    right = np.asarray(chosen) == qa.answers
    right_blind = np.asarray(blanked_chosen) == qa.answers
    return [
        {"item": qid, "accuracy": float(a), "blanked_accuracy": float(b)}
        for qid, a, b in zip(qa.ids, right, right_blind)
    ]


def finetune_qa(p: FinetuneParams, checkpoint: Path | None):
    """(config, params, tokenizer, history) after finetuning on the QA training split; the
    history has validation accuracy every ``p.eval_every`` steps."""
    qa_root = roots(p)["qa"]
    train_qa = VideoQA.load(qa_root, "train", p.segments, p.segment_seconds, p.frame_hw)
    val_qa = VideoQA.load(qa_root, "val", p.segments, p.segment_seconds, p.frame_hw)
    cfg, params, tokenizer = load_or_new(p.init, p)
    tx = train.optimizer(optim(p))
    state, hist = train.fit(
        train.create_state(params, tx),
        partial(train.qa_losses, cfg=cfg),
        tx,
        partial(_qa_batch, train_qa, tokenizer, p, cfg.text_len),
        p.steps,
        seed=p.seed,
        checkpoint=checkpoint,
        checkpoint_every=p.checkpoint_every,
        fsdp=p.fsdp,
        desc="finetune QA",
        evaluate=lambda params: {
            "accuracy": qa_accuracy(params, cfg, tokenizer, val_qa, p.question_segments)
        },
        eval_every=p.eval_every,
    )
    return cfg, state.params, tokenizer, hist


def _qa_batch(qa: VideoQA, tokenizer, p: FinetuneParams, text_len: int, step: int) -> dict:
    rows = np.random.default_rng([p.seed, step]).choice(len(qa.answers), p.batch_size)
    return qa.batch(tokenizer, rows, text_len, p.question_segments)
