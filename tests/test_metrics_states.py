"""State / action precision@1 of the object-state-change evaluation, on hand-computed videos."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import torch

from vidrepro.metrics.states import (
    METRICS,
    VideoPrediction,
    aggregate,
    evaluate,
    score_video,
)

# second: 0  1  2  3  4  5  6  7  8  9
LABELS = [0, 1, 1, 0, 2, 2, 0, 3, 3, 0]  # initial state 1-2, action 4-5, end state 7-8


def peaked(peak: int, length: int = len(LABELS), high: float = 0.9, low: float = 0.1):
    """Probabilities ``low`` everywhere but ``high`` at ``peak``."""
    p = np.full(length, low)
    p[peak] = high
    return p


def video(
    init: int, action: int, end: int, labels=LABELS, category: str = "apple", video_id: str = "v"
) -> VideoPrediction:
    n = len(labels)
    return VideoPrediction(
        category, video_id, peaked(init, n), peaked(action, n), peaked(end, n), np.asarray(labels)
    )


def scores_of(v: VideoPrediction, **kw) -> dict:
    return score_video(v.p_init, v.p_action, v.p_end, v.labels, video=v.video_id, **kw)


def metrics(row: dict) -> tuple[float, ...]:
    return tuple(row[k] for k in METRICS)


# ---------------------------------------------------------------------------------------------
# One video.


def test_perfect_prediction_scores_one():
    row = scores_of(video(init=1, action=4, end=7))
    assert metrics(row) == (1.0, 1.0, 1.0, 1.0)
    assert (row["init_frame"], row["end_frame"], row["action_frame"]) == (1, 7, 4)
    assert (row["joint_init_frame"], row["joint_action_frame"], row["joint_end_frame"]) == (1, 4, 7)


def test_only_end_state_right_scores_half():
    # Initial state picked on background second 0, end state on second 8 (an end state).
    row = scores_of(video(init=0, action=4, end=8))
    assert row["state_p1"] == 0.5
    assert row["joint_state_p1"] == 0.5  # joint triple (0, 4, 8)
    assert row["action_p1"] == row["joint_action_p1"] == 1.0


def test_wrong_action_scores_zero():
    # Action peak on second 9 (background). The joint triple cannot put the action after the end
    # state at 7: (1, a, 7) ties for a in 2..6 and the smallest, a = 2 (initial state), wins.
    row = scores_of(video(init=1, action=9, end=7))
    assert metrics(row) == (1.0, 0.0, 1.0, 0.0)
    assert row["action_frame"] == 9
    assert row["joint_action_frame"] == 2


def test_joint_constraint_moves_the_end_state():
    # Independent: pair (0, 1) = 0.81, action at 2. Joint: the end state must follow the action,
    # (0, 2, 3) and (0, 2, 4) tie at 0.081 and s2 = 3 (background) wins.
    labels = [1, 3, 2, 0, 3]
    p_init, p_end, p_action = peaked(0, 5), peaked(1, 5), peaked(2, 5)
    row = score_video(p_init, p_action, p_end, labels)
    assert metrics(row) == (1.0, 1.0, 0.5, 1.0)
    assert (row["joint_init_frame"], row["joint_action_frame"], row["joint_end_frame"]) == (0, 2, 3)
    # With a - s1 <= 1 and s2 - a <= 1: (0, 1, 2) and (1, 2, 3) tie at 0.009, (0, 1, 2) wins.
    near = score_video(p_init, p_action, p_end, labels, max_distance=1)
    assert (near["joint_state_p1"], near["joint_action_p1"]) == (0.5, 0.0)
    assert near["state_p1"] == 1.0 and near["action_p1"] == 1.0  # unaffected by the limit


def test_ties_take_the_earliest_frames():
    row = score_video(np.ones(3), np.ones(3), np.ones(3), [1, 3, 2])
    # pair (0, 1) is right; action 0 (not 2, the action) is an initial state; triple (0, 1, 2)
    # has its end state on the action and its action on the end state.
    assert metrics(row) == (1.0, 0.0, 0.5, 0.0)
    assert (row["init_frame"], row["end_frame"], row["action_frame"]) == (0, 1, 0)


def test_matches_the_definition_by_exhaustive_search():
    """Random continuous probabilities (no ties): the argmaxes of the definition, by loops."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(3, 12))
        pi, pa, pe = rng.random((3, n))
        labels = rng.integers(0, 4, n)
        i, j = max(itertools.combinations(range(n), 2), key=lambda t: pi[t[0]] * pe[t[1]])
        s1, a, s2 = max(
            itertools.combinations(range(n), 3), key=lambda t: pi[t[0]] * pa[t[1]] * pe[t[2]]
        )
        row = score_video(pi, pa, pe, labels)
        assert row["state_p1"] == 0.5 * (labels[i] == 1) + 0.5 * (labels[j] == 3)
        assert row["action_p1"] == float(labels[np.argmax(pa)] == 2)
        assert row["joint_state_p1"] == 0.5 * (labels[s1] == 1) + 0.5 * (labels[s2] == 3)
        assert row["joint_action_p1"] == float(labels[a] == 2)


