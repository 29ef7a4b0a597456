"""BMHRL's rewards and policy-gradient losses: delta-score token rewards for the worker,
discounted segment gains for the manager, actor-critic losses, and the original's BiasedKL.

The worker's reward for word t is how much it raised the caption's score:
``r_t = score(w_1..w_t) - score(w_1..w_{t-1})``, so the rewards of a caption sum to its
full score. The manager's reward for a segment is the sum of its words' rewards (the gain of
that segment), discounted over segments (after Wang et al., CVPR 2018).

What the public BMHRL code did differently, on purpose not reproduced:

* it called METEOR once per prefix from Python loops (a Java round trip per word of every
  sample); here all prefixes of a batch are scored in one call: one vectorised CIDEr-D pass
  (:class:`CiderScorer`) or one batched exchange with a single long-lived METEOR process
  (:class:`MeteorScorer`);
* its discounting code was dead (rewards were used undiscounted); :func:`discounted_returns`
  and :func:`segment_returns` discount for real.

Texts: captions are scored as the vocabulary's ``decode`` writes them (lower-case words
joined by spaces, specials left out), so references should be normalised the same way
(``" ".join(text.wordlevel.words(s))``, or ``rl.scst.normalize`` when punctuation must go).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Hashable, Mapping, Sequence
from types import TracebackType
from typing import Protocol, Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..metrics.captions import meteor_process, require_java
from ..metrics.cider import CiderD
from .data import END_ID, PAD_ID, SPECIALS, Vocab

# ---------------------------------------------------------------------------------------------
# Prefixes.


def caption_mask(tokens: Tensor | np.ndarray, end_id: int = END_ID, pad_id: int = PAD_ID) -> Tensor:
    """(B, T) bool, True at a caption's real positions: up to and including its first end
    token, or, without an end (cut at max_len), up to its last non-pad token. The layout of
    ``model.sample`` / ``greedy_decode`` (no start token, pad after the end)."""
    tokens = torch.as_tensor(tokens)
    t = tokens.shape[1]
    pos = torch.arange(t, device=tokens.device).expand_as(tokens)  # (B, T)
    is_end = tokens == end_id
    first_end = torch.where(is_end, pos, t).min(1).values  # (B,) T when none
    last_word = torch.where(tokens != pad_id, pos, -1).max(1).values  # (B,)
    length = torch.where(first_end < t, first_end + 1, last_word + 1)  # (B,)
    return pos < length[:, None]


def prefix_texts(tokens: Tensor | np.ndarray, vocab: Vocab) -> list[list[str]]:
    """For each caption, the text of every prefix ``w_1..w_t``, t = 1 .. its length
    (:func:`caption_mask`): entry t-1 belongs to token t. The end token writes no text, so its
    entry (the last one) is the whole caption; specials are left out as in ``Vocab.decode``."""
    tokens = torch.as_tensor(tokens)
    lengths = caption_mask(tokens).sum(1).tolist()
    out = []
    for row, n in zip(tokens.tolist(), lengths):
        words: list[str] = []
        texts = []
        for i in row[:n]:
            if i >= len(SPECIALS):
                words.append(vocab.itos[i])
            texts.append(" ".join(words))
        out.append(texts)
    return out


# ---------------------------------------------------------------------------------------------
# Scorers.


class Scorer(Protocol):
    """Sentence-level caption score of each candidate against its references."""

    def score(self, candidates: Sequence[str], refs: Sequence[Sequence[str]]) -> np.ndarray:
        """(len(candidates),) float scores; ``refs[i]`` is candidate i's reference list."""
        ...


class CiderScorer:
    """CIDEr-D with the document frequencies of ``corpus_refs`` (the training references, one
    list per video or event), computed once; each ``score`` call is one vectorised
    ``CiderD.scores`` pass over all the prefixes of a batch."""

    def __init__(
        self,
        corpus_refs: Mapping[Hashable, Sequence[str]] | Sequence[Sequence[str]],
        n: int = 4,
        sigma: float = 6.0,
    ) -> None:
        self.cider = CiderD(corpus_refs, n=n, sigma=sigma)

    def score(self, candidates: Sequence[str], refs: Sequence[Sequence[str]]) -> np.ndarray:
        return self.cider.scores(candidates, refs)


