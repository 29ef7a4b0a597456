"""vidrepro's CIDEr-D must reproduce pycocoevalcap's numbers, not just look plausible."""

from __future__ import annotations

import numpy as np
import pytest
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.cider.cider_scorer import CiderScorer, cook_refs, cook_test

from vidrepro.metrics.cider import CiderD, cider_d

TOL = 1e-6


def random_corpus(
    seed: int, n_items: int, vocab: int, max_refs: int, min_len: int, max_len: int
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Zipf-distributed captions; some hypotheses share nothing, some repeat a word."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(vocab)]
    p = 1.0 / np.arange(1, vocab + 1) ** 1.1
    p /= p.sum()

    def caption() -> str:
        length = rng.integers(min_len, max_len + 1)
        return " ".join(words[j] for j in rng.choice(vocab, length, p=p))

    # Shuffled string ids: per-item scores must follow the order of gts keys.
    ids = [f"video{i}" for i in rng.permutation(n_items)]
    gts = {i: [caption() for _ in range(rng.integers(1, max_refs + 1))] for i in ids}
    res = {i: [caption()] for i in ids}
    res[ids[0]] = ["zz0 zz1 zz2 zz3 zz4"]  # no n-gram in common with anything
    res[ids[1]] = [" ".join([words[0]] * 7)]  # one word repeated: clipping matters
    gts[ids[2]] = gts[ids[2]][:1]  # a single reference
    return gts, res


class _SizedList(list):
    """A list whose len() is the corpus size, for pycocoevalcap's ref_len = log(len(crefs))."""

    def __init__(self, items: list, size: int) -> None:
        super().__init__(items)
        self._size = size

    def __len__(self) -> int:
        return self._size


def pycoco_with_corpus_df(
    corpus: list[list[str]], cands: list[str], refs: list[list[str]], n: int = 4, sigma: float = 6.0
) -> np.ndarray:
    """pycocoevalcap's own CiderScorer arithmetic, with df and N from ``corpus``."""
    scorer = CiderScorer(n=n, sigma=sigma)
    scorer.crefs = [cook_refs(r, n) for r in corpus]
    scorer.compute_doc_freq()
    scorer.crefs = _SizedList([cook_refs(r, n) for r in refs], len(corpus))
    scorer.ctest = [cook_test(c, n) for c in cands]
    return np.array(scorer.compute_cider())


CORPORA = {
    "tiny-vocab-short": dict(seed=0, n_items=60, vocab=4, max_refs=5, min_len=0, max_len=4),
    "small-vocab": dict(seed=1, n_items=150, vocab=30, max_refs=20, min_len=1, max_len=12),
    "zipf-2k": dict(seed=2, n_items=250, vocab=2000, max_refs=20, min_len=6, max_len=14),
    "long-captions": dict(seed=3, n_items=40, vocab=50, max_refs=8, min_len=30, max_len=60),
    "one-ref-each": dict(seed=4, n_items=80, vocab=200, max_refs=1, min_len=1, max_len=15),
}


@pytest.mark.parametrize("name", CORPORA)
def test_cider_d_equals_pycocoevalcap(name: str) -> None:
    gts, res = random_corpus(**CORPORA[name])
    expected, expected_items = Cider().compute_score(gts, res)
    score, items = cider_d(gts, res)
    assert abs(score - expected) < TOL
    np.testing.assert_allclose(items, expected_items, rtol=0, atol=TOL)
    assert expected_items.max() > 0.1  # a corpus of zeros would prove little
    assert items[0] == 0.0  # the hypothesis sharing no n-gram


@pytest.mark.parametrize("sigma", [2.0, 6.0])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_other_orders_and_sigmas(n: int, sigma: float) -> None:
    # Cider() itself always cooks 4-grams, so only n=4 goes through it; other
    # orders are checked against its CiderScorer fed n-grams of that order.
    gts, res = random_corpus(seed=5, n_items=50, vocab=25, max_refs=6, min_len=0, max_len=10)
    ids = list(gts)
    expected = pycoco_with_corpus_df(
        [gts[i] for i in ids], [res[i][0] for i in ids], [gts[i] for i in ids], n, sigma
    )
    _, items = cider_d(gts, res, n=n, sigma=sigma)
    np.testing.assert_allclose(items, expected, rtol=0, atol=TOL)
    if n == 4:
        np.testing.assert_allclose(items, Cider(sigma=sigma).compute_score(gts, res)[1], atol=TOL)


def test_single_item_corpus_scores_zero() -> None:
    # log(N) = 0 with one item: every idf is 0, pycocoevalcap then returns 0.
    gts, res = {"a": ["a man rides a horse"]}, {"a": ["a man rides a horse"]}
    assert cider_d(gts, res)[0] == Cider().compute_score(gts, res)[0] == 0.0


def test_ciderd_with_evaluated_refs_as_corpus_equals_cider() -> None:
    gts, res = random_corpus(seed=6, n_items=200, vocab=300, max_refs=20, min_len=3, max_len=14)
    ids = list(gts)
    _, expected = Cider().compute_score(gts, res)
    scorer = CiderD(gts)
    got = scorer.scores([res[i][0] for i in ids], [gts[i] for i in ids])
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL)
    np.testing.assert_allclose(got, cider_d(gts, res)[1], rtol=0, atol=1e-12)
    # The corpus may also be given as a list of reference lists.
    list_scorer = CiderD([gts[i] for i in ids])
    list_got = list_scorer.scores([res[i][0] for i in ids], [gts[i] for i in ids])
    np.testing.assert_allclose(list_got, got)


