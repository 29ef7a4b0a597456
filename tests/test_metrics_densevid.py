"""densevid_eval reimplementation: tIoU, matching, per-video scoring, detection, input checks.

Hand-made examples pin down the protocol (which pairs are scored, what
counts 0, where ``>=`` and ``>`` differ); the Java tests check that the
batched implementation (one tokenizer run, one METEOR process) still gives
the original's per-video scores.
"""

from __future__ import annotations

import re
import shutil
import string
from typing import Any, ClassVar

import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge

from vidrepro.metrics import captions, densevid
from vidrepro.metrics.captions import METRICS
from vidrepro.metrics.densevid import (
    TIOUS,
    Pair,
    detection_scores,
    evaluate_dense_captions,
    match_segments,
    score_videos,
    summarize,
    tiou,
)

requires_java = pytest.mark.skipif(shutil.which("java") is None, reason="needs a java runtime")
G = None  # a garbage reference in expected pairs


def _preds(*items: tuple[list[float], str]) -> list[dict[str, Any]]:
    return [{"timestamp": seg, "sentence": sent} for seg, sent in items]


# ----------------------------------------------------------------------- tIoU


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([0, 10], [0, 10], 1.0),
        ([0, 5], [0, 10], 0.5),  # inside: 5 / 10
        ([0, 10], [5, 15], 1 / 3),  # overlap 5, union 15
        ([0, 3], [0, 10], 0.3),
        ([2, 4], [0, 10], 0.2),
        ([0, 5], [5, 10], 0.0),  # touching
        ([0, 5], [7, 9], 0.0),  # disjoint
        ([3, 3], [0, 10], 0.0),  # zero length
        ([3, 3], [3, 3], 0.0),  # empty union
    ],
)
def test_tiou_hand_computed(a: list[float], b: list[float], expected: float) -> None:
    assert tiou(a, b) == pytest.approx(expected, abs=1e-12)
    assert tiou(b, a) == pytest.approx(expected, abs=1e-12)


def test_tiou_is_exact_at_thresholds_unless_the_original_epsilon_is_asked_for() -> None:
    """The original's ``union + 1e-8`` puts a tIoU of exactly 0.5 just below 0.5."""
    assert tiou([0, 5], [0, 10]) == 0.5
    assert tiou([0, 3], [0, 10]) == 0.3
    assert tiou([0, 5], [0, 10], eps=1e-8) < 0.5


# ------------------------------------------------------------------- matching

REFS = {
    "v1": {"timestamps": [[0, 10], [5, 15]], "sentences": ["r one", "r two"]},
    "v2": {"timestamps": [[0, 10]], "sentences": ["r three"]},
}
PREDS = {
    # tIoU with v1's refs: p0 (1, 1/3), p1 (0.5, 0), p2 (0, 0)
    "v1": _preds(([0, 10], "p a"), ([0, 5], "p b"), ([30, 40], "p c")),
    # tIoU with v2's ref: p0 0.8, p1 exactly 0.3
    "v2": _preds(([0, 8], "p d"), ([0, 3], "p e")),
    "not_in_refs": _preds(([0, 1], "ignored")),
}
EXPECTED_PAIRS = {
    0.3: {"v1": [(0, (0, 0)), (0, (0, 1)), (1, (0, 0)), (2, G)], "v2": [(0, (0, 0)), (1, (0, 0))]},
    0.5: {"v1": [(0, (0, 0)), (1, (0, 0)), (2, G)], "v2": [(0, (0, 0)), (1, G)]},
    0.7: {"v1": [(0, (0, 0)), (1, G), (2, G)], "v2": [(0, (0, 0)), (1, G)]},
    0.9: {"v1": [(0, (0, 0)), (1, G), (2, G)], "v2": [(0, G), (1, G)]},
}


@pytest.mark.parametrize("threshold", TIOUS)
def test_matching_pairs_at_each_threshold(threshold: float) -> None:
    """Every ``>=`` match is a unit (ties included); unmatched predictions get garbage."""
    got = match_segments(REFS, PREDS, threshold)
    assert got == {v: [Pair(*p) for p in pairs] for v, pairs in EXPECTED_PAIRS[threshold].items()}


def test_matching_pools_reference_sets_and_adds_garbage_once() -> None:
    """val_1 and val_2 are pooled; garbage only when nothing matches in any set."""
    second = {"v1": {"timestamps": [[30, 40]], "sentences": ["r four"]}, "v3": REFS["v2"]}
    got = match_segments([REFS, second], PREDS, 0.7)
    assert got["v1"] == [Pair(0, (0, 0)), Pair(1, G), Pair(2, (1, 0))]
    assert got["v2"] == [Pair(0, (0, 0)), Pair(1, G)]
    assert got["v3"] == []  # a reference video without predictions has no unit


