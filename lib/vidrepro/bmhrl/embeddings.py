"""Frozen word embeddings for BMHRL's caption decoder: GloVe rows at full scale, vectors
fitted to the synthetic captions at tiny scale.

BMT embeds caption words with GloVe 840B.300d, frozen. The synthetic world's words are all
ordinary English, but a tiny run cannot be asked to download 5 GB, so ``train_embeddings``
builds vectors of the same width from the training captions themselves.

Rows that have no vector (specials other than pad, words GloVe lacks, words that never occur
with a context) get small random vectors from a seeded generator, so start, end and unknown
stay distinguishable; BMT (torchtext) gave them zeros. The pad row is zero.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

import numpy as np

from ..data.formats.errors import PathLike
from .data import PAD_ID, Vocab

INIT_STD = 0.1  # per-coordinate std of the random rows (and the RMS of the fitted ones)


def _random_rows(n: int, dim: int, seed: int) -> np.ndarray:
    """(n, dim) float32 N(0, INIT_STD^2) rows, pad row zero: the start of every matrix."""
    out = np.random.default_rng(seed).normal(0.0, INIT_STD, (n, dim)).astype(np.float32)
    out[PAD_ID] = 0.0
    return out


def _open(path: Path) -> TextIO:
    # GloVe 840B has a few lines that are not valid UTF-8 (torchtext skips them); with
    # "replace" they cannot match a vocabulary word and are kept out the same way.
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return path.open(encoding="utf-8", errors="replace")


def read_glove(
    path: PathLike, vocab: Vocab, dim: int = 300, seed: int = 0
) -> tuple[np.ndarray, int]:
    """``(matrix (len(vocab), dim) float32, number of vocabulary words found)``.

    Streams a GloVe text file (``word v1 ... v_dim`` per line, optionally gzipped), keeping
    the rows of vocabulary words only (the first occurrence, matched exactly: the vocabulary is
    lower-case). A GloVe 840B token may contain spaces (". . ."), so the last ``dim`` fields
    are the vector and the rest is the word. A line with fewer than ``dim + 1`` fields, or a
    kept word's vector that does not parse, is a ValueError naming the file and line; the
    numbers of words not kept are not parsed (that is most of the 2.2 M lines).
    """
    path = Path(path)
    matrix = _random_rows(len(vocab), dim, seed)
    seen: set[int] = set()
    with _open(path) as f:
        for number, line in enumerate(f, start=1):
            fields = line.rstrip("\r\n").rstrip(" ").rsplit(" ", dim)
            if len(fields) != dim + 1 or not fields[0]:
                raise ValueError(
                    f"{path}: line {number}: expected a word and {dim} numbers, "
                    f"got {len(fields)} fields"
                )
            index = vocab.stoi.get(fields[0])
            if index is None or index in seen or index == PAD_ID:
                continue
            try:
                matrix[index] = np.asarray(fields[1:], dtype=np.float32)
            except ValueError as e:
                raise ValueError(f"{path}: line {number}: {e}") from None
            seen.add(index)
    return matrix, len(seen)


def cooccurrences(sentences: Iterable[str], vocab: Vocab, window: int) -> np.ndarray:
    """(V, V) float64 symmetric counts of word pairs at most ``window`` apart in a sentence,
    each weighted 1 / distance as GloVe does; start and end count as words."""
    counts = np.zeros((len(vocab), len(vocab)))
    for sentence in sentences:
        ids = vocab.encode(sentence)
        for i, w in enumerate(ids):
            for d in range(1, window + 1):
                if i + d < len(ids):
                    counts[w, ids[i + d]] += 1.0 / d
                    counts[ids[i + d], w] += 1.0 / d
    return counts


def train_embeddings(
    sentences: Iterable[str],
    vocab: Vocab,
    dim: int = 300,
    *,
    window: int = 2,
    rank: int = 24,
    seed: int = 0,
) -> np.ndarray:
    """(len(vocab), dim) float32 vectors fitted to ``sentences``: PPMI + truncated SVD.

    Why this and not a small skip-gram: skip-gram with negative sampling implicitly factorises
    a shifted PMI matrix (Levy & Goldberg 2014) and GloVe factorises log co-occurrences, so
    factorising the PPMI matrix directly gives the same kind of vectors in closed form: no
    learning rate or epoch count to tune, milliseconds for a vocabulary of a few hundred
    words, and exactly reproducible (no SGD noise). Recipe of Levy, Goldberg & Dagan (2015):
    context counts smoothed with exponent 0.75, word vectors ``U sqrt(S)``.

    Only the first ``rank`` SVD components are kept: the truncation is what makes words that
    share contexts share a vector (full rank just re-expresses the sparse PPMI rows). 24 gives
    the synthetic captions' ~90 words clear groups (colours, shapes, verbs, sounds); see the
    tests. They are mapped to ``dim`` coordinates by a seeded random orthonormal map (dot
    products, and so cosines, unchanged) and each row is scaled to the norm of the random
    rows, ``INIT_STD * sqrt(dim)``. Words without any co-occurrence keep a random row; pad is
    zero. Deterministic given ``seed``: singular vectors' signs are fixed (largest coordinate
    positive).
    """
    counts = cooccurrences(sentences, vocab, window)
    out = _random_rows(len(vocab), dim, seed)
    used = np.flatnonzero(counts.sum(1) > 0)
    used = used[used != PAD_ID]
    if len(used) == 0:
        return out
    c = counts[np.ix_(used, used)]
    context = c.sum(0) ** 0.75
    # PMI(w, c) = log P(w, c) / (P(w) P_0.75(c)); the total count cancels out.
    pmi = np.log(np.maximum(c, 1e-300) * context.sum() / (c.sum(1, keepdims=True) * context))
    ppmi = np.where(c > 0, np.maximum(pmi, 0.0), 0.0)  # (U, U), U = words with contexts
    u, s, _ = np.linalg.svd(ppmi)
    k = min(rank, dim, len(used))
    u, s = u[:, :k], s[:k]
    u *= np.sign(u[np.abs(u).argmax(0), np.arange(k)])  # sign convention per component
    vectors = u * np.sqrt(s)  # (U, k)
    basis, _ = np.linalg.qr(np.random.default_rng([seed, 1]).normal(size=(dim, k)))  # (dim, k)
    vectors = vectors @ basis.T  # (U, dim), orthonormal columns keep dot products
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    fitted = norms[:, 0] > 0
    vectors = vectors / np.where(norms > 0, norms, 1.0) * INIT_STD * np.sqrt(dim)
    out[used[fitted]] = vectors[fitted].astype(np.float32)
    return out