@pytest.mark.parametrize(("seed", "n"), [(7, 4), (8, 4), (9, 4), (10, 1), (11, 3)])
def test_ciderd_scst_batch_uses_corpus_df(seed: int, n: int) -> None:
    """K samples per video, plus references and words the corpus never saw."""
    gts, _ = random_corpus(seed=seed, n_items=120, vocab=60, max_refs=20, min_len=1, max_len=12)
    corpus = list(gts.values())
    rng = np.random.default_rng(seed)
    cands, refs = [], []
    for video in rng.choice(len(corpus), 8, replace=False):
        for k in range(5):
            words = corpus[video][k % len(corpus[video])].split()
            rng.shuffle(words)
            kept = words[: rng.integers(0, len(words) + 1)]
            cands.append(" ".join(kept + ["unseenword"] * (k % 2)))
            refs.append(corpus[video])
    cands += ["w0 w1 w2", "novel words w0 w1", ""]
    refs += [
        ["w0 w1 w2 w3", "brand new reference w0 w1", corpus[0][0]],  # partly out of corpus
        ["novel words here", "novel words here"],  # entirely out of corpus, repeated
        corpus[1],
    ]
    expected = pycoco_with_corpus_df(corpus, cands, refs, n)
    got = CiderD(gts, n=n).scores(cands, refs)
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL)
    assert expected.max() > 0.1


def test_unusual_text() -> None:
    # Odd whitespace (split like str.split) and the NUL character that the fast
    # tokenizer uses to join sentences must not change any score.
    gts = {
        "a": ["  x\ty\n z ", "x  y", "x\x00y z"],
        "b": ["y\u3000z", "q w e r t"],
        "c": ["z z z", "x"],
    }
    res = {"a": [" x y "], "b": ["y z\x00"], "c": ["z z"]}
    _, expected = Cider().compute_score(gts, res)
    np.testing.assert_allclose(cider_d(gts, res)[1], expected, rtol=0, atol=TOL)
    got = CiderD(gts).scores([res[i][0] for i in gts], list(gts.values()))
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL)
    assert expected.max() > 0.1


def test_corpus_without_bigrams() -> None:
    corpus = [["one"], [""], ["two"]]
    cands, refs = ["one", "", "one two"], [["one"], [""], ["one two three", "two"]]
    expected = pycoco_with_corpus_df(corpus, cands, refs)
    np.testing.assert_allclose(CiderD(corpus).scores(cands, refs), expected, rtol=0, atol=TOL)


def test_input_errors() -> None:
    gts = {"a": ["x y"], "b": ["y z"]}
    with pytest.raises(ValueError, match="differ"):
        cider_d(gts, {"a": ["x"]})
    with pytest.raises(ValueError, match="exactly one"):
        cider_d(gts, {"a": ["x", "y"], "b": ["z"]})
    with pytest.raises(ValueError, match="empty reference"):
        cider_d({"a": []}, {"a": ["x"]})
    scorer = CiderD(gts)
    with pytest.raises(ValueError, match="2 candidates but 1"):
        scorer.scores(["x", "y"], [["x y"]])
    with pytest.raises(ValueError, match="empty reference"):
        scorer.scores(["x"], [[]])
    assert scorer.scores([], []).shape == (0,)