def test_matching_with_the_original_epsilon_drops_exact_ties() -> None:
    got = match_segments(REFS, PREDS, 0.5, tiou_eps=1e-8)
    assert got["v1"] == [Pair(0, (0, 0)), Pair(1, G), Pair(2, G)]


def test_only_the_first_max_proposals_predictions_count() -> None:
    got = match_segments(REFS, PREDS, 0.5, max_proposals=1)
    assert got == {"v1": [Pair(0, (0, 0))], "v2": [Pair(0, (0, 0))]}


def test_garbage_is_seeded_lowercase_of_length_10_to_20() -> None:
    import random

    words = [densevid._garbage(random.Random(3)) for _ in range(2)]
    assert words[0] == words[1]
    assert 10 <= len(words[0]) <= 20 and set(words[0]) <= set(string.ascii_lowercase)


# ------------------------------------------------------------------ detection

REFS_DET = {**REFS, "v3": {"timestamps": [[0, 1]], "sentences": ["r five"]}}  # no prediction


def test_precision_recall_are_strict_and_hand_computed() -> None:
    """At 0.5, v1's p1 (tIoU exactly 0.5) covers nothing; at 0.3, v2's p1 (exactly 0.3) neither.

    0.5: v1 P 1/3 R 1/2, v2 P 1/2 R 1, v3 0 0.  0.3: v1 P 2/3 R 1, v2 P 1/2 R 1, v3 0 0.
    """
    at_05 = detection_scores(REFS_DET, PREDS, 0.5)
    assert at_05["Precision"] == pytest.approx((1 / 3 + 1 / 2) / 3)
    assert at_05["Recall"] == pytest.approx((1 / 2 + 1) / 3)
    at_03 = detection_scores(REFS_DET, PREDS, 0.3)
    assert at_03["Precision"] == pytest.approx((2 / 3 + 1 / 2) / 3)
    assert at_03["Recall"] == pytest.approx(2 / 3)


def test_precision_recall_take_the_best_reference_set_each() -> None:
    """Precision and recall maxima come from different sets, as in the original.

    v1 at 0.5 against REFS: P 1/3 (only p0 covers), R 1/2. Against the second
    set: p1 covers [0, 5] and p2 [30, 40], so P 2/3, R 2/5.
    """
    second = {
        "v1": {
            "timestamps": [[0, 5], [30, 40], [100, 110], [200, 210], [300, 310]],
            "sentences": ["s"] * 5,
        }
    }
    for sets in ([{"v1": REFS["v1"]}, second], [second, {"v1": REFS["v1"]}]):
        got = detection_scores(sets, {"v1": PREDS["v1"]}, 0.5)
        assert got == pytest.approx({"Precision": 2 / 3, "Recall": 1 / 2})


def test_empty_prediction_list_scores_zero() -> None:
    assert detection_scores(REFS, {"v1": [], "v2": []}, 0.5) == {"Recall": 0.0, "Precision": 0.0}


def test_summarize_averages_over_videos_then_thresholds() -> None:
    def same(x: float) -> dict[str, float]:
        return dict.fromkeys((*METRICS, "Recall", "Precision"), x)

    got = summarize({0.3: {"a": same(1.0), "b": same(0.0)}, 0.5: {"a": same(0.2), "b": same(0.0)}})
    assert got["CIDEr@0.3"] == 0.5 and got["Recall@0.5"] == pytest.approx(0.1)
    assert got["METEOR"] == pytest.approx(0.3)


def test_no_prediction_at_all_scores_zero_without_java() -> None:
    scores = evaluate_dense_captions(REFS, {})
    assert set(scores) >= {"METEOR", "Bleu_4", "CIDEr", "Recall", "Precision", "METEOR@0.5"}
    assert all(v == 0.0 for v in scores.values())


