"""CIDEr-D with numpy array passes, equal to pycocoevalcap's ``Cider`` to 1e-6.

pycocoevalcap walks Python dicts for every (candidate, reference) pair: fine for
one evaluation, too slow for validating every epoch and far too slow as the
self-critical (SCST) reward, computed at every RL step. Here every n-gram
occurrence is an integer, and tf, df and the clipped dot products all come out
of sorting those integers and summing with ``np.bincount``.

pycocoevalcap 1.2's ``Cider`` is already CIDEr-D (clipped counts and a Gaussian
length penalty); its quirks are reproduced on purpose, because published numbers
were computed with them:

* a "document" is an item (all references of one video), and
  ``idf = log(N) - log(max(1, df))`` with N the number of items;
* n-grams that never occur in the references get df 0, hence idf ``log(N)``;
* clipping is ``min(hyp_tfidf, ref_tfidf) * ref_tfidf``, summed over shared
  n-grams, then divided by both norms unless one of them is zero;
* the "length" in the penalty is the number of bigrams (``len(words) - 1``),
  not of words, because its ``if n == 1`` counts n-gram orders from 0;
* score = 10 * mean over orders of (sum over references / number of refs).

N-gram ids: order 1 is the word id, order k the id of the pair (id of its first
k-1 words, last word), numbered by sorting ``prefix * n_words + word`` keys
(corpus) or found with ``np.searchsorted`` (new sentences), so no n-gram tuple
is built. Outside one order, an n-gram is the column ``id << order_bits | (k-1)``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from itertools import chain, count, repeat
from typing import NamedTuple

import numpy as np

_SEP = "\x00"  # joins sentences for one str.split; always word id 0
_CHUNK = 1 << 16  # occurrences weighed at a time: cache-sized, ~2x faster than whole arrays


class _Vocab(NamedTuple):
    """Word and n-gram ids learnt from a corpus; unseen ones get ids past these."""

    words: dict[str, int]  # dense ids, the separator is 0
    tables: list[np.ndarray]  # per order >= 2: sorted keys prefix_id * len(words) + word_id


class _Part(NamedTuple):
    """Distinct (sentence, n-gram) pairs for a run of n-grams of one order.

    Sorted by (n-gram, item, role).
    """

    row: np.ndarray  # (entries,) sentence
    ngram: np.ndarray  # (entries,) n-gram id within the order
    v: np.ndarray  # (entries,) tf-idf
    idf_ngram: np.ndarray  # (n-grams,) ids of the order's n-grams, increasing
    idf: np.ndarray  # (n-grams,)
    # Reference entries whose n-gram the item's hypothesis has, with min(h, r) * r.
    clipped_row: np.ndarray | None  # (matches,)
    clipped: np.ndarray | None  # (matches,)


class CiderD:
    """SCST reward: CIDEr-D with the document frequencies of a training corpus.

    The corpus references' tf-idf entries, norms and lengths are computed once
    here, so ``scores`` only tokenises the sampled candidates and finds the
    references by their text. References outside the corpus also work; they are
    tokenised per call (their n-grams have df 0, like any unseen n-gram).
    Captions are whitespace-separated tokens, as for pycocoevalcap's ``Cider``
    (PTB-tokenise raw text first, e.g. with ``captions.tokenize``).
    """

    def __init__(
        self,
        corpus_refs: Mapping[Hashable, Sequence[str]] | Sequence[Sequence[str]],
        n: int = 4,
        sigma: float = 6.0,
    ) -> None:
        ref_lists = list(corpus_refs.values() if isinstance(corpus_refs, Mapping) else corpus_refs)
        _check_ref_lists(ref_lists)
        self.n = n
        self.sigma = sigma
        sentences = list(chain.from_iterable(ref_lists))
        sizes = np.fromiter(map(len, ref_lists), np.int64, len(ref_lists))
        self._vocab, self.ref_len, parts, lens = _weigh(sentences, sizes, n, False)
        ids_per_order = [len(self._vocab.words)] + [len(t) for t in self._vocab.tables]
        # per order, by n-gram id; the separator's id keeps df 0
        self._idf = [np.full(n_ids, self.ref_len) for n_ids in ids_per_order]
        order_bits = _order_bits(n)
        self._width = max(ids_per_order) << order_bits  # past every corpus column
        norms2 = np.zeros((n, len(sentences)))
        for k, p in parts:
            self._idf[k][p.idf_ngram] = p.idf
            norms2[k] += np.bincount(p.row, p.v * p.v, len(sentences))
        self._ref_norms = np.sqrt(norms2).T  # (sentences, n)
        row = np.concatenate([p.row for _, p in parts])
        by_row = np.argsort(row, kind="stable")  # entries of one sentence contiguous
        self._ref_col = np.concatenate([(p.ngram << order_bits) | k for k, p in parts])[by_row]
        self._ref_v = np.concatenate([p.v for _, p in parts])[by_row]
        self._ref_indptr = np.concatenate([[0], np.cumsum(np.bincount(row, None, len(sentences)))])
        self._ref_blen = _bigrams(lens, n)  # (sentences,)
        self._row_of = {s: i for i, s in enumerate(sentences)}

    def scores(self, candidates: Sequence[str], refs: Sequence[Sequence[str]]) -> np.ndarray:
        """CIDEr-D of ``candidates[i]`` against ``refs[i]``; shape (len(candidates),)."""
        if len(candidates) != len(refs):
            raise ValueError(f"{len(candidates)} candidates but {len(refs)} reference lists")
        _check_ref_lists(refs)
        n, n_cand = self.n, len(candidates)
        # The K samples of one video share its reference list: gather each list
        # once (a "group" of reference slots) and expand only matching n-grams.
        group_of: dict[tuple[str, ...], int] = {}
        cand_group = np.fromiter(
            (group_of.setdefault(tuple(r), len(group_of)) for r in refs), np.int64, n_cand
        )
        lists = list(group_of)
        list_len = np.fromiter(map(len, lists), np.int64, len(lists))
        slot_start = np.cumsum(list_len) - list_len  # (groups,)
        slot_group = np.repeat(np.arange(len(lists)), list_len)  # (slots,)
        flat = list(chain.from_iterable(lists))
        slot_row = np.fromiter(map(self._row_of.get, flat, repeat(-1)), np.int64, len(flat))
        known = np.flatnonzero(slot_row >= 0)
        unknown = np.flatnonzero(slot_row < 0)

        # Candidates and out-of-corpus references share one call-local id space.
        unseen = {s: n_cand + j for j, s in enumerate(dict.fromkeys(flat[i] for i in unknown))}
        local = list(candidates) + list(unseen)
        row, col, lens, width = _occurrences(local, n, self._vocab)
        width = max(width, self._width)
        keys, tf = np.unique(row * width + col, return_counts=True)  # sorted by (sentence, column)
        row = keys // width
        col = keys - row * width
        v = tf * self._idf_of(col)
        local_indptr = np.searchsorted(row, np.arange(len(local) + 1))
        local_norms = _norms(row, col, v, len(local), n)
        local_blen = _bigrams(lens, n)

        # Entries of every reference slot, from the corpus store or the local one.
        local_row = np.array([unseen[flat[i]] for i in unknown], np.int64)
        corpus_row = slot_row[known]
        idx_k, own_k = _ranges(self._ref_indptr[corpus_row], self._ref_indptr[corpus_row + 1])
        idx_u, own_u = _ranges(local_indptr[local_row], local_indptr[local_row + 1])
        ref_slot = np.concatenate([known[own_k], unknown[own_u]])  # (ref entries,)
        ref_v = np.concatenate([self._ref_v[idx_k], v[idx_u]])
        ref_key = slot_group[ref_slot] * width + np.concatenate([self._ref_col[idx_k], col[idx_u]])
        slot_norms = np.empty((len(flat), n))
        slot_norms[known] = self._ref_norms[corpus_row]
        slot_norms[unknown] = local_norms[local_row]
        slot_blen = np.empty(len(flat))
        slot_blen[known] = self._ref_blen[corpus_row]
        slot_blen[unknown] = local_blen[local_row]

        # Each candidate n-gram meets the equal n-grams of its group's references.
        by_key = np.argsort(ref_key)
        ref_key = ref_key[by_key]
        n_cand_entries = local_indptr[n_cand]  # candidate rows come first
        cand_key = cand_group[row[:n_cand_entries]] * width + col[:n_cand_entries]
        lo = np.searchsorted(ref_key, cand_key, "left")
        m_ref, m_cand = _ranges(lo, np.searchsorted(ref_key, cand_key, "right"))
        m_ref = by_key[m_ref]  # (matches,) reference entry; m_cand: candidate entry
        r = ref_v[m_ref]
        clipped = np.minimum(v[m_cand], r) * r
        n_refs = list_len[cand_group]  # (candidates,)
        pair_start = np.cumsum(n_refs) - n_refs
        slot = ref_slot[m_ref]
        pair = pair_start[row[m_cand]] + slot - slot_start[slot_group[slot]]
        dots = _sum_by(_slot(pair, col[m_cand], n), clipped, int(n_refs.sum()), n)  # (pairs, n)

        pair_hyp = np.repeat(np.arange(n_cand), n_refs)
        pair_in_list = np.arange(len(pair_hyp)) - pair_start[pair_hyp]
        pair_slot = slot_start[cand_group[pair_hyp]] + pair_in_list
        denom = local_norms[pair_hyp] * slot_norms[pair_slot]
        delta = local_blen[pair_hyp] - slot_blen[pair_slot]
        return _combine(dots, denom, delta, pair_hyp, n_refs, self.sigma)

    def _idf_of(self, col: np.ndarray) -> np.ndarray:
        """idf per column; n-grams past the corpus ones have df 0, hence idf log(N)."""
        order_bits = _order_bits(self.n)
        order, ngram = col & ((1 << order_bits) - 1), col >> order_bits
        out = np.full(len(col), self.ref_len)
        for k, idf in enumerate(self._idf):
            sel = np.flatnonzero((order == k) & (ngram < len(idf)))
            out[sel] = idf[ngram[sel]]
        return out


def cider_d(
    gts: Mapping[Hashable, Sequence[str]],
    res: Mapping[Hashable, Sequence[str]],
    n: int = 4,
    sigma: float = 6.0,
) -> tuple[float, np.ndarray]:
    """Drop-in for ``Cider(n, sigma).compute_score(gts, res)``.

    Document frequencies come from ``gts``; per-item scores follow the order of
    ``gts`` keys, as in pycocoevalcap. Inputs must already be tokenised.
    pycocoevalcap's ``Cider`` only runs with n=4 (it always extracts 4-grams);
    other n match its ``CiderScorer`` fed n-grams up to n.
    """
    if gts.keys() != res.keys():
        diff = sorted(map(repr, gts.keys() ^ res.keys()))
        raise ValueError(f"gts and res ids differ: {diff[:10]}")
    ids = list(gts)
    ref_lists = [gts[i] for i in ids]
    _check_ref_lists(ref_lists)
    bad = [i for i in ids if len(res[i]) != 1]
    if bad:
        raise ValueError(f"each res entry needs exactly one hypothesis; not so for {bad[:10]}")
    # Each item is a block: its hypothesis (role 0), then its references.
    sentences: list[str] = []
    for i, refs in zip(ids, ref_lists):
        sentences.append(res[i][0])
        sentences.extend(refs)
    n_refs = np.fromiter(map(len, ref_lists), np.int64, len(ids))
    _, _, parts, lens = _weigh(sentences, n_refs + 1, n, True)
    n_sent = len(sentences)
    norms2 = np.zeros((n, n_sent))
    dots = np.zeros((n, n_sent))  # hypothesis rows stay 0
    for k, p in parts:
        norms2[k] += np.bincount(p.row, p.v * p.v, n_sent)
        dots[k] += np.bincount(p.clipped_row, p.clipped, n_sent)
    norms, dots = np.sqrt(norms2).T, dots.T  # (sentences, n)
    blen = _bigrams(lens, n)
    hyp_row = np.cumsum(n_refs + 1) - (n_refs + 1)  # (items,)
    is_ref = np.ones(n_sent, bool)
    is_ref[hyp_row] = False
    ref_row = np.flatnonzero(is_ref)  # (pairs,), grouped by item
    pair_item = np.repeat(np.arange(len(ids)), n_refs)
    pair_hyp_row = hyp_row[pair_item]
    per_item = _combine(
        dots[ref_row],
        norms[pair_hyp_row] * norms[ref_row],
        blen[pair_hyp_row] - blen[ref_row],
        pair_item,
        n_refs,
        sigma,
    )
    return float(per_item.mean()), per_item


def _weigh(
    sentences: list[str], block_sizes: np.ndarray, n: int, hyp_first: bool
) -> tuple[_Vocab, float, list[tuple[int, _Part]], np.ndarray]:
    """Tokenise item blocks of sentences and weigh every (sentence, n-gram).

    Returns the vocabulary, ref_len, (order index, ``_Part``) pairs and the
    sentence lengths. Sentences come item by item, so the sort that numbers an
    order's n-grams, by (key, position), also sorts the occurrences by (n-gram,
    item, role): equal (n-gram, sentence) runs give tf, (n-gram, item) runs
    holding a reference give df, and with ``hyp_first`` the hypothesis (role 0,
    not counted in df) comes first in its run, next to the references' entries.
    """
    if not len(block_sizes):
        raise ValueError("no references")
    wids, lens, words = _encode(sentences, None)
    n_tok, n_words, n_items = len(wids), len(words), len(block_sizes)
    block_start = np.cumsum(block_sizes) - block_sizes
    item_of_row = np.repeat(np.arange(n_items), block_sizes)
    role_of_row = np.arange(len(sentences)) - block_start[item_of_row]
    sent = np.repeat(np.arange(len(sentences)), lens)  # (tokens,)
    blocks = (n_items, item_of_row, role_of_row)
    ref_len = float(np.log(float(n_items)))
    ids = wids  # id of the current order's n-gram starting at each token
    start = np.arange(n_tok)  # tokens where an n-gram of the current order starts
    tables, parts = [], []
    for k in range(1, n + 1):
        if k > 1:
            start = np.flatnonzero(sent[: max(n_tok - k + 1, 0)] == sent[k - 1 :])
        keys = ids[start] * n_words + wids[start + k - 1] if k > 1 else wids
        keys, occ = _sort_with_positions(keys, start)  # occ: token where each occurrence starts
        new_ngram = _run_starts(keys)
        if k == 1:
            ngram = keys
        else:
            ngram = np.cumsum(new_ngram) - 1
            tables.append(keys[new_ngram])
        if 1 < k < n:
            ids = np.empty(n_tok, np.int64)
            ids[occ] = ngram
        row = sent[occ]
        # Cut where an n-gram starts, about every _CHUNK occurrences; at least one part.
        cuts = np.unique(np.searchsorted(ngram, ngram[_CHUNK::_CHUNK]))
        bounds = [0, *cuts[cuts > 0], len(ngram)]
        for a, b in zip(bounds[:-1], bounds[1:]):
            part = _weigh_part(row[a:b], ngram[a:b], new_ngram[a:b], *blocks, hyp_first)
            parts.append((k - 1, part))
    return _Vocab(words, tables), ref_len, parts, lens


def _weigh_part(
    row: np.ndarray,
    ngram: np.ndarray,
    new_ngram: np.ndarray,
    n_items: int,
    item_of_row: np.ndarray,
    role_of_row: np.ndarray,
    hyp_first: bool,
) -> _Part:
    """Occurrences of whole n-grams of one order, sorted by (n-gram, sentence), to entries."""
    ref_len = float(np.log(float(n_items)))
    starts = new_ngram.copy()
    starts[1:] |= row[1:] != row[:-1]
    first = np.flatnonzero(starts)  # one entry per distinct (n-gram, sentence)
    tf = _run_lengths(first, len(row))
    row, ngram, new_ngram = row[first], ngram[first], new_ngram[first]
    item, role = item_of_row[row], role_of_row[row]
    starts = new_ngram.copy()
    starts[1:] |= item[1:] != item[:-1]
    group_first = np.flatnonzero(starts)  # one group per distinct (n-gram, item)
    group_size = _run_lengths(group_first, len(row))
    if hyp_first:
        holds_ref = role[group_first + group_size - 1] > 0
    else:
        holds_ref = np.ones(len(group_first), bool)
    ngram_first = np.flatnonzero(new_ngram[group_first])  # (n-grams,) first group
    refs_before = np.concatenate([[0], np.cumsum(holds_ref)])
    df = np.diff(refs_before[np.append(ngram_first, len(group_first))])
    idf_run = ref_len - np.log(np.maximum(1.0, df))  # (n-grams,)
    idf_run[df == n_items] = 0.0  # exactly 0, as pycocoevalcap's scalar log gives
    ngram_start = group_first[ngram_first]  # first entry of each n-gram
    v = tf * np.repeat(idf_run, _run_lengths(ngram_start, len(row)))
    if not hyp_first:
        return _Part(row, ngram, v, ngram[ngram_start], idf_run, None, None)
    with_hyp = role[group_first] == 0
    hyp = group_first[with_hyp]  # the rest of such a group: references sharing the n-gram
    ref, owner = _ranges(hyp + 1, hyp + group_size[with_hyp])
    r = v[ref]
    clipped = np.minimum(v[hyp][owner], r) * r
    return _Part(row, ngram, v, ngram[ngram_start], idf_run, row[ref], clipped)


def _occurrences(
    sentences: list[str], n: int, vocab: _Vocab
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(sentence, column) of every n-gram occurrence, sentence lengths and width.

    Ids are the corpus ones; unseen words and n-grams get ids past them.
    """
    wids, lens, _ = _encode(sentences, vocab.words)
    n_tok, n_words, order_bits = len(wids), len(vocab.words), _order_bits(n)
    sent = np.repeat(np.arange(len(sentences)), lens)  # (tokens,)
    rows, cols = [sent], [wids << order_bits]
    ids = wids.copy()  # id of the current order's n-gram starting at each token
    for k in range(2, n + 1):
        start = np.flatnonzero(sent[: max(n_tok - k + 1, 0)] == sent[k - 1 :])
        n_prefix = n_words if k == 2 else len(vocab.tables[k - 3])
        new = _lookup(vocab.tables[k - 2], ids[start], wids[start + k - 1], n_prefix, n_words)
        ids[start] = new
        rows.append(sent[start])
        cols.append((new << order_bits) | (k - 1))
    row, col = np.concatenate(rows), np.concatenate(cols)
    width = ((int(col.max()) >> order_bits) + 1) << order_bits if len(col) else 1 << order_bits
    return row, col, lens, width


