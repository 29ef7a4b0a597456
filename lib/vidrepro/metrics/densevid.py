"""Dense-video-captioning evaluation of the ActivityNet Captions challenge (densevid_eval).

BMT, BMHRL and most dense-captioning papers report numbers from the
challenge's ``evaluate.py`` (ranjaykrishna/densevid_eval, 2018 version, as
vendored in v-iashin/BMT ``evaluation/evaluate.py``). That script is slow (it
re-runs the Java PTB tokenizer for every metric and threshold) and its
results depend on some unobvious choices, so this module reimplements its
protocol on pycocoevalcap 1.2 and documents every choice.

What is computed, for each tIoU threshold (default 0.3, 0.5, 0.7, 0.9):

* Matching. Every prediction of a video is paired with *every* reference
  segment of that video, in every reference set (val_1 and val_2 are pooled),
  whose tIoU with it is ``>=`` the threshold; each (prediction, reference)
  pair is one scoring unit with a single reference, as the original's unique
  ids make it. A prediction matching nothing in any set becomes one unit
  against a "garbage" reference that it cannot match.
* Captioning scores, per video. BLEU-1..4, METEOR, ROUGE-L and CIDEr are
  computed on the units of each video separately, exactly as calling the
  pycocoevalcap scorer once per video does: BLEU and METEOR are corpus-level
  over the video's units, ROUGE-L the mean over them, and CIDEr takes its
  document frequencies (and its log-number-of-documents) from that video's
  units alone. The threshold's score is the mean over all reference videos;
  a reference video without any unit (no prediction, or an empty list)
  counts as 0. Predictions for videos absent from the references are ignored.
* Proposal precision/recall, per video, with the *strict* ``tIoU >
  threshold``: recall is the fraction of reference segments covered by some
  prediction, precision the fraction of predictions covering some reference
  segment; each is computed against every reference set holding the video and
  the best (maximum) value is kept, separately for precision and recall. A
  reference video without predictions counts 0. Means over reference videos.
* Everything is then averaged over the thresholds.

Only the first ``max_proposals`` (1000, as the original's default)
predictions of each video are used, for both parts.

API: ``evaluate_dense_captions`` gives the final scores; ``score_videos``
the per-threshold, per-video scores it averages (``summarize`` averages them,
``video_means`` averages them over thresholds only: per-video scores);
``match_segments``, ``detection_scores`` and ``tiou`` expose the steps.

Implementation: all sentences that take part in some unit are PTB-tokenised
in one Java run (``vidrepro.metrics.captions.tokenize``), before any scoring;
one METEOR process serves every video and threshold (one ``EVAL`` request per
video, which is what the original's per-video ``compute_score`` sends), and is
stopped before returning. BLEU, ROUGE-L and CIDEr are pycocoevalcap's own
scorers, called per video. SPICE is not computed.

Original's quirks kept (they change the numbers):

* Per-video CIDEr: with document frequencies from a handful of units, a video
  with a single unit always gets CIDEr 0 (idf = log 1 - log 1), and CIDEr is
  not comparable with corpus-level CIDEr. CIDEr keeps pycocoevalcap's 0-10
  scale; all other values are in [0, 1] (not x100 as papers print them).
* Matching uses ``>=`` but precision/recall use ``>``: a segment at exactly
  the threshold is scored as a caption match yet not counted as a detection.
* A prediction matching several reference segments (including the same
  segment in val_1 and val_2) is scored once per match; a reference segment
  matched by no prediction does not lower the captioning scores (only recall).
* Non-ASCII characters are replaced by spaces before tokenising.
* Precision and recall maxima are taken independently over reference sets.

Quirks fixed or made deterministic:

* Garbage reference: the original draws ``random_string(random.randint(10,
  20))`` from the unseeded global ``random`` (one "word" of 10-20 lowercase
  letters). Here the same distribution is drawn from ``random.Random(seed)``
  in a fixed order (threshold, reference video, prediction). The garbage
  word is not passed to the tokenizer: PTB leaves a run of lowercase letters
  unchanged. Its only effect on the scores is through its length (one token),
  so the seed matters only if a garbage word happens to equal a predicted one.
* The garbage unit is added once per prediction that matches nothing in any
  reference set (BMT's version); an older official version added it per
  reference set, even when the prediction matched in the other set.
* tIoU is exact: intersection / union. The original divides by ``union +
  1e-8``, so a tIoU exactly at a threshold fell just below it and was not
  matched by ``>=``; ``tiou_eps=1e-8`` reproduces that.
* An empty prediction list scores 0 in precision (the original reused the
  previous video's prediction count or crashed); malformed references and
  predictions raise ``ValueError`` naming the video instead of a KeyError or
  ZeroDivisionError deep inside the scoring.
"""