# ---------------------------------------------------------------------------------------------
# Aggregation.


def four_videos(order=None) -> list[VideoPrediction]:
    videos = [
        video(1, 4, 7, category="apple", video_id="a1"),  # 1, 1, 1, 1
        video(0, 4, 8, category="apple", video_id="a2"),  # .5, 1, .5, 1
        video(1, 9, 7, category="apple", video_id="a3"),  # 1, 0, 1, 0
        video(0, 0, 9, category="bacon", video_id="b1"),  # 0, 0, 0, 0 (joint triple (0, 1, 9))
    ]
    return videos if order is None else [videos[k] for k in order]


def test_mean_per_category_then_over_categories():
    result = evaluate(four_videos())
    assert result.per_category["apple"] == pytest.approx(
        {"state_p1": 5 / 6, "action_p1": 2 / 3, "joint_state_p1": 5 / 6, "joint_action_p1": 2 / 3}
    )
    assert result.per_category["bacon"] == {k: 0.0 for k in METRICS}
    assert result.summary == pytest.approx(
        {"state_p1": 5 / 12, "action_p1": 1 / 3, "joint_state_p1": 5 / 12, "joint_action_p1": 1 / 3}
    )
    flat = {k: np.mean([r[k] for r in result.rows]) for k in METRICS}
    assert flat["state_p1"] == pytest.approx(0.625) and flat["action_p1"] == pytest.approx(0.5)
    assert result.summary["action_p1"] != pytest.approx(flat["action_p1"])
    assert result.num_videos == {"apple": 3, "bacon": 1}
    assert result.percent()["action_p1"] == pytest.approx(100 / 3)
    assert [r["video"] for r in result.rows] == ["a1", "a2", "a3", "b1"]


def test_order_of_videos_does_not_matter_and_aggregate_pools_rows():
    result = evaluate(four_videos())
    shuffled = evaluate(four_videos(order=[3, 1, 0, 2]))
    assert shuffled.summary == pytest.approx(result.summary)
    assert list(shuffled.per_category) == ["apple", "bacon"]
    pooled = aggregate(evaluate(four_videos()[:2]).rows + evaluate(four_videos()[2:]).rows)
    assert pooled.summary == pytest.approx(result.summary)


def test_evaluate_rejects_duplicates_and_empty_input():
    with pytest.raises(ValueError, match="apple/a1: video given twice"):
        evaluate(four_videos()[:1] * 2)
    with pytest.raises(ValueError, match="no videos"):
        evaluate([])


# ---------------------------------------------------------------------------------------------
# Frame count vs annotation length.


@pytest.mark.parametrize("extra", [-2, -1, 1, 2])
def test_mismatch_within_tolerance_scores_the_common_prefix(extra):
    frames = len(LABELS) + extra
    v = VideoPrediction(
        "apple", "x", peaked(1, frames), peaked(4, frames), peaked(7, frames), np.asarray(LABELS)
    )
    row = evaluate([v]).rows[0]
    assert metrics(row) == (1.0, 1.0, 1.0, 1.0)
    assert (row["frames"], row["mismatch"]) == (min(frames, len(LABELS)), extra)


def test_frames_past_the_annotation_are_never_picked():
    # 11 frames, 10 labels: the action peak on frame 10 has no label and is cut off; the next
    # best frame, 4, is an action.
    p_action = peaked(10, 11)
    p_action[4] = 0.5
    row = score_video(peaked(1, 11), p_action, peaked(7, 11), LABELS)
    assert (row["action_p1"], row["action_frame"], row["mismatch"]) == (1.0, 4, 1)


@pytest.mark.parametrize("extra", [-3, 3])
def test_mismatch_beyond_tolerance_names_the_video(extra):
    frames = len(LABELS) + extra
    v = VideoPrediction(
        "apple", "yt_Xq81", peaked(1, frames), peaked(4, frames), peaked(6, frames), LABELS
    )
    with pytest.raises(ValueError, match=r"apple/yt_Xq81: .*differ by 3, tolerance 2"):
        evaluate([v])
    assert evaluate([v], tolerance=3).rows[0]["mismatch"] == extra


def test_zero_tolerance_requires_equal_lengths():
    with pytest.raises(ValueError, match="clip7"):
        score_video(peaked(1, 11), peaked(4, 11), peaked(7, 11), LABELS, video="clip7", tolerance=0)


# ---------------------------------------------------------------------------------------------
# Too short videos.


def test_two_frames_have_no_joint_triple():
    row = score_video([0.9, 0.1], [0.1, 0.9], [0.1, 0.9], [1, 3], video="short")
    assert metrics(row) == (1.0, 0.0, 0.0, 0.0)
    assert row["joint_action_frame"] == -1
    with pytest.raises(ValueError, match="short: joint precision needs at least 3 frames, got 2"):
        score_video([0.9, 0.1], [0.1, 0.9], [0.1, 0.9], [1, 3], video="short", short="raise")


