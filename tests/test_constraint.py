"""The ordering constraint's fast argmax equals exhaustive search, index for index, ties included."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from vidrepro.metrics.constraint import (
    best_pair,
    best_state_change,
    brute_force_pair,
    brute_force_state_change,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def random_probs(
    n: int,
    batch: tuple[int, ...],
    length: int,
    seed: int,
    levels: int | None = None,
    zeros: float = 0.0,
) -> list[torch.Tensor]:
    """n tensors (*batch, T) in [0, 1); quantised to ``levels`` values (many ties) if given."""
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(n, *batch, length, generator=g)
    if levels:
        p = (p * levels).floor() / levels
    p[torch.rand(p.shape, generator=g) < zeros] = 0.0
    return list(p)


def assert_same(fast, slow) -> None:
    for name, x, y in zip(fast._fields, fast, slow):
        assert x.shape == y.shape, name
        assert torch.equal(x.cpu(), y.cpu()), f"{name}: {x} != {y}"


def loop_reference(p_init, p_action, p_end, max_distance=None) -> tuple[int, int, int]:
    """Plain Python over all triples in float32, to check the brute force itself."""
    with np.errstate(divide="ignore"):  # log 0 = -inf is meant
        li, la, le = (np.log(np.asarray(p, dtype=np.float32)) for p in (p_init, p_action, p_end))
    d = max_distance or len(li)
    triples = [
        (s1, a, s2)
        for s1, a, s2 in itertools.combinations(range(len(li)), 3)
        if a - s1 <= d and s2 - a <= d
    ]
    return min(triples, key=lambda t: (-(li[t[0]] + (la[t[1]] + le[t[2]])), t))


def quadratic_reference(p_init, p_action, p_end, max_distance=None) -> tuple[int, int, int]:
    """O(T^2) reference for long videos: pairwise (a, s2) then (s1, a) tables, same tie rule."""
    li, la, le = (torch.log(p.float()) for p in (p_init, p_action, p_end))  # (T,)
    t = torch.arange(len(li))
    d = max_distance or len(li)
    after = (t[None, :] > t[:, None]) & (t[None, :] - t[:, None] <= d)  # (T, T): [x, y>x]
    tail = torch.where(after, la[:, None] + le[None, :], -math.inf).amax(-1)  # (T,) per a
    table = torch.where(after, li[:, None] + tail[None, :], -math.inf)  # (T, T): [s1, a]
    best = table.max()
    s1, a = map(int, torch.nonzero((table == best) & after)[0])  # row-major: smallest (s1, a)
    row = li[s1] + (la[a] + le)  # (T,) over s2
    s2 = int(torch.nonzero((row == best) & after[a])[0, 0])
    return s1, a, s2


@pytest.mark.parametrize("length", [3, 4, 5, 17, 64])
@pytest.mark.parametrize("max_distance", [None, 1, 2, 7, 100])
@pytest.mark.parametrize("levels", [None, 3])
def test_equals_brute_force_batched(length, max_distance, levels):
    batch = 8 if length == 64 else 64
    probs = random_probs(
        3, (batch,), length, seed=length * 131 + (max_distance or 0), levels=levels
    )
    fast = best_state_change(*probs, max_distance=max_distance)
    assert fast.s1.shape == (batch,) and fast.s1.dtype == torch.long
    assert_same(fast, brute_force_state_change(*probs, max_distance=max_distance))
    assert torch.all((fast.s1 < fast.a) & (fast.a < fast.s2))
    if max_distance:
        assert torch.all((fast.a - fast.s1 <= max_distance) & (fast.s2 - fast.a <= max_distance))


@pytest.mark.parametrize("length", [3, 4, 17])
@pytest.mark.parametrize("max_distance", [None, 2])
def test_unbatched_and_leading_dims(length, max_distance):
    probs = random_probs(3, (2, 3), length, seed=length)
    fast = best_state_change(*probs, max_distance=max_distance)
    assert fast.s1.shape == (2, 3)
    assert_same(fast, brute_force_state_change(*probs, max_distance=max_distance))
    one = best_state_change(*(p[1, 2] for p in probs), max_distance=max_distance)
    assert one.s1.shape == () and one.log_score.shape == ()
    assert (int(one.s1), int(one.a), int(one.s2)) == (
        int(fast.s1[1, 2]),
        int(fast.a[1, 2]),
        int(fast.s2[1, 2]),
    )


@pytest.mark.parametrize("max_distance", [None, 2])
def test_brute_force_matches_python_loops(max_distance):
    """The reference itself: 20 videos (quantised, so with ties) against plain loops."""
    for seed in range(20):
        probs = random_probs(3, (), 8, seed=seed, levels=4 if seed % 2 else None)
        slow = brute_force_state_change(*probs, max_distance=max_distance)
        expected = loop_reference(*(p.numpy() for p in probs), max_distance)
        assert (int(slow.s1), int(slow.a), int(slow.s2)) == expected


def test_brute_force_chunks_agree():
    probs = random_probs(3, (16,), 23, seed=3, levels=2)
    for d in (None, 4):
        whole = brute_force_state_change(*probs, max_distance=d)
        assert_same(brute_force_state_change(*probs, max_distance=d, chunk=5), whole)


def test_ties_take_lexicographically_smallest():
    ones = torch.ones(3, 10)
    assert tuple(map(int, best_state_change(*ones)[:3])) == (0, 1, 2)
    assert tuple(map(int, best_state_change(*ones, max_distance=3)[:3])) == (0, 1, 2)
    p_init = torch.tensor([0.1, 0.5, 0.2, 0.5, 0.1, 0.1])
    p_action = torch.tensor([0.9, 0.1, 0.3, 0.3, 0.3, 0.0])
    p_end = torch.tensor([0.9, 0.9, 0.1, 0.1, 0.4, 0.4])
    assert tuple(map(int, best_state_change(p_init, p_action, p_end)[:3])) == (1, 2, 4)


NEAR_ONE = 1 - 2**-24  # log = -6e-8, which vanishes next to log(1e-20) = -46 in float32


@pytest.mark.parametrize(
    "probs, expected",
    [
        # (0, 1, 3) ties (1, 2, 3) only after rounding: the s1 choice
        (([NEAR_ONE, 1, 0, 0], [0, 1e-20, 1e-20, 0], [0, 0, 0, 1e-20]), (0, 1, 3)),
        # (0, 1, 3) ties (0, 2, 3) only after rounding: the a choice
        (([1e-20, 0, 0, 0], [0, NEAR_ONE, 1, 0], [0, 0, 0, 1]), (0, 1, 3)),
        # (0, 1, 2) ties (0, 1, 3) only after rounding: the s2 choice
        (([1e-20, 0, 0, 0], [0, 1, 0, 0], [0, 0, NEAR_ONE, 1]), (0, 1, 2)),
    ],
)
def test_rounding_ties_follow_the_rule(probs, expected):
    """Two triples whose terms differ can have equal float32 scores; the smallest still wins."""
    probs = [torch.tensor(p, dtype=torch.float32) for p in probs]
    fast = best_state_change(*probs)
    assert tuple(map(int, fast[:3])) == expected
    assert_same(fast, brute_force_state_change(*probs))
    exact = [torch.log(p.double()) for p in probs]  # without rounding, expected is not best
    s1, a, s2 = expected
    assert exact[0][s1] + exact[1][a] + exact[2][s2] < fast.log_score.double()


@pytest.mark.parametrize("max_distance", [None, 3])
def test_zeros(max_distance):
    zeros = torch.zeros(3, 9)
    fast = best_state_change(*zeros, max_distance=max_distance)
    assert tuple(map(int, fast[:3])) == (0, 1, 2) and fast.log_score == -math.inf
    probs = random_probs(3, (64,), 12, seed=5, zeros=0.6)  # many videos with -inf everywhere
    probs[1][:5] = 0.0  # and a video with no possible action at all
    assert_same(
        best_state_change(*probs, max_distance=max_distance),
        brute_force_state_change(*probs, max_distance=max_distance),
    )
    only = torch.zeros(3, 9)
    only[0, 6], only[1, 7], only[2, 8] = 1.0, 1.0, 1.0  # the only non-zero triple
    assert tuple(map(int, best_state_change(*only)[:3])) == (6, 7, 8)


def test_no_underflow():
    """Products of ~1e-25 probabilities underflow float32; the log-space argmax stays exact."""
    g = torch.Generator().manual_seed(0)
    probs = [10 ** -(20 + 10 * torch.rand(12, generator=g)) for _ in range(3)]  # float32
    assert float(probs[0].min() * probs[1].min() * probs[2].min()) == 0.0
    expected = max(
        itertools.combinations(range(12), 3),
        key=lambda t: np.prod([probs[k][t[k]].double().numpy() for k in range(3)]),
    )
    assert tuple(map(int, best_state_change(*probs)[:3])) == expected


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtypes(dtype):
    probs = [p.to(dtype) for p in random_probs(3, (32,), 17, seed=11)]
    fast = best_state_change(*probs, max_distance=5)
    assert fast.log_score.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert_same(fast, brute_force_state_change(*probs, max_distance=5))


def test_long_video_against_quadratic_reference():
    probs = random_probs(3, (2,), 1500, seed=7, levels=50)
    for d in (None, 500, 30):
        fast = best_state_change(*probs, max_distance=d)
        for b in range(2):
            got = (int(fast.s1[b]), int(fast.a[b]), int(fast.s2[b]))
            assert got == quadratic_reference(*(p[b] for p in probs), d)


def test_long_video_planted_answer():
    """Over the original kernel's 1024-frame limit; D = 500 rules out the best free triple."""
    p_init, p_action, p_end = (0.01 + 0.09 * p for p in random_probs(3, (), 1500, seed=8))
    p_init[100], p_init[1100], p_action[1300], p_end[1450] = 1.0, 0.9, 1.0, 1.0
    assert tuple(map(int, best_state_change(p_init, p_action, p_end)[:3])) == (100, 1300, 1450)
    assert tuple(map(int, best_state_change(p_init, p_action, p_end, 500)[:3])) == (
        1100,
        1300,
        1450,
    )