from __future__ import annotations

import contextlib
import math
import random
import string
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, NamedTuple

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge

from vidrepro.metrics.captions import METRICS, meteor_process, tokenize

TIOUS = (0.3, 0.5, 0.7, 0.9)
DETECTION_METRICS = ("Recall", "Precision")
MAX_PROPOSALS = 1000

Segment = tuple[float, float]
ReferenceSet = Mapping[Hashable, Mapping[str, Any]]
Predictions = Mapping[Hashable, Sequence[Mapping[str, Any]]]


class Annotation(NamedTuple):
    """The validated reference segments and sentences of one video in one set."""

    segments: tuple[Segment, ...]
    sentences: tuple[str, ...]


class Proposal(NamedTuple):
    """One validated prediction: a segment and its caption."""

    segment: Segment
    sentence: str


class Pair(NamedTuple):
    """One scoring unit: a prediction and one reference segment, or garbage.

    ``pred`` indexes the video's (truncated) predictions; ``ref`` is
    ``(reference set index, segment index)``, or None for the garbage reference.
    """

    pred: int
    ref: tuple[int, int] | None


def tiou(a: Sequence[float], b: Sequence[float], eps: float = 0.0) -> float:
    """Temporal IoU of two ``[start, end]`` segments; 0 when the union is empty.

    ``eps`` is added to the union; the original used 1e-8 (see module docs).
    """
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    if union + eps <= 0:
        return 0.0
    return inter / (union + eps)


def evaluate_dense_captions(
    references: ReferenceSet | Sequence[ReferenceSet],
    predictions: Predictions,
    *,
    tious: Sequence[float] = TIOUS,
    max_proposals: int | None = MAX_PROPOSALS,
    seed: int = 0,
    tiou_eps: float = 0.0,
    meteor: Meteor | None = None,
) -> dict[str, float]:
    """densevid_eval scores of ``predictions`` against one or more reference sets.

    ``references`` is an ActivityNet Captions dict ``{video: {"timestamps":
    [[s, e], ...], "sentences": [...]}}`` or a sequence of them (val_1, val_2);
    ``predictions`` is the submission's ``"results"`` field ``{video:
    [{"timestamp": [s, e], "sentence": str}, ...]}``. Returns, for each name in
    ``METRICS`` and ``DETECTION_METRICS``, the mean over ``tious`` under the
    bare name and the per-threshold value under ``f"{name}@{tiou:g}"``
    (e.g. ``"METEOR@0.5"``). Needs Java unless no prediction is scored. A caller that
    evaluates several sets passes one ``meteor`` (from :func:`meteor_process`) to them all;
    otherwise one is started for this call.
    """
    per_video = score_videos(
        references,
        predictions,
        tious=tious,
        max_proposals=max_proposals,
        seed=seed,
        tiou_eps=tiou_eps,
        meteor=meteor,
    )
    return summarize(per_video)


def score_videos(
    references: ReferenceSet | Sequence[ReferenceSet],
    predictions: Predictions,
    *,
    tious: Sequence[float] = TIOUS,
    max_proposals: int | None = MAX_PROPOSALS,
    seed: int = 0,
    tiou_eps: float = 0.0,
    meteor: Meteor | None = None,
) -> dict[float, dict[Hashable, dict[str, float]]]:
    """``{tiou: {reference video: {metric: score}}}`` before any averaging.

    Arguments as ``evaluate_dense_captions``. Every reference video is present,
    with all scores 0 when it has no prediction; useful to find the videos
    that pull an average down. ``summarize`` turns it into the final scores.
    """
    ref_sets = check_references(references)
    preds = check_predictions(predictions, max_proposals)
    thresholds = _check_tious(tious)
    videos = _reference_videos(ref_sets)
    pairs = {
        t: {v: _match_video(preds.get(v, []), ref_sets, v, t, tiou_eps) for v in videos}
        for t in thresholds
    }
    texts = _tokenized(pairs, ref_sets, preds)
    rng = random.Random(seed)
    needed = any(units for by_video in pairs.values() for units in by_video.values())
    out: dict[float, dict[Hashable, dict[str, float]]] = {}
    with (
        contextlib.nullcontext(meteor) if meteor is not None or not needed else meteor_process()
    ) as scorer:
        for t in thresholds:
            out[t] = {}
            for v in videos:
                units = _unit_texts(pairs[t][v], v, texts, rng)
                scores = video_scores(units, scorer) if units and scorer is not None else _zeros()
                out[t][v] = scores | _best_detection(ref_sets, preds.get(v, []), v, t, tiou_eps)
    return out