def test_shortness_counts_after_the_prefix_cut():
    # 4 frames, 2 labels (within tolerance): scored on 2 seconds, so no joint triple.
    row = score_video(peaked(0, 4), peaked(1, 4), peaked(1, 4), [1, 2])
    assert (row["frames"], row["mismatch"]) == (2, 2)
    assert metrics(row) == (0.5, 1.0, 0.0, 0.0)


def test_one_frame_has_only_an_action_and_no_frame_raises():
    row = score_video([1.0], [1.0], [1.0], [2])
    assert metrics(row) == (0.0, 1.0, 0.0, 0.0)
    assert row["init_frame"] == row["end_frame"] == -1
    with pytest.raises(ValueError, match="empty: nothing to score"):
        score_video([], [], [], [], video="empty")


def test_short_videos_stay_in_the_mean():
    result = evaluate(
        [
            video(1, 4, 7, video_id="long"),
            VideoPrediction("apple", "tiny", [0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [1, 3]),
        ]
    )
    # tiny: state 1, action 0 (initial state), joint 0 / 0.
    assert result.summary == pytest.approx(
        {"state_p1": 1.0, "action_p1": 0.5, "joint_state_p1": 0.5, "joint_action_p1": 0.5}
    )


# ---------------------------------------------------------------------------------------------
# Input types and validation.


def test_torch_numpy_and_lists_give_the_same_scores():
    g = torch.Generator().manual_seed(1)
    for seed in range(10):
        n = 4 + seed
        probs = (torch.rand(3, n, generator=g) * 4).floor() / 4  # quantised: many ties
        labels = torch.randint(0, 4, (n,), generator=g)
        as_torch = score_video(*probs, labels)
        as_numpy = score_video(*(p.numpy() for p in probs), labels.numpy())
        as_lists = score_video(*(p.tolist() for p in probs), labels.tolist())
        as_half = score_video(*(p.half() for p in probs), labels.int())  # quarters are exact
        assert as_torch == as_numpy == as_lists == as_half


def test_evaluate_accepts_mixed_inputs():
    v = video(0, 4, 8)
    as_torch = VideoPrediction(
        "apple",
        "t",
        torch.from_numpy(v.p_init),
        torch.tensor(v.p_action),
        torch.tensor(v.p_end, dtype=torch.float32),
        torch.tensor(LABELS),
    )
    assert evaluate([as_torch]).summary == evaluate([v]).summary


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"p_end": peaked(7, 9)}, "differ in length"),
        ({"p_init": -peaked(1)}, "finite probabilities >= 0"),
        ({"p_action": np.full(10, np.nan)}, "finite probabilities >= 0"),
        ({"p_init": np.ones((2, 10))}, "must be 1-D"),
        ({"labels": np.asarray(LABELS) + 1}, "labels must be integers 0-3"),
        ({"labels": np.asarray(LABELS, dtype=float)}, "labels must be integers 0-3"),
        ({"short": "skip"}, "short must be"),
    ],
)
def test_bad_inputs_raise(bad, message):
    args = {
        "p_init": peaked(1),
        "p_action": peaked(4),
        "p_end": peaked(7),
        "labels": LABELS,
        "video": "v9",
    }
    with pytest.raises(ValueError, match=message):
        score_video(**{**args, **bad})


def test_many_random_videos_stay_in_range():
    rng = random.Random(3)
    videos = [
        video(*(rng.randrange(10) for _ in range(3)), category=f"c{k % 3}", video_id=str(k))
        for k in range(30)
    ]
    result = evaluate(videos)
    assert all(0.0 <= v <= 1.0 for v in result.summary.values())
    assert sum(result.num_videos.values()) == 30


def test_weighted_per_video_scores_average_to_the_summary(tmp_path, monkeypatch):
    """Categories of 3 and 1 videos: only the weights make the per-video mean the summary (a
    mean over categories), and they survive ``items.csv``."""
    from vidrepro import runs

    result = evaluate(four_videos())
    items = result.item_scores()
    assert [r["item"] for r in items] == ["apple/a1", "apple/a2", "apple/a3", "bacon/b1"]
    assert [r["weight"] for r in items] == pytest.approx([2 / 3, 2 / 3, 2 / 3, 2.0])
    monkeypatch.setenv(runs.RUN_DIR_ENV, str(tmp_path))
    runs.log_items(items)
    frame = runs.read_items(tmp_path)
    assert frame["item"].tolist() == [r["item"] for r in items]
    for k in METRICS:
        weighted = (frame[k] * frame["weight"]).sum() / frame["weight"].sum()
        assert weighted == pytest.approx(result.summary[k], rel=1e-12), k
    assert frame["action_p1"].mean() != pytest.approx(result.summary["action_p1"])