def _encode(
    sentences: list[str], words: dict[str, int] | None
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Word ids of all sentences concatenated (tokens,) and sentence lengths.

    One ``str.split`` over the sentences joined by a separator token is several
    times faster than one split per sentence; the separator (word id 0) then
    marks the boundaries. Text that contains it is split sentence by sentence.
    """
    joined = f" {_SEP} ".join(sentences)
    one_pass = joined.count(_SEP) == max(len(sentences) - 1, 0)
    if one_pass:
        tokens = joined.split()
    else:
        split = [s.split() for s in sentences]
        tokens = list(chain.from_iterable(split))
        lens = np.fromiter(map(len, split), np.int64, len(split))
    if words is None:
        # setdefault with a counter numbers each word by its first occurrence in
        # one hashing pass; ranking those positions makes the ids dense.
        first: dict[str, int] = {}
        pos = np.fromiter(
            map(first.setdefault, chain([_SEP], tokens), count()), np.int64, len(tokens) + 1
        )
        rank = np.zeros(len(pos), np.int64)
        rank[np.fromiter(first.values(), np.int64, len(first))] = np.arange(len(first))
        ids = rank[pos[1:]]
        words = dict(zip(first, range(len(first))))
    else:
        ids = np.fromiter(map(words.get, tokens, repeat(-1)), np.int64, len(tokens))
        unseen: dict[str, int] = {}
        for i in np.flatnonzero(ids < 0):
            ids[i] = len(words) + unseen.setdefault(tokens[i], len(unseen))
    if one_pass:
        sep = np.flatnonzero(ids == 0)
        lens = np.diff(np.concatenate([[-1], sep, [len(ids)]])) - 1
        lens = lens if sentences else lens[:0]
        ids = np.delete(ids, sep)
    return ids, lens, words


def _sort_with_positions(keys: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted non-negative keys and their (increasing, non-negative) positions, ties by position.

    When key and position fit in one int64 this sorts packed values instead of
    calling a stable argsort, several times faster on large arrays.
    """
    pos_bits = int(positions[-1]).bit_length() if len(positions) else 0
    if len(keys) and int(keys.max()).bit_length() + pos_bits <= 63:
        packed = np.sort((keys << pos_bits) | positions)
        return packed >> pos_bits, packed & ((1 << pos_bits) - 1)
    by_key = np.argsort(keys, kind="stable")
    return keys[by_key], positions[by_key]


def _lookup(
    table: np.ndarray, prefix: np.ndarray, last: np.ndarray, n_prefix: int, n_words: int
) -> np.ndarray:
    """Ids of n-grams (prefix id, last word id) in a corpus table.

    N-grams missing there, including any with an unseen prefix or word, get
    fresh ids past the table, equal for equal n-grams. Queries are sorted first:
    ``searchsorted`` is then about three times faster on a large table.
    """
    keys = prefix * n_words + last
    by_key = np.argsort(keys)
    pos = np.empty(len(keys), np.int64)
    pos[by_key] = np.searchsorted(table, keys[by_key])
    inside = np.flatnonzero(pos < len(table))
    found = np.zeros(len(keys), bool)
    found[inside] = table[pos[inside]] == keys[inside]
    miss = (prefix >= n_prefix) | (last >= n_words) | ~found
    if miss.any():
        pair = prefix[miss] * (int(last[miss].max()) + 1) + last[miss]
        _, fresh = np.unique(pair, return_inverse=True)
        pos[miss] = len(table) + fresh
    return pos


def _order_bits(n: int) -> int:
    return (n - 1).bit_length()


def _slot(row: np.ndarray, col: np.ndarray, n: int) -> np.ndarray:
    """Index of (row, n-gram order) in a flattened (rows, n) array."""
    return row * n + (col & ((1 << _order_bits(n)) - 1))


def _sum_by(slot: np.ndarray, x: np.ndarray, n_rows: int, n: int) -> np.ndarray:
    """Sum of ``x`` per slot; shape (n_rows, n), float even when ``x`` is empty."""
    return np.bincount(slot, x, n_rows * n).astype(np.float64).reshape(n_rows, n)


def _norms(row: np.ndarray, col: np.ndarray, v: np.ndarray, n_rows: int, n: int) -> np.ndarray:
    return np.sqrt(_sum_by(_slot(row, col, n), v * v, n_rows, n))


def _bigrams(lens: np.ndarray, n: int) -> np.ndarray:
    """pycocoevalcap's "length": the number of bigrams, 0 when it counts no bigrams."""
    return np.maximum(lens - 1, 0).astype(np.float64) if n >= 2 else np.zeros(len(lens))


def _combine(
    dots: np.ndarray,
    denom: np.ndarray,
    delta: np.ndarray,
    pair_hyp: np.ndarray,
    n_refs: np.ndarray,
    sigma: float,
) -> np.ndarray:
    """Per-candidate score from per-pair clipped dots (pairs, n) and norm products (pairs, n)."""
    cos = np.divide(dots, denom, out=dots, where=denom != 0)
    cos *= np.exp(-(delta**2) / (2 * sigma**2))[:, None]
    n = dots.shape[1]
    summed = np.stack([np.bincount(pair_hyp, cos[:, k], len(n_refs)) for k in range(n)], axis=1)
    return summed.mean(axis=1) / n_refs * 10.0  # (candidates,)


def _ranges(starts: np.ndarray, stops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All indices in the ranges [starts[i], stops[i]), and the i each came from."""
    sizes = stops - starts
    owner = np.repeat(np.arange(len(starts)), sizes)
    offset = np.repeat(starts - (np.cumsum(sizes) - sizes), sizes)
    return np.arange(int(sizes.sum())) + offset, owner


def _run_lengths(first: np.ndarray, total: int) -> np.ndarray:
    """Lengths of the runs starting at ``first`` in an array of ``total`` elements."""
    lengths = np.empty(len(first), np.int64)
    lengths[:-1] = first[1:] - first[:-1]
    lengths[-1:] = total - first[-1:]
    return lengths


def _run_starts(a: np.ndarray) -> np.ndarray:
    """True where a sorted array's value changes (and at 0)."""
    starts = np.empty(len(a), bool)
    starts[:1] = True
    np.not_equal(a[1:], a[:-1], out=starts[1:])
    return starts


def _check_ref_lists(ref_lists: Sequence[Sequence[str]]) -> None:
    empty = [i for i, refs in enumerate(ref_lists) if len(refs) == 0]
    if empty:
        raise ValueError(f"empty reference lists at positions {empty[:10]}")