def summarize(
    per_video: Mapping[float, Mapping[Hashable, Mapping[str, float]]],
) -> dict[str, float]:
    """Mean over videos per threshold (``name@tiou``), then over thresholds (bare ``name``)."""
    if not per_video or not all(per_video.values()):
        raise ValueError("summarize needs at least one threshold and one video")
    names = [*METRICS, *DETECTION_METRICS]
    per_tiou = {
        t: {n: sum(s[n] for s in videos.values()) / len(videos) for n in names}
        for t, videos in per_video.items()
    }
    out = {n: sum(s[n] for s in per_tiou.values()) / len(per_tiou) for n in names}
    for t, scores in per_tiou.items():
        out |= {f"{n}@{t:g}": scores[n] for n in names}
    return out


def video_means(
    per_video: Mapping[float, Mapping[Hashable, Mapping[str, float]]],
) -> dict[Hashable, dict[str, float]]:
    """Each reference video's scores (``score_videos``) averaged over the thresholds.

    Every threshold scores the same videos, so the mean of these over videos is ``summarize``'s
    bare-name score: they are per-item scores of the evaluation.
    """
    if not per_video or not all(per_video.values()):
        raise ValueError("video_means needs at least one threshold and one video")
    names = [*METRICS, *DETECTION_METRICS]
    tables = list(per_video.values())
    return {v: {n: sum(t[v][n] for t in tables) / len(tables) for n in names} for v in tables[0]}


def match_segments(
    references: ReferenceSet | Sequence[ReferenceSet],
    predictions: Predictions,
    threshold: float,
    *,
    max_proposals: int | None = MAX_PROPOSALS,
    tiou_eps: float = 0.0,
) -> dict[Hashable, list[Pair]]:
    """The scoring units of every reference video at one threshold (tIoU ``>=``).

    Exposed so that the matching, which decides what is scored, can be
    inspected and tested without Java.
    """
    ref_sets = check_references(references)
    preds = check_predictions(predictions, max_proposals)
    return {
        v: _match_video(preds.get(v, []), ref_sets, v, threshold, tiou_eps)
        for v in _reference_videos(ref_sets)
    }


def detection_scores(
    references: ReferenceSet | Sequence[ReferenceSet],
    predictions: Predictions,
    threshold: float,
    *,
    max_proposals: int | None = MAX_PROPOSALS,
    tiou_eps: float = 0.0,
) -> dict[str, float]:
    """Proposal ``{"Precision", "Recall"}`` at one threshold (tIoU strictly ``>``)."""
    ref_sets = check_references(references)
    preds = check_predictions(predictions, max_proposals)
    return _detection(ref_sets, preds, _reference_videos(ref_sets), threshold, tiou_eps)


# ----------------------------------------------------------------- validation


def check_references(
    references: ReferenceSet | Sequence[ReferenceSet],
) -> list[dict[Hashable, Annotation]]:
    """Validated reference sets; a single dict is one set.

    Raises ValueError naming the video for a missing key, a length mismatch,
    a bad segment or an empty video (TypeError for a wrong type), which would
    otherwise surface as a KeyError or ZeroDivisionError in the middle of scoring.
    """
    sets = [references] if isinstance(references, Mapping) else list(references)
    if not any(sets):
        raise ValueError("no reference video given (empty references)")
    return [
        {vid: _check_annotation(vid, ann, i) for vid, ann in ref.items()}
        for i, ref in enumerate(sets)
    ]


def check_predictions(
    predictions: Predictions, max_proposals: int | None = MAX_PROPOSALS
) -> dict[Hashable, list[Proposal]]:
    """Validated predictions, the first ``max_proposals`` of each video kept (as the original)."""
    if not isinstance(predictions, Mapping):
        raise TypeError(f"predictions must be a dict of videos, got {type(predictions).__name__}")
    if max_proposals is not None and max_proposals < 1:
        raise ValueError(f"max_proposals must be >= 1 or None, got {max_proposals}")
    out: dict[Hashable, list[Proposal]] = {}
    for vid, props in predictions.items():
        if isinstance(props, (str, Mapping)) or not isinstance(props, Sequence):
            raise TypeError(f"predictions of video {vid!r} must be a list of dicts")
        out[vid] = [_check_proposal(vid, i, p) for i, p in enumerate(props[:max_proposals])]
    return out


