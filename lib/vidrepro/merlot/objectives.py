"""MERLOT's three pretraining objectives, as pure functions of the model's outputs.

Every function sees the *global* batch: under ``jax.jit`` with the batch sharded over a mesh's
``data`` axis, XLA gathers what a device needs, so the contrastive loss's negatives come from all
devices (the TF release did an explicit all-gather) and nothing here knows about devices.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

PAD, MASK, START = 0, 3, 4  # token ids (input_pipeline: word-level or a renumbered BPE)
SPECIAL_IDS = 5  # ids below this are never masked or drawn as random replacements
DIFFERENT, SAME, BEFORE, AFTER = 0, 1, 2, 3  # classes of the pairwise temporal heads


@dataclass(frozen=True)
class Objectives:
    """Which losses train, and their knobs (the paper's values by default)."""

    contrastive: float = 0.25
    mlm: float = 1.0
    temporal: float = 1.0
    temperature: float = 0.05
    mask_rate: float = 0.2
    attended_share: float = 0.5  # of masked positions drawn from the most-attended 20%
    shuffle_prob: float = 0.4
    shuffle_counts: tuple[int, ...] = (2, 3, 4)


# --- contrastive frame-transcript matching ---------------------------------------------------


def contrastive_loss(text_emb, frame_emb, temperature: float):
    """Symmetric InfoNCE between every segment's text and its frame: (B, S, D) each, unit norm;
    all other segments in the batch (of this video and the others) are negatives."""
    t = text_emb.reshape(-1, text_emb.shape[-1]).astype(jnp.float32)  # (N, D)
    f = frame_emb.reshape(-1, frame_emb.shape[-1]).astype(jnp.float32)
    logits = t @ f.T / temperature  # (N, N)
    labels = jnp.arange(t.shape[0])
    return 0.5 * (
        optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        + optax.softmax_cross_entropy_with_integer_labels(logits.T, labels).mean()
    )


# --- attention-masked language modelling -----------------------------------------------------


def choose_masked(rng, text, received, cfg: Objectives):
    """Positions to mask (B, S, L) bool: ``mask_rate`` of each example's ordinary tokens, a share
    of them among the 20% the text-only pass attends to most (the words that carry the
    content), the rest uniformly, each chosen start extended SpanBERT-style by 0-2 tokens."""
    b = text.shape[0]
    flat = text.reshape(b, -1)  # (B, N)
    ordinary = flat >= SPECIAL_IDS
    n = ordinary.sum(-1, keepdims=True)  # (B, 1)
    attn = jnp.where(ordinary, received.reshape(b, -1), -jnp.inf)
    cutoff = -jnp.sort(-attn, axis=-1)[jnp.arange(b), jnp.maximum(n[:, 0] // 5 - 1, 0)]
    top = ordinary & (attn >= cutoff[:, None])
    k_u, k_a, k_s = jax.random.split(rng, 3)
    budget = jnp.floor(n * cfg.mask_rate / 1.5).astype(jnp.int32)  # starts; spans average 1.5
    from_top = jnp.round(budget * cfg.attended_share).astype(jnp.int32)
    starts = _pick(k_a, top, from_top)
    starts |= _pick(k_u, ordinary & ~starts, budget - from_top)
    extra = jax.random.choice(k_s, 3, flat.shape, p=jnp.array([0.6, 0.3, 0.1]))  # 0, 1, 2 more
    spans = starts
    for shift in (1, 2):
        grown = jnp.pad(starts & (extra >= shift), ((0, 0), (shift, 0)))[:, :-shift]
        spans |= grown & ordinary
    return spans.reshape(text.shape)


def _pick(rng, allowed, count):
    """``count`` (B, 1) random positions among ``allowed`` (B, N) per row."""
    keys = jnp.where(allowed, jax.random.uniform(rng, allowed.shape), 2.0)
    rank = jnp.argsort(jnp.argsort(keys, axis=-1), axis=-1)
    return allowed & (rank < count)


def corrupt(rng, text, masked, vocab_size: int):
    """BERT's 80/10/10: masked positions become MASK, a random word, or stay."""
    k_choice, k_word = jax.random.split(rng)
    u = jax.random.uniform(k_choice, text.shape)
    random_words = jax.random.randint(k_word, text.shape, SPECIAL_IDS, vocab_size)
    out = jnp.where(masked & (u < 0.8), MASK, text)
    return jnp.where(masked & (u >= 0.8) & (u < 0.9), random_words, out)


def mlm_loss(logits, text, masked):
    """Cross-entropy on the masked positions only: logits (B, S, L, V), text/masked (B, S, L)."""
    ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), text)
    return (ce * masked).sum() / jnp.maximum(masked.sum(), 1)


# --- temporal reordering -----------------------------------------------------------------------


def shuffle_indices(rng, batch: int, segments: int, offset: int, cfg: Objectives):
    """Frame indices (B, S) and which frames lost theirs (B, S) bool. With ``shuffle_prob`` an
    example gets k of its frames' indices replaced by ``offset`` + distinct random slots: the
    frames stay where they are, only the model's knowledge of their place goes."""
    k_do, k_k, k_which, k_slot = jax.random.split(rng, 4)
    do = jax.random.bernoulli(k_do, cfg.shuffle_prob, (batch, 1))
    k = jax.random.choice(k_k, jnp.array(cfg.shuffle_counts), (batch, 1))
    k = jnp.minimum(k, segments)
    order = jnp.argsort(jax.random.uniform(k_which, (batch, segments)), axis=-1)
    rank = jnp.argsort(order, axis=-1)  # each frame's rank in a random order
    hidden = do & (rank < k)
    slots = jnp.argsort(jax.random.uniform(k_slot, (batch, segments)), axis=-1)
    index = jnp.where(hidden, offset + slots, jnp.arange(segments))
    return index.astype(jnp.int32), hidden


def all_hidden_indices(rng, batch: int, segments: int, offset: int):
    """Every frame's index hidden (story ordering): ``offset`` + a random permutation."""
    return (offset + jnp.argsort(jax.random.uniform(rng, (batch, segments)), axis=-1)).astype(
        jnp.int32
    )


def pair_labels(segments: int):
    """Within one video, the class of (step i, step j): same / before / after, (S, S)."""
    i, j = jnp.arange(segments)[:, None], jnp.arange(segments)[None]
    return jnp.where(i == j, SAME, jnp.where(i < j, BEFORE, AFTER))


def temporal_loss(text_frame, frame_frame, text_frame_other, frame_frame_other, hidden):
    """Cross-entropy of the two pairwise heads.

    ``text_frame`` (B, S, S, 4): a segment's START state vs a frame's CLS state, same video;
    ``frame_frame`` likewise for two frames; ``*_other``: the same against another video's
    frames (class "different video"). Within a video only pairs whose frame lost its index
    count (frame-frame: either frame), the others being readable off the index embeddings.
    """
    s = hidden.shape[1]
    labels = jnp.broadcast_to(pair_labels(s), text_frame.shape[:3])
    off_diag = ~jnp.eye(s, dtype=bool)
    tf_mask = jnp.broadcast_to(hidden[:, None, :], labels.shape)  # (B, S, S) frame j hidden
    ff_mask = (hidden[:, :, None] | hidden[:, None, :]) & off_diag
    ce = optax.softmax_cross_entropy_with_integer_labels
    within = (ce(text_frame.astype(jnp.float32), labels) * tf_mask).sum() + (
        ce(frame_frame.astype(jnp.float32), labels) * ff_mask
    ).sum()
    count = tf_mask.sum() + ff_mask.sum()
    other = jnp.full(text_frame_other.shape[:3], DIFFERENT)
    across = (
        ce(text_frame_other.astype(jnp.float32), other).mean()
        + ce(frame_frame_other.astype(jnp.float32), other).mean()
    ) / 2
    return within / jnp.maximum(count, 1) + across