class MeteorScorer:
    """Sentence-level METEOR 1.5 from ONE Java process (pycocoevalcap's ``Meteor``) kept open
    for the whole training run; each ``score`` call is one batched exchange.

    The original BMHRL called METEOR once per prefix, in Python loops over samples and words,
    so every word of every sample cost a Java round trip. Here a call writes the ``SCORE``
    lines of all (candidate, references) pairs (in chunks, so neither pipe can fill while the
    other waits), reads their statistics lines, then sends one ``EVAL`` line with all of them
    and reads one score per pair (plus the corpus score, dropped): pycocoevalcap 1.2's
    ``compute_score`` protocol, with the same hypothesis clean-up, so the per-pair scores are
    the ones ``compute_score`` reports. Starting Java takes seconds; close the process with
    ``close()`` or by using the scorer as a context manager.
    """

    chunk = 128  # SCORE lines written before their replies are read

    def __init__(self) -> None:
        require_java()
        self._process = contextlib.ExitStack()
        self.meteor = self._process.enter_context(meteor_process())
        self._closed = False

    def score(self, candidates: Sequence[str], refs: Sequence[Sequence[str]]) -> np.ndarray:
        if len(candidates) != len(refs):
            raise ValueError(f"{len(candidates)} candidates but {len(refs)} reference lists")
        empty = [i for i, r in enumerate(refs) if len(r) == 0]
        if empty:
            raise ValueError(f"empty reference lists at positions {empty[:10]}")
        if self._closed:
            raise RuntimeError("this MeteorScorer is closed")
        if not candidates:
            return np.zeros(0)
        proc = self.meteor.meteor_p
        with self.meteor.lock:
            stats: list[str] = []
            for lo in range(0, len(candidates), self.chunk):
                lines = [
                    _score_line(c, r)
                    for c, r in zip(candidates[lo : lo + self.chunk], refs[lo : lo + self.chunk])
                ]
                proc.stdin.write(("\n".join(lines) + "\n").encode())
                proc.stdin.flush()
                stats.extend(self._readline() for _ in lines)
            proc.stdin.write(("EVAL ||| " + " ||| ".join(stats) + "\n").encode())
            proc.stdin.flush()
            scores = np.array([float(self._readline()) for _ in stats])
            self._readline()  # the corpus-level score
        return scores

    def _readline(self) -> str:
        line = self.meteor.meteor_p.stdout.readline()
        if not line:
            raise RuntimeError(f"METEOR exited (return code {self.meteor.meteor_p.poll()})")
        return line.decode().strip()

    def close(self) -> None:
        """Stop the Java process (pycocoevalcap only does it on garbage collection)."""
        if not self._closed:
            self._closed = True
            self._process.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _score_line(candidate: str, refs: Sequence[str]) -> str:
    """pycocoevalcap's SCORE line; line breaks become spaces (the protocol is line-based, one
    inside a caption would shift every later reply)."""
    hyp = " ".join(candidate.splitlines()).replace("|||", "").replace("  ", " ")
    return " ||| ".join(("SCORE", " ||| ".join(" ".join(r.splitlines()) for r in refs), hyp))


# ---------------------------------------------------------------------------------------------
# Rewards and returns.


