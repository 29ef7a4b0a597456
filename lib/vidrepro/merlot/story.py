"""Zero-shot visual story ordering (VIST), MERLOT's way and the baselines'.

MERLOT: the 5 captions in order, the 5 images with their frame indices hidden (a random
assignment of the "unknown order" slots; two assignments averaged), the text-frame pairwise
head's 5x5 table with the "different video" class dropped, every one of the 120 orders scored
at once, the best taken. The contrastive (CLIP-style) baseline scores an order by the
caption-image similarities alone; the random baseline draws orders.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..metrics import ordering
from . import objectives as O
from .models import Merlot, ModelConfig, shuffled_offset


@partial(jax.jit, static_argnames=("cfg",))
def pair_logprobs(params, frames, text, rng, cfg: ModelConfig):
    """(B, S, S, 3) log p(same, caption i before image j, after) of the text-frame head, with
    the "different video" class dropped and the rest renormalised; frames (B, S, H, W, 3),
    text (B, S, L) in story order."""
    model = Merlot(cfg)
    b, s = text.shape[:2]
    tokens, _ = model.apply({"params": params}, frames, method=Merlot.encode_frames)
    index = O.all_hidden_indices(rng, b, s, shuffled_offset(cfg))
    v, t = model.apply({"params": params}, tokens, index, text, method=Merlot.joint)
    logits = model.apply(
        {"params": params}, t[:, :, 0], v[:, :, 0], "text_frame", method=Merlot.pairs
    )  # (B, S, S, 4)
    return jax.nn.log_softmax(logits[..., O.SAME :].astype(jnp.float32), axis=-1)


def merlot_orders(
    params, frames, text, cfg: ModelConfig, seed: int = 0, assignments: int = 2
) -> np.ndarray:
    """Predicted order (B, S): image ids in the predicted story order."""
    keys = jax.random.split(jax.random.key(seed), assignments)
    logp = sum(pair_logprobs(params, frames, text, k, cfg) for k in keys) / assignments
    return ordering.best_order(np.asarray(logp))


@partial(jax.jit, static_argnames=("cfg",))
def embeddings(params, frames, text, cfg: ModelConfig):
    """The contrastive heads' unit embeddings of captions (B, S, E) and images (B, S, E)."""
    model = Merlot(cfg)
    _, cls = model.apply({"params": params}, frames, method=Merlot.encode_frames)
    states, _ = model.apply({"params": params}, text, method=Merlot.text_only)
    return model.apply({"params": params}, states[:, :, 0], cls, method=Merlot.contrastive)


def similarities(params, frames, text, cfg: ModelConfig):
    """Caption-image cosine similarities (B, S, S) within each story."""
    t, f = embeddings(params, frames, text, cfg)
    return jnp.einsum("bid,bjd->bij", t, f)


def recall_at_1(params, frames, text, cfg: ModelConfig, batch_size: int = 32) -> float:
    """Caption-to-image retrieval among all B*S images of the pool: the fraction of captions
    whose own image is the most similar (chance 1/(B*S)). On images the model never saw it
    says whether the contrastive objective learned to see, or learned its training set."""
    parts = [
        embeddings(params, frames[i : i + batch_size], text[i : i + batch_size], cfg)
        for i in range(0, len(frames), batch_size)
    ]
    t, f = (np.concatenate(side).reshape(-1, side[0].shape[-1]) for side in zip(*parts))
    return float(((t @ f.T).argmax(1) == np.arange(len(t))).mean())


def contrastive_orders(params, frames, text, cfg: ModelConfig) -> np.ndarray:
    """The order maximising the summed similarity of each caption to the image put beside it."""
    sim = np.asarray(similarities(params, frames, text, cfg), np.float64)  # (B, S, S)
    table = np.zeros((*sim.shape, 3))
    table[..., ordering.SAME] = sim  # before/after carry no information here
    return ordering.best_order(table)


def random_orders(batch: int, segments: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(segments) for _ in range(batch)])


def score(orders: np.ndarray) -> dict[str, float]:
    """Spearman, pairwise accuracy, distance of predicted orders against the story order."""
    return ordering.ordering_metrics(ordering.positions_from_order(orders))


def score_items(stories, orders: np.ndarray, blanked_orders: np.ndarray) -> list[dict]:
    """Per-story scores for ``runs.log_items``: ``item`` (the story id), ``spearman``,
    ``pairwise_acc`` and ``distance`` of ``orders``, and ``blanked_spearman`` (the spearman of
    ``blanked_orders``, the same stories with black images); each column's mean is what
    ``score`` gives for those orders."""
    if len(orders) != len(stories.ids) or len(blanked_orders) != len(stories.ids):
        raise ValueError(
            f"{len(stories.ids)} stories but {len(orders)} orders and "
            f"{len(blanked_orders)} blanked orders"
        )
    seen = ordering.ordering_metrics_per_story(ordering.positions_from_order(orders))
    blind = ordering.ordering_metrics_per_story(ordering.positions_from_order(blanked_orders))
    return [
        {
            "item": str(story_id),
            **{k: float(v[i]) for k, v in seen.items()},
            "blanked_spearman": float(blind["spearman"][i]),
        }
        for i, story_id in enumerate(stories.ids)
    ]


def position_confusion(orders: np.ndarray) -> np.ndarray:
    """(S, S) counts: row = an image's true position, column = where it was put."""
    positions = ordering.positions_from_order(orders)  # (N, S)
    s = positions.shape[1]
    counts = np.zeros((s, s), np.int64)
    np.add.at(counts, (np.broadcast_to(np.arange(s), positions.shape), positions), 1)
    return counts


def shown_in_order(stories, orders: np.ndarray, i: int) -> tuple[np.ndarray, list[str]]:
    """Story ``i``'s images in the predicted order, each titled with its true step and the
    caption of the step it was put at: (S, H, W, 3), titles."""
    order = orders[i]
    titles = [
        f"step {k + 1}: true {j + 1}\n{stories.texts[i][k][:28]}" for k, j in enumerate(order)
    ]
    return stories.frames[i][order], titles