# --------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("refs", "preds", "error", "match"),
    [
        ({"vid_x": {"sentences": ["a"]}}, {}, ValueError, r"vid_x.*'timestamps'"),
        ({"vid_x": {"timestamps": [[0, 1]]}}, {}, ValueError, r"vid_x.*'sentences'"),
        (
            {"vid_x": {"timestamps": [[0, 1], [1, 2]], "sentences": ["a"]}},
            {},
            ValueError,
            r"vid_x.*2 'timestamps' but 1 'sentences'",
        ),
        ({"vid_x": {"timestamps": [[5, 1]], "sentences": ["a"]}}, {}, ValueError, r"vid_x.*start"),
        ({"vid_x": {"timestamps": [], "sentences": []}}, {}, ValueError, r"vid_x.*no segments"),
        ({"vid_x": {"timestamps": [[0]], "sentences": ["a"]}}, {}, ValueError, r"vid_x.*\[start"),
        (REFS, {"vid_p": [{"sentence": "a"}]}, ValueError, r"vid_p.*'timestamp'"),
        (REFS, {"vid_p": [{"timestamp": [0, 1]}]}, ValueError, r"vid_p.*'sentence'"),
        (REFS, {"vid_p": _preds(([3, 2], "a"))}, ValueError, r"vid_p.*start 3.0 > end 2.0"),
        (REFS, {"vid_p": _preds(([0, float("nan")], "a"))}, ValueError, r"vid_p.*non-finite"),
        (REFS, {"vid_p": _preds(([0, 1], 7))}, TypeError, r"vid_p.*'sentence' must be str"),
        (REFS, {"vid_p": {"timestamp": [0, 1]}}, TypeError, r"vid_p.*list of dicts"),
    ],
)
def test_malformed_input_names_the_video(
    refs: Any, preds: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        evaluate_dense_captions(refs, preds)


@pytest.mark.parametrize("refs", [{}, [], [{}, {}]])
def test_empty_references_are_rejected(refs: Any) -> None:
    with pytest.raises(ValueError, match="no reference video"):
        evaluate_dense_captions(refs, {})


@pytest.mark.parametrize("tious", [(), (0.0,), (0.5, 1.5), (0.5, 0.5)])
def test_bad_thresholds_are_rejected(tious: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="tIoU|tious"):
        evaluate_dense_captions(REFS, {}, tious=tious)


# -------------------------------------------------------------- Java scoring

SENTS = [
    "a man rides a brown horse on the beach",
    "the man jumps off the horse and waves",
    "a dog runs along the shore after him",
]
SEGS = [[0, 10], [20, 30], [40, 50]]
ANN = {"timestamps": SEGS, "sentences": SENTS}
REFS_AB = {"A": ANN, "B": ANN}  # same content, so a perfect video scores the same in both
PERFECT = _preds(*zip(SEGS, SENTS))


class _RecordingMeteor(Meteor):
    instances: ClassVar[list[Meteor]] = []

    def __init__(self) -> None:
        super().__init__()
        self.instances.append(self)


@pytest.fixture(scope="module")
def perfect_and_absent() -> dict[str, Any]:
    """One real evaluation (METEOR takes ~9 s to start): A predicted perfectly, B not at all."""
    calls: list[int] = []
    real_tokenize = densevid.tokenize

    def counting_tokenize(captions: Any) -> Any:
        calls.append(len(captions))
        return real_tokenize(captions)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(captions, "Meteor", _RecordingMeteor)
        mp.setattr(densevid, "tokenize", counting_tokenize)
        mp.setattr(_RecordingMeteor, "instances", [])
        per_video = score_videos(REFS_AB, {"A": PERFECT})
        return {
            "per_video": per_video,
            "tokenize_calls": calls,
            "meteors": list(_RecordingMeteor.instances),
        }


@pytest.mark.slow
@pytest.mark.java
@requires_java
def test_one_tokenizer_run_and_one_meteor_process(perfect_and_absent: dict[str, Any]) -> None:
    """Four thresholds and several videos, yet Java starts only twice."""
    assert len(perfect_and_absent["tokenize_calls"]) == 1
    (meteor,) = perfect_and_absent["meteors"]
    assert meteor.meteor_p.poll() is not None  # stopped before returning


@pytest.mark.slow
@pytest.mark.java
@requires_java
@pytest.mark.parametrize("t", TIOUS)
def test_perfect_prediction_scores_near_one_at_every_threshold(
    perfect_and_absent: dict[str, Any], t: float
) -> None:
    scores = perfect_and_absent["per_video"][t]["A"]
    for name in ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L"):
        assert scores[name] == pytest.approx(1.0, abs=0.01), name
    assert scores["Recall"] == scores["Precision"] == 1.0


@pytest.mark.java
@requires_java
def test_video_without_prediction_counts_zero(perfect_and_absent: dict[str, Any]) -> None:
    """A perfect A and no prediction for B average to half of A's scores."""
    per_video = perfect_and_absent["per_video"]
    summary = summarize(per_video)
    for t in TIOUS:
        assert set(per_video[t]) == {"A", "B"}
        assert all(v == 0.0 for v in per_video[t]["B"].values())
        for name in (*METRICS, "Recall", "Precision"):
            assert summary[f"{name}@{t:g}"] == pytest.approx(per_video[t]["A"][name] / 2)
    assert summary["METEOR"] == pytest.approx(0.5, abs=0.005)
    assert summary["Recall"] == summary["Precision"] == 0.5


# ----------------------------------------------- per-video scoring, Java stubbed

REFS_MIX = {
    "A": ANN,
    "C": {
        "timestamps": [[0, 5], [10, 20]],
        "sentences": ["a woman slices onions in a kitchen", "she puts the onions in a pan"],
    },
}
PREDS_MIX = {  # the same units at every threshold: exact segments or no overlap
    "A": _preds(
        ([0, 10], "a man rides a brown horse on the sand"),
        ([20, 30], "the man jumps off the horse and waves"),
        ([40, 50], "a dog runs on the beach"),
    ),
    "C": _preds(([10, 20], "she puts onions in a hot pan"), ([30, 40], "a woman washes dishes")),
}
MIX_UNITS = {  # (hypothesis, reference); the garbage word only needs to match nothing
    "A": [(PREDS_MIX["A"][i]["sentence"], SENTS[i]) for i in range(3)],
    "C": [
        ("she puts onions in a hot pan", "she puts the onions in a pan"),
        ("a woman washes dishes", "qzqzqzqzqzqz"),
    ],
}


class _FakeMeteor:
    """Stands in for METEOR (score: share of exact hypotheses) and records its calls."""

    instances: ClassVar[list[_FakeMeteor]] = []

    def __init__(self) -> None:
        self.calls: list[dict[int, list[str]]] = []
        self.closed = False
        self.instances.append(self)

    def compute_score(
        self, gts: dict[int, list[str]], res: dict[int, list[str]]
    ) -> tuple[float, list[float]]:
        self.calls.append(gts)
        scores = [float(res[i] == gts[i]) for i in gts]
        return sum(scores) / len(scores), scores


def _direct(units: list[tuple[str, str]]) -> dict[str, float]:
    """pycocoevalcap on one video's units alone, as the original calls it per video."""
    gts = {i: [ref] for i, (_, ref) in enumerate(units)}
    res = {i: [hyp] for i, (hyp, _) in enumerate(units)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    return {
        **dict(zip(METRICS[:4], bleu)),
        "ROUGE_L": Rouge().compute_score(gts, res)[0],
        "CIDEr": Cider().compute_score(gts, res)[0],
    }


def test_scores_are_per_video_means_with_garbage_units(monkeypatch: pytest.MonkeyPatch) -> None:
    """BLEU/ROUGE-L/CIDEr are means of per-video pycocoevalcap scores, at every tIoU.

    Java is replaced (the sentences are already PTB tokens) to check the
    batching: one METEOR for all, one request per video and threshold, each
    with only that video's units. CIDEr's document frequencies come from each
    video alone, which differs from pooling both videos' units (checked, so
    the test can tell them apart).
    """
    monkeypatch.setattr(densevid, "tokenize", lambda caps: {k: list(v) for k, v in caps.items()})
    monkeypatch.setattr(captions, "Meteor", _FakeMeteor)
    monkeypatch.setattr(captions, "close_meteor", lambda m: setattr(m, "closed", True))
    monkeypatch.setattr(_FakeMeteor, "instances", [])
    scores = evaluate_dense_captions(REFS_MIX, PREDS_MIX)

    per_video = [_direct(units) for units in MIX_UNITS.values()]
    expected = {k: (per_video[0][k] + per_video[1][k]) / 2 for k in per_video[0]}
    expected["METEOR"] = (1 / 3 + 0) / 2  # one exact unit of three in A, none in C
    assert abs(_direct(MIX_UNITS["A"] + MIX_UNITS["C"])["CIDEr"] - expected["CIDEr"]) > 0.05
    for t in TIOUS:
        for name, value in expected.items():
            assert scores[f"{name}@{t:g}"] == pytest.approx(value, rel=1e-9), (name, t)

    (meteor,) = _FakeMeteor.instances
    assert meteor.closed
    assert [len(gts) for gts in meteor.calls] == [3, 2] * len(TIOUS)
    garbage = [gts[1][0] for gts in meteor.calls[1::2]]
    assert all(re.fullmatch("[a-z]{10,20}", g) for g in garbage)


class _FixedMeteor:
    """Stands in for a caller's METEOR process: every video scores 0.25."""

    def __init__(self) -> None:
        self.calls = 0

    def compute_score(self, gts: Any, res: Any) -> tuple[float, list[float]]:
        self.calls += 1
        return 0.25, [0.25] * len(res)


def test_a_callers_meteor_serves_every_evaluation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scoring val_1 and val_2 with the caller's METEOR starts no process of its own."""

    def no_process() -> None:
        raise AssertionError("started a METEOR process although one was given")

    monkeypatch.setattr(captions, "Meteor", no_process)
    monkeypatch.setattr(
        densevid,
        "tokenize",
        lambda caps: {k: [" ".join(v[0].lower().split())] for k, v in caps.items()},
    )
    meteor = _FixedMeteor()
    for refs in (REFS_AB, {"A": ANN}):
        scores = densevid.evaluate_dense_captions(refs, {"A": PERFECT}, tious=(0.5,), meteor=meteor)
        assert scores["METEOR"] == pytest.approx(0.25 / len(refs))  # B has no prediction: 0
    assert meteor.calls == 2