def token_rewards(
    tokens: Tensor | np.ndarray, vocab: Vocab, refs: Sequence[Sequence[str]], scorer: Scorer
) -> Tensor:
    """(B, T) float32 delta-score rewards of sampled captions (layout of ``model.sample``).

    ``r_t = score(w_1..w_t) - score(w_1..w_{t-1})`` with the empty prefix scoring 0, so a
    caption's rewards sum to its full score. The end token gets the full-caption score minus
    the previous prefix's, which is 0: it adds no word, so its prefix text is the whole
    caption. It stays a real position (``caption_mask`` includes it): the end action's return
    is then 0 against the value baseline, which is what teaches the worker when to stop.
    Specials (unk, pad or start sampled mid-caption) add no text either, hence reward 0.
    0 on padding. All prefixes of the batch are scored in one ``scorer.score`` call; equal
    (caption, prefix text) pairs and empty texts (score 0) are not sent.
    """
    tokens = torch.as_tensor(tokens)
    if len(refs) != tokens.shape[0]:
        raise ValueError(f"{tokens.shape[0]} captions but {len(refs)} reference lists")
    texts = prefix_texts(tokens, vocab)
    unique: dict[tuple[int, str], int] = {}
    for b, row in enumerate(texts):
        for text in row:
            if text:
                unique.setdefault((b, text), len(unique))
    scores = np.zeros(0)
    if unique:
        scores = scorer.score([t for _, t in unique], [refs[b] for b, _ in unique])
    prefix = np.zeros(tokens.shape, np.float64)  # (B, T) score of w_1..w_t
    for b, row in enumerate(texts):
        prefix[b, : len(row)] = [scores[unique[b, t]] if t else 0.0 for t in row]
    prefix_t = torch.from_numpy(prefix)
    previous = F.pad(prefix_t[:, :-1], (1, 0))  # (B, T) score of w_1..w_{t-1}
    mask = caption_mask(tokens).cpu()
    return ((prefix_t - previous) * mask).float().to(tokens.device)


def _discount_matrix(n: int, gamma: float, like: Tensor) -> Tensor:
    """(n, n) D with D[t, s] = gamma^(s - t) for s >= t, else 0: returns = rewards @ D.T."""
    idx = torch.arange(n, device=like.device)
    lag = idx[None, :] - idx[:, None]  # (n, n) s - t
    power = torch.tensor(gamma, dtype=like.dtype, device=like.device) ** lag.clamp(min=0)
    return power * (lag >= 0)