def test_errors():
    with pytest.raises(ValueError, match="length 2"):
        best_state_change(*torch.ones(3, 2))
    with pytest.raises(ValueError, match="length 0"):
        best_state_change(*torch.ones(3, 4, 0))
    with pytest.raises(ValueError, match="length 1"):
        best_pair(*torch.ones(2, 1))
    with pytest.raises(ValueError, match="same shape"):
        best_state_change(torch.ones(5), torch.ones(5), torch.ones(6))
    with pytest.raises(ValueError, match="max_distance"):
        best_state_change(*torch.ones(3, 5), max_distance=0)


@pytest.mark.parametrize("length", [2, 3, 16, 100])
@pytest.mark.parametrize("levels", [None, 2])
def test_best_pair(length, levels):
    p_init, p_end = random_probs(2, (32,), length, seed=length, levels=levels, zeros=0.2)
    fast = best_pair(p_init, p_end)
    assert_same(fast, brute_force_pair(p_init, p_end))
    assert torch.all(fast.i < fast.j)
    assert tuple(map(int, best_pair(torch.zeros(4), torch.zeros(4))[:2])) == (0, 1)
    one = best_pair(p_init[0], p_end[0])
    assert one.i.shape == () and (int(one.i), int(one.j)) == (int(fast.i[0]), int(fast.j[0]))


@pytest.mark.parametrize("device", DEVICES)
def test_devices(device):
    probs = [p.to(device) for p in random_probs(3, (16,), 40, seed=2, levels=5)]
    fast = best_state_change(*probs, max_distance=9)
    assert fast.s1.device.type == device
    assert_same(fast, brute_force_state_change(*probs, max_distance=9))
    assert_same(best_pair(probs[0], probs[2]), brute_force_pair(probs[0], probs[2]))
