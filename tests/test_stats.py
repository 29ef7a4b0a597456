"""Bootstrap intervals and verdicts (vidrepro.stats) on synthetic per-item scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vidrepro import stats


def items(values, ids=None, **extra) -> pd.DataFrame:
    ids = [f"v{i}" for i in range(len(values))] if ids is None else ids
    return pd.DataFrame({"item": ids, "score": values, **extra})


@pytest.mark.slow
def test_interval_covers_a_known_effect_about_95_percent_of_the_time():
    """Paired items with a true difference of 0.3: over many test sets drawn afresh, the 95%
    interval of the mean difference contains 0.3 in roughly 95% of them."""
    rng = np.random.default_rng(1)
    effect, covered, draws = 0.3, 0, 300
    for _ in range(draws):
        hard = rng.normal(0, 2, 80)  # item difficulty, shared by both rows
        a = hard + effect + rng.normal(0, 1, 80)
        b = hard + rng.normal(0, 1, 80)
        ci = stats.bootstrap(a - b, replicates=2000)
        covered += ci.lo <= effect <= ci.hi
    assert 0.91 <= covered / draws <= 0.985


def test_pairing_removes_item_difficulty():
    rng = np.random.default_rng(2)
    hard = rng.normal(0, 5, 200)
    a, b = hard + 1.0 + rng.normal(0, 0.1, 200), hard + rng.normal(0, 0.1, 200)
    paired = stats.paired_difference([items(a)], [items(b)], "score")
    assert stats.verdict(paired) == stats.HOLDS and paired.half_width < 0.05
    # unpaired, the two rows' own intervals overlap: difficulty swamps the effect
    ra, rb = stats.row_interval([items(a)], "score"), stats.row_interval([items(b)], "score")
    assert ra.lo < rb.hi


def test_zero_effect_is_unresolved_and_a_negative_one_reversed():
    rng = np.random.default_rng(3)
    a = rng.normal(0, 1, 300)
    same = stats.paired_difference([items(a + rng.normal(0, 0.5, 300))], [items(a)], "score")
    assert stats.verdict(same) == stats.UNRESOLVED
    worse = stats.paired_difference([items(a - 1)], [items(a)], "score")
    assert stats.verdict(worse) == stats.REVERSED and worse.mean == pytest.approx(-1)


def test_pairing_is_by_item_id_not_by_position():
    rng = np.random.default_rng(4)
    a, b = rng.normal(1, 1, 50), rng.normal(0, 1, 50)
    ordered = stats.paired_difference([items(a)], [items(b)], "score")
    order = rng.permutation(50)
    shuffled = items(b[order], ids=[f"v{i}" for i in order])
    assert stats.paired_difference([items(a)], [shuffled], "score") == ordered


def test_different_items_or_missing_metric_are_named_errors():
    with pytest.raises(ValueError, match="different items"):
        stats.paired_difference([items([1.0, 2.0])], [items([1.0, 2.0], ids=["v0", "x"])], "score")
    with pytest.raises(KeyError, match="no column 'CIDEr'"):
        stats.row_interval([items([1.0])], "CIDEr")


def test_weights_make_a_weighted_mean():
    frame = items([1.0, 1.0, 4.0], weight=[0.25, 0.25, 0.5])
    assert stats.row_interval([frame], "score").mean == pytest.approx(2.5)


def test_seeds_widen_the_interval_when_they_disagree():
    """The same items scored by three seeds that disagree by a constant: resampling seeds
    carries that spread into the interval; three identical seeds give the one-seed interval."""
    rng = np.random.default_rng(5)
    base = rng.normal(0, 1, 100)
    one = stats.row_interval([items(base)], "score")
    agree = stats.row_interval([items(base)] * 3, "score")
    disagree = stats.row_interval([items(base + shift) for shift in (-2, 0, 2)], "score")
    assert (agree.mean, agree.lo, agree.hi) == pytest.approx((one.mean, one.lo, one.hi))
    assert disagree.mean == pytest.approx(one.mean)
    assert disagree.half_width > 3 * one.half_width


def test_intervals_repeat_exactly():
    rng = np.random.default_rng(6)
    a = items(rng.normal(0, 1, 40))
    assert stats.row_interval([a], "score") == stats.row_interval([a], "score")