def discounted_returns(rewards: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """(B, T) returns ``G_t = r_t + gamma * G_{t+1}`` inside ``mask`` (a prefix mask such as
    :func:`caption_mask`); rewards outside it are ignored and returns there are 0. One matrix
    product, no loop; gamma = 1 is a reverse cumulative sum."""
    r = rewards * mask  # (B, T)
    return (r @ _discount_matrix(r.shape[1], gamma, r).T) * mask


def segment_returns(rewards: Tensor, segment_ids: Tensor, n_segments: int, gamma: float) -> Tensor:
    """(B, K) manager returns: ``R_k = gain_k + gamma * R_{k+1}``, where ``gain_k`` is the
    undiscounted sum of the worker rewards of segment k's tokens (``segment_ids`` (B, T): the
    segment of each token, -1 on padding; K = ``n_segments``). Segments past a caption's last
    one have no gain and return 0; mask them out of the manager's loss
    (``arange(K) <= segment_ids.max(1)``)."""
    real = segment_ids >= 0
    gains = torch.zeros(rewards.shape[0], n_segments, dtype=rewards.dtype, device=rewards.device)
    gains.scatter_add_(1, segment_ids.clamp(min=0), rewards * real)  # (B, K)
    return gains @ _discount_matrix(n_segments, gamma, gains).T


def segments_from_ends(ends: Tensor, mask: Tensor) -> tuple[Tensor, int]:
    """Segment ids (B, T) (-1 outside ``mask``) and K from (B, T) bool ``ends``: True where a
    token closes its segment (the critic's boundary after it); a new segment starts after it."""
    ends = ends & mask
    ids = torch.cumsum(ends.long(), 1) - ends.long()  # boundaries strictly before t
    ids = ids.masked_fill(~mask, -1)
    return ids, int(ids.max().item()) + 1 if ids.numel() else 0


# ---------------------------------------------------------------------------------------------
# Losses.


def policy_gradient(
    logprobs: Tensor, returns: Tensor, values: Tensor, mask: Tensor
) -> tuple[Tensor, Tensor, dict[str, float]]:
    """Actor-critic losses over (B, T) worker tokens or (B, K) manager segments.

    advantage = returns - values (values detached: the critic is a baseline, trained only by
    the value loss); policy loss = -(advantage * logprobs), value loss = (values - returns)^2,
    both masked means per real position (the kit's SCST sums over tokens per sequence; a
    per-token mean keeps the scale independent of caption length and of K). Returns
    (policy_loss, value_loss, stats) with stats the masked means of return, advantage and
    value."""
    m = mask.to(logprobs.dtype)
    n = m.sum().clamp(min=1)
    returns = returns.detach()
    adv = returns - values.detach()
    policy_loss = -(adv * logprobs * m).sum() / n
    value_loss = ((values - returns) ** 2 * m).sum() / n
    stats = {
        "return": float((returns * m).sum() / n),
        "advantage": float((adv * m).sum() / n),
        "value": float((values.detach() * m).sum() / n),
    }
    return policy_loss, value_loss, stats


def gaussian_logprob(sample: Tensor, mean: Tensor, std: Tensor | float) -> Tensor:
    """log N(sample; mean, std^2) summed over the last (goal) dim: (..., G) -> (...).

    The manager's action is its goal with Gaussian exploration noise; pass the noisy goal
    detached as ``sample`` so the gradient reaches the policy through ``mean`` (and ``std``
    when it is learnt)."""
    std = torch.as_tensor(std, dtype=mean.dtype, device=mean.device)
    z = (sample - mean) / std
    return (-0.5 * z**2 - torch.log(std) - 0.5 * math.log(2 * math.pi)).sum(-1)


def biased_kl(
    logprobs: Tensor,
    target: Tensor,
    biased_target: Tensor,
    offset: Tensor,
    pad_id: int = PAD_ID,
    smoothing: float = 0.7,
) -> Tensor:
    """The original's optional BiasedKL: label-smoothed KL(q || p) whose target q moves part of
    the reference word's mass onto the agent's word.

    logprobs (B, T, V), target (B, T) reference words, biased_target (B, T) the agent's words
    at the same positions, offset (B, T) in [0, 1]. q = (1 - smoothing)(1 - offset) on the
    reference word, plus (1 - smoothing) * offset on the agent's word, plus smoothing / (V - 2)
    on every word but pad and the reference word; q sums to 1 (when both words are equal it is
    plain label smoothing). offset = 0 is ``model.label_smoothed_kl``. Pad targets are ignored,
    an agent word that is pad gets offset 0; the sum is divided by the number of non-pad
    targets, like ``label_smoothed_kl``.

    The offset comes from the reward (the original, with the agent's word sampled from the
    teacher-forced prediction at each position): ``clamp(advantage * p(agent word) * n, 0, 1)``
    with advantage the delta-METEOR reward minus the value baseline and n the caption's number
    of tokens (scaling a per-word delta back to a sentence-level score), see
    :func:`reward_offset`: only words that beat the baseline pull probability towards
    themselves, and confident ones more.
    """
    v = logprobs.shape[-1]
    keep = target != pad_id  # (B, T)
    lp, tgt, agent = logprobs[keep].float(), target[keep], biased_target[keep]  # (N, V), (N,)
    off = offset[keep].float().masked_fill(agent == pad_id, 0.0)  # (N,)
    q = torch.full_like(lp, smoothing / (v - 2))
    q.scatter_(1, tgt[:, None], ((1.0 - smoothing) * (1.0 - off))[:, None])
    q.scatter_add_(1, agent[:, None], ((1.0 - smoothing) * off)[:, None])
    q[:, pad_id] = 0.0
    return F.kl_div(lp, q, reduction="sum") / keep.sum().clamp(min=1)


def reward_offset(advantage: Tensor, word_probs: Tensor, mask: Tensor) -> Tensor:
    """(B, T) BiasedKL offsets the original's way: ``clamp(advantage * p * n, 0, 1)``, n the
    number of real tokens of each caption (``mask`` (B, T)); 0 outside the mask."""
    n = mask.sum(1, keepdim=True).to(advantage.dtype)  # (B, 1)
    return ((advantage * word_probs * n).clamp(0.0, 1.0) * mask).detach()
