"""Story-ordering metrics must match scipy / plain loops, and exhaustive decoding brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import spearmanr

from vidrepro.metrics.ordering import (
    AFTER,
    BEFORE,
    SAME,
    all_permutations,
    best_order,
    ordering_metrics,
    ordering_metrics_per_story,
    pairwise_accuracy,
    position_distance,
    positions_from_order,
    score_permutations,
    spearman,
)


def random_perms(rng: np.random.Generator, b: int, n: int) -> np.ndarray:
    """``(b, n)`` independent random permutations."""
    return np.argsort(rng.random((b, n)), axis=1)


def loop_pairwise(pred: np.ndarray, true: np.ndarray) -> float:
    """Plain-Python pairwise accuracy, the reference for the vectorised one."""
    fracs = []
    for p, t in zip(pred.tolist(), true.tolist()):
        n = len(p)
        pairs = list(itertools.combinations(range(n), 2))
        right = sum((p[i] < p[j]) == (t[i] < t[j]) for i, j in pairs)
        fracs.append(right / len(pairs))
    return sum(fracs) / len(fracs)


def loop_distance(pred: np.ndarray, true: np.ndarray) -> float:
    """Plain-Python mean absolute position difference."""
    diffs = [abs(a - b) for p, t in zip(pred.tolist(), true.tolist()) for a, b in zip(p, t)]
    return sum(diffs) / len(diffs)


@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_spearman_matches_scipy(n: int) -> None:
    rng = np.random.default_rng(n)
    pred, true = random_perms(rng, 200, n), random_perms(rng, 200, n)
    ref = np.mean([spearmanr(p, t).statistic for p, t in zip(pred, true)])
    assert spearman(pred, true) == pytest.approx(ref, abs=1e-12)
    ref_id = np.mean([spearmanr(p, np.arange(n)).statistic for p in pred])
    assert spearman(pred) == pytest.approx(ref_id, abs=1e-12)


@pytest.mark.parametrize("n", [2, 4, 5, 7])
def test_pairwise_and_distance_match_loops(n: int) -> None:
    rng = np.random.default_rng(100 + n)
    pred, true = random_perms(rng, 150, n), random_perms(rng, 150, n)
    assert pairwise_accuracy(pred, true) == pytest.approx(loop_pairwise(pred, true))
    assert position_distance(pred, true) == pytest.approx(loop_distance(pred, true))
    ident = np.tile(np.arange(n), (150, 1))
    assert pairwise_accuracy(pred) == pytest.approx(loop_pairwise(pred, ident))
    assert position_distance(pred) == pytest.approx(loop_distance(pred, ident))


def test_ordering_metrics_agrees_with_singles() -> None:
    rng = np.random.default_rng(0)
    pred, true = random_perms(rng, 50, 5), random_perms(rng, 50, 5)
    got = ordering_metrics(pred, true)
    assert set(got) == {"spearman", "pairwise_acc", "distance"}
    assert got["spearman"] == spearman(pred, true)
    assert got["pairwise_acc"] == pairwise_accuracy(pred, true)
    assert got["distance"] == position_distance(pred, true)


def test_identity_and_reversed() -> None:
    assert ordering_metrics([[0, 1, 2, 3, 4]] * 3) == {
        "spearman": 1.0,
        "pairwise_acc": 1.0,
        "distance": 0.0,
    }
    rev = ordering_metrics([[4, 3, 2, 1, 0]])
    assert rev["spearman"] == pytest.approx(-1.0)
    assert rev["pairwise_acc"] == 0.0
    assert rev["distance"] == pytest.approx(12 / 5)


def test_accepts_lists_and_single_row() -> None:
    assert ordering_metrics([1, 0, 2]) == ordering_metrics(np.array([[1, 0, 2]]))
    # a single true row is shared by the whole batch
    assert spearman([[0, 1, 2], [2, 1, 0]], [0, 1, 2]) == pytest.approx(0.0)


def test_positions_from_order() -> None:
    order = np.array([[2, 0, 1], [0, 1, 2]])  # item 2 first, then 0, then 1
    np.testing.assert_array_equal(positions_from_order(order), [[1, 2, 0], [0, 1, 2]])
    rng = np.random.default_rng(1)
    o = random_perms(rng, 40, 6)
    pos = positions_from_order(o)
    ident = np.tile(np.arange(6), (40, 1))
    np.testing.assert_array_equal(np.take_along_axis(o, pos, axis=1), ident)
    np.testing.assert_array_equal(positions_from_order(pos), o)  # inverse of an inverse


@pytest.mark.parametrize(
    ("bad", "row"),
    [
        ([[0, 1, 2], [0, 0, 2]], 1),  # duplicate
        ([[0, 1, 2], [0, 1, 2], [1, 2, 3]], 2),  # out of range
        ([[0, -1, 1]], 0),  # negative
    ],
)
def test_invalid_rows_name_the_row(bad: list[list[int]], row: int) -> None:
    with pytest.raises(ValueError, match=rf"row {row} is not a permutation"):
        ordering_metrics(bad)
    with pytest.raises(ValueError, match=rf"row {row} is not a permutation"):
        spearman([[0, 1, 2]] * len(bad), bad)
    with pytest.raises(ValueError, match=rf"order row {row}"):
        positions_from_order(bad)


@pytest.mark.parametrize(
    "bad",
    [
        [[0.0, 1.0]],  # floats
        [[0]],  # n < 2
        np.zeros((0, 3), dtype=int),  # empty batch
        np.zeros((2, 2, 2), dtype=int),  # wrong rank
    ],
)
def test_invalid_shapes_and_dtypes(bad: object) -> None:
    with pytest.raises(ValueError):
        spearman(bad)


def test_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        spearman([[0, 1, 2]] * 2, [[0, 1, 2]] * 3)


def test_all_permutations() -> None:
    perms = all_permutations(5)
    assert perms.shape == (120, 5)
    assert len({tuple(p) for p in perms.tolist()}) == 120
    assert all_permutations(5) is perms  # cached
    assert not perms.flags.writeable
    with pytest.raises(ValueError):
        all_permutations(0)


def brute_scores(lp: np.ndarray) -> np.ndarray:
    """Scores by looping over itertools.permutations, straight from the formula."""
    n = lp.shape[1]
    out = []
    for table in lp:
        row = []
        for p in itertools.permutations(range(n)):
            s = sum(table[k, p[k], SAME] for k in range(n))
            s += sum(
                table[k, p[m], BEFORE if k < m else AFTER]
                for k in range(n)
                for m in range(n)
                if k != m
            )
            row.append(s)
        out.append(row)
    return np.array(out)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_score_permutations_matches_brute_force(n: int) -> None:
    rng = np.random.default_rng(7 + n)
    logits = rng.normal(size=(4, n, n, 3))
    lp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    scores = score_permutations(lp)
    assert scores.shape == (4, len(all_permutations(n)))
    np.testing.assert_allclose(scores, brute_scores(lp), rtol=1e-12, atol=1e-12)
    best = best_order(lp)
    np.testing.assert_array_equal(best, all_permutations(n)[brute_scores(lp).argmax(1)])


def pair_table(order: np.ndarray, hit: float = 0.9) -> np.ndarray:
    """Confident ``(n, n, 3)`` log-probs consistent with image ``order[k]`` at step ``k``."""
    n = len(order)
    step_of_image = np.argsort(order)
    lp = np.full((n, n, 3), np.log((1 - hit) / 2))
    for k in range(n):
        for j in range(n):
            s = step_of_image[j]
            cls = SAME if k == s else BEFORE if k < s else AFTER
            lp[k, j, cls] = np.log(hit)
    return lp


def test_best_order_recovers_known_order() -> None:
    rng = np.random.default_rng(3)
    orders = random_perms(rng, 10, 5)
    lp = np.stack([pair_table(o) for o in orders])
    np.testing.assert_array_equal(best_order(lp), orders)
    assert ordering_metrics(positions_from_order(best_order(lp)), positions_from_order(orders)) == {
        "spearman": 1.0,
        "pairwise_acc": 1.0,
        "distance": 0.0,
    }


def test_score_permutations_rejects_bad_shape() -> None:
    with pytest.raises(ValueError, match=r"\(B, n, n, 3\)"):
        score_permutations(np.zeros((5, 5, 3)))
    with pytest.raises(ValueError):
        score_permutations(np.zeros((1, 5, 5, 4)))


def test_per_story_metrics_average_to_the_corpus_ones() -> None:
    rng = np.random.default_rng(7)
    pred, true = random_perms(rng, 50, 5), random_perms(rng, 50, 5)
    rows = ordering_metrics_per_story(pred, true)
    assert {k: v.shape for k, v in rows.items()} == {k: (50,) for k in ordering_metrics(pred)}
    whole = ordering_metrics(pred, true)
    for name, values in rows.items():
        assert values.mean() == pytest.approx(whole[name], rel=1e-12), name
    assert len(set(rows["spearman"].tolist())) > 1
    assert rows["spearman"][3] == pytest.approx(spearmanr(pred[3], true[3]).statistic)
    assert rows["pairwise_acc"][3] == pytest.approx(loop_pairwise(pred[3:4], true[3:4]))
    assert rows["distance"][3] == pytest.approx(loop_distance(pred[3:4], true[3:4]))