def _check_annotation(vid: Hashable, ann: Any, set_index: int) -> Annotation:
    where = f"reference set {set_index}, video {vid!r}"
    if not isinstance(ann, Mapping):
        raise TypeError(f"{where}: expected a dict with 'timestamps' and 'sentences'")
    for key in ("timestamps", "sentences"):
        if key not in ann:
            raise ValueError(f"{where}: missing key {key!r}")
    stamps, sents = ann["timestamps"], ann["sentences"]
    for key, value in (("timestamps", stamps), ("sentences", sents)):
        if isinstance(value, (str, Mapping)) or not isinstance(value, Sequence):
            raise TypeError(f"{where}: {key!r} must be a list, got {type(value).__name__}")
    if len(stamps) != len(sents):
        raise ValueError(f"{where}: {len(stamps)} 'timestamps' but {len(sents)} 'sentences'")
    if not stamps:
        raise ValueError(f"{where}: no segments (recall would divide by zero)")
    segments = tuple(_check_segment(f"{where}, timestamps[{i}]", s) for i, s in enumerate(stamps))
    for i, s in enumerate(sents):
        if not isinstance(s, str):
            raise TypeError(f"{where}: sentences[{i}] must be str, got {type(s).__name__}")
    return Annotation(segments, tuple(sents))


def _check_proposal(vid: Hashable, i: int, prop: Any) -> Proposal:
    where = f"prediction {i} of video {vid!r}"
    if not isinstance(prop, Mapping):
        raise TypeError(f"{where}: expected a dict with 'timestamp' and 'sentence'")
    for key in ("timestamp", "sentence"):
        if key not in prop:
            raise ValueError(f"{where}: missing key {key!r}")
    if not isinstance(prop["sentence"], str):
        raise TypeError(f"{where}: 'sentence' must be str, got {type(prop['sentence']).__name__}")
    return Proposal(_check_segment(f"{where}, 'timestamp'", prop["timestamp"]), prop["sentence"])


def _check_segment(where: str, seg: Any) -> Segment:
    ok = (
        isinstance(seg, Sequence)
        and not isinstance(seg, str)
        and len(seg) == 2
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in seg)
    )
    if not ok:
        raise ValueError(f"{where}: expected [start, end] numbers, got {seg!r}")
    start, end = float(seg[0]), float(seg[1])
    if not (math.isfinite(start) and math.isfinite(end)):
        raise ValueError(f"{where}: non-finite segment {seg!r}")
    if start > end:
        raise ValueError(f"{where}: start {start} > end {end}")
    return start, end


def _check_tious(tious: Sequence[float]) -> tuple[float, ...]:
    thresholds = tuple(float(t) for t in tious)
    if not thresholds:
        raise ValueError("tious is empty")
    bad = [t for t in thresholds if not 0.0 < t <= 1.0]
    if bad:
        raise ValueError(f"tIoU thresholds must be in (0, 1], got {bad}")
    if len(set(thresholds)) != len(thresholds):
        raise ValueError(f"duplicate tIoU thresholds in {thresholds}")
    return thresholds


# ------------------------------------------------------------------- matching


def _reference_videos(
    ref_sets: Sequence[Mapping[Hashable, Annotation]],
) -> list[Hashable]:
    """Union of the sets' videos in first-seen order, so garbage draws are reproducible."""
    return list(dict.fromkeys(v for ref in ref_sets for v in ref))


def _match_video(
    preds: Sequence[Proposal],
    ref_sets: Sequence[Mapping[Hashable, Annotation]],
    vid: Hashable,
    threshold: float,
    eps: float,
) -> list[Pair]:
    """Units of one video: all ``>=`` matches over all sets, else one garbage unit."""
    pairs: list[Pair] = []
    for p, prop in enumerate(preds):
        matched = [
            Pair(p, (s, r))
            for s, ref in enumerate(ref_sets)
            if vid in ref
            for r, seg in enumerate(ref[vid].segments)
            if tiou(prop.segment, seg, eps) >= threshold
        ]
        pairs.extend(matched or [Pair(p, None)])
    return pairs


def _detection(
    ref_sets: Sequence[Mapping[Hashable, Annotation]],
    preds: Mapping[Hashable, Sequence[Proposal]],
    videos: Sequence[Hashable],
    threshold: float,
    eps: float,
) -> dict[str, float]:
    """Mean over reference videos of ``_best_detection``."""
    per_video = [_best_detection(ref_sets, preds.get(v, []), v, threshold, eps) for v in videos]
    return {n: sum(d[n] for d in per_video) / len(videos) for n in DETECTION_METRICS}


def _best_detection(
    ref_sets: Sequence[Mapping[Hashable, Annotation]],
    props: Sequence[Proposal],
    vid: Hashable,
    threshold: float,
    eps: float,
) -> dict[str, float]:
    """One video's precision and recall (``>``), each the best over the sets holding it."""
    best_p = best_r = 0.0
    for ref in ref_sets:
        if vid in ref:
            p, r = _video_detection(props, ref[vid].segments, threshold, eps)
            best_p, best_r = max(best_p, p), max(best_r, r)
    return {"Recall": best_r, "Precision": best_p}


def _video_detection(
    props: Sequence[Proposal], segments: Sequence[Segment], threshold: float, eps: float
) -> tuple[float, float]:
    hits = [
        (p, r)
        for p, prop in enumerate(props)
        for r, seg in enumerate(segments)
        if tiou(prop.segment, seg, eps) > threshold
    ]
    precision = len({p for p, _ in hits}) / len(props) if props else 0.0
    return precision, len({r for _, r in hits}) / len(segments)


# -------------------------------------------------------------------- scoring


def _remove_nonascii(text: str) -> str:
    """The original's preprocessing: every non-ASCII character becomes a space."""
    return "".join(c if ord(c) < 128 else " " for c in text)


def _tokenized(
    pairs: Mapping[float, Mapping[Hashable, Sequence[Pair]]],
    ref_sets: Sequence[Mapping[Hashable, Annotation]],
    preds: Mapping[Hashable, Sequence[Proposal]],
) -> dict[tuple, str]:
    """Every sentence used by some unit, tokenised in one PTB run.

    Keys are ``("pred", video, index)`` and ``("ref", set, video, index)``;
    each sentence is tokenised once however many units and thresholds use it.
    """
    raw: dict[tuple, str] = {}
    for by_video in pairs.values():
        for vid, units in by_video.items():
            for pair in units:
                raw[("pred", vid, pair.pred)] = preds[vid][pair.pred].sentence
                if pair.ref is not None:
                    s, r = pair.ref
                    raw[("ref", s, vid, r)] = ref_sets[s][vid].sentences[r]
    if not raw:
        return {}
    tokens = tokenize({key: [_remove_nonascii(text)] for key, text in raw.items()})
    return {key: tokens[key][0] for key in raw}


def _garbage(rng: random.Random) -> str:
    """The original's garbage reference: 10-20 random lowercase letters, here seeded."""
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(10, 20)))


def _unit_texts(
    units: Sequence[Pair], vid: Hashable, texts: Mapping[tuple, str], rng: random.Random
) -> list[tuple[str, str]]:
    """``(hypothesis, reference)`` token strings of one video's units."""
    return [
        (
            texts[("pred", vid, u.pred)],
            _garbage(rng) if u.ref is None else texts[("ref", u.ref[0], vid, u.ref[1])],
        )
        for u in units
    ]


def _zeros() -> dict[str, float]:
    """Caption scores of a reference video without any unit (the original's 0)."""
    return dict.fromkeys(METRICS, 0.0)


def video_scores(units: Sequence[tuple[str, str]], meteor: Meteor) -> dict[str, float]:
    """pycocoevalcap scores of one video's ``(hypothesis, reference)`` units, pre-tokenised.

    Equivalent to the original's ``scorer.compute_score(gts[vid], res[vid])``:
    one single-reference id per unit, each scorer over this video alone.
    """
    gts = {i: [ref] for i, (_, ref) in enumerate(units)}
    res = {i: [hyp] for i, (hyp, _) in enumerate(units)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    scores = dict(zip(METRICS[:4], bleu))
    scores["METEOR"], _ = meteor.compute_score(gts, res)
    scores["ROUGE_L"], _ = Rouge().compute_score(gts, res)
    # CiderScorer asserts on (max of) an empty document-frequency table when
    # no reference has a token; such a video has nothing to agree with: 0.
    has_tokens = any(ref.split() for (ref,) in gts.values())
    scores["CIDEr"] = Cider().compute_score(gts, res)[0] if has_tokens else 0.0
    return {name: float(scores[name]) for name in METRICS}
